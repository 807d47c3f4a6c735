"""The balance process (`run.py balance`): the engine's balance actor, with every market a stand-in for a market
that a market shard (another process) matches; its Redis side is `openbell.cluster.balance_relay`.

- `ShardMap`: the stable assignment of markets to shards. The balance process is its only writer: a new market
  goes to the shard with the fewest markets (the lowest number among equals), and a market never changes
  shard. It is kept in Redis (`SHARD_COUNT`, `SHARDS`), read at start, and written with the market's
  `HostMarket`.
- `RemoteMarket`: a market as the balance actor sees it: `tell(MatchBatch)` stages the batch for the market's
  shard (and notes it in flight in the journal). The settlement comes back on the settlement stream and
  reaches the balance actor as the very `Settlement` message a market actor sends, so `BalanceActor` does
  not know the difference.
- `ShardOutbox`: what the balance actor staged for the shards, and when it may leave. Staged items wait for
  the journal record of the commands they came from (`sealed(lsn)`, told by the journal), so no shard ever
  sees a batch that a crash of this process could take back (its numbers would then be reused for other
  commands). The relay takes what is due at each flush, one `MatchEntry` per shard.
- `BalanceEngine`: `openbell.actors.engine.Engine` with remote markets. It recovers from the balance
  process's own journal (`openbell.durability.split`), and when it starts sends every market's `HostMarket`
  again and then the batches in flight, which the shards answer once (by batch number).

Threads: the balance actor stages and seals; the journal's writer tells `Durable`; the relay's event loop
takes what is due. Each hand-over is a deque (appended on one side, popped on the other) and a wake-up of
the relay's loop; nothing is shared otherwise.
"""

from __future__ import annotations

import logging
import time
from collections import deque
from collections.abc import Callable, Mapping, Sequence
from typing import Any, TypeAlias

import pykka
import redis

from openbell.actors.balance import MarketRef
from openbell.actors.engine import Engine
from openbell.cluster import SHARD_COUNT, SHARDS
from openbell.core.commands import HISTORY_QUERIES, MARKET_QUERIES, HistoryQuery
from openbell.core.grid import MarketSpec
from openbell.core.messages import MatchBatch, Reply, Settlement
from openbell.core.types import ResultCode
from openbell.durability.split import BalanceJournal, HostMarket

log = logging.getLogger(__name__)

ShardItem: TypeAlias = HostMarket | MatchBatch


class ShardMap:
    """Which shard matches which market (see the module docstring)."""

    def __init__(self, count: int, assigned: Mapping[str, int] | None = None) -> None:
        if count < 1:
            raise ValueError("there must be at least one market shard")
        self.count = count
        self._assigned: dict[str, int] = dict(assigned or {})

    def get(self, symbol: str) -> int | None:
        return self._assigned.get(symbol)

    def assign(self, symbol: str) -> int:
        """The shard of `symbol`, choosing one if it has none: the shard with the fewest markets."""
        shard = self._assigned.get(symbol)
        if shard is None:
            counts = [0] * self.count
            for given in self._assigned.values():
                if 0 <= given < self.count:
                    counts[given] += 1
            shard = min(range(self.count), key=lambda k: (counts[k], k))
            self._assigned = {**self._assigned, symbol: shard}  # readers on other threads see the old or new dict
        return shard

    def markets_of(self, shard: int) -> list[str]:
        return sorted(symbol for symbol, given in self._assigned.items() if given == shard)

    @classmethod
    def load(cls, redis_url: str, *, wait: float | None = None) -> ShardMap:
        """The map kept in Redis; waits for a markets process to say how many shards there are.

        `wait`: give up after this many seconds (TimeoutError); None waits as long as it takes, saying so.
        """
        client = redis.Redis.from_url(redis_url, socket_timeout=5, socket_connect_timeout=1)
        started = time.monotonic()
        said = 0.0
        try:
            while True:
                try:
                    count = client.get(SHARD_COUNT)
                    assigned = client.hgetall(SHARDS)
                except (redis.RedisError, OSError) as error:
                    count, assigned, reason = None, {}, f"redis: {error}"
                else:
                    reason = f"no {SHARD_COUNT} yet: waiting for a markets process (run.py markets --shards N)"
                if count is not None:
                    return cls(int(count), {_text(key): int(value) for key, value in assigned.items()})
                waited = time.monotonic() - started
                if wait is not None and waited > wait:
                    raise TimeoutError(reason)
                if waited - said >= 5 or said == 0:
                    log.info("waiting for the market shards (%s)", reason)
                    said = waited or 0.001
                time.sleep(0.2)
        finally:
            client.close()


def _text(value: bytes | str) -> str:
    return value.decode() if isinstance(value, bytes) else value


class ShardOutbox:
    """The balance actor's items for the shards, staged until the journal holds the commands they came from."""

    def __init__(self) -> None:
        self.journaled = False
        """Whether a journal seals what is staged (else items may leave at once)."""
        self.wake: Callable[[], None] = lambda: None
        """Set by the relay: schedule a flush (thread-safe)."""
        self._staged: list[tuple[int, ShardItem]] = []
        self._ready: deque[tuple[int | None, list[tuple[int, ShardItem]]]] = deque()
        self.journaled_settlements: deque[tuple[str, int, int]] = deque()
        """(market, batch number, LSN) of each settlement the balance actor journaled, for the relay."""

    # ----------------------------------------------------------------- the balance actor's side
    def stage(self, shard: int, item: ShardItem) -> None:
        self._staged.append((shard, item))
        if not self.journaled:
            self.sealed(None)

    def sealed(self, lsn: int | None) -> None:
        """`Outbound.sealed`: what was staged so far waits for record `lsn` (None: for nothing)."""
        if self._staged:
            staged, self._staged = self._staged, []
            self._ready.append((lsn, staged))
            if lsn is None:
                self.wake()

    def settled(self, settlement: Settlement, lsn: int) -> None:
        """`Outbound.settled`: the balance actor journaled `settlement` as record `lsn`."""
        self.journaled_settlements.append((settlement.market, settlement.batch_no, lsn))

    # ----------------------------------------------------------------- the journal writer's side
    def tell(self, message: Any) -> None:
        """`Durable` from the journal: what waited for it may leave now."""
        self.wake()

    # ----------------------------------------------------------------- the relay's side
    def has_due(self, durable_lsn: float) -> bool:
        ready = self._ready
        if not ready:
            return False
        lsn = ready[0][0]
        return lsn is None or lsn <= durable_lsn

    def take_due(self, durable_lsn: float) -> list[tuple[int, ShardItem]]:
        """Every item whose record is durable, in the order they were staged."""
        out: list[tuple[int, ShardItem]] = []
        while self.has_due(durable_lsn):
            out.extend(self._ready.popleft()[1])
        return out

    def put_back(self, items: list[tuple[int, ShardItem]]) -> None:
        """Items taken for a flush that failed: first out again."""
        if items:
            self._ready.appendleft((None, items))


class RemoteMarket:
    """A market matched by a market shard, as the balance actor and the engine see it (a `MarketRef`)."""

    def __init__(
        self,
        spec: MarketSpec,
        shard: int,
        outbox: ShardOutbox,
        journal: BalanceJournal | None,
        reply_sink: Callable[[Sequence[Reply]], None],
    ) -> None:
        self.spec = spec
        self.shard = shard
        self._outbox = outbox
        self._journal = journal
        self._reply_sink = reply_sink

    def tell(self, message: Any) -> None:
        if isinstance(message, MatchBatch):
            if self._journal is not None:
                self._journal.sent(message)
            self._outbox.stage(self.shard, message)
        elif isinstance(message, MARKET_QUERIES) or isinstance(message, HISTORY_QUERIES):
            # The relay sends these straight to the shard; only an in-process caller ends up here.
            text = f"market data of {self.spec.symbol} is served by market shard {self.shard}"
            self._reply_sink([Reply(message.seq, ResultCode.NOT_FOUND, text)])
        else:
            log.error("market %s (shard %d) got an unknown message %r", self.spec.symbol, self.shard, message)

    def host(self) -> None:
        """Tell the shard to match this market (before any of its batches)."""
        self._outbox.stage(self.shard, HostMarket(self.spec))

    def resend(self, batch: MatchBatch) -> None:
        """Send a batch in flight again (after a restart): the shard matches it only if it never did."""
        self._outbox.stage(self.shard, batch)


class BalanceEngine(Engine):
    """The engine of the balance process: the balance actor, markets as `RemoteMarket`s (see the module docstring)."""

    def __init__(self, shard_map: ShardMap, **options: Any) -> None:
        super().__init__(**options)
        self.shard_map = shard_map
        self.outbox = ShardOutbox()
        self._remote: dict[str, RemoteMarket] = {}

    @property
    def journal(self) -> BalanceJournal | None:
        journal = self.persistence.journal if self.persistence is not None else None
        assert journal is None or isinstance(journal, BalanceJournal)
        return journal

    def _recover(self) -> None:
        super()._recover()
        journal = self.journal
        if journal is not None:
            journal.outbound = self.outbox
        self.outbox.journaled = journal is not None

    def _resume(self, market_refs: dict[str, MarketRef]) -> None:
        """Host every market again, then send the batches in flight at the last stop (all durable already)."""
        replayed = self._take_replayed()
        for spec in list(self.balance_core.ledger.markets.values()):
            market_refs[spec.symbol] = self._spawn_market(spec)
        if replayed is not None:
            for symbol, batches in replayed.unmatched.items():
                for batch in batches:
                    self._remote[symbol].resend(batch)
            in_flight = sum(len(batches) for batches in replayed.unmatched.values())
            if in_flight:
                log.info("sending %d batches in flight at the last stop to their shards again", in_flight)
        self.outbox.sealed(None)

    def _spawn_market(self, spec: MarketSpec) -> MarketRef:
        """A market added (by the balance actor) or recovered: its shard is told to host it, before any batch."""
        shard = self.shard_map.assign(spec.symbol)
        ref = RemoteMarket(spec, shard, self.outbox, self.journal, self._deliver)
        ref.host()
        self._remote[spec.symbol] = ref
        self._register_market(spec, ref)
        log.info("market %s is matched by shard %d", spec.symbol, shard)
        return ref

    def shard_of(self, symbol: str) -> int | None:
        return self.shard_map.get(symbol)

    def settled_through(self) -> dict[str, int]:
        """Per market, the number of the last batch settled (or in the journal's hands), from the recovered state."""
        journal = self.journal
        in_flight = journal.in_flight if journal is not None else {}
        core = self.balance_core
        return {symbol: sent - len(in_flight.get(symbol, ())) for symbol, sent in core.batches_sent.items()}

    def settle(self, settlement: Settlement) -> bool:
        """Hand a shard's settlement to the balance actor, as a market actor would. False if it is stopped."""
        ref = self._balance_ref
        if ref is None:
            return False
        try:
            ref.tell(settlement)
        except pykka.ActorDeadError:
            return False
        return True

    def _read_history(self, query: HistoryQuery) -> None:
        shard = self.shard_map.get(query.market)
        text = f"the history of {query.market} is kept by market shard {shard}"
        self._deliver([Reply(query.seq, ResultCode.NOT_FOUND, text)])

    def _drain(self, timeout: float) -> None:
        """At a stop: let the intake empty; settlements still owed are not waited for long (they are in the
        snapshot's batches in flight, and a shard may be down)."""
        deadline = time.monotonic() + timeout
        while self._intake.queue and time.monotonic() < deadline:
            time.sleep(0.005)
        settle_by = min(deadline, time.monotonic() + 1.0)
        while self.balance_core.pending and time.monotonic() < settle_by:
            time.sleep(0.005)
        time.sleep(0.01)  # let the last replies leave
