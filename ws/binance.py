"""Binance-style market-data streams beside `/ws`: what ccxt.pro and other Binance clients subscribe to.

Routes: `/ws/<anything>` sends each stream's data as it is (raw; a path that names streams, such as
`/ws/tatainr@trade`, subscribes to them at once, and ccxt.pro's `/ws/0`, `/ws/1`... to none), and `/stream`
(`?streams=a/b`) wraps each message as `{"stream", "data"}`. Both take Binance's requests:
`{"method": "SUBSCRIBE" | "UNSUBSCRIBE", "params": [...], "id": N}` -> `{"result": null, "id": N}`, and
`LIST_SUBSCRIPTIONS`; a bad request is answered `{"error": {"code", "msg"}, "id"}` (Binance's codes: 1 bad
value, 2 bad request, 3 bad JSON) and changes nothing.

Streams, named by the lower-case Binance symbol (`tatainr` for TATA_INR): `<s>@trade` and `<s>@aggTrade`
(`trade`/`aggTrade`: every fill is its own aggregate), `<s>@depth` and `<s>@depth@100ms` (`depthUpdate`: every
diff, with `U`/`u` continuing REST's `lastUpdateId` without gaps), `<s>@kline_<interval>` (`kline`),
`<s>@miniTicker` (`24hrMiniTicker`) and `<s>@ticker` (`24hrTicker`), the tickers after each batch with trades.

The fan-out is `openbell.ws.hub.Hub`'s, with a renderer of these shapes: a connection's subscriptions are
stream names (raw) or `w:` + name (wrapped), so the two framings of one message are each encoded once.
User data stream: `/ws/<listenKey>` (a key from `POST /api/v3/userDataStream` or `/api/v1/listenKey`; the
upgrade is refused with 401 and -1125 for a key that is not live) subscribes the connection to its user's hub
key `user:<id>`, whose `executionReport` and `outboundAccountPosition` `ws/binance_user.py` renders; that key is
no stream name, so no SUBSCRIBE reaches it and LIST_SUBSCRIPTIONS does not show it. The listen key is looked
up at the upgrade and then every `listen_key_check_seconds`: once it has expired or was deleted, the connection
gets `listenKeyExpired` and is closed (1008).

Binance's WebSocket API: `/ws-api/v3` (`openbell.ws.binance_api`), where ccxt.pro subscribes to a spot account's
user data stream with a signed `userDataStream.subscribe.signature`; its hub (`WsApiHub`) frames the same
user-stream messages as `{"subscriptionId": 0, "event": ...}`. Both hubs get each batch of events in one
hand-over.
"""

from __future__ import annotations

import asyncio
import logging
import re
import time
from collections.abc import Callable, Container, Mapping, Sequence
from typing import Any

import ujson
from sanic import Blueprint, HTTPResponse, Request, Sanic
from sanic.response import json
from websockets.exceptions import ConnectionClosed

from openbell.core.events import (
    BalanceChanged,
    DepthUpdated,
    KlineSnapshot,
    OrderAccepted,
    OrderCanceled,
    OrderExpired,
    OrderFilled,
    OrderPartiallyFilled,
    OrderRejected,
    OrderTriggered,
    Ticker,
    TradeExecuted,
)
from openbell.core.grid import Asset, MarketSpec
from openbell.core.marketdata import STREAMED_INTERVALS
from openbell.edge.binance import binance_symbol, percent_change
from openbell.edge.client import EngineClient, EngineError
from openbell.edge.listen_keys import LISTEN_KEY
from openbell.ws.binance_user import USER_KEY, UserEvents
from openbell.ws.connection import Connection
from openbell.ws.hub import Hub, encode
from openbell.ws.server import close_on_invalid_text, listen_key_expired, watch_listen_key
from openbell.ws.settings import WsSettings

log = logging.getLogger(__name__)

WRAPPED = "w:"
KINDS = frozenset(
    {"trade", "aggTrade", "depth", "depth@100ms", "miniTicker", "ticker", *(f"kline_{i}" for i in STREAMED_INTERVALS)}
)
STREAM_NAME = re.compile(r"^[a-z0-9_]{1,40}@[A-Za-z0-9_@]{1,24}\Z")
METHODS = ("SUBSCRIBE", "UNSUBSCRIBE", "LIST_SUBSCRIPTIONS")
USER_EVENTS = frozenset(
    {
        BalanceChanged,
        OrderAccepted,
        OrderRejected,
        OrderPartiallyFilled,
        OrderFilled,
        OrderCanceled,
        OrderExpired,
        OrderTriggered,
    }
)
MAX_ID = 2**63


class BinanceRenderer:
    """Engine events -> Binance stream messages, built only for streams someone listens to."""

    def __init__(
        self, markets: Callable[[], Mapping[str, MarketSpec]], assets: Callable[[], Mapping[str, Asset]]
    ) -> None:
        self._markets = markets
        self.users = UserEvents(markets, assets)
        """User data stream events (keys `USER_KEY + user`; subscribed to through listen keys, with API keys)."""
        self._names: dict[str, str] = {}
        """Market -> its lower-case Binance symbol."""
        self._last_ts = 0

    def _prefix(self, market: str) -> str | None:
        name = self._names.get(market)
        if name is None:
            spec = self._markets().get(market)
            if spec is None:
                return None
            name = self._names[market] = binance_symbol(spec).lower()
        return name

    def render(self, event: object, wanted: Container[str]) -> list[tuple[str, dict[str, Any]]]:
        kind = type(event)
        if kind is TradeExecuted:
            return self._trade(event, wanted) + self.users.render(event, wanted)  # type: ignore[arg-type]
        if kind in USER_EVENTS:
            return self.users.render(event, wanted)
        if kind is DepthUpdated:
            return self._depth(event, wanted)  # type: ignore[arg-type]
        if kind is KlineSnapshot:
            return self._kline(event, wanted)  # type: ignore[arg-type]
        if kind is Ticker:
            return self._ticker(event, wanted)  # type: ignore[arg-type]
        return []

    def depth_data(self, merged: Any) -> None:
        """No throttled streams of the openbell kind here (the hub asks only if one is listened to)."""
        return None

    @staticmethod
    def _targets(name: str, wanted: Container[str]) -> list[str]:
        return [key for key in (name, WRAPPED + name) if key in wanted]

    def _out(self, prefix: str, kinds: Sequence[str], wanted: Container[str], build: Callable[[str], dict]) -> list:
        out: list[tuple[str, dict[str, Any]]] = []
        for kind in kinds:
            targets = self._targets(f"{prefix}@{kind}", wanted)
            if targets:
                data = build(kind)
                out.extend((target, data) for target in targets)
        return out

    def _trade(self, t: TradeExecuted, wanted: Container[str]) -> list:
        self._last_ts = t.ts
        prefix = self._prefix(t.market)
        if prefix is None or not any(self._targets(f"{prefix}@{kind}", wanted) for kind in ("trade", "aggTrade")):
            return []
        spec = self._markets().get(t.market)
        if spec is None:
            return []
        price, quantity = spec.format_price(t.price), spec.format_quantity(t.quantity)
        symbol = prefix.upper()

        def build(kind: str) -> dict[str, Any]:
            if kind == "trade":
                return {"e": "trade", "E": t.ts, "s": symbol, "t": t.trade_id, "p": price, "q": quantity,
                        "T": t.ts, "m": t.is_buyer_maker, "M": True}  # fmt: skip
            return {"e": "aggTrade", "E": t.ts, "s": symbol, "a": t.trade_id, "p": price, "q": quantity,
                    "f": t.trade_id, "l": t.trade_id, "T": t.ts, "m": t.is_buyer_maker, "M": True}  # fmt: skip

        return self._out(prefix, ("trade", "aggTrade"), wanted, build)

    def _depth(self, d: DepthUpdated, wanted: Container[str]) -> list:
        prefix = self._prefix(d.market)
        spec = self._markets().get(d.market)
        if prefix is None or spec is None:
            return []
        fp, fq = spec.format_price, spec.format_quantity

        def build(kind: str) -> dict[str, Any]:
            return {
                "e": "depthUpdate",
                "E": d.ts,
                "s": prefix.upper(),
                "U": d.first_update_id,
                "u": d.last_update_id,
                "b": [[fp(price), fq(lots)] for price, lots in d.bids],
                "a": [[fp(price), fq(lots)] for price, lots in d.asks],
            }

        return self._out(prefix, ("depth", "depth@100ms"), wanted, build)

    def _event_time(self) -> int:
        return self._last_ts or time.time_ns() // 1_000_000

    def _kline(self, k: KlineSnapshot, wanted: Container[str]) -> list:
        prefix = self._prefix(k.market)
        spec = self._markets().get(k.market)
        if prefix is None or spec is None:
            return []
        fp = spec.format_price

        def build(kind: str) -> dict[str, Any]:
            candle = {
                "t": k.start * 1000,
                "T": k.end * 1000 - 1,
                "s": prefix.upper(),
                "i": k.interval,
                "o": fp(k.open),
                "c": fp(k.close),
                "h": fp(k.high),
                "l": fp(k.low),
                "v": spec.format_quantity(k.volume),
                "n": k.trades,
                "x": k.closed,
                "q": spec.quote.format_amount(k.quote_volume),
            }
            return {"e": "kline", "E": self._event_time(), "s": prefix.upper(), "k": candle}

        return self._out(prefix, (f"kline_{k.interval}",), wanted, build)

    def _ticker(self, t: Ticker, wanted: Container[str]) -> list:
        prefix = self._prefix(t.market)
        spec = self._markets().get(t.market)
        if prefix is None or spec is None:
            return []
        fp = spec.format_price
        zero = fp(0)

        def build(kind: str) -> dict[str, Any]:
            first, last = t.first_price, t.last_price
            data: dict[str, Any] = {
                "e": "24hrMiniTicker" if kind == "miniTicker" else "24hrTicker",
                "E": self._event_time(),
                "s": prefix.upper(),
                "c": fp(last) if last is not None else zero,
                "o": fp(first) if first is not None else zero,
                "h": fp(t.high) if t.high is not None else zero,
                "l": fp(t.low) if t.low is not None else zero,
                "v": spec.format_quantity(t.volume),
                "q": spec.quote.format_amount(t.quote_volume),
            }
            if kind == "ticker":
                change = (last - first) if first is not None and last is not None else 0
                data["p"] = ("-" + fp(-change)) if change < 0 else fp(change)
                data["P"] = percent_change(change, first) if first else "0.000"
                data["O"] = t.window_start * 1000
                data["C"] = t.window_end * 1000 - 1
                data["n"] = t.trades
            return data

        return self._out(prefix, ("miniTicker", "ticker"), wanted, build)


class BinanceHub(Hub):
    """The hub of Binance streams: Binance shapes, and raw or wrapped frames by the subscription's key."""

    def __init__(self, engine: EngineClient, flush_interval: float = 0.0) -> None:
        super().__init__(engine, flush_interval)
        self.renderer = BinanceRenderer(lambda: engine.markets, lambda: engine.assets)  # type: ignore[assignment]
        self.symbols: dict[str, str] = {}

    def publish(self, events: Sequence[object]) -> None:
        """Render a batch only while someone listens: with no Binance client connected this hub costs the
        process one hand-over per batch (and user streams know the orders accepted while someone listened)."""
        if self.listening:
            super().publish(events)

    def frame(self, stream: str, data: dict[str, Any]) -> bytes:
        if stream.startswith(WRAPPED):
            return encode({"stream": stream[len(WRAPPED) :], "data": data})
        return encode(data)

    def stream_exists(self, name: str) -> bool:
        """Whether `name` is a stream of a running market (`tatainr@trade`, ...)."""
        if not STREAM_NAME.match(name):
            return False
        prefix, _, kind = name.partition("@")
        if kind not in KINDS:
            return False
        markets = self.engine.markets
        if len(self.symbols) != len(markets):
            self.symbols = {binance_symbol(spec).lower(): spec.symbol for spec in list(markets.values())}
        return prefix in self.symbols


SUBSCRIPTION_ID = 0
"""The subscription id of the one user data stream a WebSocket API connection holds (`openbell.ws.binance_api`)."""


class WsApiHub(BinanceHub):
    """User data streams as Binance's WebSocket API frames them: `{"subscriptionId": 0, "event": ...}`."""

    def frame(self, stream: str, data: dict[str, Any]) -> bytes:
        return encode({"subscriptionId": SUBSCRIPTION_ID, "event": data})


class BinanceRequestError(Exception):
    def __init__(self, code: int, msg: str) -> None:
        super().__init__(msg)
        self.code = code
        self.msg = msg


def is_request_id(value: Any) -> bool:
    """Whether `value` is a request id Binance takes: an integer from 0 below 2**63, or 1 to 64 characters."""
    if isinstance(value, bool):
        return False
    return (isinstance(value, int) and 0 <= value < MAX_ID) or (isinstance(value, str) and 0 < len(value) <= 64)


def answer(hub: BinanceHub, settings: WsSettings, connection: Connection, wrapped: bool, text: Any) -> dict:
    """The reply to one client message."""
    request_id: Any = None
    try:
        try:
            message = ujson.loads(text)
        except (ValueError, TypeError):
            raise BinanceRequestError(3, "Invalid JSON: expected value at line 1 column 1") from None
        if not isinstance(message, dict):
            raise BinanceRequestError(2, "Invalid request: request must be a JSON object")
        raw_id = message.get("id")
        if not is_request_id(raw_id):
            raise BinanceRequestError(1, "Invalid value type: expected u64 or a string of at most 64 characters")
        request_id = raw_id
        method = message.get("method")
        if method not in METHODS:
            raise BinanceRequestError(2, f"Invalid request: unknown method; expected one of {', '.join(METHODS)}")
        if method == "LIST_SUBSCRIPTIONS":
            names = sorted(
                s[len(WRAPPED) :] if s.startswith(WRAPPED) else s
                for s in connection.streams
                if not s.startswith(USER_KEY)
            )
            return {"result": names, "id": request_id}
        keys = stream_keys(hub, message.get("params"), wrapped)
        if method == "SUBSCRIBE":
            limit = settings.max_subscriptions_per_connection
            if len(connection.streams | set(keys)) > limit:
                raise BinanceRequestError(2, f"Invalid request: at most {limit} streams per connection")
            hub.subscribe(connection, keys)
        else:
            hub.unsubscribe(connection, keys)
        return {"result": None, "id": request_id}
    except BinanceRequestError as error:
        return {"error": {"code": error.code, "msg": error.msg}, "id": request_id}


def stream_keys(hub: BinanceHub, params: Any, wrapped: bool) -> list[str]:
    if not isinstance(params, list) or not params or not all(isinstance(p, str) for p in params):
        raise BinanceRequestError(2, "Invalid request: params must be a non-empty list of stream names")
    for name in params:
        if not hub.stream_exists(name):
            raise BinanceRequestError(2, f"Invalid request: unknown stream {name[:60]!r}")
    return [(WRAPPED + name) if wrapped else name for name in params]


async def serve(
    hub: BinanceHub,
    settings: WsSettings,
    ws: Any,
    wrapped: bool,
    initial: Sequence[str],
    user: str | None = None,
    listen_key: tuple[Any, str] | None = None,
) -> None:
    """One connection: subscribed at once to the streams `initial` names and, with `user` (its listen key's),
    to that user's data stream; then Binance's requests until it closes. `listen_key`: (store, key) of the key
    that opened the user's stream, which ends the connection (`listenKeyExpired`) when the key ends."""
    if len(hub.connections) >= settings.max_connections:
        await ws.close(1013, "try again later")
        return
    connection = Connection(ws, user, settings.send_queue_limit, settings.write_buffer_high, hub.on_overflow)
    hub.add(connection)
    close_on_invalid_text(ws, connection)
    watch = None
    if listen_key is not None:
        store, key = listen_key
        interval = settings.listen_key_check_seconds
        watch = watch_listen_key(hub, connection, store, key, interval, lambda ms: listen_key_expired(key, ms))
    try:
        names = [name for name in initial if hub.stream_exists(name)][: settings.max_subscriptions_per_connection]
        keys = [(WRAPPED + name) if wrapped else name for name in names]
        if user is not None:
            keys.append(USER_KEY + user)
        if keys:
            hub.subscribe(connection, keys)
        while not connection.closed:
            message = await ws.recv()
            if message is None:
                break
            hub.reply(connection, answer(hub, settings, connection, wrapped, message))
    except ConnectionClosed:
        pass
    finally:
        if watch is not None:
            watch.cancel()
        hub.remove(connection)
        connection.close()


def install_binance_websocket(app: Sanic, engine: EngineClient, settings: WsSettings) -> None:
    """Serve Binance streams of `engine` at `/ws/<...>` and `/stream` on `app` (beside `/ws`)."""

    async def start_hub(app: Sanic) -> None:
        hub = BinanceHub(engine, settings.flush_interval)
        api_hub = WsApiHub(engine, settings.flush_interval)
        loop = asyncio.get_running_loop()

        def publish(events: Sequence[object]) -> None:
            hub.publish(events)
            api_hub.publish(events)

        def on_events(events: Sequence[object]) -> None:
            try:
                loop.call_soon_threadsafe(publish, events)  # one hand-over per batch for both hubs
            except RuntimeError:
                pass  # the loop has closed: the server is stopping

        def close_all(reason: str) -> None:
            hub.close_all(reason)
            api_hub.close_all(reason)

        def interrupted(reason: str) -> None:
            try:
                loop.call_soon_threadsafe(close_all, f"event feed interrupted ({reason}): resync from REST")
            except RuntimeError:
                pass

        bus = engine.bus
        if bus is None:
            raise RuntimeError("this engine client streams no events: no WebSocket server on it")
        app.ctx.binance_hub = hub
        app.ctx.binance_api_hub = api_hub
        app.ctx.binance_unsubscribe = bus.subscribe(on_events)
        app.ctx.binance_uninterrupt = bus.on_interrupted(interrupted)

    async def stop_hub(app: Sanic) -> None:
        for name in ("binance_unsubscribe", "binance_uninterrupt"):
            remove = getattr(app.ctx, name, None)
            if remove is not None:
                remove()
                setattr(app.ctx, name, None)

    async def check_listen_key(request: Request) -> HTTPResponse | None:
        """Before the upgrade of `/ws/<listenKey>`: the key's user for the handler, or 401 (-1125)."""
        if not request.path.startswith("/ws/"):
            return None
        keys = [part for part in request.path[4:].split("/") if LISTEN_KEY.match(part)]
        if not keys:
            return None
        store = getattr(request.app.ctx, "listen_keys", None)
        try:
            user = await store.user_of(keys[0]) if store is not None and len(keys) == 1 else None
        except EngineError:
            return json({"code": -1001, "msg": "Internal error; listen keys are not available."}, status=503)
        if user is None:  # unknown, expired, or more than one key in the path
            return json({"code": -1125, "msg": "This listenKey does not exist."}, status=401)
        request.ctx.stream_user = user
        request.ctx.listen_key = (store, keys[0])
        return None

    async def raw(request: Request, ws: Any, path: str) -> None:
        user = getattr(request.ctx, "stream_user", None)
        listen_key = getattr(request.ctx, "listen_key", None)
        await serve(request.app.ctx.binance_hub, settings, ws, False, path.split("/"), user, listen_key)

    async def combined(request: Request, ws: Any) -> None:
        streams = request.args.get("streams") or ""
        await serve(request.app.ctx.binance_hub, settings, ws, True, streams.split("/") if streams else [])

    async def websocket_api(request: Request, ws: Any) -> None:
        from openbell.ws.binance_api import serve_api

        await serve_api(request.app.ctx.binance_api_hub, getattr(request.app.ctx, "auth", None), settings, ws, request)

    # The routes in a blueprint of their own, so that the listen-key check runs before their upgrades only,
    # not on every request of the app.
    streams = Blueprint("binance_streams")
    streams.middleware(check_listen_key, "request")
    streams.add_websocket_route(raw, "/ws/<path:path>", name="binance_ws_raw")
    streams.add_websocket_route(combined, "/stream", name="binance_ws_combined")
    streams.add_websocket_route(websocket_api, "/ws-api/v3", name="binance_ws_api")
    app.register_listener(start_hub, "before_server_start")
    app.register_listener(stop_hub, "after_server_stop")
    app.blueprint(streams)
