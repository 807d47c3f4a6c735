"""Binance's WebSocket API at `/ws-api/v3`: the part of it that ccxt.pro uses for a spot account's streams.

ccxt.pro 4.5's `watch_orders`, `watch_balance` and `watch_my_trades` on spot do not read `/ws/<listenKey>`: they
open `urls.api.ws.ws-api.spot` and send `userDataStream.subscribe.signature` with `apiKey`, `timestamp` (and
`recvWindow`) and `signature`, the HMAC-SHA256 under the key's secret of the other parameters sorted by name,
as `name=value` joined by `&` (`Authenticator.check_params`: the same key store and HMAC as REST). The answer
carries `subscriptionId` 0; from then on the user's `executionReport` and `outboundAccountPosition` arrive as
`{"subscriptionId": 0, "event": {...}}`, rendered as for `/ws/<listenKey>` (`openbell.ws.binance_user`).

Requests are `{"id", "method", "params"}`; answers `{"id", "status": 200, "result": ...}` or
`{"id", "status": 4xx/5xx, "error": {"code", "msg"}}` with Binance's codes (`openbell.edge.binance`). Methods:
`userDataStream.subscribe.signature`, `userDataStream.unsubscribe`, `session.subscriptions`, `ping`, `time`;
any other is -1020 "This operation is not supported." A connection holds one user data subscription (Binance
allows one per account per connection; openbell one per connection): subscribing again, for another account,
is refused (-1100) until `userDataStream.unsubscribe`. In dev mode (`--dev`) `apiKey` names the user and the
signature is not checked, as on REST.

Limits: the connection counts against its address's WebSocket connections (closed at once, 1008, past
`max_connections_per_address`) and is closed if it holds no subscription after `idle_seconds_before_subscribe`;
each subscribe request takes a token of the address's read bucket before its key is looked up (-1003 past it),
and a connection may send MAX_SUBSCRIBE_ATTEMPTS of them. The subscription's API key is looked up again every
`listen_key_check_seconds`: revoked, or without the read permission, it ends the stream (`eventStreamTerminated`,
then 1008).
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections import Counter
from typing import Any

import ujson
from websockets.exceptions import ConnectionClosed

from openbell.core.types import ResultCode
from openbell.edge.auth import Authenticator, client_address
from openbell.edge.binance import BinanceError, error_of_result
from openbell.edge.client import EngineError
from openbell.edge.errors import ApiError
from openbell.edge.identity import USER_ID
from openbell.ws.binance import SUBSCRIPTION_ID, WsApiHub, is_request_id
from openbell.ws.binance_user import USER_KEY
from openbell.ws.connection import Connection
from openbell.ws.server import (
    POLICY_VIOLATION,
    address_slot,
    close_if_idle,
    close_on_invalid_text,
    close_when_ended,
)
from openbell.ws.settings import WsSettings

log = logging.getLogger(__name__)

UNSUPPORTED = BinanceError(-1020, "This operation is not supported.", 400)


MAX_SUBSCRIBE_ATTEMPTS = 10
"""Subscribe requests one connection may send; one more closes it (1008): each costs a key lookup."""


class Session:
    """What one WebSocket API connection holds: its connection, its client's address, and the watch over the API
    key of its user data subscription (while it lasts)."""

    def __init__(self, connection: Connection, address: str) -> None:
        self.connection = connection
        self.address = address
        self.watch: asyncio.Task[None] | None = None
        self.subscribe_attempts = 0

    def stop_watching(self) -> None:
        if self.watch is not None:
            self.watch.cancel()
            self.watch = None


async def serve_api(
    hub: WsApiHub, auth: Authenticator | None, settings: WsSettings, ws: Any, request: Any
) -> None:
    """One WebSocket API connection: requests answered in order until it closes. It counts against its client
    address's WebSocket connections, and one that holds no subscription after `idle_seconds_before_subscribe`
    is closed, as on `/ws`."""
    if len(hub.connections) >= settings.max_connections:
        await ws.close(1013, "try again later")
        return
    address = client_address(request)
    per_address: Counter[str] = request.app.ctx.ws_per_address  # /ws's count (install_websocket installs both)
    if per_address[address] >= settings.max_connections_per_address:
        await ws.close(POLICY_VIOLATION, f"at most {settings.max_connections_per_address} connections per address")
        return
    connection = Connection(ws, None, settings.send_queue_limit, settings.write_buffer_high, hub.on_overflow)
    session = Session(connection, address)
    hub.add(connection)
    close_on_invalid_text(ws, connection)
    seconds = settings.idle_seconds_before_subscribe
    idle_close = asyncio.get_running_loop().call_later(seconds, close_if_idle, connection, seconds)
    try:
        with address_slot(per_address, address):
            while not connection.closed:
                message = await ws.recv()
                if message is None:
                    break
                hub.reply(connection, await answer(hub, auth, session, settings, message))
                if session.subscribe_attempts > MAX_SUBSCRIBE_ATTEMPTS:
                    connection.fail(POLICY_VIOLATION, "too many subscribe requests")
    except ConnectionClosed:
        pass
    finally:
        idle_close.cancel()
        session.stop_watching()
        hub.remove(connection)
        connection.close()


async def answer(
    hub: WsApiHub, auth: Authenticator | None, session: Session, settings: WsSettings, text: Any
) -> dict[str, Any]:
    """The answer to one request."""
    request_id: Any = None
    try:
        try:
            message = ujson.loads(text)
        except (ValueError, TypeError):
            raise BinanceError(-1100, "Illegal characters found in a parameter: the request is not JSON.") from None
        if not isinstance(message, dict):
            raise BinanceError(-1100, "The request must be a JSON object.")
        raw_id = message.get("id")
        if raw_id is not None and not is_request_id(raw_id):
            raise BinanceError(-1100, "Illegal value for 'id': an integer, a string of at most 64 characters or null.")
        request_id = raw_id
        params = message.get("params", {})
        if not isinstance(params, dict):
            raise BinanceError(-1100, "Illegal value for 'params': an object.")
        result = await _call(hub, auth, session, settings, message.get("method"), params)
        return {"id": request_id, "status": 200, "result": result}
    except BinanceError as error:
        return _error(request_id, error)
    except ApiError as error:
        return _error(request_id, error_of_result(error.result, error.message))
    except EngineError as error:
        return _error(request_id, error_of_result(ResultCode.ENGINE_UNAVAILABLE, str(error)))


async def _call(
    hub: WsApiHub, auth: Authenticator | None, session: Session, settings: WsSettings, method: Any, params: dict
) -> Any:
    connection = session.connection
    if method == "ping":
        return {}
    if method == "time":
        return {"serverTime": time.time_ns() // 1_000_000}
    if method == "session.subscriptions":
        return [{"subscriptionId": SUBSCRIPTION_ID}] if connection.streams else []
    if method == "userDataStream.unsubscribe":
        if not connection.streams:
            raise BinanceError(-2035, "User Data Stream subscription not active.")
        hub.unsubscribe(connection, list(connection.streams))
        connection.user = None
        session.stop_watching()
        return {}
    if method == "userDataStream.subscribe.signature":
        session.subscribe_attempts += 1
        if auth is None:
            raise error_of_result(ResultCode.ENGINE_UNAVAILABLE, "no authenticator")
        await auth.admit_read(session.address)  # before any key lookup
        user = await _signed_user(auth, params)
        key = USER_KEY + user
        if connection.streams and key not in connection.streams:
            raise BinanceError(-1100, "This connection already streams another account: unsubscribe first.")
        hub.subscribe(connection, [key])
        connection.user = user
        if not auth.dev:
            session.stop_watching()
            session.watch = asyncio.create_task(_end_when_key_ends(hub, auth, session, str(params["apiKey"]), settings))
        return {"subscriptionId": SUBSCRIPTION_ID}
    raise UNSUPPORTED


async def _end_when_key_ends(
    hub: WsApiHub, auth: Authenticator, session: Session, api_key: str, settings: WsSettings
) -> None:
    """A user's stream stops with the key that opened it: revoked, or without the read permission, the key ends
    the subscription with `eventStreamTerminated`, then 1008 (looked up every `listen_key_check_seconds`)."""

    async def key_lives() -> bool:
        known = await auth.key(api_key)
        return known.identity is not None and known.can_read

    def terminated(ms: int) -> dict[str, Any]:
        return {"subscriptionId": SUBSCRIPTION_ID, "event": {"e": "eventStreamTerminated", "E": ms}}

    await close_when_ended(
        hub, session.connection, settings.listen_key_check_seconds, key_lives, terminated, "API key revoked"
    )


async def _signed_user(auth: Authenticator, params: dict[str, Any]) -> str:
    if auth.dev:
        api_key = params.get("apiKey")
        if not isinstance(api_key, str) or not USER_ID.match(api_key):
            raise error_of_result(ResultCode.INVALID_USER, "apiKey must name the user in dev mode")
        return api_key
    identity = await auth.check_params(params)
    if identity.user_id is None:
        raise error_of_result(ResultCode.MISSING_PERMISSION, "this key acts for no user")
    return identity.user_id


def _error(request_id: Any, error: BinanceError) -> dict[str, Any]:
    return {"id": request_id, "status": error.status, "error": {"code": error.code, "msg": error.msg}}
