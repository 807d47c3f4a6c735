"""Storage of history in SQLite (default, a file in the data directory) or PostgreSQL (`--db postgresql://...`).

Tables (all amounts are the engine's integers: ticks, lots, minor units; times are ms since the epoch).
Rows are the engine's events as they are, column for column:
- `trades`: every `TradeExecuted`, primary key (market, trade_id);
- `orders`: every accepted order as its `OrderAccepted` said it (side, type, price, quantity..., and a stop or
  take-profit order's stop price);
- `order_events`: every change of an order's state (status, filled, remaining, reason), in order;
  an order's current state is its newest row;
- `balance_changes`: every `BalanceChanged` (user, asset, available, locked, ts, change_id); change_id
  orders them and keys them;
- `deposits`: every `Deposited` (user, asset, amount, txn id, ts), primary key txn_id;
- `markets`: every `MarketAdded` (symbol, the spec as JSON, ts), so trades can be turned into amounts and fees;
- `history_meta`: the schema version (`SCHEMA_VERSION`); a database of another version is refused with
  `HistorySchemaError`, never misread.

Every value the engine accepts fits: prices and quantities are at most 10**15 ticks or lots and ids and
times are well inside 64 bits (BIGINT), while amounts of an asset (balances, a market buy's quote budget)
have no such bound and are stored exactly as arbitrary-precision integers: NUMERIC in PostgreSQL, and
their decimal digits in TEXT columns in SQLite (whose INTEGER stops at 2**63 - 1). `read_amount` turns
what a column holds back into an int. Aggregates that could overflow 64 bits (a candle's quote volume,
sum of price x quantity) are computed in Python from exact per-price sums.

Writes are idempotent (keys and unique constraints, inserts that ignore duplicates), so the writer may
replay events after a crash without storing anything twice.
"""

from __future__ import annotations

import sqlite3
import threading
from collections.abc import Sequence
from decimal import Decimal
from typing import Any

import msgspec

from openbell.core.events import (
    BalanceChanged,
    Deposited,
    MarketAdded,
    OrderAccepted,
    OrderCanceled,
    OrderExpired,
    OrderFilled,
    OrderPartiallyFilled,
    OrderRejected,
    TradeExecuted,
)

SCHEMA_VERSION = 4
"""1: amounts in NUMERIC/BIGINT columns (failed for values of 2**63 and more). 2: amounts stored exactly.
3: `deposits` and `markets` added (a version 2 database gets them at start; deposits and markets from before
that are not in it). 4: `orders.stop_price` (a version 2 or 3 database gets the column at start; stops stored
before have none)."""


class HistorySchemaError(RuntimeError):
    """The database holds history in a schema this version does not write."""


def _schema(amount: str) -> list[str]:
    return [
        """CREATE TABLE IF NOT EXISTS trades (
        market TEXT NOT NULL, trade_id BIGINT NOT NULL, price BIGINT NOT NULL, quantity BIGINT NOT NULL,
        taker_side TEXT NOT NULL, maker_order_id BIGINT NOT NULL, maker_user_id TEXT NOT NULL,
        taker_order_id BIGINT NOT NULL, taker_user_id TEXT NOT NULL, ts BIGINT NOT NULL,
        PRIMARY KEY (market, trade_id))""",
        "CREATE INDEX IF NOT EXISTS trades_market_ts ON trades (market, ts)",
        f"""CREATE TABLE IF NOT EXISTS orders (
        market TEXT NOT NULL, order_id BIGINT PRIMARY KEY, user_id TEXT NOT NULL, side TEXT NOT NULL,
        order_type TEXT NOT NULL, time_in_force TEXT NOT NULL, price BIGINT, quantity BIGINT,
        quote_quantity {amount}, client_order_id TEXT, ts BIGINT NOT NULL, stop_price BIGINT)""",
        "CREATE INDEX IF NOT EXISTS orders_user ON orders (user_id, ts)",
        """CREATE TABLE IF NOT EXISTS order_events (
        order_id BIGINT NOT NULL, market TEXT NOT NULL, user_id TEXT NOT NULL, status TEXT NOT NULL,
        filled BIGINT NOT NULL, remaining BIGINT NOT NULL, reason TEXT, ts BIGINT NOT NULL,
        UNIQUE (order_id, status, filled, remaining))""",
        f"""CREATE TABLE IF NOT EXISTS balance_changes (
        user_id TEXT NOT NULL, asset TEXT NOT NULL, available {amount} NOT NULL, locked {amount} NOT NULL,
        ts BIGINT NOT NULL, change_id BIGINT PRIMARY KEY)""",
        *_added_in_3(amount),
    ]




def _added_in_3(amount: str) -> list[str]:
    return [
        f"""CREATE TABLE IF NOT EXISTS deposits (
        txn_id TEXT PRIMARY KEY, user_id TEXT NOT NULL, asset TEXT NOT NULL, amount {amount} NOT NULL,
        ts BIGINT NOT NULL)""",
        "CREATE INDEX IF NOT EXISTS deposits_user ON deposits (user_id, ts)",
        "CREATE TABLE IF NOT EXISTS markets (symbol TEXT PRIMARY KEY, spec TEXT NOT NULL, ts BIGINT NOT NULL)",
        "CREATE INDEX IF NOT EXISTS trades_maker_user ON trades (maker_user_id, ts)",
        "CREATE INDEX IF NOT EXISTS trades_taker_user ON trades (taker_user_id, ts)",
        "CREATE INDEX IF NOT EXISTS balance_changes_user ON balance_changes (user_id, asset, change_id)",
    ]


_TABLES = ("trades", "orders", "order_events", "balance_changes", "deposits", "markets")

_INDEXES = [
    "CREATE INDEX IF NOT EXISTS trades_market_taker ON trades (market, taker_user_id, trade_id)",
    "CREATE INDEX IF NOT EXISTS trades_market_maker ON trades (market, maker_user_id, trade_id)",
]
"""Indexes for one user's trades (`user_trades`, `user_orders`); made on databases of the same schema version
too, since an index changes no row."""

_TERMINAL = frozenset({"FILLED", "CANCELED", "EXPIRED", "REJECTED"})

_INSERTS = {
    "trades": "INSERT OR IGNORE INTO trades VALUES (?,?,?,?,?,?,?,?,?,?)",
    "orders": "INSERT OR IGNORE INTO orders VALUES (?,?,?,?,?,?,?,?,?,?,?,?)",
    "order_events": "INSERT OR IGNORE INTO order_events VALUES (?,?,?,?,?,?,?,?)",
    "balance_changes": "INSERT OR IGNORE INTO balance_changes VALUES (?,?,?,?,?,?)",
    "deposits": "INSERT OR IGNORE INTO deposits VALUES (?,?,?,?,?)",
    "markets": "INSERT OR IGNORE INTO markets VALUES (?,?,?)",
}


def read_amount(value: Any) -> int:
    """An amount column's value (SQLite TEXT digits, PostgreSQL Decimal, or a plain int) as an int."""
    if isinstance(value, int):
        return value
    if isinstance(value, Decimal):
        return int(value)
    return int(str(value))


class HistoryStore:
    """One connection for writing (the writer thread) and short-lived ones for reading."""

    def __init__(self, url: str) -> None:
        self.url = url
        self.postgres = url.startswith(("postgresql://", "postgres://"))
        self._amount = (lambda units: units) if self.postgres else _digits
        self._write_lock = threading.Lock()
        self._conn = self._connect()
        with self._write_lock:
            try:
                self._create_schema()
            except BaseException:
                self.close()
                raise

    def _connect(self) -> Any:
        if self.postgres:
            import psycopg

            return psycopg.connect(self.url, connect_timeout=5)
        path = self.url.removeprefix("sqlite:///").removeprefix("sqlite://")
        conn = sqlite3.connect(path, timeout=30, check_same_thread=False)
        conn.execute("PRAGMA journal_mode=WAL")
        conn.execute("PRAGMA synchronous=NORMAL")
        return conn

    def _create_schema(self) -> None:
        cur = self._conn.cursor()
        cur.execute("CREATE TABLE IF NOT EXISTS history_meta (name TEXT PRIMARY KEY, value TEXT NOT NULL)")
        cur.execute(self._sql("SELECT value FROM history_meta WHERE name = ?"), ("schema_version",))
        row = cur.fetchone()
        if row is None:
            existing = [table for table in _TABLES[:4] if self._has_table(cur, table)]
            if existing:
                raise HistorySchemaError(
                    f"history database {self._where()} holds tables of schema version 1 ({', '.join(existing)}); "
                    f"this openbell writes version {SCHEMA_VERSION}: move that database aside or give --db a new one"
                )
            for statement in _schema("NUMERIC" if self.postgres else "TEXT"):
                cur.execute(statement)
            cur.execute(self._sql("INSERT INTO history_meta VALUES (?, ?)"), ("schema_version", str(SCHEMA_VERSION)))
        elif row[0] in ("2", "3"):
            if row[0] == "2":
                for statement in _added_in_3("NUMERIC" if self.postgres else "TEXT"):
                    cur.execute(statement)
            self._add_stop_price(cur)
            cur.execute(self._sql("UPDATE history_meta SET value = ? WHERE name = ?"), (str(SCHEMA_VERSION), "schema_version"))
        elif row[0] != str(SCHEMA_VERSION):
            raise HistorySchemaError(
                f"history database {self._where()} has schema version {row[0]}; this openbell writes version "
                f"{SCHEMA_VERSION}: move that database aside or give --db a new one"
            )
        for statement in _INDEXES:
            cur.execute(statement)
        self._conn.commit()

    def _add_stop_price(self, cur: Any) -> None:
        """Schema 4's column, on a database of version 2 or 3. Processes sharing one PostgreSQL database may
        upgrade it at the same moment: the statement is one that a second run leaves as it is."""
        if self.postgres:
            cur.execute("ALTER TABLE orders ADD COLUMN IF NOT EXISTS stop_price BIGINT")
            return
        cur.execute("SELECT 1 FROM pragma_table_info('orders') WHERE name = 'stop_price'")
        if cur.fetchone() is None:
            cur.execute("ALTER TABLE orders ADD COLUMN stop_price BIGINT")

    def _has_table(self, cur: Any, table: str) -> bool:
        if self.postgres:
            cur.execute("SELECT to_regclass(%s)", (table,))
            return cur.fetchone()[0] is not None
        cur.execute("SELECT 1 FROM sqlite_master WHERE type = 'table' AND name = ?", (table,))
        return cur.fetchone() is not None

    def _where(self) -> str:
        """The database named without credentials, for messages."""
        if self.postgres:
            return self.url.rsplit("@", 1)[-1]
        return self.url

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
        amount = self._amount
        trades: list[Any] = []
        orders: list[Any] = []
        changes: list[Any] = []
        balances: list[Any] = []
        deposits: list[Any] = []
        markets: list[Any] = []
        for event in events:
            kind = type(event)
            e: Any = event
            if kind is TradeExecuted:
                trades.append(
                    (
                        e.market,
                        e.trade_id,
                        e.price,
                        e.quantity,
                        e.taker_side.value,
                        e.maker_order_id,
                        e.maker_user_id,
                        e.taker_order_id,
                        e.taker_user_id,
                        e.ts,
                    )
                )
            elif kind is BalanceChanged:
                balances.append((e.user_id, e.asset, amount(e.available), amount(e.locked), e.ts, e.change_id))
            elif kind is Deposited:
                deposits.append((e.txn_id, e.user_id, e.asset, amount(e.amount), e.ts))
            elif kind is MarketAdded:
                markets.append((e.spec.symbol, msgspec.json.encode(e.spec).decode(), e.ts))
            elif kind is OrderAccepted:
                orders.append(
                    (
                        e.market,
                        e.order_id,
                        e.user_id,
                        e.side.value,
                        e.order_type.value,
                        e.time_in_force.value,
                        e.price,
                        e.quantity,
                        None if e.quote_quantity is None else amount(e.quote_quantity),
                        e.client_order_id,
                        e.ts,
                        e.stop_price,
                    )
                )
            elif kind in _STATE_EVENTS:
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
                    ("deposits", deposits),
                    ("markets", markets),
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
        """(trade_id, price, quantity, taker_side, maker_order_id, maker_user_id, taker_order_id, taker_user_id,
        ts) in [start, end), newest first."""
        return self._read(
            "SELECT trade_id, price, quantity, taker_side, maker_order_id, maker_user_id, taker_order_id, "
            "taker_user_id, ts FROM trades "
            "WHERE market = ? AND ts >= ? AND ts < ? ORDER BY trade_id DESC LIMIT ?",
            (market, start_ms, end_ms, limit),
        )

    # ----------------------------------------------------------------- statements
    def balances_before(self, user_id: str, ts: int) -> dict[str, tuple[int, int]]:
        """Per asset, the user's (available, locked) as the last balance change before `ts` left them."""
        last = self._read(
            "SELECT asset, MAX(change_id) FROM balance_changes WHERE user_id = ? AND ts < ? GROUP BY asset",
            (user_id, ts),
        )
        out: dict[str, tuple[int, int]] = {}
        for asset, change_id in last:
            rows = self._read("SELECT available, locked FROM balance_changes WHERE change_id = ?", (change_id,))
            out[asset] = (read_amount(rows[0][0]), read_amount(rows[0][1]))
        return out

    def deposits(self, user_id: str, start_ms: int, end_ms: int) -> list[tuple[str, str, int, int]]:
        """(txn_id, asset, amount, ts) of the user's deposits in [start, end), oldest first."""
        rows = self._read(
            "SELECT txn_id, asset, amount, ts FROM deposits WHERE user_id = ? AND ts >= ? AND ts < ? "
            "ORDER BY ts, txn_id",
            (user_id, start_ms, end_ms),
        )
        return [(txn, asset, read_amount(amount), int(ts)) for txn, asset, amount, ts in rows]

    def statement_trades(self, user_id: str, start_ms: int, end_ms: int) -> list[tuple[Any, ...]]:
        """(market, trade_id, price, quantity, taker_side, maker_order_id, maker_user_id, taker_order_id,
        taker_user_id, ts) of the trades the user was a side of in [start, end), oldest first."""
        return self._read(
            "SELECT market, trade_id, price, quantity, taker_side, maker_order_id, maker_user_id, taker_order_id, "
            "taker_user_id, ts FROM trades WHERE (maker_user_id = ? OR taker_user_id = ?) AND ts >= ? AND ts < ? "
            "ORDER BY ts, market, trade_id",
            (user_id, user_id, start_ms, end_ms),
        )

    def statement_orders(self, user_id: str, start_ms: int, end_ms: int) -> list[tuple[Any, ...]]:
        """(market, order_id, side, order_type, time_in_force, price, quantity, quote_quantity, client_order_id,
        ts) of the orders the user placed (and the engine accepted) in [start, end), oldest first."""
        return self._read(
            "SELECT market, order_id, side, order_type, time_in_force, price, quantity, quote_quantity, "
            "client_order_id, ts FROM orders WHERE user_id = ? AND ts >= ? AND ts < ? ORDER BY ts, order_id",
            (user_id, start_ms, end_ms),
        )

    def user_order_events(self, user_id: str, start_ms: int, end_ms: int) -> list[tuple[Any, ...]]:
        """(order_id, market, status, filled, remaining, reason, ts) of every state change of the user's orders
        in [start, end)."""
        return self._read(
            "SELECT order_id, market, status, filled, remaining, reason, ts FROM order_events "
            "WHERE user_id = ? AND ts >= ? AND ts < ? ORDER BY ts, order_id",
            (user_id, start_ms, end_ms),
        )

    def market_specs(self) -> dict[str, str]:
        """Symbol -> the market's spec as JSON (msgspec), for every market listed."""
        return {symbol: spec for symbol, spec in self._read("SELECT symbol, spec FROM markets", ())}

    def user_trades(
        self,
        market: str,
        user_id: str,
        order_id: int | None,
        from_trade_id: int,
        start_ms: int,
        end_ms: int,
        limit: int,
    ) -> list[tuple[Any, ...]]:
        """One user's trades, rows as `trades` returns them, oldest first: those of `order_id` if given, else
        ids >= `from_trade_id` in [start, end): the oldest `limit` if `from_trade_id` or `start_ms`, else the
        newest `limit`."""
        columns = (
            "trade_id, price, quantity, taker_side, maker_order_id, maker_user_id, taker_order_id, taker_user_id, ts"
        )
        if order_id is not None:
            rows = self._read(
                f"SELECT {columns} FROM trades WHERE market = ? AND taker_user_id = ? AND taker_order_id = ? "
                f"UNION ALL SELECT {columns} FROM trades WHERE market = ? AND maker_user_id = ? AND maker_order_id = ?",
                (market, user_id, order_id, market, user_id, order_id),
            )
            return sorted(rows, key=lambda row: int(row[0]))[:limit]
        ascending = from_trade_id > 0 or start_ms > 0
        direction = "ASC" if ascending else "DESC"
        rows = []
        for role in ("taker", "maker"):
            rows += self._read(
                f"SELECT {columns} FROM trades WHERE market = ? AND {role}_user_id = ? AND trade_id >= ? "
                f"AND ts >= ? AND ts < ? ORDER BY trade_id {direction} LIMIT ?",
                (market, user_id, from_trade_id, start_ms, end_ms, limit),
            )
        rows.sort(key=lambda row: int(row[0]), reverse=not ascending)
        return sorted(rows[:limit], key=lambda row: int(row[0]))

    def user_orders(
        self,
        market: str,
        user_id: str,
        order_id: int | None,
        client_order_id: str | None,
        from_order_id: int,
        start_ms: int,
        end_ms: int,
        limit: int,
    ) -> list[tuple[Any, ...]]:
        """One user's orders, oldest first, each as (order_id, side, order_type, time_in_force, price, quantity,
        quote_quantity, client_order_id, ts, status, filled, executed price x lots, updated, stop_price): by id,
        by clientOrderId (the newest that used it), or a range (see `GetOrderHistory`)."""
        columns = (
            "order_id, side, order_type, time_in_force, price, quantity, quote_quantity, client_order_id, ts, stop_price"
        )
        where = "market = ? AND user_id = ?"
        if order_id is not None:
            orders = self._read(
                f"SELECT {columns} FROM orders WHERE {where} AND order_id = ?", (market, user_id, order_id)
            )
        elif client_order_id is not None:
            orders = self._read(
                f"SELECT {columns} FROM orders WHERE {where} AND client_order_id = ? ORDER BY order_id DESC LIMIT 1",
                (market, user_id, client_order_id),
            )
        else:
            direction = "ASC" if from_order_id > 0 or start_ms > 0 else "DESC"
            orders = self._read(
                f"SELECT {columns} FROM orders WHERE {where} AND order_id >= ? AND ts >= ? AND ts < ? "
                f"ORDER BY order_id {direction} LIMIT ?",
                (market, user_id, from_order_id, start_ms, end_ms, limit),
            )
        orders.sort(key=lambda row: int(row[0]))
        if not orders:
            return []
        ids = [int(row[0]) for row in orders]
        marks = ",".join("?" * len(ids))
        # An order's latest state: its terminal row if it has one, else the row with the most filled.
        states: dict[int, tuple[str, int, int]] = {}
        for oid, status, filled, ts in self._read(
            f"SELECT order_id, status, filled, ts FROM order_events WHERE order_id IN ({marks})", tuple(ids)
        ):
            oid, filled, ts = int(oid), int(filled), int(ts)
            known = states.get(oid)
            rank = (status in _TERMINAL, filled)
            if known is None or rank > (known[0] in _TERMINAL, known[1]):
                states[oid] = (status, filled, ts)
        # Executed quote: price x lots summed exactly in Python over the order's trades (can pass 64 bits).
        notional = dict.fromkeys(ids, 0)
        for role in ("taker", "maker"):
            for oid, price, quantity in self._read(
                f"SELECT {role}_order_id, price, quantity FROM trades "
                f"WHERE market = ? AND {role}_user_id = ? AND {role}_order_id IN ({marks})",
                (market, user_id, *ids),
            ):
                notional[int(oid)] += int(price) * int(quantity)
        out = []
        for row in orders:
            oid = int(row[0])
            status, filled, updated = states.get(oid, ("NEW", 0, int(row[8])))
            quote_quantity = None if row[6] is None else read_amount(row[6])
            stop_price = None if row[9] is None else int(row[9])
            out.append((*row[:6], quote_quantity, *row[7:9], status, filled, notional[oid], updated, stop_price))
        return out

    def klines(
        self, market: str, interval: int, origin: int, start: int, end: int, limit: int
    ) -> list[tuple[int, ...]]:
        """(bucket start, open, high, low, close, volume in lots, sum of price x lots, trades) per bucket.

        Buckets are `interval` seconds from `origin` (unix seconds); open and close are the first and last
        trade's price by trade id. The caller turns price x lots into quote units with the market's grid.
        Two queries whatever the range: the first `limit` buckets that have trades, then per bucket and
        price the lots, count and first and last trade id, summed exactly in Python (price x lots can
        pass 64 bits).
        """
        bucket = self._bucket_sql(interval, origin)
        first_buckets = self._read(
            f"SELECT DISTINCT {bucket} AS b FROM trades WHERE market = ? AND ts >= ? AND ts < ? ORDER BY b LIMIT ?",
            (market, start * 1000, end * 1000, limit),
        )
        if not first_buckets:
            return []
        last_end = min(end, int(first_buckets[-1][0]) + interval)
        try:
            rows = self._read(
                f"SELECT {bucket} AS b, price, SUM(quantity), COUNT(*), MIN(trade_id), MAX(trade_id) FROM trades "
                f"WHERE market = ? AND ts >= ? AND ts < ? GROUP BY b, price ORDER BY b",
                (market, start * 1000, last_end * 1000),
            )
        except (sqlite3.OperationalError, OverflowError) as error:
            if "overflow" not in str(error):
                raise
            # More than 2**63 lots at one price in one bucket: SQLite's SUM cannot say; add them up here.
            rows = [
                (b, price, quantity, 1, trade_id, trade_id)
                for b, price, quantity, trade_id in self._read(
                    f"SELECT {bucket} AS b, price, quantity, trade_id FROM trades "
                    f"WHERE market = ? AND ts >= ? AND ts < ?",
                    (market, start * 1000, last_end * 1000),
                )
            ]
        candles: dict[int, list[int]] = {}
        # per bucket: [open id, open price, close id, close price, high, low, volume, notional, trades]
        for b, price, quantity, count, first_id, last_id in rows:
            b, price, quantity = int(b), int(price), int(quantity)
            count, first_id, last_id = int(count), int(first_id), int(last_id)
            candle = candles.get(b)
            if candle is None:
                candles[b] = [first_id, price, last_id, price, price, price, quantity, price * quantity, count]
                continue
            if first_id < candle[0]:
                candle[0], candle[1] = first_id, price
            if last_id > candle[2]:
                candle[2], candle[3] = last_id, price
            candle[4] = max(candle[4], price)
            candle[5] = min(candle[5], price)
            candle[6] += quantity
            candle[7] += price * quantity
            candle[8] += count
        return [(b, c[1], c[4], c[5], c[3], c[6], c[7], c[8]) for b, c in sorted(candles.items())[:limit]]

    def _bucket_sql(self, interval: int, origin: int) -> str:
        """The SQL of a trade's bucket start (unix seconds) for `interval`-second buckets from `origin`."""
        interval, origin = int(interval), int(origin)
        if self.postgres:
            return f"(floor((ts / 1000 - {origin}) / {interval})::bigint * {interval} + {origin})"
        return f"((ts / 1000 - {origin}) / {interval}) * {interval} + {origin}"


def _digits(units: int) -> str:
    """An amount as SQLite stores it: its exact decimal digits."""
    return str(units)


_STATE_EVENTS = frozenset({OrderRejected, OrderPartiallyFilled, OrderFilled, OrderCanceled, OrderExpired})
