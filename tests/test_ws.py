"""The WebSocket server (`openbell.ws`): protocol, streams, depth resync, limits and slow clients.

Every test talks to a real server (`tests/ws_server_main.py`: an engine plus `install_websocket`) on a
free port, with the real `websockets` client. Orders go in through the test server's
`/_test/command` route (see `Exchange`); when the REST API is ready only `Exchange` needs to change.
Every wait has a timeout and every loop a bound.
"""

from __future__ import annotations

import asyncio
import os
import pathlib
import random
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from decimal import Decimal
from typing import Any

import httpx
import pytest
import ujson
import websockets
from conftest import free_port
from websockets.exceptions import ConnectionClosed

from openbell.core.marketdata import INTERVALS

ROOT = pathlib.Path(__file__).resolve().parent.parent
MARKET = "TATA_INR"
WAIT = 5.0
"""Seconds any single expected message may take."""


# --------------------------------------------------------------------------------------------- server
class Exchange:
    """A running test server: WebSocket URL plus the few commands the tests need."""

    def __init__(self, process: subprocess.Popen[bytes], port: int, log_path: pathlib.Path) -> None:
        self.process = process
        self.port = port
        self.log_path = log_path
        self.http = httpx.AsyncClient(base_url=f"http://127.0.0.1:{port}", timeout=10)

    def ws_url(self, user: str | None = None) -> str:
        url = f"ws://127.0.0.1:{self.port}/ws"
        return f"{url}?user_id={user}" if user is not None else url

    async def command(self, **body: Any) -> dict[str, Any]:
        async with httpx.AsyncClient(base_url=f"http://127.0.0.1:{self.port}", timeout=10) as client:
            response = await client.post("/_test/command", json=body)
        response.raise_for_status()
        return response.json()  # type: ignore[no-any-return]

    async def deposit(self, user: str, asset: str, amount: str) -> None:
        reply = await self.command(type="deposit", user_id=user, asset=asset, amount=amount)
        assert reply["code"] == 0, reply

    async def fund(self, *users: str) -> None:
        for user in users:
            await self.deposit(user, "TATA", "100000")
            await self.deposit(user, "INR", "10000000")

    async def place(self, user: str, side: str, price: str, quantity: str, **extra: Any) -> dict[str, Any]:
        return await self.command(type="place", user_id=user, side=side, price=price, quantity=quantity, **extra)

    async def cancel(self, user: str, order_id: int | str) -> dict[str, Any]:
        return await self.command(type="cancel", user_id=user, order_id=int(order_id))

    async def depth(self) -> dict[str, Any]:
        return await self.command(type="depth", limit=5000)

    async def stats(self) -> dict[str, Any]:
        async with httpx.AsyncClient(base_url=f"http://127.0.0.1:{self.port}", timeout=10) as client:
            return (await client.get("/_test/stats")).json()  # type: ignore[no-any-return]

    async def produce(self, rate: float, seconds: float) -> None:
        async with httpx.AsyncClient(base_url=f"http://127.0.0.1:{self.port}", timeout=10) as client:
            (await client.post("/_test/produce", json={"rate": rate, "seconds": seconds})).raise_for_status()

    def log(self) -> str:
        return self.log_path.read_text(errors="replace")


def start_exchange(tmp_dir: pathlib.Path, *flags: str, ready_timeout: float = 30.0) -> Exchange:
    port = free_port()
    log_path = tmp_dir / f"ws-server-{port}.log"
    process = subprocess.Popen(
        [sys.executable, "tests/ws_server_main.py", "--port", str(port), *flags],
        cwd=ROOT,
        stdout=log_path.open("wb"),
        stderr=subprocess.STDOUT,
        env={**os.environ, "PYTHONUNBUFFERED": "1"},
    )
    exchange = Exchange(process, port, log_path)
    deadline = time.monotonic() + ready_timeout
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise RuntimeError(f"test server exited with {process.returncode}:\n{exchange.log()}")
        try:
            if httpx.get(f"http://127.0.0.1:{port}/_test/stats", timeout=1).status_code == 200:
                return exchange
        except httpx.HTTPError:
            pass
        time.sleep(0.1)
    stop_exchange(exchange)
    raise RuntimeError(f"test server not ready in {ready_timeout}s:\n{exchange.log()}")


def stop_exchange(exchange: Exchange) -> int:
    if exchange.process.poll() is None:
        exchange.process.send_signal(signal.SIGTERM)
        try:
            exchange.process.wait(15)
        except subprocess.TimeoutExpired:
            exchange.process.kill()
            exchange.process.wait(5)
    return exchange.process.returncode


@pytest.fixture(scope="module")
def exchange(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Exchange]:
    """Default settings; shared by the tests of this module that do not depend on exact totals."""
    server = start_exchange(tmp_path_factory.mktemp("ws"))
    yield server
    code = stop_exchange(server)
    assert code == 0, f"test server exited with {code}:\n{server.log()}"


@pytest.fixture()
def fresh_exchange(tmp_path: pathlib.Path) -> Iterator[Exchange]:
    """A server of its own, for tests that check totals (ticker, klines, trade ids)."""
    server = start_exchange(tmp_path)
    yield server
    stop_exchange(server)


@pytest.fixture(scope="module")
def strict_exchange(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Exchange]:
    """Small limits: 5 subscriptions, 8 connections, a 200-message send queue, 16 KiB socket send buffers."""
    server = start_exchange(
        tmp_path_factory.mktemp("ws-strict"),
        "--max-subscriptions",
        "5",
        "--max-connections",
        "8",
        "--send-queue-limit",
        "200",
        "--socket-send-buffer",
        "16384",
    )
    yield server
    stop_exchange(server)


# --------------------------------------------------------------------------------------------- client
Client = Any  # websockets.asyncio.client.ClientConnection


async def connect(exchange: Exchange, user: str | None = None, **options: Any) -> Client:
    return await asyncio.wait_for(websockets.connect(exchange.ws_url(user), **options), WAIT)


async def call(ws: Client, message: dict[str, Any] | str) -> dict[str, Any]:
    """Send a request and return its reply (data messages arriving first are not expected here)."""
    await ws.send(message if isinstance(message, str) else ujson.dumps(message))
    return ujson.loads(await asyncio.wait_for(ws.recv(), WAIT))  # type: ignore[no-any-return]


async def subscribe(ws: Client, *streams: str, request_id: int = 1) -> None:
    reply = await call(ws, {"method": "SUBSCRIBE", "params": list(streams), "id": request_id})
    assert reply == {"result": None, "id": request_id}


async def next_message(ws: Client, timeout: float = WAIT) -> dict[str, Any]:
    return ujson.loads(await asyncio.wait_for(ws.recv(), timeout))  # type: ignore[no-any-return]


async def collect(ws: Client, count: int, timeout: float = WAIT) -> list[dict[str, Any]]:
    """Exactly the next `count` messages."""
    return [await next_message(ws, timeout) for _ in range(count)]


async def collect_until_quiet(ws: Client, quiet: float = 0.5, limit: int = 10_000) -> list[dict[str, Any]]:
    """Messages until none comes for `quiet` seconds."""
    out: list[dict[str, Any]] = []
    for _ in range(limit):
        try:
            out.append(await next_message(ws, quiet))
        except TimeoutError:
            return out
    raise AssertionError(f"more than {limit} messages")


def by_stream(messages: list[dict[str, Any]]) -> dict[str, list[dict[str, Any]]]:
    out: dict[str, list[dict[str, Any]]] = {}
    for message in messages:
        out.setdefault(message["stream"], []).append(message["data"])
    return out


def run(coroutine: Any, timeout: float = 60.0) -> Any:
    return asyncio.run(asyncio.wait_for(coroutine, timeout))


# --------------------------------------------------------------------------------------------- protocol
def test_subscribe_list_and_unsubscribe_answer_with_the_request_id(exchange: Exchange) -> None:
    async def scenario() -> None:
        async with await connect(exchange) as ws:
            await subscribe(ws, f"trade@{MARKET}", f"depth@{MARKET}", request_id=7)
            assert await call(ws, {"method": "LIST_SUBSCRIPTIONS", "id": 8}) == {
                "result": [f"depth@{MARKET}", f"trade@{MARKET}"],
                "id": 8,
            }
            assert await call(ws, {"method": "UNSUBSCRIBE", "params": [f"trade@{MARKET}"], "id": "x9"}) == {
                "result": None,
                "id": "x9",
            }
            assert await call(ws, {"method": "LIST_SUBSCRIPTIONS", "id": 10}) == {
                "result": [f"depth@{MARKET}"],
                "id": 10,
            }

    run(scenario())


def test_unsubscribed_stream_stops_delivering(exchange: Exchange) -> None:
    async def scenario() -> None:
        await exchange.fund("unsub-a", "unsub-b")
        async with await connect(exchange) as ws:
            await subscribe(ws, f"trade@{MARKET}")
            await exchange.place("unsub-a", "sell", "50.00", "1")
            await exchange.place("unsub-b", "buy", "50.00", "1")
            assert (await next_message(ws))["data"]["e"] == "trade"
            assert (await call(ws, {"method": "UNSUBSCRIBE", "params": [f"trade@{MARKET}"], "id": 2}))["result"] is None
            await exchange.place("unsub-a", "sell", "50.00", "1")
            await exchange.place("unsub-b", "buy", "50.00", "1")
            assert await collect_until_quiet(ws, quiet=0.5) == []

    run(scenario())


@pytest.mark.parametrize(
    ("request_text", "expected_id", "message_part"),
    [
        ("{not json", None, "malformed JSON"),
        ("[1, 2]", None, "JSON object"),
        ('{"method": "SUBSCRIBE", "params": ["trade@TATA_INR"], "id": null}', None, "id must be"),
        ('{"method": "SUBSCRIBE", "params": ["trade@TATA_INR"], "id": true}', None, "id must be"),
        ('{"method": "SUBSCRIBE", "params": "trade@TATA_INR", "id": 3}', 3, "params must be"),
        ('{"method": "SUBSCRIBE", "params": [], "id": 4}', 4, "params must be"),
        ('{"method": "SUBSCRIBE", "params": [5], "id": 5}', 5, "params must be"),
        ('{"method": "PUBLISH", "params": ["trade@TATA_INR"], "id": 6}', 6, "method must be"),
    ],
)
def test_malformed_request_gets_an_error_and_the_connection_stays_open(
    exchange: Exchange, request_text: str, expected_id: object, message_part: str
) -> None:
    async def scenario() -> None:
        async with await connect(exchange) as ws:
            reply = await call(ws, request_text)
            assert reply["id"] == expected_id
            assert reply["error"]["code"] == 100
            assert message_part in reply["error"]["message"]
            assert await call(ws, {"method": "LIST_SUBSCRIPTIONS", "id": 99}) == {"result": [], "id": 99}

    run(scenario())


@pytest.mark.parametrize(
    "stream",
    ["trade@NOPE_INR", "depth@", "candles@TATA_INR", "kline_2m@TATA_INR", "trade", "orders@bad user", "x" * 200],
)
def test_unknown_stream_is_refused_and_nothing_is_subscribed(exchange: Exchange, stream: str) -> None:
    async def scenario() -> None:
        async with await connect(exchange) as ws:
            reply = await call(ws, {"method": "SUBSCRIBE", "params": [f"trade@{MARKET}", stream], "id": 1})
            assert reply["id"] == 1
            assert reply["error"]["code"] == 100
            assert "unknown stream" in reply["error"]["message"]
            assert await call(ws, {"method": "LIST_SUBSCRIPTIONS", "id": 2}) == {"result": [], "id": 2}

    run(scenario())


def test_every_kline_interval_the_rest_api_serves_can_be_streamed(exchange: Exchange) -> None:
    streams = [f"kline_{interval}@{MARKET}" for interval in INTERVALS]

    async def scenario() -> None:
        async with await connect(exchange) as ws:
            for start in range(0, len(streams), 6):
                reply = await call(ws, {"method": "SUBSCRIBE", "params": streams[start : start + 6], "id": start})
                assert reply == {"result": None, "id": start}, reply
            listed = await call(ws, {"method": "LIST_SUBSCRIPTIONS", "id": 99})
            assert listed["result"] == sorted(streams)

    run(scenario())


def test_subscribing_beyond_the_limit_is_refused_whole(strict_exchange: Exchange) -> None:
    streams = [f"{kind}@{MARKET}" for kind in ("trade", "depth", "ticker", "kline_1m", "kline_5m", "kline_1h")]

    async def scenario() -> None:
        async with await connect(strict_exchange) as ws:
            await subscribe(ws, *streams[:3])
            reply = await call(ws, {"method": "SUBSCRIBE", "params": streams[3:], "id": 2})
            assert reply["id"] == 2
            assert reply["error"]["code"] == 100
            assert "too many subscriptions" in reply["error"]["message"]
            listed = await call(ws, {"method": "LIST_SUBSCRIPTIONS", "id": 3})
            assert listed["result"] == sorted(streams[:3])
            await subscribe(ws, *streams[3:5], request_id=4)  # exactly at the limit

    run(scenario())


def test_another_users_private_streams_are_refused(exchange: Exchange) -> None:
    async def scenario() -> None:
        async with await connect(exchange, "alice") as ws:
            for stream in ("orders@bob", "balance@bob"):
                reply = await call(ws, {"method": "SUBSCRIBE", "params": [stream], "id": 1})
                assert reply["error"]["code"] == 106
                assert "forbidden" in reply["error"]["message"]
            await subscribe(ws, "orders@alice", "balance@alice", request_id=2)
        async with await connect(exchange) as anonymous:
            reply = await call(anonymous, {"method": "SUBSCRIBE", "params": ["orders@alice"], "id": 3})
            assert reply["error"]["code"] == 106

    run(scenario())


def test_message_larger_than_the_limit_closes_with_1009(exchange: Exchange) -> None:
    async def scenario() -> None:
        async with await connect(exchange) as ws:
            await ws.send("x" * 5000)
            with pytest.raises(ConnectionClosed) as closed:
                await asyncio.wait_for(ws.recv(), WAIT)
            assert closed.value.rcvd is not None and closed.value.rcvd.code == 1009

    run(scenario())


def test_client_ping_is_answered(exchange: Exchange) -> None:
    async def scenario() -> None:
        async with await connect(exchange) as ws:
            pong = await ws.ping(b"hello")
            await asyncio.wait_for(pong, WAIT)

    run(scenario())


def test_server_drops_a_connection_that_never_answers_pings(tmp_path: pathlib.Path) -> None:
    """A raw TCP client completes the handshake, then ignores everything: the server gives up on it."""
    server = start_exchange(tmp_path, "--ping-interval", "0.5", "--ping-timeout", "0.5")
    sock = socket.create_connection(("127.0.0.1", server.port), timeout=WAIT)
    try:
        sock.sendall(
            b"GET /ws HTTP/1.1\r\nHost: 127.0.0.1\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n"
            b"Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 13\r\n\r\n"
        )
        received = b""
        deadline = time.monotonic() + 10
        while time.monotonic() < deadline:
            chunk = sock.recv(4096)
            if not chunk:
                break  # the server closed the connection
            received += chunk
        else:
            pytest.fail("the server kept a dead connection open for 10 s")
        assert received.startswith(b"HTTP/1.1 101")
        assert b"\x89" in received  # at least one ping frame was sent
    finally:
        sock.close()
        stop_exchange(server)


def test_connections_beyond_the_limit_are_closed_with_1013(strict_exchange: Exchange) -> None:
    async def scenario() -> None:
        for _ in range(50):
            if (await strict_exchange.stats())["connections"] == 0:
                break
            await asyncio.sleep(0.1)
        clients = [await connect(strict_exchange) for _ in range(8)]
        try:
            for ws in clients:
                assert (await call(ws, {"method": "LIST_SUBSCRIPTIONS", "id": 1}))["result"] == []
            extra = await connect(strict_exchange)
            with pytest.raises(ConnectionClosed) as closed:
                await asyncio.wait_for(extra.recv(), WAIT)
            assert closed.value.rcvd is not None
            assert closed.value.rcvd.code == 1013
            assert closed.value.rcvd.reason == "try again later"
        finally:
            for ws in clients:
                await ws.close()

    run(scenario())


# --------------------------------------------------------------------------------------------- content
def test_every_stream_renders_a_known_order_sequence(fresh_exchange: Exchange) -> None:
    """alice rests a sell of 5 at 10.00, bob buys 2, alice cancels the rest."""
    ex = fresh_exchange
    public = [f"trade@{MARKET}", f"depth@{MARKET}", f"ticker@{MARKET}", f"kline_1m@{MARKET}"]

    async def scenario() -> None:
        await ex.deposit("alice", "TATA", "100.00")
        await ex.deposit("bob", "INR", "1000.00")
        async with await connect(ex, "alice") as ws:
            await subscribe(ws, *public, "orders@alice", "balance@alice")
            placed = await ex.place("alice", "sell", "10.00", "5", client_order_id="a-1")
            assert placed["code"] == 0
            alice_order = placed["seq"]
            bought = await ex.place("bob", "buy", "10.00", "2")
            assert bought["code"] == 0
            assert (await ex.cancel("alice", alice_order))["code"] == 0
            streams = by_stream(await collect_until_quiet(ws, quiet=0.7))

        (trade,) = streams[f"trade@{MARKET}"]
        assert trade["e"] == "trade" and trade["s"] == MARKET
        assert (trade["t"], trade["p"], trade["q"], trade["m"]) == (1, "10.00", "2", False)
        assert trade["T"] == trade["E"] and isinstance(trade["T"], int)
        assert "maker_user_id" not in str(trade) and "alice" not in str(trade) and "bob" not in str(trade)

        depth = streams[f"depth@{MARKET}"]
        assert [(d["U"], d["u"], d["b"], d["a"]) for d in depth] == [
            (1, 1, [], [["10.00", "5"]]),
            (2, 2, [], [["10.00", "3"]]),
            (3, 3, [], [["10.00", "0"]]),
        ]

        (ticker,) = streams[f"ticker@{MARKET}"]
        assert {k: ticker[k] for k in ("e", "s", "c", "o", "h", "l", "v", "q", "V", "n")} == {
            "e": "ticker",
            "s": MARKET,
            "c": "10.00",
            "o": "10.00",
            "h": "10.00",
            "l": "10.00",
            "v": "2",
            "q": "20.00",
            "V": "20.00",
            "n": 1,
        }

        (kline,) = streams[f"kline_1m@{MARKET}"]
        k = kline["k"]
        assert kline["e"] == "kline" and kline["s"] == MARKET
        assert k["T"] - k["t"] == 60_000 and k["t"] <= trade["T"] < k["T"]
        assert {key: k[key] for key in ("i", "o", "h", "l", "c", "v", "q", "n", "x")} == {
            "i": "1m",
            "o": "10.00",
            "h": "10.00",
            "l": "10.00",
            "c": "10.00",
            "v": "2",
            "q": "20.00",
            "n": 1,
            "x": False,
        }

        orders = streams["orders@alice"]
        summary = [(o["e"], o.get("X"), o.get("z"), o.get("r")) for o in orders]
        assert summary == [
            ("order", "NEW", "0", "5"),
            ("fill", None, None, None),
            ("order", "PARTIALLY_FILLED", "2", "3"),
            ("order", "CANCELED", "2", "3"),
        ]
        for order in orders:
            assert order["i"] == str(alice_order) and order["s"] == MARKET and order["c"] == "a-1"
            assert order["S"] == "sell"
        assert orders[0]["o"] == "limit" and orders[0]["p"] == "10.00" and orders[0]["q"] == "5"
        fill = orders[1]
        assert (fill["t"], fill["p"], fill["q"], fill["m"]) == (1, "10.00", "2", True)

        balances = [(b["a"], b["f"], b["l"]) for b in streams["balance@alice"]]
        assert balances == [
            ("TATA", "95.00", "5.00"),  # hold for the sell
            ("TATA", "95.00", "3.00"),  # 2 delivered
            ("INR", "20.00", "0.00"),  # paid for 2
            ("TATA", "98.00", "0.00"),  # cancel released the rest
        ]

    run(scenario())


def test_rejected_order_reaches_its_users_order_stream(fresh_exchange: Exchange) -> None:
    async def scenario() -> None:
        async with await connect(fresh_exchange, "carol") as ws:
            await subscribe(ws, "orders@carol")
            reply = await fresh_exchange.place("carol", "buy", "10.00", "1", client_order_id="c-1")
            assert reply["code"] == 200  # insufficient funds
            (message,) = await collect_until_quiet(ws, quiet=0.5)
        data = message["data"]
        assert (data["e"], data["X"], data["c"], data["i"]) == ("order", "REJECTED", "c-1", str(reply["seq"]))

    run(scenario())


# --------------------------------------------------------------------------------------------- depth
def apply_levels(book: dict[Decimal, str], levels: list[list[str]]) -> None:
    for price, quantity in levels:
        if Decimal(quantity) == 0:
            book.pop(Decimal(price), None)
        else:
            book[Decimal(price)] = quantity


def test_snapshot_plus_diffs_rebuilds_the_exact_book_while_orders_stream_in(exchange: Exchange) -> None:
    users = [f"depth-{i}" for i in range(4)]
    rng = random.Random(7)

    async def trade_randomly(count: int) -> None:
        open_orders: list[tuple[str, int]] = []
        for _ in range(count):
            if open_orders and rng.random() < 0.25:
                user, order_id = open_orders.pop(rng.randrange(len(open_orders)))
                await exchange.cancel(user, order_id)
                continue
            user = rng.choice(users)
            side = rng.choice(["buy", "sell"])
            price = f"{rng.randint(9_500, 10_500) / 100:.2f}"
            reply = await exchange.place(user, side, price, str(rng.randint(1, 20)))
            if reply["code"] == 0:
                open_orders.append((user, reply["seq"]))

    async def scenario() -> None:
        await exchange.fund(*users)
        async with await connect(exchange) as ws:
            await subscribe(ws, f"depth@{MARKET}")
            diffs: list[dict[str, Any]] = []

            async def read() -> None:
                while True:
                    diffs.append(await ws.recv())

            reader = asyncio.create_task(read())
            await trade_randomly(60)
            snapshot = await exchange.depth()
            await trade_randomly(140)
            final = await exchange.depth()
            for _ in range(100):
                if diffs and ujson.loads(diffs[-1])["data"]["u"] >= final["lastUpdateId"]:
                    break
                await asyncio.sleep(0.05)
            reader.cancel()

        bids = {Decimal(p): q for p, q in snapshot["bids"]}
        asks = {Decimal(p): q for p, q in snapshot["asks"]}
        last = snapshot["lastUpdateId"]
        applied = 0
        previous_u: int | None = None
        for text in diffs:
            data = ujson.loads(text)["data"]
            if previous_u is not None:
                assert data["U"] == previous_u + 1, "gap in depth update ids"
            previous_u = data["u"]
            if data["u"] <= last:
                continue
            if applied == 0:
                assert data["U"] <= last + 1 <= data["u"]
            apply_levels(bids, data["b"])
            apply_levels(asks, data["a"])
            applied += 1
        assert applied > 0
        assert previous_u == final["lastUpdateId"]
        assert sorted(bids.items(), reverse=True) == [(Decimal(p), q) for p, q in final["bids"]]
        assert sorted(asks.items()) == [(Decimal(p), q) for p, q in final["asks"]]

    run(scenario(), timeout=120)


# --------------------------------------------------------------------------------------------- load
def test_slow_client_is_cut_off_while_a_fast_one_receives_everything(strict_exchange: Exchange) -> None:
    ex = strict_exchange
    trades = 3000

    async def scenario() -> None:
        # The slow client never reads while trades flow; a tiny receive buffer makes its socket fill fast.
        slow_sock = socket.socket()
        slow_sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
        slow_sock.connect(("127.0.0.1", ex.port))
        slow_sock.setblocking(False)
        slow = await asyncio.wait_for(websockets.connect(ex.ws_url(), sock=slow_sock, max_queue=1), WAIT)
        fast = await connect(ex, max_queue=None)
        streams = [f"trade@{MARKET}", f"depth@{MARKET}", f"ticker@{MARKET}", f"kline_1m@{MARKET}"]
        await subscribe(slow, *streams)
        await subscribe(fast, f"trade@{MARKET}")
        await ex.produce(rate=1500, seconds=trades / 1500)
        trade_ids: list[int] = []
        for _ in range(trades):
            data = (await next_message(fast, timeout=10))["data"]
            trade_ids.append(data["t"])
        assert trade_ids == list(range(trade_ids[0], trade_ids[0] + trades))
        assert (await ex.stats())["overflows"] >= 1

        with pytest.raises(ConnectionClosed) as closed:
            for _ in range(100_000):
                await asyncio.wait_for(slow.recv(), 10)
        assert closed.value.rcvd is not None
        assert closed.value.rcvd.code == 1008
        assert closed.value.rcvd.reason == "send queue overflow: resync from REST"
        await fast.close()

    run(scenario(), timeout=120)


def test_fifty_clients_each_receive_every_trade_in_order(fresh_exchange: Exchange) -> None:
    async def scenario() -> None:
        await fresh_exchange.fund("many-a", "many-b")
        clients = [await connect(fresh_exchange) for _ in range(50)]
        try:
            for ws in clients:
                await subscribe(ws, f"trade@{MARKET}")
            for _ in range(10):
                await fresh_exchange.place("many-a", "sell", "77.00", "1")
                await fresh_exchange.place("many-b", "buy", "77.00", "1")
            received = await asyncio.gather(*(collect(ws, 10) for ws in clients))
        finally:
            await asyncio.gather(*(ws.close() for ws in clients))
        first = received[0]
        ids = [m["data"]["t"] for m in first]
        assert ids == list(range(ids[0], ids[0] + 10))
        assert all(messages == first for messages in received)
        assert all(m["data"]["p"] == "77.00" for m in first)

    run(scenario())
