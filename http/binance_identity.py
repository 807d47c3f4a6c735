"""Who acts on a signed `/api/v3` request: the one place the Binance API asks.

The authenticator (`openbell.edge.auth`) has already checked the request before the handler runs: the
`X-MBX-APIKEY` key, the signature over the raw query string and form body (Binance's rule, as ccxt sends it),
the timestamp window and, for a state-changing request, that its signature was not seen before. So the acting
user is the key's (`resolve_user`); in `--dev` it is the `X-MBX-APIKEY` header's value, so an unmodified
Binance client acts as the user its key names.
"""

from __future__ import annotations

from typing import Any

from openbell.edge.identity import resolve_user


def acting_user(request: Any, params: dict[str, Any]) -> str:
    """The user a signed v3 request acts for, or ApiError (-2014/-2015 in this API)."""
    return resolve_user(request, params)
