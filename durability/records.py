"""What the engine journals, and how recovery replays it.

Three kinds of record (`JournalRecord`), appended by the actors as they process each input, in one
journal, each a record of `openbell.core` encoded by `openbell.core.wire.pack`:
- `CommandBatch`: a batch the balance stage handled (its state-changing commands only, request ids
  included; queries change nothing and are left out);
- `Matched(market, batch_no)`: market `market` matched its batch `batch_no`;
- `Settled(market, batch_no)`: the balance stage applied that batch's settlement.

Only commands are stored in full: replaying the command batches through a fresh `BalanceCore`
regenerates exactly the MatchBatches it sent, replaying those through the `MarketCore`s regenerates the
settlements, and the Matched and Settled records say in which order each stage processed them. Replay
therefore rebuilds every stage's state as it was, and also finds what was in flight at the crash:
batches sent but not matched, and settlements made but not applied. The engine finishes those when it
restarts. A record that does not decode, or that names a batch never sent, stops replay with
`ReplayError` naming the record.
"""

from __future__ import annotations

import logging
from collections import deque
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from typing import TypeAlias

from openbell.core.commands import STATE_CHANGING
from openbell.core.events import Event
from openbell.core.matching import MarketCore
from openbell.core.messages import CommandBatch, MatchBatch, Settlement
from openbell.core.risk import BalanceCore
from openbell.core.types import Record
from openbell.core.wire import WireError, pack, unpack
from openbell.durability.journal import Journal, Notified

log = logging.getLogger(__name__)

PROGRESS_EVERY = 50_000
"""Recovery logs its progress every this many journal records."""


class Matched(Record, frozen=True):
    market: str
    batch_no: int


class Settled(Record, frozen=True):
    market: str
    batch_no: int


JournalRecord: TypeAlias = CommandBatch | Matched | Settled


class ReplayError(Exception):
    """A journal record that cannot be replayed (it does not decode, or contradicts the records before it)."""

    def __init__(self, lsn: int, reason: str) -> None:
        super().__init__(f"journal record {lsn}: {reason}")
        self.lsn = lsn


class StageJournal:
    """A process's side of its journal: it appends records and gets their LSNs; `notify` is told `Durable`
    once a record is on disk. Counts the commands journaled since the last snapshot (the snapshot policy)."""

    def __init__(self, journal: Journal) -> None:
        self.journal = journal
        self.commands_since_snapshot = 0


class EngineJournal(StageJournal):
    """The engine's actors' side of the one journal they share."""

    def commands(self, batch: CommandBatch, notify: Notified) -> int | None:
        """Journal the batch's state-changing commands. Returns the LSN to wait for (None: nothing to wait for)."""
        commands = tuple(command for command in batch.commands if isinstance(command, STATE_CHANGING))
        if commands:
            self.commands_since_snapshot += len(commands)
            return self.journal.append(pack(CommandBatch(commands)), notify=notify)
        return self.journal.barrier(notify)

    def matched(self, batch: MatchBatch, notify: Notified) -> int:
        """Journal that a market matched `batch` (its number only: replay regenerates it)."""
        return self.journal.append(pack(Matched(batch.market, batch.batch_no)), notify=notify)

    def settled(self, settlement: Settlement, notify: Notified) -> int:
        """Journal that the balance stage applied `settlement` (its number only: replay regenerates it)."""
        return self.journal.append(pack(Settled(settlement.market, settlement.batch_no)), notify=notify)


@dataclass
class Replayed:
    balance: BalanceCore
    markets: dict[str, MarketCore]
    unmatched: dict[str, deque[MatchBatch]] = field(default_factory=dict)
    """Batches the balance actor sent that their market had not matched."""
    unsettled: dict[str, deque[Settlement]] = field(default_factory=dict)
    """Settlements a market made that the balance actor had not applied."""
    last_lsn: int = 0
    records: int = 0


def replay(
    balance: BalanceCore,
    markets: dict[str, MarketCore],
    records: Iterable[tuple[int, bytes]],
    start_lsn: int,
    events: Callable[[list[Event]], None] | None = None,
) -> Replayed:
    """Feed journal records (after a snapshot at `start_lsn`) through the cores, in journal order.

    `events`, if given, receives the events the replayed inputs produce (for the history writer).
    """
    state = Replayed(balance, markets, last_lsn=start_lsn)
    unmatched = state.unmatched
    unsettled = state.unsettled
    for lsn, payload in records:
        try:
            record = unpack(payload, JournalRecord)
        except WireError as error:
            raise ReplayError(lsn, f"does not decode: {error}") from None
        if isinstance(record, CommandBatch):
            effects = balance.handle_commands(record)
            if events is not None and effects.events:
                events(effects.events)
            for spec in effects.new_markets:
                markets[spec.symbol] = MarketCore(spec)
            for match in effects.batches:
                unmatched.setdefault(match.market, deque()).append(match)
        elif isinstance(record, Matched):
            sent = unmatched.get(record.market)
            if not sent or sent[0].batch_no != record.batch_no:
                raise ReplayError(lsn, f"market {record.market} matched batch {record.batch_no} that was never sent")
            settlement, published = markets[record.market].handle_batch(sent.popleft())
            if events is not None and published:
                events(published)
            unsettled.setdefault(record.market, deque()).append(settlement)
        else:
            made = unsettled.get(record.market)
            if not made or made[0].batch_no != record.batch_no:
                raise ReplayError(lsn, f"settlement of {record.market} batch {record.batch_no} was never made")
            effects = balance.handle_settlement(made.popleft())
            if events is not None and effects.events:
                events(effects.events)
        state.last_lsn = lsn
        state.records += 1
        if state.records % PROGRESS_EVERY == 0:
            log.info("recovery: %d journal records replayed (at record %d)", state.records, lsn)
    return state
