"""Rate limits as one limit across every API worker of the cluster: each token bucket lives in Redis; and the
signatures already seen, so a replay is refused by every worker (`RedisReplays`).

A worker does not ask Redis per request: it leases up to `lease_seconds` worth of a bucket's rate at a time
(at least one token) and spends them locally; a lease left unused for `LEASE_TTL` seconds is dropped. So all
workers together admit at most the bucket's rate plus what they hold in leases (a fraction of a second's
worth each). The bucket itself is refilled and taken from inside Redis (a Lua script on Redis's own clock),
so workers never disagree about it. If Redis does not answer, each worker falls back to buckets of its own
(`LocalLimiter`) until it does: limits stay on, per worker.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Sequence

import redis.asyncio as aioredis
from redis.exceptions import RedisError

from openbell.edge.ratelimit import Limit, LocalLimiter

log = logging.getLogger(__name__)

PREFIX = "openbell:rate:"
LEASE_TTL = 1.0
TAKE = """
local rate = tonumber(ARGV[1])
local burst = tonumber(ARGV[2])
local want = tonumber(ARGV[3])
local clock = redis.call('TIME')
local now = tonumber(clock[1]) * 1000 + math.floor(tonumber(clock[2]) / 1000)
local state = redis.call('HMGET', KEYS[1], 't', 'u')
local tokens = tonumber(state[1])
local updated = tonumber(state[2])
if tokens == nil or updated == nil then
  tokens = burst
  updated = now
end
tokens = math.min(burst, tokens + math.max(0, now - updated) * rate / 1000)
local granted = math.min(want, math.floor(tokens))
tokens = tokens - granted
redis.call('HSET', KEYS[1], 't', tostring(tokens), 'u', tostring(now))
redis.call('PEXPIRE', KEYS[1], math.ceil(burst / rate * 1000) + 1000)
local wait = 0
if granted == 0 then
  wait = math.ceil((1 - tokens) / rate * 1000)
end
return {granted, wait}
"""


class RedisLimiter:
    def __init__(self, redis_url: str, lease_seconds: float = 0.05, timeout: float = 1.0) -> None:
        self.redis_url = redis_url
        self.lease_seconds = lease_seconds
        self.timeout = timeout
        self._client: aioredis.Redis | None = None
        self._script: object | None = None
        self._leases: dict[str, tuple[int, float]] = {}
        """bucket -> (tokens leased and not spent, when the lease lapses)."""
        self._leasing: dict[str, asyncio.Future[float]] = {}
        self._empty_until: dict[str, float] = {}
        """bucket -> until when Redis said it is empty: refused here without asking again."""
        self._fallback = LocalLimiter()
        self._failing = False

    def _redis(self) -> aioredis.Redis:
        if self._client is None:
            self._client = aioredis.Redis.from_url(
                self.redis_url, socket_timeout=self.timeout, socket_connect_timeout=self.timeout
            )
        return self._client

    def try_admit(self, name: str, limit: Limit) -> float | None:
        """A token from this worker's lease, or the wait Redis gave, without I/O; None when a lease is needed."""
        now = time.monotonic()
        lease = self._leases.get(name)
        if lease is not None and lease[0] > 0 and lease[1] > now:
            self._leases[name] = (lease[0] - 1, lease[1])
            return 0.0
        empty_until = self._empty_until.get(name)
        if empty_until is not None and empty_until > now:
            return empty_until - now
        return None

    async def admit(self, checks: Sequence[tuple[str, Limit]]) -> float:
        for name, limit in checks:
            wait = await self._take(name, limit)
            if wait:
                return wait
        return 0.0

    async def _take(self, name: str, limit: Limit) -> float:
        now = time.monotonic()
        lease = self._leases.get(name)
        if lease is not None and lease[0] > 0 and lease[1] > now:
            self._leases[name] = (lease[0] - 1, lease[1])
            return 0.0
        empty_until = self._empty_until.get(name)
        if empty_until is not None:
            if empty_until > now:
                return empty_until - now
            del self._empty_until[name]
        pending = self._leasing.get(name)
        if pending is not None:
            await asyncio.shield(pending)
            return await self._take(name, limit)  # the lease has come (or said how long to wait)
        future: asyncio.Future[float] = asyncio.get_running_loop().create_future()
        self._leasing[name] = future
        try:
            wait = await self._lease(name, limit)
            future.set_result(wait)
        finally:
            del self._leasing[name]
        if wait:
            return wait
        return await self._take(name, limit)

    async def _lease(self, name: str, limit: Limit) -> float:
        """Lease tokens of `name` from Redis; 0 once some are held, else the seconds to wait."""
        want = max(1, min(int(limit.burst), int(limit.rate * self.lease_seconds)))
        try:
            granted, wait_ms = await self._redis().eval(TAKE, 1, PREFIX + name, limit.rate, limit.burst, want)
        except (RedisError, OSError) as error:
            if not self._failing:
                log.warning("rate limits fall back to this worker's own buckets: redis does not answer (%s)", error)
                self._failing = True
            wait = self._fallback.take(name, limit, time.monotonic())
            if not wait:
                self._leases[name] = (1, time.monotonic() + LEASE_TTL)
            return wait
        if self._failing:
            log.info("rate limits are shared through redis again")
            self._failing = False
        if int(granted) <= 0:
            wait = max(0.001, int(wait_ms) / 1000)
            self._empty_until[name] = time.monotonic() + wait
            if len(self._empty_until) > 100_000:
                self._empty_until.clear()
            return wait
        self._leases[name] = (int(granted), time.monotonic() + LEASE_TTL)
        if len(self._leases) > 100_000:
            self._leases.clear()
        return 0.0

    async def close(self) -> None:
        if self._client is not None:
            await self._client.aclose()
            self._client = None


class RedisReplays:
    """The signatures of state-changing requests, shared by the API workers of a cluster: `SET NX` with the
    request's remaining window as expiry, so a replay sent to another worker is refused too. Redis not
    answering: each worker's own guard still refuses replays to itself."""

    def __init__(self, redis_url: str, timeout: float = 1.0) -> None:
        self.redis_url = redis_url
        self.timeout = timeout
        self._client: aioredis.Redis | None = None

    async def first_time(self, signature: bytes, remember_ms: int) -> bool:
        if self._client is None:
            self._client = aioredis.Redis.from_url(
                self.redis_url, socket_timeout=self.timeout, socket_connect_timeout=self.timeout
            )
        try:
            stored = await self._client.set(b"openbell:sig:" + signature, b"1", px=max(1, remember_ms), nx=True)
        except (RedisError, OSError):
            return True
        return bool(stored)
