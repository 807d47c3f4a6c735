"""Rate limits: token buckets per API key and per client address, order entry and reads apart, 429 with
Retry-After; in the cluster one limit across API workers (buckets in Redis)."""

from __future__ import annotations

import asyncio
import pathlib
import uuid
from collections import Counter
from typing import Any

import httpx
import pytest
from conftest import ADMIN_TOKEN, create_key, start_server
from redis_server import RedisServer, redis_server  # noqa: F401  (fixture)
from test_cluster import Cluster, cluster  # noqa: F401  (fixture)

from openbell.client import OperatorAuth, SignedAuth, Signer
from openbell.cluster.ratelimit import RedisLimiter
from openbell.core.types import ResultCode
from openbell.edge.ratelimit import Limit, LocalLimiter, RateLimits, TokenBucket, retry_after

ORDER = {"market": "TATA_INR", "side": "buy", "type": "limit", "price": "1.00", "quantity": "1"}


def unique(prefix: str) -> str:
    return f"{prefix}-{uuid.uuid4().hex[:10]}"


# ------------------------------------------------------------------------------------------- the buckets
def test_a_bucket_allows_its_burst_then_one_token_per_interval() -> None:
    limit = Limit(rate=2, burst=3)
    bucket = TokenBucket(limit.burst, now=0.0)

    assert [bucket.take(limit, 0.0) for _ in range(3)] == [0.0, 0.0, 0.0]
    assert bucket.take(limit, 0.0) == pytest.approx(0.5)
    assert bucket.take(limit, 0.5) == 0.0
    assert bucket.take(limit, 0.5) == pytest.approx(0.5)
    assert bucket.take(limit, 100.0) == 0.0 and bucket.tokens == pytest.approx(2.0)  # refilled to the burst only


def test_the_local_limiter_keeps_buckets_apart_and_forgets_the_least_recently_used() -> None:
    now = [0.0]
    limiter = LocalLimiter(max_buckets=2, clock=lambda: now[0])
    one = Limit(1, 1)

    assert asyncio.run(limiter.admit([("a", one)])) == 0.0
    assert asyncio.run(limiter.admit([("a", one)])) > 0
    assert asyncio.run(limiter.admit([("b", one)])) == 0.0
    assert asyncio.run(limiter.admit([("c", one)])) == 0.0  # "a" is forgotten: it comes back full
    assert asyncio.run(limiter.admit([("a", one)])) == 0.0


def test_limits_are_built_from_rates_and_burst_seconds_and_retry_after_is_whole_seconds() -> None:
    limits = RateLimits.of((10, 20), (100, 0), burst_seconds=2)
    assert limits.orders_per_key == Limit(10, 20) and limits.reads_per_key == Limit(20, 40)
    assert limits.orders_per_address == Limit(100, 200) and limits.reads_per_address.rate == 0
    assert [retry_after(s) for s in (0.01, 1.0, 1.2)] == ["1", "1", "2"]


def test_the_redis_limiter_shares_one_bucket_between_two_workers(redis_server: RedisServer) -> None:  # noqa: F811
    async def scenario() -> list[float]:
        first, second = RedisLimiter(redis_server.url), RedisLimiter(redis_server.url)
        limit = Limit(rate=0.5, burst=4)
        try:
            return [await (first if n % 2 else second).admit([("orders:key:k", limit)]) for n in range(8)]
        finally:
            await first.close()
            await second.close()

    waits = asyncio.run(scenario())
    assert waits[:4] == [0.0] * 4
    assert all(wait > 0 for wait in waits[4:])


# ------------------------------------------------------------------------------------------- one process
def signed(api: str, key: dict[str, Any]) -> httpx.Client:
    return httpx.Client(base_url=api, auth=SignedAuth(Signer(key["apiKey"], key["secret"])), timeout=10)


def test_a_key_over_its_order_limit_gets_429_while_its_reads_and_other_keys_go_on(tmp_path: pathlib.Path) -> None:
    server = start_server(
        tmp_path, "--in-memory", "--orders-per-key", "1", "--reads-per-key", "1000", "--rate-burst-seconds", "3"
    )
    try:
        flooder, other = create_key(server.api, unique("flood")), create_key(server.api, unique("other"))
        with signed(server.api, flooder) as client:
            answers = [client.post("/order", json=ORDER) for _ in range(6)]
            read = client.get("/balance")
        with signed(server.api, other) as client:
            others = [client.post("/order", json=ORDER).status_code for _ in range(2)]
    finally:
        assert server.stop() == 0, server.log()
    statuses = Counter(answer.status_code for answer in answers)
    assert statuses[429] >= 2 and statuses[429] + statuses[400] == 6  # 400: unfunded orders, past the limit
    limited = next(answer for answer in answers if answer.status_code == 429)
    assert limited.json()["code"] == int(ResultCode.RATE_LIMITED)
    assert int(limited.headers["Retry-After"]) >= 1
    assert read.status_code == 200
    assert 429 not in others


def test_an_address_over_its_read_limit_gets_429(tmp_path: pathlib.Path) -> None:
    server = start_server(tmp_path, "--in-memory", "--reads-per-address", "2", "--rate-burst-seconds", "2")
    try:
        statuses = Counter(httpx.get(f"{server.api}/depth?symbol=TATA_INR").status_code for _ in range(10))
        with httpx.Client(base_url=server.api, auth=OperatorAuth(ADMIN_TOKEN)) as admin:
            operator = admin.get("/admin/keys", params={"user_id": "x"}).status_code  # the operator is not limited
    finally:
        assert server.stop() == 0, server.log()
    assert statuses[429] >= 5 and statuses[200] >= 1
    assert operator == 200


def test_behind_a_trusted_proxy_each_forwarded_client_address_has_its_own_bucket(tmp_path: pathlib.Path) -> None:
    # Arrange: a server told that one proxy in front of it appends the client's address to X-Forwarded-For.
    server = start_server(
        tmp_path, "--in-memory", "--proxies", "1", "--reads-per-address", "2", "--rate-burst-seconds", "2"
    )
    try:
        # Act: one client (as the proxy forwards it, after whatever the client wrote itself) over its limit,
        # then another.
        def depth(forwarded_for: str) -> int:
            headers = {"X-Forwarded-For": forwarded_for}
            return httpx.get(f"{server.api}/depth?symbol=TATA_INR", headers=headers).status_code

        first = Counter(depth("203.0.113.9, 198.51.100.1") for _ in range(10))
        second = [depth("198.51.100.2") for _ in range(2)]
    finally:
        assert server.stop() == 0, server.log()

    # Assert: the first address ran out; the second was counted on its own, and the address the client
    # wrote before the proxy's (203.0.113.9) was not believed.
    assert first[429] >= 5 and first[200] >= 1
    assert second == [200, 200]


def test_without_trusted_proxies_x_forwarded_for_does_not_escape_the_address_limit(tmp_path: pathlib.Path) -> None:
    server = start_server(tmp_path, "--in-memory", "--reads-per-address", "2", "--rate-burst-seconds", "2")
    try:
        statuses = Counter(
            httpx.get(
                f"{server.api}/depth?symbol=TATA_INR", headers={"X-Forwarded-For": f"198.51.100.{n}"}
            ).status_code
            for n in range(10)
        )
    finally:
        assert server.stop() == 0, server.log()
    assert statuses[429] >= 5


def test_a_real_ip_header_from_the_proxy_names_the_client(tmp_path: pathlib.Path) -> None:
    server = start_server(
        tmp_path, "--in-memory", "--real-ip-header", "X-Real-IP", "--reads-per-address", "2", "--rate-burst-seconds", "2"
    )
    try:
        def depth(real_ip: str) -> int:
            return httpx.get(f"{server.api}/depth?symbol=TATA_INR", headers={"X-Real-IP": real_ip}).status_code

        first = Counter(depth("198.51.100.7") for _ in range(10))
        second = [depth("198.51.100.8") for _ in range(2)]
    finally:
        assert server.stop() == 0, server.log()
    assert first[429] >= 5
    assert second == [200, 200]


# ------------------------------------------------------------------------------------------- the cluster
def test_a_key_limit_holds_as_one_limit_across_two_api_workers(cluster: Cluster) -> None:  # noqa: F811
    cluster.engine()
    options = ("--orders-per-key", "0.5", "--rate-burst-seconds", "8")  # a bucket of 4 that barely refills
    first, second = cluster.api(*options), cluster.api(*options)
    key = create_key(first.api, unique("roamer"))
    with signed(first.api, key) as on_first, signed(second.api, key) as on_second:
        statuses = [(on_first if n % 2 else on_second).post("/order", json=ORDER).status_code for n in range(10)]
        other = create_key(first.api, unique("other"))
        with signed(second.api, other) as other_client:
            others = [other_client.post("/order", json=ORDER).status_code for _ in range(2)]
    accepted = sum(1 for status in statuses if status != 429)
    assert 4 <= accepted <= 5, statuses  # one bucket of 4 (+1 if a token refilled), not 4 per worker
    assert 429 not in others


def test_a_signed_order_replayed_to_another_api_worker_is_refused(cluster: Cluster) -> None:  # noqa: F811
    cluster.engine()
    first, second = cluster.api(), cluster.api()
    key = create_key(first.api, unique("replayer"))
    request = httpx.Request("POST", f"{first.api}/order", json=ORDER)
    from openbell.client import sign_request

    sign_request(request, Signer(key["apiKey"], key["secret"]))
    replayed = httpx.Request(
        "POST", f"{second.api}/order?{request.url.query.decode()}", headers=request.headers, content=request.content
    )
    with httpx.Client(timeout=10) as client:
        original = client.send(request)
        again = client.send(replayed)
    assert original.status_code in (200, 400), original.text  # accepted (an unfunded order is refused by funds)
    assert original.json().get("code") != int(ResultCode.REPLAYED_REQUEST)
    assert again.status_code == 400 and again.json()["code"] == int(ResultCode.REPLAYED_REQUEST), again.text
