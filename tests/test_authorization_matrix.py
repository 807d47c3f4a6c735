"""Every route the app serves, by what it needs, refuses every caller who does not have it, each with its own
result code: parametrised over the app's own route table, so a route added later is covered by rule."""

from __future__ import annotations

import re
import time
import uuid
from collections.abc import Iterator
from typing import Any

import httpx
import pytest
from conftest import ADMIN_TOKEN, RunningServer, create_key, start_server

from openbell.actors.engine import Engine
from openbell.client import Signer, sign_request
from openbell.core.types import ResultCode
from openbell.edge.auth import ADMIN_PREFIX, Access
from openbell.http.app import create_app


def routes_by_access() -> dict[Access, list[tuple[str, str]]]:
    app = create_app(Engine(), name="authorization-routes", websocket=False)
    out: dict[Access, list[tuple[str, str]]] = {access: [] for access in Access}
    for route in app.router.routes:
        path = "/" + re.sub(r"<([a-z_]+)(:[a-z]+)?>", "x", route.path)
        if not path.startswith("/api/v1/"):
            continue
        declared = getattr(route.handler, "__openbell_access__", Access.PUBLIC)
        access = Access.ADMIN if path.startswith(ADMIN_PREFIX) else declared
        out[access].extend((method, path) for method in sorted(route.methods))
    return out


ROUTES = routes_by_access()
SIGNED = [(m, p, a) for a in (Access.READ, Access.TRADE) for m, p in ROUTES[a]]
ADMIN = ROUTES[Access.ADMIN]


def ids(routes: list[Any]) -> list[str]:
    return [f"{route[0]} {route[1]}" for route in routes]


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[RunningServer]:
    running = start_server(tmp_path_factory.mktemp("matrix"), "--in-memory")
    yield running
    assert running.stop() == 0, running.log()


@pytest.fixture(scope="module")
def keys(server: RunningServer) -> dict[str, dict[str, Any]]:
    user = f"matrix-{uuid.uuid4().hex[:8]}"
    revoked = create_key(server.api, user)
    assert httpx.delete(f"{server.api}/admin/keys/{revoked['apiKey']}", auth=server.admin).status_code == 200
    return {
        "full": create_key(server.api, user),
        "read-only": create_key(server.api, user, ("read",)),
        "revoked": revoked,
    }


def send(server: RunningServer, method: str, path: str, signer: Signer | None = None, **options: Any) -> httpx.Response:
    body = {"market": "TATA_INR"} if method in ("POST", "PUT", "DELETE") else None
    request = httpx.Request(method, f"{server.base_url}{path}", json=body, headers=options.pop("headers", {}))
    if signer is not None:
        timestamp = options.pop("timestamp", None)
        if timestamp is None:
            sign_request(request, signer)
        else:
            query = signer.signed_query(request.url.query, request.content, timestamp=timestamp)
            request.url = request.url.copy_with(query=query)
            request.headers["X-MBX-APIKEY"] = signer.api_key
    with httpx.Client(timeout=10) as client:
        return client.send(request)


def assert_refused(response: httpx.Response, status: int, code: ResultCode) -> None:
    assert (response.status_code, response.json().get("code")) == (status, int(code)), response.text


def test_the_table_covers_every_kind_of_route() -> None:
    assert ROUTES[Access.READ] and ROUTES[Access.TRADE] and ROUTES[Access.ADMIN] and ROUTES[Access.PUBLIC]


@pytest.mark.parametrize(("method", "path", "access"), SIGNED, ids=ids(SIGNED))
def test_a_signed_route_refuses_every_bad_credential_with_its_own_code(
    server: RunningServer, keys: dict[str, dict[str, Any]], method: str, path: str, access: Access
) -> None:
    full = Signer(keys["full"]["apiKey"], keys["full"]["secret"])
    assert_refused(send(server, method, path), 401, ResultCode.MISSING_API_KEY)
    assert_refused(send(server, method, path, Signer("f" * 64, "x")), 401, ResultCode.UNKNOWN_API_KEY)
    revoked = Signer(keys["revoked"]["apiKey"], keys["revoked"]["secret"])
    assert_refused(send(server, method, path, revoked), 401, ResultCode.UNKNOWN_API_KEY)
    wrong_secret = Signer(keys["full"]["apiKey"], "not-the-secret")
    assert_refused(send(server, method, path, wrong_secret), 401, ResultCode.INVALID_SIGNATURE)
    now = time.time_ns() // 1_000_000
    stale = send(server, method, path, full, timestamp=now - 60_000)
    assert_refused(stale, 400, ResultCode.TIMESTAMP_OUTSIDE_WINDOW)
    future = send(server, method, path, full, timestamp=now + 60_000)
    assert_refused(future, 400, ResultCode.TIMESTAMP_OUTSIDE_WINDOW)
    operator = send(server, method, path, headers={"Authorization": f"Bearer {ADMIN_TOKEN}"})
    assert_refused(operator, 401, ResultCode.MISSING_API_KEY)  # the operator's token is not a user's key
    if access is Access.TRADE:
        read_only = Signer(keys["read-only"]["apiKey"], keys["read-only"]["secret"])
        assert_refused(send(server, method, path, read_only), 403, ResultCode.MISSING_PERMISSION)
    accepted = send(server, method, path, full)
    answer = accepted.json()
    code = answer.get("code") if isinstance(answer, dict) else None
    assert accepted.status_code < 500 and code not in {400, 401, 402, 403, 404, 406}, accepted.text


@pytest.mark.parametrize(("method", "path", "access"), SIGNED, ids=ids(SIGNED))
def test_a_signed_route_refuses_another_users_id(
    server: RunningServer, keys: dict[str, dict[str, Any]], method: str, path: str, access: Access
) -> None:
    full = Signer(keys["full"]["apiKey"], keys["full"]["secret"])
    body = {"market": "TATA_INR", "user_id": "somebody-else"} if method in ("POST", "PUT", "DELETE") else None
    request = httpx.Request(method, f"{server.base_url}{path}", params={"user_id": "somebody-else"}, json=body)
    sign_request(request, full)
    with httpx.Client(timeout=10) as client:
        assert_refused(client.send(request), 403, ResultCode.NOT_YOUR_USER)


@pytest.mark.parametrize(("method", "path"), ADMIN, ids=ids(ADMIN))
def test_an_operator_route_refuses_users_and_wrong_tokens(
    server: RunningServer, keys: dict[str, dict[str, Any]], method: str, path: str
) -> None:
    full = Signer(keys["full"]["apiKey"], keys["full"]["secret"])
    assert_refused(send(server, method, path, full), 403, ResultCode.ADMIN_ONLY)
    assert_refused(send(server, method, path), 401, ResultCode.MISSING_API_KEY)
    wrong = send(server, method, path, headers={"Authorization": "Bearer not-the-token"})
    assert_refused(wrong, 401, ResultCode.INVALID_ADMIN_TOKEN)


def test_a_future_route_under_the_admin_prefix_is_the_operators_by_rule(server: RunningServer) -> None:
    from sanic import Sanic
    from sanic.response import json

    from openbell.edge.auth import access_of

    app = Sanic(f"prefix-rule-{uuid.uuid4().hex[:6]}")

    @app.post("/api/v1/admin/markets/<symbol>/halt")
    async def halt(request: Any, symbol: str) -> Any:  # declares nothing
        return json({})

    class FakeRequest:
        path = "/api/v1/admin/markets/TATA_INR/halt"
        route = app.router.routes[0]

    assert access_of(FakeRequest()) is Access.ADMIN
