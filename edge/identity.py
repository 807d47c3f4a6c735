"""Who is acting: the one function that resolves the user of a request.

With authentication on, the acting user is the user of the request's API key (checked before the handler
ran, see `openbell.edge.auth`): a `user_id` in the body or query is optional, and refused (403) if it is
not the key's user. On an operator's route (the operator's token) the request names the user it acts on
(`POST /onramp` credits that user). In dev mode (`--dev`) the request says who it is: `user_id` in the JSON
body or the query string, else the `X-MBX-APIKEY` header's value. No handler reads `user_id` itself.

A WebSocket connection's user (`resolve_stream_user`) comes from its listen key (`?listenKey=`), or in dev mode
from `?user_id=`.
"""

from __future__ import annotations

import re
from typing import Any

from openbell.core.types import ResultCode
from openbell.edge.auth import API_KEY_HEADER, Identity
from openbell.edge.errors import ApiError
from openbell.edge.listen_keys import LISTEN_KEY

USER_ID = re.compile(r"^[A-Za-z0-9_.-]{1,64}\Z")


def _named_user(request: Any, body: dict[str, Any] | None) -> Any:
    value: Any = None
    if body is not None:
        value = body.get("user_id")
    if value is None:
        query = request.raw_url.partition(b"?")[2]
        # parsed only if it may name a user (literally or percent-encoded): a signed request's query (timestamp,
        # signature), already read by the check, is not parsed again for nothing
        if b"user" in query or b"%" in query:
            value = request.args.get("user_id")
    if isinstance(value, int) and not isinstance(value, bool):
        value = str(value)
    return value


def _valid(value: Any) -> str:
    if not isinstance(value, str) or not USER_ID.match(value):
        raise ApiError.of(ResultCode.INVALID_USER, "user_id is required: 1-64 characters of A-Z a-z 0-9 _ . -")
    return value


def identity_of(request: Any) -> Identity | None:
    return getattr(request.ctx, "identity", None)


def resolve_user(request: Any, body: dict[str, Any] | None = None) -> str:
    """The acting user's id: the API key's user (403 if the request names another), the named user on an
    operator's route and in dev mode, or ApiError saying why there is none."""
    named = _named_user(request, body)
    identity = identity_of(request)
    if identity is None:
        raise ApiError.of(ResultCode.MISSING_API_KEY, "an API key is required (X-MBX-APIKEY header)")
    if identity.user_id is not None:
        if named is not None and named != identity.user_id:
            raise ApiError.of(ResultCode.NOT_YOUR_USER, "user_id is not the API key's user")
        return identity.user_id
    if identity.dev:
        if named is None:
            header = request.headers.get(API_KEY_HEADER)
            if header:
                named = header
        return _valid(named)
    if identity.admin:
        return _valid(named)
    raise ApiError.of(ResultCode.MISSING_API_KEY, "an API key is required (X-MBX-APIKEY header)")


async def resolve_stream_user(request: Any) -> str | None:
    """The user whose private streams a WebSocket upgrade may read: the user of its `?listenKey=` (ApiError if
    that is not a live key), else, in dev mode only, its `?user_id=`; None otherwise (market streams only)."""
    listen_key = request.args.get("listenKey")
    if listen_key is not None:
        store = getattr(request.app.ctx, "listen_keys", None)
        user = await store.user_of(listen_key) if store is not None and LISTEN_KEY.match(listen_key) else None
        if user is None:
            raise ApiError.of(ResultCode.UNKNOWN_LISTEN_KEY, "unknown or expired listen key")
        return user
    identity = identity_of(request)
    if identity is not None and identity.dev and request.args.get("user_id") is not None:
        return resolve_user(request)
    return None
