"""The engine's relay: stream entries in, commands through the engine, replies and events out.

The engine does not know the relay exists. The relay reads `CommandEntry`s from the command stream with
its consumer group, stamps each command with the engine's own seq and ts (`engine.restamp`), and hands
them to the engine in one call per read (`submit_all`). Replies come back in batches; once per flush it
publishes one `ReplyBatch` per API process that is owed replies, one `EventBatch` with every event the
engine published meanwhile, and acknowledges (XACK) every entry whose commands all have their replies out,
in one pipeline.

Durability is the engine's own (its journal; it replies only once a command is durable). At most once is
the engine's too: a state-changing command carries its request id, which the engine applies at most once
and journals with the command. So a restarted relay simply re-reads the entries it had been given and not
acknowledged (XAUTOCLAIM, then its pending list from id 0) and submits them again: the engine answers a
request it already applied with DUPLICATE_REQUEST, which the relay turns into "applied before the engine
restarted, as order N" (504 to the client: query the order). Within one run the relay also remembers the
newest replies (`remembered_requests`), so a request delivered twice gets its first reply again.

Trimming: an entry is acknowledged only after its replies, and a reply only once the engine's journal
holds the command, so every entry older than the oldest one still pending in the group (or, when none is
pending, up to the group's last-delivered-id) is journaled. Every `trim_interval` seconds, or sooner after
`trim_after_acks` acknowledgements, and only if something was acknowledged since the last trim, the relay
runs `XTRIM COMMANDS MINID <that bound>` (`trim_journaled`). Entries not yet delivered to the group are
never trimmed, and neither is any pending entry.

Invariants: an entry is acknowledged only after every reply it is owed was produced; the stream is trimmed
only below its oldest pending or undelivered entry; no message that fails to decode stops the relay (it is
logged, counted and acknowledged).
"""

from __future__ import annotations

import asyncio
import logging
import threading
import time
from collections import OrderedDict, deque
from collections.abc import Coroutine, Sequence
from dataclasses import dataclass, field
from typing import Any

import redis
import redis.asyncio as aioredis

from openbell.actors.engine import BatchSink, Engine
from openbell.cluster import (
    COMMANDS,
    EVENTS,
    GROUP,
    LISTENERS,
    LISTENERS_HEARD,
    MARKETS,
    REGISTRY,
    CommandEntry,
    EventBatch,
    MarketListed,
    ReplyBatch,
    RoutedCommand,
    RoutedReply,
)
from openbell.cluster.reconnect import close_quietly, keep_connected
from openbell.core.commands import QUERIES, STATE_CHANGING, AddMarket, Command, PlaceOrder, SetMarketStatus
from openbell.core.events import Event
from openbell.core.grid import MarketSpec
from openbell.core.messages import AlreadyApplied, Reply
from openbell.core.types import ResultCode
from openbell.core.wire import WireError, decode, encode

log = logging.getLogger(__name__)

MAX_REPLIES_PER_FLUSH = 4000
MAX_EVENT_BATCHES_PER_FLUSH = 500
LISTENERS_INTERVAL = 0.2
"""Seconds between checks of whether anyone reads the event channel (default; `OPENBELL_EVENT_READERS_CHECK_SECONDS`)."""


@dataclass(slots=True)
class Entry:
    """A stream entry being worked off: acknowledged once `waiting` reaches 0."""

    entry_id: Any
    waiting: int = 0


@dataclass(slots=True)
class InFlight:
    """A request submitted to the engine, and the entries (one, or more if redelivered) waiting for it."""

    request_id: str
    reply_to: str
    command: Command
    entries: list[Entry] = field(default_factory=list)


class Relay:
    def __init__(
        self,
        redis_url: str,
        engine: Engine,
        boot_markets: Sequence[MarketSpec] = (),
        *,
        consumer: str = "engine",
        batch_size: int = 256,
        block_ms: int = 200,
        max_in_flight: int = 20_000,
        remembered_requests: int = 100_000,
        trim_interval: float = 5.0,
        trim_after_acks: int = 10_000,
        listeners_interval: float = LISTENERS_INTERVAL,
    ) -> None:
        self.redis_url = redis_url
        self.listeners_interval = max(listeners_interval, 0.01)
        self.engine = engine
        self.boot_markets = list(boot_markets)
        self.consumer = consumer
        self.batch_size = batch_size
        self.block_ms = block_ms
        self.max_in_flight = max_in_flight
        self.remembered_requests = remembered_requests
        self.trim_interval = max(trim_interval, 0.05)
        self.trim_after_acks = trim_after_acks
        self.stopping = threading.Event()
        self._acked_since_trim = 1
        """Entries acknowledged since the last successful trim (1 at start: trim what a previous run left)."""
        self.trimmed_streams: list[tuple[str, str]] = [(COMMANDS, GROUP)]
        """(stream, consumer group) of the streams this relay reads and trims."""
        self._trim_due: asyncio.Event | None = None
        self._in_flight: dict[str, InFlight] = {}
        self._by_seq: dict[int, str] = {}
        """Engine seq -> request id, for the commands in flight."""
        self._done: OrderedDict[str, Reply] = OrderedDict()
        self._replies: deque[list[Reply]] = deque()
        """Batches of replies from the engine (appended on actor threads), worked off by the flush."""
        self._resend: deque[tuple[str, RoutedReply]] = deque()
        """(reply channel, reply) of requests answered from memory."""
        self._acks: list[Any] = []
        """Entries every reply of which is out (or that get none: malformed, or a query given up on)."""
        self._events: deque[Sequence[Event]] = deque()
        self._sink = BatchSink(self._on_replies)
        self.events_listened = True
        """Whether a process reads the event channel (see `_watch_listeners`); events go nowhere while not."""
        self._reread_pending = False
        self._wake_scheduled = False
        self._loop: asyncio.AbstractEventLoop | None = None
        self._wake: asyncio.Event | None = None
        self._redis: aioredis.Redis | None = None
        self._stop = asyncio.Event()
        self.ready = asyncio.Event()
        self.stats = {
            "applied": 0,
            "redelivered": 0,
            "already_applied": 0,
            "malformed": 0,
            "dropped_events": 0,
            "trimmed": 0,
            "unheard_events": 0,
        }

    # ----------------------------------------------------------------- life cycle
    async def run(self, stop: asyncio.Event) -> None:
        """Relay for the (started) engine until `stop` is set, then stop it and everything else cleanly."""
        self._loop = asyncio.get_running_loop()
        self._wake = asyncio.Event()
        self._trim_due = asyncio.Event()
        self._redis = aioredis.Redis.from_url(self.redis_url, socket_timeout=5, socket_connect_timeout=1)
        self._stop = stop
        tasks: list[asyncio.Task[None]] = []
        try:
            await asyncio.to_thread(self._start_engine)
            tasks = [
                asyncio.create_task(self._flush_forever()),
                asyncio.create_task(self._trim_forever()),
                asyncio.create_task(self._watch_listeners()),
            ]
            tasks += [asyncio.create_task(task) for task in self._more_tasks()]
            await keep_connected(self._serve, what="relay", on_lost=lambda error: self.ready.clear(), stop=stop)
        finally:
            await self._shutdown(tasks)

    def _more_tasks(self) -> list[Coroutine[Any, Any, None]]:
        """What a subclass runs beside reading commands, flushing and trimming (stopped with them)."""
        return []

    def _start_engine(self) -> None:
        engine = self.engine
        engine.bus.subscribe(self._on_events)
        for spec in self.boot_markets:
            if spec.symbol not in engine.markets:
                reply = engine.call(engine.new(AddMarket, spec=spec))
                if not reply.ok:
                    log.error("could not add market %s: %s", spec.symbol, reply.message)
        log.info(
            "engine started (%s); markets %s; journal ends at seq %d",
            f"data in {engine.persistence.data_dir}" if engine.persistence else "in memory, nothing survives a restart",
            ", ".join(engine.markets) or "(none)",
            engine.balance_core.last_seq,
        )

    async def _shutdown(self, tasks: list[asyncio.Task[None]]) -> None:
        deadline = time.monotonic() + 5
        while self._in_flight and time.monotonic() < deadline:
            await asyncio.sleep(0.02)
        self.stopping.set()
        await asyncio.to_thread(self.engine.stop)
        await asyncio.sleep(0)
        try:
            await asyncio.wait_for(self._flush_once(), 2)
        except (redis.RedisError, OSError, TimeoutError):
            pass
        for task in tasks:
            task.cancel()
        try:
            await asyncio.wait_for(asyncio.gather(*tasks, return_exceptions=True), 3)
        except TimeoutError:
            log.warning("relay tasks did not stop within 3 s")
        if self._redis is not None:
            try:
                await asyncio.wait_for(self._redis.aclose(), 2)
            except (redis.RedisError, OSError, TimeoutError):
                pass
        log.info("relay stopped: %s", self.stats)

    # ----------------------------------------------------------------- commands in
    async def _serve(self, connected: Any) -> None:
        r = self._redis
        assert r is not None
        await self._ensure_group()
        await self._write_registry()
        await self._claim_pending()
        await self._read_pending()
        connected()
        if not self.ready.is_set():
            log.info("relay ready: reading %s as %s/%s", COMMANDS, GROUP, self.consumer)
        self.ready.set()
        while not self._stop.is_set():
            if self._reread_pending:
                self._reread_pending = False
                await self._read_pending()
            if len(self._in_flight) >= self.max_in_flight:
                await asyncio.sleep(0.001)
                continue
            response: Any = await r.xreadgroup(
                GROUP, self.consumer, {COMMANDS: ">"}, count=self.batch_size, block=self.block_ms
            )
            for _stream, entries in response or ():
                self._accept(entries)

    async def _ensure_group(self) -> None:
        assert self._redis is not None
        try:
            await self._redis.xgroup_create(COMMANDS, GROUP, id="0", mkstream=True)
        except redis.ResponseError as error:
            if "BUSYGROUP" not in str(error):
                raise

    async def _claim_pending(self) -> None:
        """Take over entries another consumer name was given and never acknowledged."""
        assert self._redis is not None
        cursor: Any = "0-0"
        for _ in range(10_000):
            result = await self._redis.xautoclaim(
                COMMANDS, GROUP, self.consumer, min_idle_time=0, start_id=cursor, count=1000
            )
            cursor = result[0]
            if cursor in (b"0-0", "0-0"):
                return

    async def _read_pending(self) -> None:
        """Entries delivered to this consumer before (by a previous run, or before a reconnect) and not acknowledged."""
        assert self._redis is not None
        last: Any = "0"
        while True:
            response: Any = await self._redis.xreadgroup(GROUP, self.consumer, {COMMANDS: last}, count=self.batch_size)
            entries: Any = response[0][1] if response else []
            if not entries:
                return
            self.stats["redelivered"] += len(entries)
            self._accept(entries)
            last = entries[-1][0]

    def _accept(self, entries: Sequence[tuple[Any, Any]]) -> None:
        engine = self.engine
        now_ms = time.time_ns() // 1_000_000
        submit: list[Command] = []
        for entry_id, fields in entries:
            try:
                if not fields:
                    raise WireError("entry was deleted")
                commands = decode(fields[b"m"], CommandEntry).commands
            except (WireError, KeyError) as error:
                self.stats["malformed"] += 1
                log.warning("command entry %s skipped: %s", entry_id, error)
                self._ack(entry_id)
                continue
            entry = Entry(entry_id)
            for routed in commands:
                if self._take(routed, entry, now_ms, submit):
                    entry.waiting += 1
            if entry.waiting == 0:
                self._ack(entry_id)
        if submit:
            self.stats["applied"] += len(submit)
            engine.submit_all(submit, self._sink)

    def _take(self, routed: RoutedCommand, entry: Entry, now_ms: int, submit: list[Command]) -> bool:
        """Whether `entry` waits for this command's reply (else it is answered now, or dropped)."""
        request_id = routed.request_id
        done = self._done.get(request_id)
        if done is not None:
            self._resend.append((routed.reply_to, RoutedReply(request_id, done)))
            self._schedule_flush()
            return False
        pending = self._in_flight.get(request_id)
        if pending is not None:
            pending.entries.append(entry)
            return True
        command = routed.command
        if routed.deadline_ms < now_ms and isinstance(command, QUERIES):
            return False  # its caller gave up: nobody reads the answer
        if self._forward(routed):
            return False  # another process answers it, straight to its caller
        stamped = self.engine.restamp(command, now_ms)
        self._in_flight[request_id] = InFlight(request_id, routed.reply_to, stamped, [entry])
        self._by_seq[stamped.seq] = request_id
        submit.append(stamped)
        return True

    def _forward(self, routed: RoutedCommand) -> bool:
        """Whether a subclass sends this request on to another process (which answers its caller)."""
        return False

    def _ack(self, entry_id: Any) -> None:
        self._acks.append(entry_id)
        self._schedule_flush()

    def _on_replies(self, replies: list[Reply]) -> None:
        """The engine's replies (actor thread). An "engine stopped" reply means the command never ran: it stays
        pending in the stream for the next run."""
        if self.stopping.is_set():
            replies = [reply for reply in replies if reply.code is not ResultCode.ENGINE_UNAVAILABLE]
        self._replies.append(replies)
        self._schedule_flush()

    # ----------------------------------------------------------------- replies and events out
    def _schedule_flush(self) -> None:
        if not self._wake_scheduled and self._loop is not None and self._wake is not None:
            self._wake_scheduled = True
            try:
                self._loop.call_soon_threadsafe(self._wake.set)
            except RuntimeError:
                pass

    def _on_events(self, events: Sequence[Event]) -> None:
        if not self.events_listened:
            self.stats["unheard_events"] += len(events)
            return
        self._events.append(events)
        self._schedule_flush()

    async def _watch_listeners(self) -> None:
        """Keep `events_listened` up to date: whether any process (a WebSocket worker) reads the event channel.

        Events nobody reads are not encoded or published at all. Whether anyone does is checked every
        `listeners_interval` s (PUBSUB NUMSUB), and a WebSocket process that starts reading says so at once on
        `LISTENERS` (with a nonce): the relay then publishes events again and answers with that nonce on
        `LISTENERS_HEARD`, which the WebSocket process waits for before it reports healthy. So no event of an order placed after
        a WebSocket process is up goes unpublished.
        """
        while not self.stopping.is_set():
            try:
                await self._listen_for_listeners()
            except (redis.RedisError, OSError) as error:
                if not self.events_listened:
                    log.info("event channel %s: publishing while Redis cannot say who reads it (%s)", EVENTS, error)
                self.events_listened = True  # unknown: keep publishing
            try:
                async with asyncio.timeout(self.listeners_interval):
                    await self._stop.wait()
            except TimeoutError:
                pass

    async def _listen_for_listeners(self) -> None:
        assert self._redis is not None and self._loop is not None
        pubsub = self._redis.pubsub()
        try:
            await pubsub.subscribe(LISTENERS)
            count_due = 0.0
            while not self.stopping.is_set():
                if self._loop.time() >= count_due:
                    ((_, count),) = await self._redis.pubsub_numsub(EVENTS)
                    self._set_events_listened(int(count) > 0)
                    count_due = self._loop.time() + self.listeners_interval
                wait = min(LISTENERS_INTERVAL, self.listeners_interval)
                message = await pubsub.get_message(ignore_subscribe_messages=True, timeout=wait)
                if message is not None:
                    self._set_events_listened(True)
                    await self._redis.publish(LISTENERS_HEARD, message["data"])
        finally:
            await close_quietly(pubsub)

    def _set_events_listened(self, listened: bool) -> None:
        if listened != self.events_listened:
            log.info("event channel %s: %s", EVENTS, "read by a WebSocket worker" if listened else "unread")
        self.events_listened = listened

    async def _flush_forever(self) -> None:
        assert self._wake is not None
        while True:
            await self._wake.wait()
            self._wake.clear()
            self._wake_scheduled = False
            try:
                await self._flush_once()
            except (redis.RedisError, OSError) as error:
                log.warning("could not publish replies/events (%s); redelivery will repeat the replies", error)
                self._reread_pending = True

    async def _flush_once(self) -> None:
        r = self._redis
        assert r is not None
        while self._replies or self._events or self._resend or self._acks or self._more_to_flush():
            pipe = r.pipeline(transaction=False)
            taken = self._add_to_flush(pipe)  # first: what it sends must be in Redis before the replies go out
            owed: dict[str, list[RoutedReply]] = {}
            resend = self._resend
            for _ in range(min(len(resend), MAX_REPLIES_PER_FLUSH)):
                channel, routed = resend.popleft()
                owed.setdefault(channel, []).append(routed)
            replies = self._replies
            taken = 0
            while replies and taken < MAX_REPLIES_PER_FLUSH:
                batch = replies.popleft()
                taken += len(batch)
                for reply in batch:
                    self._reply_to(pipe, reply, owed)
            for channel, routed_replies in owed.items():
                pipe.publish(channel, encode(ReplyBatch(tuple(routed_replies))))
            events: list[Event] = []
            for _ in range(min(len(self._events), MAX_EVENT_BATCHES_PER_FLUSH)):
                events.extend(self._events.popleft())
            if events:
                pipe.publish(EVENTS, encode(EventBatch(tuple(events))))
            acks, self._acks = self._acks, []
            if acks:
                pipe.xack(COMMANDS, GROUP, *acks)
            try:
                await pipe.execute()
            except (redis.RedisError, OSError):
                self.stats["dropped_events"] += len(events)
                self._not_flushed(taken)
                raise
            if acks:
                self._acked_since_trim += len(acks)
                if self._acked_since_trim >= self.trim_after_acks and self._trim_due is not None:
                    self._trim_due.set()

    def _more_to_flush(self) -> bool:
        """Whether a subclass has something to write that may be written now (see `_add_to_flush`)."""
        return False

    def _add_to_flush(self, pipe: Any) -> Any:
        """Add a subclass's writes to the flush's pipeline; returns what was taken, for `_not_flushed`."""
        return None

    def _not_flushed(self, taken: Any) -> None:
        """The pipeline failed: a subclass keeps what `_add_to_flush` took, to write it again."""

    def _reply_to(self, pipe: Any, reply: Reply, owed: dict[str, list[RoutedReply]]) -> None:
        request_id = self._by_seq.pop(reply.seq, None)
        pending = self._in_flight.pop(request_id, None) if request_id is not None else None
        if pending is None:
            return
        command = pending.command
        if reply.code is ResultCode.DUPLICATE_REQUEST:
            reply = _applied_before_restart(command, reply)
            self.stats["already_applied"] += 1
        if isinstance(command, STATE_CHANGING):
            self._remember(pending.request_id, reply)
        if reply.ok and type(command) in _LISTING:
            spec = reply.expect(MarketSpec)  # a market added, or its status changed: as the engine has it now
            pipe.hset(MARKETS, spec.symbol, encode(spec))
            pipe.publish(REGISTRY, encode(MarketListed(spec, self.engine.shard_of(spec.symbol))))
        owed.setdefault(pending.reply_to, []).append(RoutedReply(pending.request_id, reply))
        for entry in pending.entries:
            entry.waiting -= 1
            if entry.waiting == 0:
                self._acks.append(entry.entry_id)

    async def _trim_forever(self) -> None:
        """Trim the command stream below what the group still needs, now and then (see the module docstring)."""
        assert self._trim_due is not None
        while not self.stopping.is_set():
            # asyncio.timeout, not wait_for: in 3.11 wait_for can swallow a cancel that lands as the
            # timeout fires, and this loop would then outlive the relay's shutdown.
            try:
                async with asyncio.timeout(self.trim_interval):
                    await self._trim_due.wait()
            except TimeoutError:
                pass
            self._trim_due.clear()
            if self._acked_since_trim == 0 or self._redis is None:
                continue
            acked = self._acked_since_trim
            try:
                removed = 0
                for stream, group in self.trimmed_streams:
                    removed += await trim_journaled(self._redis, stream, group)
            except (redis.RedisError, OSError) as error:
                log.info("could not trim %s (%s); trying again later", COMMANDS, error)
                continue
            self._acked_since_trim -= acked
            self.stats["trimmed"] += removed
            if removed:
                log.debug("trimmed %d journaled entries", removed)

    def _remember(self, request_id: str, reply: Reply) -> None:
        done = self._done
        done[request_id] = reply
        if len(done) > self.remembered_requests:
            done.popitem(last=False)

    async def _write_registry(self) -> None:
        assert self._redis is not None
        specs = list(self.engine.markets.values())
        if not specs:
            return
        pipe = self._redis.pipeline(transaction=True)
        pipe.hset(MARKETS, mapping={spec.symbol: encode(spec) for spec in specs})
        for spec in specs:
            pipe.publish(REGISTRY, encode(MarketListed(spec, self.engine.shard_of(spec.symbol))))
        await pipe.execute()


_LISTING = (AddMarket, SetMarketStatus)
"""Commands whose success changes the market registry."""


def _stream_id(raw: bytes | str) -> tuple[int, int]:
    text = raw.decode() if isinstance(raw, bytes) else raw
    milliseconds, _, sequence = text.partition("-")
    return int(milliseconds), int(sequence or 0)


def trim_bound(
    groups: Sequence[dict[str, Any]], pending: dict[str, Any], group_name: str = GROUP
) -> tuple[int, int] | None:
    """The smallest stream id the reader's group may still need, from XINFO GROUPS and the XPENDING summary of
    `group_name` read together; None when nothing may be trimmed (no group, or a group we do not know).

    Pending entries are needed (their replies may not be out); so is every entry after the group's
    last-delivered-id (not yet read). Everything below the bound was acknowledged, hence journaled.
    """
    names = {group["name"].decode() if isinstance(group["name"], bytes) else group["name"] for group in groups}
    if names != {group_name}:
        return None
    (group,) = groups
    if int(pending["pending"]) > 0:
        return _stream_id(pending["min"])
    milliseconds, sequence = _stream_id(group["last-delivered-id"])
    return (milliseconds, sequence + 1) if sequence < 2**64 - 1 else (milliseconds + 1, 0)


async def trim_journaled(client: aioredis.Redis, stream: str = COMMANDS, group: str = GROUP) -> int:
    """`XTRIM <stream> MINID <bound>` (see `trim_bound`); returns how many entries were removed.

    Safe against the relay's own reads running meanwhile: the group's state is read in one MULTI/EXEC, and
    between that and the XTRIM the pending list can only lose entries, or gain entries after the
    last-delivered-id that was read, so none below the bound.
    """
    pipe = client.pipeline(transaction=True)
    pipe.xinfo_groups(stream)
    pipe.xpending(stream, group)
    try:
        groups, pending = await pipe.execute()
    except redis.ResponseError:  # the stream or the group does not exist yet
        return 0
    bound = trim_bound(groups, pending, group)
    if bound is None:
        return 0
    removed: Any = await client.xtrim(stream, minid=f"{bound[0]}-{bound[1]}", approximate=False)
    return int(removed)


def _applied_before_restart(command: Command, reply: Reply) -> Reply:
    """The answer to a request the engine's journal already holds, from before a restart.

    Its original reply was not kept, so the caller learns that it was applied and where to look.
    """
    seq = reply.data.seq if isinstance(reply.data, AlreadyApplied) else reply.seq
    what = f"order {seq}" if isinstance(command, PlaceOrder) else f"command {seq}"
    return Reply(
        reply.seq,
        ResultCode.ENGINE_TIMEOUT,
        f"this request was applied (as {what}) before the engine restarted; its result is not kept: query it",
        data=reply.data,
    )
