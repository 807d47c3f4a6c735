"""Persistence of the split deployment: the balance process and each market shard recover from their own
data directory, from what they journaled themselves.

The balance process (`run.py balance`, role `balance`):
- journal records (`BalanceRecord`), appended by the balance actor in the order it handles its inputs:
  `CommandBatch` (as the engine journals it: state-changing commands with their request ids) and
  `Settlement`, in full (the markets' state is in other processes, so replay cannot regenerate it);
- replay feeds them through a `BalanceCore`: the command batches regenerate exactly the `MatchBatch`es it
  sent (same numbers), the settlements are applied in journal order. The batches sent and not settled
  at the end are in flight (`Replayed.unmatched`): the process sends them again when it starts, and a
  shard answers a batch it already has by its number, without matching it again;
- a snapshot holds the core without `pending` and the batches in flight (`pending` is exactly their
  commands), so it can be taken while a shard is down: a dead shard never holds the others back.
- `BalanceJournal` also tells its `Outbound` (the Redis side) what the journal holds: the LSN that the
  batches staged since the last record wait for before they may leave (`sealed`), and each settlement's
  LSN (`settled`), so the stream entry that brought it is acknowledged only once it is durable.

A market shard (`run.py markets --shard K`, role `markets K`):
- journal records (`ShardRecord`): `MatchEntry`, exactly the stream entries it consumed (`HostMarket` and
  `MatchBatch` items in the balance process's order), appended before its batches reach the actors;
- replay applies each entry's new items (`new_items`: a market hosted again, or a batch whose number it
  has handled, is skipped, as it was live), and keeps the settlement and events of the batches named in
  `keep`: those of stream entries still pending, whose results had not left when the process stopped;
- a snapshot holds every market core; it is taken when nothing is in flight (every batch read has left
  as a settlement and been acknowledged), so no pending entry ever precedes it.

Both: a record that does not decode, or contradicts the records before it, stops replay with
`ReplayError` naming the record.
"""

from __future__ import annotations

import logging
import time
from collections import deque
from collections.abc import Callable, Collection, Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any, Protocol, TypeAlias

import msgspec

from openbell.core.events import Event
from openbell.core.grid import MarketSpec
from openbell.core.matching import MarketCore
from openbell.core.messages import CommandBatch, MatchBatch, Settlement
from openbell.core.risk import BalanceCore
from openbell.core.types import Record
from openbell.core.wire import WireError, pack, unpack
from openbell.durability.journal import Journal, Notified, read_records
from openbell.durability.persistence import Persistence, PersistenceBase
from openbell.durability.records import PROGRESS_EVERY, EngineJournal, Replayed, ReplayError, StageJournal

log = logging.getLogger(__name__)


# --------------------------------------------------------------------------------------------- records
class HostMarket(Record, frozen=True):
    """Balance process -> a market shard: match this market from now on (sent before its first batch, and
    again at every start of the balance process; a shard that hosts it already ignores it)."""

    spec: MarketSpec


class MatchEntry(Record, frozen=True):
    """One entry of a market shard's stream, as the balance process wrote it in one go; also the record the
    shard journals (the very bytes it read)."""

    items: tuple[HostMarket | MatchBatch, ...]
    """In the order the balance process made them; per market, batches in number order."""


BalanceRecord: TypeAlias = CommandBatch | Settlement
ShardRecord: TypeAlias = MatchEntry


class OutOfOrder(Exception):
    """A batch whose number is more than one past the last its market handled: one is missing."""


def new_items(
    entry: MatchEntry, hosted: dict[str, MarketSpec], handled: dict[str, int]
) -> list[HostMarket | MatchBatch]:
    """The items of `entry` a shard must apply, in order, updating `hosted` and `handled` (the last batch number
    per market) as if it did. A market hosted already, or a batch numbered at most `handled`, is left out.

    Raises OutOfOrder (changing nothing) for a batch of a market not hosted, or past the next number.
    """
    out: list[HostMarket | MatchBatch] = []
    new_hosts: dict[str, MarketSpec] = {}
    counts: dict[str, int] = {}
    for item in entry.items:
        if isinstance(item, HostMarket):
            symbol = item.spec.symbol
            known = new_hosts.get(symbol) or hosted.get(symbol)
            if known is None:
                new_hosts[symbol] = item.spec
                out.append(item)
            elif known.with_status(item.spec.status) != item.spec:  # a halted market is the same market
                log.error("market %s is hosted with another spec; %r ignored", symbol, item.spec)
            continue
        symbol = item.market
        if symbol not in hosted and symbol not in new_hosts:
            raise OutOfOrder(f"batch {item.batch_no} of {symbol}, a market this shard does not host")
        last = counts.get(symbol, handled.get(symbol, 0))
        if item.batch_no <= last:
            continue
        if item.batch_no != last + 1:
            raise OutOfOrder(f"batch {item.batch_no} of {symbol} came after batch {last}")
        counts[symbol] = item.batch_no
        out.append(item)
    hosted.update(new_hosts)
    for symbol in new_hosts:
        handled.setdefault(symbol, 0)
    handled.update(counts)
    return out


# --------------------------------------------------------------------------------------------- balance process
class Outbound(Protocol):
    """The balance process's Redis side, as its journal tells it what the journal holds."""

    def sealed(self, lsn: int | None) -> None:
        """What was staged since the last call may leave once the journal is durable up to `lsn` (None: now)."""

    def settled(self, settlement: Settlement, lsn: int) -> None:
        """`settlement` is journaled as record `lsn`."""

    def tell(self, message: Any) -> None:
        """`Durable(lsn)` from the journal's writer."""


class _Both:
    """Tells `Durable` to the balance actor and to the outbound side (one object, so the writer tells each once)."""

    __slots__ = ("first", "second")

    def __init__(self, first: Notified, second: Notified) -> None:
        self.first = first
        self.second = second

    def tell(self, message: Any) -> None:
        self.first.tell(message)
        self.second.tell(message)


class BalanceJournal(EngineJournal):
    """The balance actor's journal in the balance process: settlements in full, batches in flight kept."""

    def __init__(self, journal: Journal, in_flight: dict[str, deque[MatchBatch]]) -> None:
        super().__init__(journal)
        self.in_flight = in_flight
        """Per market, the batches sent and not yet settled, oldest first (a snapshot keeps them)."""
        self.outbound: Outbound | None = None
        self._notify: dict[int, _Both] = {}

    def _both(self, notify: Notified) -> Notified:
        if self.outbound is None:
            return notify
        both = self._notify.get(id(notify))
        if both is None or both.first is not notify:
            both = self._notify[id(notify)] = _Both(notify, self.outbound)
        return both

    def sent(self, batch: MatchBatch) -> None:
        """A batch the balance actor sends (from its thread, before the record of the commands it came from)."""
        self.in_flight.setdefault(batch.market, deque()).append(batch)

    def commands(self, batch: CommandBatch, notify: Notified) -> int | None:
        lsn = super().commands(batch, self._both(notify))
        if self.outbound is not None:
            self.outbound.sealed(lsn)
        return lsn

    def settled(self, settlement: Settlement, notify: Notified) -> int:
        queue = self.in_flight.get(settlement.market)
        if queue and queue[0].batch_no == settlement.batch_no:
            queue.popleft()
        else:
            log.error(
                "settlement %d of %s does not settle the oldest batch in flight", settlement.batch_no, settlement.market
            )
        lsn = self.journal.append(pack(settlement), notify=self._both(notify))
        if self.outbound is not None:
            self.outbound.settled(settlement, lsn)
        return lsn


class BalancePersistence(Persistence):
    """The balance process's persistence (see the module docstring)."""

    role = "balance"

    def __init__(self, data_dir: Any, **options: Any) -> None:
        super().__init__(data_dir, **options)
        self.journal: BalanceJournal | None = None

    @property
    def stage_journal(self) -> BalanceJournal | None:
        return self.journal

    def recover(self, max_open_orders_per_user: int) -> Replayed:
        """The balance core from the newest snapshot and the journal after it; `unmatched` holds the batches in
        flight (sent, not settled), the same deques the journal then keeps up to date."""
        started = time.perf_counter()
        snapshot = self._prepare()
        in_flight: dict[str, deque[MatchBatch]] = {}
        if snapshot is not None:
            balance = BalanceCore.from_state(snapshot["balance"])
            for batch in msgspec.convert(snapshot["in_flight"], list[MatchBatch]):
                in_flight.setdefault(batch.market, deque()).append(batch)
            balance.pending = {c.seq: c for queue in in_flight.values() for b in queue for c in b.commands}
            start_lsn = int(snapshot["lsn"])
        else:
            balance, start_lsn = BalanceCore(max_open_orders_per_user), 0
        balance.max_open_orders_per_user = max_open_orders_per_user
        self._check_journal_start(snapshot)
        sink = self.history.on_events if self.history is not None else None
        records = read_records(self.journal_dir, after_lsn=start_lsn)
        replayed = replay_balance(balance, in_flight, records, start_lsn, sink)
        self.journal = BalanceJournal(self._open_journal(start_lsn, replayed.last_lsn, replayed.records), in_flight)
        log.info(
            "recovered from %s: snapshot at record %d, %d journal records replayed in %.2fs; %d markets, %d users, "
            "%d batches in flight",
            self.data_dir,
            start_lsn,
            replayed.records,
            time.perf_counter() - started,
            len(balance.ledger.markets),
            len(balance.ledger.users()),
            sum(len(queue) for queue in in_flight.values()),
        )
        return replayed

    def can_snapshot(self, balance: BalanceCore) -> bool:
        """Always: the batches in flight are part of the snapshot."""
        return True

    def snapshot(self, balance: BalanceCore, *, wait: bool = False) -> None:
        assert self.journal is not None
        in_flight = [batch for queue in self.journal.in_flight.values() for batch in queue]
        state = {"balance": balance.to_state(without_pending=True), "markets": {}, "in_flight": in_flight}
        self.write_state(state, wait=wait)


def replay_balance(
    balance: BalanceCore,
    in_flight: dict[str, deque[MatchBatch]],
    records: Iterable[tuple[int, bytes]],
    start_lsn: int,
    events: Callable[[list[Event]], None] | None = None,
) -> Replayed:
    """Feed the balance process's journal records through `balance`; `in_flight` ends with what is unsettled."""
    state = Replayed(balance, {}, unmatched=in_flight, last_lsn=start_lsn)
    for lsn, payload in records:
        try:
            record = unpack(payload, BalanceRecord)
        except WireError as error:
            raise ReplayError(lsn, f"does not decode: {error}") from None
        if isinstance(record, CommandBatch):
            effects = balance.handle_commands(record)
            for match in effects.batches:
                in_flight.setdefault(match.market, deque()).append(match)
        else:
            queue = in_flight.get(record.market)
            if not queue or queue[0].batch_no != record.batch_no:
                raise ReplayError(lsn, f"settlement of {record.market} batch {record.batch_no} settles no batch sent")
            queue.popleft()
            effects = balance.handle_settlement(record)
        if events is not None and effects.events:
            events(effects.events)
        state.last_lsn = lsn
        state.records += 1
        if state.records % PROGRESS_EVERY == 0:
            log.info("recovery: %d journal records replayed (at record %d)", state.records, lsn)
    return state


# --------------------------------------------------------------------------------------------- market shard
class ShardJournal(StageJournal):
    """A market shard's side of its journal: the stream entries it consumed, as it read them."""

    def entry(self, payload: bytes, commands: int, notify: Notified) -> int:
        """Journal one `MatchEntry` (`payload`: packed, as `openbell.core.wire.pack` makes it) holding
        `commands` commands to match. Returns its LSN."""
        self.commands_since_snapshot += commands
        return self.journal.append(payload, notify=notify)


@dataclass
class ShardReplayed:
    markets: dict[str, MarketCore]
    results: dict[tuple[str, int], tuple[Settlement, list[Event]]] = field(default_factory=dict)
    """(market, batch number) -> what matching it made, for the batches recovery was asked to keep."""
    last_lsn: int = 0
    records: int = 0


class ShardPersistence(PersistenceBase):
    """A market shard's persistence (see the module docstring)."""

    def __init__(self, data_dir: Any, shard: int, **options: Any) -> None:
        super().__init__(data_dir, **options)
        self.role = f"markets {shard}"
        self.journal: ShardJournal | None = None

    @property
    def stage_journal(self) -> ShardJournal | None:
        return self.journal

    def recover(self, keep: Collection[tuple[str, int]] = ()) -> ShardReplayed:
        """The market cores from the newest snapshot and the journal after it, and open the journal."""
        started = time.perf_counter()
        snapshot = self._prepare()
        if snapshot is not None:
            markets = {symbol: MarketCore.from_state(state) for symbol, state in snapshot["markets"].items()}
            start_lsn = int(snapshot["lsn"])
        else:
            markets, start_lsn = {}, 0
        self._check_journal_start(snapshot)
        sink = self.history.on_events if self.history is not None else None
        records = read_records(self.journal_dir, after_lsn=start_lsn)
        replayed = replay_shard(markets, records, start_lsn, keep, sink)
        self.journal = ShardJournal(self._open_journal(start_lsn, replayed.last_lsn, replayed.records))
        log.info(
            "recovered from %s: snapshot at record %d, %d journal records replayed in %.2fs; markets %s",
            self.data_dir,
            start_lsn,
            replayed.records,
            time.perf_counter() - started,
            ", ".join(sorted(markets)) or "(none)",
        )
        return replayed

    def snapshot(self, markets: Mapping[str, dict[str, Any]], *, wait: bool = False) -> None:
        """Write the market cores' states (captured just now, with nothing in flight) as a snapshot."""
        self.write_state({"balance": None, "markets": dict(markets)}, wait=wait)


def replay_shard(
    markets: dict[str, MarketCore],
    records: Iterable[tuple[int, bytes]],
    start_lsn: int,
    keep: Collection[tuple[str, int]] = (),
    events: Callable[[list[Event]], None] | None = None,
) -> ShardReplayed:
    """Feed a market shard's journal records through its market cores (made as `HostMarket` items come)."""
    state = ShardReplayed(markets, last_lsn=start_lsn)
    hosted = {symbol: core.spec for symbol, core in markets.items()}
    handled = {symbol: core.batches_handled for symbol, core in markets.items()}
    for lsn, payload in records:
        try:
            record = unpack(payload, ShardRecord)
            items = new_items(record, hosted, handled)
        except WireError as error:
            raise ReplayError(lsn, f"does not decode: {error}") from None
        except OutOfOrder as error:
            raise ReplayError(lsn, str(error)) from None
        for item in items:
            if isinstance(item, HostMarket):
                markets[item.spec.symbol] = MarketCore(item.spec)
                continue
            settlement, published = markets[item.market].handle_batch(item)
            if events is not None and published:
                events(published)
            if (item.market, item.batch_no) in keep:
                state.results[(item.market, item.batch_no)] = (settlement, published)
        state.last_lsn = lsn
        state.records += 1
        if state.records % PROGRESS_EVERY == 0:
            log.info("recovery: %d journal records replayed (at record %d)", state.records, lsn)
    return state
