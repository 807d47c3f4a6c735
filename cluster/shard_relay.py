"""A market shard's relay: its stream in, settlements, events and query replies out.

In: `shard_stream(K)`, read with consumer group `MARKET_GROUP`.
- A `MatchEntry` (from the balance process): its new items (`openbell.durability.split.new_items`: a market
  hosted again or a batch already matched is left out) are journaled as the entry itself, then each
  `HostMarket` starts a market and each `MatchBatch` goes to its market's actor. The entry becomes a
  `Delivery`, complete when every batch it brought has come back from its actor (`BatchMatched`).
- A `CommandEntry` (market-data and history queries from API processes): each query is answered on its
  caller's reply channel; the entry is acknowledged once every answer is out.

Out, once per flush, in one MULTI/EXEC transaction: the complete deliveries at the head of the line whose
journal record is durable, in the order they were read: one `SettlementEntry` on `SETTLEMENTS` with their
settlements, one `EventBatch` on `EVENTS` with their events, and the XACK of their entries; then the query
replies and their acknowledgements. So an entry is acknowledged exactly when what it made is in Redis: after
a crash, the entries still pending are exactly those whose results never left. At start the relay reads
them before recovery, recovery keeps what matching them made (`keep`), and they leave as if nothing had
happened. A flush that fails is tried again, first in line (the balance process ignores a settlement it has,
by number).

A snapshot is due by the same policy as the engine's: the relay stops reading until every delivery has left,
has each market actor capture its core, writes the snapshot, and reads on.

Invariants: deliveries leave in the order their entries were read (so per market in batch order); an entry is
acknowledged only in the transaction that sends its results; a batch number is matched at most once.
"""

from __future__ import annotations

import asyncio
import itertools
import logging
import time
from collections import deque
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any, TypeAlias

import redis
import redis.asyncio as aioredis

from openbell.cluster import (
    EVENTS,
    MARKET_GROUP,
    SETTLEMENTS,
    SHARD_COUNT,
    CommandEntry,
    EventBatch,
    ReplyBatch,
    RoutedReply,
    SettlementEntry,
    shard_stream,
)
from openbell.cluster.reconnect import keep_connected, sleep_or_stop
from openbell.cluster.relay import trim_journaled
from openbell.cluster.shard import BatchMatched, MarketShard
from openbell.core.commands import QUERIES, restamp
from openbell.core.events import Event
from openbell.core.messages import MatchBatch, Reply, Settlement
from openbell.core.types import ResultCode
from openbell.core.wire import WireError, decode, encode
from openbell.durability.journal import Durable
from openbell.durability.split import HostMarket, MatchEntry, OutOfOrder, new_items
from openbell.metrics import EventCounter

log = logging.getLogger(__name__)

ShardEntry: TypeAlias = MatchEntry | CommandEntry
Results: TypeAlias = dict[tuple[str, int], tuple[Settlement, list[Event]]]


class ShardCountMismatch(Exception):
    """Redis says another number of market shards than this process was given."""


@dataclass(slots=True)
class Delivery:
    """A `MatchEntry` being worked off."""

    entry_id: Any
    lsn: int = 0
    """Its journal record (0: none was needed)."""
    waiting: int = 0
    """Batches sent to their actors whose results have not come back."""
    settlements: list[Settlement] = field(default_factory=list)
    events: list[Event] = field(default_factory=list)


@dataclass(slots=True)
class QueryEntry:
    entry_id: Any
    waiting: int = 0


def register_shard_count(redis_url: str, shards: int) -> None:
    """Write how many market shards there are, or check it against what Redis already says."""
    client = redis.Redis.from_url(redis_url, socket_timeout=5, socket_connect_timeout=1)
    try:
        for attempt in itertools.count():
            try:
                client.set(SHARD_COUNT, shards, nx=True)
                found = int(client.get(SHARD_COUNT) or 0)
                break
            except (redis.RedisError, OSError) as error:
                if attempt % 25 == 0:
                    log.warning("redis not reachable at %s (%s); trying again", redis_url, error)
                time.sleep(0.2)
    finally:
        client.close()
    if found != shards:
        raise ShardCountMismatch(
            f"{SHARD_COUNT} is {found} in Redis, but this process was given --shards {shards}: every markets "
            "process must be given the same number, and it cannot change while markets are assigned"
        )


class ShardRelay:
    def __init__(
        self,
        redis_url: str,
        shard: MarketShard,
        *,
        batch_size: int = 64,
        block_ms: int = 200,
        max_deliveries: int = 1024,
        trim_interval: float = 5.0,
    ) -> None:
        self.redis_url = redis_url
        self.shard = shard
        self.stream = shard_stream(shard.shard)
        self.consumer = f"markets-{shard.shard}"
        self.batch_size = batch_size
        self.block_ms = block_ms
        self.max_deliveries = max_deliveries
        self.trim_interval = max(trim_interval, 0.05)
        self._count_events = EventCounter()
        """Orders and trades of this shard's markets, counted per flush."""
        self._hosted: dict[str, Any] = {}
        self._handled: dict[str, int] = {}
        self._deliveries: deque[Delivery] = deque()
        self._by_batch: dict[tuple[str, int], Delivery] = {}
        self._results: deque[BatchMatched] = deque()
        """From the market actors' threads."""
        self._tracked: set[Any] = set()
        """Ids of entries read and not yet acknowledged (a re-read after a reconnect skips them)."""
        self._queries: dict[int, tuple[str, str, QueryEntry]] = {}
        """Seq -> (request id, reply channel, entry) of the queries being answered."""
        self._replies: deque[Sequence[Reply]] = deque()
        self._query_acks: list[Any] = []
        self._seq = itertools.count(1)
        self._quiescing = False
        self._acked_since_trim = 1
        self._loop: asyncio.AbstractEventLoop | None = None
        self._wake: asyncio.Event | None = None
        self._wake_scheduled = False
        self._redis: aioredis.Redis | None = None
        self._stop = asyncio.Event()
        self.ready = asyncio.Event()
        self.stats = {"batches": 0, "duplicates": 0, "queries": 0, "malformed": 0, "resent": 0, "snapshots": 0}

    # ----------------------------------------------------------------- life cycle
    async def run(self, stop: asyncio.Event) -> None:
        self._loop = asyncio.get_running_loop()
        self._wake = asyncio.Event()
        self._stop = stop
        self._redis = aioredis.Redis.from_url(self.redis_url, socket_timeout=5, socket_connect_timeout=1)
        tasks: list[asyncio.Task[None]] = []
        try:
            pending = await self._pending_at_start(stop)
            if stop.is_set():
                return
            keep = {
                (item.market, item.batch_no)
                for _, entry, _ in pending
                if isinstance(entry, MatchEntry)
                for item in entry.items
                if isinstance(item, MatchBatch)
            }
            results = await asyncio.to_thread(self.shard.start, self, self._on_replies, keep)
            self._hosted = dict(self.shard.markets)
            self._handled = self.shard.handled()
            for entry_id, entry, raw in pending:
                self._accept_one(entry_id, entry, raw, results)
            if pending:
                log.info("shard %d: %d entries read before the restart are worked off", self.shard.shard, len(pending))
            tasks = [asyncio.create_task(self._flush_forever()), asyncio.create_task(self._trim_forever())]
            await keep_connected(
                self._serve, what=f"shard {self.shard.shard}", on_lost=lambda e: self.ready.clear(), stop=stop
            )
        finally:
            await self._shutdown(tasks)

    async def _pending_at_start(self, stop: asyncio.Event) -> list[tuple[Any, ShardEntry, bytes]]:
        """The entries delivered to this shard before and never acknowledged (read before recovery)."""
        delay = 0.05
        while not stop.is_set():
            try:
                await self._ensure_group()
                entries = await self._read_pending()
            except (redis.RedisError, OSError) as error:
                log.warning("shard %d: redis not reachable (%s); trying again", self.shard.shard, error)
                await sleep_or_stop(stop, delay)
                delay = min(delay * 2, 2.0)
                continue
            out = []
            for entry_id, fields in entries:
                decoded = self._decode(entry_id, fields)
                if decoded is not None:
                    out.append((entry_id, *decoded))
            return out
        return []

    async def _shutdown(self, tasks: list[asyncio.Task[None]]) -> None:
        deadline = time.monotonic() + 5
        while (self._deliveries or self._queries) and time.monotonic() < deadline:
            await asyncio.sleep(0.01)
        quiet = not self._deliveries
        await asyncio.to_thread(self.shard.stop, quiet)
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
        if self._redis is not None:
            try:
                await asyncio.wait_for(self._redis.aclose(), 2)
            except (redis.RedisError, OSError, TimeoutError):
                pass
        log.info("shard %d stopped: %s", self.shard.shard, self.stats)

    # ----------------------------------------------------------------- reading
    async def _ensure_group(self) -> None:
        assert self._redis is not None
        try:
            await self._redis.xgroup_create(self.stream, MARKET_GROUP, id="0", mkstream=True)
        except redis.ResponseError as error:
            if "BUSYGROUP" not in str(error):
                raise

    async def _read_pending(self) -> list[tuple[Any, Any]]:
        r = self._redis
        assert r is not None
        await r.xautoclaim(self.stream, MARKET_GROUP, self.consumer, min_idle_time=0, start_id="0-0", count=10_000)
        out: list[tuple[Any, Any]] = []
        last: Any = "0"
        while True:
            response: Any = await r.xreadgroup(MARKET_GROUP, self.consumer, {self.stream: last}, count=self.batch_size)
            entries: Any = response[0][1] if response else []
            if not entries:
                return out
            out.extend(entries)
            last = entries[-1][0]

    async def _serve(self, connected: Any) -> None:
        r = self._redis
        assert r is not None
        await self._ensure_group()
        self._accept(await self._read_pending())
        connected()
        if not self.ready.is_set():
            log.info("shard %d ready: reading %s as %s/%s", self.shard.shard, self.stream, MARKET_GROUP, self.consumer)
        self.ready.set()
        persistence = self.shard.persistence
        while not self._stop.is_set():
            if self._quiescing:
                if self._deliveries:
                    await asyncio.sleep(0.002)
                else:
                    await self._snapshot()
                continue
            if len(self._deliveries) >= self.max_deliveries:
                await asyncio.sleep(0.001)
                continue
            response: Any = await r.xreadgroup(
                MARKET_GROUP, self.consumer, {self.stream: ">"}, count=self.batch_size, block=self.block_ms
            )
            for _stream, entries in response or ():
                self._accept(entries)
            if persistence is not None and persistence.snapshot_due():
                self._quiescing = True

    def _decode(self, entry_id: Any, fields: Any) -> tuple[ShardEntry, bytes] | None:
        try:
            if not fields:
                raise WireError("entry was deleted")
            raw = fields[b"m"]
            return decode(raw, ShardEntry), raw
        except (WireError, KeyError) as error:
            self.stats["malformed"] += 1
            log.warning("shard %d: entry %s skipped: %s", self.shard.shard, entry_id, error)
            self._query_acks.append(entry_id)
            self._schedule_flush()
            return None

    def _accept(self, entries: Sequence[tuple[Any, Any]]) -> None:
        for entry_id, fields in entries:
            if entry_id in self._tracked:
                continue
            decoded = self._decode(entry_id, fields)
            if decoded is not None:
                self._accept_one(entry_id, decoded[0], decoded[1], None)

    def _accept_one(self, entry_id: Any, entry: ShardEntry, raw: bytes, recovered: Results | None) -> None:
        if isinstance(entry, CommandEntry):
            self._accept_queries(entry_id, entry)
            return
        try:
            items = new_items(entry, self._hosted, self._handled)
        except OutOfOrder as error:
            log.error("shard %d: entry %s left pending: %s", self.shard.shard, entry_id, error)
            return
        delivery = Delivery(entry_id)
        if recovered:
            for item in entry.items:
                if isinstance(item, MatchBatch):
                    found = recovered.pop((item.market, item.batch_no), None)
                    if found is not None:  # matched and journaled before the restart; it never left
                        delivery.settlements.append(found[0])
                        delivery.events.extend(found[1])
                        self.stats["resent"] += 1
        self.stats["duplicates"] += sum(isinstance(item, MatchBatch) for item in entry.items) - sum(
            isinstance(item, MatchBatch) for item in items
        )
        if items:
            journal = self.shard.journal
            if journal is not None:
                commands = sum(len(item.commands) for item in items if isinstance(item, MatchBatch))
                delivery.lsn = journal.entry(raw[1:], commands, self)  # the packed record: the bytes after the version
            for item in items:
                if isinstance(item, HostMarket):
                    self.shard.host(item.spec)
                else:
                    delivery.waiting += 1
                    self._by_batch[(item.market, item.batch_no)] = delivery
                    self.shard.match(item)
            self.stats["batches"] += delivery.waiting
        self._deliveries.append(delivery)
        self._tracked.add(entry_id)
        if delivery.waiting == 0:
            self._schedule_flush()

    def _accept_queries(self, entry_id: Any, entry: CommandEntry) -> None:
        waiting = QueryEntry(entry_id)
        now_ms = time.time_ns() // 1_000_000
        for routed in entry.commands:
            command = routed.command
            if routed.deadline_ms < now_ms:
                continue  # its caller gave up: nobody reads the answer
            seq = next(self._seq)
            self._queries[seq] = (routed.request_id, routed.reply_to, waiting)
            waiting.waiting += 1
            self.stats["queries"] += 1
            if isinstance(command, QUERIES):
                self.shard.query(restamp(command, seq, now_ms))
            else:
                text = f"a market shard cannot do {type(command).__name__}"
                self._on_replies([Reply(seq, ResultCode.INVALID_REQUEST, text)])
        if waiting.waiting == 0:
            self._query_acks.append(entry_id)
            self._schedule_flush()
        else:
            self._tracked.add(entry_id)

    # ----------------------------------------------------------------- from other threads
    def tell(self, message: Any) -> None:
        """`BatchMatched` from a market actor, `Durable` from the journal: something may be ready to leave."""
        if isinstance(message, BatchMatched):
            self._results.append(message)
        elif not isinstance(message, Durable):
            log.error("shard relay got an unknown message %r", message)
            return
        self._schedule_flush()

    def _on_replies(self, replies: Sequence[Reply]) -> None:
        self._replies.append(replies)
        self._schedule_flush()

    def _schedule_flush(self) -> None:
        if not self._wake_scheduled and self._loop is not None and self._wake is not None:
            self._wake_scheduled = True
            try:
                self._loop.call_soon_threadsafe(self._wake.set)
            except RuntimeError:
                pass

    # ----------------------------------------------------------------- flush
    async def _flush_forever(self) -> None:
        assert self._wake is not None
        while True:
            await self._wake.wait()
            self._wake.clear()
            self._wake_scheduled = False
            try:
                await self._flush_once()
            except (redis.RedisError, OSError) as error:
                log.warning("shard %d could not write its results (%s); trying again", self.shard.shard, error)
                await asyncio.sleep(0.05)
                self._schedule_flush()

    def _take_ready(self) -> list[Delivery]:
        results = self._results
        while results:
            matched = results.popleft()
            settlement = matched.settlement
            delivery = self._by_batch.pop((settlement.market, settlement.batch_no))
            delivery.settlements.append(settlement)
            delivery.events.extend(matched.events)
            delivery.waiting -= 1
        journal = self.shard.journal
        durable = journal.journal.durable_lsn if journal is not None else float("inf")
        taken = []
        deliveries = self._deliveries
        while deliveries and deliveries[0].waiting == 0 and deliveries[0].lsn <= durable:
            taken.append(deliveries.popleft())
        return taken

    async def _flush_once(self) -> None:
        r = self._redis
        assert r is not None
        while True:
            taken = self._take_ready()
            owed: dict[str, list[RoutedReply]] = {}
            acks, self._query_acks = self._query_acks, []
            while self._replies:
                for reply in self._replies.popleft():
                    found = self._queries.pop(reply.seq, None)
                    if found is None:
                        continue
                    request_id, reply_to, waiting = found
                    owed.setdefault(reply_to, []).append(RoutedReply(request_id, reply))
                    waiting.waiting -= 1
                    if waiting.waiting == 0:
                        acks.append(waiting.entry_id)
            if not (taken or owed or acks):
                return
            settlements = [settlement for delivery in taken for settlement in delivery.settlements]
            events = [event for delivery in taken for event in delivery.events]
            pipe = r.pipeline(transaction=True)
            if settlements:
                pipe.xadd(SETTLEMENTS, {"m": encode(SettlementEntry(tuple(settlements)))})
            if events:
                pipe.publish(EVENTS, encode(EventBatch(tuple(events))))
            ack_ids = [delivery.entry_id for delivery in taken] + acks
            if ack_ids:
                pipe.xack(self.stream, MARKET_GROUP, *ack_ids)
            for channel, routed in owed.items():
                pipe.publish(channel, encode(ReplyBatch(tuple(routed))))
            try:
                await pipe.execute()
            except (redis.RedisError, OSError):
                self._deliveries.extendleft(reversed(taken))
                self._query_acks = acks + self._query_acks  # the replies are lost: their callers time out
                raise
            for entry_id in ack_ids:
                self._tracked.discard(entry_id)
            self._acked_since_trim += len(ack_ids)
            if events:
                self._count_events(events)
                if self.shard.history is not None:
                    self.shard.history.on_events(events)

    # ----------------------------------------------------------------- snapshots and trimming
    async def _snapshot(self) -> None:
        """Every delivery has left: capture each core (in its actor) and write the snapshot, then read on."""
        persistence = self.shard.persistence
        try:
            if persistence is not None:
                states = await asyncio.to_thread(self.shard.capture)
                persistence.snapshot(states)
                self.stats["snapshots"] += 1
        except Exception:
            log.exception("shard %d: snapshot failed; matching goes on", self.shard.shard)
        finally:
            self._quiescing = False

    async def _trim_forever(self) -> None:
        while not self._stop.is_set():
            await sleep_or_stop(self._stop, self.trim_interval)
            if self._acked_since_trim == 0 or self._redis is None:
                continue
            acked = self._acked_since_trim
            try:
                await trim_journaled(self._redis, self.stream, MARKET_GROUP)
            except (redis.RedisError, OSError) as error:
                log.info("could not trim %s (%s); trying again later", self.stream, error)
                continue
            self._acked_since_trim -= acked
