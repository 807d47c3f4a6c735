"""The web page with authentication on: signed in with an API key and its secret, it signs its requests in
the browser and opens its user's streams with a listen key; an order placed through its form appears in the
page's open orders (from `orders@<user>`) and in REST. Chromium against `python run.py --in-memory`."""

from __future__ import annotations

import uuid
from collections.abc import Iterator

import httpx
import pytest
from conftest import ADMIN_TOKEN, RunningServer, create_key, start_server
from test_web import browser, open_screen, submit_order  # noqa: F401  (fixture)

from openbell.client import Client


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[RunningServer]:
    running = start_server(tmp_path_factory.mktemp("web-keys"), "--in-memory")
    yield running
    assert running.stop() == 0, running.log()


def test_a_user_signed_in_with_a_key_trades_from_the_page(server: RunningServer, browser: object) -> None:  # noqa: F811
    user = f"web-{uuid.uuid4().hex[:8]}"
    key = create_key(server.api, user)
    with Client(server.base_url, admin_token=ADMIN_TOKEN) as operator:
        body = {"user_id": user, "asset": "INR", "amount": "1000", "txnId": f"fund-{user}"}
        assert operator.post("/onramp", json=body).status_code == 200
    assert httpx.get(f"{server.api}/config").json()["auth"] == "keys"

    screen = open_screen(browser, server.base_url + "/")  # type: ignore[arg-type]
    try:
        page = screen.page
        page.get_by_label("User id").fill(user)
        page.get_by_label("API key").fill(key["apiKey"])
        page.get_by_label("Secret").fill(key["secret"])
        page.get_by_role("button", name="Sign in").click()
        screen.until(lambda: page.locator("#signed-in .user").inner_text() == user, 5, "signed in")
        screen.until(screen.live, 10, lambda: f"live after signing in: {screen.status()} {screen.console_errors}")

        answer = submit_order(screen, "buy", "12.34", "2")
        rows = page.locator("[data-testid=open-orders] tbody tr")
        screen.until(lambda: rows.count() == 1, 5, lambda: f"the order in open orders ({answer})")
    finally:
        screen.context.close()
    with Client(server.base_url, api_key=key["apiKey"], secret=key["secret"]) as client:
        orders = client.get("/order/open").json()
    assert [(o["price"], o["quantity"]) for o in orders] == [("12.34", "2")], (answer, orders)
    assert not screen.page_errors, screen.page_errors
