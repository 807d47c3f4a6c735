"""The history database: trades, order history and balance changes, written off the matching path."""
