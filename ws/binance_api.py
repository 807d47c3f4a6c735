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
"""

from __future__ import annotations

import logging
import time
from typing import Any

import ujson
from websockets.exceptions import ConnectionClosed

from openbell.core.types import ResultCode
from openbell.edge.auth import Authenticator
from openbell.edge.binance import BinanceError, error_of_result
from openbell.edge.client import EngineError
from openbell.edge.errors import ApiError
from openbell.edge.identity import USER_ID
from openbell.ws.binance import MAX_ID, SUBSCRIPTION_ID, WsApiHub
from openbell.ws.binance_user import USER_KEY
from openbell.ws.connection import Connection
from openbell.ws.server import close_on_invalid_text
from openbell.ws.settings import WsSettings

log = logging.getLogger(__name__)

UNSUPPORTED = BinanceError(-1020, "This operation is not supported.", 400)


async def serve_api(hub: WsApiHub, auth: Authenticator | None, settings: WsSettings, ws: Any) -> None:
    """One WebSocket API connection: requests answered in order until it closes."""
    if len(hub.connections) >= settings.max_connections:
        await ws.close(1013, "try again later")
        return
    connection = Connection(ws, None, settings.send_queue_limit, settings.write_buffer_high, hub.on_overflow)
    hub.add(connection)
    close_on_invalid_text(ws, connection)
    try:
        while not connection.closed:
            message = await ws.recv()
            if message is None:
                break
            hub.reply(connection, await answer(hub, auth, connection, message))
    except ConnectionClosed:
        pass
    finally:
        hub.remove(connection)
        connection.close()


async def answer(hub: WsApiHub, auth: Authenticator | None, connection: Connection, text: Any) -> dict[str, Any]:
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
        if raw_id is not None and (
            isinstance(raw_id, bool)
            or not ((isinstance(raw_id, int) and 0 <= raw_id < MAX_ID) or (isinstance(raw_id, str) and len(raw_id) <= 64))
        ):
            raise BinanceError(-1100, "Illegal value for 'id': an integer, a string of at most 64 characters or null.")
        request_id = raw_id
        params = message.get("params", {})
        if not isinstance(params, dict):
            raise BinanceError(-1100, "Illegal value for 'params': an object.")
        result = await _call(hub, auth, connection, message.get("method"), params)
        return {"id": request_id, "status": 200, "result": result}
    except BinanceError as error:
        return _error(request_id, error)
    except ApiError as error:
        return _error(request_id, error_of_result(error.result, error.message))
    except EngineError as error:
        return _error(request_id, error_of_result(ResultCode.ENGINE_UNAVAILABLE, str(error)))


async def _call(
    hub: WsApiHub, auth: Authenticator | None, connection: Connection, method: Any, params: dict[str, Any]
) -> Any:
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
        return {}
    if method == "userDataStream.subscribe.signature":
        user = await _signed_user(auth, params)
        key = USER_KEY + user
        if connection.streams and key not in connection.streams:
            raise BinanceError(-1100, "This connection already streams another account: unsubscribe first.")
        hub.subscribe(connection, [key])
        connection.user = user
        return {"subscriptionId": SUBSCRIPTION_ID}
    raise UNSUPPORTED


async def _signed_user(auth: Authenticator | None, params: dict[str, Any]) -> str:
    if auth is None:
        raise error_of_result(ResultCode.ENGINE_UNAVAILABLE, "no authenticator")
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
