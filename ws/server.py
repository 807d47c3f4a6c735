"""The WebSocket server: route `/ws`, the subscription protocol, and the bridge from the engine's bus.

Protocol (JSON text frames):
- `{"method": "SUBSCRIBE" | "UNSUBSCRIBE", "params": [stream, ...], "id": N}` -> `{"result": null, "id": N}`;
- `{"method": "LIST_SUBSCRIPTIONS", "id": N}` -> `{"result": [stream, ...], "id": N}`;
- any failure -> `{"error": {"code": C, "message": "..."}, "id": N}` (id null if it was not usable).
  A SUBSCRIBE that fails changes nothing.
- stream data: `{"stream": name, "data": {...}}` (see `openbell.ws.render`).

`orders@<user>` and `balance@<user>` need the upgrade request to resolve to that user
(`openbell.edge.identity.resolve_stream_user`: `/ws?listenKey=<key>`, or `/ws?user_id=<user>` in dev mode);
anyone else's SUBSCRIBE to them is refused. Errors carry the same result codes as the REST API's
(`openbell.edge.errors`).

The upgrade itself is checked before the handshake (`check_upgrade`, a request middleware): an `Origin` of
another site is refused (403: a web page elsewhere cannot open a user's streams with the browser's
credentials); an address that already holds `max_connections_per_address` connections gets 429; an unknown or
expired listen key 401. A connection that subscribes to nothing within `idle_seconds_before_subscribe` is
closed (1008), and so is one whose listen key has expired or was deleted since (checked every
`listen_key_check_seconds`; it gets a `listenKeyExpired` message first).

Limits (`WsSettings`): subscriptions per connection, client message size (closes with 1009),
connections per process (one more is closed with 1013 "try again later"), and a bounded backlog per
connection that is behind (overflow closes with 1008 "send queue overflow: resync from REST"). A text
frame that is not UTF-8 closes with 1007. Sanic pings every connection each `ping_interval` and drops
one whose pong takes longer than `ping_timeout`.
"""

from __future__ import annotations

import asyncio
import logging
import os
import time
import urllib.parse
from collections import Counter
from collections.abc import Awaitable, Callable, Iterator, Sequence
from contextlib import contextmanager
from typing import Any

import ujson
from sanic import Blueprint, HTTPResponse, Request, Sanic
from sanic.response import json
from sanic_ext import openapi
from websockets.exceptions import ConnectionClosed

from openbell.core.types import ResultCode
from openbell.edge.auth import client_address
from openbell.edge.client import EngineClient, EngineError
from openbell.edge.errors import ApiError
from openbell.edge.identity import resolve_stream_user
from openbell.ws.connection import Connection
from openbell.ws.hub import Hub
from openbell.ws.settings import WsSettings
from openbell.ws.streams import parse_stream

log = logging.getLogger(__name__)

TRY_AGAIN_LATER = 1013
INVALID_DATA = 1007
POLICY_VIOLATION = 1008
ALLOWED_ORIGINS_ENV = "OPENBELL_ALLOWED_ORIGINS"
"""Comma-separated origins (scheme://host[:port]) whose pages may open WebSockets, besides the server's own host."""
METHODS = ("SUBSCRIBE", "UNSUBSCRIBE", "LIST_SUBSCRIPTIONS")
MAX_ID_LENGTH = 64

__all__ = ["WsSettings", "install_websocket"]

WS_DESCRIPTION = (
    'Send `{"method": "SUBSCRIBE", "params": ["depth@TATA_INR", "trade@TATA_INR"], "id": 1}`; '
    'answered `{"result": null, "id": 1}`, then `{"stream", "data"}` messages. Methods: SUBSCRIBE, '
    "UNSUBSCRIBE, LIST_SUBSCRIPTIONS. Streams: depth@M (diffs with U/u update ids continuing REST's "
    "lastUpdateId), depth@M@100ms (one merged diff per 100 ms), trade@M, ticker@M, status@M, kline_<interval>@M, and the "
    'connection\'s own orders@<user> and balance@<user>. Errors: `{"error": {"code", "message"}, "id"}`.'
)


def install_websocket(app: Sanic, engine: EngineClient, settings: WsSettings | None = None) -> None:
    """Serve the streams of `engine` on `app` at `/ws` (with `WsSettings.from_environment()` if no settings)."""
    settings = settings if settings is not None else WsSettings.from_environment()
    app.config.WEBSOCKET_MAX_SIZE = settings.max_message_bytes
    app.config.WEBSOCKET_PING_INTERVAL = settings.ping_interval
    app.config.WEBSOCKET_PING_TIMEOUT = settings.ping_timeout

    async def start_hub(app: Sanic) -> None:
        hub = Hub(engine, settings.flush_interval)
        loop = asyncio.get_running_loop()
        publish = hub.publish

        def on_events(events: Sequence[object]) -> None:
            """Called on actor threads: one hand-over to the loop per batch."""
            try:
                loop.call_soon_threadsafe(publish, events)
            except RuntimeError:
                pass  # the loop has closed: the server is stopping

        app.ctx.ws_hub = hub
        bus = engine.bus
        if bus is None:
            raise RuntimeError("this engine client streams no events: no WebSocket server on it")

        def interrupted(reason: str) -> None:
            """Events were lost (a WebSocket process lost Redis): clients must resync."""
            try:
                loop.call_soon_threadsafe(hub.close_all, f"event feed interrupted ({reason}): resync from REST")
            except RuntimeError:
                pass

        app.ctx.ws_unsubscribe = bus.subscribe(on_events)
        app.ctx.ws_uninterrupt = bus.on_interrupted(interrupted)

    async def stop_hub(app: Sanic) -> None:
        for name in ("ws_unsubscribe", "ws_uninterrupt"):
            remove = getattr(app.ctx, name, None)
            if remove is not None:
                remove()
                setattr(app.ctx, name, None)

    async def websocket(request: Request, ws: Any) -> None:
        await serve_connection(request.app.ctx.ws_hub, settings, request, ws)

    async def describe_route(app: Sanic) -> None:
        """Sanic wraps a websocket handler in a partial: describe that, or the docs show the partial's docstring."""
        for route in app.router.routes:
            if route.name.endswith(".openbell_ws"):
                openapi.summary("WebSocket streams (upgrade)")(route.handler)
                openapi.description(WS_DESCRIPTION)(route.handler)
                openapi.response(101, description="switching protocols: the stream protocol begins")(route.handler)

    app.ctx.ws_per_address = Counter()
    allowed = allowed_origins(os.environ.get(ALLOWED_ORIGINS_ENV, ""))

    async def check_upgrade(request: Request) -> HTTPResponse | None:
        if request.path != "/ws":
            return None
        try:
            check_origin(request.headers.get("origin"), request.host, allowed)
            if app.ctx.ws_per_address[client_address(request)] >= settings.max_connections_per_address:
                raise ApiError.of(
                    ResultCode.RATE_LIMITED,
                    f"at most {settings.max_connections_per_address} WebSocket connections per address",
                )
            request.ctx.stream_user = await resolve_stream_user(request)
        except ApiError as error:
            headers = {"Retry-After": "1"} if error.result is ResultCode.RATE_LIMITED else None
            return json(error.body(), status=error.status, headers=headers)
        except EngineError:
            return json({"code": int(ResultCode.ENGINE_UNAVAILABLE), "message": "listen keys unavailable"}, status=503)
        return None

    # The route in a blueprint of its own, so that the upgrade check runs before its upgrades only, not on every
    # request of the app.
    streams = Blueprint("streams")
    streams.middleware(check_upgrade, "request")
    streams.add_websocket_route(websocket, "/ws", name="openbell_ws")
    app.register_listener(start_hub, "before_server_start")
    app.register_listener(describe_route, "before_server_start")
    app.register_listener(stop_hub, "after_server_stop")
    app.blueprint(streams)
    from openbell.ws.binance import install_binance_websocket

    install_binance_websocket(app, engine, settings)


def allowed_origins(text: str) -> frozenset[str]:
    return frozenset(origin.strip().rstrip("/").lower() for origin in text.split(",") if origin.strip())


def check_origin(origin: str | None, host: str, allowed: frozenset[str]) -> None:
    """An upgrade without an Origin (not a browser), from a page on this server's host (any port: in the cluster
    the page comes from the API port), or from an allowed origin passes; any other raises ApiError(403)."""
    if origin is None:
        return
    normalized = origin.strip().rstrip("/").lower()
    if normalized in allowed:
        return
    origin_host = urllib.parse.urlsplit(normalized).hostname
    own_host = urllib.parse.urlsplit("//" + host).hostname
    if origin_host is not None and own_host is not None and origin_host == own_host.lower():
        return
    raise ApiError.of(ResultCode.ORIGIN_NOT_ALLOWED, "WebSocket connections from this origin are not allowed")


async def serve_connection(hub: Hub, settings: WsSettings, request: Request, ws: Any) -> None:
    if len(hub.connections) >= settings.max_connections:
        await ws.close(TRY_AGAIN_LATER, "try again later")
        return
    user: str | None = getattr(request.ctx, "stream_user", None)
    connection = Connection(ws, user, settings.send_queue_limit, settings.write_buffer_high, hub.on_overflow)
    hub.add(connection)
    close_on_invalid_text(ws, connection)
    idle_close = asyncio.get_running_loop().call_later(
        settings.idle_seconds_before_subscribe, close_if_idle, connection, settings.idle_seconds_before_subscribe
    )
    listen_key = request.args.get("listenKey") if user is not None else None
    watch = None
    if listen_key is not None:
        watch = watch_listen_key(
            hub,
            connection,
            request.app.ctx.listen_keys,
            listen_key,
            settings.listen_key_check_seconds,
            lambda ms: {"stream": "listenKey", "data": listen_key_expired(listen_key, ms)},
        )
    try:
        with address_slot(request.app.ctx.ws_per_address, client_address(request)):
            while not connection.closed:
                message = await ws.recv()
                if message is None:
                    break
                hub.reply(connection, answer(hub, settings, connection, message))
    except ConnectionClosed:
        pass
    finally:
        idle_close.cancel()
        if watch is not None:
            watch.cancel()
        hub.remove(connection)
        connection.close()


@contextmanager
def address_slot(per_address: Counter[str], address: str) -> Iterator[None]:
    """Count one open connection of `address` while the block runs (what the per-address cap reads)."""
    per_address[address] += 1
    try:
        yield
    finally:
        per_address[address] -= 1
        if per_address[address] <= 0:
            del per_address[address]


async def close_when_ended(
    hub: Hub,
    connection: Connection,
    interval: float,
    lives: Callable[[], Awaitable[bool]],
    message: Callable[[int], dict[str, Any]],
    reason: str,
) -> None:
    """Every `interval` s, ask `lives()` whether what opened the connection's private stream (a listen key, an
    API key) still lives; once it does not, send `message(now in ms)` (after everything published before it) and
    close the connection (1008, `reason`). A store that cannot be reached keeps the stream until the next check."""
    while not connection.closed:
        await asyncio.sleep(interval)
        if connection.closed:
            return
        try:
            alive = await lives()
        except (EngineError, ApiError):
            continue
        if alive or connection.closed:
            continue
        log.info("websocket of user %s closed: %s", connection.user, reason)
        hub.reply(connection, message(time.time_ns() // 1_000_000))
        end(connection, reason)
        return


def watch_listen_key(
    hub: Hub, connection: Connection, store: Any, listen_key: str, interval: float, message: Callable[[int], Any]
) -> asyncio.Task[None]:
    """The task that ends `connection` with `message(ms)` once `listen_key` (which opened it) has ended."""

    async def key_lives() -> bool:
        return await store.user_of(listen_key) is not None

    return asyncio.create_task(close_when_ended(hub, connection, interval, key_lives, message, "listen key expired"))


def listen_key_expired(listen_key: str, ms: int) -> dict[str, Any]:
    """Binance's message for a user data stream whose listen key has ended."""
    return {"e": "listenKeyExpired", "E": ms, "listenKey": listen_key}


def end(connection: Connection, reason: str) -> None:
    """Close a connection for policy (1008) from outside its handler, and end the handler's wait for a message."""
    connection.fail(POLICY_VIOLATION, reason)
    cancel = getattr(connection.ws, "recv_cancel", None)
    if cancel is not None:
        cancel.cancel()


def close_if_idle(connection: Connection, seconds: float) -> None:
    """Close a connection that never subscribed: an idle connection holds a slot for nothing."""
    if not connection.streams and not connection.closed:
        end(connection, f"no subscription within {seconds:g} s")


def close_on_invalid_text(ws: Any, connection: Connection) -> None:
    """Close with 1007 when a text frame is not UTF-8, logging one line for the connection.

    Sanic decodes text frames in a task of its own (`process_events`), where the error would end that
    task with a traceback per frame and leave the connection open; this wraps that method of this one
    connection."""
    process_events = ws.process_events

    async def process_events_or_close(events: Any) -> None:
        try:
            await process_events(events)
        except UnicodeDecodeError as error:
            if connection.closed:
                return
            log.info("websocket of user %s closed with 1007: a text frame is not UTF-8 (%s)", connection.user, error)
            connection.fail(INVALID_DATA, "invalid UTF-8 in a text frame")
            if ws.recv_cancel is not None:
                ws.recv_cancel.cancel()  # ends the handler's recv, as a close frame would

    ws.process_events = process_events_or_close


def answer(hub: Hub, settings: WsSettings, connection: Connection, text: str | bytes) -> dict[str, Any]:
    """The reply to one client message."""
    request_id: Any = None
    try:
        try:
            message = ujson.loads(text)
        except (ValueError, TypeError):
            raise ApiError.of(ResultCode.INVALID_REQUEST, "malformed JSON") from None
        if not isinstance(message, dict):
            raise ApiError.of(ResultCode.INVALID_REQUEST, "a request must be a JSON object")
        raw_id = message.get("id")
        if _valid_id(raw_id):
            request_id = raw_id
        else:
            raise ApiError.of(ResultCode.INVALID_REQUEST, "id must be an integer or a string of 1-64 characters")
        method = message.get("method")
        if method not in METHODS:
            raise ApiError.of(ResultCode.INVALID_REQUEST, f"method must be one of {', '.join(METHODS)}")
        if method == "LIST_SUBSCRIPTIONS":
            return {"result": sorted(connection.streams), "id": request_id}
        streams = _streams(hub, connection, message.get("params"))
        if method == "SUBSCRIBE":
            total = len(connection.streams | set(streams))
            limit = settings.max_subscriptions_per_connection
            if total > limit:
                raise ApiError.of(ResultCode.INVALID_REQUEST, f"too many subscriptions: at most {limit} per connection")
            hub.subscribe(connection, streams)
        else:
            hub.unsubscribe(connection, streams)
        return {"result": None, "id": request_id}
    except ApiError as error:
        return {"error": {"code": error.code, "message": error.message}, "id": request_id}


def _valid_id(value: Any) -> bool:
    if isinstance(value, bool):
        return False
    if isinstance(value, int):
        return True
    return isinstance(value, str) and 0 < len(value) <= MAX_ID_LENGTH


def _streams(hub: Hub, connection: Connection, params: Any) -> list[str]:
    if not isinstance(params, list) or not params or not all(isinstance(p, str) for p in params):
        raise ApiError.of(ResultCode.INVALID_REQUEST, "params must be a non-empty list of stream names")
    markets = hub.engine.markets
    out: list[str] = []
    for name in params:
        stream = parse_stream(name, markets)
        if stream is None:
            raise ApiError.of(ResultCode.INVALID_REQUEST, f"unknown stream: {name[:100]}")
        owner = stream.user
        if owner is not None and owner != connection.user:
            raise ApiError.of(
                ResultCode.INVALID_USER,
                f"forbidden: {stream.name} is private to its user (connect with that user's listen key)",
            )
        out.append(stream.name)
    return out
