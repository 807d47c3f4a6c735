"""One reconnect loop for every Redis connection of the cluster: run a session, and when Redis goes away,
say so once and run it again after a backoff (50 ms doubling to 2 s), until stopped.

A session is an async function that connects, does its work until the connection fails (raising a
redis or OS error) and calls `connected()` once it is connected, which resets the backoff.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable

import redis
from redis.asyncio.client import PubSub

from openbell.metrics import REDIS_RECONNECTS

log = logging.getLogger(__name__)

FIRST_DELAY = 0.05
LONGEST_DELAY = 2.0

Session = Callable[[Callable[[], None]], Awaitable[None]]


async def keep_connected(
    session: Session,
    *,
    what: str,
    on_lost: Callable[[BaseException], None] | None = None,
    stop: asyncio.Event | None = None,
) -> None:
    """Run `session` again and again until `stop` is set (or the task is cancelled)."""
    delay = FIRST_DELAY

    def connected() -> None:
        nonlocal delay
        delay = FIRST_DELAY

    while stop is None or not stop.is_set():
        try:
            await session(connected)
        except (redis.RedisError, OSError) as error:
            if delay == FIRST_DELAY:
                log.warning("%s lost redis (%s); reconnecting", what, error)
            REDIS_RECONNECTS.labels("api" if what.startswith("api ") else what).inc()
            if on_lost is not None:
                on_lost(error)
        if stop is None:
            await asyncio.sleep(delay)
        else:
            await sleep_or_stop(stop, delay)
        delay = min(delay * 2, LONGEST_DELAY)


async def sleep_or_stop(stop: asyncio.Event, seconds: float) -> None:
    """Sleep `seconds`, or less if `stop` is set meanwhile."""
    try:
        async with asyncio.timeout(seconds):
            await stop.wait()
    except TimeoutError:
        pass


async def close_quietly(pubsub: PubSub) -> None:
    """Close a pub/sub connection that may already be broken."""
    try:
        await pubsub.aclose()
    except Exception:
        pass
