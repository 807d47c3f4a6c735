"""The engine's relay: Redis messages in, actor messages through the engine, replies and events out.

The engine does not know the relay exists: the relay stamps each `RoutedCommand`'s command with the
engine's own seq and ts (`engine.new`), `submit`s it, and when the reply comes publishes it to the
asking API process and acknowledges the stream entry (XACK), in that order. Events on the engine's
bus are published on their channels (`openbell.cluster.channels_of`).

Durability is the engine's own (`Engine(persistence=...)`, a journal on disk; it replies only once a
command is durable). What the relay adds is exactly-once across restarts: before a state-changing
command enters the engine, `APPLIED[request id] = seq` is written; the field is deleted with the XACK.
A restarted engine first re-reads the entries it had been given and not acknowledged (XAUTOCLAIM, then
the pending list from id 0): a request whose seq is at most the recovered `last_seq` is in the
journal already and is answered, not applied again; any other is applied as new. The XACK and the
`APPLIED` deletion go in one MULTI/EXEC, so a lost connection cannot leave one without the other;
fields left behind otherwise (say, an entry deleted from the stream by hand) are swept once at start.

Trimming: an entry is acknowledged only after its reply, and a reply only once the engine's journal holds
the command, so every entry older than the oldest one still pending in the group (or, when none is
pending, up to the group's last-delivered-id) is journaled. Every `trim_interval` seconds, or sooner after
`trim_after_acks` acknowledgements, and only if something was acknowledged since the last trim, the relay
runs `XTRIM COMMANDS MINID <that bound>` (`trim_journaled`). Entries not yet delivered to the group are
never trimmed, and neither is any pending entry.

Invariants: an entry is acknowledged only after its reply was produced; the stream is trimmed only below
its oldest pending or undelivered entry; a request id is applied at most once (the `APPLIED` hash across
restarts, a bounded map of recent request ids within one process); no message that fails to decode stops
the relay (it is logged and acknowledged).
"""

from __future__ import annotations

import asyncio
import logging
import pathlib
import threading
import time
from collections import OrderedDict, deque
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import redis
import redis.asyncio as aioredis

from openbell.actors.engine import Engine
from openbell.actors.messages import Reply
from openbell.cluster import (
    APPLIED,
    COMMANDS,
    GROUP,
    MARKETS,
    REGISTRY,
    MarketListed,
    RoutedCommand,
    RoutedReply,
    channels_of,
)
from openbell.core.codec import CodecError, dumps, loads
from openbell.core.commands import QUERIES, STATE_CHANGING, AddMarket, GetKlines, PlaceOrder
from openbell.core.grid import MarketSpec
from openbell.core.marketdata import INTERVALS
from openbell.core.types import ResultCode

log = logging.getLogger(__name__)

ALLOWED = STATE_CHANGING + QUERIES
INTERVAL_NAMES = {seconds: name for name, seconds in INTERVALS.items()}


# --------------------------------------------------------------------------- relay
@dataclass(slots=True)
class InFlight:
    command: Any
    reply_to: str
    entry_ids: list[Any]


class Relay:
    def __init__(
        self,
        redis_url: str,
        boot_markets: Sequence[MarketSpec] = (),
        *,
        data_dir: str | None = None,
        consumer: str = "engine",
        batch_size: int = 256,
        block_ms: int = 200,
        max_in_flight: int = 20_000,
        remembered_requests: int = 100_000,
        reply_timeout: float = 5.0,
        max_open_orders_per_user: int = 1000,
        trim_interval: float = 5.0,
        trim_after_acks: int = 10_000,
    ) -> None:
        self.redis_url = redis_url
        self.boot_markets = list(boot_markets)
        self.data_dir = data_dir
        self.consumer = consumer
        self.batch_size = batch_size
        self.block_ms = block_ms
        self.max_in_flight = max_in_flight
        self.remembered_requests = remembered_requests
        self.reply_timeout = reply_timeout
        self.max_open_orders_per_user = max_open_orders_per_user
        self.trim_interval = max(trim_interval, 0.05)
        self.trim_after_acks = trim_after_acks
        self.engine: Engine | None = None
        self.stopping = threading.Event()
        self.recovered_last_seq = 0
        """The highest seq in the engine's journal when it started: what a previous run applied."""
        self._restart_checked = False
        self._startup_request_ids: set[str] | None = None
        """Request ids of the pending entries re-read at start (for the one-time sweep of `APPLIED`)."""
        self._acked_since_trim = 1
        """Entries acknowledged since the last successful trim (1 at start: trim what a previous run left)."""
        self._trim_due: asyncio.Event | None = None
        self._in_flight: dict[str, InFlight] = {}
        self._done: OrderedDict[str, Reply] = OrderedDict()
        self._replies: deque[tuple[str, Reply]] = deque()
        self._resend: deque[tuple[str | None, RoutedReply | None, Any]] = deque()
        """(reply channel, reply, entry id): replies already known, and entries to acknowledge only."""
        self._events: deque[Sequence[object]] = deque()
        self._reread_pending = False
        self._wake_scheduled = False
        self._loop: asyncio.AbstractEventLoop | None = None
        self._wake: asyncio.Event | None = None
        self._redis: aioredis.Redis | None = None
        self.ready = asyncio.Event()
        self.stats = {
            "applied": 0,
            "redelivered": 0,
            "already_applied": 0,
            "malformed": 0,
            "dropped_events": 0,
            "trimmed": 0,
        }

    # ----------------------------------------------------------------- life cycle
    async def run(self, stop: asyncio.Event) -> None:
        """Start the engine, relay until `stop` is set, then stop everything cleanly."""
        self._loop = asyncio.get_running_loop()
        self._wake = asyncio.Event()
        self._trim_due = asyncio.Event()
        self._redis = aioredis.Redis.from_url(self.redis_url, socket_timeout=5, socket_connect_timeout=1)
        tasks: list[asyncio.Task[None]] = []
        try:
            await asyncio.to_thread(self._start_engine)
            tasks = [asyncio.create_task(self._flush_forever()), asyncio.create_task(self._trim_forever())]
            delay = 0.05
            while not stop.is_set():
                try:
                    await self._serve(stop)
                    delay = 0.05
                except (redis.RedisError, OSError) as error:
                    self.ready.clear()
                    log.warning("redis unavailable (%s); reconnecting in %.2fs", error, delay)
                    await _sleep_or_stop(stop, delay)
                    delay = min(delay * 2, 2.0)
        finally:
            await self._shutdown(tasks)

    def _start_engine(self) -> None:
        persistence = None
        if self.data_dir is not None:
            from openbell.durability.persistence import Persistence

            persistence = Persistence(pathlib.Path(self.data_dir))
        engine = Engine(
            reply_timeout=self.reply_timeout,
            max_open_orders_per_user=self.max_open_orders_per_user,
            persistence=persistence,
        )
        engine.start(())
        self.recovered_last_seq = engine.balance_core.last_seq
        for spec in self.boot_markets:
            if spec.symbol not in engine.markets:
                reply = engine.call(engine.new(AddMarket, spec=spec))
                if not reply.ok:
                    log.error("could not add market %s: %s", spec.symbol, reply.message)
        engine.bus.subscribe(self._on_events)  # type: ignore[attr-defined]
        self.engine = engine
        log.info(
            "engine started (%s); markets %s; journal ends at seq %d",
            f"data in {self.data_dir}" if self.data_dir else "in memory, nothing survives a restart",
            ", ".join(engine.markets) or "(none)",
            self.recovered_last_seq,
        )

    async def _shutdown(self, tasks: list[asyncio.Task[None]]) -> None:
        deadline = time.monotonic() + 5
        while self._in_flight and time.monotonic() < deadline:
            await asyncio.sleep(0.02)
        self.stopping.set()
        if self.engine is not None:
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
    async def _serve(self, stop: asyncio.Event) -> None:
        r = self._redis
        assert r is not None
        await self._ensure_group()
        await self._write_registry()
        await self._claim_pending()
        if not self._restart_checked:
            self._startup_request_ids = set()
        await self._read_pending()
        if not self._restart_checked:
            await self._sweep_applied()
        self._restart_checked = True
        if not self.ready.is_set():
            log.info("relay ready: reading %s as %s/%s", COMMANDS, GROUP, self.consumer)
        self.ready.set()
        while not stop.is_set():
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
                await self._accept(entries)

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
            )  # (redis-py drops the cursor of a JUSTID reply, so the entries come along)
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
            await self._accept(entries)
            last = entries[-1][0]

    async def _accept(self, entries: Sequence[tuple[Any, Any]]) -> None:
        engine = self.engine
        r = self._redis
        assert engine is not None and r is not None
        now_ms = time.time_ns() // 1_000_000
        routed_entries: list[tuple[Any, RoutedCommand]] = []
        for entry_id, fields in entries:
            try:
                if not fields:
                    raise CodecError("entry was deleted")
                routed = loads(fields[b"m"])
                if not isinstance(routed, RoutedCommand) or not isinstance(routed.command, ALLOWED):
                    raise CodecError(f"not a routed command: {type(routed).__name__}")
            except (CodecError, KeyError) as error:
                self.stats["malformed"] += 1
                log.warning("command entry %s skipped: %s", entry_id, error)
                self._ack_later(entry_id)
                continue
            routed_entries.append((entry_id, routed))
        if self._startup_request_ids is not None:
            self._startup_request_ids.update(routed.request_id for _, routed in routed_entries)
        applied_before: dict[str, int] = {}
        if not self._restart_checked:
            ids = [routed.request_id for _, routed in routed_entries if isinstance(routed.command, STATE_CHANGING)]
            if ids:
                for request_id, seq in zip(ids, await r.hmget(APPLIED, ids)):
                    if seq is not None and int(seq) <= self.recovered_last_seq:
                        applied_before[request_id] = int(seq)
        submit: list[tuple[str, Any]] = []
        applied: dict[str, int] = {}
        for entry_id, routed in routed_entries:
            request_id = routed.request_id
            done = self._done.get(request_id)
            if done is None and request_id in applied_before:
                done = _applied_before_restart(routed.command, applied_before[request_id])
                self.stats["already_applied"] += 1
            if done is not None:
                self._resend.append((routed.reply_to, RoutedReply(request_id, done), entry_id))
                self._schedule_flush()
                continue
            pending = self._in_flight.get(request_id)
            if pending is not None:
                pending.entry_ids.append(entry_id)
                continue
            command = routed.command
            if isinstance(command, QUERIES) and routed.deadline_ms < now_ms:
                self._ack_later(entry_id)
                continue
            stamped = engine.restamp(command)
            self._in_flight[request_id] = InFlight(stamped, routed.reply_to, [entry_id])
            submit.append((request_id, stamped))
            if isinstance(stamped, STATE_CHANGING):
                applied[request_id] = stamped.seq
        if applied:
            try:
                await r.hset(APPLIED, mapping=applied)  # type: ignore[arg-type]
            except BaseException:
                for request_id, _ in submit:
                    self._in_flight.pop(request_id, None)
                raise
        for request_id, stamped in submit:
            self.stats["applied"] += 1
            engine.submit(stamped, self._reply_callback(request_id))

    async def _sweep_applied(self) -> None:
        """Delete `APPLIED` fields of requests whose entries are no longer pending (called once, at start).

        At that point the only fields anyone still needs are those of the pending entries just re-read;
        the relay writes new fields only for entries it reads later.
        """
        assert self._redis is not None
        keep, self._startup_request_ids = self._startup_request_ids or set(), None
        stale: list[bytes] = []
        async for field, _seq in self._redis.hscan_iter(APPLIED, count=1000):
            if field.decode() not in keep:
                stale.append(field)
        for start in range(0, len(stale), 1000):
            await self._redis.hdel(APPLIED, *stale[start : start + 1000])
        if stale:
            log.warning("removed %d stale %s fields (their entries were no longer pending)", len(stale), APPLIED)

    def _ack_later(self, entry_id: Any) -> None:
        """Acknowledge an entry that gets no reply (malformed, or a query its caller gave up on)."""
        self._resend.append((None, None, entry_id))
        self._schedule_flush()

    def _reply_callback(self, request_id: str) -> Any:
        def callback(reply: Reply) -> None:
            # Actor thread. An "engine stopped" reply means the command never ran: leave it pending.
            if reply.code is ResultCode.ENGINE_UNAVAILABLE and self.stopping.is_set():
                return
            self._replies.append((request_id, reply))
            self._schedule_flush()

        return callback

    # ----------------------------------------------------------------- replies and events out
    def _schedule_flush(self) -> None:
        if not self._wake_scheduled and self._loop is not None and self._wake is not None:
            self._wake_scheduled = True
            try:
                self._loop.call_soon_threadsafe(self._wake.set)
            except RuntimeError:
                pass

    def _on_events(self, events: Sequence[object]) -> None:
        self._events.append(events)
        self._schedule_flush()

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
        while self._replies or self._events or self._resend:
            pipe = r.pipeline(transaction=True)  # XACK and HDEL APPLIED together or not at all
            acks: list[Any] = []
            finished: list[str] = []
            resend = self._resend
            for _ in range(min(len(resend), 2000)):
                channel, routed, entry_id = resend.popleft()
                if channel is not None and routed is not None:
                    pipe.publish(channel, dumps(routed))
                    finished.append(routed.request_id)
                acks.append(entry_id)
            replies = self._replies
            for _ in range(min(len(replies), 2000)):
                request_id, reply = replies.popleft()
                self._reply_to(pipe, request_id, reply, acks, finished)
            events = self._events
            per_channel: dict[str, list[object]] = {}
            for _ in range(min(len(events), 500)):
                for event in events.popleft():
                    for channel in channels_of(event):
                        per_channel.setdefault(channel, []).append(event)
            for channel, items in per_channel.items():
                pipe.publish(channel, dumps(tuple(items)))
            if acks:
                pipe.xack(COMMANDS, GROUP, *acks)
            if finished:
                pipe.hdel(APPLIED, *finished)
            try:
                await pipe.execute()
            except (redis.RedisError, OSError):
                if per_channel:
                    self.stats["dropped_events"] += sum(len(items) for items in per_channel.values())
                raise
            if acks:
                self._acked_since_trim += len(acks)
                if self._acked_since_trim >= self.trim_after_acks and self._trim_due is not None:
                    self._trim_due.set()

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
                removed = await trim_journaled(self._redis)
            except (redis.RedisError, OSError) as error:
                log.info("could not trim %s (%s); trying again later", COMMANDS, error)
                continue
            self._acked_since_trim -= acked
            self.stats["trimmed"] += removed
            if removed:
                log.debug("trimmed %d journaled entries from %s", removed, COMMANDS)

    def _reply_to(self, pipe: Any, request_id: str, reply: Reply, acks: list[Any], finished: list[str]) -> None:
        pending = self._in_flight.pop(request_id, None)
        if pending is None:
            return
        acks.extend(pending.entry_ids)
        command = pending.command
        reply = _portable(command, reply)
        if isinstance(command, STATE_CHANGING):
            self._remember(request_id, reply)
            finished.append(request_id)
        if type(command) is AddMarket and reply.ok:
            spec = command.spec
            pipe.hset(MARKETS, spec.symbol, dumps(spec))
            pipe.publish(REGISTRY, dumps(MarketListed(spec)))
        pipe.publish(pending.reply_to, dumps(RoutedReply(request_id, reply)))

    def _remember(self, request_id: str, reply: Reply) -> None:
        done = self._done
        done[request_id] = reply
        if len(done) > self.remembered_requests:
            done.popitem(last=False)

    async def _write_registry(self) -> None:
        assert self._redis is not None and self.engine is not None
        specs = list(self.engine.markets.values())
        if not specs:
            return
        pipe = self._redis.pipeline(transaction=True)
        pipe.hset(MARKETS, mapping={spec.symbol: dumps(spec) for spec in specs})
        for spec in specs:
            pipe.publish(REGISTRY, dumps(MarketListed(spec)))
        await pipe.execute()


def _stream_id(raw: bytes | str) -> tuple[int, int]:
    text = raw.decode() if isinstance(raw, bytes) else raw
    milliseconds, _, sequence = text.partition("-")
    return int(milliseconds), int(sequence or 0)


def trim_bound(groups: Sequence[dict[str, Any]], pending: dict[str, Any]) -> tuple[int, int] | None:
    """The smallest command-stream id the engine's group may still need, from XINFO GROUPS and the XPENDING
    summary of `GROUP` read together; None when nothing may be trimmed (no group, or a group we do not know).

    Pending entries are needed (their replies may not be out); so is every entry after the group's
    last-delivered-id (not yet read). Everything below the bound was acknowledged, hence journaled.
    """
    names = {group["name"].decode() if isinstance(group["name"], bytes) else group["name"] for group in groups}
    if names != {GROUP}:
        return None
    (group,) = groups
    if int(pending["pending"]) > 0:
        return _stream_id(pending["min"])
    milliseconds, sequence = _stream_id(group["last-delivered-id"])
    return (milliseconds, sequence + 1) if sequence < 2**64 - 1 else (milliseconds + 1, 0)


async def trim_journaled(client: aioredis.Redis) -> int:
    """`XTRIM COMMANDS MINID <bound>` (see `trim_bound`); returns how many entries were removed.

    Safe against the relay's own reads running meanwhile: the group's state is read in one MULTI/EXEC, and
    between that and the XTRIM the pending list can only lose entries, or gain entries after the
    last-delivered-id that was read, so none below the bound.
    """
    pipe = client.pipeline(transaction=True)
    pipe.xinfo_groups(COMMANDS)
    pipe.xpending(COMMANDS, GROUP)
    groups, pending = await pipe.execute()
    bound = trim_bound(groups, pending)
    if bound is None:
        return 0
    removed: Any = await client.xtrim(COMMANDS, minid=f"{bound[0]}-{bound[1]}", approximate=False)
    return int(removed)


def _applied_before_restart(command: Any, seq: int) -> Reply:
    """The answer to a request the engine's journal already holds, from before a restart.

    Its original reply was not kept, so the caller learns that it was applied and where to look.
    """
    what = f"order {seq}" if type(command) is PlaceOrder else f"command {seq}"
    return Reply(
        seq,
        ResultCode.ENGINE_TIMEOUT,
        f"this request was applied (as {what}) before the engine restarted; its result is not kept: query it",
    )


def _portable(command: Any, reply: Reply) -> Reply:
    """A reply whose data the codec can carry: candles become `KlineSnapshot`s (same fields)."""
    if type(command) is GetKlines and reply.ok and reply.data:
        name = INTERVAL_NAMES.get(command.interval_seconds, str(command.interval_seconds))
        now = time.time()
        snapshots = tuple(
            c.snapshot(command.market, name, c.end <= now)
            for c in reply.data  # type: ignore[attr-defined]
        )
        return Reply(reply.seq, reply.code, reply.message, snapshots)
    return reply


async def _sleep_or_stop(stop: asyncio.Event, delay: float) -> None:
    try:
        await asyncio.wait_for(stop.wait(), delay)
    except TimeoutError:
        pass
