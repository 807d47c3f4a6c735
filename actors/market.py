"""The market actor: the pykka shell around `openbell.core.matching.MarketCore` (one market's book).

What it receives, and what it does with it:
- `MatchBatch`: the core matches it; the actor journals that it did (`Matched`), sends the `Settlement`
  to the balance actor at once (whose own journal record comes after this one, so its replies wait for
  this record too), and keeps the events;
- `Durable(lsn)`, from the journal's writer: it publishes the events of the batches journaled up to
  `lsn`, in order;
- a market query (`GetDepth`, `GetTrades`, `GetTicker`, `GetKlines`): answered at once.
Without a journal, the events are published at once.

Invariants: the core sees the batches in the order the balance actor sent them; events are published in
that order; a batch whose matching raised as a whole is settled as failed, never dropped.
"""

from __future__ import annotations

import logging
from collections import deque
from collections.abc import Callable, Sequence
from types import TracebackType
from typing import Any, Protocol

import pykka

from openbell import metrics
from openbell.actors.bus import EventBus
from openbell.core.commands import MARKET_QUERIES
from openbell.core.events import Event
from openbell.core.matching import MarketCore
from openbell.core.messages import MatchBatch, Reply, Settlement
from openbell.durability.journal import Durable
from openbell.durability.records import EngineJournal
from openbell.metrics import BATCH_COMMANDS, QUEUE_DEPTH

log = logging.getLogger(__name__)

Recorder = Callable[[str, object], None]
ReplySink = Callable[[Sequence[Reply]], None]


class Recipient(Protocol):
    """Where a market actor sends its settlements: the balance actor's ref (or, in a market shard, the relay)."""

    def tell(self, message: Any) -> None: ...


class MarketActor(pykka.ThreadingActor):
    use_daemon_thread = True

    def __init__(
        self,
        core: MarketCore,
        balance: Recipient,
        reply_sink: ReplySink,
        bus: EventBus,
        recorder: Recorder | None = None,
        journal: EngineJournal | None = None,
    ) -> None:
        super().__init__()
        self.core = core
        self.symbol = core.spec.symbol
        self._balance = balance
        self._reply_sink = reply_sink
        self._bus = bus
        self._recorder = recorder
        self._journal = journal
        self._outbox: deque[tuple[int, list[Event]]] = deque()
        """(LSN, events) waiting for the journal to be durable up to that LSN, in order."""
        self._name = f"market:{self.symbol}"
        self._batch_sizes = BATCH_COMMANDS.labels("market")
        self._mailbox_depth = QUEUE_DEPTH.labels(self._name)
        inbox: Any = self.actor_inbox  # a queue.Queue for a ThreadingActor (pykka's protocol names no size)
        self._mailbox_size: Callable[[], int] = getattr(inbox, "qsize", lambda: 0)

    def on_receive(self, message: object) -> None:
        try:
            if isinstance(message, MatchBatch):
                self._match(message)
            elif isinstance(message, Durable):
                outbox = self._outbox
                while outbox and outbox[0][0] <= message.lsn:
                    self._bus.publish(outbox.popleft()[1])
            elif isinstance(message, MARKET_QUERIES):
                self._reply_sink([self.core.answer(message)])
            else:
                log.error("market %s got an unknown message %r", self.symbol, message)
        except Exception:
            log.exception("market %s could not handle %r", self.symbol, message)

    def _match(self, batch: MatchBatch) -> None:
        if metrics.enabled:
            self._batch_sizes.observe(len(batch.commands))
            self._mailbox_depth.set(self._mailbox_size())
        if self._recorder is not None:
            self._recorder(self._name, batch)
        try:
            settlement, events = self.core.handle_batch(batch)
        except Exception:
            log.exception("market %s failed on %r", self.symbol, batch)
            seqs = tuple(command.seq for command in batch.commands)
            settlement, events = Settlement(self.symbol, (), seqs, batch.batch_no), []
        self._matched(batch, settlement, events)

    def _matched(self, batch: MatchBatch, settlement: Settlement, events: list[Event]) -> None:
        """Hand on what matching `batch` made: the settlement to the balance actor at once (its own journal
        record comes after this one, so its replies wait for this record too), the events once durable."""
        if self._journal is None:
            self._balance.tell(settlement)
            self._bus.publish(events)
            return
        lsn = self._journal.matched(batch, self.actor_ref)
        self._balance.tell(settlement)
        if events:
            self._outbox.append((lsn, events))

    def on_failure(
        self,
        exception_type: type[BaseException] | None,
        exception_value: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        log.error("market actor %s stopped by %s: %s", self.symbol, exception_type, exception_value)
