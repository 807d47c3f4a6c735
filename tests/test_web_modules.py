"""The page's own rules, checked in the browser that runs them: the order book's sync by update ids, exact
decimal arithmetic, and the keyed sign-in path of the accounts contract (issue 12).

The keyed path is the client half of a contract whose server half has not landed: the server's config
says `auth: "dev"` today. So these tests let the real server serve the page and its market data, and
answer only the private calls (config, balance, open orders, order, listenKey) from the test, which
records each request and checks its signature with Python's own HMAC, exactly as the contract defines
it. When the accounts issue lands, the same page talks to the real thing.
"""

from __future__ import annotations

import hashlib
import hmac
import json
import time
import urllib.parse
from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Any

import pytest
from conftest import RunningServer
from playwright.sync_api import Browser, Page, Route
from test_web import Screen, browser  # noqa: F401  (fixture)

API_KEY = "vmPUZE6mv9SD5VNHk4HlWFsOr6aKE2zvsw0MuIgwCIPy6utIco14y7Ju91duEh8A"
SECRET = "NhqPtmdSJYdKjVHjA7PZj4Mge3R5YNiP1e3UZjInClVN65XAbvqqM6A7H5fATj0j"
USER = "key-user"


@pytest.fixture(scope="module")
def module_page(browser: Browser, exchange: RunningServer) -> Iterator[Page]:  # noqa: F811
    context = browser.new_context()
    page = context.new_page()
    page.goto(exchange.base_url + "/web/favicon.svg")  # an origin to import the modules from
    yield page
    context.close()


def run(page: Page, script: str) -> Any:
    """Evaluate an async function body with the page's modules imported as `book` and `decimal`."""
    return page.evaluate(
        "async (body) => { const book = await import('/web/js/book.js');"
        " const decimal = await import('/web/js/decimal.js');"
        " return await (new Function('book', 'decimal', body))(book, decimal); }",
        script,
    )


# --------------------------------------------------------------------------- the book's sync rule
def test_diffs_buffered_before_the_snapshot_are_applied_after_it_unless_the_snapshot_has_them(
    module_page: Page,
) -> None:
    result = run(
        module_page,
        """
        const b = new book.SyncedBook();
        b.onDiff({U: 5, u: 6, b: [['10.00', '1']], a: []});      // older than the snapshot: dropped
        b.onDiff({U: 7, u: 8, b: [['10.00', '3']], a: [['11.00', '2']]}); // straddles it: applied
        b.onDiff({U: 9, u: 9, b: [['9.00', '0']], a: []});        // removes a level
        const outcome = b.onSnapshot({lastUpdateId: 7, bids: [['10.00', '2'], ['9.00', '5']], asks: []});
        return [outcome, b.lastUpdateId, b.bids.top(5).map((l) => [l[0], l[1]]), b.asks.top(5).map((l) => [l[0], l[1]])];
        """,
    )

    assert result == ["applied", 9, [["10.00", "3"]], [["11.00", "2"]]]


def test_a_diff_that_does_not_continue_the_last_one_applied_is_a_gap(module_page: Page) -> None:
    result = run(
        module_page,
        """
        const b = new book.SyncedBook();
        b.onSnapshot({lastUpdateId: 10, bids: [], asks: []});
        return [
          b.onDiff({U: 11, u: 12, b: [['1.00', '1']], a: []}),
          b.onDiff({U: 12, u: 12, b: [], a: []}),
          b.onDiff({U: 14, u: 15, b: [], a: []}),
          b.synced,
        ];
        """,
    )

    assert result == ["applied", "stale", "gap", False]


def test_levels_stay_sorted_best_first_whatever_the_order_they_arrive_in(module_page: Page) -> None:
    result = run(
        module_page,
        """
        const b = new book.SyncedBook();
        b.onSnapshot({lastUpdateId: 1, bids: [['9.50', '1'], ['10.25', '1'], ['9.75', '1']],
                      asks: [['12.00', '1'], ['10.50', '1'], ['11.00', '1']]});
        b.onDiff({U: 2, u: 2, b: [['10.00', '2'], ['9.75', '0']], a: [['10.75', '4'], ['12.00', '0']]});
        return [b.bids.top(10).map((l) => l[0]), b.asks.top(10).map((l) => l[0])];
        """,
    )

    assert result == [["10.25", "10.00", "9.50"], ["10.50", "10.75", "11.00"]]


def test_decimal_totals_and_changes_are_exact(module_page: Page) -> None:
    result = run(
        module_page,
        """
        const sum = ['0.10', '0.20', '0.70'].reduce((t, x) => t + decimal.parseUnits(x), 0n);
        return [
          decimal.formatUnits(sum, 2),
          decimal.subtract('100.45', '101.00', 2),
          decimal.percentChange('100.45', '101.00'),
          decimal.percentChange('1.005', '1.000'),
          decimal.formatUnits(decimal.parseUnits('123456789012345678.123456789'), 9),
          decimal.toMillis(1700000000), decimal.toMillis(1700000000000),
        ];
        """,
    )

    assert result == ["1.00", "-0.55", "-0.54", "0.50", "123456789012345678.123456789", 1700000000000, 1700000000000]


# --------------------------------------------------------------------------- the keyed sign-in path
@dataclass
class PrivateApi:
    """Answers the private calls of the accounts contract and keeps every request it was sent."""

    requests: list[dict[str, Any]] = field(default_factory=list)

    def handle(self, route: Route) -> None:
        request = route.request
        parts = urllib.parse.urlsplit(request.url)
        self.requests.append(
            {
                "method": request.method,
                "path": parts.path,
                "query": parts.query,
                "body": request.post_data or "",
                "headers": request.headers,
            }
        )
        if parts.path == "/api/v1/config":
            answer: Any = {"wsUrl": "/ws", "auth": "keys"}
        elif parts.path == "/api/v1/listenKey":
            answer = {"listenKey": "lk-test"} if request.method == "POST" else {}
        elif parts.path == "/api/v1/balance":
            answer = {"INR": {"available": "5000.00", "locked": "0.00"}}
        elif parts.path == "/api/v1/order/open":
            answer = []
        else:  # POST /api/v1/order
            answer = {"orderId": "7", "market": "TATA_INR", "status": "NEW", "executedQty": "0", "fills": []}
        route.fulfill(status=200, content_type="application/json", body=json.dumps(answer))

    def signed(self) -> list[dict[str, Any]]:
        return [r for r in self.requests if r["path"] != "/api/v1/config"]


PRIVATE_PATHS = ("/api/v1/config", "/api/v1/listenKey", "/api/v1/balance", "/api/v1/order/open", "/api/v1/order")


@pytest.fixture(scope="module")
def keyed(browser: Browser, exchange: RunningServer) -> Iterator[tuple[Screen, PrivateApi, list[str]]]:  # noqa: F811
    private = PrivateApi()
    context = browser.new_context()
    context.route(lambda url: urllib.parse.urlsplit(url).path in PRIVATE_PATHS, private.handle)
    page = context.new_page()
    sockets: list[str] = []
    page.on("websocket", lambda socket: sockets.append(socket.url))
    screen = Screen(page, context)
    page.goto(exchange.base_url + "/")
    screen.until(screen.live, 15, lambda: f"live: {screen.status()}")

    page.get_by_label("User id").fill(USER)
    page.get_by_label("API key").fill(API_KEY)
    page.get_by_label("Secret").fill(SECRET)
    page.get_by_role("button", name="Sign in").click()
    screen.until(lambda: page.locator("#signed-in .user").inner_text() == USER, 5, "signed in with a key")
    screen.until(lambda: any("listenKey=" in url for url in sockets), 5, lambda: f"a listen key stream: {sockets}")
    yield screen, private, sockets
    context.close()


def test_in_keys_mode_every_private_request_is_signed_as_the_accounts_contract_says(
    keyed: tuple[Screen, PrivateApi, list[str]],
) -> None:
    screen, private, _ = keyed
    form = screen.page.locator("[data-testid=order-form]")
    form.locator("input[name=price]").fill("95.00")
    form.locator("input[name=quantity]").fill("1")
    form.locator("button[type=submit]").click()
    screen.until(lambda: "NEW (order 7)" in form.locator(".message").inner_text(), 5, "the order's answer")

    signed = private.signed()
    assert {(r["method"], r["path"]) for r in signed} >= {
        ("GET", "/api/v1/balance"),
        ("GET", "/api/v1/order/open"),
        ("POST", "/api/v1/listenKey"),
        ("POST", "/api/v1/order"),
    }
    now_ms = time.time() * 1000
    for request in signed:
        unsigned, _, signature = request["query"].rpartition("&signature=")
        expected = hmac.new(SECRET.encode(), (unsigned + request["body"]).encode(), hashlib.sha256).hexdigest()
        params = urllib.parse.parse_qs(unsigned)
        assert signature == expected, request
        assert request["headers"]["x-mbx-apikey"] == API_KEY
        assert abs(int(params["timestamp"][0]) - now_ms) < 60_000
        assert params["recvWindow"] == ["5000"]
        assert "user_id" not in params and "user_id" not in request["body"]
    order = next(r for r in signed if r["path"] == "/api/v1/order")
    assert json.loads(order["body"]) == {
        "market": "TATA_INR",
        "side": "buy",
        "type": "limit",
        "quantity": "1",
        "price": "95.00",
        "timeInForce": "GTC",
    }
    assert order["headers"]["content-type"] == "application/json"


def test_in_keys_mode_the_user_streams_open_with_a_listen_key(keyed: tuple[Screen, PrivateApi, list[str]]) -> None:
    _, _, sockets = keyed

    assert urllib.parse.urlsplit(sockets[-1]).query == "listenKey=lk-test"


def test_the_key_and_secret_are_kept_in_session_storage_only(keyed: tuple[Screen, PrivateApi, list[str]]) -> None:
    screen, _, _ = keyed

    session = screen.page.evaluate("JSON.parse(sessionStorage.getItem('openbell.session'))")
    local = screen.page.evaluate("JSON.stringify(Object.assign({}, localStorage))")

    assert session == {"kind": "keys", "userId": USER, "apiKey": API_KEY, "secret": SECRET}
    assert SECRET not in local and API_KEY not in local
    assert screen.page.get_by_label("Secret").input_value() == ""


def test_signing_out_ends_the_listen_key_and_forgets_the_key(keyed: tuple[Screen, PrivateApi, list[str]]) -> None:
    screen, private, _ = keyed

    screen.page.get_by_role("button", name="Sign out").click()

    screen.until(
        lambda: any(r["method"] == "DELETE" and r["path"] == "/api/v1/listenKey" for r in private.requests),
        5,
        "DELETE /api/v1/listenKey",
    )
    delete = next(r for r in private.requests if r["method"] == "DELETE")
    assert urllib.parse.parse_qs(delete["query"])["listenKey"] == ["lk-test"]
    assert screen.page.evaluate("sessionStorage.getItem('openbell.session')") is None
