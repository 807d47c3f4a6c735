"""`GET /metrics` (Prometheus text format) and the REST latency histogram per route.

`/metrics` is an operator's scrape endpoint, bound with the rest of the server (by default 127.0.0.1); with
multiprocess mode (`openbell.metrics`) it shows every process of the deployment. The latency of each request is
measured from its arrival (the request class stamps it) to its response (response middleware) and tallied once
(`LatencyTally`: written to the histogram every FLUSH_SECONDS and before each scrape), under the route's path
pattern (`api/v1/depth`, `api/v1/order/<order_id>`...), so the label set is bounded; a request no route matched
counts as `unmatched`.
"""

from __future__ import annotations

import asyncio
from bisect import bisect_left
from time import perf_counter
from typing import Any

from sanic import Request, Sanic
from sanic.response import BaseHTTPResponse, HTTPResponse, raw

from openbell import metrics

FLUSH_SECONDS = 0.25
"""How long latency observations may wait in a process before they reach the histogram (and `/metrics`)."""


class LatencyTally:
    """Latency observations added up in this process, and written to the histogram in one go.

    Observing a histogram of prometheus_client's multiprocess mode takes a lock and two writes to a shared file,
    some 4-5 us a request; a tally costs a bisect and two additions, and writes each (method, route)'s buckets
    and sum once per `flush`: FLUSH_SECONDS after the first observation since the last flush, before every
    scrape of this process, and when the server stops. So a scrape of another process may lag by FLUSH_SECONDS.
    """

    def __init__(self, histogram: Any, buckets: tuple[float, ...]) -> None:
        self.histogram = histogram
        self.bounds = (*buckets, float("inf"))
        self.pending: dict[tuple[str, str], list[float]] = {}
        """(method, route) -> observations per bucket, then their sum last."""
        self._children: dict[tuple[str, str], Any] = {}
        self._flush_due: asyncio.TimerHandle | None = None

    def observe(self, key: tuple[str, str], seconds: float) -> None:
        tally = self.pending.get(key)
        if tally is None:
            tally = self.pending[key] = [0.0] * (len(self.bounds) + 1)
        tally[bisect_left(self.bounds, seconds)] += 1  # the first bucket whose bound is >= seconds
        tally[-1] += seconds
        if self._flush_due is None:
            self._flush_due = asyncio.get_running_loop().call_later(FLUSH_SECONDS, self.flush)

    def flush(self) -> None:
        if self._flush_due is not None:
            self._flush_due.cancel()
            self._flush_due = None
        pending, self.pending = self.pending, {}
        for key, tally in pending.items():
            child = self._children.get(key)
            if child is None:
                child = self._children[key] = self.histogram.labels(*key)
            add_to_histogram(child, tally)


def add_to_histogram(child: Any, tally: list[float]) -> None:
    """Add a tally (counts per bucket, then their sum) to a labelled histogram, as that many `observe` calls would.

    prometheus_client has no call for many observations at once; its histogram keeps one value per bucket and
    one for the sum (`_buckets`, `_sum`), which this adds to directly. tests/test_metrics.py checks the result
    against `observe`."""
    *counts, total = tally
    buckets = child._buckets
    for index, count in enumerate(counts):
        if count:
            buckets[index].inc(count)
    child._sum.inc(total)


def install_metrics(app: Sanic, *, latency: bool = True) -> None:
    """The `/metrics` route, and (with `latency`) the latency tally unless metrics are off (`--no-metrics`)."""
    tally = LatencyTally(metrics.HTTP_LATENCY, metrics.LATENCY_BUCKETS) if latency and metrics.enabled else None

    async def scrape(request: Request) -> HTTPResponse:
        if tally is not None:
            tally.flush()
        body, content_type = metrics.exposition()
        return raw(body, content_type=content_type)

    app.add_route(scrape, "/metrics", methods=["GET"], name="metrics")
    if tally is None:
        return
    observe = tally.observe

    async def answered(request: Request, response: BaseHTTPResponse) -> None:
        began = getattr(request, "arrived", None)  # set by the app's request class when the head arrived
        if began is None:
            return
        route = request.route
        observe((request.method, route.path if route is not None else "unmatched"), perf_counter() - began)

    async def flush_at_stop(app: Sanic) -> None:
        tally.flush()

    app.register_middleware(answered, "response")
    app.register_listener(flush_at_stop, "before_server_stop")
