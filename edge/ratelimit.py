"""Rate limits: token buckets per API key and per client address, one for order entry and one for reads.

A bucket holds up to `burst` tokens and gains `rate` per second; a request takes one, and a request that finds
none is refused (429) with `Retry-After`, the seconds until a token is there. Order entry (routes that need the
trade permission: place, cancel) and reads (everything else but the operator's routes) have separate buckets, so
a client reading hard does not stop its own orders, and one key's flood stops neither another key's orders nor
anyone's reads. A rate of 0 turns that limit off.

`LocalLimiter` keeps the buckets in this process (the embedded server). In the cluster,
`openbell.cluster.ratelimit.RedisLimiter` keeps each bucket in Redis so that it is one limit across every API
worker; a worker leases a few tokens at a time, so Redis is asked once per `lease` requests, not per request.
"""

from __future__ import annotations

import math
import time
from collections import OrderedDict
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Protocol

ORDERS = "orders"
READS = "reads"


@dataclass(frozen=True)
class Limit:
    rate: float
    """Tokens per second; 0: no limit."""
    burst: float
    """Most tokens the bucket holds (what a client may send at once after a quiet time)."""


@dataclass(frozen=True)
class RateLimits:
    orders_per_key: Limit = Limit(100, 200)
    reads_per_key: Limit = Limit(200, 400)
    orders_per_address: Limit = Limit(1000, 2000)
    reads_per_address: Limit = Limit(2000, 4000)

    @classmethod
    def of(cls, per_key: tuple[float, float], per_address: tuple[float, float], burst_seconds: float) -> RateLimits:
        """(orders, reads) per second per key and per address; each bucket holds `burst_seconds` of its rate."""

        def limit(rate: float) -> Limit:
            return Limit(rate, max(1.0, rate * burst_seconds))

        return cls(limit(per_key[0]), limit(per_key[1]), limit(per_address[0]), limit(per_address[1]))

    def for_key(self, kind: str) -> Limit:
        return self.orders_per_key if kind == ORDERS else self.reads_per_key

    def for_address(self, kind: str) -> Limit:
        return self.orders_per_address if kind == ORDERS else self.reads_per_address


class TokenBucket:
    __slots__ = ("tokens", "updated")

    def __init__(self, tokens: float, now: float) -> None:
        self.tokens = tokens
        self.updated = now

    def take(self, limit: Limit, now: float, count: float = 1.0) -> float:
        """Take `count` tokens if there are; returns 0, or the seconds until there will be (nothing taken)."""
        self.tokens = min(limit.burst, self.tokens + (now - self.updated) * limit.rate)
        self.updated = now
        if self.tokens >= count:
            self.tokens -= count
            return 0.0
        return (count - self.tokens) / limit.rate


class Limiter(Protocol):
    def try_admit(self, name: str, limit: Limit) -> float | None:
        """Take a token of bucket `name` if that needs no I/O: 0, or the seconds to wait; None if only `admit`
        can tell (the caller then awaits it)."""
        ...

    async def admit(self, checks: Sequence[tuple[str, Limit]]) -> float:
        """Take a token from each (bucket name, limit); 0 if every one had one, else the seconds to wait
        (then none is charged beyond the bucket that refused)."""
        ...


class LocalLimiter:
    """Buckets in this process, at most `max_buckets` (the least recently used are forgotten: a forgotten
    bucket comes back full, so forgetting only ever errs towards allowing)."""

    def __init__(self, max_buckets: int = 200_000, clock: Callable[[], float] = time.monotonic) -> None:
        self.max_buckets = max_buckets
        self._clock = clock
        self._buckets: OrderedDict[str, TokenBucket] = OrderedDict()

    def take(self, name: str, limit: Limit, now: float) -> float:
        bucket = self._buckets.get(name)
        if bucket is None:
            bucket = self._buckets[name] = TokenBucket(limit.burst, now)
            if len(self._buckets) > self.max_buckets:
                self._buckets.popitem(last=False)
        else:
            self._buckets.move_to_end(name)
        # TokenBucket.take, inline: this runs on every request
        tokens = bucket.tokens + (now - bucket.updated) * limit.rate
        if tokens > limit.burst:
            tokens = limit.burst
        bucket.updated = now
        if tokens >= 1.0:
            bucket.tokens = tokens - 1.0
            return 0.0
        bucket.tokens = tokens
        return (1.0 - tokens) / limit.rate

    def try_admit(self, name: str, limit: Limit) -> float | None:
        return self.take(name, limit, self._clock())

    async def admit(self, checks: Sequence[tuple[str, Limit]]) -> float:
        now = self._clock()
        for name, limit in checks:
            wait = self.take(name, limit, now)
            if wait:
                return wait
        return 0.0


def retry_after(seconds: float) -> str:
    """The Retry-After value (whole seconds, at least 1)."""
    return str(max(1, math.ceil(seconds)))
