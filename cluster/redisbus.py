"""The event bus of a WebSocket process: the engine's events, read from Redis pub/sub.

`subscribe(fn)` works as on the engine's in-process bus: `fn` gets each batch of events, in the order
the engine published them (called on this process's event loop). The relay publishes every event on one
channel (`EVENTS`), one `EventBatch` per flush; this bus reads that channel and hands each batch on. (Why
one channel for everything, rather than only the channels someone listens to: docs/design.md.)

The engine's relay publishes events only while some process reads them. So after subscribing, the bus says
so on `LISTENERS` with a nonce and waits (at most `HELLO_TIMEOUT` s) until every relay that heard it has answered
that nonce on `LISTENERS_HEARD` before it counts as connected: from then on, every event is published. (Market
shards publish always and do not listen; the balance process's relay, like the engine's, answers.)

When the Redis connection is lost, each `on_interrupted` listener is called with a reason (so the
WebSocket server can close its clients' streams: they missed events and must resync); the bus
reconnects with backoff and subscribes again.
"""

from __future__ import annotations

import asyncio
import logging
import secrets
from collections.abc import Callable
from typing import Any

import redis.asyncio as aioredis

from openbell.actors.bus import InProcessEventBus
from openbell.cluster import EVENTS, LISTENERS, LISTENERS_HEARD, EventBatch
from openbell.cluster.reconnect import close_quietly, keep_connected
from openbell.core.wire import WireError, decode

log = logging.getLogger(__name__)

InterruptionListener = Callable[[str], None]

HELLO_TIMEOUT = 2.0
HEARD = LISTENERS_HEARD.encode()
"""Seconds a bus waits for the engine's relay to answer its hello before counting as connected anyway."""


class RedisEventBus(InProcessEventBus):
    """An in-process bus (local `subscribe`/`publish`) fed from Redis pub/sub instead of from actors."""

    def __init__(self, redis_url: str) -> None:
        super().__init__()
        self.redis_url = redis_url
        self._interruption_listeners: tuple[InterruptionListener, ...] = ()
        self._client: aioredis.Redis | None = None
        self._task: asyncio.Task[None] | None = None
        self.connected = False
        self.skipped = 0
        """Event messages that did not decode."""

    def on_interrupted(self, listener: InterruptionListener) -> Callable[[], None]:
        with self._lock:
            self._interruption_listeners = (*self._interruption_listeners, listener)

        def remove() -> None:
            with self._lock:
                self._interruption_listeners = tuple(s for s in self._interruption_listeners if s is not listener)

        return remove

    # ----------------------------------------------------------------- life cycle
    async def start(self) -> None:
        self._client = aioredis.Redis.from_url(self.redis_url, socket_connect_timeout=1)
        self._task = asyncio.create_task(keep_connected(self._listen, what="event bus", on_lost=self._lost))

    async def stop(self) -> None:
        if self._task is not None:
            self._task.cancel()
            await asyncio.gather(self._task, return_exceptions=True)
        if self._client is not None:
            await self._client.aclose()

    # ----------------------------------------------------------------- reading
    async def _listen(self, connected: Callable[[], None]) -> None:
        assert self._client is not None
        pubsub = self._client.pubsub()
        try:
            await pubsub.subscribe(EVENTS)
            await self._hello(pubsub)
            self.connected = True
            connected()
            while True:
                message = await pubsub.get_message(ignore_subscribe_messages=True, timeout=1.0)
                if message is not None:
                    self._deliver(message)
        finally:
            self.connected = False
            await close_quietly(pubsub)

    async def _hello(self, pubsub: Any) -> None:
        """Tell the relays that this process reads events; wait until each that heard it has answered."""
        assert self._client is not None
        nonce = secrets.token_hex(8).encode()
        await pubsub.subscribe(LISTENERS_HEARD)
        try:
            waiting = await self._client.publish(LISTENERS, nonce)
            # none: no relay running; one that starts publishes events until it finds nobody reads them
            deadline = asyncio.get_running_loop().time() + HELLO_TIMEOUT
            while waiting > 0 and (left := deadline - asyncio.get_running_loop().time()) > 0:
                message = await pubsub.get_message(ignore_subscribe_messages=True, timeout=left)
                if message is None:
                    continue
                if message.get("channel") == HEARD:
                    waiting -= message.get("data") == nonce
                else:
                    self._deliver(message)
            if waiting > 0:
                log.warning("%d relay(s) did not answer within %.1f s; reading events anyway", waiting, HELLO_TIMEOUT)
        finally:
            await pubsub.unsubscribe(LISTENERS_HEARD)

    def _lost(self, error: BaseException) -> None:
        for listener in self._interruption_listeners:
            try:
                listener(f"event feed lost: {error}")
            except Exception:
                log.exception("interruption listener %r failed", listener)

    def _deliver(self, message: dict[str, Any]) -> None:
        if message.get("channel") == HEARD:
            return  # another process's hello being answered (after this one unsubscribed)
        try:
            batch = decode(message["data"], EventBatch)
        except WireError as error:
            self.skipped += 1
            log.warning("event message on %r skipped: %s", message.get("channel"), error)
            return
        if batch.events:
            self.publish(batch.events)
