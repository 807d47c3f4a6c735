"""Signed requests, Binance's rule: what is signed, how it is checked, and which signatures were already seen.

A signed request carries the header `X-MBX-APIKEY: <apiKey>` and the parameters `timestamp` (ms since the
epoch), optionally `recvWindow` (ms, default 5000, at most 60000) and `signature`, in its query string or
in its form body. With

    totalParams = <raw query string> + <raw body>        (no separator; `signature=...` removed from
                                                          whichever of the two carries it)

`signature` is the lowercase hex HMAC-SHA256 of totalParams under the key's secret. Example (secret
`s3cret`): query `symbol=TATA_INR&timestamp=1700000000000` and JSON body `{"side":"buy"}` sign
`symbol=TATA_INR&timestamp=1700000000000{"side":"buy"}`; the client appends `&signature=<hex>` to the query.

The check works on the bytes as received (no re-encoding, no reordering), compares in constant time, and
accepts a request when `server_time - recvWindow <= timestamp < server_time + 1000` (Binance's rule).
`ReplayGuard` remembers the signatures of state-changing requests until their window has passed.

Pure: no I/O; the clock is an argument.
"""

from __future__ import annotations

import hashlib
import hmac
from collections import deque
from collections.abc import Mapping
from typing import Protocol

from openbell.core.types import ResultCode
from openbell.edge.errors import ApiError

DEFAULT_RECV_WINDOW_MS = 5000
MAX_RECV_WINDOW_MS = 60_000
FUTURE_ALLOWANCE_MS = 1000
"""How far ahead of the server's clock a timestamp may be."""
SIGNATURE_HEX_LENGTH = 64
_GIL_KEEPING_CHUNK = 2047
"""OpenSSL's hashing in CPython releases the GIL for an update of 2048 bytes or more (and `hmac.digest`, the
one-shot, always does). The check runs on the event loop's thread while the engine's actor threads wait for the
GIL: a release hands it to them and the loop waits to get it back, which under load costs far more than the
hash (~380 us against ~3 us, measured with one busy thread). So the check feeds the HMAC in smaller pieces."""


class Mac(Protocol):
    """A keyed HMAC state (`hmac.HMAC`, or the OpenSSL object inside it)."""

    def copy(self) -> Mac: ...

    def update(self, data: bytes | memoryview, /) -> None: ...

    def hexdigest(self) -> str: ...


def signing_key(secret: str | bytes) -> Mac:
    """`secret` keyed once for `check_signature` (a request copies it: cheaper than keying every time)."""
    mac = hmac.new(secret.encode() if isinstance(secret, str) else secret, digestmod=hashlib.sha256)
    # CPython's hmac.HMAC wraps an OpenSSL HMAC object (`_hmac`) with the same copy/update/hexdigest: using it
    # directly saves the wrapper's Python calls on every request (about 0.5 us); where it is absent, the wrapper
    inner = getattr(mac, "_hmac", None)
    return inner if inner is not None else mac


def _mac(key: Mac, data: bytes) -> Mac:
    """`key` copied and fed `data` without releasing the GIL (see `_GIL_KEEPING_CHUNK`)."""
    mac = key.copy()
    if len(data) < _GIL_KEEPING_CHUNK:
        mac.update(data)
    else:
        view = memoryview(data)
        for start in range(0, len(data), _GIL_KEEPING_CHUNK):
            mac.update(view[start : start + _GIL_KEEPING_CHUNK])
    return mac


def sign(secret: str | bytes, total_params: bytes | str) -> str:
    """The lowercase hex HMAC-SHA256 of `total_params` under `secret`."""
    data = total_params.encode() if isinstance(total_params, str) else total_params
    return _mac(signing_key(secret), data).hexdigest()


class SignedRequest:
    """What one pass over a request's query string (and form body) finds: totalParams without the signature,
    the signature, and the raw `timestamp` and `recvWindow` values."""

    __slots__ = ("recv_window", "signatures", "timestamp", "total")

    def __init__(self, query: bytes, body: bytes, body_is_form: bool) -> None:
        self.signatures: list[bytes] = []
        self.timestamp: bytes | None = None
        self.recv_window: bytes | None = None
        self.total = self._scan(query) + (self._scan(body) if body_is_form else body)

    def _scan(self, params: bytes) -> bytes:
        if b"signature=" not in params and b"timestamp=" not in params and b"recvWindow=" not in params:
            return params
        kept: list[bytes] = []
        for part in params.split(b"&"):
            if part.startswith(b"signature="):
                self.signatures.append(part[10:])
                continue
            if part.startswith(b"timestamp="):
                if self.timestamp is not None:
                    raise ApiError.of(ResultCode.INVALID_REQUEST, "timestamp must be given once")
                self.timestamp = part[10:]
            elif part.startswith(b"recvWindow="):
                if self.recv_window is not None:
                    raise ApiError.of(ResultCode.INVALID_REQUEST, "recvWindow must be given once")
                self.recv_window = part[11:]
            kept.append(part)
        return b"&".join(kept)

    @property
    def signature(self) -> bytes:
        """The one signature; ApiError(INVALID_SIGNATURE) unless exactly one was given."""
        found = self.signatures
        if len(found) != 1:
            message = "signature is required" if not found else "signature must be given once"
            raise ApiError.of(ResultCode.INVALID_SIGNATURE, message)
        return found[0]

    def params(self) -> dict[str, str]:
        out: dict[str, str] = {}
        if self.timestamp is not None:
            out["timestamp"] = self.timestamp.decode("latin-1")
        if self.recv_window is not None:
            out["recvWindow"] = self.recv_window.decode("latin-1")
        return out


def split_signature(query: bytes, body: bytes, body_is_form: bool) -> tuple[bytes, bytes]:
    """(totalParams, signature) of a request. Raises ApiError(INVALID_SIGNATURE) unless exactly one
    `signature` parameter is present, in the query or (for a form body) in the body."""
    signed = SignedRequest(query, body, body_is_form)
    return signed.total, signed.signature


def check_signature(secret: str | bytes | Mac, total_params: bytes, signature: bytes) -> None:
    """Raises ApiError(INVALID_SIGNATURE) unless `signature` is the lowercase hex HMAC of `total_params` under
    `secret` (or a `signing_key` of it, which the server keeps per key)."""
    key = signing_key(secret) if isinstance(secret, (str, bytes)) else secret
    expected = _mac(key, total_params).hexdigest().encode()
    # `expected` is 64 lowercase hex digits, so a malformed signature (uppercase, another length, not hex) never
    # equals it; compare_digest's time depends on the lengths only, and the client knows the one it sent
    if not hmac.compare_digest(expected, signature):
        raise ApiError.of(ResultCode.INVALID_SIGNATURE, "signature does not match the request")


def signed_params(query: bytes, body: bytes, body_is_form: bool) -> dict[str, str]:
    """`timestamp` and `recvWindow` as the request gives them (in the query, or in a form body)."""
    return SignedRequest(query, body, body_is_form).params()


def check_window(params: Mapping[str, str], now_ms: int) -> tuple[int, int]:
    """(timestamp, recvWindow) of a request whose timestamp is within its window at `now_ms`; else ApiError."""
    raw_window = params.get("recvWindow")
    window = DEFAULT_RECV_WINDOW_MS
    if raw_window is not None:
        if not raw_window.isdigit() or len(raw_window) > 6 or not 0 < int(raw_window) <= MAX_RECV_WINDOW_MS:
            raise ApiError.of(ResultCode.INVALID_REQUEST, f"recvWindow must be 1 to {MAX_RECV_WINDOW_MS} (ms)")
        window = int(raw_window)
    raw = params.get("timestamp")
    if raw is None or not raw.isdigit() or len(raw) > 15:
        raise ApiError.of(ResultCode.TIMESTAMP_OUTSIDE_WINDOW, "timestamp (ms since the epoch) is required")
    timestamp = int(raw)
    if timestamp >= now_ms + FUTURE_ALLOWANCE_MS:
        raise ApiError.of(
            ResultCode.TIMESTAMP_OUTSIDE_WINDOW, f"timestamp is {timestamp - now_ms} ms ahead of the server's clock"
        )
    if now_ms - timestamp > window:
        raise ApiError.of(
            ResultCode.TIMESTAMP_OUTSIDE_WINDOW,
            f"timestamp is {now_ms - timestamp} ms old, outside recvWindow {window} ms",
        )
    return timestamp, window


def check_window_of(raw_timestamp: bytes | None, raw_window: bytes | None, now_ms: int) -> tuple[int, int]:
    """`check_window` on the raw bytes of the parameters (the request's hot path: no dict, no decoding)."""
    window = DEFAULT_RECV_WINDOW_MS
    if raw_window is not None:
        if not raw_window.isdigit() or len(raw_window) > 6 or not 0 < int(raw_window) <= MAX_RECV_WINDOW_MS:
            raise ApiError.of(ResultCode.INVALID_REQUEST, f"recvWindow must be 1 to {MAX_RECV_WINDOW_MS} (ms)")
        window = int(raw_window)
    if raw_timestamp is None or not raw_timestamp.isdigit() or len(raw_timestamp) > 15:
        raise ApiError.of(ResultCode.TIMESTAMP_OUTSIDE_WINDOW, "timestamp (ms since the epoch) is required")
    timestamp = int(raw_timestamp)
    if timestamp >= now_ms + FUTURE_ALLOWANCE_MS or now_ms - timestamp > window:
        return check_window({"timestamp": raw_timestamp.decode(), "recvWindow": str(window)}, now_ms)  # says why
    return timestamp, window


class ReplayGuard:
    """The signatures of state-changing requests still inside their window: a second one is a replay.

    A signature is forgotten once its request's window has passed (a replay then fails the window check
    instead). At most `capacity` are held; past that the oldest are forgotten first.
    """

    def __init__(self, capacity: int = 1_000_000) -> None:
        self.capacity = capacity
        self._until: dict[bytes, int] = {}
        # two deques, not one of tuples: bytes and ints are not tracked by the cyclic garbage collector, tuples
        # are, and a million live tuples make every full collection of the process longer
        self._expiries: deque[int] = deque()
        self._signatures: deque[bytes] = deque()

    def __len__(self) -> int:
        return len(self._until)

    def check_and_remember(self, signature: bytes, timestamp: int, window: int, now_ms: int) -> None:
        """Raises ApiError(REPLAYED_REQUEST) if `signature` was seen and its window has not passed."""
        expiries = self._expiries
        if expiries and expiries[0] < now_ms:
            self._forget_expired(now_ms)
        until = self._until.get(signature)
        if until is not None and until >= now_ms:
            raise ApiError.of(ResultCode.REPLAYED_REQUEST, "this signed request was already received (replay)")
        expires = timestamp + window + FUTURE_ALLOWANCE_MS
        self._until[signature] = expires
        expiries.append(expires)
        self._signatures.append(signature)
        while len(self._until) > self.capacity:
            self._expiries.popleft()
            self._until.pop(self._signatures.popleft(), None)

    def _forget_expired(self, now_ms: int) -> None:
        expiries = self._expiries
        signatures = self._signatures
        until = self._until
        while expiries and expiries[0] < now_ms:
            expires = expiries.popleft()
            signature = signatures.popleft()
            if until.get(signature) == expires:
                del until[signature]
