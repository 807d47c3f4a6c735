"""Binance's WebSocket API (`/ws-api/v3`) against the real embedded server: its limits (connections per address,
subscribe requests charged to the address's read bucket before any key lookup, at most a few subscribe attempts
per connection) and a subscription that ends when its API key is revoked. ccxt.pro's use of it is in
tests/test_binance_ccxt_pro.py."""

from __future__ import annotations

import asyncio
import hashlib
import hmac
import json
import os
import pathlib
import time
import urllib.request
from typing import Any

import websockets
from conftest import ADMIN_TOKEN, RunningServer, create_key, start_server
from websockets.exceptions import ConnectionClosed

WAIT = 5.0


def server_with(tmp_path: pathlib.Path, env: dict[str, str], *args: str) -> RunningServer:
    os.environ.update(env)
    try:
        return start_server(tmp_path, "--in-memory", *args)
    finally:
        for name in env:
            del os.environ[name]


def url_of(server: RunningServer) -> str:
    return server.ws_url.removesuffix("/ws") + "/ws-api/v3"


def subscribe_request(request_id: int, api_key: str, secret: str) -> dict[str, Any]:
    timestamp = int(time.time() * 1000)
    payload = f"apiKey={api_key}&timestamp={timestamp}"
    signature = hmac.new(secret.encode(), payload.encode(), hashlib.sha256).hexdigest()
    params = {"apiKey": api_key, "timestamp": timestamp, "signature": signature}
    return {"id": request_id, "method": "userDataStream.subscribe.signature", "params": params}


async def until_closed(ws: Any) -> tuple[list[dict[str, Any]], int | None]:
    """The messages a connection gets until it is closed, and the close code."""
    seen = []
    try:
        async with asyncio.timeout(WAIT):
            while True:
                seen.append(json.loads(await ws.recv()))
    except ConnectionClosed as closed:
        return seen, closed.rcvd.code if closed.rcvd else None


def test_a_subscription_ends_with_event_stream_terminated_when_its_api_key_is_revoked(tmp_path: pathlib.Path) -> None:
    # Arrange: API keys looked up again every 0.2 s; one user's subscription.
    server = server_with(tmp_path, {"OPENBELL_WS_LISTEN_KEY_CHECK_SECONDS": "0.2"})
    try:
        key = create_key(server.api, "revoked-user")

        async def scenario() -> tuple[dict[str, Any], list[dict[str, Any]], int | None]:
            async with websockets.connect(url_of(server), open_timeout=WAIT) as ws:
                await ws.send(json.dumps(subscribe_request(1, key["apiKey"], key["secret"])))
                answer = json.loads(await asyncio.wait_for(ws.recv(), WAIT))
                await asyncio.sleep(0.5)  # checks pass while the key lives
                # Act: the operator revokes the key.
                request = urllib.request.Request(
                    f"{server.api}/admin/keys/{key['apiKey']}",
                    headers={"Authorization": f"Bearer {ADMIN_TOKEN}"},
                    method="DELETE",
                )
                await asyncio.to_thread(urllib.request.urlopen, request, timeout=10)
                seen, code = await until_closed(ws)
                return answer, seen, code

        answer, seen, code = asyncio.run(scenario())
    finally:
        assert server.stop() == 0, server.log()

    # Assert: subscribed, then told the stream ended, then closed for policy.
    assert answer["status"] == 200 and answer["result"] == {"subscriptionId": 0}
    assert [(m["subscriptionId"], m["event"]["e"]) for m in seen] == [(0, "eventStreamTerminated")]
    assert code == 1008


def test_connections_per_address_are_capped_and_a_connection_gets_ten_subscribe_requests(tmp_path: pathlib.Path) -> None:
    server = server_with(tmp_path, {"OPENBELL_WS_MAX_CONNECTIONS_PER_ADDRESS": "2"})
    try:

        async def scenario() -> tuple[list[dict[str, Any]], int | None, dict[str, Any], list[Any], int | None]:
            held = [await websockets.connect(url_of(server), open_timeout=WAIT) for _ in range(2)]
            try:
                async with websockets.connect(url_of(server), open_timeout=WAIT) as third:
                    refused, refused_code = await until_closed(third)
                await held[0].send(json.dumps({"id": 7, "method": "ping"}))
                pong = json.loads(await asyncio.wait_for(held[0].recv(), WAIT))
                # Act: eleven subscribe requests (unknown keys) on one connection.
                for n in range(11):
                    await held[1].send(json.dumps(subscribe_request(n, f"no-such-key-{n}", "x")))
                answered, code = await until_closed(held[1])
                return refused, refused_code, pong, [m["error"]["code"] for m in answered], code
            finally:
                for ws in held:
                    await ws.close()

        refused, refused_code, pong, answered, code = asyncio.run(scenario())
    finally:
        assert server.stop() == 0, server.log()

    # Assert: the third connection of the address was closed at once, the two within the cap are served; each
    # subscribe request was looked up and answered, and the eleventh closed the connection.
    assert (refused, refused_code) == ([], 1008)
    assert pong == {"id": 7, "status": 200, "result": {}}
    assert (answered, code) == ([-2014] * 11, 1008)


def test_subscribe_requests_are_charged_to_the_address_read_bucket_before_any_lookup(tmp_path: pathlib.Path) -> None:
    # Arrange: an address may read once a second, with a bucket of 2.
    server = server_with(tmp_path, {}, "--reads-per-address", "1", "--rate-burst-seconds", "2")
    try:

        async def scenario() -> list[Any]:
            async with websockets.connect(url_of(server), open_timeout=WAIT) as ws:
                await asyncio.sleep(2.2)  # the bucket full again after the upgrade (a read) and the health checks
                # Act: unknown keys, as fast as the client can send them.
                for n in range(4):
                    await ws.send(json.dumps(subscribe_request(n, f"no-such-key-{n}", "x")))
                return [json.loads(await asyncio.wait_for(ws.recv(), WAIT))["error"]["code"] for _ in range(4)]

        codes = asyncio.run(scenario())
    finally:
        assert server.stop() == 0, server.log()

    # Assert: the first two were looked up (unknown key), the rest refused for the rate.
    assert codes == [-2014, -2014, -1003, -1003]
