"""The pure heart of the exchange: order book, funds ledger, money grid, commands and events.

Nothing in this package does I/O, starts a thread, or imports Sanic or Redis.
"""
