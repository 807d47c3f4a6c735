"""A small client of openbell's REST API over httpx, signing requests the way the server checks them.

    from openbell.client import Client
    with Client("http://127.0.0.1:8000", api_key="...", secret="...") as exchange:
        exchange.post("/order", json={"market": "TATA_INR", "side": "buy", "type": "limit",
                                      "price": "100.00", "quantity": "1"})

`Signer` computes signatures (Binance's rule, `openbell.edge.signing`); `SignedAuth` is an `httpx.Auth`
that adds `timestamp` (and `recvWindow` if set), the `X-MBX-APIKEY` header and `signature` to any request:
the signature goes at the end of the query string and covers the query plus the raw body (a JSON body is
signed as it is sent). `OperatorAuth` adds the operator's `Authorization: Bearer` token. Both work with
`httpx.Client` and `httpx.AsyncClient`.
"""

from __future__ import annotations

import hashlib
import hmac
import threading
import time
from collections.abc import Generator, Iterable
from typing import Any

import httpx

API_KEY_HEADER = "X-MBX-APIKEY"


class Signer:
    """An API key and its secret; signs totalParams (query string + body) as lowercase hex HMAC-SHA256."""

    def __init__(self, api_key: str, secret: str) -> None:
        self.api_key = api_key
        self._secret = secret.encode()
        self._recent: dict[bytes, int] = {}
        """Request payload -> the timestamp it was last signed with (bounded; see `timestamp_for`)."""
        self._lock = threading.Lock()

    def timestamp_for(self, payload: bytes) -> int:
        """Now in ms; but for a payload this signer signed in this same millisecond already, one more: the same
        request sent twice in one millisecond gets two signatures, so the server does not take the second for a
        replay. Different requests keep the clock's time (no drift, however many are signed per second)."""
        now = time.time_ns() // 1_000_000
        with self._lock:
            last = self._recent.get(payload)
            stamp = now if last is None or last < now else last + 1
            if len(self._recent) >= 4096:
                self._recent.clear()
            self._recent[payload] = stamp
        return stamp

    def sign(self, total_params: bytes | str) -> str:
        data = total_params.encode() if isinstance(total_params, str) else total_params
        return hmac.new(self._secret, data, hashlib.sha256).hexdigest()

    def signed_query(
        self,
        query: bytes | str = b"",
        body: bytes = b"",
        *,
        timestamp: int | None = None,
        recv_window: int | None = None,
    ) -> bytes:
        """`query` with `timestamp` (now, by default), `recvWindow` if given, and `signature` appended; the
        signature covers that query followed by `body`."""
        raw = query.encode() if isinstance(query, str) else query
        stamp = self.timestamp_for(raw + b"\x00" + body) if timestamp is None else timestamp
        extra = f"timestamp={stamp}" + (f"&recvWindow={recv_window}" if recv_window is not None else "")
        signed = raw + (b"&" if raw else b"") + extra.encode()
        return signed + b"&signature=" + self.sign(signed + body).encode()


class SignedAuth(httpx.Auth):
    """Signs every request with `signer` (see the module docstring)."""

    requires_request_body = True

    def __init__(self, signer: Signer, recv_window: int | None = None) -> None:
        self.signer = signer
        self.recv_window = recv_window

    def auth_flow(self, request: httpx.Request) -> Generator[httpx.Request, httpx.Response, None]:
        sign_request(request, self.signer, self.recv_window)
        yield request


def sign_request(request: httpx.Request, signer: Signer, recv_window: int | None = None) -> None:
    """Sign `request` in place (its body must have been read)."""
    query = signer.signed_query(request.url.query, request.content, recv_window=recv_window)
    request.url = request.url.copy_with(query=query)
    request.headers[API_KEY_HEADER] = signer.api_key


class OperatorAuth(httpx.Auth):
    """The operator's token, for admin routes (onramp, markets, keys)."""

    def __init__(self, token: str) -> None:
        self.token = token

    def auth_flow(self, request: httpx.Request) -> Generator[httpx.Request, httpx.Response, None]:
        request.headers["Authorization"] = f"Bearer {self.token}"
        yield request


class Client(httpx.Client):
    """`httpx.Client` on `<url>/api/v1`, signing with `api_key`/`secret`, or sending the operator's
    `admin_token` (then `create_key` and the admin routes work)."""

    def __init__(
        self,
        url: str,
        *,
        api_key: str | None = None,
        secret: str | None = None,
        admin_token: str | None = None,
        timeout: float = 10.0,
        **options: Any,
    ) -> None:
        auth: httpx.Auth | None = None
        if api_key is not None and secret is not None:
            auth = SignedAuth(Signer(api_key, secret))
        elif admin_token is not None:
            auth = OperatorAuth(admin_token)
        super().__init__(base_url=url.rstrip("/") + "/api/v1", auth=auth, timeout=timeout, **options)

    def create_key(self, user_id: str, permissions: Iterable[str] = ("read", "trade")) -> dict[str, Any]:
        """A new key for `user_id` (operator only): `{"user_id", "apiKey", "secret", "permissions"}`."""
        response = self.post("/admin/keys", json={"user_id": user_id, "permissions": list(permissions)})
        response.raise_for_status()
        created: dict[str, Any] = response.json()
        return created

    def as_user(self, key: dict[str, Any]) -> Client:
        """A client on the same server signing with `key` (as `create_key` answered it)."""
        return Client(str(self.base_url).removesuffix("/api/v1"), api_key=key["apiKey"], secret=key["secret"])
