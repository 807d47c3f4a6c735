"""WebSocket fan-out (`openbell.ws.hub`, `connection`, `throttle`): slow clients among fast ones, the
throttled depth stream, and clients that send what is not UTF-8.

Servers are real (`tests/ws_server_main.py` on a free port, started by `test_ws.start_exchange`) and so
are the clients (`websockets`, or a raw socket where a client must misbehave). Every wait has a timeout
and every loop a bound; nothing here asserts on time.
"""

from __future__ import annotations

import asyncio
import itertools
import pathlib
import random
import socket
from collections.abc import Iterator
from decimal import Decimal
from typing import Any

import pytest
import ujson
import websockets
from hypothesis import given, settings
from hypothesis import strategies as st
from test_ws import (
    MARKET,
    WAIT,
    Client,
    Exchange,
    apply_levels,
    connect,
    run,
    start_exchange,
    stop_exchange,
    subscribe,
)
from websockets.exceptions import ConnectionClosed

from openbell.ws.throttle import DepthMerge

TRADES = 3000


@pytest.fixture()
def small_queue_exchange(tmp_path: pathlib.Path) -> Iterator[Exchange]:
    """A fresh server (trade ids start at 1) with a 200-message backlog and 16 KiB socket send buffers."""
    server = start_exchange(tmp_path, "--send-queue-limit", "200", "--socket-send-buffer", "16384")
    yield server
    stop_exchange(server)


@pytest.fixture()
def info_log_exchange(tmp_path: pathlib.Path) -> Iterator[Exchange]:
    server = start_exchange(tmp_path, "--log-level", "info")
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


# --------------------------------------------------------------------------------------------- throttled depth
def apply_diffs(snapshot: dict[str, Any], diffs: list[dict[str, Any]]) -> tuple[list[Any], list[Any]]:
    """The book that `snapshot` plus the diffs after it make (the procedure a client follows)."""
    bids = {Decimal(p): q for p, q in snapshot["bids"]}
    asks = {Decimal(p): q for p, q in snapshot["asks"]}
    last = snapshot["lastUpdateId"]
    applied = 0
    for diff in diffs:
        if diff["u"] <= last:
            continue
        if applied == 0:
            assert diff["U"] <= last + 1 <= diff["u"], "the first diff after the snapshot must cover it"
        apply_levels(bids, diff["b"])
        apply_levels(asks, diff["a"])
        applied += 1
    assert applied > 0
    return sorted(bids.items(), reverse=True), sorted(asks.items())


def test_throttled_depth_stream_rebuilds_the_same_book_as_the_full_one(tmp_path: pathlib.Path) -> None:
    ex = start_exchange(tmp_path)
    users = [f"throttle-{i}" for i in range(4)]
    rng = random.Random(11)

    async def trade_randomly(count: int) -> None:
        open_orders: list[tuple[str, int]] = []
        for _ in range(count):
            if open_orders and rng.random() < 0.25:
                user, order_id = open_orders.pop(rng.randrange(len(open_orders)))
                await ex.cancel(user, order_id)
                continue
            price = f"{rng.randint(9_500, 10_500) / 100:.2f}"
            user = rng.choice(users)
            reply = await ex.place(user, rng.choice(["buy", "sell"]), price, str(rng.randint(1, 20)))
            if reply["code"] == 0:
                open_orders.append((user, reply["seq"]))

    async def scenario() -> None:
        await ex.fund(*users)
        async with await connect(ex, max_queue=None) as full, await connect(ex, max_queue=None) as throttled:
            await subscribe(full, f"depth@{MARKET}")
            await subscribe(throttled, f"depth@{MARKET}@100ms")
            await trade_randomly(40)
            snapshot = await ex.depth()
            await trade_randomly(160)
            final = await ex.depth()

            def caught_up(messages: list[dict[str, Any]]) -> bool:
                return messages[-1]["data"]["u"] >= final["lastUpdateId"]

            full_diffs = [m["data"] for m in await read_messages(full, caught_up)]
            throttled_messages = await read_messages(throttled, caught_up)

        assert {m["stream"] for m in throttled_messages} == {f"depth@{MARKET}@100ms"}
        throttled_diffs = [m["data"] for m in throttled_messages]
        assert_continuous(full_diffs)
        assert_continuous(throttled_diffs)
        assert len(throttled_diffs) <= len(full_diffs)
        expected = (
            [(Decimal(p), q) for p, q in final["bids"]],
            [(Decimal(p), q) for p, q in final["asks"]],
        )
        assert apply_diffs(snapshot, full_diffs) == expected
        assert apply_diffs(snapshot, throttled_diffs) == expected
        for diff in throttled_diffs:  # a level appears once per side, best first
            prices = [Decimal(p) for p, _ in diff["b"]]
            assert prices == sorted(set(prices), reverse=True)
            prices = [Decimal(p) for p, _ in diff["a"]]
            assert prices == sorted(set(prices))

    try:
        run(scenario(), timeout=120)
    finally:
        stop_exchange(ex)


def test_throttled_depth_needs_a_known_interval_and_market(tmp_path: pathlib.Path) -> None:
    ex = start_exchange(tmp_path)

    async def scenario() -> None:
        async with await connect(ex) as ws:
            for stream in (f"depth@{MARKET}@5ms", f"depth@{MARKET}@", "depth@NOPE_INR@100ms", f"trade@{MARKET}@100ms"):
                reply = ujson.loads(await _call(ws, {"method": "SUBSCRIBE", "params": [stream], "id": 1}))
                assert "unknown stream" in reply["error"]["message"], stream

    try:
        run(scenario())
    finally:
        stop_exchange(ex)


levels = st.lists(st.tuples(st.integers(1, 12), st.integers(0, 5)), max_size=4, unique_by=lambda level: level[0])


@settings(max_examples=300, deadline=None)
@given(st.lists(st.tuples(levels.map(tuple), levels.map(tuple), st.booleans()), min_size=1, max_size=40))
def test_merged_diffs_leave_the_same_book_as_the_diffs_one_by_one(steps: list[tuple[Any, Any, bool]]) -> None:
    """Whatever the diffs and wherever the intervals end, merged diffs make the same book, without gaps."""

    class Diff:
        def __init__(self, update_id: int, bids: Any, asks: Any) -> None:
            self.market, self.ts = MARKET, update_id
            self.first_update_id = self.last_update_id = update_id
            self.bids, self.asks = bids, asks

    def apply(book: dict[str, dict[int, int]], bids: Any, asks: Any) -> None:
        for side, changes in (("b", bids), ("a", asks)):
            for price, quantity in changes:
                if quantity == 0:
                    book[side].pop(price, None)
                else:
                    book[side][price] = quantity

    one_by_one: dict[str, dict[int, int]] = {"b": {}, "a": {}}
    merged_book: dict[str, dict[int, int]] = {"b": {}, "a": {}}
    merge = DepthMerge(MARKET)
    taken = []
    for update_id, (bids, asks, interval_ends) in enumerate(steps, start=1):
        apply(one_by_one, bids, asks)
        merge.add(Diff(update_id, bids, asks))
        if interval_ends:
            taken.append(merge.take())
            assert merge.take() is None
    taken.append(merge.take())
    merged = [diff for diff in taken if diff is not None]
    for diff in merged:
        apply(merged_book, diff.bids, diff.asks)
    assert merged_book == one_by_one
    assert merged[0].first_update_id == 1 and merged[-1].last_update_id == len(steps)
    for previous, diff in itertools.pairwise(merged):
        assert diff.first_update_id == previous.last_update_id + 1


# --------------------------------------------------------------------------------------------- invalid input
def masked_text_frame(payload: bytes) -> bytes:
    """A client text frame (masked with a zero key, which leaves the payload as it is)."""
    assert len(payload) < 126
    return bytes((0x81, 0x80 | len(payload))) + b"\x00\x00\x00\x00" + payload


def test_a_text_frame_that_is_not_utf8_closes_with_1007_and_logs_one_line(info_log_exchange: Exchange) -> None:
    ex = info_log_exchange
    with socket.create_connection(("127.0.0.1", ex.port), timeout=WAIT) as sock:
        sock.sendall(
            b"GET /ws HTTP/1.1\r\nHost: 127.0.0.1\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n"
            b"Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 13\r\n\r\n"
        )
        received = b""
        for _ in range(100):
            received += sock.recv(4096)
            if b"\r\n\r\n" in received:
                break
        assert received.startswith(b"HTTP/1.1 101")
        received = received.split(b"\r\n\r\n", 1)[1]
        sock.sendall(masked_text_frame(b"\xff\xfe not UTF-8") * 50)
        for _ in range(100):
            if len(received) >= 4 and received[0] == 0x88:
                break
            try:
                chunk = sock.recv(4096)
            except TimeoutError:
                break
            if not chunk:
                break
            received += chunk
    assert received[:1] == b"\x88", f"expected a close frame, got {received[:20]!r}"
    assert int.from_bytes(received[2:4], "big") == 1007

    async def still_serving() -> None:  # the server is fine, and logged before answering this
        async with await connect(ex) as ws:
            assert ujson.loads(await _call(ws, {"method": "LIST_SUBSCRIPTIONS", "id": 1})) == {"result": [], "id": 1}

    run(still_serving())
    log = ex.log()
    assert "Traceback" not in log and "never retrieved" not in log
    assert len([line for line in log.splitlines() if "not UTF-8" in line]) == 1
