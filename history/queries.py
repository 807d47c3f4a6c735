"""Answers to history queries (`GetTradeHistory`, `GetKlineHistory`, `GetOrderHistory`, `GetUserTrades`) from the
history database, as `Reply`s.

Runs on a worker thread of whichever process holds the history writer (the engine's), never on a
market or the balance actor: it first waits until the writer has stored every event published so far
(so a range includes every trade made before the query), then reads.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Protocol

from openbell.core.commands import GetOrderHistory, GetTradeHistory, GetUserTrades, HistoryQuery
from openbell.core.events import Event, KlineSnapshot, TradeExecuted
from openbell.core.marketdata import INTERVAL_NAMES, INTERVALS, WEEK_ORIGIN
from openbell.core.messages import Klines, OrderHistory, RecentTrades, Reply, UserTrades
from openbell.core.summary import OrderRecord
from openbell.core.types import OrderStatus, OrderType, ResultCode, Side, TimeInForce
from openbell.history.store import HistoryStore

FLUSH_SECONDS = 5.0
"""How long a query waits for the writer to catch up before answering HISTORY_BEHIND."""


class History(Protocol):
    """What answers history queries: the writer in this process, or the child process that writes."""

    @property
    def store(self) -> HistoryStore: ...

    def flush(self, timeout: float = 30.0) -> bool: ...

    def on_events(self, events: Sequence[Event]) -> None: ...

    def close(self, timeout: float = 10.0) -> None: ...


def answer(writer: History, query: HistoryQuery, quote_units_per_tick_lot: int) -> Reply:
    if not writer.flush(FLUSH_SECONDS):
        return Reply(query.seq, ResultCode.HISTORY_BEHIND, "the history database is behind; try again")
    store = writer.store
    if isinstance(query, GetTradeHistory):
        rows = store.trades(query.market, query.start_ms, query.end_ms, query.limit)
        trades = tuple(
            TradeExecuted(query.market, trade_id, price, quantity, Side(side), maker_id, maker, taker_id, taker, ts)
            for trade_id, price, quantity, side, maker_id, maker, taker_id, taker, ts in rows
        )
        return Reply(query.seq, ResultCode.OK, data=RecentTrades(trades))
    if isinstance(query, GetUserTrades):
        rows = store.user_trades(
            query.market,
            query.user_id,
            query.order_id,
            query.from_trade_id,
            query.start_ms,
            query.end_ms,
            query.limit,
        )
        trades = tuple(
            TradeExecuted(query.market, trade_id, price, quantity, Side(side), maker_id, maker, taker_id, taker, ts)
            for trade_id, price, quantity, side, maker_id, maker, taker_id, taker, ts in rows
        )
        return Reply(query.seq, ResultCode.OK, data=UserTrades(trades))
    if isinstance(query, GetOrderHistory):
        rows = store.user_orders(
            query.market,
            query.user_id,
            query.order_id,
            query.client_order_id,
            query.from_order_id,
            query.start_ms,
            query.end_ms,
            query.limit,
        )
        orders = tuple(
            OrderRecord(
                int(order_id),
                query.market,
                Side(side),
                OrderType(order_type),
                TimeInForce(time_in_force),
                None if price is None else int(price),
                None if quantity is None else int(quantity),
                quote_quantity,
                client_order_id,
                int(ts),
                OrderStatus(status),
                filled,
                notional * quote_units_per_tick_lot,
                updated,
                stop_price,
            )
            for (
                order_id,
                side,
                order_type,
                time_in_force,
                price,
                quantity,
                quote_quantity,
                client_order_id,
                ts,
                status,
                filled,
                notional,
                updated,
                stop_price,
            ) in rows
        )
        return Reply(query.seq, ResultCode.OK, data=OrderHistory(orders))
    name = INTERVAL_NAMES.get(query.interval_seconds)
    if name is None:
        return Reply(query.seq, ResultCode.INVALID_REQUEST, f"no interval of {query.interval_seconds} seconds")
    interval = query.interval_seconds
    origin = WEEK_ORIGIN if interval == INTERVALS["1w"] else 0
    rows = store.klines(query.market, interval, origin, query.start, query.end, query.limit)
    now = query.ts // 1000
    candles = tuple(
        KlineSnapshot(
            query.market,
            name,
            start,
            start + interval,
            open_,
            high,
            low,
            close,
            volume,
            notional * quote_units_per_tick_lot,
            trades,
            start + interval <= now,
        )
        for start, open_, high, low, close, volume, notional, trades in rows
    )
    return Reply(query.seq, ResultCode.OK, data=Klines(candles))
