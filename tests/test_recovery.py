"""Recovery: an engine restarted on its data directory is the engine that never stopped.

One fixed command sequence (deposits, resting and crossing orders, IOC, FOK, market orders, cancels,
rejections, a market added at run time) runs on an in-memory engine without interruption, and again
on engines with persistence that are stopped, crashed, or both, at several points, and restarted on
the same directory. Each command gets a fixed `ts`, so every reply, every balance, every hold and every
book (orders in priority order, remaining quantities, update id, next trade id, market data) must come
out equal. A crash here is an engine abandoned without `stop()` (so without a shutdown snapshot)
after its journal writer flushed; its actors are stopped without running any engine code.

Every wait has a timeout. After every recovery the funds add up, the ledger and books pass their own
checks, and new order ids continue above every earlier one.
"""

from __future__ import annotations

import pathlib
import re
import time
import zlib
from typing import Any

import pytest
from conftest import run_inspect
from core_helpers import tata_inr
from crash_helpers import abandon

from openbell.actors.engine import Engine
from openbell.core.commands import AddMarket, CancelOrder, Deposit, PlaceOrder, SetMarketStatus, restamp
from openbell.core.events import OrderExpired
from openbell.core.grid import Asset, MarketSpec, make_market_spec
from openbell.core.messages import CommandBatch, DepositResult, Reply
from openbell.core.types import MarketStatus, OrderType, ResultCode, Side, TimeInForce
from openbell.core.wire import unpack
from openbell.durability.journal import FILE_HEADER, HEADER, JournalCorrupt, segments
from openbell.durability.persistence import Persistence
from openbell.durability.records import JournalRecord, Matched, Settled
from openbell.durability.snapshots import snapshot_files

ROOT = pathlib.Path(__file__).resolve().parent.parent
WAIT = 20.0
"""Seconds any single wait may take; the machine is shared, a healthy run needs far less."""
BASE_TS = 1_700_000_000_000
"""Commands are stamped BASE_TS + 1000 * seq, so two runs of the sequence see the same clock."""

ASSETS = {"INR": Asset("INR", 2), "TATA": Asset("TATA", 2)}
BUY, SELL = Side.BUY, Side.SELL
GTC, IOC, FOK = TimeInForce.GTC, TimeInForce.IOC, TimeInForce.FOK
TATA = "TATA_INR"
BTC = "BTC_USDT"


def btc_usdt() -> MarketSpec:
    return make_market_spec(BTC, "0.01", "0.001", {})


# --------------------------------------------------------------------------------------------- the sequence
# ("deposit", user, asset, amount, txn_id)
# ("limit", label, user, market, side, price_ticks, quantity_lots, time_in_force)
# ("market", label, user, market, side, quantity_lots)
# ("cancel", label_of_order, user, market)
# ("add_market", spec)
# ("stop", label, user, market, side, order_type, stop_price_ticks, price_ticks or None, quantity_lots)
# ("status", market, status)
SEQUENCE: list[tuple[Any, ...]] = [
    ("deposit", "alice", "INR", 1_000_000, "a-1"),
    ("deposit", "bob", "TATA", 5_000, "b-1"),
    ("deposit", "carol", "INR", 500_000, "c-1"),
    ("deposit", "carol", "TATA", 2_000, "c-2"),
    ("limit", "a-bid-1", "alice", TATA, BUY, 10_000, 5, GTC),
    ("limit", "a-bid-2", "alice", TATA, BUY, 9_900, 3, GTC),
    ("limit", "b-ask-1", "bob", TATA, SELL, 10_100, 4, GTC),
    ("limit", "b-ask-2", "bob", TATA, SELL, 10_200, 6, GTC),
    ("limit", "b-cross", "bob", TATA, SELL, 10_000, 2, GTC),  # 2 of a-bid-1
    ("limit", "c-ioc", "carol", TATA, BUY, 10_150, 6, IOC),  # all of b-ask-1, the rest expires
    ("cancel", "a-bid-2", "alice", TATA),
    ("market", "c-sell", "carol", TATA, SELL, 2),  # 2 more of a-bid-1
    ("deposit", "alice", "INR", 1_000_000, "a-1"),  # the same txnId again: credits nothing
    ("add_market", btc_usdt()),
    ("deposit", "dave", "USDT", 10**12, "d-1"),
    ("deposit", "erin", "BTC", 10**12, "e-1"),
    ("limit", "d-bid", "dave", BTC, BUY, 3_000_000, 5, GTC),
    ("limit", "e-ask", "erin", BTC, SELL, 2_990_000, 3, GTC),  # 3 of d-bid, at d-bid's price
    ("limit", "a-bid-3", "alice", TATA, BUY, 9_800, 2, GTC),
    ("market", "a-buy", "alice", TATA, BUY, 3),  # 3 of b-ask-2
    ("cancel", "b-ask-2", "bob", TATA),
    ("limit", "b-fok", "bob", TATA, SELL, 9_000, 20, FOK),  # not enough bids: nothing fills
    ("limit", "c-broke", "carol", TATA, BUY, 10_000, 10_000, GTC),  # insufficient funds
    ("cancel", "a-bid-2", "alice", TATA),  # already canceled: unknown order
    ("deposit", "bob", "INR", 200_000, "b-2"),
    ("limit", "b-bid", "bob", TATA, BUY, 9_950, 2, GTC),
    ("limit", "c-ask", "carol", TATA, SELL, 9_950, 4, GTC),  # a-bid-1's last 1, all of b-bid, rests 1
    ("market", "e-sell", "erin", BTC, SELL, 4),  # d-bid's last 2, the rest expires
    ("limit", "d-ask", "dave", BTC, SELL, 3_100_000, 1, GTC),  # dave sells one lot of the five he bought
    ("limit", "a-bid-4", "alice", TATA, BUY, 9_940, 7, GTC),
    ("deposit", "fay", "TATA", 1_000, "f-1"),
    ("stop", "f-stop", "fay", TATA, SELL, OrderType.STOP_LOSS_LIMIT, 9_945, 9_900, 3),  # waits: last 99.50
    ("stop", "f-stop-2", "fay", TATA, SELL, OrderType.STOP_LOSS, 9_940, None, 2),  # waits
    ("market", "c-sell-2", "carol", TATA, SELL, 1),  # 1 of a-bid-4 at 99.40: both stops trigger, 5 more of it
    ("status", TATA, MarketStatus.HALTED),
    ("limit", "a-bid-5", "alice", TATA, BUY, 9_000, 1, GTC),  # halted: refused
    ("status", TATA, MarketStatus.TRADING),
    ("stop", "f-stop-3", "fay", TATA, SELL, OrderType.TAKE_PROFIT_LIMIT, 10_500, 10_500, 1),  # waits to the end
]


def run_step(engine: Engine, step: tuple[Any, ...], order_ids: dict[str, int]) -> Reply:
    """Send one step of SEQUENCE, stamped with a fixed time, and return the reply."""
    kind = step[0]
    label = None
    if kind == "deposit":
        _, user, asset, amount, txn_id = step
        command: Any = engine.new(Deposit, user_id=user, asset=asset, amount=amount, txn_id=txn_id)
    elif kind == "limit":
        _, label, user, market, side, price, quantity, tif = step
        command = engine.new(
            PlaceOrder,
            user_id=user,
            market=market,
            side=side,
            order_type=OrderType.LIMIT,
            time_in_force=tif,
            price=price,
            quantity=quantity,
            client_order_id=label,
        )
    elif kind == "market":
        _, label, user, market, side, quantity = step
        command = engine.new(
            PlaceOrder,
            user_id=user,
            market=market,
            side=side,
            order_type=OrderType.MARKET,
            time_in_force=IOC,
            price=None,
            quantity=quantity,
            client_order_id=label,
        )
    elif kind == "cancel":
        _, of, user, market = step
        command = engine.new(CancelOrder, user_id=user, market=market, order_id=order_ids[of])
    elif kind == "add_market":
        command = engine.new(AddMarket, spec=step[1])
    elif kind == "stop":
        _, label, user, market, side, order_type, stop_price, price, quantity = step
        command = engine.new(
            PlaceOrder,
            user_id=user,
            market=market,
            side=side,
            order_type=order_type,
            time_in_force=GTC,
            price=price,
            quantity=quantity,
            client_order_id=label,
            stop_price=stop_price,
        )
    elif kind == "status":
        command = engine.new(SetMarketStatus, market=step[1], status=step[2])
    else:
        raise ValueError(step)
    command = restamp(command, command.seq, BASE_TS + 1000 * command.seq)
    reply = engine.call(command, timeout=WAIT)
    if label is not None:
        order_ids[label] = command.seq
    return reply


def stop_fields(row: list[Any]) -> dict[str, Any]:
    """A waiting stop as a book's state keeps it (a `PlaceOrder` as plain values), by field name."""
    return dict(zip(PlaceOrder.__struct_fields__, row[1:], strict=True))


# --------------------------------------------------------------------------------------------- engines
def persistence(data_dir: pathlib.Path, **options: Any) -> Persistence:
    return Persistence(data_dir, fsync=False, **options)


def start_engine(data_dir: pathlib.Path, **options: Any) -> Engine:
    engine = Engine(reply_timeout=WAIT, persistence=persistence(data_dir, **options))
    engine.start([tata_inr()])
    wait_until_settled(engine)
    return engine


def crash(engine: Engine, engines: list[Engine]) -> None:
    """Abandon `engine` as a killed process would (see crash_helpers.abandon) and forget it."""
    abandon(engine)
    engines.remove(engine)  # never stop() it: that would write a snapshot


def wait_until_settled(engine: Engine) -> None:
    """Wait (bounded) until nothing forwarded to a market is waiting for its settlement."""
    deadline = time.monotonic() + WAIT
    while engine.balance_core.pending:
        assert time.monotonic() < deadline, f"still pending after {WAIT}s: {engine.balance_core.pending}"
        time.sleep(0.01)


def state_of(engine: Engine) -> dict[str, Any]:
    """Everything a client could observe or recovery must restore, normalised for comparison."""
    wait_until_settled(engine)
    balance = engine.balance_core.to_state()
    ledger = engine.balance_core.ledger.to_state()
    accounts = {
        user: {asset: value for asset, value in account.items() if value != [0, 0]}
        for user, account in ledger["accounts"].items()  # type: ignore[attr-defined]
    }
    return {
        "accounts": {user: account for user, account in accounts.items() if account},
        "holds": sorted(ledger["holds"], key=lambda row: row[0]),  # type: ignore[arg-type]
        "deposits": ledger["deposits"],
        "markets": sorted(ledger["markets"], key=str),  # type: ignore[arg-type]
        "assets": sorted(ledger["assets"]),  # type: ignore[arg-type]
        "client_order_ids": sorted(balance["client_order_ids"]),  # type: ignore[arg-type]
        "batches_sent": balance["batches_sent"],
        "last_seq": balance["last_seq"],
        "books": {symbol: core.to_state() for symbol, core in engine.market_cores.items()},
    }


def assert_funds_conserved(engine: Engine) -> None:
    wait_until_settled(engine)
    ledger = engine.balance_core.ledger
    totals = {asset: amount for asset, amount in ledger.totals().items() if amount}
    deposited = {asset: amount for asset, amount in ledger.deposited().items() if amount}
    assert totals == deposited
    ledger.check_invariants()
    resting: set[int] = set()
    for core in engine.market_cores.values():
        core.book.check_invariants()
        resting |= {order.order_id for order in core.book.orders()}
        resting |= {stop.seq for stop in core.book.stops.orders()}
    assert resting == set(ledger.holds), "open and waiting orders differ from the holds in the ledger"


@pytest.fixture(scope="module")
def uninterrupted() -> tuple[list[Reply], dict[str, Any]]:
    """The sequence on an in-memory engine that never stops: its replies and its final state."""
    engine = Engine(reply_timeout=WAIT).start([tata_inr()])
    try:
        order_ids: dict[str, int] = {}
        replies = [run_step(engine, step, order_ids) for step in SEQUENCE]
        state = state_of(engine)
    finally:
        engine.stop()
    return replies, state


def run_interrupted(
    data_dir: pathlib.Path,
    interruptions: dict[int, str],
    engines: list[Engine],
    **options: Any,
) -> tuple[list[Reply], Engine]:
    """Run SEQUENCE, and after step i (0-based) `stop` or `crash` the engine and start a new one."""
    engine = start_engine(data_dir, **options)
    engines.append(engine)
    order_ids: dict[str, int] = {}
    replies: list[Reply] = []
    for index, step in enumerate(SEQUENCE):
        reply = run_step(engine, step, order_ids)
        assert all(reply.seq > earlier.seq for earlier in replies), "command numbering went backwards"
        replies.append(reply)
        how = interruptions.get(index)
        if how is None:
            continue
        before = state_of(engine)
        if how == "stop":
            engine.stop()
        else:
            crash(engine, engines)
        engine = start_engine(data_dir, **options)
        engines.append(engine)
        assert state_of(engine) == before, f"state changed across a {how} after step {index}"
        assert_funds_conserved(engine)
    return replies, engine


# --------------------------------------------------------------------------------------------- restarts
def test_the_sequence_gives_the_replies_it_was_written_for(uninterrupted: tuple[list[Reply], dict[str, Any]]) -> None:
    replies, state = uninterrupted
    codes = [reply.code for reply in replies]

    assert codes.count(ResultCode.OK) == len(SEQUENCE) - 3
    assert codes[35] is ResultCode.MARKET_HALTED
    assert [type(e).__name__ for e in replies[33].events].count("OrderTriggered") == 2
    assert [stop["stop_price"] for stop in map(stop_fields, state["books"][TATA]["book"]["stops"])] == [10_500]
    assert codes[22] is ResultCode.INSUFFICIENT_FUNDS
    assert codes[23] is ResultCode.UNKNOWN_ORDER
    fok_events = replies[21].events
    assert isinstance(fok_events[-1], OrderExpired) and fok_events[-1].filled_quantity == 0
    assert replies[12].expect(DepositResult).credited is False, "a repeated txnId must credit nothing"
    assert state["books"][TATA]["book"]["next_trade_id"] > 5
    assert state["books"][BTC]["book"]["next_trade_id"] > 2
    assert state["books"][TATA]["book"]["bids"] and state["books"][TATA]["book"]["asks"]


@pytest.mark.parametrize(
    "interruptions",
    [
        pytest.param({3: "stop", 8: "stop", 13: "stop", 20: "stop", 26: "stop"}, id="clean-stops"),
        pytest.param({4: "crash", 10: "crash", 13: "crash", 19: "crash", 27: "crash"}, id="crashes"),
        pytest.param({6: "stop", 9: "crash", 14: "crash", 17: "stop", 24: "crash"}, id="stops-and-crashes"),
        pytest.param({31: "crash", 32: "stop", 33: "crash", 34: "crash", 36: "stop"}, id="around-stop-orders-and-a-halt"),
    ],
)
def test_restarts_end_in_the_same_state_and_replies_as_an_uninterrupted_run(
    tmp_path: pathlib.Path,
    engines: list[Engine],
    uninterrupted: tuple[list[Reply], dict[str, Any]],
    interruptions: dict[int, str],
) -> None:
    expected_replies, expected_state = uninterrupted

    replies, engine = run_interrupted(tmp_path / "data", interruptions, engines)

    assert replies == expected_replies
    assert state_of(engine) == expected_state
    assert_funds_conserved(engine)


def test_new_order_ids_after_a_restart_are_larger_than_every_earlier_one(
    tmp_path: pathlib.Path, engines: list[Engine]
) -> None:
    replies, engine = run_interrupted(tmp_path / "data", {10: "crash", 20: "stop"}, engines)
    engine.stop()
    engine = start_engine(tmp_path / "data")
    engines.append(engine)

    reply = run_step(engine, ("limit", "late", "alice", TATA, BUY, 9_000, 1, GTC), {})

    assert reply.ok
    assert reply.seq > max(earlier.seq for earlier in replies)
    assert reply.seq > max(
        hold.order_id for hold in engine.balance_core.ledger.holds.values() if hold.order_id != reply.seq
    )


# --------------------------------------------------------------------------------------------- in flight
def journal_records(segment: pathlib.Path) -> list[tuple[int, int, Any]]:
    """(start offset, end offset, decoded payload) of every record in one segment."""
    data = segment.read_bytes()
    out = []
    offset = len(FILE_HEADER)
    while offset < len(data):
        _, length, checksum, _ = HEADER.unpack_from(data, offset)
        end = offset + HEADER.size + length
        body = data[offset + HEADER.size : end]
        assert zlib.crc32(body) == checksum
        out.append((offset, end, unpack(body, JournalRecord)))
        offset = end
    return out


@pytest.mark.parametrize("lost", ["match-and-settlement", "settlement"])
def test_a_crash_with_a_batch_in_flight_is_finished_on_restart(
    tmp_path: pathlib.Path,
    engines: list[Engine],
    uninterrupted: tuple[list[Reply], dict[str, Any]],
    lost: str,
) -> None:
    """The journal ends with the crossing order's command (and maybe its match), then a torn record."""
    expected_replies, expected_state = uninterrupted
    data_dir = tmp_path / "data"
    crossing = 8  # b-cross fills part of a-bid-1
    engine = start_engine(data_dir)
    engines.append(engine)
    order_ids: dict[str, int] = {}
    replies = [run_step(engine, step, order_ids) for step in SEQUENCE[: crossing + 1]]
    crash(engine, engines)
    segment = segments(data_dir / "journal")[-1][1]
    records = journal_records(segment)
    kinds = [type(record) for _, _, record in records[-3:]]
    assert kinds == [CommandBatch, Matched, Settled], kinds
    first_lost = records[-2] if lost == "match-and-settlement" else records[-1]
    with segment.open("r+b") as handle:
        handle.truncate(first_lost[0] + HEADER.size + 3)  # the crash tore the first lost record

    engine = start_engine(data_dir)
    engines.append(engine)
    assert_funds_conserved(engine)
    replies += [run_step(engine, step, order_ids) for step in SEQUENCE[crossing + 1 :]]

    assert replies == expected_replies
    assert state_of(engine) == expected_state


# --------------------------------------------------------------------------------------------- snapshots
def test_snapshots_and_journal_restore_the_state_and_old_ones_are_pruned(
    tmp_path: pathlib.Path, engines: list[Engine], uninterrupted: tuple[list[Reply], dict[str, Any]]
) -> None:
    expected_replies, expected_state = uninterrupted
    data_dir = tmp_path / "data"
    options = {"snapshot_every_commands": 3, "keep_snapshots": 2, "segment_bytes": 400}

    replies, engine = run_interrupted(data_dir, {7: "stop", 15: "crash", 23: "stop"}, engines, **options)
    engine.stop()

    assert replies == expected_replies
    kept = snapshot_files(data_dir / "snapshots")
    assert len(kept) == 2, kept
    found = segments(data_dir / "journal")
    oldest_kept = kept[0][0]
    assert found[0][0] <= oldest_kept + 1, "the journal no longer reaches back to the oldest snapshot kept"
    if len(found) > 1:
        assert found[1][0] > oldest_kept + 1, f"segment {found[0][1].name} is wholly before {oldest_kept}: {found}"
    assert found[0][0] > 1, "nothing was pruned"

    engine = start_engine(data_dir, **options)
    engines.append(engine)
    assert state_of(engine) == expected_state
    assert_funds_conserved(engine)


def test_without_its_snapshots_the_engine_recovers_from_the_whole_journal(
    tmp_path: pathlib.Path, engines: list[Engine], uninterrupted: tuple[list[Reply], dict[str, Any]]
) -> None:
    _, expected_state = uninterrupted
    data_dir = tmp_path / "data"
    options = {"snapshot_every_commands": 3, "keep_snapshots": 1_000}
    _, engine = run_interrupted(data_dir, {12: "stop"}, engines, **options)
    engine.stop()
    written = snapshot_files(data_dir / "snapshots")
    assert len(written) > 3
    assert segments(data_dir / "journal")[0][0] == 1

    for _, path in written:
        path.unlink()
    engine = start_engine(data_dir, **options)
    engines.append(engine)

    assert state_of(engine) == expected_state
    assert_funds_conserved(engine)


def test_a_journal_that_no_longer_starts_at_record_one_needs_a_snapshot(
    tmp_path: pathlib.Path, engines: list[Engine]
) -> None:
    data_dir = tmp_path / "data"
    options = {"snapshot_every_commands": 3, "keep_snapshots": 1, "segment_bytes": 300}
    _, engine = run_interrupted(data_dir, {}, engines, **options)
    engine.stop()
    assert segments(data_dir / "journal")[0][0] > 1
    for _, path in snapshot_files(data_dir / "snapshots"):
        path.unlink()

    with pytest.raises(RuntimeError, match="no snapshot"):
        Engine(reply_timeout=WAIT, persistence=persistence(data_dir, **options)).start([tata_inr()])


@pytest.mark.parametrize("journal_loss", ["deleted", "cut-short"])
def test_a_snapshot_newer_than_the_journal_is_recovered_and_later_commands_survive_a_crash(
    tmp_path: pathlib.Path,
    engines: list[Engine],
    uninterrupted: tuple[list[Reply], dict[str, Any]],
    journal_loss: str,
) -> None:
    expected_replies, expected_state = uninterrupted
    data_dir = tmp_path / "data"
    half = 16
    engine = start_engine(data_dir)
    engines.append(engine)
    order_ids: dict[str, int] = {}
    replies = [run_step(engine, step, order_ids) for step in SEQUENCE[:half]]
    at_stop = state_of(engine)
    engine.stop()  # writes a snapshot of everything
    found = segments(data_dir / "journal")
    if journal_loss == "deleted":
        for _, path in found:
            path.unlink()
    else:
        segment = found[-1][1]
        records = journal_records(segment)
        with segment.open("r+b") as handle:
            handle.truncate(records[len(records) // 2][1])

    engine = start_engine(data_dir)
    engines.append(engine)
    assert state_of(engine) == at_stop
    assert_funds_conserved(engine)
    replies += [run_step(engine, step, order_ids) for step in SEQUENCE[half:]]
    crash(engine, engines)  # no new snapshot: the next start needs the old snapshot and the journal written after it
    engine = start_engine(data_dir)
    engines.append(engine)

    assert replies == expected_replies
    assert state_of(engine) == expected_state
    assert_funds_conserved(engine)


# --------------------------------------------------------------------------------------------- corruption
def test_a_corrupt_record_in_the_middle_of_the_journal_stops_recovery_naming_the_file(
    tmp_path: pathlib.Path, engines: list[Engine]
) -> None:
    data_dir = tmp_path / "data"
    _, engine = run_interrupted(data_dir, {}, engines)
    crash(engine, engines)
    segment = segments(data_dir / "journal")[-1][1]
    records = journal_records(segment)
    start, end, _ = records[len(records) // 2]
    data = bytearray(segment.read_bytes())
    data[end - 2] ^= 0x40
    segment.write_bytes(bytes(data))

    with pytest.raises(JournalCorrupt) as caught:
        Engine(reply_timeout=WAIT, persistence=persistence(data_dir)).start([tata_inr()])

    assert str(segment) in str(caught.value)
    assert f"byte {start}" in str(caught.value)
    inspect = run_inspect(data_dir)
    assert inspect.returncode == 1
    assert "CORRUPT" in inspect.stderr and str(segment) in inspect.stderr


# --------------------------------------------------------------------------------------------- inspect
def test_inspect_prints_users_markets_and_totals_and_ends_ok(
    tmp_path: pathlib.Path, engines: list[Engine], uninterrupted: tuple[list[Reply], dict[str, Any]]
) -> None:
    _, expected_state = uninterrupted
    data_dir = tmp_path / "data"
    _, engine = run_interrupted(data_dir, {13: "crash"}, engines, snapshot_every_commands=5)
    engine.stop()

    result = run_inspect(data_dir)

    assert result.returncode == 0, result.stdout + result.stderr
    lines = result.stdout.strip().splitlines()
    assert f"users: {len(expected_state['accounts'])}" in lines
    assert any(line.strip().startswith(f"{TATA}: ") for line in lines), result.stdout
    assert any(line.strip().startswith(f"{BTC}: ") for line in lines), result.stdout
    totals = lines.index("totals per asset (all accounts / deposited):")
    for asset in ("BTC", "INR", "TATA", "USDT"):
        assert any(line.strip().startswith(f"{asset}: ") for line in lines[totals:]), result.stdout
    # amounts and prices as the API prints them: INR with its 2 decimals, a best bid in rupees
    (inr,) = [line.strip() for line in lines[totals:] if line.strip().startswith("INR: ")]
    held, deposited = inr.removeprefix("INR: ").split(" / ")
    assert held == deposited and len(held.split(".")[1]) == 2, inr
    (tata_line,) = [line for line in lines if line.strip().startswith(f"{TATA}: ")]
    assert re.search(r"best bid (\d+\.\d{2}|-), best ask (\d+\.\d{2}|-)", tata_line), tata_line
    assert lines[-1].endswith(": OK"), result.stdout
    assert "funds conserved" in lines[-1]
