"""The web page with authentication on (the default outside `--dev`), in a real browser: signing in with an API
key and its secret (kept in sessionStorage, requests signed in the page with WebCrypto HMAC-SHA256 by Binance's
rule), the user's own streams opened with a listen key, and a wrong secret refused by the server.

The server is `python run.py --in-memory` with the tests' operator token; keys are made through the operator's
route, as an operator would. Other traders act through the signed REST API (`conftest.AsNamedUser`).
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import httpx
import pytest
from conftest import AsNamedUser, RunningServer, create_key, start_server
from test_web import LIVE_WITHIN, MARKET, Screen, balance_row, browser, open_screen, submit_order  # noqa: F401

USER = "web-kim"


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[RunningServer]:
    server = start_server(tmp_path_factory.mktemp("web-keys"), "--in-memory")
    try:
        yield server
    finally:
        assert server.stop() == 0, server.log()


@pytest.fixture(scope="module")
def rest(server: RunningServer) -> Iterator[httpx.Client]:
    """Signed REST as the user each request names; the operator's token on operator routes."""
    with httpx.Client(base_url=server.api, timeout=10, auth=AsNamedUser(server.api)) as client:
        for user, asset, amount in ((USER, "INR", "10000"), ("web-maker", "TATA", "1000")):
            body = {"user_id": user, "asset": asset, "amount": amount, "txnId": f"{user}-{asset}"}
            assert client.post("/onramp", json=body).status_code == 200
        yield client


@pytest.fixture(scope="module")
def key(server: RunningServer, rest: httpx.Client) -> dict[str, Any]:
    return create_key(server.api, USER)


@pytest.fixture(scope="module")
def screen(browser: Any, server: RunningServer, rest: httpx.Client) -> Iterator[Screen]:  # noqa: F811
    screen = open_screen(browser, server.base_url + "/")
    yield screen
    screen.context.close()


def sign_in_with(screen: Screen, user: str, api_key: str, secret: str) -> None:
    page = screen.page
    page.get_by_label("User id").fill(user)
    page.get_by_label("API key").fill(api_key)
    page.get_by_label("Secret").fill(secret)
    page.get_by_role("button", name="Sign in").click()


def test_the_page_asks_for_an_api_key_and_a_wrong_secret_is_refused_by_the_server(
    screen: Screen, key: dict[str, Any]
) -> None:
    page = screen.page
    assert page.get_by_label("API key").is_visible() and page.get_by_label("Secret").is_visible()
    assert not page.locator("#deposit").is_visible()  # deposits are the operator's

    sign_in_with(screen, USER, key["apiKey"], "not-the-secret")

    message = page.locator("#sign-in .message")
    screen.until(lambda: message.inner_text() != "", 5, "an answer to the sign-in")
    assert "signature" in message.inner_text().lower(), message.inner_text()
    assert not page.locator("#signed-in").is_visible()


def test_signing_in_with_a_key_shows_the_users_balances_and_keeps_no_secret_in_local_storage(
    screen: Screen, key: dict[str, Any]
) -> None:
    page = screen.page

    sign_in_with(screen, USER, key["apiKey"], key["secret"])

    screen.until(lambda: page.locator("#signed-in .user").inner_text() == USER, 5, f"signed in as {USER}")
    screen.until(screen.live, 10, lambda: f"live after signing in: {screen.status()}")
    screen.until(lambda: balance_row(screen, "INR") == ("10000.00", "0.00"), LIVE_WITHIN, "the INR balance")
    assert page.evaluate("() => JSON.stringify(window.localStorage)").find(key["secret"]) == -1
    assert page.locator("input[name=secret]").input_value() == ""


def test_an_order_signed_in_the_browser_rests_and_a_cancel_from_the_page_releases_it(
    screen: Screen, rest: httpx.Client
) -> None:
    message = submit_order(screen, "buy", "90.00", "3")

    assert "NEW" in message, message
    rows = screen.page.locator("[data-testid=open-orders] tr[data-order-id]")
    screen.until(lambda: rows.count() == 1, LIVE_WITHIN, "one open order on the page")
    order_id = rows.first.get_attribute("data-order-id")
    listed = rest.get("/order/open", params={"user_id": USER}).json()
    assert [(o["orderId"], o["price"], o["quantity"]) for o in listed] == [(order_id, "90.00", "3")]
    screen.until(lambda: balance_row(screen, "INR") == ("9730.00", "270.00"), LIVE_WITHIN, "270.00 INR held")

    screen.page.get_by_role("button", name=f"Cancel order {order_id}:").click()

    screen.until(lambda: rows.count() == 0, LIVE_WITHIN, "the order to leave the page")
    assert rest.get("/order/open", params={"user_id": USER}).json() == []
    screen.until(lambda: balance_row(screen, "INR") == ("10000.00", "0.00"), LIVE_WITHIN, "the hold released")


def test_a_fill_reaches_the_page_on_the_users_stream_opened_with_a_listen_key(
    screen: Screen, rest: httpx.Client
) -> None:
    body = {"user_id": "web-maker", "market": MARKET, "side": "sell", "price": "100.50", "quantity": "2"}
    assert rest.post("/order", json=body).status_code == 200

    message = submit_order(screen, "buy", "100.50", "2")

    assert "FILLED" in message, message
    screen.until(
        lambda: screen.rows("fills", ("price", "quantity", "side"))[:1] == [("100.50", "2", "buy")],
        LIVE_WITHIN,
        lambda: f"fills {screen.rows('fills', ('price', 'quantity', 'side'))}",
    )
    balances = rest.get("/balance", params={"user_id": USER}).json()
    screen.until(
        lambda: balance_row(screen, "TATA") == (balances["TATA"]["available"], balances["TATA"]["locked"]),
        LIVE_WITHIN,
        lambda: f"TATA {balance_row(screen, 'TATA')} != REST {balances}",
    )
