"""The Sanic application: REST endpoints under /api/v1, one error mapping, the engine on `app.ctx`.

Handlers are thin: parse, build one command, `await engine.request(...)`, render. They never read
`user_id` themselves (see `openbell.http.identity`) and never block the loop on the engine.
"""

from __future__ import annotations

import asyncio
import logging
import time
from typing import Any

from sanic import Blueprint, Request, Sanic
from sanic.exceptions import SanicException
from sanic.response import HTTPResponse, json
from sanic_ext import openapi

from openbell.actors.engine import Engine, EngineError, EngineTimeout, EngineUnavailable
from openbell.actors.messages import Reply
from openbell.core.commands import (
    AddMarket,
    CancelOrder,
    Deposit,
    GetBalances,
    GetDepth,
    GetKlines,
    GetOpenOrders,
    GetTicker,
    GetTrades,
    PlaceOrder,
)
from openbell.core.grid import GridError, MarketSpec, make_market_spec
from openbell.core.marketdata import INTERVALS, MAX_KLINES, WEEK_ORIGIN
from openbell.core.summary import summarize
from openbell.core.types import ResultCode
from openbell.http import render
from openbell.http.errors import ApiError
from openbell.http.identity import resolve_user
from openbell.http.parse import TXN_ID, bad, int_arg, json_body, on_grid, order_fields, order_id_field, text_field
from openbell.http.schemas import AddMarketBody, CancelOrderBody, OnrampBody, PlaceOrderBody
from openbell.http.web import install_web

log = logging.getLogger(__name__)

MAX_MARKETS = 256
MEMORY_KLINE_SECONDS = 6 * 86400
"""Klines starting earlier than this before now come from the history database (the engine keeps 7 days)."""
MAX_BODY_BYTES = 16 * 1024
HEALTH_USER = "#health"


def engine_of(request: Request) -> Engine:
    return request.app.ctx.engine  # type: ignore[no-any-return]


async def ask(request: Request, command: Any, allow: tuple[ResultCode, ...] = ()) -> Reply:
    """Send one command and return its reply; engine trouble becomes 503/504, rejections 4xx.

    Replies with a code in `allow` are returned for the handler to render.
    """
    engine = engine_of(request)
    try:
        reply = await engine.request(command)
    except EngineTimeout as error:
        raise ApiError(504, ResultCode.ENGINE_TIMEOUT, f"{error}") from None
    except EngineUnavailable:
        raise ApiError(503, ResultCode.ENGINE_UNAVAILABLE, "the engine is not available") from None
    except EngineError as error:
        raise ApiError(500, ResultCode.ENGINE_ERROR, str(error)) from None
    if not reply.ok and reply.code not in allow:
        raise ApiError.from_code(reply.code, reply.message)
    return reply


def market_of(request: Request, symbol: Any) -> MarketSpec:
    if symbol is None:
        raise bad("symbol is required")
    if not isinstance(symbol, str) or len(symbol) > 32:
        raise bad("symbol must be a market symbol such as TATA_INR")
    spec = engine_of(request).markets.get(symbol)
    if spec is None:
        raise ApiError(404, ResultCode.UNKNOWN_MARKET, f"unknown market {symbol}")
    return spec


api = Blueprint("api", url_prefix="/api/v1", strict_slashes=False)


@api.post("/order")
@openapi.summary("Place an order")
@openapi.body({"application/json": PlaceOrderBody}, required=True)
async def place_order(request: Request) -> HTTPResponse:
    data = json_body(request)
    user_id = resolve_user(request, data)
    spec = market_of(request, data.get("market"))
    fields = order_fields(data, spec)
    engine = engine_of(request)
    command = engine.new(PlaceOrder, user_id=user_id, market=spec.symbol, **fields)
    reply = await ask(request, command, allow=(ResultCode.DUPLICATE_CLIENT_ORDER_ID,))
    if reply.code is ResultCode.DUPLICATE_CLIENT_ORDER_ID:
        # A retry (or a reuse) of a clientOrderId: no second order; here is the first one as it is now.
        original: Any = reply.data
        original_spec = engine.markets.get(getattr(original, "market", ""), spec)
        body: dict[str, Any] = {"code": int(reply.code), "message": reply.message}
        if original is not None and hasattr(original, "summary"):
            body["order"] = render.order_result(original_spec, original.summary, command.client_order_id)
        return json(body, status=409)
    summary = summarize(reply.seq, reply.data)  # type: ignore[arg-type]
    return json(render.order_result(spec, summary, command.client_order_id))


@api.delete("/order")
@openapi.summary("Cancel an order")
@openapi.body({"application/json": CancelOrderBody}, required=True)
async def cancel_order(request: Request) -> HTTPResponse:
    data = json_body(request)
    user_id = resolve_user(request, data)
    spec = market_of(request, data.get("market"))
    order_id = order_id_field(data.get("orderId"))
    engine = engine_of(request)
    reply = await ask(request, engine.new(CancelOrder, user_id=user_id, market=spec.symbol, order_id=order_id))
    return json(render.cancel_result(spec, summarize(order_id, reply.data)))  # type: ignore[arg-type]


@api.get("/order/open")
@openapi.summary("A user's open orders")
@openapi.parameter("user_id", str, "query", required=True)
@openapi.parameter("market", str, "query")
async def open_orders(request: Request) -> HTTPResponse:
    user_id = resolve_user(request)
    market = request.args.get("market")
    if market is not None:
        market_of(request, market)
    engine = engine_of(request)
    reply = await ask(request, engine.new(GetOpenOrders, user_id=user_id, market=market))
    markets = engine.markets
    return json([render.open_order(markets[o.market], o) for o in reply.data])  # type: ignore[attr-defined]


@api.get("/depth")
@openapi.summary("Order book depth, aggregated by price level")
@openapi.parameter("symbol", str, "query", required=True)
@openapi.parameter("limit", int, "query")
async def depth(request: Request) -> HTTPResponse:
    spec = market_of(request, request.args.get("symbol"))
    limit = int_arg(request, "limit", 100, 1, 5000)
    reply = await ask(request, engine_of(request).new(GetDepth, market=spec.symbol, limit=limit))
    bids, asks, update_id = reply.data  # type: ignore[misc]
    return json(render.depth(spec, bids, asks, update_id))


@api.get("/trades")
@openapi.summary("Recent trades, newest first")
@openapi.parameter("symbol", str, "query", required=True)
@openapi.parameter("limit", int, "query")
@openapi.parameter("startTime", int, "query", description="ms since the epoch; with a range, from the history database")
@openapi.parameter("endTime", int, "query", description="ms since the epoch, exclusive")
async def trades(request: Request) -> HTTPResponse:
    spec = market_of(request, request.args.get("symbol"))
    limit = int_arg(request, "limit", 100, 1, 1000)
    if request.args.get("startTime") is not None or request.args.get("endTime") is not None:
        # A time range (ms) is served by the history database, for any age.
        store = await history_of(request)
        end = int_arg(request, "endTime", 10**14, 0, 10**14)
        start = int_arg(request, "startTime", 0, 0, 10**14)
        rows = await asyncio.to_thread(store.trades, spec.symbol, start, end, limit)
        return json([render.history_trade(spec, row) for row in rows])
    reply = await ask(request, engine_of(request).new(GetTrades, market=spec.symbol, limit=limit))
    return json([render.trade(spec, t) for t in reply.data])  # type: ignore[attr-defined]


async def history_of(request: Request) -> Any:
    """The history store, once it holds every event published so far (the writer batches for ~50 ms)."""
    history = getattr(engine_of(request), "history", None)
    if history is None:
        raise ApiError(404, ResultCode.INVALID_REQUEST, "this server keeps no history database")
    if not await asyncio.to_thread(history.flush, 5.0):
        raise ApiError(503, ResultCode.ENGINE_UNAVAILABLE, "the history database is behind; try again")
    return history.store


@api.get("/klines")
@openapi.summary("Candles built from executed trades")
@openapi.parameter("symbol", str, "query", required=True)
@openapi.parameter("interval", str, "query", required=True)
@openapi.parameter("startTime", int, "query")
@openapi.parameter("endTime", int, "query")
async def klines(request: Request) -> HTTPResponse:
    spec = market_of(request, request.args.get("symbol"))
    name = request.args.get("interval") or "1m"
    interval = INTERVALS.get(name)
    if interval is None:
        raise bad(f"interval must be one of {', '.join(INTERVALS)}")
    now = int(time.time())
    end = int_arg(request, "endTime", now + interval, 0, 10**11)
    start = int_arg(request, "startTime", max(0, end - interval * MAX_KLINES), 0, 10**11)
    if start >= end:
        raise bad("startTime must be before endTime")
    if start < now - MEMORY_KLINE_SECONDS and getattr(engine_of(request), "history", None) is not None:
        # Older than the candles the engine keeps in memory: aggregate from the history database.
        store = await history_of(request)
        origin = WEEK_ORIGIN if interval == INTERVALS["1w"] else 0
        rows = await asyncio.to_thread(store.klines, spec.symbol, interval, origin, start, end, MAX_KLINES)
        return json([render.history_kline(spec, interval, row) for row in rows])
    reply = await ask(
        request,
        engine_of(request).new(GetKlines, market=spec.symbol, interval_seconds=interval, start=start, end=end),
    )
    return json([render.kline(spec, c) for c in reply.data])  # type: ignore[attr-defined]


@api.get("/tickers")
@openapi.summary("24 h statistics of every market")
async def tickers(request: Request) -> HTTPResponse:
    engine = engine_of(request)
    specs = list(engine.markets.values())
    # One query per market actor, all in flight at once: markets answer in parallel, not one after another.
    replies = await asyncio.gather(*(ask(request, engine.new(GetTicker, market=spec.symbol)) for spec in specs))
    return json([render.ticker(spec, reply.data) for spec, reply in zip(specs, replies)])  # type: ignore[arg-type]


@api.get("/ticker")
@openapi.summary("24 h statistics of one market")
@openapi.parameter("symbol", str, "query", required=True)
async def ticker(request: Request) -> HTTPResponse:
    spec = market_of(request, request.args.get("symbol"))
    reply = await ask(request, engine_of(request).new(GetTicker, market=spec.symbol))
    return json(render.ticker(spec, reply.data))  # type: ignore[arg-type]


@api.post("/onramp")
@openapi.summary("Credit funds (idempotent by txnId)")
@openapi.body({"application/json": OnrampBody}, required=True)
async def onramp(request: Request) -> HTTPResponse:
    data = json_body(request)
    user_id = resolve_user(request, data)
    engine = engine_of(request)
    symbol = text_field(data, "asset", max_length=12)
    asset = engine.assets.get(symbol or "")
    if asset is None:
        raise ApiError(404, ResultCode.UNKNOWN_ASSET, f"unknown asset {symbol}")
    amount = on_grid(asset.parse_amount, data.get("amount"))
    txn_id = data.get("txnId")
    if not isinstance(txn_id, str) or not TXN_ID.match(txn_id):
        raise bad("txnId must be 1-128 characters of A-Z a-z 0-9 _ . : -")
    await ask(request, engine.new(Deposit, user_id=user_id, asset=asset.symbol, amount=amount, txn_id=txn_id))
    return json(
        {
            "user_id": user_id,
            "asset": asset.symbol,
            "amount": asset.format_amount(amount),
            "txnId": txn_id,
            "status": "credited",
        }
    )


@api.get("/balance")
@openapi.summary("A user's balances")
@openapi.parameter("user_id", str, "query", required=True)
async def balance(request: Request) -> HTTPResponse:
    user_id = resolve_user(request)
    engine = engine_of(request)
    reply = await ask(request, engine.new(GetBalances, user_id=user_id))
    return json(render.balances(engine.assets, reply.data))  # type: ignore[arg-type]


@api.get("/markets")
@openapi.summary("Markets and their grids")
async def markets(request: Request) -> HTTPResponse:
    return json([render.market(spec) for spec in list(engine_of(request).markets.values())])


@api.post("/markets")
@openapi.summary("Add a market; it trades at once")
@openapi.body({"application/json": AddMarketBody}, required=True)
async def add_market(request: Request) -> HTTPResponse:
    data = json_body(request)
    engine = engine_of(request)
    if len(engine.markets) >= MAX_MARKETS:
        raise bad(f"at most {MAX_MARKETS} markets", ResultCode.INVALID_MARKET_SPEC)
    symbol = text_field(data, "symbol", max_length=25)
    base = text_field(data, "base", max_length=12)
    quote = text_field(data, "quote", max_length=12)
    if symbol != f"{base}_{quote}":
        raise bad("symbol must be BASE_QUOTE of the given base and quote", ResultCode.INVALID_MARKET_SPEC)
    options: dict[str, int] = {}
    for name, key in (
        ("makerFeeBps", "maker_fee_bps"),
        ("takerFeeBps", "taker_fee_bps"),
        ("baseDecimals", "base_decimals"),
        ("quoteDecimals", "quote_decimals"),
    ):
        value = data.get(name)
        if value is not None:
            if not isinstance(value, int) or isinstance(value, bool) or not 0 <= value <= 1000:
                raise bad(f"{name} must be a small non-negative integer", ResultCode.INVALID_MARKET_SPEC)
            options[key] = value
    try:
        spec = make_market_spec(symbol or "", data.get("tickSize"), data.get("lotSize"), engine.assets, **options)  # type: ignore[arg-type]
    except GridError as error:
        raise ApiError(400, error.code, error.message) from None
    if spec.symbol in engine.markets:
        raise ApiError(409, ResultCode.MARKET_EXISTS, f"market {spec.symbol} exists")
    await ask(request, engine.new(AddMarket, spec=spec))
    return json(render.market(spec), status=201)


@api.get("/health")
@openapi.summary("Whether the engine answers")
async def health(request: Request) -> HTTPResponse:
    engine = engine_of(request)
    started = time.perf_counter()
    await ask(request, engine.new(GetBalances, user_id=HEALTH_USER))
    return json(
        {
            "status": "ok",
            "markets": len(engine.markets),
            "engineLatencyMs": round((time.perf_counter() - started) * 1000, 3),
        }
    )


def error_response(request: Request, exception: Exception) -> HTTPResponse:
    """The one place that turns an exception into `{"code", "message"}` with its status."""
    if isinstance(exception, ApiError):
        return json({"code": exception.code, "message": exception.message}, status=exception.status)
    if isinstance(exception, SanicException):
        status = getattr(exception, "status_code", 500) or 500
        message = str(exception) or type(exception).__name__
        return json(
            {
                "code": int(ResultCode.INVALID_REQUEST) if status < 500 else int(ResultCode.ENGINE_ERROR),
                "message": message,
            },
            status=status,
        )
    log.exception("unhandled error on %s %s", request.method, request.path, exc_info=exception)
    return json({"code": int(ResultCode.ENGINE_ERROR), "message": "internal error"}, status=500)


def create_app(
    engine: Engine, *, name: str = "openbell", websocket: bool = True, public_ws_url: str | None = None
) -> Sanic:
    """The app for one process. The caller owns the engine's life cycle (start before serving, stop after).

    `public_ws_url`: where the web page finds the WebSocket service (None: `/ws` on the page's origin).
    """
    app = Sanic(name, configure_logging=False)  # run.py configures logging once, for every logger
    app.config.REQUEST_MAX_SIZE = MAX_BODY_BYTES
    app.config.FALLBACK_ERROR_FORMAT = "json"
    app.config.OAS_UI_DEFAULT = "swagger"
    app.config.OAS_URL_PREFIX = "/docs"
    app.ext.openapi.describe("openbell", version="1.0", description="Exchange REST API: orders, market data, balances.")
    app.ctx.engine = engine
    app.blueprint(api)
    app.error_handler.add(Exception, error_response)
    install_web(app, public_ws_url=public_ws_url)
    if websocket:
        try:
            from openbell.ws.server import install_websocket
        except ImportError:  # pragma: no cover - ws is part of the package
            log.warning("WebSocket streams are not available")
        else:
            install_websocket(app, engine)
    return app
