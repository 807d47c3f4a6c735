"""Who acts on a signed `/api/v3` request: the one place the Binance API asks.

TEMPORARY, until the accounts package (API keys, Binance's signing rule, `--dev`) is merged: then the body
of `acting_user` becomes `return resolve_user(request, params)`, which verifies the signature over the raw
query and form body and answers the key's user. Until then the user is `user_id` if the request names one,
else the value of its `X-MBX-APIKEY` header (so an unmodified Binance client acts as the user its key
names, as `--dev` will do). Nothing here checks a signature, a timestamp or a recvWindow.
"""

from __future__ import annotations

from typing import Any

from openbell.edge.identity import USER_ID, resolve_user

API_KEY_HEADER = "X-MBX-APIKEY"


def acting_user(request: Any, params: dict[str, Any]) -> str:
    """The user a signed v3 request acts for, or ApiError(INVALID_USER) (-2014 in this API)."""
    if params.get("user_id") is None and request.args.get("user_id") is None:
        key = request.headers.get(API_KEY_HEADER)
        if isinstance(key, str) and USER_ID.match(key):
            return key
    return resolve_user(request, params)
