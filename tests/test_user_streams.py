"""Private streams with authentication on: listen keys (POST/PUT/DELETE /api/v1/listenKey, /ws?listenKey=),
nobody else's `orders@`/`balance@`, and the upgrade's own checks (Origin, connections per address, idle
connections), against `python run.py` on a free port."""

from __future__ import annotations

import asyncio
import json
import os
import pathlib
import uuid
from collections.abc import Iterator
from typing import Any

import httpx
import pytest
import websockets
from conftest import ADMIN_TOKEN, RunningServer, create_key, start_server
from redis_server import RedisServer, redis_server  # noqa: F401  (fixture)
from test_cluster import Cluster, cluster  # noqa: F401  (fixture)
from websockets.exceptions import ConnectionClosed, InvalidStatus

from openbell.client import OperatorAuth, SignedAuth, Signer
from openbell.core.types import ResultCode

WAIT = 5.0


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[RunningServer]:
    running = start_server(tmp_path_factory.mktemp("streams"), "--in-memory")
    yield running
    assert running.stop() == 0, running.log()


def unique(prefix: str) -> str:
    return f"{prefix}-{uuid.uuid4().hex[:10]}"


def signed(server: RunningServer, key: dict[str, Any]) -> httpx.Client:
    return httpx.Client(base_url=server.api, auth=SignedAuth(Signer(key["apiKey"], key["secret"])), timeout=10)


def listen_key(server: RunningServer, key: dict[str, Any]) -> str:
    with signed(server, key) as client:
        response = client.post("/listenKey")
    assert response.status_code == 200, response.text
    assert set(response.json()) == {"listenKey"}
    value: str = response.json()["listenKey"]
    return value


async def subscribe(ws: Any, *streams: str) -> dict[str, Any]:
    await ws.send(json.dumps({"method": "SUBSCRIBE", "params": list(streams), "id": 1}))
    async with asyncio.timeout(WAIT):
        while True:
            message = json.loads(await ws.recv())
            if message.get("id") == 1:
                return message  # type: ignore[no-any-return]


def refused_upgrade(url: str, **options: Any) -> InvalidStatus:
    async def connect() -> None:
        async with websockets.connect(url, open_timeout=WAIT, **options):
            pass

    with pytest.raises(InvalidStatus) as raised:
        asyncio.run(connect())
    return raised.value


def test_a_listen_key_opens_its_users_streams_and_no_one_elses(server: RunningServer) -> None:
    alice, bob = unique("alice"), unique("bob")
    alice_key = create_key(server.api, alice)
    key = listen_key(server, alice_key)
    with httpx.Client(base_url=server.api, auth=OperatorAuth(ADMIN_TOKEN), timeout=10) as admin:
        body = {"user_id": alice, "asset": "TATA", "amount": "2", "txnId": unique("txn")}
        assert admin.post("/onramp", json=body).status_code == 200

    async def scenario() -> tuple[dict[str, Any], dict[str, Any], dict[str, Any]]:
        async with websockets.connect(f"{server.ws_url}?listenKey={key}", open_timeout=WAIT) as ws:
            own = await subscribe(ws, f"orders@{alice}", f"balance@{alice}")
            others = [await subscribe(ws, f"{kind}@{bob}") for kind in ("orders", "balance")]
            other = others[0] if "error" in others[0] and "error" in others[1] else {"error": {"code": None}}
            with signed(server, alice_key) as client:
                order = {"market": "TATA_INR", "side": "sell", "price": "900.00", "quantity": "1"}
                assert client.post("/order", json=order).status_code == 200
            async with asyncio.timeout(WAIT):
                while True:
                    message = json.loads(await ws.recv())
                    if message.get("stream") == f"orders@{alice}":
                        return own, other, message

    own, other, event = asyncio.run(scenario())
    assert own == {"result": None, "id": 1}
    assert other["error"]["code"] == int(ResultCode.INVALID_USER)
    assert event["data"]


def test_without_a_listen_key_private_streams_are_refused_even_when_the_query_names_the_user(
    server: RunningServer,
) -> None:
    async def scenario() -> list[dict[str, Any]]:
        answers = []
        for url in (server.ws_url, f"{server.ws_url}?user_id=alice"):
            async with websockets.connect(url, open_timeout=WAIT) as ws:
                answers.append(await subscribe(ws, "orders@alice"))
                answers.append(await subscribe(ws, "trade@TATA_INR"))  # market streams need no key
        return answers

    answers = asyncio.run(scenario())
    assert [a.get("error", {}).get("code") for a in answers] == [int(ResultCode.INVALID_USER), None] * 2


def test_an_unknown_listen_key_is_refused_at_the_upgrade(server: RunningServer) -> None:
    refused = refused_upgrade(f"{server.ws_url}?listenKey={'0' * 64}")
    assert refused.response.status_code == 401
    assert json.loads(refused.response.body)["code"] == int(ResultCode.UNKNOWN_LISTEN_KEY)


def test_a_listen_key_is_extended_by_its_user_only_and_ended_by_delete(server: RunningServer) -> None:
    alice_key, bob_key = create_key(server.api, unique("alice")), create_key(server.api, unique("bob"))
    key = listen_key(server, alice_key)
    with signed(server, bob_key) as as_bob:
        assert as_bob.put("/listenKey", params={"listenKey": key}).json()["code"] == int(ResultCode.UNKNOWN_LISTEN_KEY)
        assert as_bob.delete("/listenKey", params={"listenKey": key}).status_code == 401
    with signed(server, alice_key) as as_alice:
        assert as_alice.put("/listenKey", params={"listenKey": key}).status_code == 200
        assert as_alice.delete("/listenKey", params={"listenKey": key}).status_code == 200
        assert as_alice.put("/listenKey", params={"listenKey": key}).status_code == 401
    assert refused_upgrade(f"{server.ws_url}?listenKey={key}").response.status_code == 401


def test_a_stream_opened_by_a_listen_key_is_told_and_closed_when_the_key_ends(tmp_path: pathlib.Path) -> None:
    # Arrange: a server that checks the listen keys of open streams every 0.2 s; one user's key, opening a v1
    # stream (/ws?listenKey=) and a Binance user data stream (/ws/<listenKey>).
    os.environ["OPENBELL_WS_LISTEN_KEY_CHECK_SECONDS"] = "0.2"
    try:
        running = start_server(tmp_path, "--in-memory")
    finally:
        del os.environ["OPENBELL_WS_LISTEN_KEY_CHECK_SECONDS"]
    try:
        alice = unique("alice")
        alice_key = create_key(running.api, alice)
        key = listen_key(running, alice_key)
        base = running.ws_url.removesuffix("/ws")

        async def scenario() -> list[tuple[dict[str, Any], int | None]]:
            async with (
                websockets.connect(f"{running.ws_url}?listenKey={key}", open_timeout=WAIT) as v1,
                websockets.connect(f"{base}/ws/{key}", open_timeout=WAIT) as v3,
            ):
                assert (await subscribe(v1, f"orders@{alice}"))["result"] is None
                await asyncio.sleep(0.5)  # a few checks pass while the key lives
                # Act: the key's user ends it.
                with signed(running, alice_key) as client:
                    assert client.delete("/listenKey", params={"listenKey": key}).status_code == 200
                ended = []
                for ws in (v1, v3):
                    last: dict[str, Any] = {}
                    try:
                        async with asyncio.timeout(WAIT):
                            while True:
                                last = json.loads(await ws.recv())
                    except ConnectionClosed as closed:
                        ended.append((last, closed.rcvd.code if closed.rcvd else None))
                return ended

        (v1_last, v1_code), (v3_last, v3_code) = asyncio.run(scenario())
    finally:
        assert running.stop() == 0, running.log()

    # Assert: each stream got its last message, saying the key expired, then a policy-violation close.
    assert v1_last["stream"] == "listenKey"
    assert v1_last["data"]["e"] == "listenKeyExpired" and v1_last["data"]["listenKey"] == key
    assert v3_last["e"] == "listenKeyExpired" and v3_last["listenKey"] == key and v3_last["E"] > 0
    assert v1_code == v3_code == 1008


def test_a_listen_key_needs_a_signed_request(server: RunningServer) -> None:
    response = httpx.post(f"{server.api}/listenKey", timeout=10)
    assert response.status_code == 401
    assert response.json()["code"] == int(ResultCode.MISSING_API_KEY)


def test_an_upgrade_from_a_page_of_another_site_is_refused_and_from_this_host_is_not(server: RunningServer) -> None:
    refused = refused_upgrade(server.ws_url, origin="https://evil.example")
    assert refused.response.status_code == 403
    assert json.loads(refused.response.body)["code"] == int(ResultCode.ORIGIN_NOT_ALLOWED)

    async def same_host() -> dict[str, Any]:
        # the cluster serves the page from the API port and the streams from another: same host, other port
        async with websockets.connect(server.ws_url, origin="http://127.0.0.1:1", open_timeout=WAIT) as ws:
            return await subscribe(ws, "trade@TATA_INR")

    assert asyncio.run(same_host()) == {"result": None, "id": 1}


def test_connections_per_address_are_capped_and_idle_ones_closed(tmp_path: pathlib.Path) -> None:
    os.environ["OPENBELL_WS_MAX_CONNECTIONS_PER_ADDRESS"] = "3"
    os.environ["OPENBELL_WS_IDLE_SECONDS_BEFORE_SUBSCRIBE"] = "1"
    try:
        limited = start_server(tmp_path, "--in-memory")
    finally:
        del os.environ["OPENBELL_WS_MAX_CONNECTIONS_PER_ADDRESS"]
        del os.environ["OPENBELL_WS_IDLE_SECONDS_BEFORE_SUBSCRIBE"]

    async def scenario() -> tuple[int, int | None, dict[str, Any]]:
        held = [await websockets.connect(limited.ws_url, open_timeout=WAIT) for _ in range(3)]
        try:
            try:
                async with websockets.connect(limited.ws_url, open_timeout=WAIT):
                    status = 101
            except InvalidStatus as refused:
                status = refused.response.status_code
            subscribed = await subscribe(held[0], "trade@TATA_INR")
            closed_code = None
            try:
                async with asyncio.timeout(WAIT):
                    await held[1].recv()
            except ConnectionClosed as closed:
                closed_code = closed.rcvd.code if closed.rcvd is not None else None
            return status, closed_code, subscribed
        finally:
            for ws in held:
                await ws.close()

    try:
        status, closed_code, subscribed = asyncio.run(scenario())
    finally:
        assert limited.stop() == 0, limited.log()
    assert status == 429
    assert closed_code == 1008  # never subscribed within a second
    assert subscribed == {"result": None, "id": 1}  # the one that subscribed stays


def test_in_the_cluster_a_listen_key_made_by_an_api_worker_opens_streams_on_a_websocket_worker(
    cluster: Cluster,  # noqa: F811
) -> None:
    cluster.engine()
    api, ws_worker = cluster.api(), cluster.ws()
    user = unique("roamer")
    key = create_key(api.api, user)
    with httpx.Client(base_url=api.api, auth=SignedAuth(Signer(key["apiKey"], key["secret"])), timeout=10) as client:
        listen = client.post("/listenKey").json()["listenKey"]

    async def scenario() -> tuple[dict[str, Any], dict[str, Any]]:
        url = f"ws://127.0.0.1:{ws_worker.port}/ws?listenKey={listen}"
        async with websockets.connect(url, open_timeout=WAIT) as ws:
            return await subscribe(ws, f"orders@{user}"), await subscribe(ws, "orders@someone-else")

    own, other = asyncio.run(scenario())
    assert own == {"result": None, "id": 1}
    assert other["error"]["code"] == int(ResultCode.INVALID_USER)
    refused = refused_upgrade(f"ws://127.0.0.1:{ws_worker.port}/ws?listenKey={'0' * 64}")
    assert refused.response.status_code == 401
