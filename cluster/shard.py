"""A market shard's markets (`run.py markets --shard K`): their cores and market actors, recovery and snapshots,
the history of their events and the queries about them. Its Redis side is `openbell.cluster.shard_relay`.

The market actors are the engine's own (`openbell.actors.market.MarketActor`) with one difference
(`ShardMarketActor`): what matching a batch made, the settlement and the events, goes to the shard's relay
as one message (`BatchMatched`), which sends both in one transaction once the journal holds the batch. So a
stream entry is acknowledged exactly when its settlements and events are in Redis, and a restart sends
again exactly what had not left: gap-free and without duplicates for WebSocket clients.

Invariants: a market's batches reach its actor in number order, each once (`openbell.durability.split.
new_items` filters what the stream brings); a snapshot is taken only when every batch read has left.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Collection, Sequence
from concurrent.futures import ThreadPoolExecutor
from typing import Any

import pykka

from openbell.actors.bus import InProcessEventBus
from openbell.actors.market import MarketActor, Recipient
from openbell.core.commands import HISTORY_QUERIES, MARKET_QUERIES, Command, HistoryQuery
from openbell.core.events import Event
from openbell.core.grid import MarketSpec
from openbell.core.matching import MarketCore
from openbell.core.messages import MatchBatch, Reply, Settlement
from openbell.core.types import Record, ResultCode
from openbell.durability.split import ShardJournal, ShardPersistence
from openbell.history.writer import HistoryWriter

log = logging.getLogger(__name__)

ReplySink = Callable[[Sequence[Reply]], None]
CAPTURE_TIMEOUT = 60.0


class BatchMatched(Record, frozen=True):
    """Market actor -> the shard's relay: what matching one batch made, handed on as one."""

    settlement: Settlement
    events: tuple[Event, ...]


class CaptureState(Record, frozen=True):
    """Shard -> market actor: answer with the core's state (for a snapshot; asked only when nothing is in flight)."""


_UNUSED_BUS = InProcessEventBus()
"""A shard's market actors publish through their relay (`BatchMatched`), never on a bus."""


class ShardMarketActor(MarketActor):
    def __init__(self, core: MarketCore, relay: Recipient, reply_sink: ReplySink) -> None:
        super().__init__(core, relay, reply_sink, _UNUSED_BUS)

    def _matched(self, batch: MatchBatch, settlement: Settlement, events: list[Event]) -> None:
        self._balance.tell(BatchMatched(settlement, tuple(events)))

    def on_receive(self, message: object) -> Any:
        if isinstance(message, CaptureState):
            return self.core.to_state()
        return super().on_receive(message)


class MarketShard:
    """The markets of shard `shard` in this process (see the module docstring)."""

    def __init__(
        self,
        shard: int,
        *,
        persistence: ShardPersistence | None = None,
        history: HistoryWriter | None = None,
    ) -> None:
        self.shard = shard
        self.persistence = persistence
        self.history = history
        self.cores: dict[str, MarketCore] = {}
        self._refs: dict[str, pykka.ActorRef] = {}
        self._relay: Recipient | None = None
        self._reply_sink: ReplySink = lambda replies: None
        self._readers: ThreadPoolExecutor | None = None

    @property
    def journal(self) -> ShardJournal | None:
        return self.persistence.journal if self.persistence is not None else None

    def start(
        self, relay: Recipient, reply_sink: ReplySink, keep: Collection[tuple[str, int]] = ()
    ) -> dict[tuple[str, int], tuple[Settlement, list[Event]]]:
        """Recover (from the data directory, if any) and start every market's actor. Returns what matching made
        for the batches in `keep` that the journal already held (they had not left when the process stopped)."""
        self._relay = relay
        self._reply_sink = reply_sink
        results: dict[tuple[str, int], tuple[Settlement, list[Event]]] = {}
        if self.history is not None:
            self._readers = ThreadPoolExecutor(2, thread_name_prefix="history-reader")
        if self.persistence is not None:
            self.persistence.history = self.history
            replayed = self.persistence.recover(keep)
            results = replayed.results
            for core in replayed.markets.values():
                self._start(core)
        return results

    def _start(self, core: MarketCore) -> None:
        assert self._relay is not None
        self.cores[core.spec.symbol] = core
        self._refs[core.spec.symbol] = ShardMarketActor.start(core, self._relay, self._reply_sink)
        log.info("shard %d matches market %s", self.shard, core.spec.symbol)

    @property
    def markets(self) -> dict[str, MarketSpec]:
        return {symbol: core.spec for symbol, core in self.cores.items()}

    def handled(self) -> dict[str, int]:
        """Per market, the number of the last batch matched (read before any batch of this run is told)."""
        return {symbol: core.batches_handled for symbol, core in self.cores.items()}

    # ----------------------------------------------------------------- inputs (from the relay's loop)
    def host(self, spec: MarketSpec) -> None:
        if spec.symbol not in self.cores:
            self._start(MarketCore(spec))

    def match(self, batch: MatchBatch) -> None:
        self._refs[batch.market].tell(batch)

    def query(self, command: Command) -> None:
        """Answer a market-data or history query (through the reply sink)."""
        market = getattr(command, "market", None)
        core = self.cores.get(market) if isinstance(market, str) else None
        if core is None:
            text = f"market {market} is not matched by shard {self.shard}"
            self._reply_sink([Reply(command.seq, ResultCode.UNKNOWN_MARKET, text)])
        elif isinstance(command, MARKET_QUERIES):
            self._refs[core.spec.symbol].tell(command)
        elif isinstance(command, HISTORY_QUERIES):
            self._read_history(command, core.spec)
        else:
            text = f"a market shard cannot do {type(command).__name__}"
            self._reply_sink([Reply(command.seq, ResultCode.INVALID_REQUEST, text)])

    def _read_history(self, query: HistoryQuery, spec: MarketSpec) -> None:
        """On a reader thread: the actors never wait for the database."""
        from openbell.history.queries import answer

        history, readers = self.history, self._readers
        if history is None or readers is None:
            self._reply_sink([Reply(query.seq, ResultCode.NOT_FOUND, "this server keeps no history database")])
            return

        def read() -> None:
            try:
                reply = answer(history, query, spec.quote_units_per_tick_lot)
            except Exception as error:
                log.warning("history query %r failed: %s", query, error)
                reply = Reply(query.seq, ResultCode.HISTORY_BEHIND, "the history database did not answer")
            self._reply_sink([reply])

        readers.submit(read)

    # ----------------------------------------------------------------- snapshots and stop
    def capture(self) -> dict[str, dict[str, Any]]:
        """Every core's state, each taken by its own actor (blocks; call only when nothing is in flight)."""
        futures = {symbol: ref.ask(CaptureState(), block=False) for symbol, ref in self._refs.items()}
        return {symbol: future.get(timeout=CAPTURE_TIMEOUT) for symbol, future in futures.items()}

    def stop(self, snapshot: bool) -> None:
        """Stop the actors (a snapshot first if `snapshot`: nothing is in flight), then the journal and history."""
        if snapshot and self.persistence is not None and self.persistence.journal is not None:
            try:
                self.persistence.snapshot(self.capture(), wait=True)
            except Exception:
                log.exception("could not write the shutdown snapshot; the journal still has everything")
        for ref in self._refs.values():
            try:
                ref.stop(block=True, timeout=10)
            except pykka.ActorDeadError:
                pass
        if self.persistence is not None:
            self.persistence.close()
        if self._readers is not None:
            self._readers.shutdown(wait=True, cancel_futures=True)
        if self.history is not None:
            self.history.close()
