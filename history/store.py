"""Storage of history in SQLite (default, a file in the data directory) or PostgreSQL (`--db postgresql://...`).

Tables (all amounts are the engine's integers: ticks, lots, minor units; times are ms since the epoch).
Rows are the engine's events as they are, column for column, so storing one costs no conversion:
- `trades`: every `TradeExecuted`, primary key (market, trade_id);
- `orders`: every accepted order as its `OrderAccepted` said it (side, type, price, quantity...);
- `order_events`: every change of an order's state (status, filled, remaining, reason), in order;
  an order's current state is its newest row;
- `balance_changes`: every `BalanceChanged` (user, asset, available, locked, ts, change_id); change_id
  orders them and keys them.

Writes are idempotent (keys and unique constraints, inserts that ignore duplicates), so the writer may
replay events after a crash without storing anything twice.
"""

from __future__ import annotations

import sqlite3
import threading
from collections.abc import Sequence
from typing import Any

from openbell.core.events import (
    BalanceChanged,
    OrderAccepted,
    OrderCanceled,
    OrderExpired,
    OrderFilled,
    OrderPartiallyFilled,
    OrderRejected,
    TradeExecuted,
)
from openbell.core.types import ResultCode

SCHEMA = [
    """CREATE TABLE IF NOT EXISTS trades (
        market TEXT NOT NULL, trade_id BIGINT NOT NULL, price BIGINT NOT NULL, quantity BIGINT NOT NULL,
        taker_side TEXT NOT NULL, maker_order_id BIGINT NOT NULL, maker_user_id TEXT NOT NULL,
        taker_order_id BIGINT NOT NULL, taker_user_id TEXT NOT NULL, ts BIGINT NOT NULL,
        PRIMARY KEY (market, trade_id))""",
    "CREATE INDEX IF NOT EXISTS trades_market_ts ON trades (market, ts)",
    """CREATE TABLE IF NOT EXISTS orders (
        market TEXT NOT NULL, order_id BIGINT PRIMARY KEY, user_id TEXT NOT NULL, side TEXT NOT NULL,
        order_type TEXT NOT NULL, time_in_force TEXT NOT NULL, price BIGINT, quantity BIGINT,
        quote_quantity NUMERIC, client_order_id TEXT, ts BIGINT NOT NULL)""",
    "CREATE INDEX IF NOT EXISTS orders_user ON orders (user_id, ts)",
    """CREATE TABLE IF NOT EXISTS order_events (
        order_id BIGINT NOT NULL, market TEXT NOT NULL, user_id TEXT NOT NULL, status TEXT NOT NULL,
        filled BIGINT NOT NULL, remaining BIGINT NOT NULL, reason TEXT, ts BIGINT NOT NULL,
        UNIQUE (order_id, status, filled, remaining))""",
    """CREATE TABLE IF NOT EXISTS balance_changes (
        user_id TEXT NOT NULL, asset TEXT NOT NULL, available NUMERIC NOT NULL, locked NUMERIC NOT NULL,
        ts BIGINT NOT NULL, change_id BIGINT PRIMARY KEY)""",
]

_INSERTS = {
    "trades": "INSERT OR IGNORE INTO trades VALUES (?,?,?,?,?,?,?,?,?,?)",
    "orders": "INSERT OR IGNORE INTO orders VALUES (?,?,?,?,?,?,?,?,?,?,?)",
    "order_events": "INSERT OR IGNORE INTO order_events VALUES (?,?,?,?,?,?,?,?)",
    "balance_changes": "INSERT OR IGNORE INTO balance_changes VALUES (?,?,?,?,?,?)",
}


class HistoryStore:
    """One connection for writing (the writer thread) and short-lived ones for reading."""

    def __init__(self, url: str) -> None:
        self.url = url
        self.postgres = url.startswith(("postgresql://", "postgres://"))
        self._write_lock = threading.Lock()
        self._conn = self._connect()
        with self._write_lock:
            cur = self._conn.cursor()
            for statement in SCHEMA:
                cur.execute(statement)
            self._conn.commit()

    def _connect(self) -> Any:
        if self.postgres:
            import psycopg

            return psycopg.connect(self.url, connect_timeout=5)
        path = self.url.removeprefix("sqlite:///").removeprefix("sqlite://")
        conn = sqlite3.connect(path, timeout=30, check_same_thread=False)
        conn.execute("PRAGMA journal_mode=WAL")
        conn.execute("PRAGMA synchronous=NORMAL")
        return conn

    def _sql(self, statement: str) -> str:
        if self.postgres:
            if statement.startswith("INSERT OR IGNORE"):
                statement = statement.replace("INSERT OR IGNORE", "INSERT") + " ON CONFLICT DO NOTHING"
            statement = statement.replace("?", "%s")
        return statement

    def close(self) -> None:
        try:
            self._conn.close()
        except Exception:
            pass

    # ----------------------------------------------------------------- writing
    def write(self, events: Sequence[object]) -> None:
        """Store a batch of events in one transaction."""
        trades: list[Any] = []
        orders: list[Any] = []
        changes: list[Any] = []
        balances: list[Any] = []
        for event in events:
            kind = type(event)
            if kind is TradeExecuted:
                trades.append(event)
            elif kind is BalanceChanged:
                balances.append(event)
            elif kind is OrderAccepted:
                orders.append(event)
            elif kind in _STATE_EVENTS:
                e: Any = event
                if kind is OrderFilled:
                    changes.append((e.order_id, e.market, e.user_id, "FILLED", e.filled_quantity, 0, None, e.ts))
                elif kind is OrderExpired:
                    changes.append(
                        (
                            e.order_id,
                            e.market,
                            e.user_id,
                            "EXPIRED",
                            e.filled_quantity,
                            e.remaining_quantity,
                            e.reason.name,
                            e.ts,
                        )
                    )
                elif kind is OrderRejected:
                    if e.code is not ResultCode.UNKNOWN_ORDER:  # a refused cancel leaves that order alone
                        changes.append((e.order_id, e.market, e.user_id, "REJECTED", 0, 0, e.reason, e.ts))
                else:
                    changes.append(
                        (
                            e.order_id,
                            e.market,
                            e.user_id,
                            e.status.value,
                            e.filled_quantity,
                            e.remaining_quantity,
                            None,
                            e.ts,
                        )
                    )
        with self._write_lock:
            try:
                cur = self._conn.cursor()
                for table, rows in (
                    ("trades", trades),
                    ("orders", orders),
                    ("order_events", changes),
                    ("balance_changes", balances),
                ):
                    if rows:
                        cur.executemany(self._sql(_INSERTS[table]), rows)
                self._conn.commit()
            except Exception:
                self._abandon_transaction()
                raise

    def _abandon_transaction(self) -> None:
        """After a failed write, so that the retry can succeed: roll back (PostgreSQL refuses every statement
        in an aborted transaction), or connect again if the connection itself is gone."""
        try:
            self._conn.rollback()
        except Exception:
            self.close()
            try:
                self._conn = self._connect()
            except Exception:
                pass  # still down: the next write fails on the closed connection and comes back here

    # ----------------------------------------------------------------- reading
    def _read(self, statement: str, params: tuple[Any, ...]) -> list[tuple[Any, ...]]:
        if self.postgres:
            conn = self._connect()
            try:
                return list(conn.execute(self._sql(statement), params).fetchall())
            finally:
                conn.close()
        with self._write_lock:
            return list(self._conn.execute(statement, params).fetchall())

    def trades(self, market: str, start_ms: int, end_ms: int, limit: int) -> list[tuple[Any, ...]]:
        """(trade_id, price, quantity, taker_side, ts) in [start, end), newest first."""
        return self._read(
            "SELECT trade_id, price, quantity, taker_side, ts FROM trades "
            "WHERE market = ? AND ts >= ? AND ts < ? ORDER BY trade_id DESC LIMIT ?",
            (market, start_ms, end_ms, limit),
        )

    def klines(
        self, market: str, interval: int, origin: int, start: int, end: int, limit: int
    ) -> list[tuple[int, ...]]:
        """(bucket start, open, high, low, close, volume in lots, sum of price x lots, trades) per bucket.

        Buckets are `interval` seconds from `origin`; open and close are the first and last trade's
        price by trade id. The caller turns price x lots into quote units with the market's grid.
        """
        bucket = f"((ts / 1000 - {int(origin)}) / {int(interval)}) * {int(interval)} + {int(origin)}"
        if self.postgres:
            bucket = f"(floor((ts / 1000 - {int(origin)}) / {int(interval)})::bigint * {int(interval)} + {int(origin)})"
        rows = self._read(
            f"SELECT {bucket} AS b, MIN(trade_id), MAX(trade_id), MAX(price), MIN(price), SUM(quantity), "
            f"SUM(price * quantity), COUNT(*) FROM trades WHERE market = ? AND ts >= ? AND ts < ? "
            f"GROUP BY b ORDER BY b LIMIT ?",
            (market, start * 1000, end * 1000, limit),
        )
        out: list[tuple[int, ...]] = []
        for b, first_id, last_id, high, low, volume, notional, count in rows:
            prices = dict(
                self._read(
                    "SELECT trade_id, price FROM trades WHERE market = ? AND trade_id IN (?, ?)",
                    (market, first_id, last_id),
                )
            )
            out.append(
                (
                    int(b),
                    int(prices[first_id]),
                    int(high),
                    int(low),
                    int(prices[last_id]),
                    int(volume),
                    int(notional),
                    int(count),
                )
            )
        return out


_STATE_EVENTS = frozenset({OrderRejected, OrderPartiallyFilled, OrderFilled, OrderCanceled, OrderExpired})
