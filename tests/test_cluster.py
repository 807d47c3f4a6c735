"""The Redis-fed deployment end to end: a private redis-server, `python run.py engine` and `python run.py api`
processes, real HTTP. Every wait is bounded; every process is stopped in teardown.
"""

from __future__ import annotations

import asyncio
import os
import pathlib
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from typing import Any

import httpx
import msgspec
import pytest
import redis
import ujson
import websockets
from conftest import AsNamedUser
from redis_server import RedisServer, free_port, redis_server  # noqa: F401  (fixture)

from openbell.cluster import COMMANDS, GROUP, CommandEntry, RoutedCommand
from openbell.core.commands import PlaceOrder
from openbell.core.types import OrderType, Side, TimeInForce
from openbell.core.wire import encode

ROOT = pathlib.Path(__file__).resolve().parent.parent
WAIT = 20.0


@dataclass
class Proc:
    name: str
    process: subprocess.Popen[bytes]
    log_path: pathlib.Path
    port: int | None = None

    @property
    def api(self) -> str:
        return f"http://127.0.0.1:{self.port}/api/v1"

    def log(self) -> str:
        return self.log_path.read_text(errors="replace")

    def alive(self) -> bool:
        return self.process.poll() is None

    def stop(self, timeout: float = 15.0) -> int:
        if self.process.poll() is None:
            self.process.send_signal(signal.SIGTERM)
            try:
                self.process.wait(timeout)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait(5)
        return self.process.returncode

    def kill9(self) -> None:
        self.process.kill()
        self.process.wait(5)


@dataclass
class Cluster:
    """Starts processes against one Redis; `close()` stops whatever is still running."""

    tmp: pathlib.Path
    redis: RedisServer
    procs: list[Proc] = field(default_factory=list)

    def _spawn(self, name: str, argv: list[str]) -> Proc:
        log_path = self.tmp / f"{name}-{len(self.procs)}.log"
        process = subprocess.Popen(
            [sys.executable, "run.py", *argv],
            cwd=ROOT,
            stdout=log_path.open("wb"),
            stderr=subprocess.STDOUT,
            env={**os.environ, "PYTHONUNBUFFERED": "1"},
        )
        proc = Proc(name, process, log_path)
        self.procs.append(proc)
        return proc

    def engine(self, *extra: str, data_dir: pathlib.Path | None = None) -> Proc:
        data = data_dir if data_dir is not None else self.tmp / "engine-data"
        proc = self._spawn("engine", ["engine", "--redis", self.redis.url, "--data-dir", str(data), *extra])
        wait_for(lambda: "relay ready" in proc.log(), proc, "engine ready")
        return proc

    def api(self, *extra: str, reply_timeout: float = 5.0) -> Proc:
        port = free_port()
        argv = ["api", "--redis", self.redis.url, "--port", str(port), "--reply-timeout", str(reply_timeout), *extra]
        proc = self._spawn("api", argv)
        proc.port = port

        def ready() -> bool:
            try:
                return httpx.get(f"{proc.api}/markets", timeout=1).status_code == 200
            except httpx.HTTPError:
                return False

        wait_for(ready, proc, "api ready")
        return proc

    def ws(self) -> Proc:
        port = free_port()
        proc = self._spawn("ws", ["ws", "--redis", self.redis.url, "--port", str(port)])
        proc.port = port

        def ready() -> bool:
            try:
                return httpx.get(f"http://127.0.0.1:{port}/health", timeout=1).status_code == 200
            except httpx.HTTPError:
                return False

        wait_for(ready, proc, "ws ready")
        return proc

    def close(self) -> None:
        for proc in self.procs:
            proc.stop()


def wait_for(condition: Callable[[], bool], proc: Proc | None = None, what: str = "", timeout: float = WAIT) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if condition():
            return
        if proc is not None and not proc.alive():
            raise AssertionError(f"{proc.name} exited with {proc.process.returncode}:\n{proc.log()[-3000:]}")
        time.sleep(0.05)
    raise AssertionError(f"timed out waiting for {what}" + (f":\n{proc.log()[-3000:]}" if proc else ""))


@pytest.fixture
def cluster(tmp_path: pathlib.Path, redis_server: RedisServer) -> Iterator[Cluster]:  # noqa: F811
    c = Cluster(tmp_path, redis_server)
    yield c
    c.close()


def post(api: Proc, path: str, body: dict[str, Any], timeout: float = 10.0) -> httpx.Response:
    return httpx.post(f"{api.api}{path}", json=body, timeout=timeout, auth=AsNamedUser(api.api))


def get(api: Proc, path: str, **params: Any) -> Any:
    response = httpx.get(f"{api.api}{path}", params=params, timeout=10, auth=AsNamedUser(api.api))
    assert response.status_code == 200, response.text
    return response.json()


def deposit(api: Proc, user: str, asset: str, amount: str, txn_id: str, timeout: float = 10.0) -> httpx.Response:
    return post(api, "/onramp", {"user_id": user, "asset": asset, "amount": amount, "txnId": txn_id}, timeout)


def order(api: Proc, user: str, side: str, price: str, quantity: str, **extra: Any) -> httpx.Response:
    body = {"user_id": user, "market": "TATA_INR", "side": side, "price": price, "quantity": quantity, **extra}
    return post(api, "/order", body)


def entry(*commands: RoutedCommand) -> dict[str, bytes]:
    """The fields of one command-stream entry, as an API process writes it."""
    return {"m": encode(CommandEntry(commands))}


def pending_count(server: RedisServer) -> int:
    client = redis.Redis.from_url(server.url)
    try:
        return int(client.xpending(COMMANDS, GROUP)["pending"])
    finally:
        client.close()


# --------------------------------------------------------------------------- tests
def test_orders_through_two_api_processes_fill_and_both_see_the_same_balances_and_book(cluster: Cluster) -> None:
    # Arrange: one engine, two API processes; the seller funds through one, the buyer through the other.
    cluster.engine()
    api_1, api_2 = cluster.api(), cluster.api()
    assert deposit(api_1, "seller", "TATA", "10", "s-1").status_code == 200
    assert deposit(api_2, "buyer", "INR", "1000", "b-1").status_code == 200

    # Act: the seller rests 5 @ 100 through API 1; the buyer takes 3 through API 2.
    sell = order(api_1, "seller", "sell", "100", "5")
    buy = order(api_2, "buyer", "buy", "100", "3")

    # Assert: the fill as the taker's reply tells it, and one state seen through both processes.
    assert sell.status_code == 200, sell.text
    assert sell.json()["status"] == "NEW"
    assert buy.status_code == 200, buy.text
    assert buy.json()["status"] == "FILLED"
    assert buy.json()["fills"] == [{"price": "100.00", "quantity": "3", "tradeId": "1"}]
    assert int(buy.json()["orderId"]) > int(sell.json()["orderId"])
    for api in (api_1, api_2):
        assert get(api, "/balance", user_id="buyer") == {
            "INR": {"available": "700.00", "locked": "0.00"},
            "TATA": {"available": "3.00", "locked": "0.00"},
        }
        assert get(api, "/balance", user_id="seller") == {
            "INR": {"available": "300.00", "locked": "0.00"},
            "TATA": {"available": "5.00", "locked": "2.00"},
        }
        depth = get(api, "/depth", symbol="TATA_INR")
        assert depth["bids"] == [] and depth["asks"] == [["100.00", "2"]]
        assert [t["id"] for t in get(api, "/trades", symbol="TATA_INR")] == ["1"]
        open_orders = get(api, "/order/open", user_id="seller")
        assert [(o["orderId"], o["filled"]) for o in open_orders] == [(sell.json()["orderId"], "3")]
        assert get(api, "/klines", symbol="TATA_INR", interval="1m")[-1]["trades"] == 1
        assert get(api, "/ticker", symbol="TATA_INR")["lastPrice"] == "100.00"
    assert get(api_1, "/depth", symbol="TATA_INR") == get(api_2, "/depth", symbol="TATA_INR")


def test_a_command_written_while_the_engine_is_down_is_applied_when_it_starts(cluster: Cluster) -> None:
    # Arrange: the engine has run once (the registry knows TATA_INR), then stops.
    cluster.engine().stop()
    impatient = cluster.api(reply_timeout=1.0)
    patient = cluster.api(reply_timeout=WAIT)

    # Act: one deposit times out while the engine is down; another is still waiting when it starts.
    timed_out = deposit(impatient, "u1", "INR", "10", "down-1")
    waiting: list[httpx.Response] = []
    thread = threading.Thread(target=lambda: waiting.append(deposit(patient, "u1", "INR", "5", "down-2", WAIT + 5)))
    thread.start()
    time.sleep(0.5)
    cluster.engine()
    thread.join(WAIT + 10)

    # Assert: the first answer says the outcome is unknown; both deposits are applied exactly once.
    assert timed_out.status_code == 504
    assert "unknown" in timed_out.json()["message"]
    assert waiting and waiting[0].status_code == 200, waiting
    assert get(patient, "/balance", user_id="u1") == {"INR": {"available": "15.00", "locked": "0.00"}}
    wait_for(lambda: pending_count(cluster.redis) == 0, what="every entry acknowledged")


def test_a_malformed_message_on_the_command_stream_is_acknowledged_and_skipped(cluster: Cluster) -> None:
    engine = cluster.engine()
    api = cluster.api()
    client = redis.Redis.from_url(cluster.redis.url)
    try:
        client.xadd(COMMANDS, {"m": b"not a message"})
        client.xadd(COMMANDS, {"m": b"\x01" + encode(CommandEntry(()))[1:]})  # another wire version
        client.xadd(COMMANDS, {"other": b"field"})
        client.xadd(
            COMMANDS, {"m": encode(["CommandEntry", [["RoutedCommand", "x:1", "nowhere", 0, "not a command"]]])}
        )
    finally:
        client.close()

    response = deposit(api, "u2", "INR", "1", "after-garbage")

    assert response.status_code == 200, response.text
    wait_for(lambda: pending_count(cluster.redis) == 0, what="garbage acknowledged")
    assert engine.alive()
    assert engine.log().count("skipped") >= 4
    assert engine.stop() == 0
    assert "'malformed': 4" in engine.log()  # counted


def test_a_market_added_through_one_api_process_trades_through_another(cluster: Cluster) -> None:
    cluster.engine()
    api_1, api_2 = cluster.api(), cluster.api()
    spec = {"symbol": "INFY_INR", "base": "INFY", "quote": "INR", "tickSize": "0.05", "lotSize": "1"}

    created = post(api_1, "/markets", spec)

    assert created.status_code == 201, created.text
    wait_for(lambda: "INFY_INR" in {m["symbol"] for m in get(api_2, "/markets")}, what="registry notice")
    assert deposit(api_2, "u3", "INFY", "4", "infy-1").status_code == 200
    placed = post(
        api_2, "/order", {"user_id": "u3", "market": "INFY_INR", "side": "sell", "price": "1.05", "quantity": "4"}
    )
    assert placed.status_code == 200, placed.text
    assert get(api_1, "/depth", symbol="INFY_INR")["asks"] == [["1.05", "4"]]


def test_a_redelivered_request_the_journal_already_holds_is_answered_not_applied_again(cluster: Cluster) -> None:
    # Arrange: a request applied and acknowledged; then, with the engine stopped, the very same request sits
    # in the engine's pending list again (as if the engine had died after journaling it and before its XACK),
    # next to a fresh one. Nothing in Redis says which was applied: only the engine's journal knows.
    engine = cluster.engine()
    api = cluster.api()
    assert deposit(api, "u4", "INR", "100", "u4-1").status_code == 200
    command = PlaceOrder(0, 0, "u4", "TATA_INR", Side.BUY, OrderType.LIMIT, TimeInForce.GTC, 100, 1)
    replayed = RoutedCommand("replayed:1", "nowhere", 0, msgspec.structs.replace(command, request_id="replayed:1"))
    fresh = RoutedCommand("fresh:1", "nowhere", 0, msgspec.structs.replace(command, request_id="fresh:1"))
    client = redis.Redis.from_url(cluster.redis.url)
    try:
        client.xadd(COMMANDS, entry(replayed))
        wait_for(lambda: len(get(api, "/order/open", user_id="u4")) == 1, what="the first order applied")
        wait_for(lambda: pending_count(cluster.redis) == 0, what="its entry acknowledged")
        engine.stop()
        client.xadd(COMMANDS, entry(replayed))
        client.xadd(COMMANDS, entry(fresh))
        client.xreadgroup(GROUP, "engine", {COMMANDS: ">"}, count=10)  # delivered, never acknowledged

        # Act: the engine starts again.
        engine = cluster.engine()
        wait_for(lambda: pending_count(cluster.redis) == 0, what="pending list worked off")

        # Assert: the journaled request was not applied again; the other one was applied once.
        assert len(get(api, "/order/open", user_id="u4")) == 2
        assert not client.keys("openbell:applied*")
    finally:
        client.close()
    assert engine.stop() == 0
    assert "'already_applied': 1" in engine.log()


def test_a_fill_made_through_the_api_reaches_a_websocket_client_of_a_ws_process(
    cluster: Cluster, monkeypatch: pytest.MonkeyPatch
) -> None:
    # Arrange: engine, API and WS processes; a client subscribed to the market's trades. The WS process starts
    # after the relay found nobody reading events (so it stopped publishing them), and the relay's own check
    # for readers is 60 s away: the relay must have heard the WS process by the time that reports healthy, or
    # the order placed right after would not be streamed.
    monkeypatch.setenv("OPENBELL_EVENT_READERS_CHECK_SECONDS", "60")
    engine = cluster.engine()
    api = cluster.api()
    wait_for(lambda: "openbell:events: unread" in engine.log(), engine, what="the relay to find the event channel unread")
    ws = cluster.ws()
    assert deposit(api, "maker", "TATA", "5", "m-1").status_code == 200
    assert deposit(api, "taker", "INR", "500", "t-1").status_code == 200

    async def scenario() -> list[dict[str, Any]]:
        async with websockets.connect(f"ws://127.0.0.1:{ws.port}/ws", open_timeout=5) as client:
            await client.send(ujson.dumps({"method": "SUBSCRIBE", "params": ["trade@TATA_INR"], "id": 1}))
            assert ujson.loads(await asyncio.wait_for(client.recv(), 5)) == {"result": None, "id": 1}
            # Act: a resting sell and a crossing buy, through the REST API.
            loop = asyncio.get_running_loop()
            assert (await loop.run_in_executor(None, order, api, "maker", "sell", "100", "2")).status_code == 200
            assert (await loop.run_in_executor(None, order, api, "taker", "buy", "100", "2")).status_code == 200
            messages = []
            while len(messages) < 1:
                message = ujson.loads(await asyncio.wait_for(client.recv(), 5))
                if message.get("stream") == "trade@TATA_INR":
                    messages.append(message["data"])
            return messages

    # Assert: the trade, as the WS process rendered it from the event it read from Redis.
    trades = asyncio.run(scenario())
    assert trades[0]["e"] == "trade" and trades[0]["s"] == "TATA_INR"


@pytest.mark.parametrize("database", ["sqlite", "postgresql"])
def test_history_queries_answer_in_the_cluster_as_embedded(cluster: Cluster, database: str) -> None:
    """Trades by time range and candles older than a week come from the engine process's history database."""
    from test_history import DAY, postgres_database, trade

    from openbell.history.store import HistoryStore

    databases = postgres_database() if database == "postgresql" else None
    url = next(databases) if databases is not None else f"sqlite:///{cluster.tmp / 'engine-data' / 'history.sqlite3'}"
    try:
        cluster.engine(*(["--db", url] if databases is not None else []))
        api = cluster.api()
        now = int(time.time())
        old_hour = (now - 9 * DAY) // 3600 * 3600
        store = HistoryStore(url)
        try:
            store.write(
                [trade(9_999, old_hour * 1000 + 5_000, 10_000, 2, "TATA_INR")]
            )  # an id the engine never reaches
        finally:
            store.close()
        assert deposit(api, "hs", "TATA", "10", "hs-1").status_code == 200
        assert deposit(api, "hb", "INR", "1000", "hb-1").status_code == 200
        started_ms = time.time_ns() // 1_000_000
        assert order(api, "hs", "sell", "100.00", "2").status_code == 200
        assert order(api, "hb", "buy", "100.00", "2").status_code == 200

        # Act
        recent = get(api, "/trades", symbol="TATA_INR", startTime=started_ms, endTime=started_ms + 60_000)
        candles = get(api, "/klines", symbol="TATA_INR", interval="1h", startTime=(now - 10 * DAY) * 1000)

        # Assert
        assert [(t["id"], t["price"], t["quantity"]) for t in recent] == [("1", "100.00", "2")]
        assert candles[0]["openTime"] == old_hour * 1000 and candles[0]["volume"] == "2"
    finally:
        if databases is not None:
            databases.close()


def test_a_key_made_or_revoked_on_one_api_worker_holds_on_another_within_a_second(cluster: Cluster) -> None:
    from conftest import ADMIN_TOKEN, create_key

    from openbell.client import Client

    cluster.engine()
    first, second = cluster.api(), cluster.api()
    key = create_key(first.api, "roamer")
    second_url, first_url = second.api.removesuffix("/api/v1"), first.api.removesuffix("/api/v1")
    with Client(second_url, api_key=key["apiKey"], secret=key["secret"]) as on_second:
        assert on_second.get("/balance").status_code == 200  # the second worker asks the engine about the key
        with Client(first_url, admin_token=ADMIN_TOKEN) as operator:
            assert operator.delete(f"/admin/keys/{key['apiKey']}").status_code == 200
        revoked_at = time.monotonic()
        wait_for(lambda: on_second.get("/balance").status_code == 401, what="the revoke to reach the second worker")
        assert time.monotonic() - revoked_at < 1.0


def test_a_halt_through_one_api_process_refuses_orders_through_another_and_survives_an_engine_restart(
    cluster: Cluster,
) -> None:
    engine = cluster.engine()
    api_1, api_2 = cluster.api(), cluster.api()
    assert deposit(api_2, "h-buyer", "INR", "1000", "h-1").status_code == 200

    halted = httpx.post(f"{api_1.api}/admin/markets/TATA_INR/halt", timeout=10, auth=AsNamedUser(api_1.api))

    assert halted.status_code == 200 and halted.json()["status"] == "HALTED", halted.text
    wait_for(
        lambda: {m["symbol"]: m["status"] for m in get(api_2, "/markets")}["TATA_INR"] == "HALTED",
        what="the registry notice",
    )
    refused = order(api_2, "h-buyer", "buy", "100", "1")
    assert refused.status_code == 400 and refused.json()["code"] == 211, refused.text

    assert engine.stop() == 0
    cluster.engine()
    api_3 = cluster.api()
    assert {m["symbol"]: m["status"] for m in get(api_3, "/markets")}["TATA_INR"] == "HALTED"
    assert httpx.post(f"{api_3.api}/admin/markets/TATA_INR/resume", timeout=10, auth=AsNamedUser(api_3.api)).status_code == 200
    wait_for(
        lambda: {m["symbol"]: m["status"] for m in get(api_2, "/markets")}["TATA_INR"] == "TRADING",
        what="the registry notice",
    )
    assert order(api_2, "h-buyer", "buy", "100", "1").status_code == 200


def test_a_stop_placed_through_one_api_process_is_triggered_by_a_trade_through_another(cluster: Cluster) -> None:
    cluster.engine()
    api_1, api_2 = cluster.api(), cluster.api()
    for user, asset, amount in (("st-alice", "TATA", "5"), ("st-bob", "INR", "1000"), ("st-carol", "TATA", "5")):
        assert deposit(api_1, user, asset, amount, f"{user}-1").status_code == 200
    assert order(api_1, "st-carol", "sell", "100", "1").status_code == 200
    assert order(api_1, "st-bob", "buy", "100", "1").status_code == 200
    assert order(api_1, "st-bob", "buy", "94", "3").status_code == 200

    stop = order(api_1, "st-alice", "sell", "93", "2", type="stop_loss_limit", stopPrice="95")
    assert stop.status_code == 200 and stop.json()["status"] == "NEW", stop.text
    [waiting] = get(api_2, "/order/open", user_id="st-alice")
    assert (waiting["type"], waiting["stopPrice"], waiting["triggered"]) == ("stop_loss_limit", "95.00", False)

    assert order(api_2, "st-carol", "sell", "95", "1").status_code == 200
    assert order(api_2, "st-bob", "buy", "95", "1").status_code == 200

    assert get(api_1, "/order/open", user_id="st-alice") == []
    assert get(api_1, "/balance", user_id="st-alice") == {
        "TATA": {"available": "3.00", "locked": "0.00"},
        "INR": {"available": "188.00", "locked": "0.00"},
    }
