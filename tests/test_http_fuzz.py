"""No generated request, valid or not, makes the API answer with a server error (5xx).

Schemathesis reads the live server's own OpenAPI document and, for every route the app serves under
/api/v1, generates requests that conform to the document and requests that violate it; each answer
is checked with `not_a_server_error`. The server is the real `python run.py` on a free 127.0.0.1
port, funded first so that generated orders reach the matching engine instead of stopping at the
funds check.

Authentication is on: generated requests are signed as the user they name (or `user`), operator routes get
the operator's token; and the same generated requests sent without credentials are never accepted on a
route that needs them.

(`schemathesis.pytest.from_fixture` would be the shorter way to write this, but with pytest 9 it
fails on the removed `Node._nodeid`; Hypothesis drives the operations directly instead.)
"""

from __future__ import annotations

import json
import re
import urllib.parse
from collections import Counter
from collections.abc import Iterator
from decimal import Decimal
from typing import Any

import httpx
import pytest
import requests
import schemathesis
from conftest import ADMIN_POSTS, ADMIN_TOKEN, RunningServer, start_server
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from schemathesis.checks import not_a_server_error
from schemathesis.generation import GenerationMode
from schemathesis.specs.openapi.schemas import OpenApiSchema

from openbell.actors.engine import Engine
from openbell.core.types import ResultCode
from openbell.edge.auth import ADMIN_PREFIX, Access
from openbell.edge.identity import USER_ID
from openbell.http.app import create_app

MAX_EXAMPLES = 30
FUNDED_USERS = ("0", "1", "2", "a", "A", "user")


def served_routes() -> dict[tuple[str, str], Access]:
    """(METHOD, /api/v1/path) of every route the app registers, and what it needs (the engine is never started)."""
    app = create_app(Engine(), name="fuzz-routes", websocket=False)
    return {
        (method, "/" + re.sub(r"<([A-Za-z_]+)(:[a-z]+)?>", r"{\1}", route.path)): Access.ADMIN
        if ("/" + route.path).startswith(ADMIN_PREFIX)
        else getattr(route.handler, "__openbell_access__", Access.PUBLIC)
        for route in app.router.routes
        if route.path.startswith("api/v1/")
        for method in route.methods
    }


NOT_AUTHENTICATED = {
    int(code)
    for code in (
        ResultCode.MISSING_API_KEY,
        ResultCode.UNKNOWN_API_KEY,
        ResultCode.INVALID_SIGNATURE,
        ResultCode.INVALID_ADMIN_TOKEN,
        ResultCode.TIMESTAMP_OUTSIDE_WINDOW,
    )
}
ACCESS = served_routes()
ROUTES = sorted(ACCESS)
PROTECTED = sorted(route for route, access in ACCESS.items() if access is not Access.PUBLIC)


class SignAsNamedUser(requests.auth.AuthBase):
    """What `conftest.AsNamedUser` does, for the requests schemathesis sends: the operator's token on operator
    routes, else signed as the user the request names (`user` if it names none, or none that is valid)."""

    def __init__(self, server: RunningServer) -> None:
        self.server = server

    def __call__(self, request: requests.PreparedRequest) -> requests.PreparedRequest:
        url = urllib.parse.urlsplit(request.url or "")
        if url.path.startswith(ADMIN_PREFIX) or (request.method == "POST" and url.path in ADMIN_POSTS):
            request.headers["Authorization"] = f"Bearer {ADMIN_TOKEN}"
            return request
        body = request.body.encode() if isinstance(request.body, str) else (request.body or b"")
        user = dict(urllib.parse.parse_qsl(url.query)).get("user_id")
        if user is None and body:
            try:
                named = json.loads(body)
            except ValueError:
                named = None
            if isinstance(named, dict) and isinstance(named.get("user_id"), str):
                user = named["user_id"]
        if user is None or not USER_ID.match(user):
            user = "user"
        signer = self.server.signer(user)
        query = signer.signed_query(url.query.encode(), body).decode()
        request.url = urllib.parse.urlunsplit(url._replace(query=query))
        request.headers["X-MBX-APIKEY"] = signer.api_key
        return request


@pytest.fixture(scope="module")
def fuzz_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[RunningServer]:
    server = start_server(tmp_path_factory.mktemp("fuzz"))
    with httpx.Client(base_url=server.api, timeout=10, auth=server.auth) as client:
        for user in FUNDED_USERS:
            for asset, amount in (("INR", "1000000"), ("TATA", "10000")):
                response = client.post(
                    "/onramp", json={"user_id": user, "asset": asset, "amount": amount, "txnId": f"fuzz-{user}-{asset}"}
                )
                assert response.status_code == 200, response.text
    yield server
    code = server.stop()
    assert code == 0, f"server exited with {code}:\n{server.log()}"


@pytest.fixture(scope="module")
def api_schema(fuzz_server: RunningServer) -> OpenApiSchema:
    schema = schemathesis.openapi.from_url(f"{fuzz_server.base_url}/docs/openapi.json", timeout=10)
    schema.config.update(base_url=fuzz_server.base_url)
    return schema


@pytest.mark.parametrize(("method", "path"), ROUTES, ids=[f"{m} {p}" for m, p in ROUTES])
def test_no_generated_request_gets_a_server_error(
    method: str, path: str, api_schema: OpenApiSchema, fuzz_server: RunningServer
) -> None:
    operation = api_schema[path][method]
    cases = st.one_of(
        operation.as_strategy(generation_mode=GenerationMode.POSITIVE),
        operation.as_strategy(generation_mode=GenerationMode.NEGATIVE),
    )

    @given(case=cases)
    @settings(
        max_examples=MAX_EXAMPLES,
        deadline=None,
        derandomize=True,
        database=None,
        suppress_health_check=list(HealthCheck),
    )
    def answers_without_a_server_error(case: schemathesis.Case) -> None:
        response = case.call(base_url=fuzz_server.base_url, timeout=10, auth=SignAsNamedUser(fuzz_server))
        case.validate_response(response, checks=[not_a_server_error])
        try:
            code = response.json().get("code", 0) if response.status_code >= 400 else 0
        except (ValueError, AttributeError):
            code = 0
        codes.add(code)

    codes: set[int] = set()
    answers_without_a_server_error()
    assert codes - NOT_AUTHENTICATED, "every generated request was refused as unauthenticated: the signing is broken"
    assert fuzz_server.process.poll() is None, f"the server died:\n{fuzz_server.log()}"


@pytest.mark.parametrize(("method", "path"), PROTECTED, ids=[f"{m} {p}" for m, p in PROTECTED])
def test_no_generated_request_without_credentials_is_accepted(
    method: str, path: str, api_schema: OpenApiSchema, fuzz_server: RunningServer
) -> None:
    operation = api_schema[path][method]
    cases = st.one_of(
        operation.as_strategy(generation_mode=GenerationMode.POSITIVE),
        operation.as_strategy(generation_mode=GenerationMode.NEGATIVE),
    )

    @given(case=cases)
    @settings(
        max_examples=MAX_EXAMPLES // 3,
        deadline=None,
        derandomize=True,
        database=None,
        suppress_health_check=list(HealthCheck),
    )
    def refused(case: schemathesis.Case) -> None:
        response = case.call(base_url=fuzz_server.base_url, timeout=10)
        assert 400 <= response.status_code < 500, (case.as_curl_command(), response.status_code, response.text)

    refused()


def test_the_server_is_healthy_and_logged_no_traceback_after_the_fuzzing(fuzz_server: RunningServer) -> None:
    response = httpx.get(f"{fuzz_server.api}/health", timeout=10)
    assert response.status_code == 200
    assert response.json()["status"] == "ok"
    assert "Traceback" not in fuzz_server.log(), fuzz_server.log()


# ----------------------------------------------------------------------------- domain-aware fuzzing
FZ_USERS = ("fz-ann", "fz-bob", "fz-cat")
FZ_DEPOSITS = {"FZQ": Decimal("100000"), "FZ": Decimal("1000")}
FZ_MARKET = "FZ_FZQ"
"""tick 0.5 x lot 0.02 = 0.01 FZQ: an odd grid, so off-grid text is easy to make and easy to get wrong. Both of its
assets are its own: only the FZ users ever hold them, so their totals must stay what was deposited (a junk user id
that happens to be valid, and funded in another asset by the schema fuzzing, cannot trade here)."""

grid_prices = st.integers(1, 400).map(lambda ticks: str(Decimal(ticks) * Decimal("0.5")))
grid_quantities = st.integers(1, 500).map(lambda lots: str(Decimal(lots) * Decimal("0.02")))
junk = st.one_of(
    st.sampled_from(["", "0", "-1", "0.01", "0.25", "1e3", "NaN", "Infinity", " 1", "1 ", "1_0", "٣", "²", "0x10"]),
    st.text(max_size=8),
    st.integers(-(10**20), 10**20),
    st.floats(allow_nan=False, allow_infinity=False),
    st.booleans(),
    st.none(),
    st.lists(st.integers(), max_size=2),
)


limit_orders = st.fixed_dictionaries(
    {
        "market": st.just(FZ_MARKET),
        "user_id": st.sampled_from(FZ_USERS),
        "side": st.sampled_from(["buy", "sell"]),
        "price": grid_prices,
        "quantity": grid_quantities,
    },
    optional={
        "timeInForce": st.sampled_from(["GTC", "IOC", "FOK"]),
        "postOnly": st.booleans(),
        "selfTradePrevention": st.sampled_from(["EXPIRE_MAKER", "EXPIRE_TAKER", "EXPIRE_BOTH"]),
        "clientOrderId": st.from_regex(r"[a-z]{1,2}", fullmatch=True),
    },
).map(lambda body: body if not body.get("postOnly") else {**body, "timeInForce": "GTC"})
market_orders = st.one_of(
    st.fixed_dictionaries(
        {
            "market": st.just(FZ_MARKET),
            "user_id": st.sampled_from(FZ_USERS),
            "type": st.just("market"),
            "side": st.sampled_from(["buy", "sell"]),
            "quantity": grid_quantities,
        }
    ),
    st.fixed_dictionaries(
        {
            "market": st.just(FZ_MARKET),
            "user_id": st.sampled_from(FZ_USERS),
            "type": st.just("market"),
            "side": st.just("buy"),
            "quoteQuantity": st.integers(1, 500_000).map(lambda cents: str(Decimal(cents) / 100)),
        }
    ),
)
ORDER_FIELDS = ("market", "user_id", "side", "price", "quantity", "type", "timeInForce", "postOnly", "quoteQuantity",
                "clientOrderId", "selfTradePrevention", "orderId")  # fmt: skip
corrupted_orders = st.tuples(st.one_of(limit_orders, market_orders), st.sampled_from(ORDER_FIELDS), junk).map(
    lambda case: {**case[0], case[1]: case[2]}
)
order_bodies = st.one_of(limit_orders, market_orders, corrupted_orders)
actions = st.one_of(
    order_bodies.map(lambda body: ("place", body)),
    st.tuples(
        st.just("cancel"), st.sampled_from(FZ_USERS), st.integers(0, 50), st.sampled_from([FZ_MARKET, "TATA_INR"])
    ),
)


@pytest.fixture(scope="module")
def fz_client(fuzz_server: RunningServer) -> Iterator[httpx.Client]:
    with httpx.Client(base_url=fuzz_server.api, timeout=10, auth=fuzz_server.auth) as client:
        added = client.post(
            "/markets",
            json={
                "symbol": FZ_MARKET,
                "base": "FZ",
                "quote": "FZQ",
                "tickSize": "0.5",
                "lotSize": "0.02",
                "baseDecimals": 2,
                "quoteDecimals": 2,
            },
        )
        assert added.status_code == 201, added.text
        for user in FZ_USERS:
            for asset, amount in FZ_DEPOSITS.items():
                body = {"user_id": user, "asset": asset, "amount": str(amount), "txnId": f"{user}-{asset}"}
                assert client.post("/onramp", json=body).status_code == 200
        yield client


def assert_no_server_error(response: httpx.Response) -> None:
    assert response.status_code < 500, (response.request.content, response.status_code, response.text)
    if response.status_code >= 400:
        body = response.json()
        # A reused clientOrderId (409) also carries the order that used it first.
        assert set(body) == {"code", "message"} or (
            body["code"] == 206 and set(body) == {"code", "message", "order"}
        ), body


def test_random_order_flow_keeps_funds_conserved_and_the_book_uncrossed(fz_client: httpx.Client) -> None:
    order_ids: list[str] = []
    answered: Counter[int] = Counter()

    @given(steps=st.lists(actions, min_size=3, max_size=20))
    @settings(max_examples=MAX_EXAMPLES, deadline=None, database=None, suppress_health_check=list(HealthCheck))
    def random_flow(steps: list[tuple[Any, ...]]) -> None:
        for step in steps:
            if step[0] == "place":
                response = fz_client.post("/order", json=step[1])
                if response.status_code == 200:
                    order_ids.append(response.json()["orderId"])
            else:
                _, user, index, market = step
                order_id = order_ids[index % len(order_ids)] if order_ids else "1"
                response = fz_client.request(
                    "DELETE", "/order", json={"orderId": order_id, "market": market, "user_id": user}
                )
            assert_no_server_error(response)
            answered[response.status_code] += 1

        totals = dict.fromkeys(FZ_DEPOSITS, Decimal(0))
        for user in FZ_USERS:
            for asset, row in fz_client.get("/balance", params={"user_id": user}).json().items():
                assert Decimal(row["available"]) >= 0 and Decimal(row["locked"]) >= 0, (user, asset, row)
                if asset in totals:
                    totals[asset] += Decimal(row["available"]) + Decimal(row["locked"])
        assert totals == {asset: amount * len(FZ_USERS) for asset, amount in FZ_DEPOSITS.items()}
        depth = fz_client.get("/depth", params={"symbol": FZ_MARKET}).json()
        if depth["bids"] and depth["asks"]:
            assert Decimal(depth["bids"][0][0]) < Decimal(depth["asks"][0][0]), depth

    random_flow()
    # the generator must reach the engine, not only the validation: orders were accepted and traded
    print(dict(answered))
    assert answered[200] >= MAX_EXAMPLES, answered
    assert fz_client.get("/trades", params={"symbol": FZ_MARKET}).json(), "no generated order ever traded"


@pytest.mark.parametrize("path", ["/depth", "/trades", "/klines", "/ticker"])
def test_random_market_data_queries_get_no_server_error(fz_client: httpx.Client, path: str) -> None:
    queries = st.fixed_dictionaries(
        {"symbol": st.one_of(st.just(FZ_MARKET), junk.map(str))},
        optional={
            "limit": st.one_of(st.integers(-5, 6000).map(str), junk.map(str)),
            "interval": st.one_of(st.sampled_from(["1m", "5m", "15m", "1h", "4h", "1d", "1w"]), junk.map(str)),
            "startTime": st.one_of(st.integers(-5, 10**12).map(str), junk.map(str)),
            "endTime": st.one_of(st.integers(-5, 10**12).map(str), junk.map(str)),
        },
    )

    @given(params=queries)
    @settings(max_examples=MAX_EXAMPLES, deadline=None, database=None, suppress_health_check=list(HealthCheck))
    def query(params: dict[str, str]) -> None:
        assert_no_server_error(fz_client.get(path, params=params))

    query()
