"""`GET /metrics` (Prometheus text format) and the REST latency histogram per route.

`/metrics` is an operator's scrape endpoint, bound with the rest of the server (by default 127.0.0.1); with
multiprocess mode (`openbell.metrics`) it shows every process of the deployment. The latency of each request is
measured from its arrival (request middleware) to its response (response middleware) and observed once, under
the route's path pattern (`api/v1/depth`, `api/v1/order/<order_id>`...), so the label set is bounded; a request no
route matched counts as `unmatched`.
"""

from __future__ import annotations

from time import perf_counter
from typing import Any

from sanic import Request, Sanic
from sanic.response import BaseHTTPResponse, HTTPResponse, raw

from openbell import metrics


def install_metrics(app: Sanic, *, latency: bool = True) -> None:
    """The `/metrics` route, and (with `latency`) the latency middleware unless metrics are off (`--no-metrics`)."""

    async def scrape(request: Request) -> HTTPResponse:
        body, content_type = metrics.exposition()
        return raw(body, content_type=content_type)

    app.add_route(scrape, "/metrics", methods=["GET"], name="metrics")
    if not (latency and metrics.enabled):
        return
    children: dict[tuple[str, str], Any] = {}
    histogram = metrics.HTTP_LATENCY

    async def answered(request: Request, response: BaseHTTPResponse) -> None:
        began = getattr(request, "arrived", None)  # set by the app's request class when the head arrived
        if began is None:
            return
        route = request.route
        key = (request.method, route.path if route is not None else "unmatched")
        child = children.get(key)
        if child is None:
            child = children[key] = histogram.labels(*key)
        child.observe(perf_counter() - began)

    app.register_middleware(answered, "response")
