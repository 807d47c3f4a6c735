"""A WebSocket fuzzer: malformed, oversized, binary and invalid UTF-8 frames, and random JSON requests, from many
connections; afterwards the server still serves others (a fresh connection subscribes and gets market data) and
logged no traceback. Against `python run.py --in-memory` with authentication on."""

from __future__ import annotations

import asyncio
import json
from collections.abc import Iterator
from typing import Any

import httpx
import pytest
import websockets
from conftest import RunningServer, start_server
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from websockets.exceptions import ConnectionClosed

WAIT = 5.0

json_values = st.recursive(
    st.none() | st.booleans() | st.integers(-(10**20), 10**20) | st.text(max_size=20),
    lambda children: st.lists(children, max_size=4) | st.dictionaries(st.text(max_size=8), children, max_size=4),
    max_leaves=10,
)
requests = st.fixed_dictionaries(
    {},
    optional={
        "method": st.sampled_from(["SUBSCRIBE", "UNSUBSCRIBE", "LIST_SUBSCRIPTIONS", "subscribe", ""]) | json_values,
        "params": st.lists(
            st.sampled_from(["trade@TATA_INR", "depth@TATA_INR", "orders@alice", "balance@bob", "kline_1m@TATA_INR"])
            | st.text(max_size=30),
            max_size=5,
        )
        | json_values,
        "id": st.integers(-5, 10**12) | st.text(max_size=70) | json_values,
    },
)
frames = st.one_of(
    requests.map(lambda r: ("text", json.dumps(r))),
    st.text(max_size=200).map(lambda t: ("text", t)),
    st.binary(max_size=200).map(lambda b: ("binary", b)),
    st.sampled_from([b"\xff\xfe", b"\xc3\x28", b"\xed\xa0\x80", b"\x80"]).map(lambda b: ("raw-text", b)),
    st.integers(4_000, 20_000).map(lambda n: ("text", "x" * n)),
)


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[RunningServer]:
    running = start_server(tmp_path_factory.mktemp("ws-fuzz"), "--in-memory")
    yield running
    assert running.stop() == 0, running.log()


async def send_all(url: str, batch: list[tuple[str, Any]]) -> None:
    try:
        async with websockets.connect(url, open_timeout=WAIT, max_size=2**20) as ws:
            for kind, payload in batch:
                # "raw-text": bytes sent as a text frame, which need not be UTF-8
                await ws.send(payload, text=kind == "raw-text" or None)
            async with asyncio.timeout(1.0):
                while True:
                    await ws.recv()
    except (ConnectionClosed, TimeoutError, OSError):
        pass


def test_random_frames_never_stop_the_server_serving_others(server: RunningServer) -> None:
    @given(batch=st.lists(frames, min_size=1, max_size=8))
    @settings(max_examples=30, deadline=None, database=None, suppress_health_check=list(HealthCheck))
    def fuzz(batch: list[tuple[str, Any]]) -> None:
        asyncio.run(send_all(server.ws_url, batch))

    fuzz()

    async def fresh_client() -> dict[str, Any]:
        async with websockets.connect(server.ws_url, open_timeout=WAIT) as ws:
            await ws.send(json.dumps({"method": "SUBSCRIBE", "params": ["trade@TATA_INR"], "id": 7}))
            async with asyncio.timeout(WAIT):
                while True:
                    reply = json.loads(await ws.recv())
                    if reply.get("id") == 7:
                        return reply  # type: ignore[no-any-return]

    assert asyncio.run(fresh_client()) == {"result": None, "id": 7}
    assert httpx.get(f"{server.api}/health", timeout=10).status_code == 200
    assert "Traceback" not in server.log(), server.log()[-3000:]
