"""Stop and take-profit orders through the REST API and the WebSocket, against `python run.py` on a free port.

One server per module; every test adds a market of its own (POST /markets) and uses its own users. Figures
are worked out by hand and compared as exact decimal strings.
"""

from __future__ import annotations

import asyncio
import uuid
from typing import Any

import httpx
import pytest
import ujson
import websockets
from conftest import RunningServer

WAIT = 10.0


def unique(prefix: str) -> str:
    return f"{prefix}-{uuid.uuid4().hex[:12]}"


def create_market(client: httpx.Client, prefix: str) -> dict[str, Any]:
    """A market of its own (`<prefix>..._INR`) added through the operator's route; the market as answered."""
    base = prefix + uuid.uuid4().hex[:10].upper()
    symbol = f"{base}_INR"
    response = client.post(
        "/markets",
        json={"symbol": symbol, "base": base, "quote": "INR", "tickSize": "0.01", "lotSize": "1", "baseDecimals": 2},
    )
    assert response.status_code == 201, response.text
    created: dict[str, Any] = response.json()
    return created


def new_market(client: httpx.Client) -> str:
    return str(create_market(client, "S")["symbol"])


def funded(client: httpx.Client, market: str, prefix: str) -> str:
    user = unique(prefix)
    for asset, amount in ((market.split("_")[0], "100"), ("INR", "100000")):
        response = client.post("/onramp", json={"user_id": user, "asset": asset, "amount": amount, "txnId": unique("t")})
        assert response.status_code == 200, response.text
    return user


def place(client: httpx.Client, **order: Any) -> dict[str, Any]:
    response = client.post("/order", json=order)
    assert response.status_code == 200, response.text
    reply: dict[str, Any] = response.json()
    return reply


def trade_at(client: httpx.Client, market: str, seller: str, buyer: str, price: str) -> dict[str, Any]:
    place(client, market=market, side="sell", price=price, quantity="1", user_id=seller)
    return place(client, market=market, side="buy", price=price, quantity="1", user_id=buyer)


def open_orders(client: httpx.Client, user: str) -> list[dict[str, Any]]:
    response = client.get("/order/open", params={"user_id": user})
    assert response.status_code == 200, response.text
    orders: list[dict[str, Any]] = response.json()
    return orders


def balance(client: httpx.Client, user: str, asset: str) -> dict[str, str]:
    response = client.get("/balance", params={"user_id": user})
    assert response.status_code == 200, response.text
    return response.json()[asset]  # type: ignore[no-any-return]


def test_a_stop_loss_limit_waits_in_open_orders_with_its_stop_price_and_triggers_on_a_trade(
    client: httpx.Client,
) -> None:
    market = new_market(client)
    base = market.split("_")[0]
    alice, bob, carol, dave = (funded(client, market, name) for name in ("alice", "bob", "carol", "dave"))
    trade_at(client, market, carol, dave, "100")
    place(client, market=market, side="buy", price="94", quantity="5", user_id=bob)

    placed = place(
        client,
        market=market,
        side="sell",
        type="STOP_LOSS_LIMIT",
        stopPrice="95",
        price="94",
        quantity="3",
        user_id=alice,
    )

    assert (placed["status"], placed["executedQty"], placed["remainingQty"], placed["fills"]) == ("NEW", "0", "3", [])
    [waiting] = open_orders(client, alice)
    assert waiting["orderId"] == placed["orderId"]
    assert (waiting["type"], waiting["stopPrice"], waiting["price"], waiting["status"], waiting["triggered"]) == (
        "stop_loss_limit",
        "95.00",
        "94.00",
        "NEW",
        False,
    )
    assert balance(client, alice, base) == {"available": "97.00", "locked": "3.00"}
    assert client.get("/depth", params={"symbol": market}).json()["asks"] == []  # off the book

    trade_at(client, market, carol, dave, "95")

    assert open_orders(client, alice) == []
    assert balance(client, alice, base) == {"available": "97.00", "locked": "0.00"}
    assert balance(client, alice, "INR") == {"available": "100282.00", "locked": "0.00"}
    trades = client.get("/trades", params={"symbol": market}).json()
    assert [(t["price"], t["quantity"]) for t in trades[:1]] == [("94.00", "3")]


def test_a_stop_market_buy_without_a_quote_budget_is_refused_with_its_reason(client: httpx.Client) -> None:
    market = new_market(client)
    alice = funded(client, market, "alice")

    response = client.post(
        "/order",
        json={"market": market, "side": "buy", "type": "stop_loss", "stopPrice": "105", "quantity": "1", "user_id": alice},
    )

    assert response.status_code == 400
    assert response.json()["code"] == 103 and "quoteQuantity" in response.json()["message"]


@pytest.mark.parametrize(
    "order",
    [
        {"type": "limit", "price": "100", "quantity": "1", "stopPrice": "99"},
        {"type": "stop_loss", "quantity": "1"},
        {"type": "stop_loss", "quantity": "1", "stopPrice": "99.001"},
        {"type": "stop_loss", "quantity": "1", "stopPrice": "0"},
    ],
    ids=["stopPrice on a limit", "no stopPrice", "stopPrice off the tick", "stopPrice zero"],
)
def test_malformed_stop_orders_get_400_and_hold_nothing(client: httpx.Client, order: dict[str, str]) -> None:
    market = new_market(client)
    alice = funded(client, market, "alice")

    response = client.post("/order", json={"market": market, "side": "sell", "user_id": alice, **order})

    assert response.status_code == 400, response.text
    assert set(response.json()) == {"code", "message"}
    assert balance(client, alice, market.split("_")[0]) == {"available": "100.00", "locked": "0.00"}


def test_a_stop_the_last_price_already_reached_is_rejected_with_stop_would_trigger(client: httpx.Client) -> None:
    market = new_market(client)
    alice, carol, dave = (funded(client, market, name) for name in ("alice", "carol", "dave"))
    trade_at(client, market, carol, dave, "100")

    response = client.post(
        "/order",
        json={"market": market, "side": "sell", "type": "stop_loss", "stopPrice": "100.5", "quantity": "1", "user_id": alice},
    )

    assert response.status_code == 400
    assert response.json()["code"] == 210
    assert open_orders(client, alice) == []


def test_a_waiting_take_profit_is_canceled_by_delete_and_releases_its_budget(client: httpx.Client) -> None:
    market = new_market(client)
    alice = funded(client, market, "alice")
    placed = place(
        client, market=market, side="buy", type="take_profit", stopPrice="90", quoteQuantity="250", user_id=alice
    )
    assert balance(client, alice, "INR") == {"available": "99750.00", "locked": "250.00"}

    response = client.request(
        "DELETE", "/order", json={"orderId": placed["orderId"], "market": market, "user_id": alice}
    )

    assert response.status_code == 200, response.text
    assert response.json()["status"] == "CANCELED"
    assert balance(client, alice, "INR") == {"available": "100000.00", "locked": "0.00"}
    assert open_orders(client, alice) == []


def test_the_owner_of_a_stop_sees_it_accepted_triggered_and_filled_on_its_orders_stream(
    client: httpx.Client, exchange: RunningServer
) -> None:
    market = new_market(client)
    alice, bob, carol, dave = (funded(client, market, name) for name in ("alice", "bob", "carol", "dave"))
    trade_at(client, market, carol, dave, "100")
    place(client, market=market, side="sell", price="106", quantity="5", user_id=bob)

    listen_key = client.post("/listenKey", params={"user_id": alice}).json()["listenKey"]  # signed as alice

    async def scenario() -> list[dict[str, Any]]:
        async with websockets.connect(f"{exchange.ws_url}?listenKey={listen_key}") as ws:
            await ws.send(ujson.dumps({"method": "SUBSCRIBE", "params": [f"orders@{alice}"], "id": 1}))
            assert ujson.loads(await asyncio.wait_for(ws.recv(), WAIT)) == {"result": None, "id": 1}
            await asyncio.to_thread(
                place,
                client,
                market=market,
                side="buy",
                type="stop_loss",
                stopPrice="105",
                quoteQuantity="300",
                user_id=alice,
            )
            await asyncio.to_thread(trade_at, client, market, carol, dave, "105")
            messages = []
            for _ in range(10):
                message = ujson.loads(await asyncio.wait_for(ws.recv(), WAIT))
                messages.append(message["data"])
                if message["data"].get("X") == "FILLED":
                    return messages
            raise AssertionError(f"no FILLED order message in {messages}")

    messages = asyncio.run(scenario())

    orders = [m for m in messages if m["e"] == "order"]
    assert [(m["X"], m["R"], m["o"], m["P"]) for m in orders] == [
        ("NEW", None, "stop_loss", "105.00"),
        ("NEW", "TRIGGERED", "stop_loss", "105.00"),
        ("FILLED", None, "stop_loss", "105.00"),
    ]
    fills = [m for m in messages if m["e"] == "fill"]
    assert [(f["p"], f["q"], f["m"]) for f in fills] == [("106.00", "2", False)]
    assert balance(client, alice, "INR") == {"available": "99788.00", "locked": "0.00"}
