"""The simulator's side of the wire: one HTTP client, a rate limiter, the request log, and `Access`, the one
place that knows how a request says who sends it.

`GET /api/v1/config` says which: in `--dev` mode a request names its user (`user_id`), and so does its WebSocket
connection (`/ws?user_id=`), and the onramp is open; with API keys on, `Access` makes each of its users a key
through the operator's route (`POST /api/v1/admin/keys`, `Authorization: Bearer <--admin-token>`), signs that
user's requests with it (`openbell.client`), makes it a listen key (`POST /api/v1/listenKey`) that opens its
WebSocket connection (`/ws?listenKey=`), and sends the onramp with the operator's token; nothing outside this
module changes. `ListenKeys` keeps those listen keys alive while the run lasts (`PUT` every `--listen-key-refresh`
seconds, well inside the 60 minutes a key lasts) and ends them at its end (`DELETE`).

Every request is counted by `Stats` (latency as the client sees it, status, result code) and, when asked,
written to the request log in a canonical form: the run's own id replaced by `RUN`, and an order id the
exchange assigned replaced by the clientOrderId the simulator gave that order, so two runs compare line by line.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import urlencode, urljoin, urlsplit, urlunsplit

import httpx
import ujson

from openbell.client import OperatorAuth, SignedAuth, Signer
from openbell.simulator.stats import Stats

API = "/api/v1"


class SimulatorError(Exception):
    """Why the simulator cannot start or go on, in one line."""


def signing_auth(api_key: str, secret: str) -> httpx.Auth:
    """The httpx Auth that signs a user's requests with its API key (Binance's rule, `openbell.client`)."""
    return SignedAuth(Signer(api_key, secret))


@dataclass(slots=True)
class User:
    """One of the simulator's users, and how its requests say who it is."""

    user_id: str
    auth: httpx.Auth | None = None
    """Signs its requests when keys are on; None: the request names the user (`user_id`)."""
    listen_key: str | None = None
    """When keys are on: what makes a WebSocket connection this user's."""

    def identify(self, fields: dict[str, Any]) -> dict[str, Any]:
        """`fields` as this user sends them (body or query)."""
        return fields if self.auth is not None else {**fields, "user_id": self.user_id}

    def ws_query(self) -> str:
        """The query string of this user's WebSocket connection (what lets it read `orders@<user>`)."""
        if self.auth is None:
            return urlencode({"user_id": self.user_id})
        return urlencode({"listenKey": self.listen_key}) if self.listen_key else ""


class RateLimiter:
    """At most `rate` acquisitions a second, spaced evenly; a burst waits its turn (the wall clock decides only
    when a request goes, never what it is)."""

    def __init__(self, rate: float) -> None:
        self._interval = 1.0 / rate if rate > 0 else 0.0
        self._next = 0.0

    async def acquire(self) -> None:
        if not self._interval:
            return
        now = time.monotonic()
        slot = max(now, self._next)
        self._next = slot + self._interval
        if slot > now:
            await asyncio.sleep(slot - now)


@dataclass(slots=True)
class Reply:
    status: int
    body: Any
    """The decoded JSON (None when the request got no answer)."""
    code: int | None = None
    """The result code of an error answer."""

    @property
    def ok(self) -> bool:
        return 200 <= self.status < 300


@dataclass
class Session:
    """The HTTP client, rate limiter, statistics and request log that every request of a run goes through."""

    url: str
    run_id: str
    stats: Stats
    access: Access
    rate: float = 0.0
    timeout: float = 10.0
    log: dict[str, list[str]] = field(default_factory=dict)
    """Canonical request lines per lane (a market, or "setup"), kept when `recording`."""
    recording: bool = False
    _client: httpx.AsyncClient | None = None
    _limiter: RateLimiter | None = None

    async def __aenter__(self) -> Session:
        self._client = httpx.AsyncClient(
            base_url=self.url,
            timeout=self.timeout,
            limits=httpx.Limits(max_connections=64, max_keepalive_connections=64),
        )
        self._limiter = RateLimiter(self.rate)
        return self

    async def __aexit__(self, *exc: object) -> None:
        if self._client is not None:
            await self._client.aclose()

    @property
    def ws_url(self) -> str:
        return self.access.ws_url or default_ws_url(self.url)

    async def reachable(self) -> None:
        """Raise SimulatorError unless `GET /health` answers 200."""
        assert self._client is not None
        try:
            response = await self._client.get(f"{API}/health", timeout=5.0)
        except httpx.HTTPError as error:
            raise SimulatorError(f"cannot reach the exchange at {self.url}: {describe(error)}") from None
        if response.status_code != 200:
            raise SimulatorError(f"the exchange at {self.url} answered /health with HTTP {response.status_code}")

    async def discover(self) -> None:
        """Read `GET /config` (what the web page reads): where the WebSocket streams are, unless `--ws-url` said,
        and whether API keys are on, which needs the operator's token."""
        reply = await self.send("setup", "GET", "/config")
        if not reply.ok or not isinstance(reply.body, dict):
            return  # an exchange without the web page: /ws on the REST address
        ws_url, auth = reply.body.get("wsUrl"), reply.body.get("auth")
        if self.access.ws_url is None and isinstance(ws_url, str):
            self.access.ws_url = urljoin(default_ws_url(self.url), ws_url)
        self.access.keys = auth == "keys"
        if self.access.keys and not self.access.admin_token:
            raise SimulatorError(
                f"the exchange at {self.url} has API keys on: pass --admin-token (or OPENBELL_ADMIN_TOKEN), the "
                "operator's token, to fund the simulator's users and make their keys"
            )

    async def send(
        self,
        lane: str,
        method: str,
        path: str,
        *,
        user: User | None = None,
        body: dict[str, Any] | None = None,
        params: dict[str, Any] | None = None,
        operator: bool = False,
        limited: bool = False,
        logged_as: dict[str, Any] | None = None,
    ) -> Reply:
        """One request, counted in `stats` and logged under `lane`. `user`: who sends it; `operator`: an operator's
        route (with the admin token, if any; the body names the user it is for); `limited`: an order or a cancel,
        paced by the rate limiter; `logged_as`: what the log shows instead of the fields (names, not the ids the
        exchange assigned). An answer that never came is a Reply with status 0; a refused connection ends the
        run (SimulatorError)."""
        assert self._client is not None and self._limiter is not None
        auth: httpx.Auth | None = None
        if operator:
            auth = self.access.operator  # None while the onramp is open: the body names the user
        elif user is not None:
            auth = user.auth
            if body is not None:
                body = user.identify(body)
            else:
                params = user.identify(params or {})
        if self.recording:
            shown = logged_as if logged_as is not None else (body if body is not None else params)
            line = f"{method} {path} {ujson.dumps(shown, sort_keys=True)}".replace(self.run_id, "RUN")
            self.log.setdefault(lane, []).append(line)
        if limited:
            await self._limiter.acquire()
        kind = f"{method} {path}"
        started = time.perf_counter()
        try:
            response = await self._client.request(
                method,
                API + path,
                content=ujson.dumps(body) if body is not None else None,
                params=params,
                headers={"Content-Type": "application/json"} if body is not None else None,
                auth=auth if auth is not None else httpx.USE_CLIENT_DEFAULT,
            )
        except httpx.TimeoutException:
            self.stats.record(kind, time.perf_counter() - started, 0, "timeout")
            return Reply(0, None)
        except httpx.HTTPError as error:
            self.stats.record(kind, time.perf_counter() - started, 0, "connection")
            if isinstance(error, httpx.ConnectError):
                raise SimulatorError(f"lost the exchange at {self.url}: {describe(error)}") from None
            return Reply(0, None)
        elapsed = time.perf_counter() - started
        try:
            decoded = response.json()
        except ValueError:
            decoded = None
        code = decoded.get("code") if isinstance(decoded, dict) and response.status_code >= 400 else None
        self.stats.record(kind, elapsed, response.status_code, code)
        return Reply(response.status_code, decoded, code if isinstance(code, int) else None)


LISTEN_KEY_REFRESH = 30 * 60.0
"""Seconds between two extensions of a listen key (the exchange keeps one 60 minutes after its last)."""


@dataclass
class ListenKeys:
    """The listen keys of the run's users (API keys on): made as each user is, extended every `refresh` seconds
    while the run lasts (`keep_alive`), ended when it is over (`end`). Extending and ending go in the lane "listen
    keys", which the request log does not write (how many extensions a run makes depends on how long it lasts)."""

    refresh: float = LISTEN_KEY_REFRESH
    users: list[User] = field(default_factory=list)
    """Users with a live listen key, in the order they got it."""
    made: int = 0
    extended: int = 0
    ended: int = 0
    refused: int = 0
    """Extensions or ends that did not answer 2xx."""
    last_refusal: str = ""

    async def make(self, session: Session, user: User) -> None:
        """Give `user` (signed) a listen key of its own."""
        reply = await session.send("setup", "POST", "/listenKey", user=user)
        key = reply.body.get("listenKey") if reply.ok and isinstance(reply.body, dict) else None
        if not isinstance(key, str) or not key:
            raise SimulatorError(f"could not make a listen key for {user.user_id}: HTTP {reply.status} {reply.body}")
        user.listen_key = key
        self.users.append(user)
        self.made += 1

    async def keep_alive(self, session: Session) -> None:
        """Extend every key each `refresh` seconds, until cancelled."""
        while True:
            await asyncio.sleep(self.refresh)
            for user in list(self.users):
                if await self._send(session, "PUT", user):
                    self.extended += 1

    async def end(self, session: Session) -> None:
        """End every key (a key that cannot be ended expires by itself within the hour)."""
        users, self.users = self.users, []
        for user in users:
            try:
                if await self._send(session, "DELETE", user):
                    self.ended += 1
            except SimulatorError:  # the exchange is gone
                self.refused += 1
                self.last_refusal = f"{user.user_id}: no answer"

    async def _send(self, session: Session, method: str, user: User) -> bool:
        reply = await session.send(
            "listen keys", method, "/listenKey", user=user, params={"listenKey": user.listen_key}, logged_as={}
        )
        if not reply.ok:
            self.refused += 1
            self.last_refusal = f"{method} for {user.user_id}: HTTP {reply.status} {reply.body}"
        return reply.ok

    def summary(self) -> str:
        line = f"listen keys: {self.made} made, {self.extended} extensions, {self.ended} ended"
        if self.refused:
            line += f", {self.refused} refused (last: {self.last_refusal})"
        return line


@dataclass
class Access:
    """How the simulator's requests are authenticated: by naming the user (`--dev`), or, with `keys` on, with API
    keys made with the operator's `admin_token`."""

    admin_token: str | None = None
    ws_url: str | None = None
    """The WebSocket endpoint, when it is not `/ws` on the REST address (the cluster's WebSocket port)."""
    keys: bool = False
    """API keys are on (what `/api/v1/config` said)."""
    make_auth: Callable[[str, str], httpx.Auth] = signing_auth
    listen_keys: ListenKeys = field(default_factory=ListenKeys)

    @property
    def operator(self) -> httpx.Auth | None:
        return OperatorAuth(self.admin_token) if self.keys and self.admin_token else None

    async def open_user(self, session: Session, user_id: str) -> User:
        """A user of the run; when keys are on, with its API key (made through the operator's route) and a listen
        key for its WebSocket connection (made with that API key)."""
        if not self.keys:
            return User(user_id)
        reply = await session.send(
            "setup",
            "POST",
            "/admin/keys",
            body={"user_id": user_id, "permissions": ["trade", "read"]},
            operator=True,
        )
        if not reply.ok or not isinstance(reply.body, dict):
            raise SimulatorError(f"could not create an API key for {user_id}: HTTP {reply.status} {reply.body}")
        user = User(user_id, self.make_auth(str(reply.body["apiKey"]), str(reply.body["secret"])))
        await self.listen_keys.make(session, user)
        return user


def default_ws_url(url: str) -> str:
    """`/ws` on the REST address: where the embedded exchange serves its streams."""
    parts = urlsplit(url)
    scheme = "wss" if parts.scheme == "https" else "ws"
    return urlunsplit((scheme, parts.netloc, "/ws", "", ""))


def describe(error: BaseException) -> str:
    text = str(error) or type(error).__name__
    return text.splitlines()[0][:200]
