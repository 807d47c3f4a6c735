"""Market status through the admin API, `/markets` and the `status@` WebSocket stream, against `python run.py` on
a free port; and a halt that survives a kill -9.

Every test adds a market of its own (POST /markets), so the shared server's other markets keep trading.
"""

from __future__ import annotations

import asyncio
import pathlib
import signal
from typing import Any

import httpx
import ujson
import websockets
from conftest import RunningServer, start_server
from test_http_stops import WAIT, create_market, unique


def new_market(client: httpx.Client) -> str:
    created = create_market(client, "H")
    assert created["status"] == "TRADING"
    return str(created["symbol"])


def funded(client: httpx.Client, asset: str, amount: str) -> str:
    user = unique("user")
    response = client.post("/onramp", json={"user_id": user, "asset": asset, "amount": amount, "txnId": unique("t")})
    assert response.status_code == 200, response.text
    return user


def listed(client: httpx.Client, market: str) -> dict[str, Any]:
    markets: list[dict[str, Any]] = client.get("/markets").json()
    return next(m for m in markets if m["symbol"] == market)


def order(market: str, user: str) -> dict[str, str]:
    return {"market": market, "side": "buy", "price": "10", "quantity": "1", "user_id": user}


def test_halt_refuses_new_orders_with_its_own_code_takes_cancels_and_resume_reopens(client: httpx.Client) -> None:
    market = new_market(client)
    buyer = funded(client, "INR", "100")
    resting = client.post("/order", json=order(market, buyer)).json()

    halted = client.post(f"/admin/markets/{market}/halt")
    refused = client.post("/order", json=order(market, buyer))
    canceled = client.request(
        "DELETE", "/order", json={"orderId": resting["orderId"], "market": market, "user_id": buyer}
    )
    resumed = client.post(f"/admin/markets/{market}/resume")
    accepted = client.post("/order", json=order(market, buyer))

    assert halted.status_code == 200 and halted.json()["status"] == "HALTED"
    assert refused.status_code == 400 and refused.json()["code"] == 211, refused.text
    assert canceled.status_code == 200 and canceled.json()["status"] == "CANCELED"
    assert resumed.status_code == 200 and resumed.json()["status"] == "TRADING"
    assert accepted.status_code == 200 and accepted.json()["status"] == "NEW"
    assert listed(client, market)["status"] == "TRADING"


def test_cancel_only_shows_in_markets_and_refuses_new_orders_with_its_own_code(client: httpx.Client) -> None:
    market = new_market(client)
    buyer = funded(client, "INR", "100")

    response = client.post(f"/admin/markets/{market}/cancel-only")
    refused = client.post("/order", json=order(market, buyer))

    assert response.status_code == 200
    assert listed(client, market)["status"] == "CANCEL_ONLY"
    assert refused.status_code == 400 and refused.json()["code"] == 212
    assert client.get("/balance", params={"user_id": buyer}).json()["INR"] == {"available": "100.00", "locked": "0.00"}


def test_the_status_of_an_unknown_market_is_404_and_a_get_is_not_allowed(client: httpx.Client) -> None:
    unknown = client.post("/admin/markets/NOPE_INR/halt")
    malformed = client.post("/admin/markets/no%20such/halt")
    wrong_method = client.get(f"/admin/markets/{new_market(client)}/halt")

    assert unknown.status_code == 404 and unknown.json()["code"] == 300
    assert malformed.status_code in (400, 404) and set(malformed.json()) == {"code", "message"}
    assert wrong_method.status_code == 405


def test_status_changes_are_streamed_on_status_at_the_market(client: httpx.Client, exchange: RunningServer) -> None:
    market = new_market(client)

    async def scenario() -> list[dict[str, Any]]:
        async with websockets.connect(exchange.ws_url) as ws:
            await ws.send(ujson.dumps({"method": "SUBSCRIBE", "params": [f"status@{market}"], "id": 1}))
            assert ujson.loads(await asyncio.wait_for(ws.recv(), WAIT)) == {"result": None, "id": 1}
            for action in ("halt", "cancel-only", "resume"):
                response = await asyncio.to_thread(client.post, f"/admin/markets/{market}/{action}")
                assert response.status_code == 200
            return [ujson.loads(await asyncio.wait_for(ws.recv(), WAIT)) for _ in range(3)]

    messages = asyncio.run(scenario())

    assert [m["stream"] for m in messages] == [f"status@{market}"] * 3
    assert [(m["data"]["e"], m["data"]["s"], m["data"]["X"]) for m in messages] == [
        ("status", market, "HALTED"),
        ("status", market, "CANCEL_ONLY"),
        ("status", market, "TRADING"),
    ]


def test_a_halt_survives_a_kill_9_and_the_restarted_market_still_refuses_orders(tmp_path: pathlib.Path) -> None:
    data_dir = tmp_path / "data"
    first = start_server(tmp_path, "--data-dir", str(data_dir), ready_timeout=60.0)
    try:
        with httpx.Client(base_url=first.api, timeout=WAIT, auth=first.auth) as http:
            buyer = funded(http, "INR", "100")
            assert http.post("/admin/markets/TATA_INR/halt").status_code == 200
    finally:
        first.process.send_signal(signal.SIGKILL)
        first.process.wait(30)

    second = start_server(tmp_path, "--data-dir", str(data_dir), ready_timeout=60.0)
    try:
        with httpx.Client(base_url=second.api, timeout=WAIT, auth=second.auth) as http:
            status = listed(http, "TATA_INR")["status"]
            refused = http.post("/order", json=order("TATA_INR", buyer))
    finally:
        assert second.stop() == 0, second.log()

    assert status == "HALTED"
    assert refused.status_code == 400 and refused.json()["code"] == 211
