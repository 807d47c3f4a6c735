"""The OpenAPI document at /docs/openapi.json describes every route the app serves under /api/v1, and
the interactive docs answer at /docs."""

from __future__ import annotations

import httpx
from conftest import RunningServer

from openbell.actors.engine import Engine
from openbell.http.app import create_app

EXPECTED_ROUTES = {
    ("POST", "/api/v1/order"),
    ("DELETE", "/api/v1/order"),
    ("GET", "/api/v1/order/open"),
    ("GET", "/api/v1/depth"),
    ("GET", "/api/v1/trades"),
    ("GET", "/api/v1/klines"),
    ("GET", "/api/v1/tickers"),
    ("GET", "/api/v1/ticker"),
    ("POST", "/api/v1/onramp"),
    ("GET", "/api/v1/balance"),
    ("GET", "/api/v1/markets"),
    ("POST", "/api/v1/markets"),
    ("GET", "/api/v1/health"),
}
"""The routes the issue asks for."""

REQUIRED_QUERY = {
    ("GET", "/api/v1/order/open"): {"user_id"},
    ("GET", "/api/v1/depth"): {"symbol"},
    ("GET", "/api/v1/trades"): {"symbol"},
    ("GET", "/api/v1/klines"): {"symbol", "interval"},
    ("GET", "/api/v1/ticker"): {"symbol"},
    ("GET", "/api/v1/balance"): {"user_id"},
}
REQUEST_BODY_FIELDS = {
    ("POST", "/api/v1/order"): {"market", "side", "user_id", "price", "quantity", "type", "timeInForce", "postOnly",
                                "clientOrderId", "quoteQuantity"},
    ("DELETE", "/api/v1/order"): {"orderId", "market", "user_id"},
    ("POST", "/api/v1/onramp"): {"user_id", "asset", "amount", "txnId"},
    ("POST", "/api/v1/markets"): {"symbol", "base", "quote", "tickSize", "lotSize"},
}  # fmt: skip


def served_routes() -> set[tuple[str, str]]:
    """(METHOD, /path) of every route the app registers under /api/v1 (the engine is never started)."""
    app = create_app(Engine(), name="openapi-routes", websocket=False)
    return {
        (method, "/" + route.path)
        for route in app.router.routes
        if route.path.startswith("api/v1/")
        for method in route.methods
    }


SERVED_ROUTES = served_routes()


def documented_routes(document: dict) -> set[tuple[str, str]]:
    methods = {"get", "post", "put", "patch", "delete"}
    return {
        (method.upper(), path)
        for path, item in document["paths"].items()
        if path.startswith("/api/v1/")
        for method in item
        if method in methods
    }


def test_the_app_serves_every_route_the_issue_asks_for() -> None:
    assert EXPECTED_ROUTES <= SERVED_ROUTES, sorted(EXPECTED_ROUTES - SERVED_ROUTES)


def test_the_document_lists_every_served_route_with_its_methods(exchange: RunningServer) -> None:
    response = httpx.get(f"{exchange.base_url}/docs/openapi.json", timeout=10)

    assert response.status_code == 200
    document = response.json()
    assert document["openapi"].startswith("3.")
    assert document["info"]["title"] == "openbell"
    assert documented_routes(document) == SERVED_ROUTES


def test_the_document_names_the_required_query_parameters(exchange: RunningServer) -> None:
    document = httpx.get(f"{exchange.base_url}/docs/openapi.json", timeout=10).json()

    for (method, path), names in REQUIRED_QUERY.items():
        parameters = document["paths"][path][method.lower()].get("parameters", [])
        required = {p["name"] for p in parameters if p.get("in") == "query" and p.get("required")}
        assert required == names, (method, path, parameters)


def test_the_document_describes_each_request_body(exchange: RunningServer) -> None:
    document = httpx.get(f"{exchange.base_url}/docs/openapi.json", timeout=10).json()

    for (method, path), fields in REQUEST_BODY_FIELDS.items():
        body = document["paths"][path][method.lower()]["requestBody"]
        schema = body["content"]["application/json"]["schema"]
        assert fields <= set(schema["properties"]), (method, path, sorted(schema["properties"]))


def test_the_interactive_docs_answer(exchange: RunningServer) -> None:
    response = httpx.get(f"{exchange.base_url}/docs", timeout=10, follow_redirects=True)

    assert response.status_code == 200
    assert "html" in response.headers["content-type"]
    assert "openapi.json" in response.text or "swagger" in response.text.lower()
