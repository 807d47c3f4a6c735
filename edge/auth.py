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
keeps the answer (found or not) for at most `KEY_CACHE_SECONDS`, so a key created or revoked on one
worker holds on every worker within that time. A worker forgets its cached copy of a key it revokes at
once.

Dev mode (`--dev`): no credentials; the acting user is the request's `user_id`, or the `X-MBX-APIKEY`
header's value when there is none (so an unmodified Binance client can trade as that user).
"""

from __future__ import annotations

import hashlib
import hmac
import secrets
import time
from collections.abc import Callable
from dataclasses import dataclass
from enum import Enum
from typing import Any, TypeVar

from openbell.core.commands import GetApiKeys
from openbell.core.messages import ApiKeys, ApiKeyView
from openbell.core.types import Permission, ResultCode
from openbell.edge.client import EngineClient, EngineError
from openbell.edge.errors import ApiError
from openbell.edge.ratelimit import ORDERS, READS, Limit, Limiter, RateLimits, retry_after
from openbell.edge.signing import ReplayGuard, check_signature, check_window, signed_params, split_signature

API_KEY_HEADER = "x-mbx-apikey"
ADMIN_PREFIX = "/api/v1/admin/"
KEY_CACHE_SECONDS = 0.5
"""How long a worker trusts what it learnt about a key (found or not found) before asking the engine again."""
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


def access_of(request: Any) -> Access:
    """What the request's route needs: its declaration, ADMIN for anything under /api/v1/admin/ whatever it
    declares, PUBLIC for an undeclared route elsewhere (the web page, the docs)."""
    if request.path.startswith(ADMIN_PREFIX):
        return Access.ADMIN
    route = request.route
    handler = getattr(route, "handler", None) if route is not None else None
    declared = getattr(handler, "__openbell_access__", None)
    # Sanic wraps some handlers (websocket routes) in a partial
    if declared is None and handler is not None:
        declared = getattr(getattr(handler, "func", None), "__openbell_access__", None)
    return declared if isinstance(declared, Access) else Access.PUBLIC


@dataclass(frozen=True)
class Identity:
    """Who a request acts for, once authenticated."""

    user_id: str | None
    """The key's user; None for the operator, for a public route, and in dev mode."""
    api_key: str | None = None
    permissions: tuple[Permission, ...] = ()
    admin: bool = False
    dev: bool = False


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
        self._keys: dict[str, tuple[float, ApiKeyView | None]] = {}
        self._secrets: dict[str, str] = {}
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
        self._keys[api_key] = (time.monotonic() + KEY_CACHE_SECONDS, key)

    async def key(self, api_key: str) -> ApiKeyView | None:
        cached = self._keys.get(api_key)
        if cached is not None and cached[0] > time.monotonic():
            return cached[1]
        engine = self.engine
        if engine is None:
            return None
        try:
            reply = await engine.request(engine.new(GetApiKeys, api_key=api_key))
        except EngineError:
            raise ApiError.of(
                ResultCode.ENGINE_UNAVAILABLE, "the engine is not available to check the API key"
            ) from None
        keys = reply.expect(ApiKeys).keys if reply.ok else ()
        found = keys[0] if keys else None
        self.remember(found, api_key)
        return found

    async def check(self, request: Any) -> Identity:
        """The caller's identity, or ApiError saying why the request is refused (429 over a rate limit: the
        client address's bucket is checked first, before any work on the request, then the API key's)."""
        access = access_of(request)
        kind = ORDERS if access is Access.TRADE else READS
        if self.limiter is not None and access is not Access.ADMIN:
            await self._admit(f"{kind}:ip:{request.ip}", self.limits.for_address(kind))
        if self.dev:
            return DEV
        if access is Access.PUBLIC:
            return ANONYMOUS
        if access is Access.ADMIN:
            return self._check_admin(request)
        identity = await self._check_signed(request, access)
        if self.limiter is not None:
            await self._admit(f"{kind}:key:{identity.api_key}", self.limits.for_key(kind))
        return identity

    async def _admit(self, bucket: str, limit: Limit) -> None:
        if not limit.rate or self.limiter is None:
            return
        wait = await self.limiter.admit(((bucket, limit),))
        if wait:
            what = "order entry" if bucket.startswith(ORDERS) else "reads"
            per = "API key" if ":key:" in bucket else "address"
            error = ApiError.of(
                ResultCode.RATE_LIMITED, f"over the {what} rate limit of this {per} ({limit.rate:g}/s): retry later"
            )
            error.headers = {"Retry-After": retry_after(wait)}
            raise error

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

    async def _check_signed(self, request: Any, access: Access) -> Identity:
        api_key = request.headers.get(API_KEY_HEADER)
        if not api_key:
            raise ApiError.of(ResultCode.MISSING_API_KEY, "an API key is required (X-MBX-APIKEY header)")
        if len(api_key) > 128 or not api_key.isascii():
            raise ApiError.of(ResultCode.UNKNOWN_API_KEY, "unknown or revoked API key")
        query = request.query_string.encode("latin-1")
        body: bytes = request.body or b""
        body_is_form = request.content_type.split(";", 1)[0].strip().lower() == FORM_TYPE
        total, signature = split_signature(query, body, body_is_form)
        key = await self.key(api_key)
        if key is None:
            raise ApiError.of(ResultCode.UNKNOWN_API_KEY, "unknown or revoked API key")
        check_signature(self.secret_of(api_key), total, signature)
        now = self._clock_ms()
        timestamp, window = check_window(signed_params(query, body, body_is_form), now)
        if request.method in STATE_CHANGING_METHODS:
            self.replays.check_and_remember(signature, timestamp, window, now)
        needed = Permission.TRADE if access is Access.TRADE else Permission.READ
        if needed not in key.permissions:
            raise ApiError.of(ResultCode.MISSING_PERMISSION, f"this API key lacks the {needed.value} permission")
        return Identity(key.user_id, api_key, key.permissions)


def install(app: Any, authenticator: Authenticator) -> None:
    """Check every request of `app` with `authenticator` before its handler runs (Sanic request middleware;
    the request's body has been read by then)."""
    app.ctx.auth = authenticator

    async def authenticate(request: Any) -> None:
        request.ctx.identity = await authenticator.check(request)

    app.register_middleware(authenticate, "request")
