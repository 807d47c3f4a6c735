"""The market actor: owns one market's order book and market data, and matches batches of orders.

`MarketCore` is the deterministic state machine (book + market data); `MarketActor` is the pykka shell
that records inputs, calls the core, and sends what it produced: one `Settlement` per batch to the
balance actor, query replies to the reply sink, and events to the bus.

Invariants: the core's state is a function of the `MatchBatch`es it handled, in order. A command whose
matching raises is logged with the command, reported in `Settlement.failed` so that its hold is
released and its caller told, and never stops the actor.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Sequence
from typing import Any

import pykka

from openbell.actors.bus import EventBus
from openbell.actors.messages import MarketQuery, MatchBatch, Reply, Settlement
from openbell.core.book import OrderBook
from openbell.core.commands import CancelOrder, GetDepth, GetKlines, GetTicker, GetTrades, PlaceOrder
from openbell.core.events import DepthUpdated, OrderAccepted, TradeExecuted
from openbell.core.grid import MarketSpec
from openbell.core.marketdata import MAX_KLINES, MarketData
from openbell.core.types import ResultCode

log = logging.getLogger(__name__)

Recorder = Callable[[str, object], None]
ReplySink = Callable[[Sequence[Reply]], None]

MAX_DEPTH_LIMIT = 5000
MAX_TRADES_LIMIT = 1000


class MarketCore:
    def __init__(self, spec: MarketSpec) -> None:
        self.spec = spec
        self.book = OrderBook(spec)
        self.data = MarketData(spec.symbol, spec.quote_units_per_tick_lot)
        self.batches_handled = 0
        """How many MatchBatches this market has processed (the last batch_no)."""

    def to_state(self) -> dict[str, object]:
        from openbell.core.codec import to_wire

        return {
            "spec": to_wire(self.spec),
            "book": self.book.to_state(),
            "data": self.data.to_state(),
            "batches_handled": self.batches_handled,
        }

    @classmethod
    def from_state(cls, state: dict) -> MarketCore:  # type: ignore[type-arg]
        from openbell.core.codec import from_wire

        core = cls(from_wire(state["spec"]))
        core.book = OrderBook.from_state(core.spec, state["book"])
        core.data.load_state(state["data"])
        core.batches_handled = state["batches_handled"]
        return core

    def handle_batch(self, batch: MatchBatch) -> tuple[Settlement, list[object]]:
        """Match every command of the batch. Returns the settlement and the events to publish."""
        book = self.book
        self.batches_handled += 1
        outcomes: list[tuple[int, tuple[object, ...]]] = []
        failed: list[int] = []
        published: list[object] = []
        traded = False
        for command in batch.commands:
            events: list[object] = []
            try:
                if type(command) is PlaceOrder:
                    book.place(command, events)
                else:
                    assert isinstance(command, CancelOrder)
                    events = book.cancel(command.order_id, command.user_id, command.ts)
            except Exception:
                # Fills made before the fault are real: they are settled like any others, then the
                # order is taken off the book and its caller told it failed.
                log.exception("market %s failed to process %r", self.spec.symbol, command)
                failed.append(command.seq)
                if type(command) is PlaceOrder:
                    self._drop_after_failure(command.seq)
                    events = [e for e in events if not (type(e) is OrderAccepted and e.order_id == command.seq)]  # type: ignore[attr-defined]
            for event in events:
                if type(event) is TradeExecuted:
                    self.data.on_trade(event)
                    traded = True
            outcomes.append((command.seq, tuple(events)))
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
        order = self.book.order(order_id)
        if order is not None:
            try:
                self.book.cancel(order_id, order.user_id, order.ts)
            except Exception:
                log.exception("market %s could not drop order %s after a failure", self.spec.symbol, order_id)

    def answer(self, query: object) -> Reply:
        """Answer a market-data query; never raises for bad arguments."""
        seq = getattr(query, "seq", 0)
        if isinstance(query, GetDepth):
            limit = max(1, min(query.limit, MAX_DEPTH_LIMIT))
            bids, asks = self.book.depth(limit)
            return Reply(seq, ResultCode.OK, "", (bids, asks, self.book.update_id))
        if isinstance(query, GetTrades):
            limit = max(1, min(query.limit, MAX_TRADES_LIMIT))
            return Reply(seq, ResultCode.OK, "", self.data.recent_trades(limit))
        if isinstance(query, GetTicker):
            return Reply(seq, ResultCode.OK, "", self.data.ticker(query.ts // 1000))
        if isinstance(query, GetKlines):
            candles = self.data.klines(query.interval_seconds, query.start, query.end, MAX_KLINES)
            return Reply(seq, ResultCode.OK, "", candles)
        return Reply(seq, ResultCode.INVALID_REQUEST, f"a market cannot answer {type(query).__name__}")


class MarketActor(pykka.ThreadingActor):
    use_daemon_thread = True

    def __init__(
        self,
        core: MarketCore,
        balance: pykka.ActorRef,
        reply_sink: ReplySink,
        bus: EventBus,
        recorder: Recorder | None = None,
        journal: Any = None,
    ) -> None:
        super().__init__()
        self.core = core
        self._journal = journal
        """An EngineJournal, or None: the match is recorded before the settlement leaves."""
        self.symbol = core.spec.symbol
        self._balance = balance
        self._reply_sink = reply_sink
        self._bus = bus
        self._recorder = recorder
        self._name = f"market:{self.symbol}"

    def on_receive(self, message: object) -> None:
        try:
            if isinstance(message, MatchBatch):
                if self._recorder is not None:
                    self._recorder(self._name, message)
                try:
                    settlement, events = self.core.handle_batch(message)
                except Exception:
                    log.exception("market %s failed on %r", self.symbol, message)
                    seqs = tuple(command.seq for command in message.commands)
                    settlement, events = Settlement(self.symbol, (), seqs, message.batch_no), []
                if self._journal is not None:
                    bus = self._bus
                    self._journal.matched(self.symbol, message.batch_no, lambda: bus.publish(events))
                    self._balance.tell(settlement)
                else:
                    self._balance.tell(settlement)
                    self._bus.publish(events)
            elif isinstance(message, MarketQuery):
                self._reply_sink([self.core.answer(message.query)])
            else:
                log.error("market %s got an unknown message %r", self.symbol, message)
        except Exception:
            log.exception("market %s could not handle %r", self.symbol, message)

    def on_failure(self, exception_type, exception_value, traceback) -> None:  # type: ignore[no-untyped-def]
        log.error("market actor %s stopped by %s: %s", self.symbol, exception_type, exception_value)
