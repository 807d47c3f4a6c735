"""WebSocket fan-out (`openbell.ws.hub`, `connection`): slow clients among fast ones.

Servers are real (`tests/ws_server_main.py` on a free port, started by `test_ws.start_exchange`) and so
are the clients (`websockets`, or a raw socket where a client must misbehave). Every wait has a timeout
and every loop a bound; nothing here asserts on time.
"""

from __future__ import annotations

import asyncio
import itertools
import pathlib
import socket
from collections.abc import Iterator
from typing import Any

import pytest
import ujson
import websockets
from test_ws import (
    MARKET,
    WAIT,
    Client,
    Exchange,
    connect,
    run,
    start_exchange,
    stop_exchange,
    subscribe,
)
from websockets.exceptions import ConnectionClosed

TRADES = 3000


@pytest.fixture()
def small_queue_exchange(tmp_path: pathlib.Path) -> Iterator[Exchange]:
    """A fresh server (trade ids start at 1) with a 200-message backlog and 16 KiB socket send buffers."""
    server = start_exchange(tmp_path, "--send-queue-limit", "200", "--socket-send-buffer", "16384")
    yield server
    stop_exchange(server)


async def read_messages(ws: Client, done: Any, limit: int = 100_000) -> list[dict[str, Any]]:
    """Messages until `done(messages)` says so (each message may take up to 10 s)."""
    messages: list[dict[str, Any]] = []
    for _ in range(limit):
        messages.append(ujson.loads(await asyncio.wait_for(ws.recv(), 10)))
        if done(messages):
            return messages
    raise AssertionError(f"still not done after {limit} messages")


def of_stream(messages: list[dict[str, Any]], kind: str) -> list[dict[str, Any]]:
    return [m["data"] for m in messages if m["stream"].startswith(f"{kind}@")]


def assert_continuous(depth: list[dict[str, Any]]) -> None:
    """Each diff starts at the update after the previous one ended."""
    for previous, diff in itertools.pairwise(depth):
        assert diff["U"] == previous["u"] + 1, f"gap in depth update ids: {previous['u']} then {diff['U']}"


# --------------------------------------------------------------------------------------------- slow clients
def test_a_slow_client_among_fast_ones_is_cut_off_alone_and_the_fast_ones_get_every_frame_in_order(
    small_queue_exchange: Exchange,
) -> None:
    ex = small_queue_exchange
    fast_subscriptions = [
        [f"trade@{MARKET}"],
        [f"trade@{MARKET}", f"depth@{MARKET}"],
        [f"depth@{MARKET}", f"trade@{MARKET}", f"ticker@{MARKET}"],
        [f"trade@{MARKET}", f"depth@{MARKET}"],  # the same streams as another: the same audience
    ]

    async def scenario() -> None:
        # The slow client subscribes to everything, then never reads; a tiny receive buffer fills fast.
        slow_sock = socket.socket()
        slow_sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
        slow_sock.connect(("127.0.0.1", ex.port))
        slow_sock.setblocking(False)
        slow = await asyncio.wait_for(websockets.connect(ex.ws_url(), sock=slow_sock, max_queue=1), WAIT)
        await subscribe(slow, f"trade@{MARKET}", f"depth@{MARKET}", f"ticker@{MARKET}", f"kline_1m@{MARKET}")
        fast = [await connect(ex, max_queue=None) for _ in fast_subscriptions]
        for ws, streams in zip(fast, fast_subscriptions):
            await subscribe(ws, *streams)
        overflows_before = (await ex.stats())["overflows"]

        def all_trades(messages: list[dict[str, Any]]) -> bool:
            trades = of_stream(messages, "trade")
            return bool(trades) and trades[-1]["t"] == TRADES

        async def read_slow_once_cut_off() -> ConnectionClosed:
            """Wait until the server has cut a client off, then read what the slow one still has."""
            for _ in range(600):
                if (await ex.stats())["overflows"] > overflows_before:
                    break
                await asyncio.sleep(0.05)
            try:
                for _ in range(100_000):
                    await asyncio.wait_for(slow.recv(), 10)
            except ConnectionClosed as closed:
                return closed
            raise AssertionError("the slow client was never closed")

        await ex.produce(rate=1500, seconds=TRADES / 1500)
        slow_closed, *received = await asyncio.gather(
            read_slow_once_cut_off(), *(read_messages(ws, all_trades) for ws in fast)
        )
        final_update_id = (await ex.depth())["lastUpdateId"]

        def depth_caught_up(messages: list[dict[str, Any]]) -> bool:
            return any(diff["u"] >= final_update_id for diff in of_stream(messages, "depth"))

        for ws, streams, messages in zip(fast, fast_subscriptions, received):
            if f"depth@{MARKET}" in streams and not depth_caught_up(messages):
                messages += await read_messages(ws, depth_caught_up)
        overflows = (await ex.stats())["overflows"] - overflows_before
        for ws in fast:  # every fast client is still served
            assert ujson.loads(await _call(ws, {"method": "LIST_SUBSCRIPTIONS", "id": 5}))["id"] == 5
            await ws.close()

        assert overflows == 1
        assert slow_closed.rcvd is not None
        assert (slow_closed.rcvd.code, slow_closed.rcvd.reason) == (1008, "send queue overflow: resync from REST")
        trade_sequences = [of_stream(messages, "trade") for messages in received]
        for trades in trade_sequences:
            assert [trade["t"] for trade in trades] == list(range(1, TRADES + 1))
            assert trades == trade_sequences[0]
        for messages, streams in zip(received, fast_subscriptions):
            if f"depth@{MARKET}" in streams:
                depth = of_stream(messages, "depth")
                assert depth[0]["U"] == 1 and depth[-1]["u"] == final_update_id
                assert_continuous(depth)

    run(scenario(), timeout=180)


async def _call(ws: Client, message: dict[str, Any]) -> str:
    """Send a request and return the text of its reply (skipping data messages still arriving)."""
    await ws.send(ujson.dumps(message))
    for _ in range(100_000):
        text = await asyncio.wait_for(ws.recv(), WAIT)
        if '"stream"' not in text[:12]:
            return text  # type: ignore[no-any-return]
    raise AssertionError("no reply")
