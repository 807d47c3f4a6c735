"""`python run.py inspect --data-dir DIR`: what a data directory holds, and whether its funds add up.

It recovers the state exactly as a restart would (newest snapshot + journal replay), without
touching the files (a torn tail is reported, not cut), and prints snapshot positions, journal size,
users, markets, open orders and totals per asset (prices and amounts as the API prints them), then
checks the invariants: funds conserved per asset, nothing negative, locked equal to what open orders
hold, books uncrossed (explicit checks, kept under `python -O`). A corrupt or unreadable directory is
reported in one line, exit status 1.
"""

from __future__ import annotations

import argparse
import pathlib
import sys

from openbell.core.grid import Asset
from openbell.core.matching import MarketCore
from openbell.core.risk import BalanceCore
from openbell.core.types import InvariantViolation
from openbell.durability import snapshots
from openbell.durability.journal import JournalCorrupt, JournalFormatError, read_records, segments
from openbell.durability.records import ReplayError, replay


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
        snapshot = snapshots.load_newest(snapshot_dir) if snapshot_dir.is_dir() else None
        if snapshot is not None:
            balance = BalanceCore.from_state(snapshot["balance"])
            markets = {symbol: MarketCore.from_state(state) for symbol, state in snapshot["markets"].items()}
            start = int(snapshot["lsn"])
        else:
            balance, markets, start = BalanceCore(), {}, 0
        replayed = replay(balance, markets, read_records(journal_dir, after_lsn=start, repair=False), start)
    except (JournalCorrupt, ReplayError) as error:
        print(f"CORRUPT: {error}", file=sys.stderr)
        return 1
    except (JournalFormatError, snapshots.SnapshotFormatError) as error:
        print(f"UNREADABLE: {error}", file=sys.stderr)
        return 1
    print(
        f"state: snapshot at record {start}, {replayed.records} journal records after it, last record {replayed.last_lsn}"
    )
    in_flight = sum(len(q) for q in replayed.unmatched.values()) + sum(len(q) for q in replayed.unsettled.values())
    if in_flight:
        print(f"in flight at the end of the journal (finished on the next start): {in_flight} batch(es)")
    ledger = balance.ledger
    users = [u for u in ledger.users() if not u.startswith("#")]
    print(f"users: {len(users)}")
    print("markets:")
    for symbol, core in sorted(markets.items()):
        book, spec = core.book, core.spec
        best_bid = spec.format_price(book.best_bid) if book.best_bid is not None else "-"
        best_ask = spec.format_price(book.best_ask) if book.best_ask is not None else "-"
        print(
            f"  {symbol}: {len(book)} open orders, best bid {best_bid}, best ask {best_ask}, "
            f"update id {book.update_id}, trades {book.next_trade_id - 1}"
        )
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
    for symbol, core in markets.items():
        try:
            core.book.check_invariants()
        except InvariantViolation as error:
            problems.append(f"{symbol}: {error}")
    if not in_flight:
        resting = {o.order_id for core in markets.values() for o in core.book.orders()}
        if resting != set(ledger.holds):
            problems.append("open orders on the books differ from the holds in the ledger")
    report_set_aside(data_dir)
    if problems:
        for problem in problems:
            print(f"PROBLEM: {problem}")
        return 1
    print("funds conserved per asset; balances non-negative; holds match open orders; books uncrossed: OK")
    return 0


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
