"""`GET /metrics`: Prometheus text that counts what the venue did, in the embedded server and across the processes
of the Redis deployment (one scrape of any API process), and nothing measured with `--no-metrics`.

Each test drives a real server with real HTTP and WebSocket clients, then parses the scrape with
prometheus_client's own parser and checks the figures against what it did: orders accepted, one rejected for
insufficient funds, one trade, the per-route latency counts, engine batches, journal fsyncs, history and
WebSocket gauges.
"""

from __future__ import annotations

import asyncio
import json
import pathlib
import time
from collections.abc import Callable, Iterator
from typing import Any

import httpx
import pytest
import websockets
from conftest import AsNamedUser, RunningServer, start_server
from prometheus_client import CollectorRegistry, Histogram
from prometheus_client.parser import text_string_to_metric_families
from redis_server import RedisServer, redis_server  # noqa: F401 (fixture)
from test_cluster import Cluster, deposit, order, wait_for

from openbell.core.types import ResultCode
from openbell.http.observe import LatencyTally
from openbell.metrics import LATENCY_BUCKETS

WAIT = 20.0


def scrape(base_url: str) -> dict[tuple[str, tuple[tuple[str, str], ...]], float]:
    """Every sample of `/metrics`: (name, sorted labels) -> value."""
    response = httpx.get(f"{base_url}/metrics", timeout=10)
    assert response.status_code == 200
    assert response.headers["content-type"].startswith("text/plain")
    samples = {}
    for family in text_string_to_metric_families(response.text):
        for sample in family.samples:
            labels = tuple(sorted((k, v) for k, v in sample.labels.items() if k != "pid"))
            key = (sample.name, labels)
            samples[key] = samples.get(key, 0.0) + sample.value if "pid" in sample.labels else sample.value
    return samples


def value(samples: dict[Any, float], name: str, **labels: str) -> float:
    return samples.get((name, tuple(sorted(labels.items()))), 0.0)


def eventually(base_url: str, check: Callable[[dict[Any, float]], bool], what: str) -> dict[Any, float]:
    deadline = time.monotonic() + WAIT
    while True:
        samples = scrape(base_url)
        if check(samples):
            return samples
        assert time.monotonic() < deadline, f"timed out waiting for {what}"
        time.sleep(0.1)


def trade_once(api: str) -> None:
    """alice and bob fund themselves; alice bids twice, bob sells into one bid; carol's order is unfunded."""
    with httpx.Client(base_url=api, timeout=10, auth=AsNamedUser(api)) as client:
        for user, asset, amount, txn in (("alice", "INR", "10000", "m-a"), ("bob", "TATA", "100", "m-b")):
            assert client.post("/onramp", json={"user_id": user, "asset": asset, "amount": amount, "txnId": txn}).status_code == 200
        body = {"market": "TATA_INR", "type": "limit", "timeInForce": "GTC"}
        assert client.post("/order", json={**body, "user_id": "alice", "side": "buy", "price": "100", "quantity": "2"}).status_code == 200
        assert client.post("/order", json={**body, "user_id": "alice", "side": "buy", "price": "99", "quantity": "1"}).status_code == 200
        assert client.post("/order", json={**body, "user_id": "bob", "side": "sell", "price": "100", "quantity": "2"}).status_code == 200
        refused = client.post("/order", json={**body, "user_id": "carol", "side": "buy", "price": "100", "quantity": "1"})
        assert refused.status_code == 400 and refused.json()["code"] == ResultCode.INSUFFICIENT_FUNDS.value


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[RunningServer]:
    running = start_server(tmp_path_factory.mktemp("metrics"))
    yield running
    assert running.stop() == 0, running.log()


def test_orders_accepted_and_rejected_by_code_and_trades_are_counted(server: RunningServer) -> None:
    trade_once(server.api)

    samples = eventually(
        server.base_url, lambda s: value(s, "openbell_trades_total", market="TATA_INR") >= 1, "the trade to count"
    )

    assert value(samples, "openbell_orders_total", result="accepted") == 3
    assert value(samples, "openbell_orders_total", result="INSUFFICIENT_FUNDS") == 1
    assert value(samples, "openbell_trades_total", market="TATA_INR") == 1


def test_request_latency_is_a_histogram_per_route_and_engine_batches_and_fsyncs_are_measured(
    server: RunningServer,
) -> None:
    before = scrape(server.base_url)
    with httpx.Client(base_url=server.api, timeout=10) as client:
        for _ in range(5):
            assert client.get("/depth", params={"market": "TATA_INR"}).status_code == 200

    samples = scrape(server.base_url)

    depth = {"method": "GET", "route": "api/v1/depth"}
    count = "openbell_http_request_duration_seconds_count"
    assert value(samples, count, **depth) - value(before, count, **depth) == 5
    assert value(samples, "openbell_http_request_duration_seconds_bucket", le="+Inf", **depth) == value(
        samples, count, **depth
    )
    assert value(samples, "openbell_engine_batch_commands_count", stage="balance") >= 1
    assert value(samples, "openbell_engine_batch_commands_count", stage="market") >= 1
    assert value(samples, "openbell_journal_fsync_seconds_count") >= 1
    assert ("openbell_history_backlog_events", ()) in samples
    assert ("openbell_engine_queue_depth", (("queue", "intake"),)) in samples


def test_websocket_connections_and_subscriptions_are_gauges(server: RunningServer) -> None:
    async def scenario() -> None:
        async with websockets.connect(server.ws_url) as ws:
            await ws.send(json.dumps({"method": "SUBSCRIBE", "params": ["trade@TATA_INR", "depth@TATA_INR"], "id": 1}))
            assert json.loads(await asyncio.wait_for(ws.recv(), WAIT))["id"] == 1
            samples = scrape(server.base_url)
            assert value(samples, "openbell_ws_connections") == 1
            assert value(samples, "openbell_ws_subscriptions") == 2

    asyncio.run(scenario())

    eventually(server.base_url, lambda s: value(s, "openbell_ws_connections") == 0, "the connection to be gone")
    assert value(scrape(server.base_url), "openbell_ws_subscriptions") == 0


def test_with_no_metrics_the_endpoint_answers_and_nothing_is_measured(tmp_path: pathlib.Path) -> None:
    running = start_server(tmp_path, "--no-metrics")
    try:
        trade_once(running.api)
        samples = scrape(running.base_url)
    finally:
        assert running.stop() == 0

    assert value(samples, "openbell_orders_total", result="accepted") == 0
    assert value(samples, "openbell_http_request_duration_seconds_count", method="POST", route="api/v1/order") == 0


def test_one_scrape_of_an_api_process_shows_every_process_of_the_deployment(
    tmp_path: pathlib.Path, redis_server: RedisServer, monkeypatch: pytest.MonkeyPatch  # noqa: F811
) -> None:
    monkeypatch.setenv("PROMETHEUS_MULTIPROC_DIR", str(tmp_path / "metrics"))
    cluster = Cluster(tmp_path, redis_server)
    try:
        cluster.engine()
        placing, scraped = cluster.api(), cluster.api()
        assert deposit(placing, "alice", "INR", "10000", "c-a").status_code == 200
        assert deposit(placing, "bob", "TATA", "100", "c-b").status_code == 200
        assert order(placing, "alice", "buy", "100", "1").status_code == 200
        assert order(placing, "bob", "sell", "100", "1").status_code == 200
        base = f"http://127.0.0.1:{scraped.port}"

        posted = {"method": "POST", "route": "api/v1/order"}
        count = "openbell_http_request_duration_seconds_count"
        samples = eventually(  # the other API process writes its latency tally within FLUSH_SECONDS
            base,
            lambda s: value(s, "openbell_trades_total", market="TATA_INR") == 1 and value(s, count, **posted) >= 2,
            "the trade, and the other API process's latencies",
        )

        assert value(samples, "openbell_orders_total", result="accepted") == 2  # counted in the engine process
        assert value(samples, count, **posted) == 2  # in the other API process
    finally:
        cluster.close()
    wait_for(lambda: all(not proc.alive() for proc in cluster.procs), what="the processes to stop")


def test_the_grafana_dashboard_shows_only_metrics_openbell_exports() -> None:
    import re

    from prometheus_client import REGISTRY

    from openbell import metrics

    dashboard = json.loads((pathlib.Path(__file__).resolve().parent.parent / "docs" / "grafana-dashboard.json").read_text())
    shown = {
        re.sub(r"_(bucket|sum|count)$", "", name)
        for panel in dashboard["panels"]
        for target in panel["targets"]
        for name in re.findall(r"openbell_[a-z_]+", target["expr"])
    }
    exported = {family.name for family in REGISTRY.collect()} | {
        family.name + "_total" for family in REGISTRY.collect() if family.type == "counter"
    }

    assert metrics.ORDERS is not None
    assert shown <= exported, shown - exported
    assert {"openbell_orders_total", "openbell_http_request_duration_seconds", "openbell_journal_fsync_seconds",
            "openbell_history_lag_seconds", "openbell_ws_connections", "openbell_redis_reconnects_total"} <= shown  # fmt: skip


def test_a_latency_tally_adds_to_the_histogram_exactly_what_observing_each_value_would() -> None:
    # Arrange: the same values, on bucket bounds, between them, below the first and past the last.
    registry = CollectorRegistry()
    labels = ["method", "route"]
    observed = Histogram("observed", "each value observed", labels, buckets=LATENCY_BUCKETS, registry=registry)
    tallied = Histogram("tallied", "the values tallied", labels, buckets=LATENCY_BUCKETS, registry=registry)
    values = [0.0, 0.0001, 0.0005, 0.00051, 0.003, 0.003, 0.7, 10.0, 25.0]
    key = ("POST", "api/v1/order")

    # Act
    for seconds in values:
        observed.labels(*key).observe(seconds)

    async def tally_them() -> LatencyTally:
        tally = LatencyTally(tallied, LATENCY_BUCKETS)
        for seconds in values:
            tally.observe(key, seconds)
        tally.observe(("GET", "api/v1/depth"), 0.002)
        tally.flush()
        return tally

    tally = asyncio.run(tally_them())

    # Assert: every bucket, the count and the sum alike; nothing left pending.
    def samples(name: str) -> dict[tuple[str, str], float]:
        family = next(f for f in registry.collect() if f.name == name)
        return {
            (sample.name.removeprefix(name), sample.labels.get("le", "")): sample.value
            for sample in family.samples
            if sample.labels["route"] == "api/v1/order" and not sample.name.endswith("_created")
        }

    assert samples("tallied") == samples("observed")
    assert samples("tallied")[("_count", "")] == len(values)
    assert samples("tallied")[("_bucket", "0.0005")] == 3
    assert tally.pending == {}
