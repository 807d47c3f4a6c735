"""What the Binance API's REST and WebSocket edges share: a market's Binance symbol and a percent change."""

from __future__ import annotations

from openbell.core.grid import MarketSpec


def binance_symbol(spec: MarketSpec) -> str:
    """`TATAINR` for TATA_INR: the base and quote joined, as Binance names symbols."""
    return spec.base.symbol + spec.quote.symbol


def percent_change(change: int, base: int) -> str:
    """change / base * 100 with three decimals (Binance's), rounded half away from zero, in integers only."""
    scaled = abs(change) * 100_000
    thousandths, remainder = divmod(scaled, base)
    if remainder * 2 >= base:
        thousandths += 1
    text = f"{thousandths // 1000}.{thousandths % 1000:03d}"
    return "-" + text if change < 0 and thousandths else text
