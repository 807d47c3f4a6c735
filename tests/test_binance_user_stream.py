"""The Binance user data stream: listen keys through `/api/v3/userDataStream` (the API key, no signature) as the
unmodified ccxt REST client calls it, and `/ws/<listenKey>` carrying that user's `executionReport` and
`outboundAccountPosition`, embedded and in the cluster.

ccxt.pro 4.5.90 does not take this path for spot (its `watch_orders`, `watch_balance` and `watch_my_trades`
subscribe through Binance's WebSocket API, `/ws-api/v3`: tests/test_binance_ccxt_pro.py), so the streams are read
here with a plain WebSocket client, as Binance documents them."""

from __future__ import annotations

import asyncio
import json
import uuid
from collections.abc import Iterator
from typing import Any

import ccxt
import httpx
import pytest
import websockets
from binance_clients import BinanceKeys, deposit, rest_client
from conftest import RunningServer, start_server
from redis_server import redis_server  # noqa: F401  (fixture)
from test_cluster import Cluster, cluster  # noqa: F401  (fixture)
from test_cluster import deposit as cluster_deposit
from websockets.exceptions import InvalidStatus

SYMBOL = "TATA/INR"
WAIT = 10.0


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[RunningServer]:
    running = start_server(tmp_path_factory.mktemp("user-stream"), "--in-memory")
    yield running
    assert running.stop() == 0, running.log()


def unique(prefix: str) -> str:
    return f"{prefix}-{uuid.uuid4().hex[:10]}"


def user_stream_key(client: ccxt.binance) -> str:
    """A listen key as ccxt.pro asks for one: `POST /api/v3/userDataStream`, the key header only."""
    key: str = client.publicPostUserDataStream()["listenKey"]
    return key


async def events_until(ws: Any, done: Any, limit: int = 50) -> list[dict[str, Any]]:
    """Messages of `ws` until one satisfies `done` (at most `limit` messages, WAIT seconds)."""
    seen: list[dict[str, Any]] = []
    async with asyncio.timeout(WAIT):
        for _ in range(limit):
            message = json.loads(await ws.recv())
            seen.append(message)
            if done(message):
                return seen
    return seen


async def quiet(ws: Any, seconds: float) -> list[dict[str, Any]]:
    """What `ws` receives within `seconds`."""
    seen: list[dict[str, Any]] = []
    try:
        async with asyncio.timeout(seconds):
            for _ in range(100):
                seen.append(json.loads(await ws.recv()))
    except TimeoutError:
        pass
    return seen


def refused(url: str) -> InvalidStatus:
    async def connect() -> None:
        async with websockets.connect(url, open_timeout=WAIT):
            pass

    with pytest.raises(InvalidStatus) as raised:
        asyncio.run(connect())
    return raised.value


def test_a_user_data_stream_carries_the_users_order_reports_and_balances_and_no_one_elses(
    server: RunningServer,
) -> None:
    keys = BinanceKeys(server.base_url)
    seller, buyer = unique("seller"), unique("buyer")
    deposit(server.base_url, seller, "TATA", "10", unique("txn"))
    deposit(server.base_url, buyer, "INR", "100000", unique("txn"))
    as_seller, as_buyer = rest_client(keys, seller), rest_client(keys, buyer)
    listen_key = user_stream_key(as_seller)

    async def scenario() -> tuple[list[dict[str, Any]], list[dict[str, Any]], dict[str, Any]]:
        async with websockets.connect(f"{server.ws_url}/{listen_key}", open_timeout=WAIT) as ws:
            await ws.send(json.dumps({"method": "LIST_SUBSCRIPTIONS", "id": 1}))
            listed = json.loads(await ws.recv())
            await asyncio.to_thread(as_buyer.create_order, SYMBOL, "limit", "buy", 1, 800)  # another user's
            ask = await asyncio.to_thread(as_seller.create_order, SYMBOL, "limit", "sell", 2, 900)
            placed = await events_until(ws, lambda m: m.get("e") == "executionReport" and m["i"] == int(ask["id"]))
            await asyncio.to_thread(as_buyer.create_order, SYMBOL, "limit", "buy", 2, 900)
            filled = await events_until(ws, lambda m: m.get("e") == "executionReport" and m["X"] == "FILLED")
            filled += await quiet(ws, 0.5)
            return placed, filled, listed

    placed, filled, listed = asyncio.run(scenario())

    assert listed == {"result": [], "id": 1}
    reports = [m for m in placed + filled if m.get("e") == "executionReport"]
    assert {m["s"] for m in reports} == {"TATAINR"}
    assert {m["S"] for m in reports} == {"SELL"}  # the buyer's orders are not on the seller's stream
    new, *fills = reports
    assert (new["x"], new["X"], new["o"], new["p"], new["q"]) == ("NEW", "NEW", "LIMIT", "900.00", "2")
    assert [(m["x"], m["X"], m["l"], m["L"], m["m"]) for m in fills] == [("TRADE", "FILLED", "2", "900.00", True)]
    positions = [m for m in placed + filled if m.get("e") == "outboundAccountPosition"]
    assert positions and all(set(m) >= {"E", "u", "B"} for m in positions)
    latest = {b["a"]: (b["f"], b["l"]) for m in positions for b in m["B"]}
    assert latest["TATA"] == ("8.00", "0.00")  # 10 deposited, 2 sold and settled
    assert all(m.get("e") in ("executionReport", "outboundAccountPosition") for m in placed + filled)


def test_a_listen_key_is_kept_alive_and_ended_by_its_user_only(server: RunningServer) -> None:
    keys = BinanceKeys(server.base_url)
    alice, bob = rest_client(keys, unique("alice")), rest_client(keys, unique("bob"))
    listen_key = user_stream_key(alice)

    for call in (bob.publicPutUserDataStream, bob.publicDeleteUserDataStream):
        with pytest.raises(ccxt.BaseError) as raised:
            call({"listenKey": listen_key})
        assert '"code":-1125' in str(raised.value).replace(" ", "")
    assert alice.publicPutUserDataStream({"listenKey": listen_key}) == {}
    assert alice.publicDeleteUserDataStream({"listenKey": listen_key}) == {}
    with pytest.raises(ccxt.BaseError):
        alice.publicPutUserDataStream({"listenKey": listen_key})
    assert refused(f"{server.ws_url}/{listen_key}").response.status_code == 401


def test_an_unknown_listen_key_is_refused_at_the_upgrade(server: RunningServer) -> None:
    rejected = refused(f"{server.ws_url}/{'0' * 64}")

    assert rejected.response.status_code == 401
    assert json.loads(rejected.response.body) == {"code": -1125, "msg": "This listenKey does not exist."}


def test_a_listen_key_needs_a_known_api_key_and_no_signature(server: RunningServer) -> None:
    url = f"{server.base_url}/api/v3/userDataStream"
    api_key, _ = BinanceKeys(server.base_url).key_for(unique("holder"))

    without_key = httpx.post(url, timeout=10)
    unknown_key = httpx.post(url, headers={"X-MBX-APIKEY": "f" * 64}, timeout=10)
    key_only = httpx.post(url, headers={"X-MBX-APIKEY": api_key}, timeout=10)

    assert (without_key.status_code, without_key.json()["code"]) == (401, -2014)
    assert (unknown_key.status_code, unknown_key.json()["code"]) == (401, -2014)
    assert key_only.status_code == 200 and len(key_only.json()["listenKey"]) == 64


def test_no_subscribe_reaches_another_users_data_stream(server: RunningServer) -> None:
    victim = unique("victim")
    listen_key = user_stream_key(rest_client(BinanceKeys(server.base_url), unique("snoop")))

    async def scenario() -> dict[str, Any]:
        async with websockets.connect(f"{server.ws_url}/{listen_key}", open_timeout=WAIT) as ws:
            await ws.send(json.dumps({"method": "SUBSCRIBE", "params": [f"user:{victim}"], "id": 7}))
            return json.loads(await ws.recv())  # type: ignore[no-any-return]

    answer = asyncio.run(scenario())
    assert answer["id"] == 7 and answer["error"]["code"] == 2


def test_in_the_cluster_a_listen_key_made_by_an_api_worker_streams_on_a_websocket_worker(
    cluster: Cluster,  # noqa: F811
) -> None:
    cluster.engine()
    api, ws_worker = cluster.api(), cluster.ws()
    user = unique("roamer")
    assert cluster_deposit(api, user, "TATA", "5", unique("txn")).status_code == 200
    client = rest_client(BinanceKeys(f"http://127.0.0.1:{api.port}"), user)
    listen_key = user_stream_key(client)

    async def scenario() -> list[dict[str, Any]]:
        async with websockets.connect(f"ws://127.0.0.1:{ws_worker.port}/ws/{listen_key}", open_timeout=WAIT) as ws:
            order = await asyncio.to_thread(client.create_order, SYMBOL, "limit", "sell", 1, 900)
            return await events_until(ws, lambda m: m.get("e") == "executionReport" and m["i"] == int(order["id"]))

    seen = asyncio.run(scenario())
    report = seen[-1]
    assert (report["x"], report["S"], report["p"]) == ("NEW", "SELL", "900.00")
    assert refused(f"ws://127.0.0.1:{ws_worker.port}/ws/{'0' * 64}").response.status_code == 401
