"""The split deployment's persistence, in one process with real files: the balance process and a market shard
each rebuild exactly their state from their own journal (and snapshot), and know what was in flight.

The stages are driven by hand, as the processes drive them (`BalanceCore` -> `MatchBatch` -> `MarketCore` ->
`Settlement` -> `BalanceCore`), with some batches left unsettled or unsent at the "crash".
"""

from __future__ import annotations

import pathlib
import random
import subprocess
import sys
from collections import deque
from typing import Any

import pytest
from test_engine_concurrency import infy_inr, tata_inr
from test_engine_determinism import book_state, ledger_state

from openbell.core.commands import AddMarket, CancelOrder, Command, Deposit, PlaceOrder
from openbell.core.events import Event
from openbell.core.matching import MarketCore
from openbell.core.messages import CommandBatch, MatchBatch, Settlement
from openbell.core.risk import BalanceCore
from openbell.core.types import OrderType, Side, TimeInForce
from openbell.core.wire import pack
from openbell.durability.persistence import RecoveryError
from openbell.durability.split import (
    BalancePersistence,
    HostMarket,
    MatchEntry,
    OutOfOrder,
    ShardPersistence,
    new_items,
)

MARKETS = (tata_inr(), infy_inr())
USERS = [f"u{n}" for n in range(6)]


class Nobody:
    """A `Notified` that ignores `Durable` (the tests flush the journal themselves)."""

    def tell(self, message: Any) -> None:
        pass


def command_stream(seed: int, orders: int) -> list[list[Command]]:
    """Batches of commands: the markets, deposits, then random limit orders and cancels over both markets."""
    rng = random.Random(seed)
    seq = 0

    def next_seq() -> int:
        nonlocal seq
        seq += 1
        return seq

    batches: list[list[Command]] = [[AddMarket(next_seq(), 0, spec) for spec in MARKETS]]
    batches.append(
        [
            Deposit(next_seq(), 0, user, asset, 10**9, f"{user}-{asset}")
            for user in USERS
            for asset in ("TATA", "INFY", "INR")
        ]
    )
    placed: list[tuple[int, str, str]] = []
    batch: list[Command] = []
    for _ in range(orders):
        user = rng.choice(USERS)
        if placed and rng.random() < 0.15:
            order_id, market, owner = placed.pop(rng.randrange(len(placed)))
            batch.append(CancelOrder(next_seq(), 1, owner, market, order_id))
        else:
            spec = rng.choice(MARKETS)
            side = rng.choice([Side.BUY, Side.SELL])
            price = 10_000 + rng.randint(-8, 8)
            command = PlaceOrder(
                next_seq(), 1, user, spec.symbol, side, OrderType.LIMIT, TimeInForce.GTC, price, rng.randint(1, 5)
            )
            placed.append((command.seq, spec.symbol, user))
            batch.append(command)
        if len(batch) >= rng.randint(1, 12):
            batches.append(batch)
            batch = []
    if batch:
        batches.append(batch)
    return batches


class BalanceProcess:
    """A balance process without threads: its core, its journal, and the markets (here) that settle its batches."""

    def __init__(self, data_dir: pathlib.Path, **options: Any) -> None:
        self.persistence = BalancePersistence(data_dir, fsync=False, **options)
        replayed = self.persistence.recover(1000)
        self.core = replayed.balance
        self.unsent: dict[str, deque[MatchBatch]] = {m: deque(q) for m, q in replayed.unmatched.items()}
        """Batches sent and not yet matched by the stand-in markets below."""
        assert self.persistence.journal is not None
        self.journal = self.persistence.journal

    def handle(self, commands: list[Command]) -> None:
        effects = self.core.handle_commands(CommandBatch(tuple(commands)))
        for batch in effects.batches:
            self.journal.sent(batch)
            self.unsent.setdefault(batch.market, deque()).append(batch)
        self.journal.commands(CommandBatch(tuple(commands)), Nobody())

    def settle(self, markets: dict[str, MarketCore], rng: random.Random) -> None:
        """Match and settle some of the unsent batches, oldest first per market."""
        for symbol, queue in self.unsent.items():
            while queue and rng.random() < 0.7:
                settlement, _ = markets[symbol].handle_batch(queue.popleft())
                self.core.handle_settlement(settlement)
                self.journal.settled(settlement, Nobody())

    def crash(self) -> None:
        """Everything appended is on disk (a process crash loses nothing the kernel has); no snapshot."""
        assert self.journal.journal.flush(10)
        self.persistence.close()


def test_a_restarted_balance_process_has_the_same_ledger_and_the_same_batches_in_flight(tmp_path: pathlib.Path) -> None:
    # Arrange: a run that leaves batches in flight at its "crash".
    rng = random.Random(7)
    process = BalanceProcess(tmp_path)
    markets = {spec.symbol: MarketCore(spec) for spec in MARKETS}
    for commands in command_stream(7, 400):
        process.handle(commands)
        process.settle(markets, rng)
    in_flight = {m: list(q) for m, q in process.journal.in_flight.items() if q}
    assert in_flight, "the run must end with batches in flight"
    expected = ledger_state(process.core.ledger), dict(process.core.pending), dict(process.core.batches_sent)
    process.crash()

    # Act: recover from the journal alone.
    restarted = BalanceProcess(tmp_path)

    # Assert: the same ledger, pending commands and numbering; the same batches in flight, to be sent again.
    assert (ledger_state(restarted.core.ledger), restarted.core.pending, restarted.core.batches_sent) == expected
    assert {m: list(q) for m, q in restarted.journal.in_flight.items() if q} == in_flight


def test_a_balance_snapshot_taken_with_batches_in_flight_restores_them_and_the_run_goes_on_the_same(
    tmp_path: pathlib.Path,
) -> None:
    # Arrange: the same run twice: once straight, once with a snapshot mid-way and a crash after it.
    stream = command_stream(11, 400)
    half = len(stream) // 2

    def run(directory: pathlib.Path, snapshot_at: int | None) -> tuple[Any, ...]:
        rng = random.Random(11)
        process = BalanceProcess(directory, snapshot_every_commands=10**9)
        markets = {spec.symbol: MarketCore(spec) for spec in MARKETS}
        for index, commands in enumerate(stream):
            if index == snapshot_at:
                assert process.core.pending, "the snapshot must be taken with commands in flight"
                process.persistence.snapshot(process.core, wait=True)
                process.crash()
                process = BalanceProcess(directory, snapshot_every_commands=10**9)
            process.handle(commands)
            process.settle(markets, rng)
        return ledger_state(process.core.ledger), process.core.pending, process.core.batches_sent

    # Act / Assert: the snapshot holds the batches in flight, so the interrupted run ends the same.
    assert run(tmp_path / "snapshotted", half) == run(tmp_path / "straight", None)
    assert list((tmp_path / "snapshotted" / "snapshots").glob("snapshot-*.bin"))


def entry(*items: HostMarket | MatchBatch) -> MatchEntry:
    return MatchEntry(items)


def batches_for(stream: list[list[Command]]) -> list[MatchBatch]:
    """The MatchBatches a balance stage makes of `stream`."""
    core = BalanceCore(1000)
    out: list[MatchBatch] = []
    for commands in stream:
        out.extend(core.handle_commands(CommandBatch(tuple(commands))).batches)
    return out


def test_a_shard_skips_a_market_hosted_again_and_batches_it_has_matched() -> None:
    spec = tata_inr()
    first, second = (MatchBatch(spec.symbol, (), 1), MatchBatch(spec.symbol, (), 2))
    hosted: dict[str, Any] = {}
    handled: dict[str, int] = {}

    assert new_items(entry(HostMarket(spec), first), hosted, handled) == [HostMarket(spec), first]
    assert new_items(entry(HostMarket(spec), first, second), hosted, handled) == [second]
    assert new_items(entry(first, second), hosted, handled) == []
    assert handled == {spec.symbol: 2}


def test_a_shard_refuses_a_batch_that_skips_a_number_and_changes_nothing() -> None:
    spec = tata_inr()
    hosted: dict[str, Any] = {spec.symbol: spec}
    handled = {spec.symbol: 1}

    with pytest.raises(OutOfOrder):
        new_items(entry(MatchBatch(spec.symbol, (), 2), MatchBatch(spec.symbol, (), 4)), hosted, handled)
    with pytest.raises(OutOfOrder):
        new_items(entry(MatchBatch("INFY_INR", (), 1)), hosted, handled)

    assert handled == {spec.symbol: 1}


def test_a_restarted_shard_has_the_same_books_and_gives_back_what_its_pending_entries_made(
    tmp_path: pathlib.Path,
) -> None:
    # Arrange: a shard's entries as a balance process would write them, some batches sent twice.
    batches = batches_for(command_stream(5, 300))
    entries = [entry(*(HostMarket(spec) for spec in MARKETS))]
    for index in range(0, len(batches), 3):
        chunk = batches[index : index + 3]
        entries.append(entry(*chunk))
        if index % 4 == 0:
            entries.append(entry(*chunk))  # a redelivery after a restart of the balance process
    persistence = ShardPersistence(tmp_path, 0, fsync=False)
    persistence.recover()
    assert persistence.journal is not None
    live = {spec.symbol: MarketCore(spec) for spec in MARKETS}
    made: dict[tuple[str, int], tuple[Settlement, list[Event]]] = {}
    hosted: dict[str, Any] = {}
    handled: dict[str, int] = {}
    for item_entry in entries:
        items = new_items(item_entry, hosted, handled)
        if items:
            persistence.journal.entry(pack(item_entry), 0, Nobody())
        for item in items:
            if isinstance(item, MatchBatch):
                made[(item.market, item.batch_no)] = live[item.market].handle_batch(item)
    assert persistence.journal.journal.flush(10)
    persistence.close()
    pending = {(batch.market, batch.batch_no) for batch in entries[-1].items if isinstance(batch, MatchBatch)}

    # Act: recover, keeping what the entries still pending made.
    restarted = ShardPersistence(tmp_path, 0, fsync=False)
    replayed = restarted.recover(keep=pending)
    restarted.close()

    # Assert: every batch matched once (the same books); the kept results are what the live run made.
    assert set(replayed.markets) == set(live)
    for symbol, core in live.items():
        assert book_state(replayed.markets[symbol].book) == book_state(core.book), symbol
        assert replayed.markets[symbol].batches_handled == core.batches_handled
    assert replayed.results == {key: made[key] for key in pending}


def test_a_data_directory_of_one_kind_of_process_is_refused_by_another(tmp_path: pathlib.Path) -> None:
    shard = ShardPersistence(tmp_path, 0, fsync=False)
    shard.recover()
    shard.close()

    with pytest.raises(RecoveryError, match="'markets 0' process"):
        BalancePersistence(tmp_path, fsync=False).recover(1000)
    with pytest.raises(RecoveryError, match="'markets 0' process"):
        ShardPersistence(tmp_path, 1, fsync=False).recover()


def test_inspect_reads_the_data_directories_of_the_balance_process_and_of_a_shard(tmp_path: pathlib.Path) -> None:
    # Arrange: a balance process's directory with batches in flight, and a shard's with books.
    rng = random.Random(3)
    process = BalanceProcess(tmp_path / "balance")
    markets = {spec.symbol: MarketCore(spec) for spec in MARKETS}
    for commands in command_stream(3, 200):
        process.handle(commands)
        process.settle(markets, rng)
    last = PlaceOrder(10**6, 2, USERS[0], "TATA_INR", Side.BUY, OrderType.LIMIT, TimeInForce.GTC, 9_000, 1)
    process.handle([last])  # never settled: in flight
    process.crash()
    shard = ShardPersistence(tmp_path / "shard", 0, fsync=False)
    shard.recover()
    assert shard.journal is not None
    shard.journal.entry(pack(entry(*(HostMarket(spec) for spec in MARKETS))), 0, Nobody())
    for batch in batches_for(command_stream(3, 200)):
        shard.journal.entry(pack(entry(batch)), len(batch.commands), Nobody())
    assert shard.journal.journal.flush(10)
    shard.close()

    # Act
    balance_report = run_inspect(tmp_path / "balance")
    shard_report = run_inspect(tmp_path / "shard")

    # Assert: each says what kept it and what it holds, and that its invariants hold.
    assert balance_report.returncode == 0, balance_report.stdout + balance_report.stderr
    assert "kept by: balance process" in balance_report.stdout
    assert "in flight at the end of the journal" in balance_report.stdout
    assert balance_report.stdout.strip().splitlines()[-1] == "funds conserved per asset; balances non-negative: OK"
    assert shard_report.returncode == 0, shard_report.stdout + shard_report.stderr
    assert "kept by: markets 0 process" in shard_report.stdout
    assert any(line.strip().startswith("TATA_INR: ") for line in shard_report.stdout.splitlines())
    assert shard_report.stdout.strip().splitlines()[-1] == "books uncrossed: OK"


def run_inspect(data_dir: pathlib.Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "run.py", "inspect", "--data-dir", str(data_dir)],
        cwd=pathlib.Path(__file__).resolve().parent.parent,
        capture_output=True,
        text=True,
        timeout=60,
    )
