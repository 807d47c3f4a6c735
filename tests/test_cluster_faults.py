"""Faults of the Redis-fed deployment: the engine killed with commands queued, Redis stopped during traffic."""

from __future__ import annotations

import asyncio
import time
from concurrent.futures import ThreadPoolExecutor
from decimal import Decimal

import httpx
import ujson
import websockets
from conftest import AsNamedUser
from redis_server import redis_server  # noqa: F401  (fixture)
from test_cluster import WAIT, Cluster, Proc, cluster, deposit, get, order, pending_count, wait_for  # noqa: F401


def totals(api: Proc, user: str) -> dict[str, tuple[Decimal, Decimal]]:
    return {
        asset: (Decimal(b["available"]), Decimal(b["locked"]))
        for asset, b in get(api, "/balance", user_id=user).items()
    }


def test_kill_9_of_the_engine_with_commands_queued_loses_nothing_acknowledged_and_applies_nothing_twice(
    cluster: Cluster,  # noqa: F811
) -> None:
    # Arrange: an engine with a data directory, two API processes, a funded buyer.
    engine = cluster.engine()
    apis = [cluster.api(reply_timeout=3.0), cluster.api(reply_timeout=3.0)]
    assert deposit(apis[0], "whale", "INR", "100000", "seed").status_code == 200
    deposits = [(f"d-{i:03d}", apis[i % 2]) for i in range(160)]
    orders = [(f"{1 + i / 100:.2f}", apis[i % 2]) for i in range(80)]  # resting buys, distinct prices
    jobs = [("deposit", key, api) for key, api in deposits] + [("order", price, api) for price, api in orders]
    jobs.sort(key=lambda job: hash(job[1]))

    def run(job: tuple[str, str, Proc]) -> int:
        kind, key, api = job
        try:
            if kind == "deposit":
                return deposit(api, "whale", "INR", "1", key, timeout=10).status_code
            return order(api, "whale", "buy", key, "1").status_code
        except httpx.HTTPError:
            return 0

    # Act: the burst runs; the engine is killed -9 partway and restarted while requests keep coming.
    with ThreadPoolExecutor(max_workers=12) as pool:
        futures = [pool.submit(run, job) for job in jobs]
        wait_for(lambda: sum(f.done() for f in futures) >= 25, what="the first replies")
        engine.kill9()
        time.sleep(1.0)
        engine = cluster.engine()
        statuses = [f.result(timeout=60) for f in futures]
    wait_for(lambda: pending_count(cluster.redis) == 0, what="every queued command worked off", timeout=WAIT)

    # Assert: every request was answered 200 or "outcome unknown" (504), and every one of them was
    # applied exactly once: all deposits credited once, one resting order per request, funds conserved.
    assert set(statuses) <= {200, 504}, statuses
    assert statuses.count(200) >= 25
    for api in apis:
        open_orders = get(api, "/order/open", user_id="whale")
        assert sorted(o["price"] for o in open_orders) == sorted(price for price, _ in orders)
        inr_available, inr_locked = totals(api, "whale")["INR"]
        assert inr_locked == sum(Decimal(price) for price, _ in orders)
        assert inr_available + inr_locked == Decimal("100000") + len(deposits)

    # And a second, clean restart rebuilds the same state from the engine's journal.
    before = totals(apis[0], "whale")
    assert engine.stop() == 0
    cluster.engine()
    assert totals(apis[1], "whale") == before


def test_while_redis_is_down_the_api_answers_503_at_once_and_everything_resumes_when_it_returns(
    cluster: Cluster,  # noqa: F811
) -> None:
    # Arrange: a working cluster with some state.
    engine = cluster.engine()
    api = cluster.api(reply_timeout=3.0)
    assert deposit(api, "u", "INR", "50", "before").status_code == 200

    # Act: Redis stops.
    cluster.redis.stop()
    time.sleep(0.3)
    answers = []
    for i in range(5):
        started = time.monotonic()
        response = deposit(api, "u", "INR", "1", f"down-{i}", timeout=5)
        answers.append((response.status_code, time.monotonic() - started))

    # Assert: 503 at once (no hang), and nothing is written.
    assert [status for status, _ in answers] == [503] * 5, answers
    assert max(seconds for _, seconds in answers) < 1.0, answers

    # Act: Redis comes back (same port, same data); traffic resumes.
    cluster.redis.start()

    def recovered() -> bool:
        try:
            return deposit(api, "u", "INR", "2", "after", timeout=5).status_code == 200
        except httpx.HTTPError:
            return False

    wait_for(recovered, what="the API to recover", timeout=WAIT)

    # Assert: state from before the outage is still there; the 503s changed nothing; the engine lived on.
    assert get(api, "/balance", user_id="u") == {"INR": {"available": "52.00", "locked": "0.00"}}
    assert engine.alive()
    placed = order(api, "u", "buy", "1", "1")
    assert placed.status_code == 200, placed.text


def test_a_websocket_process_that_loses_redis_closes_its_clients_streams_with_a_reason(
    cluster: Cluster,  # noqa: F811
) -> None:
    # Arrange: engine and WS processes; a client subscribed to a market's depth.
    cluster.engine()
    ws = cluster.ws()

    async def scenario() -> tuple[int | None, str]:
        async with websockets.connect(f"ws://127.0.0.1:{ws.port}/ws", open_timeout=5) as client:
            await client.send(ujson.dumps({"method": "SUBSCRIBE", "params": ["depth@TATA_INR"], "id": 1}))
            assert ujson.loads(await asyncio.wait_for(client.recv(), 5)) == {"result": None, "id": 1}
            # Act: Redis stops, so this process can no longer see the engine's events.
            cluster.redis.stop()
            try:
                while True:
                    await asyncio.wait_for(client.recv(), 15)
            except websockets.ConnectionClosed as closed:
                return closed.rcvd.code if closed.rcvd else None, closed.rcvd.reason if closed.rcvd else ""
        return None, ""

    # Assert: the stream is closed, and the reason tells the client to resync.
    code, reason = asyncio.run(scenario())
    assert code == 1011, (code, reason)
    assert "resync" in reason, reason


def test_a_503_during_redis_restarts_under_load_was_never_applied(cluster: Cluster) -> None:  # noqa: F811
    """503 means "not applied"; anything that may have reached Redis is a 504 ("outcome unknown").

    Four clients place resting buys with unique clientOrderIds while Redis is stopped (SIGTERM or SIGKILL,
    alternately) and started again at random moments. Afterwards every order answered 200 rests on the
    book, and no order answered 503 exists: sending its clientOrderId again makes a new order (a 200, not
    the 409 that names an order already made).
    """
    import random
    import threading

    cluster.engine()
    # four clients of one key as fast as they go: no rate limit here (this test is about Redis restarts)
    api = cluster.api("--orders-per-key", "0", "--reads-per-key", "0", reply_timeout=2.0)
    assert deposit(api, "restarts", "INR", "1000000", "restarts-funds").status_code == 200
    rng = random.Random(5)
    stop = threading.Event()
    outcomes: dict[str, int] = {}
    lock = threading.Lock()

    def client(worker: int) -> None:
        placed = (
            0  # orders that may rest: 4 x 150 and the 200 resent below stay under 1,000 open orders a user may have
        )
        with httpx.Client(base_url=api.api, timeout=10, auth=AsNamedUser(api.api)) as http:
            for number in range(20_000):  # a bound only: `stop` ends the load first
                if stop.is_set() or placed >= 150:
                    return
                client_order_id = f"r{worker}-{number}"
                body = {
                    "user_id": "restarts",
                    "market": "TATA_INR",
                    "side": "buy",
                    "price": "1.00",
                    "quantity": "1",
                    "clientOrderId": client_order_id,
                }
                try:
                    status = http.post("/order", json=body).status_code
                except httpx.HTTPError:
                    status = 0
                with lock:
                    outcomes[client_order_id] = status
                if status == 503:
                    time.sleep(0.01)  # Redis is down: nothing rests; try again shortly
                else:
                    placed += 1

    threads = [threading.Thread(target=client, args=(worker,)) for worker in range(4)]
    for thread in threads:
        thread.start()
    try:
        for restart in range(8):
            time.sleep(rng.uniform(0.05, 0.6))
            if restart % 2:
                cluster.redis.process.kill()  # type: ignore[union-attr]
                cluster.redis.process.wait(5)  # type: ignore[union-attr]
            else:
                cluster.redis.stop()
            time.sleep(rng.uniform(0.05, 0.4))
            cluster.redis.start()
    finally:
        stop.set()
        for thread in threads:
            thread.join(WAIT)

    def settled() -> bool:
        try:
            return deposit(api, "restarts", "INR", "1", "restarts-after", timeout=5).status_code == 200
        except httpx.HTTPError:
            return False

    wait_for(settled, what="the cluster to recover", timeout=WAIT)
    by_status: dict[int, list[str]] = {}
    for client_order_id, status in outcomes.items():
        by_status.setdefault(status, []).append(client_order_id)
    assert set(by_status) <= {200, 503, 504}, {status: len(ids) for status, ids in by_status.items()}
    assert by_status.get(503), "Redis was never seen down: the test proved nothing"
    assert by_status.get(200)

    # Every acknowledged order rests; no 503'd one does.
    resting = {o["clientOrderId"] for o in get(api, "/order/open", user_id="restarts")}
    assert set(by_status[200]) <= resting
    assert not resting & set(by_status[503]), sorted(resting & set(by_status[503]))[:10]
    # And none was made later (a late-applied command would now answer 409 with the order it made).
    for client_order_id in by_status[503][:200]:
        again = order(api, "restarts", "buy", "1.00", "1", clientOrderId=client_order_id)
        assert again.status_code == 200, (client_order_id, again.status_code, again.text)


def test_a_command_that_reached_redis_before_the_connection_broke_is_a_504_never_a_503(
    cluster: Cluster,  # noqa: F811
) -> None:
    """The API's connection to Redis breaks after an order's XADD reached Redis and before Redis's answer came
    back, and Redis stays unreachable for a moment: the order is applied, so its answer must be 504."""
    from tcp_proxy import TcpProxy

    cluster.engine()
    proxy = TcpProxy(cluster.redis.port).start()
    try:
        # rate limits, seen signatures and listen keys straight to Redis: the order is the next request proxied
        api = cluster.api("--redis", proxy.url, "--auth-redis", cluster.redis.url, reply_timeout=3.0)
        assert deposit(api, "cut", "INR", "1000", "cut-funds").status_code == 200
        # the user's key made and just looked up: the API worker knows it, so the next Redis request is the order
        get(api, "/balance", user_id="cut")

        # Act
        proxy.cut_after_next_request(refuse_for=1.5)
        cut = order(api, "cut", "buy", "1.00", "1", clientOrderId="cut-order")

        # Assert: the order was applied (the engine read it from Redis), and the client was told "unknown"
        assert proxy.cuts == 1
        assert cut.status_code == 504, cut.text

        def recovered() -> bool:
            try:
                return order(api, "cut", "buy", "1.00", "1", clientOrderId="cut-order").status_code == 409
            except httpx.HTTPError:
                return False

        wait_for(recovered, what="the retried clientOrderId to name the order the cut one made", timeout=WAIT)
        assert [o["clientOrderId"] for o in get(api, "/order/open", user_id="cut")] == ["cut-order"]
    finally:
        proxy.close()
