"""The event bus of a WebSocket process: events published by the engine's relay, read from Redis pub/sub.

`subscribe(fn)` works as on the engine's in-process bus: `fn` gets each batch of decoded event objects,
in the order the engine published them (called on this process's event loop). Which channels are read:
- until anyone calls `want`, every event channel (PSUBSCRIBE `*@*`);
- once `want(channel)` has been called, only wanted channels: a channel is subscribed when its count
  goes from 0 to 1 and unsubscribed when `unwant` brings it back to 0 (the WebSocket server calls them
  for its first and last local client of a stream).
A trade arrives on its market's channel and on its users' `orders@` channels; it is delivered once.

When the Redis connection is lost, each `on_interrupted` listener is called with a reason (so the
WebSocket server can close its clients' streams: they missed events and must resync); the bus
reconnects with backoff and resubscribes.
"""

from __future__ import annotations

import asyncio
import logging
from collections import OrderedDict
from collections.abc import Callable, Sequence
from typing import Any

import redis
import redis.asyncio as aioredis

from openbell.actors.bus import InProcessEventBus
from openbell.cluster import EVENT_PATTERN
from openbell.core.codec import CodecError, loads
from openbell.core.events import TradeExecuted

log = logging.getLogger(__name__)

Subscriber = Callable[[Sequence[object]], None]
InterruptionListener = Callable[[str], None]

RECENT_TRADES = 4096
"""Trades remembered to deliver each once."""


class RedisEventBus(InProcessEventBus):
    """An in-process bus (local `subscribe`/`publish`) fed from Redis pub/sub instead of from actors."""

    def __init__(self, redis_url: str) -> None:
        super().__init__()
        self.redis_url = redis_url
        self._interruption_listeners: tuple[InterruptionListener, ...] = ()
        self._wanted: dict[str, int] = {}
        self._selective = False
        self._recent_trades: OrderedDict[tuple[str, int], None] = OrderedDict()
        self._client: aioredis.Redis | None = None
        self._pubsub: Any = None
        self._loop: asyncio.AbstractEventLoop | None = None
        self._task: asyncio.Task[None] | None = None
        self.connected = False

    # ----------------------------------------------------------------- the bus interface
    def on_interrupted(self, listener: InterruptionListener) -> Callable[[], None]:
        with self._lock:
            self._interruption_listeners = (*self._interruption_listeners, listener)

        def remove() -> None:
            with self._lock:
                self._interruption_listeners = tuple(s for s in self._interruption_listeners if s is not listener)

        return remove

    def want(self, channel: str) -> None:
        """One more local reader of `channel` (a stream name such as `depth@TATA_INR`)."""
        with self._lock:
            count = self._wanted.get(channel, 0)
            self._wanted[channel] = count + 1
            first_selective = not self._selective
            self._selective = True
        if first_selective:
            self._call_soon(self._go_selective())
        elif count == 0:
            self._call_soon(self._pubsub_call("subscribe", channel))

    def unwant(self, channel: str) -> None:
        with self._lock:
            count = self._wanted.get(channel, 0)
            if count <= 1:
                self._wanted.pop(channel, None)
            else:
                self._wanted[channel] = count - 1
        if count == 1:
            self._call_soon(self._pubsub_call("unsubscribe", channel))

    # ----------------------------------------------------------------- life cycle
    async def start(self) -> None:
        self._loop = asyncio.get_running_loop()
        self._client = aioredis.Redis.from_url(self.redis_url, socket_connect_timeout=1)
        self._task = asyncio.create_task(self._listen_forever())

    async def stop(self) -> None:
        if self._task is not None:
            self._task.cancel()
            await asyncio.gather(self._task, return_exceptions=True)
        if self._client is not None:
            await self._client.aclose()

    # ----------------------------------------------------------------- reading
    def _call_soon(self, coroutine: Any) -> None:
        loop = self._loop
        if loop is None or loop.is_closed():
            coroutine.close()
            return
        try:
            asyncio.run_coroutine_threadsafe(coroutine, loop)
        except RuntimeError:
            coroutine.close()

    async def _pubsub_call(self, method: str, *channels: str) -> None:
        pubsub = self._pubsub
        if pubsub is None or not self.connected:
            return  # subscribed on (re)connect from `_wanted`
        try:
            await getattr(pubsub, method)(*channels)
        except (redis.RedisError, OSError) as error:
            log.warning("%s %s failed: %s", method, channels, error)

    async def _go_selective(self) -> None:
        with self._lock:
            channels = list(self._wanted)
        if channels:
            await self._pubsub_call("subscribe", *channels)
        await self._pubsub_call("punsubscribe", EVENT_PATTERN)

    async def _subscribe_all_wanted(self, pubsub: Any) -> None:
        with self._lock:
            selective, channels = self._selective, list(self._wanted)
        if not selective:
            await pubsub.psubscribe(EVENT_PATTERN)
        elif channels:
            await pubsub.subscribe(*channels)
        else:
            await pubsub.subscribe("openbell:bus-idle")  # a pubsub connection needs one subscription

    async def _listen_forever(self) -> None:
        delay = 0.05
        while True:
            assert self._client is not None
            pubsub = self._client.pubsub()
            try:
                await self._subscribe_all_wanted(pubsub)
                self._pubsub = pubsub
                self.connected = True
                delay = 0.05
                while True:
                    message = await pubsub.get_message(ignore_subscribe_messages=True, timeout=1.0)
                    if message is not None:
                        self._deliver(message)
            except asyncio.CancelledError:
                self.connected = False
                await close_quietly(pubsub)
                raise
            except (redis.RedisError, OSError) as error:
                was_connected = self.connected
                self.connected = False
                self._pubsub = None
                if was_connected:
                    log.warning("event bus lost redis: %s", error)
                    self._interrupted(f"event feed lost: {error}")
            await close_quietly(pubsub)
            await asyncio.sleep(delay)
            delay = min(delay * 2, 2.0)

    def _interrupted(self, reason: str) -> None:
        for listener in self._interruption_listeners:
            try:
                listener(reason)
            except Exception:
                log.exception("interruption listener %r failed", listener)

    def _deliver(self, message: dict[str, Any]) -> None:
        try:
            events = loads(message["data"])
            if not isinstance(events, tuple):
                raise CodecError(f"expected a tuple of events, got {type(events).__name__}")
        except CodecError as error:
            log.warning("event message on %r skipped: %s", message.get("channel"), error)
            return
        if any(type(event) is TradeExecuted for event in events):
            events = tuple(event for event in events if type(event) is not TradeExecuted or self._first_sight(event))
        self.publish(events)

    def _first_sight(self, trade: TradeExecuted) -> bool:
        key = (trade.market, trade.trade_id)
        recent = self._recent_trades
        if key in recent:
            return False
        recent[key] = None
        if len(recent) > RECENT_TRADES:
            recent.popitem(last=False)
        return True


async def close_quietly(pubsub: Any) -> None:
    """Close a pub/sub connection that may already be broken."""
    try:
        await pubsub.aclose()
    except Exception:
        pass
