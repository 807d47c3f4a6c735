"""The market stage: one market's order book and market data, matching batches of orders.

`MarketCore` takes the `MatchBatch`es the balance stage sends (orders whose funds are held, cancels of
orders it knows), matches each command on the book in order, and returns one `Settlement` for the batch
and the events to publish: each command's events, then one `DepthUpdated` for the levels the batch
changed, then (if it traded) the current candles and the 24 h ticker. It also answers market-data
queries. It is pure: no threads, no I/O, no clock (times come from the commands); the pykka shell around
it is `openbell.actors.market`.

Invariants: its state is a function of the batches it handled, in order. A command whose matching raises
is logged with the command and reported in `Settlement.failed` (its hold is released, its caller told);
the fills it made before the fault are real and settled like any others, and the order is taken off the
book, so no order rests without a hold behind it.
"""

from __future__ import annotations

import logging
from typing import Any

import msgspec

from openbell.core.book import OrderBook
from openbell.core.commands import (
    MAX_DEPTH_LEVELS,
    MAX_TRADES,
    GetDepth,
    GetKlines,
    GetTicker,
    GetTrades,
    MarketQuery,
    PlaceOrder,
)
from openbell.core.events import DepthUpdated, Event, OrderAccepted, TradeExecuted
from openbell.core.grid import MarketSpec
from openbell.core.marketdata import INTERVAL_NAMES, MAX_KLINES, MarketData
from openbell.core.messages import Depth, Klines, MatchBatch, Outcome, RecentTrades, Reply, Settlement
from openbell.core.types import ResultCode

log = logging.getLogger(__name__)


class MarketCore:
    def __init__(self, spec: MarketSpec) -> None:
        self.spec = spec
        self.book = OrderBook(spec)
        self.data = MarketData(spec.symbol, spec.quote_units_per_tick_lot)
        self.batches_handled = 0
        """How many MatchBatches this market has processed (the last batch_no)."""

    def to_state(self) -> dict[str, object]:
        return {
            "spec": msgspec.to_builtins(self.spec),
            "book": self.book.to_state(),
            "data": self.data.to_state(),
            "batches_handled": self.batches_handled,
        }

    @classmethod
    def from_state(cls, state: dict[str, Any]) -> MarketCore:
        core = cls(msgspec.convert(state["spec"], MarketSpec))
        core.book = OrderBook.from_state(core.spec, state["book"])
        core.data.load_state(state["data"])
        core.batches_handled = state["batches_handled"]
        return core

    def handle_batch(self, batch: MatchBatch) -> tuple[Settlement, list[Event]]:
        """Match every command of the batch. Returns the settlement and the events to publish."""
        book = self.book
        self.batches_handled += 1
        outcomes: list[Outcome] = []
        failed: list[int] = []
        published: list[Event] = []
        traded = False
        for command in batch.commands:
            events: list[Event] = []
            try:
                if isinstance(command, PlaceOrder):
                    book.place(command, events)
                else:
                    events = book.cancel(command.order_id, command.user_id, command.ts)
            except Exception:
                log.exception("market %s failed to process %r", self.spec.symbol, command)
                failed.append(command.seq)
                if isinstance(command, PlaceOrder):
                    self._drop_after_failure(command.seq)
                    events = [e for e in events if not (isinstance(e, OrderAccepted) and e.order_id == command.seq)]
            for event in events:
                if type(event) is TradeExecuted:
                    self.data.on_trade(event)
                    traded = True
            outcomes.append(Outcome(command.seq, tuple(events)))
            published.extend(events)
        depth = book.drain_depth_changes()
        if depth is not None:
            first, last, bids, asks = depth
            ts = batch.commands[-1].ts if batch.commands else 0
            published.append(DepthUpdated(self.spec.symbol, first, last, tuple(bids), tuple(asks), ts))
        if traded:
            published.extend(self.data.updates())
        return Settlement(self.spec.symbol, tuple(outcomes), tuple(failed), batch.batch_no), published

    def _drop_after_failure(self, order_id: int) -> None:
        """A failed order must not stay on the book without a hold behind it."""
        if self.book.order(order_id) is not None or self.book.stops.get(order_id) is not None:
            try:
                self.book.drop(order_id)
            except Exception:
                log.exception("market %s could not drop order %s after a failure", self.spec.symbol, order_id)

    def answer(self, query: MarketQuery) -> Reply:
        """Answer a market-data query; never raises for bad arguments."""
        seq = query.seq
        if isinstance(query, GetDepth):
            bids, asks = self.book.depth(max(1, min(query.limit, MAX_DEPTH_LEVELS)))
            return Reply(seq, ResultCode.OK, data=Depth(tuple(bids), tuple(asks), self.book.update_id))
        if isinstance(query, GetTrades):
            trades = self.data.recent_trades(max(1, min(query.limit, MAX_TRADES)))
            return Reply(seq, ResultCode.OK, data=RecentTrades(tuple(trades)))
        if isinstance(query, GetTicker):
            return Reply(seq, ResultCode.OK, data=self.data.ticker(query.ts // 1000))
        if isinstance(query, GetKlines):
            name = INTERVAL_NAMES.get(query.interval_seconds)
            if name is None:
                return Reply(seq, ResultCode.INVALID_REQUEST, f"no interval of {query.interval_seconds} seconds")
            now = query.ts // 1000
            candles = self.data.klines(query.interval_seconds, query.start, query.end, MAX_KLINES)
            return Reply(
                seq,
                ResultCode.OK,
                data=Klines(tuple(c.snapshot(self.spec.symbol, name, c.end <= now) for c in candles)),
            )
        return Reply(seq, ResultCode.INVALID_REQUEST, f"a market cannot answer {type(query).__name__}")
