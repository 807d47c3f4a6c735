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

import httpx
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
    """Answers the private calls of the accounts contract and keeps every request it was sent. The listen key it
    hands out is a real one of the server's, so the page's user stream opens on the real WebSocket service."""

    listen_key: str
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
            answer = {"listenKey": self.listen_key} if request.method == "POST" else {}
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
    made = httpx.post(f"{exchange.api}/listenKey", params={"user_id": USER}, auth=exchange.auth, timeout=10)
    assert made.status_code == 200, made.text
    private = PrivateApi(made.json()["listenKey"])
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
    _, private, sockets = keyed

    assert urllib.parse.urlsplit(sockets[-1]).query == f"listenKey={private.listen_key}"


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
    assert urllib.parse.parse_qs(delete["query"])["listenKey"] == [private.listen_key]
    assert screen.page.evaluate("sessionStorage.getItem('openbell.session')") is None


# --------------------------------------------------------------------------- load
STRESS = """
async () => {
  const { DepthView } = await import('/web/js/depth.js');
  const { TradesView, MAX_TRADES } = await import('/web/js/trades.js');
  const make = (tag) => document.body.appendChild(document.createElement(tag));
  const elements = { bids: make('ol'), asks: make('ol'), spread: make('p'), panel: make('section') };
  const ignore = () => {};
  const depth = new DepthView(elements, { onState: ignore, onPick: ignore, onError: ignore });
  const trades = new TradesView(make('ol'), { onError: ignore });
  depth.symbol = 'X_Y';
  trades.symbol = 'X_Y';
  trades.pending = null;
  depth.book.onSnapshot({ lastUpdateId: 0, bids: [], asks: [] });
  let busy = 0;
  let renders = 0;
  for (const view of [depth, trades]) {
    const render = view.render.bind(view);
    view.render = () => { const t = performance.now(); render(); busy += performance.now() - t; renders += 1; };
  }
  let frames = 0;
  let counting = true;
  const frame = () => { frames += 1; if (counting) requestAnimationFrame(frame); };
  requestAnimationFrame(frame);
  const price = (low) => (low + Math.floor(Math.random() * 1000) / 100).toFixed(2);
  let id = 0;
  let tradeId = 0;
  const seconds = 3;
  const started = performance.now();
  await new Promise((resolve) => {
    const timer = setInterval(() => {
      const t = performance.now();
      const due = (t - started) / 1000;  // seconds of load: 1,000 diffs and 200 trades each
      while (id < due * 1000) {
        id += 1;
        const quantity = () => String(Math.random() < 0.3 ? 0 : 1 + Math.floor(Math.random() * 9));
        depth.onDiff({ e: 'depth', s: 'X_Y', U: id, u: id, b: [[price(90), quantity()]], a: [[price(100.01), quantity()]] });
      }
      while (tradeId < due * 200) {
        tradeId += 1;
        trades.onTrade({ e: 'trade', s: 'X_Y', t: tradeId, p: price(100), q: '1', m: tradeId % 2 === 0, T: Date.now() });
      }
      busy += performance.now() - t;
      if (performance.now() - started >= seconds * 1000) { clearInterval(timer); resolve(); }
    }, 10);
  });
  await new Promise((resolve) => requestAnimationFrame(() => requestAnimationFrame(resolve)));
  counting = false;
  const elapsed = performance.now() - started;
  const best = depth.book.bids.top(1)[0];
  return {
    diffs: id, trades: tradeId, elapsed, frames, renders, busy,
    tapeRows: trades.list.children.length, maxTrades: MAX_TRADES, keptTrades: trades.trades.length,
    newestShown: trades.list.firstElementChild.dataset.tradeId, newest: String(tradeId),
    bestBidShown: elements.bids.firstElementChild ? elements.bids.firstElementChild.dataset.price : null,
    bestBid: best ? best[0] : null, synced: depth.book.synced,
  };
}
"""


def test_a_thousand_depth_diffs_and_two_hundred_trades_a_second_are_drawn_once_per_frame(
    browser: Browser,  # noqa: F811
    exchange: RunningServer,
) -> None:
    context = browser.new_context()
    try:
        page = context.new_page()
        page.goto(exchange.base_url + "/")  # the page's own origin, policy and modules

        result = page.evaluate(STRESS)
    finally:
        context.close()

    seconds = result["elapsed"] / 1000
    print(
        f"{result['diffs'] / seconds:.0f} diffs/s and {result['trades'] / seconds:.0f} trades/s: "
        f"{result['frames'] / seconds:.0f} frames/s, {result['renders']} renders, "
        f"{100 * result['busy'] / result['elapsed']:.1f}% of the time busy"
    )
    assert result["diffs"] / seconds > 900 and result["trades"] / seconds > 180, result
    # Each view is drawn at most once per frame, however many messages arrived in it.
    assert result["renders"] <= 2 * result["frames"] + 2, result
    assert result["frames"] / seconds > 20, result  # frames kept coming: the page never stalled
    assert result["busy"] / result["elapsed"] < 0.5, result  # handling and drawing took under half the time
    # The last state is what is shown, and the tape stays bounded.
    assert result["synced"] and result["bestBidShown"] == result["bestBid"], result
    assert result["newestShown"] == result["newest"], result
    assert result["tapeRows"] == result["keptTrades"] == result["maxTrades"], result
