"""`python run.py cluster`: the supervisor starts engine, API and WS processes, restarts a child that dies,
and on SIGTERM stops them all, leaving no process behind.

A private redis-server and free ports on 127.0.0.1; every wait is bounded; teardown kills leftovers.
"""

from __future__ import annotations

import asyncio
import os
import pathlib
import signal
import subprocess
import sys
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

import httpx
import pytest
import ujson
import websockets
from conftest import AsNamedUser
from redis_server import RedisServer, free_port, redis_server  # noqa: F401  (fixture)
from test_cluster import wait_for

ROOT = pathlib.Path(__file__).resolve().parent.parent
WAIT = 30.0


# --------------------------------------------------------------------------- processes, from /proc
def parent_of(pid: int) -> int | None:
    try:
        stat = pathlib.Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return None
    return int(stat[stat.rindex(")") + 2 :].split()[1])


def is_running(pid: int) -> bool:
    """Alive and not a zombie."""
    try:
        stat = pathlib.Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return False
    return stat[stat.rindex(")") + 2] != "Z"


def children(pid: int) -> list[int]:
    found = []
    for entry in pathlib.Path("/proc").iterdir():
        if entry.name.isdigit() and parent_of(int(entry.name)) == pid and is_running(int(entry.name)):
            found.append(int(entry.name))
    return found


def descendants(pid: int) -> set[int]:
    found: set[int] = set()
    frontier = [pid]
    for _ in range(10):  # bounded depth: supervisor -> child -> workers
        frontier = [child for parent in frontier for child in children(parent)]
        found.update(frontier)
        if not frontier:
            break
    return found


def mode_of(pid: int) -> str:
    """`engine`, `api` or `ws` for a child of the supervisor (`python run.py <mode> ...`)."""
    try:
        argv = pathlib.Path(f"/proc/{pid}/cmdline").read_bytes().split(b"\0")
    except OSError:
        return ""
    for index, arg in enumerate(argv):
        if arg.endswith(b"run.py") and index + 1 < len(argv):
            return argv[index + 1].decode()
    return ""


def child_named(supervisor: int, mode: str) -> int | None:
    matches = [pid for pid in children(supervisor) if mode_of(pid) == mode]
    return matches[0] if matches else None


# --------------------------------------------------------------------------- the supervised cluster
@dataclass
class Supervised:
    process: subprocess.Popen[bytes]
    log_path: pathlib.Path
    api_port: int
    ws_port: int

    @property
    def api(self) -> str:
        return f"http://127.0.0.1:{self.api_port}/api/v1"

    def log(self) -> str:
        return self.log_path.read_text(errors="replace")[-4000:]

    def healthy(self) -> bool:
        try:
            return httpx.get(f"{self.api}/health", timeout=2).status_code == 200
        except httpx.HTTPError:
            return False

    def post(self, path: str, body: dict[str, Any]) -> httpx.Response:
        return httpx.post(f"{self.api}{path}", json=body, timeout=10, auth=AsNamedUser(self.api))


@pytest.fixture
def supervised(tmp_path: pathlib.Path, redis_server: RedisServer) -> Iterator[Supervised]:  # noqa: F811
    api_port, ws_port = free_port(), free_port()
    log_path = tmp_path / "cluster.log"
    argv = [
        sys.executable,
        "run.py",
        "cluster",
        "--redis",
        redis_server.url,
        "--api-workers",
        "2",
        "--ws-workers",
        "1",
        "--host",
        "127.0.0.1",
        "--api-port",
        str(api_port),
        "--ws-port",
        str(ws_port),
        "--data-dir",
        str(tmp_path / "engine-data"),
        "--reply-timeout",
        "3",
    ]
    process = subprocess.Popen(
        argv,
        cwd=ROOT,
        stdout=log_path.open("wb"),
        stderr=subprocess.STDOUT,
        env={**os.environ, "PYTHONUNBUFFERED": "1"},
    )
    cluster = Supervised(process, log_path, api_port, ws_port)
    seen: set[int] = set()
    try:
        yield cluster
    finally:
        if process.poll() is None:
            seen = descendants(process.pid)
            process.send_signal(signal.SIGTERM)
            try:
                process.wait(20)
            except subprocess.TimeoutExpired:
                process.kill()
                process.wait(5)
        for pid in seen:
            if is_running(pid):
                os.kill(pid, signal.SIGKILL)


def order(cluster: Supervised, user: str, side: str, price: str, quantity: str) -> httpx.Response:
    body = {"user_id": user, "market": "TATA_INR", "side": side, "price": price, "quantity": quantity}
    return cluster.post("/order", body)


def deposit(cluster: Supervised, user: str, asset: str, amount: str, txn_id: str) -> httpx.Response:
    return cluster.post("/onramp", {"user_id": user, "asset": asset, "amount": amount, "txnId": txn_id})


# --------------------------------------------------------------------------- the test
def test_the_supervised_cluster_trades_restarts_a_killed_child_and_stops_cleanly_on_sigterm(
    supervised: Supervised,
) -> None:
    supervisor = supervised.process.pid

    def up() -> bool:
        if supervised.process.poll() is not None:
            raise AssertionError(f"supervisor exited with {supervised.process.returncode}:\n{supervised.log()}")
        return supervised.healthy()

    # Arrange: the cluster answers on its API port; its WS port is up too.
    wait_for(up, what="the API's /health", timeout=WAIT)
    assert deposit(supervised, "maker", "TATA", "5", "m-1").status_code == 200
    assert deposit(supervised, "taker", "INR", "500", "t-1").status_code == 200
    assert {mode_of(pid) for pid in children(supervisor)} == {"engine", "api", "ws"}

    # Act: a client subscribes to trades on the WS port; a resting sell and a crossing buy go to the API.
    async def trade_seen_on_websocket() -> tuple[httpx.Response, dict[str, Any]]:
        async with websockets.connect(f"ws://127.0.0.1:{supervised.ws_port}/ws", open_timeout=10) as client:
            await client.send(ujson.dumps({"method": "SUBSCRIBE", "params": ["trade@TATA_INR"], "id": 1}))
            assert ujson.loads(await asyncio.wait_for(client.recv(), 5)) == {"result": None, "id": 1}
            loop = asyncio.get_running_loop()
            sell = await loop.run_in_executor(None, order, supervised, "maker", "sell", "100", "2")
            assert sell.status_code == 200, sell.text
            buy = await loop.run_in_executor(None, order, supervised, "taker", "buy", "100", "2")
            for _ in range(50):
                message = ujson.loads(await asyncio.wait_for(client.recv(), 5))
                if message.get("stream") == "trade@TATA_INR":
                    return buy, message["data"]
            raise AssertionError("no trade on the WebSocket")

    buy, trade = asyncio.run(trade_seen_on_websocket())

    # Assert: the fill, in the API's reply and on the WebSocket.
    assert buy.status_code == 200, buy.text
    assert buy.json()["status"] == "FILLED"
    assert buy.json()["fills"] == [{"price": "100.00", "quantity": "2", "tradeId": "1"}]
    assert trade["e"] == "trade" and trade["s"] == "TATA_INR" and trade["p"] == "100.00"

    # Act: the engine is killed -9.
    engine = child_named(supervisor, "engine")
    assert engine is not None
    os.kill(engine, signal.SIGKILL)

    # Assert: the supervisor starts a new engine, which recovers the journal; the API works again.
    wait_for(lambda: child_named(supervisor, "engine") not in (None, engine), what="a new engine", timeout=WAIT)
    wait_for(up, what="the API after the engine's restart", timeout=WAIT)
    balances = httpx.get(
        f"{supervised.api}/balance", params={"user_id": "taker"}, timeout=10, auth=AsNamedUser(supervised.api)
    ).json()
    assert balances["TATA"] == {"available": "2.00", "locked": "0.00"}
    assert deposit(supervised, "taker", "INR", "1", "t-2").status_code == 200

    # Act: the API's main process is killed -9 (its Sanic workers would be orphans holding the port).
    api = child_named(supervisor, "api")
    assert api is not None
    api_workers = descendants(api)
    assert len(api_workers) >= 2
    os.kill(api, signal.SIGKILL)

    # Assert: its workers go with it, a new API process starts and answers.
    wait_for(lambda: not any(is_running(pid) for pid in api_workers), what="the old API workers gone", timeout=10)
    wait_for(lambda: child_named(supervisor, "api") not in (None, api), what="a new API process", timeout=WAIT)
    wait_for(up, what="the API after its restart", timeout=WAIT)

    # Act: SIGTERM to the supervisor.
    everything = descendants(supervisor)
    assert len(everything) >= 5  # engine, api + 2 workers, ws (+ its worker machinery)
    supervised.process.send_signal(signal.SIGTERM)

    # Assert: it exits 0 in bounded time, and no process it started is left running.
    assert supervised.process.wait(25) == 0, supervised.log()
    wait_for(lambda: not any(is_running(pid) for pid in everything), what="every child gone", timeout=5)
