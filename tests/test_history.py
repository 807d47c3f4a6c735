"""History database: what the engine executed is what the database holds, in SQLite and in PostgreSQL.

Each test that touches a database runs twice, on a SQLite file in a temporary directory and on a
PostgreSQL database it creates for itself (and drops in teardown) on 127.0.0.1:5432; the PostgreSQL run
is skipped, saying why, only when that server does not answer.

What is checked:
- one known sequence (deposits, resting orders, a sweep across two levels, partial fills, cancels, an IOC
  and a FOK that expire, a post-only rejection, a refused cancel of another user's order) run on an
  in-process engine leaves in the database exactly the trades, orders, final order states and balances
  the engine itself produced (compared with every event taken off the engine's bus, and its ledger);
- storing the same events again stores nothing twice;
- candles aggregated by the database (1m, 1h, 1d, and weeks that start on Mondays) equal hand-computed ones;
- a locked database never slows matching; the writer counts failures, keeps the events, and catches up;
- after a crash that left events unwritten, journal replay on restart fills the gap, each trade once;
- over HTTP, `/trades` with a time range and `/klines` older than a week are served from the database.

Commands in the engine sequences get fixed, distinct times (BASE_TS + 1000 x seq), so an order's newest
state is its row with the latest `ts`. Every wait has a timeout.
"""

from __future__ import annotations

import pathlib
import random
import sqlite3
import time
import uuid
from collections.abc import Callable, Generator, Iterator, Sequence
from dataclasses import dataclass, field
from decimal import Decimal
from typing import Any

import httpx
import msgspec
import psycopg
import pytest
from conftest import run_inspect, start_server
from core_helpers import tata_inr
from crash_helpers import abandon
from psycopg import sql

from openbell.actors.engine import Engine
from openbell.core.commands import CancelOrder, Deposit, PlaceOrder, restamp
from openbell.core.events import (
    BalanceChanged,
    CancelRejected,
    OrderAccepted,
    OrderCanceled,
    OrderExpired,
    OrderFilled,
    OrderPartiallyFilled,
    OrderRejected,
    TradeExecuted,
)
from openbell.core.grid import MAX_AMOUNT_UNITS, MAX_PRICE_TICKS, MAX_QUANTITY_LOTS, Asset, make_market_spec
from openbell.core.marketdata import INTERVALS, WEEK_ORIGIN
from openbell.core.messages import Reply
from openbell.core.types import OrderStatus, OrderType, ResultCode, Side, TimeInForce
from openbell.durability.persistence import Persistence
from openbell.history.store import SCHEMA_VERSION, HistorySchemaError, HistoryStore, read_amount
from openbell.history.writer import REJECTED_FILE, HistoryWriter, read_set_aside

WAIT = 20.0
"""Seconds any single wait may take; the machine is shared, a healthy run needs far less."""
BASE_TS = 1_700_000_000_000
PG_SERVER = "postgresql://postgres@127.0.0.1:5432"
LOCK_WAIT_MS = 100
"""How long a write waits on a locked database before it counts as failed (the store's own SQLite wait is 30 s)."""

ASSETS = {"INR": Asset("INR", 2), "TATA": Asset("TATA", 2)}
TATA = "TATA_INR"
BUY, SELL = Side.BUY, Side.SELL
GTC, IOC, FOK = TimeInForce.GTC, TimeInForce.IOC, TimeInForce.FOK
STATE_EVENTS = (OrderRejected, OrderPartiallyFilled, OrderFilled, OrderCanceled, OrderExpired)


# --------------------------------------------------------------------------------------------- databases
def postgres_database() -> Generator[str, None, None]:
    """A new, uniquely named PostgreSQL database for one test; dropped afterwards."""
    try:
        admin = psycopg.connect(f"{PG_SERVER}/postgres", autocommit=True, connect_timeout=3)
    except psycopg.OperationalError as error:
        pytest.skip(f"PostgreSQL is not reachable at 127.0.0.1:5432: {error}")
    name = f"openbell_history_test_{uuid.uuid4().hex[:12]}"
    with admin:
        admin.execute(sql.SQL("CREATE DATABASE {}").format(sql.Identifier(name)))
    try:
        yield f"{PG_SERVER}/{name}"
    finally:
        with psycopg.connect(f"{PG_SERVER}/postgres", autocommit=True, connect_timeout=5) as admin:
            admin.execute(sql.SQL("DROP DATABASE IF EXISTS {} WITH (FORCE)").format(sql.Identifier(name)))


@pytest.fixture(params=["sqlite", "postgresql"])
def history_url(request: pytest.FixtureRequest, tmp_path: pathlib.Path) -> Iterator[str]:
    """The URL of an empty history database: a SQLite file, or a PostgreSQL database of this test's own."""
    if request.param == "sqlite":
        yield f"sqlite:///{tmp_path / 'history.sqlite3'}"
    else:
        yield from postgres_database()


def is_postgres(url: str) -> bool:
    return url.startswith("postgresql://")


def read(url: str, statement: str, params: Sequence[Any] = ()) -> list[tuple[Any, ...]]:
    """Rows of `statement` (`?` placeholders) from a connection of our own; NUMERIC columns as int."""
    if is_postgres(url):
        with psycopg.connect(url, connect_timeout=5) as server:
            fetched = server.execute(statement.replace("?", "%s"), tuple(params)).fetchall()
    else:
        file = sqlite3.connect(url.removeprefix("sqlite:///"), timeout=WAIT)
        try:
            fetched = file.execute(statement, tuple(params)).fetchall()
        finally:
            file.close()
    return [tuple(int(v) if isinstance(v, Decimal) else v for v in row) for row in fetched]


def db_trades(url: str) -> list[tuple[Any, ...]]:
    return read(url, "SELECT * FROM trades ORDER BY market, trade_id")


def db_orders(url: str) -> list[tuple[Any, ...]]:
    """Rows of `orders`, the quote budget (an amount column: TEXT digits in SQLite) as an int."""
    return [
        (*row[:8], None if row[8] is None else read_amount(row[8]), *row[9:])
        for row in read(url, "SELECT * FROM orders ORDER BY order_id")
    ]


def db_final_states(url: str) -> dict[int, tuple[str, int, int]]:
    """Per order id, (status, filled, remaining) of its newest order_events row."""
    newest: dict[int, tuple[str, int, int]] = {}
    for order_id, status, filled, remaining in read(
        url, "SELECT order_id, status, filled, remaining FROM order_events ORDER BY ts, filled"
    ):
        newest[order_id] = (status, filled, remaining)
    return newest


def db_final_balances(url: str) -> dict[tuple[str, str], tuple[int, int]]:
    """Per (user, asset), (available, locked) of its newest balance_changes row (by change_id)."""
    last: dict[tuple[str, str], tuple[int, int]] = {}
    for user, asset, available, locked in read(
        url, "SELECT user_id, asset, available, locked FROM balance_changes ORDER BY change_id"
    ):
        last[(user, asset)] = (read_amount(available), read_amount(locked))
    return last


def trades_of(events: Sequence[object]) -> list[tuple[Any, ...]]:
    """TradeExecuted events as table rows (enum members are their wire strings)."""
    return sorted(
        (
            tuple(str(v) if isinstance(v, Side) else v for v in msgspec.structs.astuple(e))
            for e in events
            if isinstance(e, TradeExecuted)
        ),
        key=lambda row: (row[0], row[1]),
    )


def orders_of(events: Sequence[object]) -> list[tuple[Any, ...]]:
    """Accepted orders as the history stores them: every field of `OrderAccepted`, the stop price last."""
    return sorted(
        (
            tuple(str(v) if isinstance(v, str) else v for v in msgspec.structs.astuple(e))
            for e in events
            if isinstance(e, OrderAccepted)
        ),
        key=lambda row: row[1],
    )


class ImpatientStore(HistoryStore):
    """A HistoryStore whose writes give up after LOCK_WAIT_MS on a locked table or file, and that a test can
    declare `dead` (a crashed process writes nothing more). Everything else is HistoryStore's own code."""

    def __init__(self, url: str) -> None:
        self.dead = False
        super().__init__(url)

    def _connect(self) -> Any:
        conn = super()._connect()
        if self.postgres:
            conn.execute(f"SET lock_timeout = {LOCK_WAIT_MS}")
            conn.commit()
        else:
            conn.execute(f"PRAGMA busy_timeout = {LOCK_WAIT_MS}")
        return conn

    def write(self, events: Sequence[object]) -> None:
        if self.dead:
            raise ConnectionError("this store belonged to a process that crashed")
        super().write(events)


# --------------------------------------------------------------------------------------------- the engine
@dataclass
class Run:
    """What one run of an engine produced: every event off its bus, replies, and order ids by label."""

    events: list[object] = field(default_factory=list)
    replies: dict[str, Reply] = field(default_factory=dict)
    order_ids: dict[str, int] = field(default_factory=dict)


def start_engine(history: HistoryWriter | None = None, persistence: Persistence | None = None) -> tuple[Engine, Run]:
    """An engine with TATA_INR whose every published event is also collected into the returned Run."""
    engine = Engine(reply_timeout=WAIT, history=history, persistence=persistence)
    run = Run()
    engine.bus.subscribe(run.events.extend)  # type: ignore[attr-defined]
    engine.start([tata_inr()])
    return engine, run


def wait_for(condition: Callable[[], bool], what: str, timeout: float = WAIT) -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        assert time.monotonic() < deadline, f"timed out after {timeout}s waiting for {what}"
        time.sleep(0.01)


# ("deposit", user, asset, amount)
# ("limit", label, user, side, price_ticks, quantity_lots, time_in_force)
# ("post_only", label, user, side, price_ticks, quantity_lots)
# ("market", label, user, side, quantity_lots)
# ("cancel", label, label_of_order, user)
SEQUENCE: list[tuple[Any, ...]] = [
    ("deposit", "alice", "INR", 1_000_000),
    ("deposit", "bob", "TATA", 5_000),
    ("deposit", "carol", "INR", 500_000),
    ("deposit", "carol", "TATA", 2_000),
    ("deposit", "dave", "INR", 200_000),
    ("limit", "a-bid-1", "alice", BUY, 10_000, 5, GTC),
    ("limit", "a-bid-2", "alice", BUY, 9_900, 3, GTC),
    ("limit", "b-ask-1", "bob", SELL, 10_100, 4, GTC),
    ("limit", "b-ask-2", "bob", SELL, 10_200, 6, GTC),
    ("limit", "b-cross", "bob", SELL, 10_000, 2, GTC),  # 2 of a-bid-1 at 100.00
    ("limit", "c-sweep", "carol", BUY, 10_250, 12, IOC),  # all of b-ask-1 and b-ask-2; 2 lots expire
    ("limit", "b-ask-3", "bob", SELL, 10_300, 5, GTC),
    ("limit", "c-lift", "carol", BUY, 10_300, 2, GTC),  # 2 of b-ask-3
    ("cancel", "a-cancel", "a-bid-2", "alice"),
    ("post_only", "d-post", "dave", BUY, 10_300, 1),  # would take b-ask-3: rejected
    ("cancel", "d-foreign-cancel", "a-bid-1", "dave"),  # alice's order: refused as unknown
    ("market", "c-sell", "carol", SELL, 1),  # 1 more of a-bid-1
    ("limit", "d-bid", "dave", BUY, 9_800, 4, GTC),  # rests untouched
    ("limit", "b-fok", "bob", SELL, 9_000, 20, FOK),  # not enough bids: nothing fills
]

EXPECTED_STATES = {
    "a-bid-1": ("PARTIALLY_FILLED", 3, 2),
    "a-bid-2": ("CANCELED", 0, 3),
    "b-ask-1": ("FILLED", 4, 0),
    "b-ask-2": ("FILLED", 6, 0),
    "b-cross": ("FILLED", 2, 0),
    "c-sweep": ("EXPIRED", 10, 2),
    "b-ask-3": ("PARTIALLY_FILLED", 2, 3),
    "c-lift": ("FILLED", 2, 0),
    "d-post": ("REJECTED", 0, 0),
    "c-sell": ("FILLED", 1, 0),
    "d-bid": ("NEW", 0, 4),
    "b-fok": ("EXPIRED", 0, 20),
}
"""(status, filled, remaining) each order ends in; the spec the engine's own state is checked against too."""
EXPECTED_TRADES = 5  # b-cross 1, c-sweep 2 (two levels), c-lift 1, c-sell 1
REFUSED = {"d-post": ResultCode.POST_ONLY_WOULD_TAKE, "d-foreign-cancel": ResultCode.UNKNOWN_ORDER}


def run_sequence(engine: Engine, run: Run) -> None:
    """Send every step of SEQUENCE, each stamped BASE_TS + 1000 x seq, and record replies and order ids."""
    for step in SEQUENCE:
        kind = step[0]
        if kind == "deposit":
            _, user, asset, amount = step
            label = f"deposit-{user}-{asset}"
            command: Any = engine.new(Deposit, user_id=user, asset=asset, amount=amount, txn_id=label)
        elif kind == "cancel":
            _, label, of, user = step
            command = engine.new(CancelOrder, user_id=user, market=TATA, order_id=run.order_ids[of])
        else:
            label, user, side = step[1], step[2], step[3]
            fields: dict[str, Any] = {"order_type": OrderType.LIMIT, "time_in_force": GTC, "post_only": False}
            if kind == "limit":
                fields.update(price=step[4], quantity=step[5], time_in_force=step[6])
            elif kind == "post_only":
                fields.update(price=step[4], quantity=step[5], post_only=True)
            else:
                fields.update(order_type=OrderType.MARKET, time_in_force=IOC, price=None, quantity=step[4])
            command = engine.new(PlaceOrder, user_id=user, market=TATA, side=side, client_order_id=label, **fields)
            run.order_ids[label] = command.seq
        command = restamp(command, command.seq, BASE_TS + 1000 * command.seq)
        run.replies[label] = engine.call(command, timeout=WAIT)
    for label, reply in run.replies.items():
        assert reply.code is REFUSED.get(label, ResultCode.OK), (label, reply)


def engine_final_states(engine: Engine, run: Run) -> dict[int, tuple[str, int, int]]:
    """Each order's (status, filled, remaining) as the engine has it: resting orders from the book, the
    others from the last state event the engine published for them."""
    states: dict[int, tuple[str, int, int]] = {}
    for event in run.events:
        if isinstance(event, STATE_EVENTS):
            if type(event) is OrderRejected:
                states[event.order_id] = ("REJECTED", 0, 0)
            else:
                e: Any = event
                states[e.order_id] = (e.status.value, e.filled_quantity, e.remaining_quantity)
    for order in engine.market_cores[TATA].book.orders():
        status = OrderStatus.PARTIALLY_FILLED if order.filled else OrderStatus.NEW
        states[order.order_id] = (status.value, order.filled, order.remaining)
    return states


def ledger_balances(engine: Engine) -> dict[tuple[str, str], tuple[int, int]]:
    ledger = engine.balance_core.ledger
    return {(user, asset): value for user in ledger.users() for asset, value in ledger.balances(user).items()}


# --------------------------------------------------------------------------------------------- 1. contents
def test_the_database_holds_exactly_the_trades_orders_states_and_balances_the_engine_produced(
    history_url: str, engines: list[Engine]
) -> None:
    # Arrange
    engine, run = start_engine(history=HistoryWriter(HistoryStore(history_url)))
    engines.append(engine)

    # Act
    run_sequence(engine, run)
    expected_states = engine_final_states(engine, run)
    expected_balances = ledger_balances(engine)
    engine.stop()  # flushes and closes the writer

    # Assert: trades, row for row, and nothing else
    assert len(trades_of(run.events)) == EXPECTED_TRADES
    assert db_trades(history_url) == trades_of(run.events)
    # every accepted order, as accepted (the post-only rejection never was)
    assert db_orders(history_url) == orders_of(run.events)
    accepted = {row[1] for row in orders_of(run.events)}
    assert accepted == {run.order_ids[label] for label in EXPECTED_STATES} - {run.order_ids["d-post"]}
    # final states: the spec, the engine and the database agree (an order that never changed has no row: NEW)
    by_id = {run.order_ids[label]: state for label, state in EXPECTED_STATES.items()}
    assert expected_states == by_id
    in_db = db_final_states(history_url)
    assert {order_id: in_db.get(order_id, ("NEW", 0, by_id[order_id][2])) for order_id in by_id} == by_id
    assert set(in_db) <= set(by_id)
    # the refused foreign cancel left alice's order as it was: never REJECTED
    victim = run.order_ids["a-bid-1"]
    assert "REJECTED" not in {
        row[0] for row in read(history_url, "SELECT status FROM order_events WHERE order_id = ?", [victim])
    }
    # balances: the last change of each (user, asset) is what the ledger holds now
    assert db_final_balances(history_url) == expected_balances


# --------------------------------------------------------------------------------------------- 2. idempotence
@pytest.fixture(scope="module")
def sequence_events() -> list[object]:
    """Every event the SEQUENCE makes on an engine without history."""
    engine, run = start_engine()
    try:
        run_sequence(engine, run)
    finally:
        engine.stop()
    return run.events


def table_counts(url: str) -> dict[str, int]:
    return {
        table: read(url, f"SELECT COUNT(*) FROM {table}")[0][0]
        for table in ("trades", "orders", "order_events", "balance_changes")
    }


def test_storing_the_same_events_twice_stores_each_once(history_url: str, sequence_events: list[object]) -> None:
    # Arrange
    store = HistoryStore(history_url)
    try:
        store.write(sequence_events)
        once = table_counts(history_url)

        # Act: again all at once, then again one event per transaction
        store.write(sequence_events)
        for event in sequence_events:
            store.write([event])
        again = table_counts(history_url)
    finally:
        store.close()

    # Assert
    assert again == once
    assert once == {
        "trades": EXPECTED_TRADES,
        "orders": sum(1 for e in sequence_events if type(e) is OrderAccepted),
        "order_events": sum(1 for e in sequence_events if isinstance(e, STATE_EVENTS)),
        "balance_changes": len({e for e in sequence_events if type(e) is BalanceChanged}),
    }
    assert db_trades(history_url) == trades_of(sequence_events)


def test_a_balance_that_returns_to_an_earlier_value_within_one_millisecond_is_still_the_newest_row(
    history_url: str, engines: list[Engine]
) -> None:
    # Arrange: a resting ask, so that a post-only bid at its price is rejected
    engine, run = start_engine(history=HistoryWriter(HistoryStore(history_url)))
    engines.append(engine)
    fund_traders(engine)
    ask = engine.new(
        PlaceOrder,
        user_id="seller",
        market=TATA,
        side=SELL,
        order_type=OrderType.LIMIT,
        time_in_force=GTC,
        price=10_000,
        quantity=1,
    )
    assert engine.call(ask, timeout=WAIT).ok
    same_ms = BASE_TS * 2

    # Act: in one millisecond, dave's deposit, then his post-only bid (funds held, then released)
    deposit = engine.new(Deposit, user_id="dave", asset="INR", amount=50_000, txn_id="dave-1")
    assert engine.call(restamp(deposit, deposit.seq, same_ms), timeout=WAIT).ok
    bid = engine.new(
        PlaceOrder,
        user_id="dave",
        market=TATA,
        side=BUY,
        order_type=OrderType.LIMIT,
        time_in_force=GTC,
        price=10_000,
        quantity=1,
        post_only=True,
    )
    reply = engine.call(restamp(bid, bid.seq, same_ms), timeout=WAIT)
    assert reply.code is ResultCode.POST_ONLY_WOULD_TAKE
    engine.stop()

    # Assert
    dave = [(e.available, e.locked) for e in run.events if isinstance(e, BalanceChanged) and e.user_id == "dave"]
    assert dave == [(50_000, 0), (40_000, 10_000), (50_000, 0)]  # what the engine published
    assert db_final_balances(history_url)[("dave", "INR")] == (50_000, 0)


def test_a_refused_cancel_that_reaches_the_store_leaves_the_order_it_named_alone(history_url: str) -> None:
    # Arrange: the market refuses a cancel of order 7 (e.g. it had just filled) with UNKNOWN_ORDER
    store = HistoryStore(history_url)
    try:
        store.write([OrderPartiallyFilled(TATA, 7, "alice", 2, 3, BASE_TS)])

        # Act
        store.write([CancelRejected(TATA, 7, "mallory", ResultCode.UNKNOWN_ORDER, "unknown order", BASE_TS + 1)])
    finally:
        store.close()

    # Assert
    assert db_final_states(history_url) == {7: ("PARTIALLY_FILLED", 2, 3)}


# --------------------------------------------------------------------------------------------- 3. klines
MONDAY = 1_704_067_200
"""2024-01-01 00:00:00 UTC, a Monday (the epoch was a Thursday)."""
DAY = 86_400


def trade(trade_id: int, ts_ms: int, price: int, quantity: int, market: str = "KL_INR") -> TradeExecuted:
    return TradeExecuted(market, trade_id, price, quantity, BUY, 10_000 + trade_id, "m", 20_000 + trade_id, "t", ts_ms)


KLINE_TRADES = [
    trade(1, MONDAY * 1000, 100, 2),  # Monday 00:00:00.000
    trade(2, MONDAY * 1000 + 59_999, 120, 1),  # same minute
    trade(3, (MONDAY + 60) * 1000, 90, 3),  # next minute, same hour
    trade(4, (MONDAY + 5400) * 1000, 110, 4),  # 01:30, same day
    trade(5, (MONDAY + 7 * DAY) * 1000 - 1, 130, 1),  # Sunday 23:59:59.999: still the week of Monday the 1st
    trade(6, (MONDAY + 7 * DAY) * 1000, 80, 5),  # Monday the 8th 00:00: a new week
    trade(1, (MONDAY + 60) * 1000, 999, 99, market="OTHER_INR"),  # another market: never counted
]

# (bucket start, open, high, low, close, volume, sum of price x quantity, trades), worked out by hand
EXPECTED_KLINES = {
    "1m": [
        (MONDAY, 100, 120, 100, 120, 3, 320, 2),
        (MONDAY + 60, 90, 90, 90, 90, 3, 270, 1),
        (MONDAY + 5400, 110, 110, 110, 110, 4, 440, 1),
        (MONDAY + 7 * DAY - 60, 130, 130, 130, 130, 1, 130, 1),
        (MONDAY + 7 * DAY, 80, 80, 80, 80, 5, 400, 1),
    ],
    "1h": [
        (MONDAY, 100, 120, 90, 90, 6, 590, 3),
        (MONDAY + 3600, 110, 110, 110, 110, 4, 440, 1),
        (MONDAY + 7 * DAY - 3600, 130, 130, 130, 130, 1, 130, 1),
        (MONDAY + 7 * DAY, 80, 80, 80, 80, 5, 400, 1),
    ],
    "1d": [
        (MONDAY, 100, 120, 90, 110, 10, 1030, 4),
        (MONDAY + 6 * DAY, 130, 130, 130, 130, 1, 130, 1),
        (MONDAY + 7 * DAY, 80, 80, 80, 80, 5, 400, 1),
    ],
    "1w": [
        (MONDAY, 100, 130, 90, 130, 11, 1160, 5),
        (MONDAY + 7 * DAY, 80, 80, 80, 80, 5, 400, 1),
    ],
}


def test_klines_from_the_database_equal_hand_computed_candles_with_weeks_starting_on_monday(
    history_url: str,
) -> None:
    # Arrange: stored in shuffled order, so open and close must come from trade ids, not insertion order
    store = HistoryStore(history_url)
    shuffled = KLINE_TRADES[:]
    random.Random(7).shuffle(shuffled)
    try:
        store.write(shuffled[:3])
        store.write(shuffled[3:])

        # Act
        candles = {
            name: store.klines(
                "KL_INR",
                INTERVALS[name],
                WEEK_ORIGIN if name == "1w" else 0,
                MONDAY - 14 * DAY,
                MONDAY + 21 * DAY,
                1000,
            )
            for name in EXPECTED_KLINES
        }
        first_minute_only = store.klines("KL_INR", 60, 0, MONDAY, MONDAY + 60, 1000)
        first_two = store.klines("KL_INR", 60, 0, MONDAY - 60, MONDAY + 21 * DAY, 2)
    finally:
        store.close()

    # Assert
    assert candles == EXPECTED_KLINES
    assert MONDAY % (7 * DAY) != 0 and (MONDAY - WEEK_ORIGIN) % (7 * DAY) == 0  # the origin makes the difference
    assert first_minute_only == EXPECTED_KLINES["1m"][:1]  # the end is exclusive
    assert first_two == EXPECTED_KLINES["1m"][:2]  # limit keeps the oldest buckets


# --------------------------------------------------------------------------------------------- 4. locked database
def fund_traders(engine: Engine) -> None:
    for user, asset, amount in (("seller", "TATA", 1_000_000), ("buyer", "INR", 100_000_000)):
        reply = engine.call(engine.new(Deposit, user_id=user, asset=asset, amount=amount, txn_id=f"{user}-{asset}"))
        assert reply.ok, reply


def trade_rounds(engine: Engine, rounds: int, price: int) -> list[float]:
    """`rounds` trades of one lot (a resting sell, then a buy that takes it); the seconds each reply took."""
    took: list[float] = []
    for _ in range(rounds):
        for user, side in (("seller", SELL), ("buyer", BUY)):
            command = engine.new(
                PlaceOrder,
                user_id=user,
                market=TATA,
                side=side,
                order_type=OrderType.LIMIT,
                time_in_force=GTC,
                price=price,
                quantity=1,
            )
            started = time.perf_counter()
            reply = engine.call(command, timeout=WAIT)
            took.append(time.perf_counter() - started)
            assert reply.ok, reply
    return took


class DatabaseLock:
    """Another connection that keeps the history writer out: SQLite's write lock (BEGIN EXCLUSIVE), or in
    PostgreSQL an ACCESS EXCLUSIVE lock on `trades`, held in an open transaction until `release()`."""

    def __init__(self, url: str) -> None:
        self.url = url
        self.conn: Any
        if is_postgres(url):
            self.conn = psycopg.connect(url, connect_timeout=5)
            self.conn.execute("LOCK TABLE trades IN ACCESS EXCLUSIVE MODE")
        else:
            self.conn = sqlite3.connect(url.removeprefix("sqlite:///"), timeout=WAIT, isolation_level=None)
            self.conn.execute("BEGIN EXCLUSIVE")

    def release(self) -> None:
        if self.conn is not None:
            self.conn.rollback() if is_postgres(self.url) else self.conn.execute("ROLLBACK")
            self.conn.close()
            self.conn = None


def test_a_locked_database_slows_no_order_and_the_writer_catches_up_losing_nothing(
    history_url: str, engines: list[Engine]
) -> None:
    # Arrange
    writer = HistoryWriter(ImpatientStore(history_url))
    engine, run = start_engine(history=writer)
    engines.append(engine)
    fund_traders(engine)
    trade_rounds(engine, 5, 10_000)
    wait_for(lambda: len(trades_of(run.events)) == 5, "the engine to publish 5 trades")
    assert writer.flush(WAIT)
    stored_before = db_trades(history_url)
    assert len(stored_before) == 5

    # Act: trade while another connection keeps the writer out
    lock = DatabaseLock(history_url)
    try:
        took = trade_rounds(engine, 40, 10_100)
        wait_for(lambda: writer.failures >= 2, "the writer to fail twice against the lock")
        published = trades_of(run.events)

        # Assert: matching went on at normal speed; the writer holds what it could not store
        assert len(published) == 45
        assert max(took) < 1.0, f"an order waited {max(took):.3f}s for its reply while the database was locked"
        assert writer.backlog >= 40
        if not is_postgres(history_url):  # SQLite readers are not blocked by a writer; PostgreSQL's lock blocks reads
            assert db_trades(history_url) == stored_before
    finally:
        lock.release()

    # Assert: once the database answers, everything is stored
    assert writer.flush(WAIT), f"the writer did not catch up: backlog {writer.backlog}, failures {writer.failures}"
    assert writer.backlog == 0
    assert db_trades(history_url) == published
    engine.stop()
    assert db_final_balances(history_url) == ledger_balances(engine)


def test_the_writer_connects_again_when_postgresql_drops_its_connection(engines: list[Engine]) -> None:
    # Arrange
    url = next(databases := postgres_database())
    try:
        writer = HistoryWriter(HistoryStore(url))
        engine, run = start_engine(history=writer)
        engines.append(engine)
        fund_traders(engine)
        trade_rounds(engine, 3, 10_000)
        wait_for(lambda: len(trades_of(run.events)) == 3, "the engine to publish 3 trades")
        assert writer.flush(WAIT)
        name = url.rsplit("/", 1)[1]
        with psycopg.connect(f"{PG_SERVER}/postgres", autocommit=True, connect_timeout=5) as admin:
            killed = admin.execute(
                "SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE datname = %s", (name,)
            ).fetchall()
        assert killed == [(True,)]  # the writer's connection, the only one to this database

        # Act
        trade_rounds(engine, 3, 10_100)
        wait_for(lambda: len(trades_of(run.events)) == 6, "the engine to publish 6 trades")

        # Assert
        assert writer.flush(WAIT), f"the writer did not catch up: backlog {writer.backlog}, failures {writer.failures}"
        assert writer.failures >= 1
        assert db_trades(url) == trades_of(run.events)
        assert len(db_trades(url)) == 6
        engine.stop()
    finally:
        databases.close()


# --------------------------------------------------------------------------------------------- 5. crash
def crash(engine: Engine) -> None:
    """Abandon `engine` as a killed process would (see crash_helpers.abandon)."""
    abandon(engine)


def retire(writer: HistoryWriter) -> None:
    """End a crashed process's writer thread (the kernel would): drop what it holds, between two attempts."""
    deadline = time.monotonic() + WAIT
    while True:
        with writer._cond:
            if not writer._in_progress:
                writer._buffer.clear()
                writer._closing = True
                writer._cond.notify_all()
                break
        assert time.monotonic() < deadline, "the crashed writer never finished its attempt"
        time.sleep(0.01)
    writer._thread.join(WAIT)
    assert not writer._thread.is_alive()


def test_after_a_crash_with_events_unwritten_replay_stores_every_trade_exactly_once(
    tmp_path: pathlib.Path, engines: list[Engine]
) -> None:
    # Arrange: some trades stored, then more that the writer cannot store (the database is locked)
    data_dir = tmp_path / "data"
    data_dir.mkdir()
    url = f"sqlite:///{data_dir / 'history.sqlite3'}"
    crashed_store = ImpatientStore(url)
    crashed_writer = HistoryWriter(crashed_store)
    engine, run = start_engine(history=crashed_writer, persistence=Persistence(data_dir, fsync=False))
    engines.append(engine)
    fund_traders(engine)
    trade_rounds(engine, 6, 10_000)
    # a reply can overtake its market's trade events on their way to the bus: wait for all six, then flush
    wait_for(lambda: len(trades_of(run.events)) == 6, "the engine to publish 6 trades")
    assert crashed_writer.flush(WAIT)
    stored_before_crash = db_trades(url)
    lock = DatabaseLock(url)
    try:
        trade_rounds(engine, 9, 10_200)
        wait_for(lambda: len(trades_of(run.events)) == 15, "the engine to publish 15 trades")
        wait_for(lambda: crashed_writer.failures >= 1, "the writer to fail against the lock")

        # Act: the process dies with 9 trades published but not stored
        crash(engine)
        engines.remove(engine)  # never stop() it: that would flush its writer and write a snapshot
        crashed_store.dead = True
        failures = crashed_writer.failures
        wait_for(lambda: crashed_writer.failures > failures, "the dead writer's last attempt to end")
        assert crashed_writer.backlog > 0
    finally:
        lock.release()
    retire(crashed_writer)
    crashed_store.close()
    assert len(stored_before_crash) == 6
    assert db_trades(url) == stored_before_crash

    restarted, _ = start_engine(
        history=HistoryWriter(HistoryStore(url)), persistence=Persistence(data_dir, fsync=False)
    )
    engines.append(restarted)
    assert restarted.history.flush(WAIT)

    # Assert: every trade once, every accepted order once, states and balances as the engine has them
    assert db_trades(url) == trades_of(run.events)
    assert read(url, "SELECT COUNT(*) FROM trades")[0][0] == 15
    assert db_orders(url) == orders_of(run.events)
    assert db_final_balances(url) == ledger_balances(restarted)
    restarted.stop()
    assert crashed_writer.written < len(run.events)  # the dead writer stored none of the last events


# --------------------------------------------------------------------------------------------- 6. over HTTP
def test_trades_with_a_time_range_and_klines_older_than_a_week_are_served_from_the_database(
    history_url: str, tmp_path: pathlib.Path
) -> None:
    # Arrange: a server whose history database also holds trades from nine days ago of a market it adds
    data_dir = tmp_path / "data"
    if is_postgres(history_url):
        server = start_server(tmp_path, "--data-dir", str(data_dir), "--db", history_url)
    else:
        server = start_server(tmp_path, "--data-dir", str(data_dir))  # the default: SQLite in the data dir
        history_url = f"sqlite:///{data_dir / 'history.sqlite3'}"
    try:
        with httpx.Client(base_url=server.api, timeout=WAIT, auth=server.auth) as client:
            created = client.post(
                "/markets",
                json={"symbol": "OLD_INR", "base": "OLD", "quote": "INR", "tickSize": "0.01", "lotSize": "1"},
            )
            assert created.status_code == 201, created.text
            now = int(time.time())
            old_hour = (now - 9 * DAY) // 3600 * 3600
            old = [
                trade(1, old_hour * 1000 + 5_000, 10_000, 2, "OLD_INR"),
                trade(2, old_hour * 1000 + 9_000, 10_500, 3, "OLD_INR"),
            ]
            store = HistoryStore(history_url)
            try:
                store.write(old)
            finally:
                store.close()
            for user, asset, amount in (("hs", "TATA", "100"), ("hb", "INR", "100000")):
                body = {"user_id": user, "asset": asset, "amount": amount, "txnId": f"{user}-{asset}"}
                assert client.post("/onramp", json=body).status_code == 200
            started_ms = time.time_ns() // 1_000_000
            for price, quantity in (("100.00", "2"), ("101.50", "3")):
                for user, side in (("hs", "sell"), ("hb", "buy")):
                    order = {"user_id": user, "market": TATA, "side": side, "price": price, "quantity": quantity}
                    placed = client.post("/order", json=order)
                    assert placed.status_code == 200, placed.text
            ended_ms = time.time_ns() // 1_000_000 + 1

            # Act
            recent = client.get("/trades", params={"symbol": TATA, "startTime": started_ms, "endTime": ended_ms})
            before = client.get("/trades", params={"symbol": TATA, "startTime": 0, "endTime": started_ms})
            old_trades = client.get(
                "/trades", params={"symbol": "OLD_INR", "startTime": old_hour * 1000, "endTime": (old_hour + 60) * 1000}
            )
            candles = client.get(
                "/klines", params={"symbol": "OLD_INR", "interval": "1h", "startTime": now - 10 * DAY, "endTime": now}
            )
            week = client.get("/klines", params={"symbol": TATA, "interval": "1w", "startTime": now - 8 * DAY})
    finally:
        code = server.stop()
    assert code == 0, f"server exited with {code}:\n{server.log()}"

    # Assert: the trades just made, newest first, from the database
    assert recent.status_code == 200, recent.text
    rows = recent.json()
    assert [(r["id"], r["price"], r["quantity"], r["isBuyerMaker"]) for r in rows] == [
        ("2", "101.50", "3", False),
        ("1", "100.00", "2", False),
    ]
    assert all(started_ms <= r["timestamp"] < ended_ms for r in rows)
    assert before.status_code == 200 and before.json() == []
    assert old_trades.status_code == 200
    assert [r["id"] for r in old_trades.json()] == ["2", "1"]
    # candles from nine days ago, which the engine never had in memory
    assert candles.status_code == 200, candles.text
    assert candles.json() == [
        {
            "openTime": old_hour * 1000,
            "closeTime": (old_hour + 3600) * 1000,
            "start": old_hour,
            "end": old_hour + 3600,
            "open": "100.00",
            "high": "105.00",
            "low": "100.00",
            "close": "105.00",
            "volume": "5",
            "quoteVolume": "515.00",
            "trades": 2,
            "closed": True,
        }
    ]
    assert week.status_code == 200, week.text
    this_week = (now - WEEK_ORIGIN) // (7 * DAY) * (7 * DAY) + WEEK_ORIGIN
    assert [(c["start"], c["open"], c["close"], c["volume"], c["trades"]) for c in week.json()] == [
        (this_week, "100.00", "101.50", "5", 2)
    ]


# --------------------------------------------------------------------------------------------- 7. limits
def test_the_largest_amounts_the_engine_accepts_are_stored_exactly_and_candles_sum_them_exactly(
    history_url: str, engines: list[Engine], tmp_path: pathlib.Path
) -> None:
    # Arrange: an 18-decimal asset (10 ETH is 10**19 minor units, past SQLite's INTEGER) and the largest
    # deposits, prices and quantities the engine accepts, journaled (integers past 64 bits in the journal)
    eth, usdt = Asset("ETH", 18), Asset("USDT", 6)
    spec = make_market_spec("ETH_USDT", "0.01", "0.0001", {"ETH": eth, "USDT": usdt})
    writer = HistoryWriter(HistoryStore(history_url))
    engine = Engine(reply_timeout=WAIT, history=writer, persistence=Persistence(tmp_path / "data", fsync=False))
    engines.append(engine)
    engine.start([spec])
    deposits = [
        ("holder", "ETH", 9 * 10**18),
        ("holder", "ETH", 10**18),  # the balance passes 2**63 here
        ("whale", "USDT", MAX_AMOUNT_UNITS),
        ("whale", "USDT", MAX_AMOUNT_UNITS),
        ("seller", "ETH", MAX_QUANTITY_LOTS * spec.base_units_per_lot),
    ]
    for number, (user, asset, amount) in enumerate(deposits):
        reply = engine.call(engine.new(Deposit, user_id=user, asset=asset, amount=amount, txn_id=f"big-{number}"))
        assert reply.ok, reply
    price = MAX_PRICE_TICKS // 2
    orders = [
        ("seller", SELL, OrderType.LIMIT, GTC, price, MAX_QUANTITY_LOTS, None),
        ("whale", BUY, OrderType.LIMIT, GTC, price, MAX_QUANTITY_LOTS // 2, None),  # trade 1
        ("whale", BUY, OrderType.MARKET, IOC, None, None, MAX_AMOUNT_UNITS),  # trade 2, by quote budget
    ]
    for user, side, order_type, tif, limit, quantity, budget in orders:
        command = engine.new(
            PlaceOrder,
            user_id=user,
            market="ETH_USDT",
            side=side,
            order_type=order_type,
            time_in_force=tif,
            price=limit,
            quantity=quantity,
            quote_quantity=budget,
        )
        reply = engine.call(command, timeout=WAIT)
        assert reply.ok, reply

    # Act: a reply can overtake its market's trade events on their way to the writer (they leave the market
    # actor when its journal record is durable, the reply leaves the balance actor), so wait for both trades
    wait_for(lambda: writer.flush(WAIT) and len(db_trades(history_url)) == 2, "both trades stored")
    assert writer.flush(WAIT), f"backlog {writer.backlog}, failures {writer.failures}"
    candles = writer.store.klines("ETH_USDT", 86_400, 0, 0, 10**10, 10)

    # Assert: every balance as the ledger has it, exactly, and nothing refused
    assert writer.failures == 0 and writer.set_aside == 0
    ledger = ledger_balances(engine)
    assert ledger[("holder", "ETH")] == (10 * 10**18, 0)
    assert max(max(value) for value in ledger.values()) > 2**100
    assert db_final_balances(history_url) == ledger
    stored = db_trades(history_url)
    assert len(stored) == 2
    assert [order[8] for order in db_orders(history_url)] == [None, None, MAX_AMOUNT_UNITS]
    (candle,) = candles
    lots = sum(row[3] for row in stored)
    assert candle[5] == lots and candle[6] == price * lots  # volume and price x lots, past 2**64
    assert candle[6] > 2**64
    # and the journal gives them back exactly
    engine.stop()
    restarted = Engine(reply_timeout=WAIT, persistence=Persistence(tmp_path / "data", fsync=False))
    engines.append(restarted)
    restarted.start()
    assert ledger_balances(restarted) == ledger


def unstorable_trade(trade_id: int) -> TradeExecuted:
    """A trade whose price no BIGINT column can hold (the engine never makes one): the database refuses it."""
    return trade(trade_id, BASE_TS + trade_id, 2**70, 1, market="BAD_INR")


def test_an_event_the_database_refuses_is_set_aside_and_every_later_event_is_stored(
    history_url: str, tmp_path: pathlib.Path
) -> None:
    # Arrange
    rejected = tmp_path / REJECTED_FILE
    writer = HistoryWriter(HistoryStore(history_url), rejected_path=rejected)
    try:
        good = [trade(number, BASE_TS + number, 100 + number, 1, market="BAD_INR") for number in (1, 2, 4, 5)]

        # Act: a poisoned batch, then more events
        writer.on_events([good[0], good[1], unstorable_trade(3), good[2]])
        assert writer.flush(WAIT), f"a refused event blocked the flush: backlog {writer.backlog}"
        writer.on_events([good[3]])
        assert writer.flush(WAIT)
    finally:
        writer.close()

    # Assert
    assert writer.set_aside == 1
    assert writer.failures == 0
    assert [row[1] for row in db_trades(history_url)] == [1, 2, 4, 5]
    (kept,) = read_set_aside(rejected)
    assert kept["key"] == "TradeExecuted market=BAD_INR trade_id=3"
    assert kept["event"]["price"] == 2**70
    assert kept["error"]


def test_inspect_reports_the_events_the_history_database_refused(tmp_path: pathlib.Path) -> None:
    # Arrange: a data directory with a journal (an engine ran in it) and one refused event
    data_dir = tmp_path / "data"
    data_dir.mkdir()
    engine = Engine(reply_timeout=WAIT, persistence=Persistence(data_dir, fsync=False))
    engine.start([tata_inr()])
    engine.stop()
    writer = HistoryWriter(HistoryStore(f"sqlite:///{tmp_path / 'h.sqlite3'}"), rejected_path=data_dir / REJECTED_FILE)
    writer.on_events([unstorable_trade(9)])
    assert writer.flush(WAIT)
    writer.close()

    # Act
    result = run_inspect(data_dir)

    # Assert
    assert result.returncode == 0, result.stdout + result.stderr
    assert "1 event(s) the database refused are set aside" in result.stdout
    assert "TradeExecuted market=BAD_INR trade_id=3" not in result.stdout
    assert "TradeExecuted market=BAD_INR trade_id=9" in result.stdout


def test_a_history_database_of_the_old_schema_is_refused_with_a_message(tmp_path: pathlib.Path) -> None:
    # Arrange: a version-1 database (amount columns that stop at 2**63), as an earlier openbell made it
    path = tmp_path / "old.sqlite3"
    old = sqlite3.connect(path)
    old.execute(
        "CREATE TABLE balance_changes (user_id TEXT NOT NULL, asset TEXT NOT NULL, available NUMERIC NOT NULL, "
        "locked NUMERIC NOT NULL, ts BIGINT NOT NULL, change_id BIGINT PRIMARY KEY)"
    )
    old.commit()
    old.close()

    # Act / Assert
    with pytest.raises(HistorySchemaError, match=f"schema version 1.*version {SCHEMA_VERSION}.*move that database"):
        HistoryStore(f"sqlite:///{path}")


def test_an_eighteen_decimal_balance_past_64_bits_keeps_trades_with_a_time_range_answering(
    tmp_path: pathlib.Path,
) -> None:
    """The reported reproduction: 9 ETH then 1 more ETH to one user on the default SQLite history."""
    server = start_server(tmp_path, "--markets", "ETH_USDT:0.01:0.0001", "--assets", "ETH:18,USDT:6")
    try:
        with httpx.Client(base_url=server.api, timeout=WAIT, auth=server.auth) as client:
            for number, amount in enumerate(("9", "1")):
                body = {"user_id": "holder", "asset": "ETH", "amount": amount, "txnId": f"eth-{number}"}
                credited = client.post("/onramp", json=body)
                assert credited.status_code == 200, credited.text

            # Act
            started = time.monotonic()
            ranged = client.get("/trades", params={"symbol": "ETH_USDT", "startTime": 0})
            took = time.monotonic() - started
            balance = client.get("/balance", params={"user_id": "holder"}).json()
    finally:
        stopped = time.monotonic()
        code = server.stop()
        stop_took = time.monotonic() - stopped

    # Assert
    assert ranged.status_code == 200, ranged.text
    assert ranged.json() == []
    assert balance["ETH"]["available"] == "10.000000000000000000"
    assert code == 0, server.log()
    assert "refused" not in server.log() and "failed" not in server.log(), server.log()
    assert took < WAIT and stop_took < WAIT
    history = sqlite3.connect(tmp_path / f"data-{server.port}" / "history.sqlite3")
    try:
        rows = history.execute("SELECT available FROM balance_changes WHERE user_id = 'holder'").fetchall()
    finally:
        history.close()
    assert [read_amount(value) for (value,) in rows] == [9 * 10**18, 10 * 10**18]


# --------------------------------------------------------------------------------------------- 8. a child process
def test_the_history_process_stores_what_it_is_handed_and_sets_aside_what_the_database_refuses(
    history_url: str, tmp_path: pathlib.Path
) -> None:
    from openbell.history.process import HistoryProcess

    rejected = tmp_path / REJECTED_FILE
    history = HistoryProcess(history_url, rejected)
    try:
        good = [trade(number, BASE_TS + number, 100 + number, 1, market="KID_INR") for number in (1, 2, 4)]

        # Act
        history.on_events([good[0], unstorable_trade(3), good[1]])
        history.on_events([good[2]])
        flushed = history.flush(WAIT)
        read_back = history.store.trades("KID_INR", 0, 10**14, 10)
    finally:
        history.close()

    # Assert
    assert flushed
    assert [row[1] for row in db_trades(history_url) if row[0] == "KID_INR"] == [1, 2, 4]
    assert [row[0] for row in read_back] == [4, 2, 1]  # the serving process reads what the child wrote
    assert history.set_aside == 1 and [item["key"] for item in read_set_aside(rejected)] == [
        "TradeExecuted market=BAD_INR trade_id=3"
    ]


def test_when_the_history_process_dies_flush_says_so_and_no_snapshot_prunes_what_it_lost(
    tmp_path: pathlib.Path,
) -> None:
    from openbell.history.process import HistoryProcess

    history = HistoryProcess(f"sqlite:///{tmp_path / 'h.sqlite3'}")
    try:
        history.on_events([trade(1, BASE_TS, 100, 1, market="KID_INR")])
        assert history.flush(WAIT)

        # Act: the child is killed
        history._process.kill()
        history._process.join(WAIT)
        history.on_events([trade(2, BASE_TS + 1, 100, 1, market="KID_INR")])

        # Assert: never again "everything is stored" (the persistence takes no snapshot on a False flush)
        assert not history.flush(2.0)
    finally:
        history.close(timeout=2.0)
