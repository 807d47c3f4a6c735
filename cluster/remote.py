"""`RemoteEngine`: the engine as an API or WebSocket process sees it, through Redis. An `EngineClient`.

`request` queues one `RoutedCommand`; everything queued in one pass of the event loop is written as one
`CommandEntry` per stream (one round trip), and the reply comes back in a `ReplyBatch` on this process's
own reply channel, matched by request id. A state-changing command carries its request id into the
engine (`command.request_id`), which applies it at most once. With market shards, a market-data or
history query goes to the stream of the shard that matches its market (the registry says which), and that
shard answers; everything else goes to the command stream.

Faults: `EngineUnavailable` (503) always means the command was not written: Redis was unreachable (or
this process's reply subscription was down) before anything was sent; a background task reconnects
with backoff and re-reads the market registry. Anything that may have been written raises
`EngineTimeout` (504, outcome unknown): a write that failed after its first byte left, or a reply that
did not come in `reply_timeout` (the command may still be applied later: it waits in the stream while
the engine is down). A client retries a 504 with the same clientOrderId.
"""

from __future__ import annotations

import asyncio
import itertools
import logging
import time
import uuid
from collections.abc import Callable, Mapping
from types import MappingProxyType
from typing import Any, TypeVar

import msgspec
import redis
import redis.asyncio as aioredis

from openbell.actors.engine import expire
from openbell.cluster import (
    COMMANDS,
    MARKETS,
    REGISTRY,
    SHARDS,
    CommandEntry,
    MarketListed,
    ReplyBatch,
    RoutedCommand,
    reply_channel,
    shard_stream,
)
from openbell.cluster.reconnect import close_quietly, keep_connected
from openbell.cluster.redisbus import RedisEventBus
from openbell.core.commands import HISTORY_QUERIES, MARKET_QUERIES, STATE_CHANGING, Command
from openbell.core.grid import Asset, MarketSpec
from openbell.core.messages import Reply
from openbell.core.types import ResultCode
from openbell.core.wire import WireError, decode, encode
from openbell.edge.client import EngineError, EngineTimeout, EngineUnavailable

log = logging.getLogger(__name__)

C = TypeVar("C")
_REGISTRY_MESSAGE = MarketListed | ReplyBatch


class Registry:
    """The markets the engine runs, as written to the `MARKETS` hash and announced on `REGISTRY`, and the shard
    that matches each (the `SHARDS` hash; none where one engine runs them all)."""

    def __init__(self) -> None:
        self._specs: dict[str, MarketSpec] = {}
        self._assets: dict[str, Asset] = {}
        self._shards: dict[str, int] = {}

    def shard_of(self, symbol: str) -> int | None:
        return self._shards.get(symbol)

    @property
    def markets(self) -> Mapping[str, MarketSpec]:
        return MappingProxyType(self._specs)

    @property
    def assets(self) -> Mapping[str, Asset]:
        return MappingProxyType(self._assets)

    def add(self, spec: MarketSpec, shard: int | None = None) -> None:
        if shard is not None and self._shards.get(spec.symbol) != shard:
            self._shards = {**self._shards, spec.symbol: shard}
        if self._specs.get(spec.symbol) == spec:
            return
        specs = dict(self._specs)
        specs[spec.symbol] = spec
        assets = dict(self._assets)
        assets.setdefault(spec.base.symbol, spec.base)
        assets.setdefault(spec.quote.symbol, spec.quote)
        self._specs, self._assets = specs, assets

    async def load(self, client: aioredis.Redis) -> None:
        shards = {_text(symbol): int(shard) for symbol, shard in (await client.hgetall(SHARDS)).items()}
        for symbol, payload in sorted((await client.hgetall(MARKETS)).items()):
            try:
                spec = decode(payload if isinstance(payload, bytes) else payload.encode(), MarketSpec)
            except WireError as error:
                log.warning("registry entry %r skipped: %s", symbol, error)
                continue
            self.add(spec, shards.get(spec.symbol))


def _text(value: bytes | str) -> str:
    return value.decode() if isinstance(value, bytes) else value


def stream_for(command: Command, registry: Registry) -> str:
    """The stream that `command` is written to: its market's shard for a market-data or history query of a market
    a shard matches, the command stream otherwise."""
    if isinstance(command, MARKET_QUERIES) or isinstance(command, HISTORY_QUERIES):
        shard = registry.shard_of(command.market)
        if shard is not None:
            return shard_stream(shard)
    return COMMANDS


class RemoteEngine:
    def __init__(
        self,
        redis_url: str,
        *,
        reply_timeout: float = 5.0,
        bus: RedisEventBus | None = None,
        command_timeout: float = 1.0,
    ) -> None:
        self.redis_url = redis_url
        self.reply_timeout = reply_timeout
        self.command_timeout = command_timeout
        self._bus = bus
        self.api_id = uuid.uuid4().hex[:12]
        self.reply_to = reply_channel(self.api_id)
        self.registry = Registry()
        self._seq = itertools.count(1)
        self._waiters: dict[str, asyncio.Future[Reply]] = {}
        self._client: aioredis.Redis | None = None
        self._connected = False
        self._listener: asyncio.Task[None] | None = None
        self._became_ready: asyncio.Event | None = None
        self._outbox: dict[str, list[RoutedCommand]] = {}
        self._written: list[asyncio.Future[None]] = []
        """Commands waiting to be written (per stream), and their callers' futures; all of one loop pass go in one
        entry per stream."""
        self._flushing = False
        self.skipped = 0
        """Messages on this process's channels that did not decode."""

    # ----------------------------------------------------------------- life cycle
    async def start(self, wait: float = 2.0) -> None:
        """Connect in the background; wait up to `wait` seconds for the first connection."""
        self._client = aioredis.Redis.from_url(
            self.redis_url, socket_timeout=self.command_timeout, socket_connect_timeout=self.command_timeout
        )
        self._became_ready = asyncio.Event()
        self._listener = asyncio.create_task(
            keep_connected(self._listen, what=f"api {self.api_id}", on_lost=self._lost)
        )
        if self._bus is not None:
            await self._bus.start()
        try:
            await asyncio.wait_for(self._became_ready.wait(), wait)
        except TimeoutError:
            log.warning("redis not reachable at %s yet; answering 503 until it is", self.redis_url)

    async def stop(self) -> None:
        if self._bus is not None:
            await self._bus.stop()
        if self._listener is not None:
            self._listener.cancel()
            await asyncio.gather(self._listener, return_exceptions=True)
        self._connected = False
        for future in self._waiters.values():
            if not future.done():  # written: the engine may still apply it
                future.set_exception(EngineTimeout("this API process is stopping; the outcome is unknown"))
        if self._client is not None:
            await self._client.aclose()

    @property
    def running(self) -> bool:
        return self._connected

    @property
    def markets(self) -> Mapping[str, MarketSpec]:
        return self.registry.markets

    @property
    def assets(self) -> Mapping[str, Asset]:
        return self.registry.assets

    @property
    def bus(self) -> RedisEventBus | None:
        return self._bus

    def shard_of(self, symbol: str) -> int | None:
        """The market shard that matches `symbol` (None where one engine matches every market)."""
        return self.registry.shard_of(symbol)

    # ----------------------------------------------------------------- entry
    def new(self, command_class: Callable[..., C], **fields: Any) -> C:
        """A command with placeholder seq/ts; the engine's relay stamps its own."""
        return command_class(next(self._seq), time.time_ns() // 1_000_000, **fields)

    async def request(self, command: Command, timeout: float | None = None) -> Reply:
        if not self._connected or self._client is None:
            raise EngineUnavailable("redis is not reachable")
        wait = self.reply_timeout if timeout is None else timeout
        request_id = f"{self.api_id}:{command.seq}"
        if isinstance(command, STATE_CHANGING):
            command = msgspec.structs.replace(command, request_id=request_id)
        deadline_ms = time.time_ns() // 1_000_000 + int(wait * 1000)
        loop = asyncio.get_running_loop()
        future: asyncio.Future[Reply] = loop.create_future()
        written: asyncio.Future[None] = loop.create_future()
        self._waiters[request_id] = future
        routed = RoutedCommand(request_id, self.reply_to, deadline_ms, command)
        self._outbox.setdefault(stream_for(command, self.registry), []).append(routed)
        self._written.append(written)
        if not self._flushing:
            self._flushing = True
            loop.call_soon(self._start_flush)
        handle = loop.call_later(wait, expire, future)
        try:
            await written  # raises EngineUnavailable (nothing was written) or EngineTimeout (outcome unknown)
            try:
                reply = await future
            except TimeoutError:
                raise EngineTimeout(f"no reply to request {request_id} in {wait:g}s; its outcome is unknown") from None
        finally:
            handle.cancel()
            self._waiters.pop(request_id, None)
        if reply.code is ResultCode.ENGINE_UNAVAILABLE:
            raise EngineUnavailable(reply.message)
        return reply

    def _start_flush(self) -> None:
        asyncio.get_running_loop().create_task(self._flush())

    async def _flush(self) -> None:
        """Write everything in the outbox, one entry per stream (one round trip) per pass, until it is empty."""
        try:
            while self._outbox:
                outbox, self._outbox = self._outbox, {}
                written, self._written = self._written, []
                error: EngineError | None = None
                entries = [(stream, encode(CommandEntry(tuple(commands)))) for stream, commands in outbox.items()]
                try:
                    await self._write(entries, sum(len(commands) for commands in outbox.values()))
                except EngineError as failure:
                    error = failure
                for future in written:
                    if future.done():
                        continue
                    if error is None:
                        future.set_result(None)
                    else:
                        future.set_exception(error)
        finally:
            self._flushing = False

    async def _write(self, entries: list[tuple[str, bytes]], count: int) -> None:
        """XADD each (stream, payload) entry, by hand on one pooled connection (pipelined: one round trip).

        What a failure means for the caller depends on when it happens, so the steps are taken by hand
        rather than through redis-py's command methods (whose retries reconnect and send again, and whose
        last error would hide that a first attempt may have reached Redis):
        - no connection could be had: nothing was sent: EngineUnavailable (503, "not applied");
        - anything after the first byte was sent: the commands may be in the stream: EngineTimeout (504,
          "outcome unknown; retry with the same clientOrderId").
        """
        client = self._client
        if client is None or not self._connected:
            raise EngineUnavailable("redis is not reachable")
        pool = client.connection_pool
        try:
            connection = await pool.get_connection()
        except (redis.RedisError, OSError) as error:
            self._lost(error)
            raise EngineUnavailable("redis is not reachable") from None
        try:
            await connection.send_packed_command(
                connection.pack_commands([("XADD", stream, "*", "m", payload) for stream, payload in entries]),
                check_health=False,
            )
            for _ in entries:
                response = await connection.read_response()
                if isinstance(response, redis.ResponseError):
                    raise response
        except (redis.RedisError, OSError) as error:
            await connection.disconnect()
            if not isinstance(error, (redis.TimeoutError, redis.ResponseError)):
                self._lost(error)
            raise EngineTimeout(
                f"redis did not confirm {count} command(s) ({type(error).__name__}); "
                "they may have been applied: the outcome is unknown"
            ) from None
        finally:
            await pool.release(connection)

    # ----------------------------------------------------------------- replies in
    def _lost(self, error: object) -> None:
        self._connected = False

    async def _listen(self, connected: Callable[[], None]) -> None:
        assert self._client is not None
        pubsub = self._client.pubsub()
        try:
            await pubsub.subscribe(self.reply_to, REGISTRY)
            await self.registry.load(self._client)
            self._connected = True
            connected()
            if self._became_ready is not None:
                self._became_ready.set()
            log.info("connected to redis; replies on %s", self.reply_to)
            while True:
                message = await pubsub.get_message(ignore_subscribe_messages=True, timeout=1.0)
                if message is not None:
                    self._on_message(message)
        finally:
            await close_quietly(pubsub)

    def _on_message(self, message: dict[str, Any]) -> None:
        try:
            decoded = decode(message["data"], _REGISTRY_MESSAGE)
        except WireError as error:
            self.skipped += 1
            log.warning("message on %r skipped: %s", message.get("channel"), error)
            return
        if isinstance(decoded, ReplyBatch):
            waiters = self._waiters
            for routed in decoded.replies:
                future = waiters.get(routed.request_id)
                if future is not None and not future.done():
                    future.set_result(routed.reply)
        else:
            self.registry.add(decoded.spec, decoded.shard)
