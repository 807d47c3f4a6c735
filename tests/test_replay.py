"""`python run.py replay`: the venue just after a given command, rebuilt from a snapshot and the journal, equals
what the running engine held at that moment; `--verify` checks every snapshot; bad requests fail in one line.

The engine runs test_recovery's fixed command sequence with a snapshot every few commands, and after each step
the test renders the live engine's state; `replay --at` for that step's command must print the same. A second
scenario writes a journal by hand (the pure cores, as the actors would) so that one command batch holds several
orders and a batch is still in flight when the next one is journaled: a cut inside a batch keeps exactly the
commands up to SEQ.
"""

from __future__ import annotations

import json
import pathlib
import subprocess
import sys
from decimal import Decimal
from typing import Any

import pytest
from core_helpers import tata_inr
from test_recovery import SEQUENCE, WAIT, persistence, run_step, wait_until_settled

from openbell.actors.engine import Engine
from openbell.core.commands import AddMarket, Deposit, PlaceOrder
from openbell.core.matching import MarketCore
from openbell.core.messages import CommandBatch
from openbell.core.risk import BalanceCore
from openbell.core.types import OrderType, Side, TimeInForce
from openbell.core.wire import pack
from openbell.durability.audit import VenueAt, render
from openbell.durability.journal import Journal
from openbell.durability.records import Matched, Settled
from openbell.durability.snapshots import snapshot_files, write_snapshot

ROOT = pathlib.Path(__file__).resolve().parent.parent


def run_replay(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "run.py", "replay", *args], cwd=ROOT, capture_output=True, text=True, timeout=120
    )


def comparable(rendered: dict[str, Any]) -> dict[str, Any]:
    """What replay and the live engine must agree on (the snapshot and record counts are replay's own)."""
    return {key: rendered[key] for key in ("markets", "balances", "openOrders")}


@pytest.fixture(scope="module")
def recorded(tmp_path_factory: pytest.TempPathFactory) -> tuple[pathlib.Path, list[tuple[int, dict[str, Any]]]]:
    """A data directory that ran SEQUENCE (a snapshot every 4 commands, all kept), and after each step the
    command's seq and the live engine's state rendered as replay renders it."""
    data_dir = tmp_path_factory.mktemp("replay") / "data"
    engine = Engine(reply_timeout=WAIT, persistence=persistence(data_dir, snapshot_every_commands=4, keep_snapshots=100))
    engine.start([tata_inr()])
    states = []
    try:
        wait_until_settled(engine)
        order_ids: dict[str, int] = {}
        for step in SEQUENCE:
            reply = run_step(engine, step, order_ids)
            wait_until_settled(engine)
            live = VenueAt(reply.seq, "engine", engine.balance_core, dict(engine.market_cores))
            states.append((reply.seq, comparable(render(live))))
    finally:
        engine.stop()
    return data_dir, states


def test_replay_at_every_command_shows_the_books_balances_and_open_orders_the_engine_had_then(
    recorded: tuple[pathlib.Path, list[tuple[int, dict[str, Any]]]],
) -> None:
    data_dir, states = recorded
    assert len(snapshot_files(data_dir / "snapshots")) >= 4, "the scenario should cross several snapshots"

    for seq, expected in states:
        result = run_replay("--data-dir", str(data_dir), "--at", str(seq))

        assert result.returncode == 0, result.stderr
        assert comparable(json.loads(result.stdout)) == expected, f"after command {seq}"


def test_replay_starts_from_the_newest_snapshot_before_the_command_and_writes_the_file_asked_for(
    recorded: tuple[pathlib.Path, list[tuple[int, dict[str, Any]]]], tmp_path: pathlib.Path
) -> None:
    data_dir, states = recorded
    seq, expected = states[-1]
    out = tmp_path / "venue.json"

    result = run_replay("--data-dir", str(data_dir), "--at", str(seq), "--out", str(out))

    assert result.returncode == 0, result.stderr
    assert result.stdout == ""
    venue = json.loads(out.read_text())
    assert comparable(venue) == expected
    assert venue["snapshot"] is not None and venue["snapshot"]["afterCommand"] <= seq
    assert venue["balances"]["alice"]["INR"] == expected["balances"]["alice"]["INR"]


def test_verify_replays_the_whole_journal_and_every_snapshot_checks_out(
    recorded: tuple[pathlib.Path, list[tuple[int, dict[str, Any]]]],
) -> None:
    data_dir, _ = recorded
    snapshots = len(snapshot_files(data_dir / "snapshots"))

    result = run_replay("--data-dir", str(data_dir), "--verify")

    assert result.returncode == 0, result.stdout + result.stderr
    assert result.stdout.count(": OK") == snapshots + 1  # every snapshot, and the end of the journal
    assert "PROBLEM" not in result.stdout


def test_verify_finds_a_snapshot_that_disagrees_with_the_journal(
    recorded: tuple[pathlib.Path, list[tuple[int, dict[str, Any]]]], tmp_path: pathlib.Path
) -> None:
    import shutil

    from openbell.durability import snapshots

    data_dir = tmp_path / "copy"
    shutil.copytree(recorded[0], data_dir)
    lsn, path = snapshot_files(data_dir / "snapshots")[2]
    state = snapshots.load(path, lsn)
    assert state is not None
    accounts = state["balance"]["ledger"]["accounts"]
    accounts["alice"]["INR"][0] += 1  # one paisa more than the journal gave alice
    write_snapshot(data_dir / "snapshots", lsn, {k: v for k, v in state.items() if k != "lsn"})

    result = run_replay("--data-dir", str(data_dir), "--verify")

    assert result.returncode == 1
    assert f"snapshot at record {lsn}" in result.stdout and "differs from the snapshot" in result.stdout


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["--at", "0"], "command numbers start at 1"),
        (["--at", "100000"], "out of range: the last command this directory holds is"),
        ([], "give --at SEQ"),
    ],
)
def test_a_command_outside_the_journal_is_refused_in_one_line_with_exit_status_2(
    recorded: tuple[pathlib.Path, list[tuple[int, dict[str, Any]]]], args: list[str], message: str
) -> None:
    result = run_replay("--data-dir", str(recorded[0]), *args)

    assert result.returncode == 2
    assert message in result.stderr
    assert len(result.stderr.strip().splitlines()) == 1, result.stderr


def test_a_missing_data_directory_is_refused_in_one_line_with_exit_status_2(tmp_path: pathlib.Path) -> None:
    result = run_replay("--data-dir", str(tmp_path / "nowhere"), "--at", "1")

    assert result.returncode == 2
    assert result.stderr.strip() == f"openbell replay: {tmp_path / 'nowhere'}: no such directory"


def test_a_command_before_a_pruned_journal_is_out_of_range(tmp_path: pathlib.Path) -> None:
    data_dir = tmp_path / "data"
    engine = Engine(
        reply_timeout=WAIT,
        persistence=persistence(data_dir, snapshot_every_commands=3, keep_snapshots=1, segment_bytes=300),
    )
    engine.start([tata_inr()])
    try:
        order_ids: dict[str, int] = {}
        last = [run_step(engine, step, order_ids) for step in SEQUENCE][-1]
    finally:
        engine.stop()

    refused = run_replay("--data-dir", str(data_dir), "--at", "2")
    shown = run_replay("--data-dir", str(data_dir), "--at", str(last.seq))

    assert refused.returncode == 2
    assert "the journal before the oldest snapshot" in refused.stderr and "is pruned" in refused.stderr
    assert shown.returncode == 0, shown.stderr


# --------------------------------------------------------------------------------------------- a cut inside a batch
def order(seq: int, user: str, side: Side, price: int, quantity: int) -> PlaceOrder:
    return PlaceOrder(
        seq=seq,
        ts=1_700_000_000_000 + seq,
        user_id=user,
        market="TATA_INR",
        side=side,
        order_type=OrderType.LIMIT,
        time_in_force=TimeInForce.GTC,
        price=price,
        quantity=quantity,
    )


def deposits() -> list[Any]:
    ts = 1_700_000_000_000
    return [
        AddMarket(seq=1, ts=ts, spec=tata_inr()),
        Deposit(seq=2, ts=ts, user_id="alice", asset="INR", amount=10_000_000, txn_id="a"),
        Deposit(seq=3, ts=ts, user_id="bob", asset="TATA", amount=10_000, txn_id="b"),
    ]


FIRST = [order(4, "alice", Side.BUY, 10_000, 5), order(5, "bob", Side.SELL, 10_000, 2)]
SECOND = [order(6, "bob", Side.SELL, 9_900, 2), order(7, "alice", Side.BUY, 10_100, 3), order(8, "bob", Side.SELL, 10_200, 4)]


def write_interleaved_journal(data_dir: pathlib.Path) -> None:
    """Journal what the engine journals for: the deposits (settled); FIRST sent; SECOND sent before FIRST's
    match is journaled; then both matched and settled. A snapshot after the deposits."""
    balance, markets = BalanceCore(), {}
    journal = Journal(data_dir / "journal", next_lsn=1, fsync=False)

    def commands(batch: list[Any]) -> list[Any]:
        effects = balance.handle_commands(CommandBatch(tuple(batch)))
        journal.append(pack(CommandBatch(tuple(batch))))
        for spec in effects.new_markets:
            markets[spec.symbol] = MarketCore(spec)
        return effects.batches

    def match_and_settle(batch: Any) -> None:
        settlement, _ = markets[batch.market].handle_batch(batch)
        journal.append(pack(Matched(batch.market, batch.batch_no)))
        balance.handle_settlement(settlement)
        journal.append(pack(Settled(settlement.market, settlement.batch_no)))

    commands(deposits())
    assert journal.flush(WAIT)
    state = {"balance": balance.to_state(), "markets": {s: c.to_state() for s, c in markets.items()}}
    write_snapshot(data_dir / "snapshots", journal.next_lsn - 1, state)
    (first,) = commands(FIRST)
    (second,) = commands(SECOND)
    match_and_settle(first)
    match_and_settle(second)
    assert journal.flush(WAIT)
    journal.close()


def sequential(commands: list[Any]) -> dict[str, Any]:
    """Reference: each command alone, matched and settled before the next."""
    balance, markets = BalanceCore(), {}
    for command in commands:
        effects = balance.handle_commands(CommandBatch((command,)))
        for spec in effects.new_markets:
            markets[spec.symbol] = MarketCore(spec)
        for batch in effects.batches:
            settlement, _ = markets[batch.market].handle_batch(batch)
            balance.handle_settlement(settlement)
    return comparable(render(VenueAt(commands[-1].seq, "engine", balance, markets)))


@pytest.mark.parametrize("at", [3, 4, 5, 6, 7, 8])
def test_a_cut_inside_a_batch_keeps_exactly_the_commands_up_to_seq_and_finishes_what_was_in_flight(
    tmp_path: pathlib.Path, at: int
) -> None:
    data_dir = tmp_path / "data"
    write_interleaved_journal(data_dir)
    every = deposits() + FIRST + SECOND

    result = run_replay("--data-dir", str(data_dir), "--at", str(at))

    assert result.returncode == 0, result.stderr
    venue = json.loads(result.stdout)
    assert comparable(venue) == sequential([c for c in every if c.seq <= at])
    assert venue["snapshot"] == {"record": 1, "afterCommand": 3}
    assert Decimal(venue["balances"]["alice"]["INR"]["available"]) + Decimal(
        venue["balances"]["alice"]["INR"]["locked"]
    ) <= Decimal("100000.00")


# --------------------------------------------------------------------------------------------- the sharded layout
def write_sharded_cluster(root: pathlib.Path) -> None:
    """What a balance process (`root/balance`) and one market shard (`root/markets-0`) journal for the same
    commands as `write_interleaved_journal`: the balance process its command batches and the settlements in
    full, the shard the stream entries it read; both settlements journaled after both batches were sent."""
    from openbell.durability.split import HostMarket, MatchEntry

    for name, role in (("balance", "balance"), ("markets-0", "markets 0")):
        (root / name).mkdir(parents=True)
        (root / name / "ROLE").write_text(role + "\n")
    balance, markets = BalanceCore(), {}
    ledger = Journal(root / "balance" / "journal", next_lsn=1, fsync=False)
    entries = Journal(root / "markets-0" / "journal", next_lsn=1, fsync=False)

    def commands(batch: list[Any]) -> list[Any]:
        effects = balance.handle_commands(CommandBatch(tuple(batch)))
        ledger.append(pack(CommandBatch(tuple(batch))))
        for spec in effects.new_markets:
            markets[spec.symbol] = MarketCore(spec)
            entries.append(pack(MatchEntry((HostMarket(spec),))))
        return effects.batches

    commands(deposits())
    (first,) = commands(FIRST)
    (second,) = commands(SECOND)
    settlements = []
    for batch in (first, second):
        entries.append(pack(MatchEntry((batch,))))
        settlements.append(markets[batch.market].handle_batch(batch)[0])
    for settlement in settlements:
        ledger.append(pack(settlement))
        balance.handle_settlement(settlement)
    for journal in (ledger, entries):
        assert journal.flush(WAIT)
        journal.close()


@pytest.mark.parametrize("at", [3, 4, 5, 6, 7, 8])
def test_a_sharded_clusters_data_dir_gives_balances_from_the_balance_process_and_books_from_the_shards(
    tmp_path: pathlib.Path, at: int
) -> None:
    write_sharded_cluster(tmp_path / "cluster")
    every = deposits() + FIRST + SECOND

    result = run_replay("--data-dir", str(tmp_path / "cluster"), "--at", str(at))

    assert result.returncode == 0, result.stderr
    venue = json.loads(result.stdout)
    assert venue["layout"] == "sharded" and venue["unsettledBatches"] == 0
    assert comparable(venue) == sequential([c for c in every if c.seq <= at])


def test_the_balance_directory_alone_gives_balances_and_open_orders_without_books(tmp_path: pathlib.Path) -> None:
    write_sharded_cluster(tmp_path / "cluster")
    every = deposits() + FIRST + SECOND

    result = run_replay("--data-dir", str(tmp_path / "cluster" / "balance"), "--at", "7")

    assert result.returncode == 0, result.stderr
    venue = json.loads(result.stdout)
    expected = sequential([c for c in every if c.seq <= 7])
    assert venue["markets"] is None
    assert (venue["balances"], venue["openOrders"]) == (expected["balances"], expected["openOrders"])


def test_a_market_shards_directory_is_refused_in_one_line(tmp_path: pathlib.Path) -> None:
    write_sharded_cluster(tmp_path / "cluster")

    result = run_replay("--data-dir", str(tmp_path / "cluster" / "markets-0"), "--at", "4")

    assert result.returncode == 2
    assert "market shard's directory" in result.stderr and len(result.stderr.strip().splitlines()) == 1
