"""Market data kept from executed trades: recent trades, one-minute candles, klines and the 24 h ticker.

Owned by one market (its actor). Pure and deterministic: time comes from the trades' own timestamps
(and from the `now` the caller passes for the ticker), never from a clock read here.

Invariants:
- one-minute candles are keyed by their start (unix seconds, a multiple of 60) and built only from
  trades, so any kline is an exact aggregation of the trades in its range that are still kept;
- candles older than `keep_minutes` before the newest trade are dropped (a history store serves older
  ranges); recent trades are the newest `keep_trades`.
"""

from __future__ import annotations

from collections import deque

import msgspec
from sortedcontainers import SortedDict

from openbell.core.events import Event, KlineSnapshot, Ticker, TradeExecuted
from openbell.core.types import Side

INTERVALS: dict[str, int] = {
    "1m": 60,
    "3m": 180,
    "5m": 300,
    "15m": 900,
    "30m": 1800,
    "1h": 3600,
    "2h": 7200,
    "4h": 14400,
    "6h": 21600,
    "12h": 43200,
    "1d": 86400,
    "1w": 604800,
}
"""Kline intervals by wire name, in seconds."""
INTERVAL_NAMES = {seconds: name for name, seconds in INTERVALS.items()}

STREAMED_INTERVALS = tuple(INTERVALS)
"""Intervals whose current candle is published after every batch with trades: all of them."""

WEEK_ORIGIN = 4 * 86400
"""Weekly candles start on Mondays 00:00 UTC (1970-01-05 was the first Monday after the epoch)."""
MAX_KLINES = 1000


def bucket_start(ts_seconds: int, interval: int) -> int:
    origin = WEEK_ORIGIN if interval == 604800 else 0
    return (ts_seconds - origin) // interval * interval + origin


class Candle:
    __slots__ = ("start", "interval", "open", "high", "low", "close", "volume", "quote_volume", "trades")

    def __init__(self, start: int, interval: int, price: int) -> None:
        self.start = start
        self.interval = interval
        self.open = self.high = self.low = self.close = price
        self.volume = 0
        """Base traded, in lots."""
        self.quote_volume = 0
        """Quote traded, in minor units."""
        self.trades = 0

    @property
    def end(self) -> int:
        return self.start + self.interval

    def add(self, price: int, quantity: int, quote: int) -> None:
        if price > self.high:
            self.high = price
        if price < self.low:
            self.low = price
        self.close = price
        self.volume += quantity
        self.quote_volume += quote
        self.trades += 1

    def merge(self, other: Candle) -> None:
        """Fold a later candle into this one."""
        self.high = max(self.high, other.high)
        self.low = min(self.low, other.low)
        self.close = other.close
        self.volume += other.volume
        self.quote_volume += other.quote_volume
        self.trades += other.trades

    def snapshot(self, market: str, interval_name: str, closed: bool) -> KlineSnapshot:
        return KlineSnapshot(
            market,
            interval_name,
            self.start,
            self.end,
            self.open,
            self.high,
            self.low,
            self.close,
            self.volume,
            self.quote_volume,
            self.trades,
            closed,
        )

    def copy(self) -> Candle:
        c = Candle(self.start, self.interval, self.open)
        c.high, c.low, c.close = self.high, self.low, self.close
        c.volume, c.quote_volume, c.trades = self.volume, self.quote_volume, self.trades
        return c


class MarketData:
    def __init__(
        self, market: str, quote_units_per_tick_lot: int, keep_trades: int = 1000, keep_minutes: int = 7 * 1440
    ) -> None:
        self.market = market
        self._per_lot = quote_units_per_tick_lot
        self.trades: deque[TradeExecuted] = deque(maxlen=keep_trades)
        self._minutes: SortedDict = SortedDict()  # start -> Candle
        self._keep_seconds = keep_minutes * 60
        self.last_price: int | None = None
        self._closed_minute: int | None = None
        self._closed: dict[str, Candle | None] = {}
        """Per streamed interval (and "24h"), the aggregate of the closed minutes of the current bucket."""
        self._published: dict[str, KlineSnapshot] = {}

    def on_trade(self, trade: TradeExecuted) -> None:
        self.trades.append(trade)
        self.last_price = trade.price
        start = trade.ts // 1000 // 60 * 60
        candle = self._minutes.get(start)
        if candle is None:
            candle = self._minutes[start] = Candle(start, 60, trade.price)
            oldest_kept = start - self._keep_seconds
            while self._minutes and self._minutes.peekitem(0)[0] < oldest_kept:
                self._minutes.popitem(0)
        candle.add(trade.price, trade.quantity, trade.price * trade.quantity * self._per_lot)

    def to_state(self) -> dict[str, object]:
        return {
            "last_price": self.last_price,
            "trades": [_trade_row(t) for t in self.trades],
            "minutes": [
                [c.start, c.open, c.high, c.low, c.close, c.volume, c.quote_volume, c.trades]
                for c in self._minutes.values()
            ],
        }

    def load_state(self, state: dict) -> None:
        self.last_price = state["last_price"]
        self.trades.clear()
        for row in state["trades"]:
            self.trades.append(_trade_from_row(row))
        self._minutes.clear()
        for start, open_, high, low, close, volume, quote_volume, trades in state["minutes"]:
            candle = Candle(start, 60, open_)
            candle.high, candle.low, candle.close = high, low, close
            candle.volume, candle.quote_volume, candle.trades = volume, quote_volume, trades
            self._minutes[start] = candle

    def recent_trades(self, limit: int) -> list[TradeExecuted]:
        """Newest first."""
        out: list[TradeExecuted] = []
        for trade in reversed(self.trades):
            if len(out) >= limit:
                break
            out.append(trade)
        return out

    def klines(self, interval: int, start: int, end: int, limit: int = MAX_KLINES) -> list[Candle]:
        """Candles of `interval` seconds whose start is in [start, end), oldest first, at most `limit`."""
        out: list[Candle] = []
        first_minute = bucket_start(start, interval)
        for minute_start in self._minutes.irange(first_minute, end, inclusive=(True, False)):
            minute = self._minutes[minute_start]
            bucket = bucket_start(minute_start, interval)
            if bucket < start:
                continue
            if out and out[-1].start == bucket:
                out[-1].merge(minute)
            else:
                if len(out) >= limit:
                    break
                candle = minute.copy()
                candle.start, candle.interval = bucket, interval
                out.append(candle)
        return out

    def _aggregate(self, start: int, end: int, interval: int) -> Candle | None:
        out: Candle | None = None
        for minute_start in self._minutes.irange(start, end, inclusive=(True, False)):
            minute = self._minutes[minute_start]
            if out is None:
                out = minute.copy()
                out.start, out.interval = start, interval
            else:
                out.merge(minute)
        return out

    def _combined(self, closed: Candle | None, current: Candle, start: int, interval: int) -> Candle:
        if closed is None:
            out = current.copy()
            out.start, out.interval = start, interval
            return out
        out = closed.copy()
        out.merge(current)
        return out

    def updates(self) -> list[Event]:
        """After a batch with trades: each streamed interval's current candle (preceded by the previous
        candle marked closed when a new one began) and the 24 h ticker. O(intervals) per call; the
        closed part of each candle is aggregated once per minute."""
        if not self._minutes:
            return []
        minute, current = self._minutes.peekitem(-1)
        if minute != self._closed_minute:
            self._closed_minute = minute
            for name in STREAMED_INTERVALS:
                interval = INTERVALS[name]
                self._closed[name] = self._aggregate(bucket_start(minute, interval), minute, interval)
            self._closed["24h"] = self._aggregate(minute + 60 - 86400, minute, 86400)
        out: list[Event] = []
        for name in STREAMED_INTERVALS:
            interval = INTERVALS[name]
            start = bucket_start(minute, interval)
            previous = self._published.get(name)
            if previous is not None and previous.start != start and not previous.closed:
                out.append(_closed_copy(previous))
            snapshot = self._combined(self._closed[name], current, start, interval).snapshot(self.market, name, False)
            self._published[name] = snapshot
            out.append(snapshot)
        day = self._combined(self._closed["24h"], current, minute + 60 - 86400, 86400)
        out.append(
            Ticker(
                self.market,
                day.open,
                current.close,
                day.high,
                day.low,
                day.volume,
                day.quote_volume,
                day.trades,
                minute + 60 - 86400,
                minute + 60,
            )
        )
        return out

    def ticker(self, now_seconds: int) -> Ticker:
        """Rolling 24 h statistics, at one-minute granularity: the window is the 1,440 minutes up to now."""
        window_end = now_seconds // 60 * 60 + 60
        window_start = window_end - 86400
        first = last = high = low = None
        volume = quote_volume = trades = 0
        for minute_start in self._minutes.irange(window_start, window_end, inclusive=(True, False)):
            c = self._minutes[minute_start]
            if first is None:
                first, high, low = c.open, c.high, c.low
            else:
                high = max(high, c.high)
                low = min(low, c.low)
            last = c.close
            volume += c.volume
            quote_volume += c.quote_volume
            trades += c.trades
        return Ticker(
            self.market,
            first,
            last if last is not None else self.last_price,
            high,
            low,
            volume,
            quote_volume,
            trades,
            window_start,
            window_end,
        )


def _closed_copy(snapshot: KlineSnapshot) -> KlineSnapshot:
    return msgspec.structs.replace(snapshot, closed=True)


def _trade_row(t: TradeExecuted) -> list[object]:
    return [
        t.market,
        t.trade_id,
        t.price,
        t.quantity,
        t.taker_side.value,
        t.maker_order_id,
        t.maker_user_id,
        t.taker_order_id,
        t.taker_user_id,
        t.ts,
    ]


def _trade_from_row(row: list) -> TradeExecuted:
    market, trade_id, price, quantity, side, maker_order_id, maker_user_id, taker_order_id, taker_user_id, ts = row
    return TradeExecuted(
        market, trade_id, price, quantity, Side(side), maker_order_id, maker_user_id, taker_order_id, taker_user_id, ts
    )
