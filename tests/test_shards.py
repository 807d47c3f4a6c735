"""Markets that match in parallel: a balance process (`run.py balance`) and market shards (`run.py markets`) with
Redis between them, end to end: a private redis-server, real processes, real HTTP and WebSocket clients.

- The same order stream over four markets ends in the same books, trades, balances and per-market event
  streams in the embedded server, in `run.py engine` mode and on two market shards.
- kill -9 of a market shard under load pauses only its markets, and the restart finishes what was in
  flight; kill -9 of the balance process pauses trading, and its restart loses and doubles nothing. Both
  are bounded loops; afterwards every acknowledged order is open exactly once (or was traded, for orders
  that could trade), and funds are conserved to the minor unit.
- A market added at run time goes to the shard with the fewest markets and trades there at once.

Every wait is bounded; every process is stopped in teardown.
"""

from __future__ import annotations

import asyncio
import itertools
import pathlib
import random
import re
import signal
import subprocess
import sys
import threading
import time
from collections import Counter, defaultdict
from collections.abc import Iterator
from dataclasses import dataclass, field
from decimal import Decimal
from typing import Any

import httpx
import pytest
import redis
import ujson
import websockets
from conftest import AsNamedUser, start_server
from redis_server import RedisServer, free_port, redis_server  # noqa: F401  (fixture)
from test_cluster import ROOT, WAIT, Cluster, Proc, wait_for

from openbell.cluster import (
    BALANCE_GROUP,
    COMMANDS,
    GROUP,
    MARKET_GROUP,
    SETTLEMENTS,
    SHARDS,
    shard_stream,
)

SYMBOLS = ["AAA_INR", "BBB_INR", "CCC_INR", "DDD_INR"]
MARKETS = ",".join(f"{symbol}:0.01:1" for symbol in SYMBOLS)
ASSETS = "AAA:2,BBB:2,CCC:2,DDD:2,INR:2"
ON_SHARD = {"AAA_INR": 0, "BBB_INR": 1, "CCC_INR": 0, "DDD_INR": 1}
"""Boot markets go, in order, to the shard with the fewest markets (the lowest number among equals)."""


class Sharded(Cluster):
    """A balance process and market shards (and API/WS processes) against one Redis."""

    def markets(self, shard: int, *extra: str, shards: int = 2) -> Proc:
        data = self.tmp / f"markets-{shard}"
        argv = ["markets", "--redis", self.redis.url, "--shard", str(shard), "--shards", str(shards)]
        proc = self._spawn(f"markets-{shard}", [*argv, "--data-dir", str(data), *extra])
        wait_for(lambda: f"shard {shard} ready" in proc.log(), proc, f"shard {shard} ready")
        return proc

    def balance(self, *extra: str) -> Proc:
        data = self.tmp / "balance"
        argv = ["balance", "--redis", self.redis.url, "--data-dir", str(data), "--markets", MARKETS, "--assets", ASSETS]
        proc = self._spawn("balance", [*argv, *extra])
        wait_for(lambda: "relay ready" in proc.log(), proc, "balance ready")
        return proc


@pytest.fixture
def sharded(tmp_path: pathlib.Path, redis_server: RedisServer) -> Iterator[Sharded]:  # noqa: F811
    layout = Sharded(tmp_path, redis_server)
    yield layout
    layout.close()


def worked_off(server: RedisServer, shards: int = 2) -> bool:
    """Every entry of every stream between the processes was read and acknowledged."""
    streams = [(COMMANDS, GROUP), (SETTLEMENTS, BALANCE_GROUP)] + [
        (shard_stream(k), MARKET_GROUP) for k in range(shards)
    ]
    client = redis.Redis.from_url(server.url)
    try:
        for stream, group in streams:
            for info in client.xinfo_groups(stream):
                if info["name"].decode() == group and (info["pending"] or info.get("lag")):
                    return False
        return True
    except redis.ResponseError:
        return False
    finally:
        client.close()


def minor(text: str) -> int:
    """An amount with two decimals (every asset here) in minor units."""
    return int(Decimal(text).scaleb(2))


# --------------------------------------------------------------------------------------------- one stream, three ways
def order_stream(seed: int, users: list[str], actions: int) -> list[tuple[str, dict[str, Any]]]:
    """Deposits, then random orders over the four markets (every kind) and cancels by clientOrderId."""
    rng = random.Random(seed)
    steps: list[tuple[str, dict[str, Any]]] = []
    for user in users:
        steps.append(("onramp", {"user_id": user, "asset": "INR", "amount": "100000.00", "txnId": f"{user}-inr"}))
        for symbol in SYMBOLS:
            base = symbol.split("_")[0]
            steps.append(("onramp", {"user_id": user, "asset": base, "amount": "500", "txnId": f"{user}-{base}"}))
    placed: list[tuple[str, str]] = []
    for number in range(actions):
        user = rng.choice(users)
        mine = [coid for coid, owner in placed if owner == user]
        if mine and rng.random() < 0.12:
            steps.append(("cancel", {"user_id": user, "clientOrderId": rng.choice(mine)}))
            continue
        body: dict[str, Any] = {
            "user_id": user,
            "market": rng.choice(SYMBOLS),
            "side": rng.choice(["buy", "sell"]),
            "quantity": str(rng.randint(1, 8)),
            "clientOrderId": f"c{number}",
        }
        kind = rng.random()
        price = f"{Decimal(10000 + rng.randint(-6, 6) * 5).scaleb(-2):f}"
        if kind < 0.6:
            body["price"] = price
        elif kind < 0.75:
            body.update(price=price, timeInForce="IOC")
        elif kind < 0.85:
            body["type"] = "market"
        elif kind < 0.93:
            body.update(price=price, postOnly=True)
        else:
            body.update(price=price, timeInForce="FOK")
        steps.append(("order", body))
        placed.append((body["clientOrderId"], user))
    return steps


class StreamWatcher:
    """A WebSocket client in its own thread, subscribed to `depth@M` and `trade@M` of every market."""

    def __init__(self, url: str) -> None:
        self.url = url
        self.messages: dict[str, list[dict[str, Any]]] = defaultdict(list)
        self._stop = threading.Event()
        self._ready = threading.Event()
        self._thread = threading.Thread(target=lambda: asyncio.run(self._run()), daemon=True)
        self.error: BaseException | None = None

    def __enter__(self) -> StreamWatcher:
        self._thread.start()
        assert self._ready.wait(WAIT), f"no subscription on {self.url}: {self.error}"
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join(WAIT)

    async def _run(self) -> None:
        try:
            async with websockets.connect(self.url, open_timeout=10, max_queue=None) as client:
                streams = [f"{kind}@{symbol}" for symbol in SYMBOLS for kind in ("depth", "trade")]
                await client.send(ujson.dumps({"method": "SUBSCRIBE", "params": streams, "id": 1}))
                assert ujson.loads(await asyncio.wait_for(client.recv(), 10)) == {"result": None, "id": 1}
                self._ready.set()
                while not self._stop.is_set():
                    try:
                        message = ujson.loads(await asyncio.wait_for(client.recv(), 0.2))
                    except TimeoutError:
                        continue
                    data = {key: value for key, value in message["data"].items() if key not in ("E", "T")}
                    self.messages[message["stream"]].append(data)
        except BaseException as error:  # reported by the test
            self.error = error
            self._ready.set()

    def last_update_id(self, symbol: str) -> int:
        depth = self.messages.get(f"depth@{symbol}")
        return int(depth[-1]["u"]) if depth else 0


def run_stream(api: str, ws_url: str, steps: list[tuple[str, dict[str, Any]]], users: list[str]) -> dict[str, Any]:
    """Send the steps one at a time; everything a client can see afterwards, order ids left out."""
    answers = []
    order_ids: dict[str, str] = {}
    with StreamWatcher(ws_url) as watcher, httpx.Client(base_url=api, timeout=20, auth=AsNamedUser(api)) as client:
        for kind, body in steps:
            if kind == "onramp":
                response = client.post("/onramp", json=body)
            elif kind == "order":
                response = client.post("/order", json=body)
                if response.is_success:
                    order_ids[body["clientOrderId"]] = response.json()["orderId"]
            else:
                order_id = order_ids.get(body["clientOrderId"], "1")
                market = next(
                    b["market"] for k, b in steps if k == "order" and b["clientOrderId"] == body["clientOrderId"]
                )
                response = client.request(
                    "DELETE", "/order", json={"market": market, "user_id": body["user_id"], "orderId": order_id}
                )
            answer = response.json()
            if isinstance(answer, dict):
                answer.pop("orderId", None)
            answers.append((response.status_code, answer))
        state: dict[str, Any] = {"answers": answers, "balances": {}, "open": {}, "depth": {}, "trades": {}}
        for user in users:
            state["balances"][user] = client.get("/balance", params={"user_id": user}).json()
            state["open"][user] = sorted(
                (o["clientOrderId"], o["market"], o["side"], o["price"], o["quantity"], o["filled"])
                for o in client.get("/order/open", params={"user_id": user}).json()
            )
        for symbol in SYMBOLS:
            state["depth"][symbol] = client.get("/depth", params={"symbol": symbol, "limit": 1000}).json()
            state["trades"][symbol] = [
                {key: value for key, value in trade.items() if key != "timestamp"}
                for trade in client.get("/trades", params={"symbol": symbol, "limit": 1000}).json()
            ]
        for symbol in SYMBOLS:
            last = state["depth"][symbol]["lastUpdateId"]
            wait_for(lambda s=symbol, u=last: watcher.last_update_id(s) >= u, what=f"the depth stream of {symbol}")
        time.sleep(0.3)  # the last trades and diffs of the last batch
    assert watcher.error is None, watcher.error
    state["events"] = {stream: messages for stream, messages in sorted(watcher.messages.items())}
    return state


@pytest.mark.slow
def test_the_same_order_stream_over_four_markets_ends_the_same_embedded_in_an_engine_process_and_on_two_shards(
    tmp_path: pathlib.Path,
    redis_server: RedisServer,  # noqa: F811
) -> None:
    # Arrange: one seeded stream of deposits, orders of every kind and cancels over four markets.
    users = [f"u{n}" for n in range(5)]
    steps = order_stream(16, users, 260)
    options = ["--markets", MARKETS, "--assets", ASSETS, "--no-fsync"]

    # Act: the embedded server.
    embedded = start_server(tmp_path, *options)
    try:
        alone = run_stream(embedded.api, embedded.ws_url, steps, users)
    finally:
        embedded.stop()

    # Act: one engine process behind an API and a WebSocket process.
    layout = Cluster(tmp_path / "engine", redis_server)
    (tmp_path / "engine").mkdir()
    try:
        layout.engine(*options)
        api, ws = layout.api(), layout.ws()
        one_engine = run_stream(api.api, f"ws://127.0.0.1:{ws.port}/ws", steps, users)
    finally:
        layout.close()

    # Act: a balance process and two market shards, on their own Redis.
    other_redis = RedisServer(tmp_path / "redis-sharded").start()
    layout = Sharded(tmp_path / "sharded", other_redis)
    (tmp_path / "sharded").mkdir()
    try:
        layout.markets(0, "--no-fsync")
        layout.markets(1, "--no-fsync")
        layout.balance("--no-fsync")
        api, ws = layout.api(), layout.ws()
        two_shards = run_stream(api.api, f"ws://127.0.0.1:{ws.port}/ws", steps, users)
        markets = httpx.get(f"{api.api}/markets", timeout=10).json()
    finally:
        layout.close()
        other_redis.stop()

    # Assert: the stream did something in every market, and all three ended the same, event for event.
    assert {m["symbol"]: m["shard"] for m in markets} == ON_SHARD
    statuses = Counter(status for status, _ in alone["answers"])
    assert statuses[200] > 200 and statuses[400] > 0, statuses
    assert all(len(alone["trades"][symbol]) >= 5 for symbol in SYMBOLS), alone["trades"]
    assert all(alone["open"][user] for user in users)
    assert all(len(alone["events"][f"trade@{symbol}"]) == len(alone["trades"][symbol]) for symbol in SYMBOLS)
    for key in ("answers", "balances", "open", "depth", "trades", "events"):
        assert one_engine[key] == alone[key], f"engine mode differs from embedded in {key}"
        assert two_shards[key] == alone[key], f"two shards differ from embedded in {key}"


# --------------------------------------------------------------------------------------------- load and kill -9
USERS = [f"load-{n}" for n in range(4)]
REQUEST_TIMEOUT = 15.0
SNAPSHOTS = ("--snapshot-every", "60", "--keep-snapshots", "2")
"""Snapshots (and journal pruning) happen during the load, so kills land around them too."""


@dataclass
class Sent:
    market: str
    far: bool
    side: str
    price: str
    sent_at: float
    answered_at: float = 0.0
    status: int = 0
    order_id: str | None = None


@dataclass
class Load:
    """Workers placing orders: "far" ones that can never trade, each at a price of its own, and "near" ones that
    trade with each other (a resting sell, then an IOC buy at its price). Worker `w` trades market
    `SYMBOLS[w % 4]` only, as a client of that market: a client of a paused market waits, the others go on."""

    api: str
    workers: int = 4
    stop: threading.Event = field(default_factory=threading.Event)
    sent: list[Sent] = field(default_factory=list)
    _numbers: Iterator[int] = field(default_factory=lambda: itertools.count())
    _lock: threading.Lock = field(default_factory=threading.Lock)
    _threads: list[threading.Thread] = field(default_factory=list)

    def fund(self) -> dict[str, int]:
        """Deposits for every user; returns the total deposited per asset (minor units)."""
        deposited: Counter[str] = Counter()
        with httpx.Client(base_url=self.api, timeout=REQUEST_TIMEOUT, auth=AsNamedUser(self.api)) as client:
            for user in USERS:
                for asset, amount in [("INR", "10000000.00")] + [(s.split("_")[0], "100000") for s in SYMBOLS]:
                    body = {"user_id": user, "asset": asset, "amount": amount, "txnId": f"{user}-{asset}"}
                    response = client.post("/onramp", json=body)
                    assert response.status_code == 200, response.text
                    deposited[asset] += minor(amount)
        return dict(deposited)

    def start(self) -> None:
        for worker in range(self.workers):
            thread = threading.Thread(target=self._work, args=(worker,), daemon=True)
            thread.start()
            self._threads.append(thread)

    def finish(self) -> None:
        self.stop.set()
        for thread in self._threads:
            thread.join(REQUEST_TIMEOUT * 3)
            assert not thread.is_alive()

    def _work(self, worker: int) -> None:
        rng = random.Random(worker)
        with httpx.Client(base_url=self.api, timeout=REQUEST_TIMEOUT, auth=AsNamedUser(self.api)) as client:
            for _ in range(100_000):  # a bound only: the test stops the load long before
                if self.stop.is_set():
                    return
                market, user = SYMBOLS[worker % len(SYMBOLS)], rng.choice(USERS)
                with self._lock:
                    number = next(self._numbers)
                if rng.random() < 0.5:
                    side = rng.choice(["buy", "sell"])
                    price = f"{(50 if side == 'buy' else 200) + number / 100:.2f}"  # unique: never traded, never twice
                    self._place(client, Sent(market, True, side, price, time.monotonic()), user, "GTC")
                else:
                    self._place(client, Sent(market, False, "sell", "100.00", time.monotonic()), user, "GTC")
                    self._place(client, Sent(market, False, "buy", "100.00", time.monotonic()), user, "IOC")

    def _place(self, client: httpx.Client, sent: Sent, user: str, time_in_force: str) -> None:
        body = {
            "user_id": user,
            "market": sent.market,
            "side": sent.side,
            "price": sent.price,
            "quantity": "1",
            "timeInForce": time_in_force,
        }
        try:
            response = client.post("/order", json=body)
            sent.status = response.status_code
            if response.is_success:
                sent.order_id = response.json()["orderId"]
        except httpx.HTTPError:
            sent.status = 0
        sent.answered_at = time.monotonic()
        with self._lock:
            self.sent.append(sent)

    def answered_between(self, start: float, end: float, markets: set[str]) -> int:
        """Orders on `markets` sent and acknowledged within [start, end]."""
        with self._lock:
            return sum(
                1
                for s in self.sent
                if s.market in markets and s.status == 200 and start <= s.sent_at and s.answered_at <= end
            )


def check_state(api: str, load: Load, deposited: dict[str, int]) -> None:
    """Every acknowledged far order open exactly once; no far price open twice; funds conserved to the unit."""
    with httpx.Client(base_url=api, timeout=REQUEST_TIMEOUT, auth=AsNamedUser(api)) as client:
        orders = []
        held: Counter[str] = Counter()
        for user in USERS:
            response = client.get("/order/open", params={"user_id": user})
            assert response.status_code == 200, response.text
            orders += response.json()
            response = client.get("/balance", params={"user_id": user})
            assert response.status_code == 200, response.text
            for asset, value in response.json().items():
                available, locked = minor(value["available"]), minor(value["locked"])
                assert available >= 0 and locked >= 0, (user, asset, value)
                held[asset] += available + locked
    assert dict(held) == deposited, f"accounts hold {dict(held)}, deposits were {deposited}"
    by_id = Counter(order["orderId"] for order in orders)
    assert not [i for i, n in by_id.items() if n > 1], "an order is open twice"
    far_open = Counter((o["market"], o["side"], o["price"]) for o in orders if Decimal(o["price"]) != Decimal("100.00"))
    assert not [key for key, n in far_open.items() if n > 1], "a far order was applied twice"
    open_ids = set(by_id)
    acknowledged = [s for s in load.sent if s.far and s.status == 200]
    assert acknowledged, "no far order was acknowledged: the load proved nothing"
    lost = [s for s in acknowledged if s.order_id not in open_ids]
    assert not lost, f"{len(lost)} acknowledged far orders are gone, e.g. {lost[:3]}"
    assert len(far_open) <= len([s for s in load.sent if s.far and s.status in (0, 200, 503, 504)])


def kill_9(proc: Proc) -> None:
    proc.process.send_signal(signal.SIGKILL)
    proc.process.wait(10)


@pytest.mark.slow
def test_kill_9_of_a_market_shard_under_load_pauses_only_its_markets_and_its_restart_finishes_what_was_in_flight(
    sharded: Sharded,
) -> None:
    # Arrange: two shards, the balance process, an API process; the load runs on all four markets.
    sharded.markets(0, *SNAPSHOTS)
    shard_1 = sharded.markets(1, *SNAPSHOTS)
    sharded.balance(*SNAPSHOTS)
    api = sharded.api(reply_timeout=3.0)
    load = Load(api.api, workers=8)
    deposited = load.fund()
    load.start()
    killed_markets = {symbol for symbol, shard in ON_SHARD.items() if shard == 1}
    other_markets = set(SYMBOLS) - killed_markets
    rng = random.Random(3)

    # Act: rounds of kill -9 of shard 1 under load, an outage of a second and a half, and a restart.
    outages = []
    for _ in range(3):
        time.sleep(rng.uniform(0.5, 1.2))
        kill_9(shard_1)
        down = time.monotonic()
        time.sleep(1.5)
        outages.append((down, time.monotonic()))
        shard_1 = sharded.markets(1, *SNAPSHOTS)
    time.sleep(1.0)
    load.finish()
    wait_for(lambda: worked_off(sharded.redis), what="every stream worked off", timeout=WAIT)

    # Assert: the other shard traded through every outage; nothing acknowledged was lost or doubled.
    for start, end in outages:
        assert load.answered_between(start, end, other_markets) >= 3, "the other shard did not keep trading"
    check_state(api.api, load, deposited)


@pytest.mark.slow
def test_kill_9_of_the_balance_process_under_load_loses_nothing_acknowledged_and_doubles_nothing(
    sharded: Sharded,
) -> None:
    # Arrange: two shards, the balance process, an API process; the load runs on all four markets.
    sharded.markets(0, *SNAPSHOTS)
    shard_1 = sharded.markets(1, *SNAPSHOTS)
    balance = sharded.balance(*SNAPSHOTS)
    api = sharded.api(reply_timeout=3.0)
    load = Load(api.api, workers=6)
    deposited = load.fund()
    load.start()
    rng = random.Random(4)

    # Act: rounds of kill -9 of the balance process under load, and a restart from its data directory. In the
    # middle round shard 1 is frozen (SIGSTOP) first, so batches are surely in flight when the balance process
    # dies: its restart sends them again, and the shard, thawed, matches each once.
    restarts = []
    for round_no in range(3):
        time.sleep(rng.uniform(0.5, 1.2))
        if round_no == 1:
            shard_1.process.send_signal(signal.SIGSTOP)
            time.sleep(0.6)
        kill_9(balance)
        time.sleep(0.3)
        if round_no == 1:
            shard_1.process.send_signal(signal.SIGCONT)
        balance = sharded.balance(*SNAPSHOTS)
        restarts.append(balance)
    time.sleep(1.0)
    load.finish()
    wait_for(lambda: worked_off(sharded.redis), what="every stream worked off", timeout=WAIT)

    # Assert: trading went on after each restart; nothing acknowledged was lost or doubled; funds conserved.
    assert sum(1 for s in load.sent if s.status == 200) > 20
    check_state(api.api, load, deposited)
    assert "batches in flight at the last stop to their shards again" in restarts[1].log()
    assert shard_1.stop() == 0
    duplicates = re.search(r"shard 1 stopped: .*'duplicates': (\d+)", shard_1.log())
    assert duplicates and int(duplicates.group(1)) > 0, "the shard never saw a batch sent again"


def test_a_restarted_shard_sends_again_what_a_pending_entry_made_and_the_balance_process_applies_it_once(
    sharded: Sharded,
) -> None:
    # Arrange: a trade on AAA_INR (shard 0), settled. Then, with shard 0 down, its last batch is in its stream
    # again and delivered to it without an acknowledgement: as if the shard had journaled and matched it, and
    # died before its results left.
    shard_0 = sharded.markets(0, "--trim-interval", "600")
    sharded.markets(1)
    sharded.balance()
    api = sharded.api()
    for user, asset, amount in [("maker", "AAA", "10"), ("taker", "INR", "1000")]:
        body = {"user_id": user, "asset": asset, "amount": amount, "txnId": f"{user}-1"}
        assert httpx.post(f"{api.api}/onramp", json=body, timeout=10, auth=AsNamedUser(api.api)).status_code == 200
    order = {"market": "AAA_INR", "price": "100", "quantity": "2"}
    assert httpx.post(
        f"{api.api}/order", json={**order, "side": "sell", "user_id": "maker"}, timeout=10, auth=AsNamedUser(api.api)
    ).is_success
    assert httpx.post(
        f"{api.api}/order", json={**order, "side": "buy", "user_id": "taker"}, timeout=10, auth=AsNamedUser(api.api)
    ).is_success
    before = {
        user: httpx.get(f"{api.api}/balance", params={"user_id": user}, timeout=10, auth=AsNamedUser(api.api)).json()
        for user in ("maker", "taker")
    }
    kill_9(shard_0)
    client = redis.Redis.from_url(sharded.redis.url)
    try:
        ((_, last),) = client.xrevrange(shard_stream(0), count=1)
        client.xadd(shard_stream(0), last)
        client.xreadgroup(MARKET_GROUP, "markets-0", {shard_stream(0): ">"}, count=10)

        # Act: shard 0 starts again.
        shard_0 = sharded.markets(0)
        wait_for(lambda: worked_off(sharded.redis), what="every stream worked off")
    finally:
        client.close()

    # Assert: the shard sent the settlement again (from its journal), the balance process did not apply it twice.
    after = {
        user: httpx.get(f"{api.api}/balance", params={"user_id": user}, timeout=10, auth=AsNamedUser(api.api)).json()
        for user in ("maker", "taker")
    }
    assert after == before
    assert "1 entries read before the restart are worked off" in shard_0.log()
    assert shard_0.stop() == 0
    assert "'resent': 1" in shard_0.log()


def test_a_market_added_at_run_time_goes_to_the_shard_with_fewest_markets_and_trades_there_at_once(
    tmp_path: pathlib.Path,
    redis_server: RedisServer,  # noqa: F811
) -> None:
    # Arrange: `run.py cluster --market-shards 2` with three markets (two on shard 0, one on shard 1).
    api_port, ws_port = free_port(), free_port()
    log_path = tmp_path / "cluster.log"
    argv = [
        sys.executable,
        "run.py",
        "cluster",
        "--redis",
        redis_server.url,
        "--market-shards",
        "2",
        "--api-port",
        str(api_port),
        "--ws-port",
        str(ws_port),
        "--api-workers",
        "1",
        "--ws-workers",
        "0",
        "--data-dir",
        str(tmp_path / "data"),
        "--markets",
        "AAA_INR:0.01:1,BBB_INR:0.01:1,CCC_INR:0.01:1",
        "--assets",
        ASSETS,
    ]
    supervisor = subprocess.Popen(argv, cwd=ROOT, stdout=log_path.open("wb"), stderr=subprocess.STDOUT)
    api = f"http://127.0.0.1:{api_port}/api/v1"

    def ready() -> bool:
        try:
            return len(httpx.get(f"{api}/markets", timeout=1).json()) == 3
        except (httpx.HTTPError, ValueError):
            return False

    try:
        wait_for(ready, what=f"the cluster:\n{log_path.read_text(errors='replace')[-3000:]}")
        assert {m["symbol"]: m["shard"] for m in httpx.get(f"{api}/markets", timeout=5).json()} == {
            "AAA_INR": 0,
            "BBB_INR": 1,
            "CCC_INR": 0,
        }

        # Act: add a market, fund two users, and cross two orders on it right away.
        spec = {"symbol": "DDD_INR", "base": "DDD", "quote": "INR", "tickSize": "0.01", "lotSize": "1"}
        created = httpx.post(f"{api}/markets", json=spec, timeout=10, auth=AsNamedUser(api))
        for user, asset, amount in [("maker", "DDD", "10"), ("taker", "INR", "1000")]:
            body = {"user_id": user, "asset": asset, "amount": amount, "txnId": f"{user}-1"}
            assert httpx.post(f"{api}/onramp", json=body, timeout=10, auth=AsNamedUser(api)).status_code == 200
        order = {"market": "DDD_INR", "price": "100", "quantity": "3"}
        sell = httpx.post(
            f"{api}/order", json={**order, "side": "sell", "user_id": "maker"}, timeout=10, auth=AsNamedUser(api)
        )
        buy = httpx.post(
            f"{api}/order", json={**order, "side": "buy", "user_id": "taker"}, timeout=10, auth=AsNamedUser(api)
        )

        # Assert: the new market is on shard 1 (the one with fewer markets), said by the API, kept in Redis,
        # hosted by that shard's process, and it traded at once.
        assert created.status_code == 201, created.text
        assert created.json()["shard"] == 1
        assert redis.Redis.from_url(redis_server.url).hget(SHARDS, "DDD_INR") == b"1"
        assert sell.status_code == 200 and buy.status_code == 200, (sell.text, buy.text)
        assert buy.json()["status"] == "FILLED"
        depth = httpx.get(f"{api}/depth", params={"symbol": "DDD_INR"}, timeout=10).json()
        assert depth["bids"] == [] and depth["asks"] == []
        assert [t["quantity"] for t in httpx.get(f"{api}/trades", params={"symbol": "DDD_INR"}, timeout=10).json()] == [
            "3"
        ]
        wait_for(lambda: "shard 1 matches market DDD_INR" in log_path.read_text(errors="replace"), what="the log")
    finally:
        supervisor.send_signal(signal.SIGTERM)
        try:
            code = supervisor.wait(30)
        except subprocess.TimeoutExpired:
            supervisor.kill()
            code = supervisor.wait(10)
    assert code == 0, log_path.read_text(errors="replace")[-3000:]
    assert "shard 0 matches market DDD_INR" not in log_path.read_text(errors="replace")
