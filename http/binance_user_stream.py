"""The Binance user data stream's listen keys (`/api/v3/userDataStream`): the same store as `/api/v1/listenKey`.

Binance's USER_STREAM security: the `X-MBX-APIKEY` key, no signature (`binance_identity.key_user` checks it).
`POST` makes a listen key of the key's user, `PUT` (`listenKey`) keeps it alive another 60 minutes, `DELETE`
ends it; a key that is not a live key of this user (unknown, expired, another user's) is -1125 "This listenKey
does not exist.". The store is the app's (`app.ctx.listen_keys`: this process's, or Redis in the cluster), so a
key made here opens `/ws/<listenKey>` (`openbell.ws.binance`) on any WebSocket worker, and `/ws?listenKey=`.
"""

from __future__ import annotations

from sanic import Request
from sanic.response import HTTPResponse, json
from sanic_ext import openapi

from openbell.edge.auth import Access, requires
from openbell.edge.binance import LISTEN_KEY_UNKNOWN, BinanceError
from openbell.edge.listen_keys import LISTEN_KEY, ListenKeys
from openbell.http.binance import v3
from openbell.http.binance_identity import key_user
from openbell.http.binance_parse import params_of, text_param


def store_of(request: Request) -> ListenKeys:
    store: ListenKeys = request.app.ctx.listen_keys
    return store


def listen_key_of(request: Request) -> str:
    value = text_param(params_of(request), "listenKey")
    assert value is not None
    if not LISTEN_KEY.match(value):
        raise BinanceError(-1125, LISTEN_KEY_UNKNOWN)
    return value


@v3.post("/userDataStream")
@requires(Access.PUBLIC)
@openapi.summary("Binance API: a listen key for the key's user data stream (/ws/<listenKey>), valid 60 minutes")
async def create_user_data_stream(request: Request) -> HTTPResponse:
    params_of(request)  # strict, as every v3 request
    user_id = await key_user(request)
    return json({"listenKey": await store_of(request).create(user_id)})


@v3.put("/userDataStream")
@requires(Access.PUBLIC)
@openapi.summary("Binance API: keep a listen key alive for another 60 minutes")
async def extend_user_data_stream(request: Request) -> HTTPResponse:
    user_id = await key_user(request)
    key = listen_key_of(request)
    if not await store_of(request).extend(key, user_id):
        raise BinanceError(-1125, LISTEN_KEY_UNKNOWN)
    return json({})


@v3.delete("/userDataStream")
@requires(Access.PUBLIC)
@openapi.summary("Binance API: end a listen key")
async def delete_user_data_stream(request: Request) -> HTTPResponse:
    user_id = await key_user(request)
    key = listen_key_of(request)
    if not await store_of(request).delete(key, user_id):
        raise BinanceError(-1125, LISTEN_KEY_UNKNOWN)
    return json({})
