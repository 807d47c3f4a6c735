"""Prometheus metrics: every metric openbell exports is defined here, and `exposition()` renders them for
`GET /metrics`. It imports only `openbell.core` (event types), so any package but `core/` (which stays free of
I/O and libraries of this kind) may import it.

What is measured, and where (each counted where the work is already batched, so the hot path takes no lock per
order: a metric's lock is taken once per batch or per request, never per order inside the engine):
- `openbell_orders_total{result}`: orders accepted (`accepted`) and rejected (the result code's name), and
  `openbell_trades_total{market}`: counted from each batch of events as it is published (`EventCounter`, a bus
  subscriber on the publishing actor's thread: one increment per label per batch);
- `openbell_http_request_duration_seconds{method,route}`: per route (the route's path pattern, so the label set
  is bounded), from request to response, measured by the REST app;
- `openbell_engine_batch_commands{stage}`: commands per batch the balance stage drained (`balance`) and per
  batch a market matched (`market`); `openbell_engine_queue_depth{queue}`: the intake's length after each drain,
  and each market actor's mailbox after each batch;
- `openbell_journal_fsync_seconds`: each group commit's fsync;
- `openbell_history_backlog_events` and `openbell_history_lag_seconds`: events handed to the history writer not
  yet stored, and how old (by their command time) the newest event it last stored was when it stored it;
- `openbell_ws_connections`, `openbell_ws_subscriptions`, `openbell_ws_slow_clients_dropped_total`;
- `openbell_redis_reconnects_total{process}`.

Processes. prometheus_client's multiprocess mode: every process of a deployment writes its values to files in
one directory (`PROMETHEUS_MULTIPROC_DIR`), and `/metrics` of any process that serves HTTP adds them all up, so
one scrape of any API worker covers the engine (or balance process and market shards), every API and WebSocket
worker and the history child. `openbell.cli.prepare_metrics` (run before anything imports prometheus_client) uses
the directory the environment names, or makes one for this `run.py` (removed when it ends; `run.py cluster`
hands it to its children, whose own workers inherit it too). Without the variable (a library user, the tests) each process has its own registry.

`--no-metrics` (`disable()`) turns the measuring off where it costs anything: the actors, the journal and the
REST app then skip it (one boolean test per batch or request); `/metrics` still answers, with what was counted.
"""

from __future__ import annotations

import os
from collections.abc import Callable, Sequence
from typing import Any

ENV = "PROMETHEUS_MULTIPROC_DIR"

enabled = True
"""False after `disable()`: nothing measures (the hot paths test this once per batch or request)."""


def disable() -> None:
    global enabled
    enabled = False


from prometheus_client import (  # noqa: E402 (prepare() must be able to run before this import)
    CONTENT_TYPE_LATEST,
    CollectorRegistry,
    Counter,
    Gauge,
    Histogram,
    generate_latest,
    multiprocess,
)

from openbell.core.events import OrderAccepted, OrderRejected, TradeExecuted  # noqa: E402

MULTIPROCESS = ENV in os.environ
"""Whether this process writes its values to the shared directory (decided when prometheus_client loaded)."""

LATENCY_BUCKETS = (0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0)
BATCH_BUCKETS = (1, 2, 4, 8, 16, 32, 64, 128, 256, 512, 1024)

ORDERS = Counter("openbell_orders_total", "Orders accepted, and rejected by result code", ["result"])
TRADES = Counter("openbell_trades_total", "Trades executed", ["market"])
HTTP_LATENCY = Histogram(
    "openbell_http_request_duration_seconds",
    "REST request latency, from the request's arrival to its response, per route",
    ["method", "route"],
    buckets=LATENCY_BUCKETS,
)
BATCH_COMMANDS = Histogram(
    "openbell_engine_batch_commands",
    "Commands per batch: drained by the balance stage, matched by a market",
    ["stage"],
    buckets=BATCH_BUCKETS,
)
QUEUE_DEPTH = Gauge(
    "openbell_engine_queue_depth",
    "Commands waiting in the intake after a drain; messages in a market actor's mailbox after a batch",
    ["queue"],
    multiprocess_mode="livemax",
)
JOURNAL_FSYNC = Histogram(
    "openbell_journal_fsync_seconds", "Time of each group commit's fsync of the journal", buckets=LATENCY_BUCKETS
)
HISTORY_BACKLOG = Gauge(
    "openbell_history_backlog_events",
    "Events handed to the history writer and not yet stored",
    multiprocess_mode="livesum",
)
HISTORY_LAG = Gauge(
    "openbell_history_lag_seconds",
    "At the history writer's last write: how long ago the newest event it stored happened",
    multiprocess_mode="livemax",
)
WS_CONNECTIONS = Gauge("openbell_ws_connections", "Open WebSocket connections", multiprocess_mode="livesum")
WS_SUBSCRIPTIONS = Gauge(
    "openbell_ws_subscriptions", "Stream subscriptions of open WebSocket connections", multiprocess_mode="livesum"
)
WS_SLOW_DROPPED = Counter(
    "openbell_ws_slow_clients_dropped_total", "WebSocket connections closed because their send queue overflowed"
)
REDIS_RECONNECTS = Counter("openbell_redis_reconnects_total", "Connections to Redis made again after a loss", ["process"])


def exposition() -> tuple[bytes, str]:
    """The metrics of every process of the deployment (multiprocess mode) or of this one, and the content type."""
    if MULTIPROCESS:
        registry = CollectorRegistry()
        multiprocess.MultiProcessCollector(registry)
        return generate_latest(registry), CONTENT_TYPE_LATEST
    return generate_latest(), CONTENT_TYPE_LATEST


def process_ended(pid: int) -> None:
    """A process of the deployment ended: its live gauges no longer count (multiprocess mode)."""
    if MULTIPROCESS:
        multiprocess.mark_process_dead(pid)


# --------------------------------------------------------------------------------------------- engine events
class EventCounter:
    """A bus subscriber that counts orders (accepted, rejected by code) and trades per market, one increment per
    label per published batch. Called on the publishing actor's thread; reads event types only."""

    def __init__(self) -> None:
        self._accepted = ORDERS.labels("accepted")
        self._rejected: dict[str, Any] = {}
        self._trades: dict[str, Any] = {}

    def __call__(self, events: Sequence[Any]) -> None:
        if not enabled:
            return
        accepted = 0
        rejected: dict[str, int] | None = None
        trades: dict[str, int] | None = None
        for event in events:
            kind = type(event)
            if kind is OrderAccepted:
                accepted += 1
            elif kind is TradeExecuted:
                if trades is None:
                    trades = {}
                trades[event.market] = trades.get(event.market, 0) + 1
            elif kind is OrderRejected:
                if rejected is None:
                    rejected = {}
                code = event.code.name
                rejected[code] = rejected.get(code, 0) + 1
        if accepted:
            self._accepted.inc(accepted)
        if rejected:
            for code, count in rejected.items():
                child = self._rejected.get(code)
                if child is None:
                    child = self._rejected[code] = ORDERS.labels(code)
                child.inc(count)
        if trades:
            for market, count in trades.items():
                child = self._trades.get(market)
                if child is None:
                    child = self._trades[market] = TRADES.labels(market)
                child.inc(count)


def timed_fsync(fsync: Callable[[int], None], fd: int) -> None:
    """`fsync(fd)`, its duration observed (when metrics are on)."""
    if not enabled:
        fsync(fd)
        return
    from time import perf_counter

    started = perf_counter()
    fsync(fd)
    JOURNAL_FSYNC.observe(perf_counter() - started)
