"""The history queries behind `/api/v3` (`GET order`, `allOrders`, `myTrades`): one user's orders with their
latest state and executed quote, and one user's trades, from the store, on SQLite and on PostgreSQL."""

from __future__ import annotations

import pytest
from core_helpers import BUY, SELL, Venue, ticks
from test_history import history_url  # noqa: F401  (fixture)

from openbell.core.events import OrderAccepted, OrderFilled, TradeExecuted
from openbell.core.types import OrderType, Side, TimeInForce
from openbell.history.store import HistoryStore

MARKET = "TATA_INR"


def trading_day() -> list[object]:
    """Real book events: a seller's ask filled in two trades, the rest canceled; two buyers; a resting bid."""
    venue = Venue()
    venue.fund("seller", tata_amount="10")
    venue.fund("alice", inr_amount="1000")
    venue.fund("bob", inr_amount="1000")
    events: list[object] = []
    events += venue.limit("seller", SELL, "100", 5, client_order_id="ask")  # order 1
    events += venue.limit("alice", BUY, "101", 2)  # order 2: fills 2 @ 100
    events += venue.limit("bob", BUY, "100", 1)  # order 3: fills 1 @ 100
    events += venue.cancel("seller", 1)
    events += venue.limit("alice", BUY, "90", 3, client_order_id="bid")  # order 5
    return events


def test_a_users_orders_carry_their_latest_state_and_executed_quote(history_url: str) -> None:  # noqa: F811
    store = HistoryStore(history_url)
    try:
        store.write(trading_day())

        seller = store.user_orders(MARKET, "seller", None, None, 0, 0, 10**14, 100)
        alice = store.user_orders(MARKET, "alice", None, None, 0, 0, 10**14, 100)
        by_client_id = store.user_orders(MARKET, "alice", None, "bid", 0, 0, 10**14, 100)
        other_user = store.user_orders(MARKET, "bob", 1, None, 0, 0, 10**14, 100)
    finally:
        store.close()

    # (order id, side, type, tif, price, quantity, quote budget, client id, ts, status, filled, price x lots, updated)
    assert [(r[0], r[9], r[10], r[11]) for r in seller] == [(1, "CANCELED", 3, ticks("100") * 3)]
    assert [(r[0], r[1], r[7], r[9], r[10], r[11]) for r in alice] == [
        (2, "buy", None, "FILLED", 2, ticks("100") * 2),
        (5, "buy", "bid", "NEW", 0, 0),
    ]
    assert [r[0] for r in by_client_id] == [5]
    assert other_user == []  # another user's order is not found


def test_a_users_trades_are_its_own_oldest_first_by_order_or_from_an_id(history_url: str) -> None:  # noqa: F811
    store = HistoryStore(history_url)
    try:
        store.write(trading_day())

        seller = store.user_trades(MARKET, "seller", None, 0, 0, 10**14, 100)
        of_order = store.user_trades(MARKET, "seller", 1, 0, 0, 10**14, 100)
        from_second = store.user_trades(MARKET, "seller", None, 2, 0, 10**14, 100)
        newest = store.user_trades(MARKET, "seller", None, 0, 0, 10**14, 1)
        bob = store.user_trades(MARKET, "bob", None, 0, 0, 10**14, 100)
    finally:
        store.close()

    assert [(r[0], int(r[1]), int(r[2])) for r in seller] == [(1, ticks("100"), 2), (2, ticks("100"), 1)]
    assert [r[0] for r in of_order] == [1, 2]
    assert [r[0] for r in from_second] == [2]
    assert [r[0] for r in newest] == [2]
    assert [(r[0], r[7]) for r in bob] == [(2, "bob")]


def test_executed_quote_is_exact_past_64_bits(history_url: str) -> None:  # noqa: F811
    price, lots = 10**15, 10**6  # price x lots = 10**21 > 2**63
    events = [
        OrderAccepted(MARKET, 1, "maker", Side.SELL, OrderType.LIMIT, TimeInForce.GTC, price, 3 * lots, None, None, 1),
        OrderAccepted(MARKET, 2, "taker", Side.BUY, OrderType.LIMIT, TimeInForce.GTC, price, 3 * lots, None, None, 2),
        TradeExecuted(MARKET, 1, price, lots, BUY, 1, "maker", 2, "taker", 2),
        TradeExecuted(MARKET, 2, price, 2 * lots, BUY, 1, "maker", 2, "taker", 2),
        OrderFilled(MARKET, 1, "maker", 3 * lots, 2),
        OrderFilled(MARKET, 2, "taker", 3 * lots, 2),
    ]
    store = HistoryStore(history_url)
    try:
        store.write(events)
        [taker] = store.user_orders(MARKET, "taker", 2, None, 0, 0, 10**14, 10)
    finally:
        store.close()

    assert taker[11] == 3 * price * lots and taker[9] == "FILLED"


def test_a_stops_stop_price_is_kept_after_it_ends(history_url: str) -> None:  # noqa: F811
    # Arrange: a stop-limit sell that waits, then is canceled (ended: the engine no longer knows it).
    venue = Venue()
    venue.fund("holder", tata_amount="5")
    events = venue.stop("holder", SELL, OrderType.STOP_LOSS_LIMIT, "95", 2, "94")  # order 1
    events += venue.cancel("holder", 1)
    store = HistoryStore(history_url)
    try:
        # Act
        store.write(events)
        [row] = store.user_orders(MARKET, "holder", 1, None, 0, 0, 10**14, 10)
    finally:
        store.close()

    # Assert: its type, limit price, state, and the stop price last.
    assert (row[0], row[2], row[4], row[9], row[-1]) == (1, "stop_loss_limit", ticks("94"), "CANCELED", ticks("95"))


@pytest.mark.parametrize("old", ["3", "3 upgraded meanwhile", "2"])
def test_an_older_database_gains_the_stop_price_column_and_keeps_its_orders(history_url: str, old: str) -> None:  # noqa: F811
    # Arrange: a database as openbell wrote it at schema 3 (no orders.stop_price) or 2 (nor deposits and
    # markets), holding one order; or one that another process sharing it has just upgraded (the column is
    # there, and this process read version 3 before that).
    store = HistoryStore(history_url)
    try:
        store.write(_one_limit_order())
    finally:
        store.close()
    if old != "3 upgraded meanwhile":
        _execute(history_url, "ALTER TABLE orders DROP COLUMN stop_price")
    if old == "2":
        _execute(history_url, "DROP TABLE deposits")
        _execute(history_url, "DROP TABLE markets")
    _execute(history_url, f"UPDATE history_meta SET value = '{old[0]}' WHERE name = 'schema_version'")

    # Act: this version opens it, and stores a stop.
    store = HistoryStore(history_url)
    try:
        venue = Venue()
        venue.fund("holder", tata_amount="5")
        venue.next_seq()  # order ids after the first database's
        store.write(venue.stop("holder", SELL, OrderType.STOP_LOSS_LIMIT, "95", 2, "94"))
        before = store.user_orders(MARKET, "alice", None, None, 0, 0, 10**14, 10)
        stop = store.user_orders(MARKET, "holder", None, None, 0, 0, 10**14, 10)
    finally:
        store.close()

    # Assert: the old order reads back with no stop price, the new stop with its own; the version is 4.
    assert [(r[0], r[-1]) for r in before] == [(1, None)]
    assert [(r[2], r[-1]) for r in stop] == [("stop_loss_limit", ticks("95"))]
    assert _version(history_url) == "4"


def _one_limit_order() -> list[object]:
    venue = Venue()
    venue.fund("alice", inr_amount="1000")
    return venue.limit("alice", BUY, "90", 1)  # order 1


def _execute(url: str, statement: str) -> None:
    if url.startswith("postgresql://"):
        import psycopg

        with psycopg.connect(url, connect_timeout=5, autocommit=True) as server:
            server.execute(statement)
    else:
        import sqlite3

        file = sqlite3.connect(url.removeprefix("sqlite:///"))
        try:
            file.execute(statement)
            file.commit()
        finally:
            file.close()


def _version(url: str) -> str:
    from test_history import read

    [(value,)] = read(url, "SELECT value FROM history_meta WHERE name = ?", ("schema_version",))
    return str(value)
