"""The OpenAPI document at /docs/openapi.json describes every route the app serves under /api/v1, and
the interactive docs answer at /docs."""

from __future__ import annotations

import pathlib
import re
from typing import Any

import httpx
from conftest import RunningServer
from playwright.sync_api import sync_playwright
from test_web import CHROMIUM, CHROMIUM_ARGS

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
    ("POST", "/api/v1/admin/markets/{symbol}/halt"),
    ("POST", "/api/v1/admin/markets/{symbol}/resume"),
    ("POST", "/api/v1/admin/markets/{symbol}/cancel-only"),
}
"""The routes the issues ask for."""

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
                                "clientOrderId", "quoteQuantity", "stopPrice"},
    ("DELETE", "/api/v1/order"): {"orderId", "market", "user_id"},
    ("POST", "/api/v1/onramp"): {"user_id", "asset", "amount", "txnId"},
    ("POST", "/api/v1/markets"): {"symbol", "base", "quote", "tickSize", "lotSize"},
}  # fmt: skip


def served_routes() -> set[tuple[str, str]]:
    """(METHOD, /path) of every route the app registers under /api/v1 (the engine is never started)."""
    app = create_app(Engine(), name="openapi-routes", websocket=False)
    return {
        (method, "/" + re.sub(r"<([A-Za-z_]+)(:[a-z]+)?>", r"{\1}", route.path))  # <symbol:str> is {symbol}
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


def operations(document: dict[str, Any]) -> list[tuple[str, str, dict[str, Any]]]:
    return [
        (method.upper(), path, operation)
        for path, item in document["paths"].items()
        if path.startswith("/api/v1/")
        for method, operation in item.items()
    ]


def test_every_operation_describes_its_answer_and_its_errors_in_the_error_shape(exchange: RunningServer) -> None:
    document = httpx.get(f"{exchange.base_url}/docs/openapi.json", timeout=10).json()

    for method, path, operation in operations(document):
        responses = operation["responses"]
        success = [status for status in responses if status.startswith("2")]
        assert success, (method, path, sorted(responses))
        schema = responses[success[0]]["content"]["application/json"]["schema"]
        assert schema.get("type") in ("object", "array"), (method, path, schema)
        if path == "/api/v1/config":
            continue
        assert {"503", "504"} <= set(responses), (method, path, sorted(responses))
        for status, response in responses.items():
            if not status.startswith("2"):
                error = response["content"]["application/json"]["schema"]
                assert error["required"] == ["code", "message"], (method, path, status, error)
                assert response["description"], (method, path, status)


def test_request_bodies_name_their_required_fields_and_enumerate_their_choices(exchange: RunningServer) -> None:
    document = httpx.get(f"{exchange.base_url}/docs/openapi.json", timeout=10).json()
    place = document["paths"]["/api/v1/order"]["post"]["requestBody"]["content"]["application/json"]["schema"]
    onramp = document["paths"]["/api/v1/onramp"]["post"]["requestBody"]["content"]["application/json"]["schema"]
    order_result = document["paths"]["/api/v1/order"]["post"]["responses"]["200"]["content"]["application/json"]
    klines = {p["name"]: p for p in document["paths"]["/api/v1/klines"]["get"]["parameters"]}

    assert set(place["required"]) == {"market", "side"}
    assert place["properties"]["side"]["enum"] == ["buy", "sell"]
    assert place["properties"]["timeInForce"]["enum"] == ["GTC", "IOC", "FOK"]
    assert place["properties"]["type"]["enum"] == [
        "limit",
        "market",
        "stop_loss",
        "stop_loss_limit",
        "take_profit",
        "take_profit_limit",
    ]
    assert "stopPrice" in place["properties"]
    assert set(onramp["required"]) == {"user_id", "asset", "amount", "txnId"}
    assert "FILLED" in order_result["schema"]["properties"]["status"]["enum"]
    assert klines["interval"]["schema"]["enum"][:2] == ["1m", "3m"] and klines["interval"]["required"]


def test_the_websocket_route_is_described_not_named_after_a_partial(exchange: RunningServer) -> None:
    document = httpx.get(f"{exchange.base_url}/docs/openapi.json", timeout=10).json()
    ws = document["paths"]["/ws"]["get"]

    assert ws["summary"] == "WebSocket streams (upgrade)"
    assert "SUBSCRIBE" in ws["description"] and "partial" not in ws["description"]


def test_the_interactive_docs_load_in_a_browser_with_no_request_beyond_openbell(exchange: RunningServer) -> None:
    """Offline: Swagger UI's script and style come from openbell itself (web/vendor/swagger-ui/), no CDN."""
    assert pathlib.Path(CHROMIUM).exists(), f"{CHROMIUM} is missing: install Debian's chromium (.ci/run does)"
    requested: list[str] = []
    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS)
        try:
            page = browser.new_page()
            page.on("request", lambda request: requested.append(request.url))
            page.goto(f"{exchange.base_url}/docs", wait_until="networkidle", timeout=30_000)
            page.wait_for_selector(".opblock-tag", timeout=30_000)  # Swagger UI rendered the operations
            shown = page.locator(".opblock-summary-path").all_inner_texts()
        finally:
            browser.close()

    assert requested and all(url.startswith(exchange.base_url) for url in requested), requested
    assert any(url.endswith("/web/vendor/swagger-ui/swagger-ui-bundle.js") for url in requested)
    assert any("/api/v1/order" in path for path in shown), shown


def test_the_document_says_which_routes_need_a_signed_key_or_the_operators_token(exchange: RunningServer) -> None:
    document = httpx.get(f"{exchange.base_url}/docs/openapi.json", timeout=10).json()
    schemes = document["components"]["securitySchemes"]
    paths = document["paths"]

    assert schemes["apiKey"]["name"] == "X-MBX-APIKEY" and schemes["operatorToken"]["scheme"].lower() == "bearer"
    assert paths["/api/v1/order"]["post"]["security"] == [{"apiKey": []}]
    assert paths["/api/v1/balance"]["get"]["security"] == [{"apiKey": []}]
    assert paths["/api/v1/onramp"]["post"]["security"] == [{"operatorToken": []}]
    assert paths["/api/v1/admin/keys"]["post"]["security"] == [{"operatorToken": []}]
    assert "security" not in paths["/api/v1/depth"]["get"]
