"""The balance actor: the pykka shell around `openbell.core.risk.BalanceCore` (funds, the sequencer).

What it receives, and what it does with it:
- `Wake`: the engine's intake has commands. It drains up to `MAX_BATCH` of them as one `CommandBatch`,
  has the core handle it, starts any market the batch added, sends each market its `MatchBatch` at once,
  and journals the batch;
- `Settlement`: a market matched a batch. The core settles it; the actor journals that;
- `Durable(lsn)`, from the journal's writer: everything up to `lsn` is on disk. Only now does the actor
  send the replies and events of the inputs journaled up to `lsn` (`_outbox`), in the order it handled
  them. So no client hears of something that a crash could take back.
Without a journal (`--in-memory`), replies and events leave at once.

Invariants: the core sees its inputs in the order this actor received them; replies and events leave in
that same order; a snapshot is taken only when its persistence can take one (the engine's: when no
forwarded command is unsettled; the balance process's keeps the batches in flight in the snapshot).
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
from openbell.core.commands import Command
from openbell.core.events import Event
from openbell.core.grid import MarketSpec
from openbell.core.messages import CommandBatch, Reply, Settlement
from openbell.core.risk import BalanceCore, Effects
from openbell.core.types import Record
from openbell.durability.journal import Durable
from openbell.durability.persistence import Persistence
from openbell.metrics import BATCH_COMMANDS, QUEUE_DEPTH

log = logging.getLogger(__name__)

Recorder = Callable[[str, object], None]
ReplySink = Callable[[Sequence[Reply]], None]


class MarketRef(Protocol):
    """Where the balance actor sends a market's `MatchBatch`es (and the engine its queries): the market actor's
    ref, or, for a market that another process matches, a stand-in with the same `tell`."""

    def tell(self, message: Any) -> None: ...


MarketSpawner = Callable[[MarketSpec], MarketRef]

MAX_BATCH = 512
"""Most commands taken from the intake per message, so settlements interleave with new orders."""


class Wake(Record, frozen=True):
    """The engine's intake has commands for the balance actor."""


WAKE = Wake()


class Intake:
    """Commands waiting for the balance actor, and whether a wake-up is already on its way.

    Producers append and, if no wake-up is scheduled, schedule one; the actor clears the flag before it
    drains, so a command appended at any moment is either drained now or woken for later.
    """

    __slots__ = ("queue", "scheduled")

    def __init__(self) -> None:
        self.queue: deque[Command] = deque()
        self.scheduled = False


class BalanceActor(pykka.ThreadingActor):
    use_daemon_thread = True

    def __init__(
        self,
        core: BalanceCore,
        intake: Intake,
        spawn_market: MarketSpawner,
        reply_sink: ReplySink,
        bus: EventBus,
        recorder: Recorder | None = None,
        markets: dict[str, MarketRef] | None = None,
        persistence: Persistence | None = None,
    ) -> None:
        super().__init__()
        self.core = core
        self._intake = intake
        self._spawn_market = spawn_market
        self._reply_sink = reply_sink
        self._bus = bus
        self._recorder = recorder
        self.markets: dict[str, MarketRef] = markets if markets is not None else {}
        self._persistence = persistence
        self._journal = persistence.journal if persistence is not None else None
        self._outbox: deque[tuple[int, list[Reply], list[Event]]] = deque()
        """(LSN, replies, events) waiting for the journal to be durable up to that LSN, in order."""
        self._snapshot_wanted = False
        self._batch_sizes = BATCH_COMMANDS.labels("balance")
        self._intake_depth = QUEUE_DEPTH.labels("intake")

    def on_receive(self, message: object) -> None:
        try:
            if isinstance(message, Wake):
                if self._snapshot_wanted:
                    self._intake.scheduled = False
                    self._snapshot_if_quiet()
                    if self._snapshot_wanted:
                        return  # new commands wait until the markets have settled what they hold
                batch = self._drain()
                if batch is None:
                    return
                if self._recorder is not None:
                    self._recorder("balance", batch)
                effects = self.core.handle_commands(batch)
                self._start_new_markets(effects)  # before any reply can leave: an added market trades at once
                for match in effects.batches:
                    self.markets[match.market].tell(match)
                lsn = self._journal.commands(batch, self.actor_ref) if self._journal is not None else None
                self._send_after(lsn, effects)
            elif isinstance(message, Settlement):
                if self._recorder is not None:
                    self._recorder("balance", message)
                effects = self.core.handle_settlement(message)
                journal = self._journal
                self._send_after(journal.settled(message, self.actor_ref) if journal else None, effects)
            elif isinstance(message, Durable):
                self._release(message.lsn)
            else:
                log.error("balance actor got an unknown message %r", message)
                return
            if self._persistence is not None:
                if not self._snapshot_wanted and self._persistence.snapshot_due():
                    self._snapshot_wanted = True
                if self._snapshot_wanted:
                    self._snapshot_if_quiet()
        except Exception:
            log.exception("balance actor could not handle %r", message)

    def _send_after(self, lsn: int | None, effects: Effects) -> None:
        """Send `effects`' replies and events once the journal is durable up to `lsn` (None: at once, in order)."""
        if lsn is None and not self._outbox:
            self._send(effects.replies, effects.events)
        elif effects.replies or effects.events:
            waiting_for = lsn if lsn is not None else self._outbox[-1][0]
            self._outbox.append((waiting_for, effects.replies, effects.events))

    def _release(self, durable_lsn: int) -> None:
        outbox = self._outbox
        while outbox and outbox[0][0] <= durable_lsn:
            _, replies, events = outbox.popleft()
            self._send(replies, events)

    def _send(self, replies: list[Reply], events: list[Event]) -> None:
        if replies:
            self._reply_sink(replies)
        if events:
            self._bus.publish(events)

    def _snapshot_if_quiet(self) -> None:
        """Take the due snapshot once the persistence can (in one process: every forwarded command settled),
        then let commands in again."""
        if self._persistence is None or not self._persistence.can_snapshot(self.core):
            return
        self._snapshot_wanted = False
        try:
            self._persistence.snapshot(self.core)
        except Exception:
            log.exception("snapshot failed; matching goes on")
        if self._intake.queue:
            self._intake.scheduled = True
            self.actor_ref.tell(WAKE)

    def _drain(self) -> CommandBatch | None:
        intake = self._intake
        intake.scheduled = False
        queue = intake.queue
        commands = []
        popleft = queue.popleft
        try:
            for _ in range(MAX_BATCH):
                commands.append(popleft())
        except IndexError:
            pass
        else:
            if queue:
                intake.scheduled = True
                self.actor_ref.tell(WAKE)
        if metrics.enabled and commands:
            self._batch_sizes.observe(len(commands))
            self._intake_depth.set(len(queue))
        return CommandBatch(tuple(commands)) if commands else None

    def _start_new_markets(self, effects: Effects) -> None:
        for spec in effects.new_markets:
            self.markets[spec.symbol] = self._spawn_market(spec)

    def on_failure(
        self,
        exception_type: type[BaseException] | None,
        exception_value: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        log.error("balance actor stopped by %s: %s", exception_type, exception_value)
