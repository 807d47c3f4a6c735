"""The signed endpoints of the Binance API (`/api/v3`): account, orders, a user's orders and trades.

Each handler learns its user from `signed`, which checks what a signed request carries and asks
`binance_identity.acting_user`, the one place that knows who acts. Order types: LIMIT (GTC, IOC, FOK), MARKET
(by `quantity`, or by `quoteOrderQty` on either side), LIMIT_MAKER (post-only), and the stop and take-profit
types with their `stopPrice`: STOP_LOSS_LIMIT and TAKE_PROFIT_LIMIT as a limit order, STOP_LOSS and TAKE_PROFIT
as a market order (a buy names its quote budget, `quoteOrderQty`, which is held while it waits). An order's
past (`GET order` once it ended, `allOrders`, `myTrades`) comes from the history database; a server without one
answers those with -1020 (404).
"""

from __future__ import annotations

import asyncio
from collections.abc import Mapping
from typing import Any

from sanic import Request
from sanic.response import HTTPResponse, json
from sanic_ext import openapi

from openbell.core.commands import (
    CancelOrder,
    Command,
    GetBalances,
    GetOpenOrders,
    GetOrderHistory,
    GetUserTrades,
    PlaceOrder,
)
from openbell.core.grid import MarketSpec
from openbell.core.messages import Balances, OpenOrders, OrderHistory, UserTrades
from openbell.core.summary import OpenOrderView, OrderRecord, summarize
from openbell.core.types import OrderStatus, OrderType, ResultCode, SelfTradePrevention, Side, TimeInForce
from openbell.edge.auth import Access, requires
from openbell.edge.binance import ORDER_DOES_NOT_EXIST, UNKNOWN_ORDER_SENT, BinanceError
from openbell.edge.errors import ApiError
from openbell.http import binance_render as render
from openbell.http.app import ask, engine_of
from openbell.http.binance import MAX_TIME_MS, market_of, now_ms, v3
from openbell.http.binance_identity import acting_user
from openbell.http.binance_parse import (
    CLIENT_ORDER_ID,
    int_param,
    limit_param,
    missing,
    not_required,
    params_of,
    text_param,
)
from openbell.http.parse import on_grid

MAX_RECV_WINDOW_MS = 60_000
SIDES = {"BUY": Side.BUY, "SELL": Side.SELL}
TIMES_IN_FORCE = {tif.value: tif for tif in TimeInForce}
RESPONSE_TYPES = ("ACK", "RESULT", "FULL")
ORDER_TYPES = {"LIMIT_MAKER": OrderType.LIMIT, **{kind.value.upper(): kind for kind in OrderType}}
"""Binance's order types: LIMIT_MAKER is a post-only LIMIT; the others are the engine's, in capitals."""
SELF_TRADE_MODES = {mode.value: mode for mode in SelfTradePrevention}
SIGNING = frozenset({"timestamp", "recvWindow", "signature", "user_id"})
ORDER_PARAMS = frozenset(
    {
        "symbol",
        "side",
        "type",
        "timeInForce",
        "quantity",
        "quoteOrderQty",
        "price",
        "newClientOrderId",
        "newOrderRespType",
        "selfTradePreventionMode",
        "stopPrice",
        "icebergQty",
        "trailingDelta",
        *SIGNING,
    }
)
CANCEL_PARAMS = frozenset({"symbol", "orderId", "origClientOrderId", "newClientOrderId", *SIGNING})


def signed(request: Request, params: dict[str, str]) -> str:
    """Check what a signed request must carry, and return its user (`acting_user`, the one place that asks)."""
    if text_param(params, "timestamp", required=False) is None:
        raise missing("timestamp")
    int_param(params, "timestamp", None, 0, MAX_TIME_MS)
    window = int_param(params, "recvWindow", None, 0, 10**9)
    if window is not None and window > MAX_RECV_WINDOW_MS:
        raise BinanceError(-1131, f"recvWindow must be less than {MAX_RECV_WINDOW_MS}.")
    return acting_user(request, params)


def only(params: Mapping[str, str], allowed: frozenset[str]) -> None:
    """Refuse parameters this endpoint does not read (-1104), as Binance does."""
    unread = [name for name in params if name not in allowed]
    if unread:
        raise BinanceError(
            -1104,
            f"Not all sent parameters were read; read {len(params) - len(unread)} parameter(s) but was sent "
            f"{len(params)}.",
        )


async def history(request: Request, query: Command) -> Any:
    """A history query's data; -1020 (404) where this server keeps no history database."""
    reply = await ask(request, query)
    return reply.data


OPEN_STATUSES = (OrderStatus.NEW, OrderStatus.PARTIALLY_FILLED)
HISTORY_CATCH_UP_SECONDS = 1.0
"""How long `GET order` waits for the history database to show what the engine already did."""
HISTORY_RETRY_SECONDS = 0.02


async def open_orders_of(request: Request, user_id: str, market: str | None) -> tuple[OpenOrderView, ...]:
    reply = await ask(request, engine_of(request).new(GetOpenOrders, user_id=user_id, market=market))
    return reply.expect(OpenOrders).orders


async def open_stops_of(
    request: Request, user_id: str, market: str, records: tuple[OrderRecord, ...]
) -> dict[int, OpenOrderView]:
    """The engine's view of those of `records` that are stop or take-profit orders still open, by order id:
    their stop price and whether they wait, which the history database does not keep. No query if there are none."""
    if not any(r.order_type.is_stop and r.status in (OrderStatus.NEW, OrderStatus.PARTIALLY_FILLED) for r in records):
        return {}
    return {o.order_id: o for o in await open_orders_of(request, user_id, market) if o.stop_price is not None}


async def executed_quote(request: Request, user_id: str, order: OpenOrderView) -> int | None:
    """The quote an open order has traded (from the history database); None where it cannot be known."""
    if not order.filled:
        return 0
    query = engine_of(request).new(GetOrderHistory, market=order.market, user_id=user_id, order_id=order.order_id)
    try:
        records = (await history(request, query)).orders
    except ApiError:
        return None
    return records[0].executed_quote if records else None


def _open_order_json(spec: MarketSpec, order: OpenOrderView, quote: int | None) -> dict[str, Any]:
    out = render.open_order(spec, order, quote)
    if quote is None:
        del out["cummulativeQuoteQty"]
    return out


# ----------------------------------------------------------------------------------------- account
@v3.get("/account")
@requires(Access.READ)
@openapi.summary("Binance API (signed): balances")
async def account(request: Request) -> HTTPResponse:
    params = params_of(request)
    user_id = signed(request, params)
    engine = engine_of(request)
    reply = await ask(request, engine.new(GetBalances, user_id=user_id))
    return json(render.account(engine.assets, reply.expect(Balances).assets, user_id, now_ms()))


def _decimal_param(params: Mapping[str, str], name: str, parse: Any) -> int | None:
    value = params.get(name)
    if value is None or value == "":
        return None
    return on_grid(parse, value)


def order_command_fields(params: Mapping[str, str], spec: MarketSpec) -> dict[str, Any]:
    """PlaceOrder fields (besides seq, ts, user and market) from Binance's order parameters."""
    only(params, ORDER_PARAMS)
    side = SIDES.get((text_param(params, "side") or "").upper())
    if side is None:
        raise BinanceError(-1117, "Invalid side.")
    type_name = (text_param(params, "type") or "").upper()
    order_type = ORDER_TYPES.get(type_name)
    if order_type is None:
        raise BinanceError(-1116, "Invalid orderType.")
    for name in ("icebergQty", "trailingDelta"):
        if params.get(name):
            raise not_required(name)
    tif_text = params.get("timeInForce") or None
    time_in_force = TIMES_IN_FORCE.get(tif_text.upper()) if tif_text else None
    if tif_text and time_in_force is None:
        raise BinanceError(-1115, "Invalid timeInForce.")
    price = _decimal_param(params, "price", spec.parse_price)
    quantity = _decimal_param(params, "quantity", spec.parse_quantity)
    quote = _decimal_param(params, "quoteOrderQty", spec.parse_quote_amount)
    stop_price = _decimal_param(params, "stopPrice", spec.parse_price)
    if order_type.is_stop:
        if stop_price is None:
            raise missing("stopPrice")
    elif stop_price is not None:
        raise not_required("stopPrice")
    if order_type.has_limit_price:  # LIMIT, LIMIT_MAKER, STOP_LOSS_LIMIT, TAKE_PROFIT_LIMIT
        if price is None:
            raise missing("price")
        if quantity is None:
            raise missing("quantity")
        if quote is not None:
            raise not_required("quoteOrderQty")
        if type_name == "LIMIT_MAKER":
            if time_in_force not in (None, TimeInForce.GTC):
                raise not_required("timeInForce")
            time_in_force = TimeInForce.GTC
        elif time_in_force is None:
            raise missing("timeInForce")
    else:  # MARKET, STOP_LOSS, TAKE_PROFIT
        if price is not None:
            raise not_required("price")
        if time_in_force is not None:
            raise not_required("timeInForce")
        time_in_force = TimeInForce.IOC
        if order_type is OrderType.MARKET or side is Side.SELL:
            if quantity is None and quote is None:
                raise BinanceError(-1102, "Param 'quantity' or 'quoteOrderQty' must be sent, but both were empty/null!")
            if quantity is not None and quote is not None:
                raise not_required("quoteOrderQty")
        elif quote is None:
            # The engine holds a market buy's funds from placement: a stop market buy names its quote budget.
            raise BinanceError(
                -1102,
                f"Mandatory parameter 'quoteOrderQty' was not sent, was empty/null, or malformed: a {type_name} buy "
                "is sized by its quote budget on this exchange (held until it triggers; 'quantity' may cap it).",
            )
    client_order_id = params.get("newClientOrderId") or None
    if client_order_id is not None and not CLIENT_ORDER_ID.match(client_order_id):
        raise BinanceError(
            -1100, "Illegal characters found in parameter 'newClientOrderId'; legal range is '^[A-Za-z0-9_.:-]{1,36}$'."
        )
    stp_text = params.get("selfTradePreventionMode") or "EXPIRE_MAKER"
    stp = SELF_TRADE_MODES.get(stp_text.upper())
    if stp is None:
        raise BinanceError(-1100, "Illegal characters found in parameter 'selfTradePreventionMode'.")
    assert time_in_force is not None
    return {
        "side": side,
        "order_type": order_type,
        "time_in_force": time_in_force,
        "price": price,
        "quantity": quantity,
        "quote_quantity": quote,
        "post_only": type_name == "LIMIT_MAKER",
        "client_order_id": client_order_id,
        "stp": stp,
        "stop_price": stop_price,
    }


def response_type(params: Mapping[str, str], type_name: str) -> str:
    value = (params.get("newOrderRespType") or ("FULL" if type_name in ("LIMIT", "MARKET") else "ACK")).upper()
    if value not in RESPONSE_TYPES:
        raise BinanceError(-1100, "Illegal characters found in parameter 'newOrderRespType'.")
    return value


@v3.post("/order")
@requires(Access.TRADE)
@openapi.summary("Binance API (signed): place an order (form body)")
async def place_order(request: Request) -> HTTPResponse:
    params = params_of(request)
    user_id = signed(request, params)
    spec = market_of(request, params)
    fields = order_command_fields(params, spec)
    kind = response_type(params, (params.get("type") or "").upper())
    command = engine_of(request).new(PlaceOrder, user_id=user_id, market=spec.symbol, **fields)
    reply = await ask(request, command)
    summary = summarize(reply.seq, reply.events)
    return json(
        render.new_order(
            spec,
            summary,
            response_type=kind,
            client_order_id=command.client_order_id,
            side=command.side,
            order_type=command.order_type,
            post_only=command.post_only,
            time_in_force=command.time_in_force,
            price=command.price,
            quantity=command.quantity,
            quote_quantity=command.quote_quantity,
            transact_time=command.ts,
            stop_price=command.stop_price,
        )
    )


@v3.post("/order/test")
@requires(Access.TRADE)
@openapi.summary("Binance API (signed): check an order's parameters without placing it")
async def test_order(request: Request) -> HTTPResponse:
    params = params_of(request)
    signed(request, params)
    order_command_fields(params, market_of(request, params))
    response_type(params, (params.get("type") or "").upper())
    return json({})


def order_selector(params: Mapping[str, str]) -> tuple[int | None, str | None]:
    order_id = int_param(params, "orderId", None, 1, 2**63)
    client_order_id = params.get("origClientOrderId") or None
    if order_id is None and client_order_id is None:
        raise BinanceError(-1102, "Param 'origClientOrderId' or 'orderId' must be sent, but both were empty/null!")
    if client_order_id is not None and not CLIENT_ORDER_ID.match(client_order_id):
        raise BinanceError(-1100, "Illegal characters found in parameter 'origClientOrderId'.")
    return order_id, client_order_id


def _matches(order: OpenOrderView | OrderRecord, order_id: int | None, client_order_id: str | None) -> bool:
    if order_id is not None:
        return order.order_id == order_id
    return order.client_order_id == client_order_id


@v3.delete("/order")
@requires(Access.TRADE)
@openapi.summary("Binance API (signed): cancel an order")
async def cancel_order(request: Request) -> HTTPResponse:
    params = params_of(request)
    user_id = signed(request, params)
    only(params, CANCEL_PARAMS)
    spec = market_of(request, params)
    order_id, client_order_id = order_selector(params)
    if order_id is None:  # by clientOrderId: find the open order that has it
        opened = [o for o in await open_orders_of(request, user_id, spec.symbol) if _matches(o, None, client_order_id)]
        if not opened:
            raise BinanceError(-2011, UNKNOWN_ORDER_SENT)
        order_id = opened[0].order_id
    engine = engine_of(request)
    try:
        reply = await ask(request, engine.new(CancelOrder, user_id=user_id, market=spec.symbol, order_id=order_id))
    except ApiError as error:
        if error.result is ResultCode.UNKNOWN_ORDER:
            raise BinanceError(-2011, UNKNOWN_ORDER_SENT) from None
        raise
    summary = summarize(order_id, reply.events)
    # The reply carries the order as it was when canceled (OpenOrders of one).
    was = reply.data.orders[0] if isinstance(reply.data, OpenOrders) and reply.data.orders else None
    order = was or OpenOrderView(order_id, spec.symbol, Side.BUY, OrderType.LIMIT, None, None, 0, 0, None)
    ended = OpenOrderView(
        order.order_id,
        order.market,
        order.side,
        order.order_type,
        order.price,
        order.quantity,
        summary.executed_quantity,
        order.ts,
        order.client_order_id,
        order.stop_price,
        order.triggered,
    )
    # The quote a partially filled order traded is known to the history database, not to the cancel: this
    # answer leaves it out then (GET order has it) rather than make every cancel wait for the history writer.
    out = _open_order_json(spec, ended, None if ended.filled else 0)
    if was is None:  # an engine that does not say what it canceled: only what the cancel itself tells
        for name in ("price", "origQty", "side", "type", "timeInForce", "clientOrderId"):
            out.pop(name, None)
    out["status"] = summary.status.value
    out["isWorking"] = False
    out["origClientOrderId"] = order.client_order_id or ""
    out["transactTime"] = now_ms()
    for name in ("icebergQty", "time", "updateTime", "workingTime"):
        out.pop(name, None)
    if order.stop_price is None:
        out.pop("stopPrice", None)
    return json(out)


@v3.get("/order")
@requires(Access.READ)
@openapi.summary("Binance API (signed): one order, open or ended")
async def get_order(request: Request) -> HTTPResponse:
    params = params_of(request)
    user_id = signed(request, params)
    spec = market_of(request, params)
    order_id, client_order_id = order_selector(params)
    engine = engine_of(request)
    query = engine.new(
        GetOrderHistory, market=spec.symbol, user_id=user_id, order_id=order_id, client_order_id=client_order_id
    )
    reply = await ask(request, query, allow=(ResultCode.NOT_FOUND,))
    if reply.ok:
        # The history database is written after the engine answers, so it can be a moment behind: an order it
        # does not know yet, or still shows open while the engine no longer holds it open, is asked for again
        # (bounded) until the database has caught up, so a client never reads an order older than its own fills.
        deadline = asyncio.get_running_loop().time() + HISTORY_CATCH_UP_SECONDS
        while True:
            records = reply.expect(OrderHistory).orders
            record = records[0] if records else None
            if record is not None and record.status not in OPEN_STATUSES:
                return json(render.order_record(spec, record, None))
            opened = [o for o in await open_orders_of(request, user_id, spec.symbol) if _matches(o, order_id, client_order_id)]
            if record is not None and opened:
                stops = {o.order_id: o for o in opened if o.stop_price is not None}
                return json(render.order_record(spec, record, stops.get(record.order_id)))
            if asyncio.get_running_loop().time() >= deadline:
                if record is not None:
                    return json(render.order_record(spec, record, None))
                if opened:
                    return json(_open_order_json(spec, opened[0], await executed_quote(request, user_id, opened[0])))
                raise BinanceError(-2013, ORDER_DOES_NOT_EXIST)
            await asyncio.sleep(HISTORY_RETRY_SECONDS)
            reply = await ask(request, engine.new(
                GetOrderHistory, market=spec.symbol, user_id=user_id, order_id=order_id, client_order_id=client_order_id
            ))  # fmt: skip
    # No history database: only open orders can be found.
    opened = [o for o in await open_orders_of(request, user_id, spec.symbol) if _matches(o, order_id, client_order_id)]
    if not opened:
        raise BinanceError(-2013, ORDER_DOES_NOT_EXIST)
    return json(_open_order_json(spec, opened[0], await executed_quote(request, user_id, opened[0])))


@v3.get("/openOrders")
@requires(Access.READ)
@openapi.summary("Binance API (signed): open orders of one symbol or all")
async def open_orders(request: Request) -> HTTPResponse:
    params = params_of(request)
    user_id = signed(request, params)
    spec = market_of(request, params) if params.get("symbol") else None
    orders = await open_orders_of(request, user_id, spec.symbol if spec is not None else None)
    quotes = await asyncio.gather(*(executed_quote(request, user_id, order) for order in orders))
    markets = engine_of(request).markets
    return json([_open_order_json(markets[o.market], o, quote) for o, quote in zip(orders, quotes)])


@v3.get("/allOrders")
@requires(Access.READ)
@openapi.summary("Binance API (signed): orders of one symbol, open and ended (history database)")
async def all_orders(request: Request) -> HTTPResponse:
    params = params_of(request)
    user_id = signed(request, params)
    spec = market_of(request, params)
    query = engine_of(request).new(
        GetOrderHistory,
        market=spec.symbol,
        user_id=user_id,
        from_order_id=int_param(params, "orderId", 0, 0, 2**63) or 0,
        start_ms=int_param(params, "startTime", 0, 0, MAX_TIME_MS) or 0,
        end_ms=(int_param(params, "endTime", MAX_TIME_MS - 1, 0, MAX_TIME_MS - 1) or 0) + 1,
        limit=limit_param(params, 500, 1000),
    )
    records = (await history(request, query)).orders
    opened = await open_stops_of(request, user_id, spec.symbol, records)
    return json([render.order_record(spec, record, opened.get(record.order_id)) for record in records])


@v3.get("/myTrades")
@requires(Access.READ)
@openapi.summary("Binance API (signed): the user's trades in one symbol (history database)")
async def my_trades(request: Request) -> HTTPResponse:
    params = params_of(request)
    user_id = signed(request, params)
    spec = market_of(request, params)
    order_id = int_param(params, "orderId", None, 1, 2**63)
    from_id = int_param(params, "fromId", 0, 0, 2**63) or 0
    start = int_param(params, "startTime", 0, 0, MAX_TIME_MS) or 0
    end = (int_param(params, "endTime", MAX_TIME_MS - 1, 0, MAX_TIME_MS - 1) or 0) + 1
    if from_id and (start or end != MAX_TIME_MS):
        raise BinanceError(-1128, "Combination of optional parameters invalid.")
    query = engine_of(request).new(
        GetUserTrades,
        market=spec.symbol,
        user_id=user_id,
        order_id=order_id,
        from_trade_id=from_id,
        start_ms=start,
        end_ms=end,
        limit=limit_param(params, 500, 1000),
    )
    found = await history(request, query)
    assert isinstance(found, UserTrades)
    return json(render.my_trades(spec, user_id, found.trades))
