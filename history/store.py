"""Storage of history in SQLite (default, a file in the data directory) or PostgreSQL (`--db postgresql://...`).

Tables (all amounts are the engine's integers: ticks, lots, minor units; times are ms since the epoch):
- `trades(market, trade_id, price, quantity, quote_quantity, is_buyer_maker, maker_order_id,
  taker_order_id, maker_user_id, taker_user_id, ts)`, primary key (market, trade_id);
- `orders(order_id, market, user_id, side, order_type, price, quantity, filled, status, reason,
  client_order_id, created_ts, updated_ts)`: each order's latest state;
- `balance_changes(user_id, asset, available, locked, ts)`: every balance change, in order.

Writes are idempotent (a trade or an order state written twice is stored once), so the writer may
replay events after a crash without duplicating anything.
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

SCHEMA = [
    """CREATE TABLE IF NOT EXISTS trades (
        market TEXT NOT NULL, trade_id BIGINT NOT NULL, price BIGINT NOT NULL, quantity BIGINT NOT NULL,
        quote_quantity NUMERIC NOT NULL, is_buyer_maker BOOLEAN NOT NULL, maker_order_id BIGINT NOT NULL,
        taker_order_id BIGINT NOT NULL, maker_user_id TEXT NOT NULL, taker_user_id TEXT NOT NULL, ts BIGINT NOT NULL,
        PRIMARY KEY (market, trade_id))""",
    "CREATE INDEX IF NOT EXISTS trades_market_ts ON trades (market, ts)",
    """CREATE TABLE IF NOT EXISTS orders (
        order_id BIGINT PRIMARY KEY, market TEXT NOT NULL, user_id TEXT NOT NULL, side TEXT NOT NULL,
        order_type TEXT NOT NULL, price BIGINT, quantity BIGINT, filled BIGINT NOT NULL, status TEXT NOT NULL,
        reason TEXT, client_order_id TEXT, created_ts BIGINT NOT NULL, updated_ts BIGINT NOT NULL)""",
    "CREATE INDEX IF NOT EXISTS orders_user ON orders (user_id, created_ts)",
    """CREATE TABLE IF NOT EXISTS balance_changes (
        user_id TEXT NOT NULL, asset TEXT NOT NULL, available NUMERIC NOT NULL, locked NUMERIC NOT NULL,
        ts BIGINT NOT NULL, UNIQUE (user_id, asset, ts, available, locked))""",
]


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
            statement = statement.replace("INSERT OR IGNORE", "INSERT").replace("?", "%s")
            if statement.startswith(("INSERT INTO trades", "INSERT INTO balance_changes")):
                statement += " ON CONFLICT DO NOTHING"
        return statement

    def close(self) -> None:
        try:
            self._conn.close()
        except Exception:
            pass

    # ----------------------------------------------------------------- writing
    def write(self, events: Sequence[object], quote_units: dict[str, int]) -> None:
        """Store a batch of events in one transaction. `quote_units[market]` is its quote per tick-lot."""
        trades: list[tuple[Any, ...]] = []
        orders: dict[int, dict[str, Any]] = {}
        balances: list[tuple[Any, ...]] = []
        for event in events:
            kind = type(event)
            if kind is TradeExecuted:
                t: Any = event
                quote = t.price * t.quantity * quote_units.get(t.market, 1)
                trades.append(
                    (
                        t.market,
                        t.trade_id,
                        t.price,
                        t.quantity,
                        quote,
                        t.is_buyer_maker,
                        t.maker_order_id,
                        t.taker_order_id,
                        t.maker_user_id,
                        t.taker_user_id,
                        t.ts,
                    )
                )
            elif kind is BalanceChanged:
                b: Any = event
                balances.append((b.user_id, b.asset, b.available, b.locked, b.ts))
            elif kind in _ORDER_EVENTS:
                _fold_order(orders, event)
        with self._write_lock:
            cur = self._conn.cursor()
            if trades:
                cur.executemany(self._sql("INSERT OR IGNORE INTO trades VALUES (?,?,?,?,?,?,?,?,?,?,?)"), trades)
            for row in orders.values():
                self._upsert_order(cur, row)
            if balances:
                cur.executemany(self._sql("INSERT OR IGNORE INTO balance_changes VALUES (?,?,?,?,?)"), balances)
            self._conn.commit()

    def _upsert_order(self, cur: Any, row: dict[str, Any]) -> None:
        if row.get("created"):
            cur.execute(
                self._sql(
                    "INSERT INTO orders VALUES (?,?,?,?,?,?,?,?,?,?,?,?,?) "
                    + (
                        "ON CONFLICT (order_id) DO UPDATE SET filled=excluded.filled, status=excluded.status, "
                        "reason=excluded.reason, updated_ts=excluded.updated_ts"
                    )
                ),
                (
                    row["order_id"],
                    row["market"],
                    row["user_id"],
                    row["side"],
                    row["order_type"],
                    row["price"],
                    row["quantity"],
                    row["filled"],
                    row["status"],
                    row["reason"],
                    row["client_order_id"],
                    row["ts"],
                    row["ts"],
                ),
            )
        else:
            cur.execute(
                self._sql("UPDATE orders SET filled=?, status=?, reason=?, updated_ts=? WHERE order_id=?"),
                (row["filled"], row["status"], row["reason"], row["ts"], row["order_id"]),
            )

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
        """(trade_id, price, quantity, quote_quantity, is_buyer_maker, ts) in [start, end), newest first."""
        return self._read(
            "SELECT trade_id, price, quantity, quote_quantity, is_buyer_maker, ts FROM trades "
            "WHERE market = ? AND ts >= ? AND ts < ? ORDER BY trade_id DESC LIMIT ?",
            (market, start_ms, end_ms, limit),
        )

    def trade_count(self, market: str) -> int:
        return int(self._read("SELECT COUNT(*) FROM trades WHERE market = ?", (market,))[0][0])

    def klines(
        self, market: str, interval: int, origin: int, start: int, end: int, limit: int
    ) -> list[tuple[int, ...]]:
        """(bucket start, open, high, low, close, volume, quote volume, trades) per bucket, oldest first.

        Buckets are `interval` seconds from `origin`; open and close are the first and last trade's
        price by trade id.
        """
        bucket = f"((ts / 1000 - {int(origin)}) / {int(interval)}) * {int(interval)} + {int(origin)}"
        if self.postgres:
            bucket = f"(floor((ts / 1000 - {int(origin)}) / {int(interval)})::bigint * {int(interval)} + {int(origin)})"
        rows = self._read(
            f"SELECT {bucket} AS b, MIN(trade_id), MAX(trade_id), MAX(price), MIN(price), SUM(quantity), "
            f"SUM(quote_quantity), COUNT(*) FROM trades WHERE market = ? AND ts >= ? AND ts < ? "
            f"GROUP BY b ORDER BY b LIMIT ?",
            (market, start * 1000, end * 1000, limit),
        )
        out: list[tuple[int, ...]] = []
        for b, first_id, last_id, high, low, volume, quote_volume, count in rows:
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
                    int(quote_volume),
                    int(count),
                )
            )
        return out


_ORDER_EVENTS = frozenset(
    {OrderAccepted, OrderRejected, OrderPartiallyFilled, OrderFilled, OrderCanceled, OrderExpired}
)


def _fold_order(orders: dict[int, dict[str, Any]], event: Any) -> None:
    kind = type(event)
    if kind is OrderRejected and event.code.name == "UNKNOWN_ORDER":
        return  # a refused cancel names someone's order id; that order is untouched
    row = orders.get(event.order_id)
    if kind is OrderAccepted or kind is OrderRejected:
        row = orders[event.order_id] = {
            "created": True,
            "order_id": event.order_id,
            "market": event.market,
            "user_id": event.user_id,
            "side": event.side.value if kind is OrderAccepted else "",
            "order_type": event.order_type.value if kind is OrderAccepted else "",
            "price": event.price if kind is OrderAccepted else None,
            "quantity": event.quantity if kind is OrderAccepted else None,
            "filled": 0,
            "status": "NEW" if kind is OrderAccepted else "REJECTED",
            "reason": None if kind is OrderAccepted else event.reason,
            "client_order_id": event.client_order_id,
            "ts": event.ts,
        }
        return
    if row is None:
        row = orders[event.order_id] = {"created": False, "order_id": event.order_id, "reason": None}
    row["filled"] = event.filled_quantity
    row["status"] = event.status.value
    row["ts"] = event.ts
    if kind is OrderExpired:
        row["reason"] = event.reason.name
