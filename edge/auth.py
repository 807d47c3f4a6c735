"""Who may call what: the operator's token, API keys and their secrets, and what each route needs.

Every route declares what it needs with `requires(Access.X)` (or, under `/api/v1/admin/`, needs ADMIN
by rule): PUBLIC (no credentials), READ or TRADE (a signed request with a key that has that permission,
see `openbell.edge.signing`), ADMIN (`Authorization: Bearer <operator token>`). `Authenticator.check`
runs before the handler and leaves the caller's `Identity` on `request.ctx.identity`;
`openbell.edge.identity.resolve_user` reads it.

Secrets. The engine keeps API keys (name, user, permissions) as durable state, never their secrets: a
key's secret is HMAC-SHA256(server key secret, apiKey), derived by the API from a server secret that lives
outside the data directory (OPENBELL_KEY_SECRET, else a file created mode 0600 in the operator's config
directory, see `openbell.options`). So a copy of the data directory (journal, snapshots) reveals no secret,
and every API worker that has the server secret can check signatures without a secret ever crossing Redis.
Losing the server secret invalidates every key's secret (the keys are then revoked and made again).

Keys reach every API worker through the engine: a worker asks the engine for a key it does not know and
keeps the answer (found or not) for `KEY_CACHE_SECONDS`; a known key is then still used for up to
`KEY_STALE_SECONDS` while the worker asks again in the background, so requests do not wait for the engine
and a key created or revoked on one worker holds on every worker within a second. A worker forgets its
cached copy of a key it revokes at once.

Dev mode (`--dev`): no credentials; the acting user is the request's `user_id`, or the `X-MBX-APIKEY`
header's value when there is none (so an unmodified Binance client can trade as that user).
"""

from __future__ import annotations

import asyncio
import hashlib
import hmac
import secrets
import time
from collections.abc import Callable, Mapping
from enum import Enum
from typing import Any, Protocol, TypeVar

from openbell.core.commands import GetApiKeys
from openbell.core.messages import ApiKeys, ApiKeyView
from openbell.core.types import Permission, ResultCode
from openbell.edge.client import EngineClient, EngineError
from openbell.edge.errors import ApiError
from openbell.edge.ratelimit import Limit, Limiter, RateLimits, retry_after
from openbell.edge.signing import Mac, ReplayGuard, SignedRequest, check_signature, check_window_of, signing_key

API_KEY_HEADER = "x-mbx-apikey"
ADMIN_PREFIX = "/api/v1/admin/"
KEY_CACHE_SECONDS = 0.5
"""How long a worker trusts what it learnt about a key (found or not found) before asking the engine again."""
KEY_STALE_SECONDS = 0.4
"""After that, how long a known key is still used while it is looked up again in the background: a key revoked
elsewhere is refused here within KEY_CACHE_SECONDS + KEY_STALE_SECONDS (under a second)."""
MAX_CACHED_KEYS = 100_000
STATE_CHANGING_METHODS = frozenset(("POST", "PUT", "DELETE", "PATCH"))
FORM_TYPE = "application/x-www-form-urlencoded"


class Access(Enum):
    PUBLIC = "public"
    """Anyone: market data, health, the web page."""
    READ = "read"
    """A signed request with a key that may read (its user's orders, balances)."""
    TRADE = "trade"
    """A signed request with a key that may trade (place, cancel)."""
    ADMIN = "admin"
    """The operator's token."""


Handler = TypeVar("Handler")


def requires(access: Access) -> Callable[[Handler], Handler]:
    """Declare what a route needs (read by `Authenticator.check` before the handler runs)."""

    def mark(handler: Handler) -> Handler:
        setattr(handler, "__openbell_access__", access)  # noqa: B010 - an attribute of any callable
        return handler

    return mark


_ACCESS_BY_ROUTE: dict[int, Access] = {}


def access_of(request: Any) -> Access:
    """What the request's route needs: its declaration, ADMIN for anything under /api/v1/admin/ whatever it
    declares, PUBLIC for an undeclared route elsewhere (the web page, the docs)."""
    if request.path.startswith(ADMIN_PREFIX):
        return Access.ADMIN
    route = request.route
    if route is not None:
        known = _ACCESS_BY_ROUTE.get(id(route))
        if known is not None:
            return known
    handler = getattr(route, "handler", None) if route is not None else None
    declared = getattr(handler, "__openbell_access__", None)
    # Sanic wraps some handlers (websocket routes) in a partial
    if declared is None and handler is not None:
        declared = getattr(getattr(handler, "func", None), "__openbell_access__", None)
    access = declared if isinstance(declared, Access) else Access.PUBLIC
    if route is not None and len(_ACCESS_BY_ROUTE) < 10_000:
        _ACCESS_BY_ROUTE[id(route)] = access
    return access


class Identity:
    """Who a request acts for, once authenticated (one object per key, reused: never changed)."""

    __slots__ = ("admin", "api_key", "dev", "permissions", "user_id")

    def __init__(
        self,
        user_id: str | None,
        api_key: str | None = None,
        permissions: tuple[Permission, ...] = (),
        admin: bool = False,
        dev: bool = False,
    ) -> None:
        self.user_id = user_id
        """The key's user; None for the operator, for a public route, and in dev mode."""
        self.api_key = api_key
        self.permissions = permissions
        self.admin = admin
        self.dev = dev


class SharedReplays(Protocol):
    async def first_time(self, signature: bytes, remember_ms: int) -> bool:
        """Whether no API worker saw `signature` before (it is remembered `remember_ms` from now)."""
        ...


class KnownKey:
    """What a worker keeps about a key it has asked the engine about."""

    __slots__ = ("can_read", "can_trade", "fresh_until", "identity", "order_bucket", "read_bucket", "secret", "view")

    def __init__(self, fresh_until: float, view: ApiKeyView | None, secret: Mac, api_key: str) -> None:
        self.fresh_until = fresh_until
        self.view = view
        self.secret = secret
        """The key's secret, keyed for `check_signature`."""
        self.identity = Identity(view.user_id, view.api_key, view.permissions) if view is not None else None
        self.can_trade = view is not None and Permission.TRADE in view.permissions
        self.can_read = view is not None and Permission.READ in view.permissions
        self.order_bucket = "o:key:" + api_key
        """The names of its rate-limit buckets (order entry, reads)."""
        self.read_bucket = "r:key:" + api_key


DEV = Identity(None, dev=True)
ANONYMOUS = Identity(None)
OPERATOR = Identity(None, admin=True)


def derive_secret(server_secret: bytes, api_key: str) -> str:
    """The secret of `api_key`: 64 lowercase hex characters, a function of the server secret and the key."""
    return hmac.new(server_secret, b"openbell api key\x00" + api_key.encode(), hashlib.sha256).hexdigest()


def new_api_key() -> str:
    return secrets.token_hex(32)


def new_token() -> str:
    return secrets.token_urlsafe(32)


class Authenticator:
    """The checks of one API process (see the module docstring). `dev=True`: no checks at all."""

    def __init__(
        self,
        engine: EngineClient | None,
        *,
        admin_token: str | None = None,
        server_secret: bytes | None = None,
        dev: bool = False,
        clock_ms: Callable[[], int] | None = None,
        limiter: Limiter | None = None,
        shared_replays: SharedReplays | None = None,
        limits: RateLimits | None = None,
    ) -> None:
        self.engine = engine
        self.dev = dev
        self.limiter = limiter
        """Rate limits (see `openbell.edge.ratelimit`); None: none."""
        self.limits = limits or RateLimits()
        self.admin_token = (admin_token or new_token()).encode()
        self.server_secret = server_secret or secrets.token_bytes(32)
        self.replays = ReplayGuard()
        self.shared_replays = shared_replays
        """Where the API workers of a cluster tell each other the signatures they saw (None: one process)."""
        self._keys: dict[str, KnownKey] = {}
        self._secrets: dict[str, str] = {}
        self._refreshing: set[str] = set()
        self._tasks: set[asyncio.Task[None]] = set()
        self._clock_ms = clock_ms or (lambda: time.time_ns() // 1_000_000)

    def secret_of(self, api_key: str) -> str:
        secret = self._secrets.get(api_key)
        if secret is None:
            secret = derive_secret(self.server_secret, api_key)
            if len(self._secrets) >= MAX_CACHED_KEYS:
                self._secrets.clear()
            self._secrets[api_key] = secret
        return secret

    def remember(self, key: ApiKeyView | None, api_key: str) -> None:
        """What this worker knows of `api_key` now (None: it does not exist, or was revoked)."""
        if len(self._keys) >= MAX_CACHED_KEYS:
            self._keys.clear()
        self._keys[api_key] = KnownKey(
            time.monotonic() + KEY_CACHE_SECONDS, key, signing_key(self.secret_of(api_key)), api_key
        )

    async def key(self, api_key: str) -> KnownKey:
        """The key as the engine has it, at most KEY_CACHE_SECONDS old; a known key up to KEY_STALE_SECONDS
        older while it is looked up again in the background (a request never waits for that)."""
        known = self._keys.get(api_key)
        if known is not None:
            now = time.monotonic()
            if known.fresh_until > now:
                return known
            if known.view is not None and known.fresh_until + KEY_STALE_SECONDS > now:
                self._refresh_soon(api_key)
                return known
        await self._lookup(api_key)
        return self._keys[api_key]

    def _refresh_soon(self, api_key: str) -> None:
        if api_key in self._refreshing:
            return
        self._refreshing.add(api_key)
        task = asyncio.get_running_loop().create_task(self._refresh(api_key))
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    async def _refresh(self, api_key: str) -> None:
        try:
            await self._lookup(api_key)
        except ApiError:
            pass  # the engine is away: the next request past the stale time waits for it, or gets 503
        finally:
            self._refreshing.discard(api_key)

    async def _lookup(self, api_key: str) -> None:
        engine = self.engine
        if engine is None:
            self.remember(None, api_key)
            return
        try:
            reply = await engine.request(engine.new(GetApiKeys, api_key=api_key))
        except EngineError:
            raise ApiError.of(
                ResultCode.ENGINE_UNAVAILABLE, "the engine is not available to check the API key"
            ) from None
        keys = reply.expect(ApiKeys).keys if reply.ok else ()
        self.remember(keys[0] if keys else None, api_key)

    async def check(self, request: Any) -> Identity:
        """The caller's identity, or ApiError saying why the request is refused (429 over a rate limit: the
        client address's bucket is checked first, before any work on the request, then the API key's).

        This runs on every request, on the event loop's thread, which is what limits a server's throughput:
        it is written to do little (no coroutine unless the engine or Redis must be asked)."""
        access = access_of(request)
        trade = access is Access.TRADE
        limiter = self.limiter
        if limiter is not None and access is not Access.ADMIN:
            limit = self.limits.orders_per_address if trade else self.limits.reads_per_address
            if limit.rate:
                bucket = ("o:ip:" if trade else "r:ip:") + client_address(request)
                wait = limiter.try_admit(bucket, limit)
                if wait is None:
                    wait = await limiter.admit(((bucket, limit),))
                if wait:
                    raise rate_limited(trade, "address", limit, wait)
        if self.dev:
            return DEV
        if access is Access.PUBLIC:
            return ANONYMOUS
        if access is Access.ADMIN:
            return self._check_admin(request)
        api_key, signed, signature = self._signed_part(request)
        known = self._keys.get(api_key)
        if known is None or known.fresh_until <= time.monotonic():
            known = await self.key(api_key)
        identity = known.identity
        if identity is None:
            raise ApiError.of(ResultCode.UNKNOWN_API_KEY, "unknown or revoked API key")
        check_signature(known.secret, signed.total, signature)
        now = self._clock_ms()
        timestamp, window = check_window_of(signed.timestamp, signed.recv_window, now)
        if request.method in STATE_CHANGING_METHODS:
            self.replays.check_and_remember(signature, timestamp, window, now)
            shared = self.shared_replays
            if shared is not None and not await shared.first_time(signature, timestamp + window + 1000 - now):
                raise ApiError.of(ResultCode.REPLAYED_REQUEST, "this signed request was already received (replay)")
        if trade:
            if not known.can_trade:
                raise ApiError.of(ResultCode.MISSING_PERMISSION, "this API key lacks the trade permission")
        elif not known.can_read:
            raise ApiError.of(ResultCode.MISSING_PERMISSION, "this API key lacks the read permission")
        if limiter is not None:
            limit = self.limits.orders_per_key if trade else self.limits.reads_per_key
            if limit.rate:
                bucket = known.order_bucket if trade else known.read_bucket
                wait = limiter.try_admit(bucket, limit)
                if wait is None:
                    wait = await limiter.admit(((bucket, limit),))
                if wait:
                    raise rate_limited(trade, "API key", limit, wait)
        return identity

    async def admit_read(self, address: str) -> None:
        """Charge one read to the client address's bucket, as a REST read is charged (for requests that come
        another way: the WebSocket API). ApiError (429) over the limit."""
        limiter, limit = self.limiter, self.limits.reads_per_address
        if limiter is None or not limit.rate:
            return
        bucket = "r:ip:" + address
        wait = limiter.try_admit(bucket, limit)
        if wait is None:
            wait = await limiter.admit(((bucket, limit),))
        if wait:
            raise rate_limited(False, "address", limit, wait)

    async def check_params(self, params: Mapping[str, Any]) -> Identity:
        """The identity of a request signed by the rule of Binance's WebSocket API (the same HMAC as REST, over
        another text): `params` hold `apiKey`, `timestamp` (optional `recvWindow`) and `signature`, and the
        signature is of every other parameter, sorted by name, as `name=value` joined by `&`. The key needs the
        read permission. Raises ApiError as `check` does (unknown key, bad signature, stale timestamp)."""
        api_key = params.get("apiKey")
        if not isinstance(api_key, str) or not api_key:
            raise ApiError.of(ResultCode.MISSING_API_KEY, "the parameter apiKey is required")
        if len(api_key) > 128 or not api_key.isascii():
            raise ApiError.of(ResultCode.UNKNOWN_API_KEY, "unknown or revoked API key")
        if len(params) > 16:
            raise ApiError.of(ResultCode.INVALID_REQUEST, "too many parameters")
        signature = params.get("signature")
        if not isinstance(signature, str) or not signature:
            raise ApiError.of(ResultCode.INVALID_SIGNATURE, "the parameter signature is required")
        texts = {}
        for name, value in params.items():
            if name == "signature":
                continue
            text = str(value)
            if isinstance(value, bool) or not isinstance(value, (str, int)) or len(text) > 256:
                raise ApiError.of(ResultCode.INVALID_REQUEST, f"parameter {str(name)[:32]!r} is not a string or integer")
            if not name or any(c in part for part in (name, text) for c in "&="):
                # the signed text joins name=value pairs with &: these would make two requests sign alike
                raise ApiError.of(ResultCode.INVALID_REQUEST, f"parameter {str(name)[:32]!r} holds '&' or '='")
            texts[name] = text
        known = await self.key(api_key)
        if known.identity is None:
            raise ApiError.of(ResultCode.UNKNOWN_API_KEY, "unknown or revoked API key")
        payload = "&".join(f"{name}={texts[name]}" for name in sorted(texts))
        check_signature(known.secret, payload.encode(), signature.encode())
        window = texts.get("recvWindow")
        check_window_of(
            texts["timestamp"].encode() if "timestamp" in texts else None,
            window.encode() if window is not None else None,
            self._clock_ms(),
        )
        if not known.can_read:
            raise ApiError.of(ResultCode.MISSING_PERMISSION, "this API key lacks the read permission")
        return known.identity

    def _check_admin(self, request: Any) -> Identity:
        header = request.headers.get("authorization")
        if header is None:
            if request.headers.get(API_KEY_HEADER) is not None:
                raise ApiError.of(ResultCode.ADMIN_ONLY, "this route is the operator's: an API key cannot call it")
            raise ApiError.of(ResultCode.MISSING_API_KEY, "the operator's token is required (Authorization: Bearer)")
        scheme, _, token = header.partition(" ")
        if scheme.lower() != "bearer" or not hmac.compare_digest(token.strip().encode(), self.admin_token):
            raise ApiError.of(ResultCode.INVALID_ADMIN_TOKEN, "the operator's token is not valid")
        return OPERATOR

    @staticmethod
    def _signed_part(request: Any) -> tuple[str, SignedRequest, bytes]:
        """The request's API key, what its query (and form body) carry, and its one signature; else
        ApiError (no key, a malformed one, no or two signatures, a parameter given twice)."""
        api_key = request.headers.get(API_KEY_HEADER)
        if not api_key:
            raise ApiError.of(ResultCode.MISSING_API_KEY, "an API key is required (X-MBX-APIKEY header)")
        if len(api_key) > 128 or not api_key.isascii():
            raise ApiError.of(ResultCode.UNKNOWN_API_KEY, "unknown or revoked API key")
        query = request.raw_url.partition(b"?")[2]  # the bytes as received
        body: bytes = request.body or b""
        body_is_form = bool(body) and request.content_type.split(";", 1)[0].strip().lower() == FORM_TYPE
        signed = SignedRequest(query, body, body_is_form)
        return api_key, signed, signed.signature


def rate_limited(trade: bool, per: str, limit: Limit, wait: float) -> ApiError:
    what = "order entry" if trade else "reads"
    error = ApiError.of(
        ResultCode.RATE_LIMITED, f"over the {what} rate limit of this {per} ({limit.rate:g}/s): retry later"
    )
    error.headers = {"Retry-After": retry_after(wait)}
    return error


def client_address(request: Any) -> str:
    """The client's address, as per-address limits count it: the connection's peer; or, on a server configured
    to trust the proxies in front of it (`--proxies`, `--real-ip-header`), the address they report."""
    if getattr(request.app.ctx, "behind_proxies", False):
        return str(request.client_ip)
    return str(request.ip)


def install(app: Any, authenticator: Authenticator) -> None:
    """Check every request of `app` with `authenticator` before its handler runs (Sanic request middleware;
    the request's body has been read by then)."""
    app.ctx.auth = authenticator

    async def authenticate(request: Any) -> None:
        request.ctx.identity = await authenticator.check(request)

    app.register_middleware(authenticate, "request")
