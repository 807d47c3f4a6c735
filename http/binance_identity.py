"""Who acts on a `/api/v3` request: the one place the Binance API asks.

Signed requests (`acting_user`): the authenticator (`openbell.edge.auth`) has already checked the request before
the handler runs: the `X-MBX-APIKEY` key, the signature over the raw query string and form body (Binance's rule,
as ccxt sends it), the timestamp window and, for a state-changing request, that its signature was not seen
before. So the acting user is the key's (`resolve_user`); in `--dev` it is the `X-MBX-APIKEY` header's value, so
an unmodified Binance client acts as the user its key names.

Key-only requests (`key_user`, Binance's USER_STREAM security: `/api/v3/userDataStream`): the route is public to
the authenticator (no signature; the address's rate limit applies), and the handler asks here, which checks the
`X-MBX-APIKEY` key against the same key cache the authenticator keeps (`Authenticator.key`) and needs its read
permission.
"""

from __future__ import annotations

from typing import Any

from openbell.core.types import Permission, ResultCode
from openbell.edge.auth import API_KEY_HEADER
from openbell.edge.errors import ApiError
from openbell.edge.identity import identity_of, resolve_user


def acting_user(request: Any, params: dict[str, Any]) -> str:
    """The user a signed v3 request acts for, or ApiError (-2014/-2015 in this API)."""
    return resolve_user(request, params)


async def key_user(request: Any) -> str:
    """The user of the request's `X-MBX-APIKEY` key, no signature asked (in `--dev`, the header's value), or
    ApiError: no key or an unknown one (-2014), a key without the read permission (-2015)."""
    identity = identity_of(request)
    if identity is not None and identity.dev:
        return resolve_user(request)
    api_key = request.headers.get(API_KEY_HEADER)
    if not api_key:
        raise ApiError.of(ResultCode.MISSING_API_KEY, "an API key is required (X-MBX-APIKEY header)")
    if len(api_key) > 128 or not api_key.isascii():
        raise ApiError.of(ResultCode.UNKNOWN_API_KEY, "unknown or revoked API key")
    known = await request.app.ctx.auth.key(api_key)
    key = known.identity
    if key is None or key.user_id is None:
        raise ApiError.of(ResultCode.UNKNOWN_API_KEY, "unknown or revoked API key")
    if Permission.READ not in key.permissions:
        raise ApiError.of(ResultCode.MISSING_PERMISSION, "this API key lacks the read permission")
    user_id: str = key.user_id
    return user_id
