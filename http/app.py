"""The Sanic application: REST endpoints under /api/v1, one error mapping, the engine on `app.ctx`.

Handlers are thin: parse, build one command, `await engine.request(...)`, render. They type against
`openbell.edge.client.EngineClient` (the engine in this process, or across Redis), never read `user_id`
themselves (see `openbell.edge.identity`), build every error with `ApiError.of` (one status table), and
never block the loop on the engine.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Callable
from typing import Any, TypeVar

from sanic import Blueprint, Request, Sanic
from sanic.exceptions import SanicException
from sanic.response import HTTPResponse, json
from sanic_ext import openapi
from sanic_ext.extensions.openapi.types import Array

from openbell.core.commands import (
    AddMarket,
    CancelOrder,
    Command,
    CreateApiKey,
    Deposit,
    GetApiKeys,
    GetBalances,
    GetDepth,
    GetKlineHistory,
    GetKlines,
    GetOpenOrders,
    GetTicker,
    GetTradeHistory,
    GetTrades,
    PlaceOrder,
    RevokeApiKey,
    SetMarketStatus,
)
from openbell.core.events import Ticker
from openbell.core.grid import GridError, MarketSpec, make_market_spec
from openbell.core.marketdata import INTERVALS, MAX_KLINES
from openbell.core.messages import ApiKeys, ApiKeyView, Balances, Depth, Klines, OpenOrders, RecentTrades, Reply
from openbell.core.summary import OriginalOrder, summarize
from openbell.core.types import MarketStatus, Permission, ResultCode
from openbell.edge.auth import Access, Authenticator, install, new_api_key, requires
from openbell.edge.client import EngineClient, EngineError, EngineTimeout, EngineUnavailable
from openbell.edge.errors import ApiError
from openbell.edge.identity import USER_ID, resolve_user
from openbell.edge.listen_keys import LISTEN_KEY, ListenKeys, MemoryListenKeys
from openbell.http import render
from openbell.http.observe import install_metrics
from openbell.http.parse import (
    TXN_ID,
    bad,
    fields_of,
    int_arg,
    json_body,
    market_field,
    on_grid,
    order_fields,
    order_id_field,
    text_field,
    time_arg_ms,
)
from openbell.http.schemas import (
    ADD_MARKET,
    API_KEY,
    API_KEY_CREATED,
    API_KEY_REVOKED,
    BALANCES,
    CANCEL_ORDER,
    CANCEL_RESULT,
    CREATE_KEY,
    DEPTH,
    EMPTY,
    ERROR,
    ERRORS,
    HEALTH,
    INTERVAL,
    KLINE,
    LISTEN_KEY_RESULT,
    MARKET_INFO,
    ONRAMP,
    ONRAMP_RESULT,
    OPEN_ORDER,
    ORDER_RESULT,
    PLACE_ORDER,
    TICKER,
    TRADE,
    json_content,
)
from openbell.http.web import DOCS_PAGE, install_web

log = logging.getLogger(__name__)

MAX_MARKETS = 256
MEMORY_KLINE_SECONDS = 6 * 86400
"""Klines starting earlier than this before now come from the history database (the engine keeps 7 days)."""
MAX_BODY_BYTES = 16 * 1024
HEALTH_USER = "#health"


def engine_of(request: Request) -> EngineClient:
    engine: EngineClient = request.app.ctx.engine
    return engine


async def ask(request: Request, command: Command, allow: tuple[ResultCode, ...] = ()) -> Reply:
    """Send one command and return its reply; engine trouble becomes 503/504, rejections 4xx.

    Replies with a code in `allow` are returned for the handler to render.
    """
    try:
        reply = await engine_of(request).request(command)
    except EngineTimeout as error:
        raise ApiError.of(ResultCode.ENGINE_TIMEOUT, f"{error}") from None
    except EngineUnavailable:
        raise ApiError.of(ResultCode.ENGINE_UNAVAILABLE, "the engine is not available") from None
    except EngineError as error:
        raise ApiError.of(ResultCode.ENGINE_ERROR, str(error)) from None
    if not reply.ok and reply.code not in allow:
        raise ApiError.of(reply.code, reply.message)
    return reply


def market_of(request: Request, data: Any) -> MarketSpec:
    """The running market a request names (as `market` or `symbol`, in its body or query)."""
    symbol = market_field(data)
    spec = engine_of(request).markets.get(symbol)
    if spec is None:
        raise ApiError.of(ResultCode.UNKNOWN_MARKET, f"unknown market {symbol}")
    return spec


api = Blueprint("api", url_prefix="/api/v1", strict_slashes=False)

Handler = TypeVar("Handler")


def answers(status: int, schema: Any, description: str, *errors: int) -> Callable[[Handler], Handler]:
    """Document a route's success response and the error statuses it may answer (all `{"code", "message"}`)."""

    def apply(handler: Handler) -> Handler:
        for error in (*errors, 503, 504):
            handler = openapi.response(error, json_content(ERROR), ERRORS[error])(handler)
        return openapi.response(status, json_content(schema), description)(handler)

    return apply


@api.post("/order")
@requires(Access.TRADE)
@openapi.summary("Place an order")
@openapi.body(json_content(PLACE_ORDER), required=True)
@answers(200, ORDER_RESULT, "the order and the fills it made", 400, 404, 408, 409, 413)
async def place_order(request: Request) -> HTTPResponse:
    data = json_body(request)
    user_id = resolve_user(request, data)
    spec = market_of(request, data)
    engine = engine_of(request)
    command = engine.new(PlaceOrder, user_id=user_id, market=spec.symbol, **order_fields(data, spec))
    reply = await ask(request, command, allow=(ResultCode.DUPLICATE_CLIENT_ORDER_ID,))
    if reply.code is ResultCode.DUPLICATE_CLIENT_ORDER_ID:
        # A retry (or a reuse) of a clientOrderId: no second order; here is the first one as it is now.
        original = reply.data
        extra: dict[str, Any] = {}
        if isinstance(original, OriginalOrder):
            original_spec = engine.markets.get(original.market, spec)
            extra["order"] = render.order_result(original_spec, original.summary, command.client_order_id)
        raise ApiError.of(reply.code, reply.message, **extra)
    return json(render.order_result(spec, summarize(reply.seq, reply.events), command.client_order_id))


@api.delete("/order")
@requires(Access.TRADE)
@openapi.summary("Cancel an order (fields in a JSON body or in the query string)")
@openapi.body(json_content(CANCEL_ORDER))
@openapi.parameter("orderId", str, "query")
@openapi.parameter("market", str, "query")
@answers(200, CANCEL_RESULT, "the order as it ended", 400, 404, 408, 413)
async def cancel_order(request: Request) -> HTTPResponse:
    data = fields_of(request)
    user_id = resolve_user(request, data)
    spec = market_of(request, data)
    order_id = order_id_field(data.get("orderId"))
    engine = engine_of(request)
    reply = await ask(request, engine.new(CancelOrder, user_id=user_id, market=spec.symbol, order_id=order_id))
    return json(render.cancel_result(spec, summarize(order_id, reply.events)))


@api.get("/order/open")
@requires(Access.READ)
@openapi.summary("A user's open orders")
@openapi.parameter("user_id", str, "query", required=True)
@openapi.parameter("market", str, "query")
@answers(200, Array(OPEN_ORDER), "open orders, oldest first", 400, 404)
async def open_orders(request: Request) -> HTTPResponse:
    user_id = resolve_user(request)
    market = None
    if request.args.get("market") is not None or request.args.get("symbol") is not None:
        market = market_of(request, request.args).symbol
    engine = engine_of(request)
    reply = await ask(request, engine.new(GetOpenOrders, user_id=user_id, market=market))
    markets = engine.markets
    return json([render.open_order(markets[o.market], o) for o in reply.expect(OpenOrders).orders])


@api.get("/depth")
@requires(Access.PUBLIC)
@openapi.summary("Order book depth, aggregated by price level")
@openapi.parameter("symbol", str, "query", required=True)
@openapi.parameter("limit", int, "query", description="levels per side, 1-5000 (default 100)")
@answers(200, DEPTH, "levels best first, and the update id depth@ diffs continue", 400, 404)
async def depth(request: Request) -> HTTPResponse:
    spec = market_of(request, request.args)
    limit = int_arg(request, "limit", 100, 1, 5000)
    reply = await ask(request, engine_of(request).new(GetDepth, market=spec.symbol, limit=limit))
    return json(render.depth(spec, reply.expect(Depth)))


@api.get("/trades")
@requires(Access.PUBLIC)
@openapi.summary("Recent trades, newest first")
@openapi.parameter("symbol", str, "query", required=True)
@openapi.parameter("limit", int, "query")
@openapi.parameter("startTime", int, "query", description="ms since the epoch; with a range, from the history database")
@openapi.parameter("endTime", int, "query", description="ms since the epoch, exclusive")
@answers(200, Array(TRADE), "trades, newest first", 400, 404)
async def trades(request: Request) -> HTTPResponse:
    spec = market_of(request, request.args)
    limit = int_arg(request, "limit", 100, 1, 1000)
    engine = engine_of(request)
    if request.args.get("startTime") is not None or request.args.get("endTime") is not None:
        # A time range is served by the history database, for any age.
        start = time_arg_ms(request, "startTime", 0)
        end = time_arg_ms(request, "endTime", 10**14)
        query: Command = engine.new(GetTradeHistory, market=spec.symbol, start_ms=start, end_ms=end, limit=limit)
    else:
        query = engine.new(GetTrades, market=spec.symbol, limit=limit)
    reply = await ask(request, query)
    return json([render.trade(spec, t) for t in reply.expect(RecentTrades).trades])


@api.get("/klines")
@requires(Access.PUBLIC)
@openapi.summary("Candles built from executed trades")
@openapi.parameter("symbol", str, "query", required=True)
@openapi.parameter("interval", INTERVAL, "query", required=True)
@openapi.parameter("startTime", int, "query", description="ms since the epoch (a value below 10**11 is seconds)")
@openapi.parameter("endTime", int, "query", description="ms since the epoch, exclusive")
@answers(200, Array(KLINE), "candles, oldest first", 400, 404)
async def klines(request: Request) -> HTTPResponse:
    spec = market_of(request, request.args)
    name = request.args.get("interval") or "1m"
    interval = INTERVALS.get(name)
    if interval is None:
        raise bad(f"interval must be one of {', '.join(INTERVALS)}")
    now = int(time.time())
    end = time_arg_ms(request, "endTime", (now + interval) * 1000) // 1000
    start = time_arg_ms(request, "startTime", max(0, end - interval * MAX_KLINES) * 1000) // 1000
    if start >= end:
        raise bad("startTime must be before endTime")
    engine = engine_of(request)
    fields = {"market": spec.symbol, "interval_seconds": interval, "start": start, "end": end}
    if start < now - MEMORY_KLINE_SECONDS:
        # Older than the candles the engine keeps in memory: aggregated by the history database, if any.
        reply = await ask(
            request, engine.new(GetKlineHistory, limit=MAX_KLINES, **fields), allow=(ResultCode.NOT_FOUND,)
        )
        if reply.ok:
            return json([render.kline(spec, c) for c in reply.expect(Klines).candles])
    reply = await ask(request, engine.new(GetKlines, **fields))
    return json([render.kline(spec, c) for c in reply.expect(Klines).candles])


@api.get("/tickers")
@requires(Access.PUBLIC)
@openapi.summary("24 h statistics of every market")
@answers(200, Array(TICKER), "one per market")
async def tickers(request: Request) -> HTTPResponse:
    engine = engine_of(request)
    specs = list(engine.markets.values())
    # One query per market actor, all in flight at once: markets answer in parallel, not one after another.
    replies = await asyncio.gather(*(ask(request, engine.new(GetTicker, market=spec.symbol)) for spec in specs))
    return json([render.ticker(spec, reply.expect(Ticker)) for spec, reply in zip(specs, replies)])


@api.get("/ticker")
@requires(Access.PUBLIC)
@openapi.summary("24 h statistics of one market")
@openapi.parameter("symbol", str, "query", required=True)
@answers(200, TICKER, "the market's ticker", 400, 404)
async def ticker(request: Request) -> HTTPResponse:
    spec = market_of(request, request.args)
    reply = await ask(request, engine_of(request).new(GetTicker, market=spec.symbol))
    return json(render.ticker(spec, reply.expect(Ticker)))


@api.post("/onramp")
@requires(Access.ADMIN)
@openapi.summary("Credit funds (idempotent by txnId)")
@openapi.body(json_content(ONRAMP), required=True)
@answers(
    200, ONRAMP_RESULT, "credited (a repeated txnId credits nothing and answers the same)", 400, 404, 408, 409, 413
)
async def onramp(request: Request) -> HTTPResponse:
    data = json_body(request)
    user_id = resolve_user(request, data)
    engine = engine_of(request)
    symbol = text_field(data, "asset", max_length=12)
    asset = engine.assets.get(symbol or "")
    if asset is None:
        raise ApiError.of(ResultCode.UNKNOWN_ASSET, f"unknown asset {symbol}")
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
@requires(Access.READ)
@openapi.summary("A user's balances")
@openapi.parameter("user_id", str, "query", required=True)
@answers(200, BALANCES, "available and locked per asset", 400)
async def balance(request: Request) -> HTTPResponse:
    user_id = resolve_user(request)
    engine = engine_of(request)
    reply = await ask(request, engine.new(GetBalances, user_id=user_id))
    return json(render.balances(engine.assets, reply.expect(Balances).assets))


@api.get("/markets")
@requires(Access.PUBLIC)
@openapi.summary("Markets and their grids")
@answers(200, Array(MARKET_INFO), "every running market")
async def markets(request: Request) -> HTTPResponse:
    engine = engine_of(request)
    return json([render.market(spec, engine.shard_of(spec.symbol)) for spec in list(engine.markets.values())])


@api.post("/markets")
@requires(Access.ADMIN)
@openapi.summary("Add a market; it trades at once (a new asset without its decimals gets 8, or what the grid needs)")
@openapi.body(json_content(ADD_MARKET), required=True)
@answers(201, MARKET_INFO, "the market, trading now", 400, 408, 409, 413)
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
        spec = make_market_spec(symbol or "", data.get("tickSize"), data.get("lotSize"), engine.assets, **options)
    except GridError as error:
        raise ApiError.of(error.code, error.message) from None
    if spec.symbol in engine.markets:
        raise ApiError.of(ResultCode.MARKET_EXISTS, f"market {spec.symbol} exists")
    await ask(request, engine.new(AddMarket, spec=spec))
    return json(render.market(spec, engine.shard_of(spec.symbol)), status=201)


async def set_market_status(request: Request, symbol: str, status: MarketStatus) -> HTTPResponse:
    """Send one `SetMarketStatus` (journaled like any command) and answer with the market as it is now."""
    spec = market_of(request, {"market": symbol})
    engine = engine_of(request)
    reply = await ask(request, engine.new(SetMarketStatus, market=spec.symbol, status=status))
    return json(render.market(reply.expect(MarketSpec), engine.shard_of(spec.symbol)))


@api.post("/admin/markets/<symbol:str>/halt")
@openapi.summary("Halt a market: new orders are refused (MARKET_HALTED), cancels are taken")
@answers(200, MARKET_INFO, "the market, halted", 400, 404)
async def halt_market(request: Request, symbol: str) -> HTTPResponse:
    return await set_market_status(request, symbol, MarketStatus.HALTED)


@api.post("/admin/markets/<symbol:str>/resume")
@openapi.summary("Resume trading in a halted or cancel-only market")
@answers(200, MARKET_INFO, "the market, trading", 400, 404)
async def resume_market(request: Request, symbol: str) -> HTTPResponse:
    return await set_market_status(request, symbol, MarketStatus.TRADING)


@api.post("/admin/markets/<symbol:str>/cancel-only")
@openapi.summary("Put a market in cancel-only: new orders are refused (MARKET_CANCEL_ONLY), cancels are taken")
@answers(200, MARKET_INFO, "the market, in cancel-only", 400, 404)
async def cancel_only_market(request: Request, symbol: str) -> HTTPResponse:
    return await set_market_status(request, symbol, MarketStatus.CANCEL_ONLY)


@api.get("/health")
@requires(Access.PUBLIC)
@openapi.summary("Whether the engine answers")
@answers(200, HEALTH, "the engine answered")
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


def key_view(key: ApiKeyView) -> dict[str, Any]:
    return {
        "user_id": key.user_id,
        "apiKey": key.api_key,
        "permissions": [str(p) for p in key.permissions],
        "createdTime": key.created_ms,
    }


@api.post("/admin/keys")
@requires(Access.ADMIN)
@openapi.summary("Create an API key for a user (operator); the secret is shown only in this answer")
@openapi.body(json_content(CREATE_KEY), required=True)
@answers(200, API_KEY_CREATED, "the key and its secret", 400, 401, 403, 408, 413)
async def create_key(request: Request) -> HTTPResponse:
    data = json_body(request)
    user_id = data.get("user_id")
    if not isinstance(user_id, str) or not USER_ID.match(user_id):
        raise ApiError.of(ResultCode.INVALID_USER, "user_id is required: 1-64 characters of A-Z a-z 0-9 _ . -")
    names = data.get("permissions", ["read", "trade"])
    if not isinstance(names, list) or not 0 < len(names) <= 2 or len(set(map(str, names))) != len(names):
        raise bad('permissions must be a list of "read" and/or "trade"')
    try:
        permissions = tuple(Permission(name) for name in names)
    except ValueError:
        raise bad('permissions must be a list of "read" and/or "trade"') from None
    if Permission.TRADE in permissions and Permission.READ not in permissions:
        permissions = (Permission.READ, *permissions)
    engine = engine_of(request)
    auth: Authenticator = request.app.ctx.auth
    command = engine.new(CreateApiKey, api_key=new_api_key(), user_id=user_id, permissions=permissions)
    reply = await ask(request, command)
    key = reply.data if isinstance(reply.data, ApiKeyView) else None
    if key is None:
        raise ApiError.of(ResultCode.ENGINE_ERROR, "the engine did not answer with the key")
    auth.remember(key, key.api_key)
    return json({**key_view(key), "secret": auth.secret_of(key.api_key)})


@api.get("/admin/keys")
@requires(Access.ADMIN)
@openapi.summary("A user's API keys (operator; no secrets)")
@openapi.parameter("user_id", str, "query", required=True)
@answers(200, Array(API_KEY), "the user's keys, oldest first", 400, 401, 403)
async def list_keys(request: Request) -> HTTPResponse:
    user_id = request.args.get("user_id")
    if not isinstance(user_id, str) or not USER_ID.match(user_id):
        raise ApiError.of(ResultCode.INVALID_USER, "user_id is required: 1-64 characters of A-Z a-z 0-9 _ . -")
    reply = await ask(request, engine_of(request).new(GetApiKeys, user_id=user_id))
    return json([key_view(key) for key in reply.expect(ApiKeys).keys])


@api.delete("/admin/keys/<api_key:str>")
@requires(Access.ADMIN)
@openapi.summary("Revoke an API key (operator); every API worker refuses it within a second")
@answers(200, API_KEY_REVOKED, "revoked", 400, 401, 403, 404)
async def revoke_key(request: Request, api_key: str) -> HTTPResponse:
    if len(api_key) > 128 or not api_key.isalnum():
        raise ApiError.of(ResultCode.UNKNOWN_API_KEY_TO_REVOKE, "no such API key")
    await ask(request, engine_of(request).new(RevokeApiKey, api_key=api_key))
    request.app.ctx.auth.remember(None, api_key)
    return json({"apiKey": api_key, "status": "revoked"})


def listen_keys_of(request: Request) -> ListenKeys:
    store: ListenKeys = request.app.ctx.listen_keys
    return store


def listen_key_param(request: Request) -> str:
    value = request.args.get("listenKey")
    if not isinstance(value, str) or not LISTEN_KEY.match(value):
        raise ApiError.of(ResultCode.UNKNOWN_LISTEN_KEY, "listenKey is required: the key POST /listenKey answered")
    return value


@api.post("/listenKey")
@requires(Access.READ)
@openapi.summary("A listen key for the caller's private streams (/ws?listenKey=...), valid 60 minutes")
@answers(200, LISTEN_KEY_RESULT, "the listen key", 400, 401, 403)
async def create_listen_key(request: Request) -> HTTPResponse:
    user_id = resolve_user(request)
    return json({"listenKey": await listen_keys_of(request).create(user_id)})


@api.put("/listenKey")
@requires(Access.READ)
@openapi.summary("Keep a listen key alive for another 60 minutes")
@openapi.parameter("listenKey", str, "query", required=True)
@answers(200, EMPTY, "extended", 400, 401, 403)
async def extend_listen_key(request: Request) -> HTTPResponse:
    user_id = resolve_user(request)
    key = listen_key_param(request)
    if not await listen_keys_of(request).extend(key, user_id):
        raise ApiError.of(ResultCode.UNKNOWN_LISTEN_KEY, "unknown or expired listen key")
    return json({})


@api.delete("/listenKey")
@requires(Access.READ)
@openapi.summary("End a listen key")
@openapi.parameter("listenKey", str, "query", required=True)
@answers(200, EMPTY, "ended", 400, 401, 403)
async def delete_listen_key(request: Request) -> HTTPResponse:
    user_id = resolve_user(request)
    key = listen_key_param(request)
    if not await listen_keys_of(request).delete(key, user_id):
        raise ApiError.of(ResultCode.UNKNOWN_LISTEN_KEY, "unknown or expired listen key")
    return json({})


BODY_SECONDS = 10.0
"""How long a request's body may take to arrive once its head has: a client that announces more bytes than
it sends gets 408 then, not a 60 s wait."""


class BoundedRequest(Request):
    """A request whose body must arrive within BODY_SECONDS, and that knows when its head arrived (`arrived`,
    `time.perf_counter()`: the latency histogram counts from there)."""

    __slots__ = ("arrived",)

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.arrived = time.perf_counter()

    async def receive_body(self) -> None:
        http: Any = self.stream
        if http is not None and not self.body:
            expected = http.request_body  # None/False: no body; True: Content-Length; "chunked"
            if not expected or (expected is True and len(http.recv_buffer) >= http.request_bytes_left):
                await super().receive_body()  # the whole body is here already: nothing to wait for, no timer
                return
        try:
            async with asyncio.timeout(BODY_SECONDS):
                await super().receive_body()
        except TimeoutError:
            raise ApiError.of(
                ResultCode.REQUEST_TIMEOUT,
                f"the request body did not arrive within {BODY_SECONDS:g} s (fewer bytes than its Content-Length?)",
            ) from None


SIGNED_DESCRIPTION = (
    "Binance's scheme: this header, plus `timestamp` (ms), optional `recvWindow` and `signature` in the query "
    "string: lowercase hex HMAC-SHA256 under the key's secret of the raw query string (without `signature`) "
    "followed by the raw body. See the README for a worked example."
)


def describe_security(app: Sanic) -> None:
    """Say in the OpenAPI document what each route needs (from its `requires` declaration)."""
    app.ext.openapi.add_security_scheme(
        "apiKey", "apiKey", name="X-MBX-APIKEY", location="header", description=SIGNED_DESCRIPTION
    )
    app.ext.openapi.add_security_scheme(
        "operatorToken", "http", scheme="bearer", description="the operator's token (OPENBELL_ADMIN_TOKEN)"
    )
    for route in app.router.routes:
        access = getattr(route.handler, "__openbell_access__", None)
        if route.path.startswith("api/v1/admin/"):
            access = Access.ADMIN
        if access in (Access.READ, Access.TRADE):
            openapi.secured("apiKey")(route.handler)
        elif access is Access.ADMIN:
            openapi.secured("operatorToken")(route.handler)


async def _read_every_body(app: Sanic) -> None:
    """GET routes ignore a body by default and Sanic then logs an ERROR for it; read it (bounded by the body
    size limit) and let the handler ignore it instead."""
    for route in app.router.routes:
        route.extra.ignore_body = False


SANIC_STATUS_CODES = {
    400: ResultCode.INVALID_REQUEST,
    404: ResultCode.NOT_FOUND,
    405: ResultCode.METHOD_NOT_ALLOWED,
    408: ResultCode.REQUEST_TIMEOUT,
    413: ResultCode.BODY_TOO_LARGE,
    415: ResultCode.UNSUPPORTED_MEDIA_TYPE,
}
"""Sanic's own refusals (no such route, a body too large...) as result codes."""


def error_response(request: Request, exception: Exception) -> HTTPResponse:
    """The one place that turns an exception into `{"code", "message"}` with its status (on `/api/v3`, the
    Binance API's `{"code", "msg"}`)."""
    if request.path.startswith("/api/v3"):
        from openbell.http.binance import error_response as binance_error_response

        return binance_error_response(request, exception)
    if isinstance(exception, EngineUnavailable):
        # a store behind the engine client (listen keys in Redis...) that is not reachable: nothing was applied
        exception = ApiError.of(ResultCode.ENGINE_UNAVAILABLE, str(exception) or "the engine is not available")
    if isinstance(exception, SanicException) and not isinstance(exception, ApiError):
        status = getattr(exception, "status_code", 500) or 500
        code = SANIC_STATUS_CODES.get(status)
        if code is not None:
            exception = ApiError.of(code, str(exception) or code.name.lower())
    if isinstance(exception, ApiError):
        return json(exception.body(), status=exception.status, headers=exception.headers)
    log.exception("unhandled error on %s %s", request.method, request.path, exc_info=exception)
    error = ApiError.of(ResultCode.ENGINE_ERROR, "internal error")
    return json(error.body(), status=error.status)


def extend(app: Sanic) -> None:
    """The Sanic Extensions this server uses: the OpenAPI docs, and HEAD and OPTIONS answered for every route.

    Not the others Sanic would load by itself: dependency injection (no handler uses it, and its signal ran
    on every request) and CORS headers (the API sends none: a web page of another site gets no answer it
    may read).
    """
    from sanic_ext import Extend
    from sanic_ext.extensions.http.extension import HTTPExtension
    from sanic_ext.extensions.openapi.extension import OpenAPIExtension

    app.config.CORS = False
    Extend(app, built_in_extensions=False, extensions=[OpenAPIExtension, HTTPExtension])


def create_app(
    engine: EngineClient,
    *,
    name: str = "openbell",
    websocket: bool = True,
    public_ws_url: str | None = None,
    auth: Authenticator | None = None,
    listen_keys: ListenKeys | None = None,
) -> Sanic:
    """The app for one process. The caller owns the engine's life cycle (start before serving, stop after).

    `public_ws_url`: where the web page finds the WebSocket service (None: `/ws` on the page's origin).
    `auth`: who may call what (default: authentication on, with a random operator token and server secret).
    `listen_keys`: where listen keys live (default: in this process; the cluster keeps them in Redis).
    """
    # run.py configures logging once, for every logger
    app = Sanic(name, configure_logging=False, request_class=BoundedRequest)
    app.config.REQUEST_MAX_SIZE = MAX_BODY_BYTES
    app.config.FALLBACK_ERROR_FORMAT = "json"
    app.config.OAS_UI_DEFAULT = "swagger"
    app.config.OAS_URL_PREFIX = "/docs"
    # The interactive docs work offline: Swagger UI is served by openbell itself (web/vendor/swagger-ui/).
    app.config.OAS_PATH_TO_SWAGGER_HTML = str(DOCS_PAGE)
    app.config.OAS_UI_REDOC = False
    extend(app)
    app.ext.openapi.describe("openbell", version="1.0", description="Exchange REST API: orders, market data, balances.")
    app.ctx.engine = engine
    authenticator = auth or Authenticator(engine)
    install(app, authenticator)
    app.ctx.listen_keys = listen_keys if listen_keys is not None else MemoryListenKeys()
    app.blueprint(api)
    from openbell.http.binance import install_binance

    install_binance(app)

    async def security_in_the_docs(app: Sanic) -> None:
        describe_security(app)

    app.register_listener(security_in_the_docs, "before_server_start")
    app.error_handler.add(Exception, error_response)
    app.register_listener(_read_every_body, "before_server_start")
    install_web(app, public_ws_url=public_ws_url, auth="dev" if authenticator.dev else "keys")
    install_metrics(app)
    if websocket:
        from openbell.ws.server import install_websocket

        install_websocket(app, engine)
    return app
