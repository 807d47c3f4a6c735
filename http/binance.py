"""The Binance Spot API (`/api/v3`) on the same engine as `/api/v1`: what unmodified Binance clients (ccxt) call.

Handlers are thin, as in `openbell.http.app`: parse (`openbell.http.binance_parse`: strict query and form
parameters), send engine commands (the same ones `/api/v1` sends), render (`openbell.http.binance_render`).
This module holds the blueprint, the error answer (the app's error handler sends every exception on a
`/api/v3` path to `error_response` here) and the public market-data endpoints; the signed account and order
endpoints are `openbell.http.binance_trading`. Errors are Binance's `{"code": -NNNN, "msg": "..."}`.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Mapping
from typing import Any

from sanic import Blueprint, Request, Sanic
from sanic.response import HTTPResponse, json
from sanic_ext import openapi

from openbell.core.commands import GetDepth, GetKlineHistory, GetKlines, GetTicker, GetTradeHistory, GetTrades
from openbell.core.events import Ticker, TradeExecuted
from openbell.core.grid import MarketSpec
from openbell.core.marketdata import INTERVALS, MAX_KLINES
from openbell.core.messages import Depth, Klines, RecentTrades
from openbell.core.types import ResultCode
from openbell.edge.auth import client_address
from openbell.edge.binance import BinanceError
from openbell.edge.errors import ApiError
from openbell.http import binance_render as render
from openbell.http.app import MEMORY_KLINE_SECONDS, ask, engine_of, log
from openbell.http.binance_parse import (
    SYMBOL,
    binance_error,
    int_param,
    limit_param,
    params_of,
    symbols_param,
    text_param,
)

v3 = Blueprint("binance", url_prefix="/api/v3", strict_slashes=False)

MAX_TIME_MS = 10**14


def error_response(request: Request, exception: Exception) -> HTTPResponse:
    """Any exception on a `/api/v3` path as Binance's `{"code", "msg"}` (called by the app's error handler)."""
    error = binance_error(exception)
    if error.status >= 500 and not isinstance(exception, (ApiError, BinanceError)):
        log.exception("unhandled error on %s %s", request.method, request.path, exc_info=exception)
    return json(error.body(), status=error.status)


def install_binance(app: Sanic) -> None:
    """Serve `/api/v3` on `app`."""
    from openbell.http import binance_trading, binance_user_stream  # noqa: F401  (their routes join the blueprint)

    app.ctx.binance_symbols = render.BinanceSymbols()
    app.blueprint(v3)


# ----------------------------------------------------------------------------------------- helpers
def market_of(request: Request, params: Mapping[str, str]) -> MarketSpec:
    symbol = text_param(params, "symbol")
    assert symbol is not None
    if not SYMBOL.match(symbol):
        raise BinanceError(
            -1100, "Illegal characters found in parameter 'symbol'; legal range is '^[A-Z0-9_.-]{1,32}$'."
        )
    spec = request.app.ctx.binance_symbols.lookup(engine_of(request).markets, symbol)
    if spec is None:
        raise BinanceError(-1121, "Invalid symbol.")
    return spec


def markets_named(request: Request, params: Mapping[str, str]) -> list[MarketSpec]:
    """The markets of `symbol` or `symbols` (a JSON array), or every market if neither is given."""
    names = symbols_param(params)
    if names is None:
        if params.get("symbol"):
            return [market_of(request, params)]
        return list(engine_of(request).markets.values())
    if params.get("symbol"):
        raise BinanceError(-1128, "Combination of optional parameters invalid.")
    return [market_of(request, {"symbol": name}) for name in names]


def now_ms() -> int:
    return time.time_ns() // 1_000_000


def rate_limits_of(app: Sanic) -> list[dict[str, Any]]:
    """The limits the app's authenticator enforces, as `exchangeInfo.rateLimits` (rendered once: options are
    fixed while the server runs)."""
    described: list[dict[str, Any]] | None = getattr(app.ctx, "binance_rate_limits", None)
    if described is None:
        auth = getattr(app.ctx, "auth", None)
        limits = auth.limits if auth is not None and auth.limiter is not None else None
        described = app.ctx.binance_rate_limits = render.rate_limits(limits)
    return described


class MinuteWeights:
    """`X-MBX-USED-WEIGHT-1M`: the requests each client address made to `/api/v3` in the current minute (UTC),
    every one weighing 1, counted by this process (in the cluster, by the API worker that answers). Informative,
    as Binance's header is: what refuses a request is the token buckets `exchangeInfo.rateLimits` lists. At most
    `max_addresses` are counted per minute; past that the count starts again (it never refuses anything)."""

    __slots__ = ("counts", "max_addresses", "minute")

    def __init__(self, max_addresses: int = 100_000) -> None:
        self.minute = 0
        self.counts: dict[str, int] = {}
        self.max_addresses = max_addresses

    def add(self, address: str, now_seconds: float) -> int:
        """Count one request of `address` at `now_seconds` (epoch); the address's count in its minute."""
        minute = int(now_seconds) // 60
        counts = self.counts
        used = counts.get(address, 0) + 1
        if minute != self.minute or (used == 1 and len(counts) >= self.max_addresses):
            self.minute = minute
            self.counts = counts = {}
            used = 1
        counts[address] = used
        return used


WEIGHTS = MinuteWeights()


@v3.on_response
async def used_weight(request: Request, response: HTTPResponse) -> None:
    response.headers["X-MBX-USED-WEIGHT-1M"] = str(WEIGHTS.add(client_address(request), time.time()))


# ----------------------------------------------------------------------------------------- general
@v3.get("/ping")
@openapi.summary("Binance API: test connectivity")
async def ping(request: Request) -> HTTPResponse:
    return json({})


@v3.get("/time")
@openapi.summary("Binance API: server time")
async def server_time(request: Request) -> HTTPResponse:
    return json({"serverTime": now_ms()})


@v3.get("/exchangeInfo")
@openapi.summary("Binance API: symbols, their filters (tick and lot sizes) and order types")
async def exchange_info(request: Request) -> HTTPResponse:
    params = params_of(request)
    specs = markets_named(request, params)
    return json(
        {
            "timezone": "UTC",
            "serverTime": now_ms(),
            "rateLimits": rate_limits_of(request.app),
            "exchangeFilters": [],
            "symbols": [render.exchange_symbol(spec) for spec in specs],
        }
    )


# ----------------------------------------------------------------------------------------- market data
@v3.get("/depth")
@openapi.summary("Binance API: order book")
async def depth(request: Request) -> HTTPResponse:
    params = params_of(request)
    spec = market_of(request, params)
    limit = limit_param(params, 100, 5000)
    reply = await ask(request, engine_of(request).new(GetDepth, market=spec.symbol, limit=limit))
    return json(render.depth(reply.expect(Depth), spec))


async def recent_trades(request: Request, spec: MarketSpec, limit: int) -> list[TradeExecuted]:
    """The newest `limit` trades, oldest first."""
    reply = await ask(request, engine_of(request).new(GetTrades, market=spec.symbol, limit=limit))
    return list(reversed(reply.expect(RecentTrades).trades))


@v3.get("/trades")
@openapi.summary("Binance API: recent trades")
async def trades(request: Request) -> HTTPResponse:
    params = params_of(request)
    spec = market_of(request, params)
    limit = limit_param(params, 500, 1000)
    return json([render.trade(spec, t) for t in await recent_trades(request, spec, limit)])


@v3.get("/aggTrades")
@openapi.summary("Binance API: trades (each its own aggregate)")
async def agg_trades(request: Request) -> HTTPResponse:
    params = params_of(request)
    spec = market_of(request, params)
    limit = limit_param(params, 500, 1000)
    from_id = int_param(params, "fromId", None, 0, 2**63)
    start = int_param(params, "startTime", None, 0, MAX_TIME_MS)
    end = int_param(params, "endTime", None, 0, MAX_TIME_MS)
    if from_id is not None and (start is not None or end is not None):
        raise BinanceError(-1128, "Combination of optional parameters invalid.")
    engine = engine_of(request)
    if start is not None or end is not None:
        start_ms, end_ms = start or 0, (end + 1) if end is not None else MAX_TIME_MS
        query = engine.new(GetTradeHistory, market=spec.symbol, start_ms=start_ms, end_ms=end_ms, limit=limit)
        reply = await ask(request, query, allow=(ResultCode.NOT_FOUND,))
        if reply.ok:
            found = list(reversed(reply.expect(RecentTrades).trades))
        else:  # no history database: the trades the market keeps in memory
            found = [t for t in await recent_trades(request, spec, 1000) if start_ms <= t.ts < end_ms][:limit]
    elif from_id is not None:
        found = [t for t in await recent_trades(request, spec, 1000) if t.trade_id >= from_id][:limit]
    else:
        found = await recent_trades(request, spec, limit)
    return json([render.agg_trade(spec, t) for t in found])


@v3.get("/klines")
@openapi.summary("Binance API: candles")
async def klines(request: Request) -> HTTPResponse:
    params = params_of(request)
    spec = market_of(request, params)
    name = text_param(params, "interval")
    interval = INTERVALS.get(name or "")
    if interval is None:
        raise BinanceError(-1120, "Invalid interval.")
    limit = limit_param(params, 500, 1000)
    start_ms = int_param(params, "startTime", None, 0, MAX_TIME_MS)
    end_ms = int_param(params, "endTime", None, 0, MAX_TIME_MS)
    now = int(time.time())
    # candles whose open time is in [startTime, endTime], both in ms
    end = end_ms // 1000 + 1 if end_ms is not None else now + interval
    start = -(-start_ms // 1000) if start_ms is not None else max(0, end - interval * (limit + 1))
    if start >= end:
        return json([])
    engine = engine_of(request)
    fields = {"market": spec.symbol, "interval_seconds": interval, "start": start, "end": end}
    candles = None
    if start < now - MEMORY_KLINE_SECONDS:
        reply = await ask(
            request, engine.new(GetKlineHistory, limit=MAX_KLINES, **fields), allow=(ResultCode.NOT_FOUND,)
        )
        if reply.ok:
            candles = list(reply.expect(Klines).candles)
    if candles is None:
        candles = list((await ask(request, engine.new(GetKlines, **fields))).expect(Klines).candles)
    candles = candles[:limit] if start_ms is not None else candles[-limit:]
    return json([render.kline(spec, c) for c in candles])


async def ticker_and_book(request: Request, spec: MarketSpec) -> tuple[Ticker, Depth]:
    engine = engine_of(request)
    ticker, book = await asyncio.gather(
        ask(request, engine.new(GetTicker, market=spec.symbol)),
        ask(request, engine.new(GetDepth, market=spec.symbol, limit=1)),
    )
    return ticker.expect(Ticker), book.expect(Depth)


@v3.get("/ticker/24hr")
@openapi.summary("Binance API: 24 h statistics (one symbol, `symbols=[...]`, or all)")
async def ticker_24hr(request: Request) -> HTTPResponse:
    params = params_of(request)
    specs = markets_named(request, params)
    found = await asyncio.gather(*(ticker_and_book(request, spec) for spec in specs))
    out = [render.ticker_24hr(spec, ticker, book) for spec, (ticker, book) in zip(specs, found)]
    single = params.get("symbol") is not None
    return json(out[0] if single else out)


@v3.get("/ticker/price")
@openapi.summary("Binance API: last prices")
async def ticker_price(request: Request) -> HTTPResponse:
    params = params_of(request)
    specs = markets_named(request, params)
    engine = engine_of(request)
    replies = await asyncio.gather(*(ask(request, engine.new(GetTicker, market=spec.symbol)) for spec in specs))
    out = [render.price_ticker(spec, reply.expect(Ticker)) for spec, reply in zip(specs, replies)]
    return json(out[0] if params.get("symbol") is not None else out)


@v3.get("/ticker/bookTicker")
@openapi.summary("Binance API: best bid and ask")
async def book_ticker(request: Request) -> HTTPResponse:
    params = params_of(request)
    specs = markets_named(request, params)
    engine = engine_of(request)
    replies = await asyncio.gather(*(ask(request, engine.new(GetDepth, market=s.symbol, limit=1)) for s in specs))
    out = [render.book_ticker(spec, reply.expect(Depth)) for spec, reply in zip(specs, replies)]
    return json(out[0] if params.get("symbol") is not None else out)
