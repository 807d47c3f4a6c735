"""The listen-key stores: in memory (the embedded server) and in Redis (the cluster), the same rules: a key lives
LISTEN_KEY_SECONDS from its making or last extension, only its user extends or ends it, and a user holds at most
MAX_PER_USER keys (making one more ends the one extended longest ago)."""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from typing import Any

import pytest
import redis
from redis_server import RedisServer, redis_server  # noqa: F401  (fixture)

from openbell.cluster.listen_keys import USER_PREFIX, RedisListenKeys
from openbell.edge.listen_keys import LISTEN_KEY, LISTEN_KEY_SECONDS, MAX_PER_USER, MemoryListenKeys


class Clock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


@pytest.fixture(params=["memory", "redis"])
def make_store(request: pytest.FixtureRequest) -> Callable[[], Any]:
    """Makes the store under test; a Redis store is used within one event loop and closed there."""
    if request.param == "memory":
        memory = MemoryListenKeys()
        return lambda: memory
    server: RedisServer = request.getfixturevalue("redis_server")
    return lambda: RedisListenKeys(server.url)


async def closed(store: Any) -> None:
    if isinstance(store, RedisListenKeys):
        await store.close()


def test_a_user_holds_at_most_max_per_user_keys_and_the_oldest_goes_first(make_store: Callable[[], Any]) -> None:
    async def scenario() -> tuple[list[str], list[str | None], str | None]:
        store = make_store()
        try:
            made = [await store.create("alice") for _ in range(MAX_PER_USER + 2)]
            other = await store.create("bob")
            return made, [await store.user_of(key) for key in made], await store.user_of(other)
        finally:
            await closed(store)

    made, owners, other = asyncio.run(scenario())

    assert all(LISTEN_KEY.match(key) for key in made) and len(set(made)) == len(made)
    assert owners == [None, None] + ["alice"] * MAX_PER_USER
    assert other == "bob"  # another user's keys are not counted


def test_making_one_more_key_ends_the_one_extended_longest_ago(make_store: Callable[[], Any]) -> None:
    async def scenario() -> list[str | None]:
        store = make_store()
        try:
            made = [await store.create("dave") for _ in range(MAX_PER_USER)]  # within a millisecond or two
            assert await store.extend(made[0], "dave")  # the first is now the one extended last
            await store.create("dave")
            return [await store.user_of(key) for key in made]
        finally:
            await closed(store)

    owners = asyncio.run(scenario())

    assert owners == ["dave", None] + ["dave"] * (MAX_PER_USER - 2)


def test_only_its_user_extends_or_ends_a_key(make_store: Callable[[], Any]) -> None:
    async def scenario() -> list[Any]:
        store = make_store()
        try:
            key = await store.create("alice")
            return [
                await store.extend(key, "mallory"),
                await store.delete(key, "mallory"),
                await store.user_of(key),
                await store.extend(key, "alice"),
                await store.delete(key, "alice"),
                await store.user_of(key),
                await store.extend(key, "alice"),
                await store.delete(key, "alice"),
            ]
        finally:
            await closed(store)

    assert asyncio.run(scenario()) == [False, False, "alice", True, True, None, False, False]


def test_in_redis_a_key_and_its_users_set_expire_by_themselves(redis_server: RedisServer) -> None:  # noqa: F811
    async def scenario() -> str:
        store = RedisListenKeys(redis_server.url)
        try:
            key: str = await store.create("carol")
            return key
        finally:
            await store.close()

    key = asyncio.run(scenario())

    client = redis.Redis.from_url(redis_server.url)
    try:
        ttls = (client.ttl(f"openbell:listen:{key}"), client.ttl(f"{USER_PREFIX}carol"))
        members = client.zrange(f"{USER_PREFIX}carol", 0, -1)
    finally:
        client.close()
    assert all(LISTEN_KEY_SECONDS - 5 <= ttl <= LISTEN_KEY_SECONDS for ttl in ttls), ttls
    assert members == [key.encode()]


def test_in_memory_a_key_expires_unless_extended_and_expiries_stay_bounded() -> None:
    clock = Clock()
    store = MemoryListenKeys(clock=clock)

    async def scenario() -> tuple[str | None, str | None, int, int]:
        kept, dropped = await store.create("alice"), await store.create("alice")
        for _ in range(3000):  # extensions leave stale entries in the expiry queue
            clock.now += 1
            assert await store.extend(kept, "alice")
        clock.now += LISTEN_KEY_SECONDS - 1
        await store.create("bob")  # a create forgets what has expired
        queued = len(store._expiries)
        return await store.user_of(kept), await store.user_of(dropped), len(store), queued

    kept, dropped, count, queued = asyncio.run(scenario())

    assert (kept, dropped, count) == ("alice", None, 2)
    assert queued <= 4 * count + 1024 + 1
