"""`python run.py replay --data-dir D --at SEQ [--out FILE] [--verify]`: the venue as it was just after command
SEQ, rebuilt from the snapshot before it and the journal, and a check of a whole journal.

The venue "just after command SEQ" is every command numbered SEQ or less applied and fully matched and settled,
and no later one: replay starts from the newest snapshot taken after a command numbered at most SEQ (each
snapshot's balance stage says the last command it had handled), replays the journal in its own order up to the
batch that holds SEQ, keeps that batch's commands up to SEQ only, then finishes what they left in flight: the
markets match the batches sent and the balance stage applies their settlements. Matching is a function of each
market's batches in order, and a settlement adds and moves funds by amounts that do not depend on when it is
applied, so the result is the state the venue had once SEQ's effects were all in, without any later command.

Layouts (the data directory's `ROLE`):
- an engine's (embedded or `run.py engine`): books, balances and open orders;
- the balance process's (`DATA_DIR/balance` of the sharded layout): balances and open orders. The settlements of
  the batches in flight at SEQ are the ones the balance process journaled later, kept for the commands up to SEQ;
  a batch whose settlement was never journaled stays held and is counted in `unsettledBatches`;
- a sharded cluster's `DATA_DIR` (`balance/` and `markets-K/`): the above, and the books from each market shard's
  directory. The balance stage at the cut says how many batches it had sent each market (the last one cut after
  SEQ); each shard starts from its newest snapshot whose markets had matched no more than that, and replays its
  journal's batches up to that number, the last one cut after SEQ too.

`--verify` replays the whole journal from the oldest snapshot (or from empty, when the journal starts at record
1) and at every later snapshot's position checks that funds are conserved per asset (accounts hold exactly what
was deposited), nothing is negative, holds equal what open orders hold, the books are uncrossed, and that the
replayed state equals the snapshot written there. Nothing here writes to the data directory (a torn tail is read
as recovery would read it, and left in place).
"""

from __future__ import annotations

import argparse
import pathlib
import sys
from collections import deque
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field
from typing import Any

import msgspec

from openbell.core.grid import Asset
from openbell.core.matching import MarketCore
from openbell.core.messages import CommandBatch, MatchBatch, Settlement
from openbell.core.risk import BalanceCore
from openbell.core.types import InvariantViolation
from openbell.core.wire import WireError, pack, unpack
from openbell.durability import snapshots
from openbell.durability.journal import JournalCorrupt, JournalFormatError, read_records, segments
from openbell.durability.persistence import ROLE_FILE
from openbell.durability.records import JournalRecord, ReplayError, replay
from openbell.durability.split import (
    BalanceRecord,
    HostMarket,
    OutOfOrder,
    ShardRecord,
    new_items,
    replay_balance,
)

Records = Iterable[tuple[int, bytes]]


class AuditError(Exception):
    """The request cannot be answered from this directory (a one-line reason)."""


@dataclass
class VenueAt:
    """The venue rebuilt at one point."""

    at_seq: int
    layout: str
    balance: BalanceCore
    markets: dict[str, MarketCore] | None
    """None: the books are in other directories (the balance process's layout)."""
    snapshot_lsn: int = 0
    snapshot_seq: int = 0
    records: int = 0
    """Journal records replayed after the snapshot."""
    unsettled_batches: int = 0


@dataclass
class Source:
    """A data directory as replay reads it."""

    data_dir: pathlib.Path
    layout: str
    snapshots: list[tuple[int, dict[str, Any]]] = field(default_factory=list)
    """(LSN, state) of every snapshot that loads, oldest first."""
    journal_from: int = 0
    """The first LSN the journal holds (0: empty)."""
    shards: list[pathlib.Path] = field(default_factory=list)
    """A sharded cluster's market shard directories (`markets-K`), when given its `DATA_DIR`."""


# --------------------------------------------------------------------------------------------- reading
def open_source(data_dir: pathlib.Path) -> Source:
    """The directory's layout, snapshots and journal start; AuditError if it is not a data directory."""
    if not data_dir.is_dir():
        raise AuditError(f"{data_dir}: no such directory")
    shards: list[pathlib.Path] = []
    if not (data_dir / ROLE_FILE).exists() and (data_dir / "balance" / ROLE_FILE).exists():
        shards = sorted(path for path in data_dir.glob("markets-*") if (path / ROLE_FILE).exists())
        data_dir = data_dir / "balance"  # a sharded cluster's DATA_DIR: the funds are in its balance process's
    role_file = data_dir / ROLE_FILE
    role = role_file.read_text().strip() if role_file.exists() else "engine"
    if role.startswith("markets"):
        raise AuditError(
            f"{data_dir} is a market shard's directory ({role}): it holds books only; replay the balance "
            "process's directory (DATA_DIR/balance), or inspect this one with `python run.py inspect`"
        )
    journal_dir, snapshot_dir = data_dir / "journal", data_dir / "snapshots"
    if not journal_dir.is_dir() and not snapshot_dir.is_dir():
        raise AuditError(f"{data_dir} holds no journal and no snapshots: is it an openbell data directory?")
    source = Source(data_dir, role, shards=shards)
    if snapshot_dir.is_dir():
        for lsn, path in snapshots.snapshot_files(snapshot_dir):
            state = snapshots.load(path, lsn)
            if state is not None:
                source.snapshots.append((lsn, state))
    found = segments(journal_dir) if journal_dir.is_dir() else []
    source.journal_from = found[0][0] if found else 0
    return source


def _records(source: Source, after_lsn: int) -> Iterator[tuple[int, bytes]]:
    journal_dir = source.data_dir / "journal"
    if not journal_dir.is_dir():
        return iter(())
    return read_records(journal_dir, after_lsn=after_lsn, repair=False)


def _start(source: Source, state: dict[str, Any] | None, max_open: int) -> tuple[BalanceCore, Any]:
    """The cores at a snapshot (or empty): (balance, markets for an engine / batches in flight for a balance)."""
    if state is None:
        return BalanceCore(max_open), {}
    balance = BalanceCore.from_state(state["balance"])
    if source.layout == "engine":
        return balance, {symbol: MarketCore.from_state(s) for symbol, s in state["markets"].items()}
    in_flight: dict[str, deque[MatchBatch]] = {}
    for batch in msgspec.convert(state.get("in_flight", []), list[MatchBatch]):
        in_flight.setdefault(batch.market, deque()).append(batch)
    balance.pending = {c.seq: c for queue in in_flight.values() for b in queue for c in b.commands}
    return balance, in_flight


# --------------------------------------------------------------------------------------------- at SEQ
def venue_at(data_dir: pathlib.Path, seq: int) -> VenueAt:
    """The venue just after command `seq`. AuditError if `seq` is outside what the directory can show."""
    source = open_source(data_dir)
    if seq < 1:
        raise AuditError(f"--at {seq}: command numbers start at 1")
    chosen: tuple[int, dict[str, Any]] | None = None
    for lsn, state in source.snapshots:
        if state["balance"]["last_seq"] <= seq:
            chosen = (lsn, state)
    if chosen is None and source.snapshots and source.journal_from > 1:
        oldest = source.snapshots[0][1]["balance"]["last_seq"]
        raise AuditError(
            f"--at {seq}: out of range: the journal before the oldest snapshot (after command {oldest}) is pruned; "
            f"the earliest command this directory can show is {oldest}"
        )
    default_open = source.snapshots[0][1]["balance"]["max_open_orders_per_user"] if source.snapshots else 1000
    start_lsn, start_state = chosen if chosen is not None else (0, None)
    balance, held = _start(source, start_state, default_open)
    venue = VenueAt(seq, source.layout, balance, held if source.layout == "engine" else None, start_lsn)
    venue.snapshot_seq = balance.last_seq
    cut = _Cut(seq, JournalRecord if source.layout == "engine" else BalanceRecord)
    records = _records(source, start_lsn)
    if source.layout == "engine":
        replayed = replay(balance, held, cut.through(records), start_lsn)
        _finish_in_flight(balance, held, replayed.unmatched, replayed.unsettled)
    else:
        replayed = replay_balance(balance, held, cut.through(records), start_lsn)
        sent = dict(balance.batches_sent)
        venue.unsettled_batches = _settle_from_journal(balance, held, records, seq, cut.decode)
        if source.shards:
            venue.layout = "sharded"
            venue.markets = {}
            for shard_dir in source.shards:
                venue.markets.update(_shard_books(shard_dir, sent, seq))
    last_known = max(cut.last_seq, venue.snapshot_seq)
    if not cut.reached and seq > last_known:
        raise AuditError(f"--at {seq}: out of range: the last command this directory holds is {last_known}")
    venue.records = replayed.records
    return venue


class _Cut:
    """Journal records up to the one holding command `seq`, that one cut after `seq`."""

    def __init__(self, seq: int, kind: Any) -> None:
        self.seq = seq
        self.kind = kind
        self.reached = False
        self.last_seq = 0

    def decode(self, lsn: int, payload: bytes) -> Any:
        try:
            return unpack(payload, self.kind)
        except WireError as error:
            raise ReplayError(lsn, f"does not decode: {error}") from None

    def through(self, records: Iterator[tuple[int, bytes]]) -> Iterator[tuple[int, bytes]]:
        for lsn, payload in records:
            record = self.decode(lsn, payload)
            if isinstance(record, CommandBatch) and record.commands:
                self.last_seq = max(self.last_seq, max(command.seq for command in record.commands))
                if self.last_seq > self.seq:
                    self.reached = True
                    kept = tuple(command for command in record.commands if command.seq <= self.seq)
                    if kept:
                        yield lsn, pack(CommandBatch(kept))
                    return
                if self.last_seq == self.seq:
                    self.reached = True
            yield lsn, payload


def _finish_in_flight(
    balance: BalanceCore,
    markets: dict[str, MarketCore],
    unmatched: dict[str, deque[MatchBatch]],
    unsettled: dict[str, deque[Settlement]],
) -> None:
    """Match every batch sent and settle every settlement made (per market in order; markets by name)."""
    for market in sorted(unmatched):
        queue = unmatched[market]
        while queue:
            settlement, _ = markets[market].handle_batch(queue.popleft())
            unsettled.setdefault(market, deque()).append(settlement)
    for market in sorted(unsettled):
        made = unsettled[market]
        while made:
            balance.handle_settlement(made.popleft())


def _settle_from_journal(
    balance: BalanceCore, in_flight: dict[str, deque[MatchBatch]], records: Iterator[tuple[int, bytes]], seq: int, decode: Any
) -> int:
    """The balance process's batches in flight at the cut, settled as the journal later records (outcomes of
    commands up to `seq` only). Returns how many batches stay unsettled (their settlement was never journaled)."""
    waiting = sum(len(queue) for queue in in_flight.values())
    for lsn, payload in records:
        if not waiting:
            break
        record = decode(lsn, payload)
        if not isinstance(record, Settlement):
            continue
        queue = in_flight.get(record.market)
        if not queue or queue[0].batch_no != record.batch_no:
            continue  # a batch sent after the cut
        queue.popleft()
        waiting -= 1
        outcomes = tuple(outcome for outcome in record.outcomes if outcome.seq <= seq)
        failed = tuple(number for number in record.failed if number <= seq)
        balance.handle_settlement(msgspec.structs.replace(record, outcomes=outcomes, failed=failed))
    return waiting


def _shard_books(shard_dir: pathlib.Path, sent: dict[str, int], seq: int) -> dict[str, MarketCore]:
    """A market shard's books with each market's batches matched up to `sent[market]`, the last one cut after
    command `seq`."""
    shard = open_source_of_shard(shard_dir)
    chosen: tuple[int, dict[str, Any]] | None = None
    for lsn, state in shard.snapshots:
        if all(m["batches_handled"] <= sent.get(symbol, 0) for symbol, m in state["markets"].items()):
            chosen = (lsn, state)
    if chosen is None and shard.snapshots and shard.journal_from > 1:
        raise AuditError(
            f"--at {seq}: out of range for {shard_dir}: its journal before its oldest snapshot is pruned, and that "
            "snapshot is after the command"
        )
    start_lsn, state = chosen if chosen is not None else (0, {"markets": {}})
    markets = {symbol: MarketCore.from_state(s) for symbol, s in state["markets"].items()}
    hosted = {symbol: core.spec for symbol, core in markets.items()}
    handled = {symbol: core.batches_handled for symbol, core in markets.items()}
    for lsn, payload in _records(shard, start_lsn):
        try:
            items = new_items(unpack(payload, ShardRecord), hosted, handled)
        except WireError as error:
            raise ReplayError(lsn, f"does not decode: {error}") from None
        except OutOfOrder as error:
            raise ReplayError(lsn, str(error)) from None
        for item in items:
            if isinstance(item, HostMarket):
                markets.setdefault(item.spec.symbol, MarketCore(item.spec))
                continue
            last = sent.get(item.market, 0)
            if item.batch_no > last:
                continue
            if item.batch_no == last:
                item = msgspec.structs.replace(item, commands=tuple(c for c in item.commands if c.seq <= seq))
            markets[item.market].handle_batch(item)
    return markets


def open_source_of_shard(shard_dir: pathlib.Path) -> Source:
    source = Source(shard_dir, "markets")
    snapshot_dir, journal_dir = shard_dir / "snapshots", shard_dir / "journal"
    if snapshot_dir.is_dir():
        for lsn, path in snapshots.snapshot_files(snapshot_dir):
            state = snapshots.load(path, lsn)
            if state is not None:
                source.snapshots.append((lsn, state))
    found = segments(journal_dir) if journal_dir.is_dir() else []
    source.journal_from = found[0][0] if found else 0
    return source


# --------------------------------------------------------------------------------------------- checks
def problems_of(balance: BalanceCore, markets: dict[str, MarketCore] | None) -> list[str]:
    """Conservation per asset, nothing negative, holds equal to what open orders hold, uncrossed books."""
    problems = []
    try:
        balance.ledger.check_invariants()
    except InvariantViolation as error:
        problems.append(f"ledger: {error}")
    for symbol, core in sorted((markets or {}).items()):
        try:
            core.book.check_invariants()
        except InvariantViolation as error:
            problems.append(f"{symbol}: {error}")
    if markets is not None and not balance.pending:
        resting = {order.order_id for core in markets.values() for order in core.book.orders()}
        waiting = {stop.seq for core in markets.values() for stop in core.book.stops.orders()}
        if resting | waiting != set(balance.ledger.holds):
            problems.append("open orders on the books (and waiting stops) differ from the holds in the ledger")
    return problems


def verify(data_dir: pathlib.Path, out: Any) -> list[str]:
    """Replay the whole journal; at every snapshot after the start, check the invariants and that the replayed
    state equals the snapshot. Prints one line per boundary to `out`; returns the problems found."""
    source = open_source(data_dir)
    if source.journal_from == 1 or not source.snapshots:
        start_lsn, state = 0, None
        checkpoints = source.snapshots
    else:
        start_lsn, state = source.snapshots[0]
        checkpoints = source.snapshots[1:]
    default_open = source.snapshots[0][1]["balance"]["max_open_orders_per_user"] if source.snapshots else 1000
    balance, held = _start(source, state, default_open)
    markets = held if source.layout == "engine" else None
    problems = [f"start (snapshot at record {start_lsn}): {p}" for p in problems_of(balance, markets)]
    print(f"start: {'snapshot at record ' + str(start_lsn) if state else 'empty (the journal starts at record 1)'}", file=out)
    records = _Pushback(_records(source, start_lsn))
    total = 0
    for lsn, snapshot in [*checkpoints, (None, None)]:
        chunk = records.upto(lsn)
        if source.layout == "engine":
            replayed = replay(balance, held, chunk, start_lsn)
            in_flight = sum(map(len, replayed.unmatched.values())) + sum(map(len, replayed.unsettled.values()))
            if in_flight and lsn is not None:
                problems.append(f"record {lsn}: {in_flight} batch(es) in flight at a snapshot")
            if lsn is None and in_flight:
                _finish_in_flight(balance, held, replayed.unmatched, replayed.unsettled)
        else:
            replayed = replay_balance(balance, held, chunk, start_lsn)
        total += replayed.records
        start_lsn = replayed.last_lsn if lsn is None else lsn
        where = f"snapshot at record {lsn}" if lsn is not None else f"end of the journal (record {replayed.last_lsn})"
        found = problems_of(balance, markets)
        if snapshot is not None and _state_of(source, balance, held) != _canonical(
            {key: snapshot[key] for key in _state_keys(source)}
        ):
            found.append("the replayed state differs from the snapshot written there")
        problems += [f"{where}: {p}" for p in found]
        print(f"{where} (command {balance.last_seq}): {'OK' if not found else 'PROBLEM'}", file=out)
    print(f"{total} journal records replayed", file=out)
    return problems


class _Pushback:
    def __init__(self, records: Iterator[tuple[int, bytes]]) -> None:
        self.records = records
        self.next: tuple[int, bytes] | None = None

    def upto(self, lsn: int | None) -> Iterator[tuple[int, bytes]]:
        while True:
            if self.next is None:
                self.next = next(self.records, None)
                if self.next is None:
                    return
            if lsn is not None and self.next[0] > lsn:
                return
            item, self.next = self.next, None
            yield item


def _state_keys(source: Source) -> tuple[str, ...]:
    return ("balance", "markets") if source.layout == "engine" else ("balance", "in_flight")


def _state_of(source: Source, balance: BalanceCore, held: Any) -> Any:
    state: dict[str, Any]
    if source.layout == "engine":
        state = {"balance": balance.to_state(), "markets": {s: core.to_state() for s, core in held.items()}}
    else:
        in_flight = [batch for queue in held.values() for batch in queue]
        state = {"balance": balance.to_state(without_pending=True), "in_flight": in_flight}
    return _canonical(state)


def _canonical(value: Any) -> Any:
    return msgspec.json.decode(msgspec.json.encode(value))


# --------------------------------------------------------------------------------------------- output
def render(venue: VenueAt) -> dict[str, Any]:
    """The venue as JSON: amounts, prices and quantities as the API prints them, ids as strings."""
    ledger = venue.balance.ledger
    assets = ledger.assets
    balances: dict[str, dict[str, dict[str, str]]] = {}
    for user in sorted(ledger.users()):
        account = {}
        for asset, (available, locked) in sorted(ledger.balances(user).items()):
            kind = assets.get(asset) or Asset(asset, 0)
            account[asset] = {"available": kind.format_amount(available), "locked": kind.format_amount(locked)}
        balances[user] = account
    open_orders = []
    for hold in sorted(ledger.holds.values(), key=lambda h: h.order_id):
        spec = ledger.markets[hold.market]
        open_orders.append(
            {
                "orderId": str(hold.order_id),
                "market": hold.market,
                "userId": hold.user_id,
                "side": hold.side.value,
                "type": hold.order_type.value,
                "price": None if hold.price is None else spec.format_price(hold.price),
                "quantity": None if hold.quantity is None else spec.format_quantity(hold.quantity),
                "filled": spec.format_quantity(hold.filled),
                "held": (assets.get(hold.asset) or Asset(hold.asset, 0)).format_amount(hold.amount),
                "heldAsset": hold.asset,
                "clientOrderId": hold.client_order_id,
                "time": hold.ts,
            }
        )
    out: dict[str, Any] = {
        "atSeq": venue.at_seq,
        "layout": venue.layout,
        "snapshot": {"record": venue.snapshot_lsn, "afterCommand": venue.snapshot_seq} if venue.snapshot_lsn else None,
        "journalRecordsReplayed": venue.records,
    }
    if venue.markets is not None:
        books = {}
        for symbol, core in sorted(venue.markets.items()):
            spec, book = core.spec, core.book
            bids, asks = book.depth(len(book) + 1)
            books[symbol] = {
                "bids": [[spec.format_price(p), spec.format_quantity(q)] for p, q in bids],
                "asks": [[spec.format_price(p), spec.format_quantity(q)] for p, q in asks],
                "lastTradeId": book.next_trade_id - 1,
                "lastUpdateId": book.update_id,
                "waitingStops": len(book.stops),
            }
        out["markets"] = books
    else:
        out["markets"] = None
    if venue.layout != "engine":
        out["unsettledBatches"] = venue.unsettled_batches
    out["balances"] = balances
    out["openOrders"] = open_orders
    return out


def main(args: argparse.Namespace) -> int:
    """`run.py replay`: 0 if all is well, 1 if a check failed or the journal is damaged, 2 for a bad request."""
    data_dir = pathlib.Path(args.data_dir)
    try:
        if args.verify:
            problems = verify(data_dir, sys.stdout)
            for problem in problems:
                print(f"PROBLEM: {problem}")
            if args.at is None:
                return 1 if problems else 0
        else:
            problems = []
        if args.at is None:
            raise AuditError("give --at SEQ (the command to show the venue after), or --verify")
        venue = venue_at(data_dir, args.at)
    except AuditError as error:
        print(f"openbell replay: {error}", file=sys.stderr)
        return 2
    except (JournalCorrupt, ReplayError, JournalFormatError, snapshots.SnapshotFormatError) as error:
        print(f"openbell replay: {error}", file=sys.stderr)
        return 1
    found = problems_of(venue.balance, venue.markets)
    text = msgspec.json.format(msgspec.json.encode(render(venue)), indent=2).decode() + "\n"
    if args.out:
        pathlib.Path(args.out).write_text(text)
    else:
        sys.stdout.write(text)
    for problem in found:
        print(f"PROBLEM after command {args.at}: {problem}", file=sys.stderr)
    return 1 if found or problems else 0
