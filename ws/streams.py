"""Stream names: which exist, and which belong to one user.

Public streams are per market: `depth@M`, `trade@M`, `ticker@M`, `status@M` (the market's trading status
when an operator changes it) and `kline_<interval>@M` for the
intervals the markets publish (`STREAMED_INTERVALS`), and the throttled depth stream `depth@M@100ms`
(one merged diff per interval, see `openbell.ws.throttle`). Private streams are per user: `orders@<user>`
(order updates and fills) and `balance@<user>`. A name is checked against the markets running when it
is subscribed; nothing here knows about connections.
"""

from __future__ import annotations

from collections.abc import Container
from dataclasses import dataclass

from openbell.core.marketdata import STREAMED_INTERVALS
from openbell.edge.identity import USER_ID

MARKET_KINDS = frozenset(
    {"depth", "trade", "ticker", "status", *(f"kline_{interval}" for interval in STREAMED_INTERVALS)}
)
USER_KINDS = frozenset({"orders", "balance"})
MAX_STREAM_NAME = 100
THROTTLE_INTERVALS = {"100ms": 0.1}
"""Suffixes of the throttled depth stream (`depth@M@100ms`) and their intervals in seconds."""


@dataclass(frozen=True, slots=True)
class Stream:
    name: str
    kind: str
    """"depth", "trade", "ticker", "status", "kline_1m", ..., "orders" or "balance"."""
    key: str
    """The market symbol, or the user id of a private stream."""
    interval: float | None = None
    """Seconds between messages of a throttled depth stream; None for every other stream."""

    @property
    def user(self) -> str | None:
        """The owner of a private stream; None for market streams."""
        return self.key if self.kind in USER_KINDS else None


def parse_stream(name: object, markets: Container[str]) -> Stream | None:
    """The stream called `name`, or None if there is no such stream."""
    if not isinstance(name, str) or len(name) > MAX_STREAM_NAME:
        return None
    kind, at, key = name.partition("@")
    if not at or not key:
        return None
    if kind == "depth" and "@" in key:
        throttled = throttled_depth(name)
        if throttled is None or throttled[0] not in markets:
            return None
        return Stream(name, kind, throttled[0], throttled[1])
    if kind in MARKET_KINDS:
        return Stream(name, kind, key) if key in markets else None
    if kind in USER_KINDS:
        return Stream(name, kind, key) if USER_ID.match(key) else None
    return None


def throttled_depth(name: str) -> tuple[str, float] | None:
    """(market, interval in seconds) if `name` is a throttled depth stream such as `depth@TATA_INR@100ms`."""
    kind, _, key = name.partition("@")
    market, at, suffix = key.partition("@")
    if kind != "depth" or not at:
        return None
    interval = THROTTLE_INTERVALS.get(suffix)
    return (market, interval) if interval is not None else None
