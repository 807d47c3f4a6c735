"""`python run.py inspect --data-dir DIR`: what a data directory holds, and whether its funds add up.

It recovers the state exactly as a restart would (newest snapshot + journal replay), without
touching the files (a torn tail is reported, not cut), and prints snapshot positions, journal size,
users, markets, open orders and totals per asset (prices and amounts as the API prints them), then
checks the invariants: funds conserved per asset, nothing negative, locked equal to what open orders
hold, books uncrossed (explicit checks, kept under `python -O`). A corrupt or unreadable directory is
reported in one line, exit status 1.

The directory's `ROLE` says what it holds: an engine's (everything above), the balance process's (users,
funds and the batches in flight; the books are in the shards' directories) or a market shard's (its
markets' books; the funds are in the balance process's directory).
"""

from __future__ import annotations

import argparse
import pathlib
import sys
from collections import deque
from collections.abc import Iterable
from typing import Any

import msgspec

from openbell.core.grid import Asset
from openbell.core.matching import MarketCore
from openbell.core.messages import MatchBatch
from openbell.core.risk import BalanceCore
from openbell.core.types import InvariantViolation
from openbell.durability import snapshots
from openbell.durability.journal import JournalCorrupt, JournalFormatError, read_records, segments
from openbell.durability.persistence import ROLE_FILE
from openbell.durability.records import ReplayError, replay
from openbell.durability.split import replay_balance, replay_shard


def main(argv: list[str]) -> int:
    parser = argparse.ArgumentParser(prog="python run.py inspect", description=__doc__)
    parser.add_argument("--data-dir", default="./data", help="the data directory (default ./data)")
    args = parser.parse_args(argv)
    data_dir = pathlib.Path(args.data_dir)
    journal_dir, snapshot_dir = data_dir / "journal", data_dir / "snapshots"
    if not data_dir.is_dir():
        print(f"{data_dir}: no such directory", file=sys.stderr)
        return 2
    try:
        files = snapshots.snapshot_files(snapshot_dir) if snapshot_dir.is_dir() else []
        print(f"data directory: {data_dir.resolve()}")
        print(f"snapshots: {', '.join(str(lsn) for lsn, _ in files) or 'none'}")
        found = segments(journal_dir) if journal_dir.is_dir() else []
        size = sum(path.stat().st_size for _, path in found)
        print(f"journal: {len(found)} segment(s), {size:,} bytes, first record {found[0][0] if found else '-'}")
        role_file = data_dir / ROLE_FILE
        role = role_file.read_text().strip() if role_file.exists() else "engine"
        print(f"kept by: {role} process")
        snapshot = snapshots.load_newest(snapshot_dir) if snapshot_dir.is_dir() else None
        start = int(snapshot["lsn"]) if snapshot is not None else 0
        records = read_records(journal_dir, after_lsn=start, repair=False)
        balance: BalanceCore | None
        if role == "balance":
            balance, books, in_flight, replayed_records, last = _balance_process(snapshot, records, start)
        elif role.startswith("markets"):
            balance = None
            books, in_flight, replayed_records, last = _market_shard(snapshot, records, start)
        else:
            balance, books, in_flight, replayed_records, last = _engine(snapshot, records, start)
    except (JournalCorrupt, ReplayError) as error:
        print(f"CORRUPT: {error}", file=sys.stderr)
        return 1
    except (JournalFormatError, snapshots.SnapshotFormatError) as error:
        print(f"UNREADABLE: {error}", file=sys.stderr)
        return 1
    print(f"state: snapshot at record {start}, {replayed_records} journal records after it, last record {last}")
    if in_flight:
        print(f"in flight at the end of the journal (finished on the next start): {in_flight} batch(es)")
    if balance is not None:
        print(f"users: {len([u for u in balance.ledger.users() if not u.startswith('#')])}")
    if role != "balance":
        print("markets:")
        for symbol, core in sorted(books.items()):
            book, spec = core.book, core.spec
            best_bid = spec.format_price(book.best_bid) if book.best_bid is not None else "-"
            best_ask = spec.format_price(book.best_ask) if book.best_ask is not None else "-"
            print(
                f"  {symbol}: {len(book)} open orders, {len(book.stops)} waiting stops, best bid {best_bid}, "
                f"best ask {best_ask}, update id {book.update_id}, trades {book.next_trade_id - 1}"
            )
    problems = _funds(balance, books if role != "balance" else None, in_flight) if balance is not None else []
    for symbol, core in books.items():
        try:
            core.book.check_invariants()
        except InvariantViolation as error:
            problems.append(f"{symbol}: {error}")
    report_set_aside(data_dir)
    if problems:
        for problem in problems:
            print(f"PROBLEM: {problem}")
        return 1
    if role.startswith("markets"):
        print("books uncrossed: OK")
    elif role == "balance":
        print("funds conserved per asset; balances non-negative: OK")
    else:
        print("funds conserved per asset; balances non-negative; holds match open orders; books uncrossed: OK")
    return 0


def _engine(snapshot: dict[str, Any] | None, records: Iterable[tuple[int, bytes]], start: int) -> Any:
    if snapshot is not None:
        balance = BalanceCore.from_state(snapshot["balance"])
        markets = {symbol: MarketCore.from_state(state) for symbol, state in snapshot["markets"].items()}
    else:
        balance, markets = BalanceCore(), {}
    replayed = replay(balance, markets, records, start)
    in_flight = sum(len(q) for q in replayed.unmatched.values()) + sum(len(q) for q in replayed.unsettled.values())
    return balance, markets, in_flight, replayed.records, replayed.last_lsn


def _balance_process(snapshot: dict[str, Any] | None, records: Iterable[tuple[int, bytes]], start: int) -> Any:
    in_flight: dict[str, deque[MatchBatch]] = {}
    if snapshot is not None:
        balance = BalanceCore.from_state(snapshot["balance"])
        for batch in msgspec.convert(snapshot["in_flight"], list[MatchBatch]):
            in_flight.setdefault(batch.market, deque()).append(batch)
        balance.pending = {c.seq: c for queue in in_flight.values() for b in queue for c in b.commands}
    else:
        balance = BalanceCore()
    replayed = replay_balance(balance, in_flight, records, start)
    print(
        f"markets (their books are in the market shards' data directories): {', '.join(sorted(balance.ledger.markets))}"
    )
    return balance, {}, sum(len(q) for q in in_flight.values()), replayed.records, replayed.last_lsn


def _market_shard(snapshot: dict[str, Any] | None, records: Iterable[tuple[int, bytes]], start: int) -> Any:
    markets = {symbol: MarketCore.from_state(state) for symbol, state in (snapshot or {}).get("markets", {}).items()}
    replayed = replay_shard(markets, records, start)
    return markets, 0, replayed.records, replayed.last_lsn


def _funds(balance: BalanceCore, books: dict[str, MarketCore] | None, in_flight: int) -> list[str]:
    """Print totals per asset; the problems found (conservation, and holds against the books if given)."""
    ledger = balance.ledger
    print("totals per asset (all accounts / deposited):")
    totals, deposited = ledger.totals(), ledger.deposited()
    for name in sorted(set(totals) | set(deposited)):
        asset = ledger.assets.get(name) or Asset(name, 0)
        print(f"  {name}: {asset.format_amount(totals.get(name, 0))} / {asset.format_amount(deposited.get(name, 0))}")
    problems = []
    try:
        ledger.check_invariants()
    except InvariantViolation as error:
        problems.append(f"ledger: {error}")
    if books is not None and not in_flight:
        resting = {o.order_id for core in books.values() for o in core.book.orders()}
        waiting = {stop.seq for core in books.values() for stop in core.book.stops.orders()}
        if resting | waiting != set(ledger.holds):
            problems.append("open orders on the books (and waiting stops) differ from the holds in the ledger")
    return problems


def report_set_aside(data_dir: pathlib.Path) -> None:
    """Events the history database refused (kept by the history writer); the venue's own state is not affected."""
    from openbell.history.writer import REJECTED_FILE, read_set_aside

    path = data_dir / REJECTED_FILE
    if not path.exists():
        print("history: no events set aside")
        return
    rejected = read_set_aside(path)
    print(f"history: {len(rejected)} event(s) the database refused are set aside in {path}:")
    for item in rejected[-5:]:
        print(f"  {item.get('key')}: {item.get('error')}")
    if len(rejected) > 5:
        print(f"  ... and {len(rejected) - 5} older")
