"""Faults of the Redis-fed deployment: the engine killed with commands queued, Redis stopped during traffic."""

from __future__ import annotations

import asyncio
import time
from concurrent.futures import ThreadPoolExecutor
from decimal import Decimal

import httpx
import ujson
import websockets
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
