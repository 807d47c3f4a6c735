"""The balance process's relay: the engine's relay (`openbell.cluster.relay`) for the command stream, plus the
two streams between the balance process and the market shards.

Out, in the same pipeline as replies and events (and before them, so a market's `HostMarket` is in its
shard's stream before the reply that says the market exists): one `MatchEntry` per shard per flush, with
every item the balance actor staged whose journal record is durable (`ShardOutbox.take_due`), in the order it
staged them. A flush that fails puts its items back first in line; a shard ignores a batch it has had.

In: the settlement stream, read with consumer group `BALANCE_GROUP` by a task of its own. Each `Settlement`
goes to the balance actor as a market actor would send it, unless its batch number is at most the last one
this process settled for that market (`settled_through`: a redelivery, from before a restart or a shard's
retry): that one is answered by acknowledging it, never applied twice. An entry is acknowledged once the
journal holds every settlement in it (`ShardOutbox.journaled_settlements`, then durable), so a settlement
is never lost to a crash between reading and journaling it. A settlement whose number skips one is a fault
(logged; its entry stays pending and its market waits).

Market-data and history queries that reach this process (from an API process whose registry did not know
the market's shard yet) are forwarded to the shard's stream unchanged: the shard answers the caller.
"""

from __future__ import annotations

import logging
from collections import deque
from collections.abc import Coroutine, Sequence
from dataclasses import dataclass
from typing import Any

import redis

from openbell.cluster import (
    BALANCE_GROUP,
    SETTLEMENTS,
    SHARDS,
    CommandEntry,
    RoutedCommand,
    SettlementEntry,
    shard_stream,
)
from openbell.cluster.balance import BalanceEngine, ShardItem
from openbell.cluster.reconnect import keep_connected
from openbell.cluster.relay import Relay
from openbell.core.commands import HISTORY_QUERIES, MARKET_QUERIES
from openbell.core.grid import MarketSpec
from openbell.core.messages import Settlement
from openbell.core.wire import WireError, decode, encode
from openbell.durability.split import HostMarket, MatchEntry

log = logging.getLogger(__name__)

CONSUMER = "balance"
SHARD_QUERIES = frozenset((*MARKET_QUERIES, *HISTORY_QUERIES))
"""What a market shard answers."""


@dataclass(slots=True)
class SettlementDelivery:
    """A settlement stream entry being worked off: acknowledged once the journal holds all it brought."""

    entry_id: Any
    waiting: int = 0
    lsn: int = 0
    """The highest journal record among its settlements."""
    held: bool = False
    """Not all of its settlements went to the balance actor (one is missing before it, or the process is
    stopping): never acknowledged in this run, so it is read again after a restart."""


class BalanceRelay(Relay):
    def __init__(self, redis_url: str, engine: BalanceEngine, boot_markets: Sequence[MarketSpec] = (), **options: Any):
        super().__init__(redis_url, engine, boot_markets, consumer="balance", **options)
        self.balance = engine
        self.outbox = engine.outbox
        self.outbox.wake = self._schedule_flush
        self.trimmed_streams.append((SETTLEMENTS, BALANCE_GROUP))
        self._settled_through = engine.settled_through()
        self._tracked: dict[Any, SettlementDelivery] = {}
        """Entries read and not yet acknowledged, by id (a re-read after a reconnect skips them)."""
        self._by_batch: dict[tuple[str, int], SettlementDelivery] = {}
        self._settlement_acks: deque[SettlementDelivery] = deque()
        """Entries whose settlements are all journaled, waiting for the journal to be durable, in order."""
        self._forwards: dict[int, list[RoutedCommand]] = {}
        self.stats.update({"settlements": 0, "duplicate_settlements": 0, "forwarded": 0, "batches_sent": 0})

    # ----------------------------------------------------------------- life cycle
    def _start_engine(self) -> None:
        super()._start_engine()
        self._schedule_flush()  # what recovery staged (every market's HostMarket, the batches in flight) leaves now

    def _more_tasks(self) -> list[Coroutine[Any, Any, None]]:
        return [keep_connected(self._read_settlements, what="settlement reader", stop=self._stop)]

    def _durable_lsn(self) -> float:
        journal = self.balance.journal
        return journal.journal.durable_lsn if journal is not None else float("inf")

    # ----------------------------------------------------------------- settlements in
    async def _read_settlements(self, connected: Any) -> None:
        r = self._redis
        assert r is not None
        try:
            await r.xgroup_create(SETTLEMENTS, BALANCE_GROUP, id="0", mkstream=True)
        except redis.ResponseError as error:
            if "BUSYGROUP" not in str(error):
                raise
        await r.xautoclaim(SETTLEMENTS, BALANCE_GROUP, CONSUMER, min_idle_time=0, start_id="0-0", count=10_000)
        last: Any = "0"
        while True:  # what was delivered to this consumer before and not acknowledged
            response: Any = await r.xreadgroup(BALANCE_GROUP, CONSUMER, {SETTLEMENTS: last}, count=self.batch_size)
            entries: Any = response[0][1] if response else []
            if not entries:
                break
            self._accept_settlements(entries)
            last = entries[-1][0]
        connected()
        while not self._stop.is_set():
            response = await r.xreadgroup(
                BALANCE_GROUP, CONSUMER, {SETTLEMENTS: ">"}, count=self.batch_size, block=self.block_ms
            )
            for _stream, entries in response or ():
                self._accept_settlements(entries)

    def _accept_settlements(self, entries: Sequence[tuple[Any, Any]]) -> None:
        for entry_id, fields in entries:
            if entry_id in self._tracked:
                continue  # re-read after a reconnect: already on its way
            delivery = SettlementDelivery(entry_id)
            try:
                if not fields:
                    raise WireError("entry was deleted")
                settlements = decode(fields[b"m"], SettlementEntry).settlements
            except (WireError, KeyError) as error:
                self.stats["malformed"] += 1
                log.warning("settlement entry %s skipped: %s", entry_id, error)
                self._ack_settlements(delivery)
                continue
            self._settle(delivery, settlements)
            if delivery.waiting == 0 and not delivery.held:
                self._ack_settlements(delivery)
            else:
                self._tracked[entry_id] = delivery

    def _settle(self, delivery: SettlementDelivery, settlements: Sequence[Settlement]) -> None:
        """Hand each new settlement to the balance actor, in order; a redelivered one is only counted."""
        journaled = self.balance.journal is not None
        for settlement in settlements:
            market, number = settlement.market, settlement.batch_no
            last = self._settled_through.get(market, 0)
            if number <= last:
                self.stats["duplicate_settlements"] += 1
                continue
            if number != last + 1:
                log.error(
                    "settlement %d of %s came after %d: one is missing; %s waits (entry %s stays pending)",
                    number,
                    market,
                    last,
                    market,
                    delivery.entry_id,
                )
                delivery.held = True
                return
            if not self.balance.settle(settlement):
                delivery.held = True  # stopping: the entry is read again by the next run
                return
            self._settled_through[market] = number
            self.stats["settlements"] += 1
            if journaled:
                delivery.waiting += 1
                self._by_batch[(market, number)] = delivery

    def _ack_settlements(self, delivery: SettlementDelivery) -> None:
        self._settlement_acks.append(delivery)
        self._schedule_flush()

    def _note_journaled(self) -> None:
        """Settlements the balance actor journaled since the last flush: their entries may be acknowledged once
        the journal is durable up to the last of them."""
        records = self.outbox.journaled_settlements
        while records:
            market, number, lsn = records.popleft()
            delivery = self._by_batch.pop((market, number), None)
            if delivery is None:
                continue
            delivery.lsn = max(delivery.lsn, lsn)
            delivery.waiting -= 1
            if delivery.waiting == 0 and not delivery.held:
                self._settlement_acks.append(delivery)

    # ----------------------------------------------------------------- queries for the shards
    def _forward(self, routed: RoutedCommand) -> bool:
        command = routed.command
        if type(command) not in SHARD_QUERIES:  # a set: most commands are orders, which a tuple would check in full
            return False
        if not isinstance(command, (*MARKET_QUERIES, *HISTORY_QUERIES)):
            return False
        shard = self.balance.shard_of(command.market)
        if shard is None:
            return False
        self._forwards.setdefault(shard, []).append(routed)
        self.stats["forwarded"] += 1
        self._schedule_flush()
        return True

    # ----------------------------------------------------------------- flush
    def _more_to_flush(self) -> bool:
        if self.outbox.journaled_settlements:
            self._note_journaled()
        durable = self._durable_lsn()
        acks = self._settlement_acks
        return self.outbox.has_due(durable) or bool(acks and acks[0].lsn <= durable) or bool(self._forwards)

    def _add_to_flush(self, pipe: Any) -> Any:
        self._note_journaled()
        durable = self._durable_lsn()
        items = self.outbox.take_due(durable)
        per_shard: dict[int, list[ShardItem]] = {}
        for shard, item in items:
            per_shard.setdefault(shard, []).append(item)
            if isinstance(item, HostMarket):
                pipe.hset(SHARDS, item.spec.symbol, shard)
        for shard, shard_items in per_shard.items():
            pipe.xadd(shard_stream(shard), {"m": encode(MatchEntry(tuple(shard_items)))})
        self.stats["batches_sent"] += len(items)
        acked: list[SettlementDelivery] = []
        acks = self._settlement_acks
        while acks and acks[0].lsn <= durable:
            acked.append(acks.popleft())
        if acked:
            pipe.xack(SETTLEMENTS, BALANCE_GROUP, *(delivery.entry_id for delivery in acked))
            for delivery in acked:
                self._tracked.pop(delivery.entry_id, None)
            self._acked_since_trim += len(acked)
        forwards, self._forwards = self._forwards, {}
        for shard, routed in forwards.items():
            pipe.xadd(shard_stream(shard), {"m": encode(CommandEntry(tuple(routed)))})
        return items, acked, forwards

    def _not_flushed(self, taken: Any) -> None:
        items, acked, forwards = taken
        self.outbox.put_back(items)
        for delivery in reversed(acked):
            self._tracked[delivery.entry_id] = delivery
            self._settlement_acks.appendleft(delivery)
        for shard, routed in forwards.items():
            self._forwards[shard] = routed + self._forwards.get(shard, [])
