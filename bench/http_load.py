"""HTTP load generator for the REST API: POST /api/v1/order (and some DELETE) over many keep-alive connections.

Against any server that speaks the API, given its base URL:

    .venv/bin/python -m bench.http_load --url http://127.0.0.1:8000 [--connections 64] [--duration 10]
        [--orders N] [--seed S] [--users U] [--prefund] [--rate R] [--warmup W] [--cpu 1]
        [--client raw|httpx] [--json PATH]

The driver that measures the exchange against the HTTP ceiling, in one run:

    .venv/bin/python -m bench.http_load --compare [--runs 3] [--duration 10] [--connections 64]
        [--paced-fraction 0.8] [--no-pin]

What Prometheus metrics cost, the exchange with and without `--no-metrics` alternately in one run:

    .venv/bin/python -m bench.http_load --metrics-cost [--runs 4] [--duration 5]

Workload: `bench.streams.generate(orders, seed)` (a seeded market: mostly resting limits a few ticks from a
drifting mid, about a third crossing the spread, about a tenth cancels of live orders). Every order goes
out as a plain limit order, a body exactly like
`{"market":"TATA_INR","price":"100.05","quantity":"3","side":"buy","user_id":"17"}` (user "u017" of
the stream is "17"): crossing limits keep their aggressive price (IOC ones become GTC, so a remainder
may rest), and market orders become limits 20 ticks through the last price the stream used. A cancel is
a DELETE /api/v1/order `{"market","orderId","user_id"}` of the id the server returned for the stream's
order; it is skipped (and counted) when that order's reply has not come back yet or said it is done.

`--prefund` first credits every user through POST /api/v1/onramp (1e9 of the quote asset, 1e7 of the
base asset, one txnId per run), so that no order is refused for funds.

Client: one asyncio `Protocol` per connection that writes hand-made HTTP/1.1 requests and parses the
responses itself (Content-Length or chunked), on uvloop if installed: about 15-20 us of client CPU per
request. `--client httpx` uses httpx.AsyncClient with an HTTP/1.1 pool instead, for comparison. A
watchdog aborts a connection whose request waits more than `--timeout` seconds (counted as an error,
then the connection is reopened). The report gives the client's own CPU use: near 100% means the
client, not the server, limits the run.

Measurement: closed loop by default (each connection sends its next request when the previous answer
arrives); requests that complete during the first `--warmup` seconds are not counted. With `--rate R`,
requests are scheduled at R per second (open loop over the same connections) and latency is counted
from each request's scheduled time, so queueing behind a busy server is not hidden.

`--compare` pins itself to the last core and starts each server with `taskset -c 0` (when there are at
least two cores and taskset is found), then for each run: starts the ceiling
(`bench.http_ceiling_server`), measures it, stops it; starts the exchange (`python run.py --port P
--log-level warning --max-open-orders 100000`, plus a fresh `--data-dir` per run when
run.py has that option, plus `--exchange-args`), prefunds, measures it at saturation,
then (unless `--paced-fraction 0`) paced at that fraction of the throughput it just reached, and stops
it. It reports medians over runs and exchange / ceiling. Every wait is bounded, servers are always
stopped.
"""

from __future__ import annotations

import argparse
import asyncio
import itertools
import json
import math
import os
import re
import shutil
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import time
import urllib.error
import urllib.parse
import urllib.request
from collections import Counter
from collections.abc import Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
PLACE = 0
CANCEL = 1
MARKET_ORDER_TICKS = 20
"""How far through the last stream price a market order of the stream is sent as a limit."""
QUOTE_FUNDS = "1000000000"
BASE_FUNDS = "10000000"
TARGET_RATIO = 0.60
TARGET_P99_MS = 10.0

_ORDER_ID = re.compile(rb'"orderId"\s*:\s*"?([0-9]+)')
_STATUS = re.compile(rb'"status"\s*:\s*"([A-Za-z_]+)"')
_DONE = (b"FILLED", b"CANCELED", b"REJECTED", b"EXPIRED")


# --------------------------------------------------------------------------- workload
@dataclass
class Workload:
    """Items in stream order: (PLACE, body, seq, user_id) or (CANCEL, b"", target seq, user_id)."""

    market: str
    items: list[tuple[int, bytes, int, str]]
    users: list[str]
    api: str = "v1"
    """"v1": JSON bodies with user_id; "v3": Binance's form bodies, the user in X-MBX-APIKEY (its items' 4th
    field is the user for orders too), for a client whose prefix is /api/v3."""


def build_workload(orders: int, seed: int, users: int, market: str, api: str = "v1") -> Workload:
    from bench import streams

    if api == "v3":
        return build_binance_workload(orders, seed, users, market)

    mix = streams.StreamMix(users=users)
    items: list[tuple[int, bytes, int, str]] = []
    last_price = mix.start_mid
    head = b'{"market":"' + market.encode() + b'","price":"'
    for item in streams.generate(orders, seed, mix):
        user = str(int(item.user_id[1:]))
        if isinstance(item, streams.Cancel):
            items.append((CANCEL, b"", item.order_id, user))
            continue
        buy = item.side is streams.BUY
        if item.price is None:
            price = last_price + MARKET_ORDER_TICKS if buy else max(1, last_price - MARKET_ORDER_TICKS)
        else:
            price = last_price = item.price
        body = b"".join(
            (
                head,
                f'{price // 100}.{price % 100:02d}","quantity":"{item.quantity}","side":"'.encode(),
                b"buy" if buy else b"sell",
                f'","user_id":"{user}"}}'.encode(),
            )
        )
        items.append((PLACE, body, item.seq, user))
    return Workload(market, items, [str(n) for n in range(1, users + 1)])


def build_binance_workload(orders: int, seed: int, users: int, market: str) -> Workload:
    """The same stream as Binance order forms (what ccxt sends for a limit order), for POST /api/v3/order."""
    from bench import streams

    mix = streams.StreamMix(users=users)
    items: list[tuple[int, bytes, int, str]] = []
    last_price = mix.start_mid
    symbol = market.replace("_", "")
    timestamp = time.time_ns() // 1_000_000
    for item in streams.generate(orders, seed, mix):
        user = str(int(item.user_id[1:]))
        if isinstance(item, streams.Cancel):
            items.append((CANCEL, b"", item.order_id, user))
            continue
        buy = item.side is streams.BUY
        if item.price is None:
            price = last_price + MARKET_ORDER_TICKS if buy else max(1, last_price - MARKET_ORDER_TICKS)
        else:
            price = last_price = item.price
        body = (
            f"timestamp={timestamp}&symbol={symbol}&side={'BUY' if buy else 'SELL'}&newOrderRespType=FULL"
            f"&type=LIMIT&quantity={item.quantity}&price={price // 100}.{price % 100:02d}&timeInForce=GTC"
            f"&recvWindow=10000"
        ).encode()
        items.append((PLACE, body, item.seq, user))
    return Workload(market, items, [str(n) for n in range(1, users + 1)], api="v3")


JSON_HEAD = b"Content-Type: application/json\r\n"
FORM_HEAD = b"Content-Type: application/x-www-form-urlencoded\r\n"


# --------------------------------------------------------------------------- raw HTTP/1.1 client
class RawConnection(asyncio.Protocol):
    """One keep-alive HTTP/1.1 connection; one request in flight at a time."""

    def __init__(self, host_header: bytes) -> None:
        self.host_header = host_header
        self.transport: asyncio.Transport | None = None
        self.buffer = bytearray()
        self.waiter: asyncio.Future[tuple[int, bytes]] | None = None
        self.sent_at = 0.0
        self.need = -1
        self.status = 0
        self.body_start = 0
        self.chunked = False
        self.close_after = False
        self.lost = False

    # protocol callbacks
    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = transport  # type: ignore[assignment]

    def data_received(self, data: bytes) -> None:
        self.buffer += data
        if self.waiter is not None:
            self._parse()

    def connection_lost(self, exc: Exception | None) -> None:
        self.lost = True
        waiter = self.waiter
        if waiter is not None and not waiter.done():
            self.waiter = None
            waiter.set_exception(ConnectionError(str(exc) if exc else "connection closed by the server"))

    def _parse(self) -> None:
        buf = self.buffer
        if self.need < 0:
            end = buf.find(b"\r\n\r\n")
            if end < 0:
                return
            self.status = int(buf[9:12])
            head = bytes(buf[:end]).lower()
            self.body_start = end + 4
            self.close_after = b"\r\nconnection: close" in head
            j = head.find(b"\r\ncontent-length:")
            if j >= 0:
                k = head.find(b"\r\n", j + 2)
                self.need = end + 4 + int(head[j + 17 : k if k >= 0 else end])
                self.chunked = False
            elif b"\r\ntransfer-encoding: chunked" in head:
                self.chunked = True
                self.need = 0
            else:
                self.need = end + 4
                self.chunked = False
        if self.chunked:
            body = self._dechunk()
            if body is None:
                return
        else:
            if len(buf) < self.need:
                return
            body = bytes(buf[self.body_start : self.need])
            del buf[: self.need]
        self.need = -1
        waiter = self.waiter
        self.waiter = None
        if waiter is not None and not waiter.done():
            waiter.set_result((self.status, body))
        if self.close_after and self.transport is not None:
            self.transport.close()

    def _dechunk(self) -> bytes | None:
        buf = self.buffer
        pos = self.body_start
        parts = []
        while True:
            eol = buf.find(b"\r\n", pos)
            if eol < 0:
                return None
            size = int(bytes(buf[pos:eol]).split(b";")[0], 16)
            if size == 0:
                trailer_end = buf.find(b"\r\n\r\n", eol)
                if trailer_end < 0:
                    return None
                del buf[: trailer_end + 4]
                return b"".join(parts)
            if len(buf) < eol + 2 + size + 2:
                return None
            parts.append(bytes(buf[eol + 2 : eol + 2 + size]))
            pos = eol + 2 + size + 2

    # use
    def request(
        self, method: bytes, path: bytes, body: bytes, head: bytes = JSON_HEAD
    ) -> asyncio.Future[tuple[int, bytes]]:
        if self.lost or self.transport is None:
            raise ConnectionError("connection is closed")
        loop = asyncio.get_running_loop()
        self.waiter = waiter = loop.create_future()
        self.sent_at = time.perf_counter()
        self.transport.write(
            b"%s %s HTTP/1.1\r\nHost: %s\r\n%sContent-Length: %d\r\n\r\n%s"
            % (method, path, self.host_header, head, len(body), body)
        )
        return waiter

    def abort(self) -> None:
        if self.transport is not None:
            self.transport.abort()

    def close(self) -> None:
        if self.transport is not None:
            self.transport.close()


class RawClient:
    """Raw HTTP/1.1. With `signers` (user -> `openbell.client.Signer`), each request that names a user is signed
    as that user (Binance's rule: timestamp and signature in the query, the key in X-MBX-APIKEY); with
    `admin_token`, operator routes (onramp, admin/) carry it."""

    def __init__(
        self, host: str, port: int, prefix: str, signers: dict[str, Any] | None = None, admin_token: str | None = None
    ) -> None:
        self.host = host
        self.port = port
        self.prefix = prefix.rstrip("/").encode()
        self.host_header = f"{host}:{port}".encode()
        self.signers = signers
        self.admin = b"Authorization: Bearer %s\r\n" % admin_token.encode() if admin_token else b""

    async def connect(self) -> RawConnection:
        loop = asyncio.get_running_loop()
        _, protocol = await asyncio.wait_for(
            loop.create_connection(lambda: RawConnection(self.host_header), self.host, self.port), 10
        )
        return protocol

    async def send(
        self,
        conn: RawConnection,
        method: bytes,
        path: bytes,
        body: bytes,
        head: bytes = JSON_HEAD,
        user: str = "",
    ) -> tuple[int, bytes]:
        signers = self.signers
        if signers is not None and user:
            signer = signers[user]
            query = signer.signed_query(b"", body)
            signed_head = head + b"X-MBX-APIKEY: %s\r\n" % signer.api_key.encode()
            return await conn.request(method, self.prefix + path + b"?" + query, body, signed_head)
        if path == b"/onramp" or path.startswith(b"/admin/"):
            return await conn.request(method, self.prefix + path, body, head + self.admin)
        return await conn.request(method, self.prefix + path, body, head)


class HttpxConnection:
    """A stand-in 'connection' for the httpx client: the pool below does the real work."""

    sent_at = 0.0
    lost = False
    waiter = None

    def abort(self) -> None:
        pass

    def close(self) -> None:
        pass


class HttpxClient:
    def __init__(self, base_url: str, connections: int, timeout: float) -> None:
        import httpx

        self.base = base_url.rstrip("/")
        self.client = httpx.AsyncClient(
            http2=False,
            timeout=timeout,
            limits=httpx.Limits(max_connections=connections, max_keepalive_connections=connections),
        )
        self.headers = {"content-type": "application/json"}

    async def connect(self) -> HttpxConnection:
        return HttpxConnection()

    async def send(self, conn: Any, method: bytes, path: bytes, body: bytes, user: str = "") -> tuple[int, bytes]:
        try:
            response = await self.client.request(
                method.decode(), self.base + path.decode(), content=body, headers=self.headers
            )
        except Exception as error:  # httpx errors -> the same handling as a lost raw connection
            raise ConnectionError(f"{type(error).__name__}: {error}") from None
        return response.status_code, response.content


# --------------------------------------------------------------------------- load
@dataclass
class Result:
    label: str
    requests: int = 0
    """Requests completed in the measured window (after warmup)."""
    seconds: float = 0.0
    throughput: float = 0.0
    """Completed requests (orders and cancels) per second in the measured window."""
    orders_per_second: float = 0.0
    """POST /order completed per second in the measured window."""
    p50_ms: float = 0.0
    p99_ms: float = 0.0
    p999_ms: float = 0.0
    max_ms: float = 0.0
    statuses: dict[str, int] = field(default_factory=dict)
    """'POST 200' -> count over the whole run (warmup included)."""
    errors: dict[str, int] = field(default_factory=dict)
    cancels_skipped: int = 0
    client_cpu_percent: float = 0.0
    server_cpu_percent: float | None = None
    """CPU the server process (all its threads) used in the measured window, % of one core."""
    requests_per_server_cpu_second: float | None = None
    """Requests completed per second of server CPU: the server's cost, robust to other load on the machine."""
    role_cpu_us_per_request: dict[str, float] = field(default_factory=dict)
    """Per `--role-pid` process tree: its CPU (all processes, all threads) per completed request, in the
    measured window."""
    rate: float | None = None
    stream_items_used: int = 0
    stream_exhausted: bool = False


def process_cpu(pid: int | None) -> float | None:
    """User + system CPU seconds of process `pid` (all threads) from /proc, or None."""
    if not pid:
        return None
    try:
        fields = Path(f"/proc/{pid}/stat").read_text().rpartition(")")[2].split()
    except OSError:
        return None
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def tree_cpu(pid: int) -> float:
    """CPU seconds of process `pid` and every process descending from it (e.g. Sanic's worker processes)."""
    children: dict[int, list[int]] = {}
    for stat in Path("/proc").glob("[0-9]*/stat"):
        try:
            fields = stat.read_text().rpartition(")")[2].split()
        except OSError:
            continue
        children.setdefault(int(fields[1]), []).append(int(stat.parent.name))
    total, pending = 0.0, [pid]
    while pending:
        current = pending.pop()
        total += process_cpu(current) or 0.0
        pending.extend(children.get(current, ()))
    return total


def percentile(sorted_values: Sequence[float], fraction: float) -> float:
    if not sorted_values:
        return 0.0
    index = min(len(sorted_values) - 1, max(0, math.ceil(fraction * len(sorted_values)) - 1))
    return sorted_values[index]


@dataclass
class LoadState:
    """What survives between phases against one server: where the stream stands and the ids it got."""

    position: int = 0
    ids: dict[int, str] = field(default_factory=dict)


async def run_load(
    client: Any,
    workload: Workload,
    *,
    connections: int,
    duration: float,
    warmup: float,
    rate: float | None,
    timeout: float,
    label: str,
    state: LoadState | None = None,
    server_pid: int | None = None,
    roles: dict[str, int] | None = None,
) -> Result:
    state = state or LoadState()
    roles = roles or {}
    role_cpu: list[tuple[float, dict[str, float]]] = []
    items = workload.items
    total = len(items)
    ids = state.ids
    market = workload.market.encode()
    binance = workload.api == "v3"
    symbol = market.replace(b"_", b"")
    conns = [await client.connect() for _ in range(connections)]
    statuses: Counter[str] = Counter()
    errors: Counter[str] = Counter()
    latencies: list[float] = []
    skipped = 0
    last_end = 0.0
    counter = itertools.count(state.position)
    start_index = state.position
    used = [state.position]
    cpu0 = time.process_time()
    t0 = time.perf_counter()
    measure_from = t0 + warmup
    deadline = measure_from + duration
    done = False

    async def worker(slot: int) -> None:
        nonlocal skipped, last_end
        conn = conns[slot]
        send = client.send
        perf = time.perf_counter
        while not done:
            i = next(counter)
            if i >= total:
                return
            used[0] = max(used[0], i + 1)
            now = perf()
            if rate:
                scheduled = t0 + (i - start_index) / rate
                if scheduled >= deadline:
                    return
                if scheduled > now:
                    await asyncio.sleep(scheduled - now)
                begin = scheduled
            else:
                if now >= deadline:
                    return
                begin = now
            kind, body, seq, user = items[i]
            head = JSON_HEAD
            if kind == PLACE:
                method, path = b"POST", b"/order"
                if binance:
                    head = FORM_HEAD + b"X-MBX-APIKEY: %s\r\n" % user.encode()
            else:
                order_id = ids.pop(seq, None)
                if order_id is None:
                    skipped += 1
                    continue
                method, path = b"DELETE", b"/order"
                if binance:
                    head = b"X-MBX-APIKEY: %s\r\n" % user.encode()
                    path = b"/order?symbol=%s&orderId=%s&timestamp=%d" % (
                        symbol,
                        order_id.encode(),
                        time.time_ns() // 10**6,
                    )
                    body = b""
                else:
                    body = b'{"market":"%s","orderId":"%s","user_id":"%s"}' % (market, order_id.encode(), user.encode())
            try:
                status, reply = await (
                    send(conn, method, path, body, head) if binance else send(conn, method, path, body, user=user)
                )
            except (ConnectionError, OSError) as error:
                errors[f"{method.decode()} {type(error).__name__}"] += 1
                conn.close()
                try:
                    conn = conns[slot] = await client.connect()
                except (OSError, TimeoutError) as reconnect_error:
                    errors[f"connect {type(reconnect_error).__name__}"] += 1
                    await asyncio.sleep(0.1)
                continue
            end = perf()
            statuses[f"{method.decode()} {status}"] += 1
            if kind == PLACE and status < 300:
                match = _ORDER_ID.search(reply)
                if match is not None:
                    status_match = _STATUS.search(reply)
                    if status_match is None or status_match.group(1) not in _DONE:
                        ids[seq] = match.group(1).decode()
            if end >= measure_from:
                latencies.append(end - begin)
                last_end = end

    async def watchdog() -> None:
        while not done:
            await asyncio.sleep(0.25)
            now = time.perf_counter()
            for conn in conns:
                if conn.waiter is not None and now - conn.sent_at > timeout:
                    conn.abort()

    server_cpu: list[tuple[float, float]] = []

    async def cpu_probe() -> None:
        await asyncio.sleep(max(0.0, measure_from - time.perf_counter()))
        sample = process_cpu(server_pid)
        if sample is not None:
            server_cpu.append((time.perf_counter(), sample))
        if roles:
            role_cpu.append((time.perf_counter(), {name: tree_cpu(pid) for name, pid in roles.items()}))

    dog = asyncio.create_task(watchdog())
    probe = asyncio.create_task(cpu_probe()) if server_pid or roles else None
    try:
        await asyncio.wait_for(
            asyncio.gather(*(worker(slot) for slot in range(connections))), warmup + duration + timeout + 5
        )
    except TimeoutError:
        errors["run TimeoutError"] += 1
    finally:
        done = True
        dog.cancel()
        if probe is not None:
            probe.cancel()
        sample = process_cpu(server_pid) if server_cpu else None
        if sample is not None:
            server_cpu.append((time.perf_counter(), sample))
        if role_cpu:
            role_cpu.append((time.perf_counter(), {name: tree_cpu(pid) for name, pid in roles.items()}))
        for conn in conns:
            conn.close()
    cpu = time.process_time() - cpu0
    wall = time.perf_counter() - t0
    state.position = used[0]
    latencies.sort()
    seconds = max(1e-9, last_end - measure_from) if latencies else 0.0
    posts_measured = 0
    # orders among measured requests: scale the measured count by the POST share of the whole run
    posts = sum(v for k, v in statuses.items() if k.startswith("POST"))
    everything = sum(statuses.values())
    if everything:
        posts_measured = len(latencies) * posts / everything
    server_percent = per_cpu_second = None
    if len(server_cpu) == 2 and server_cpu[1][1] > server_cpu[0][1]:
        (ta, ca), (tb, cb) = server_cpu
        server_percent = round(100 * (cb - ca) / (tb - ta), 1)
        per_cpu_second = round(len(latencies) / (cb - ca), 1)
    role_us: dict[str, float] = {}
    if len(role_cpu) == 2 and latencies:
        before, after = role_cpu[0][1], role_cpu[1][1]
        role_us = {name: round((after[name] - before[name]) / len(latencies) * 1e6, 1) for name in roles}
    return Result(
        label=label,
        requests=len(latencies),
        seconds=round(seconds, 3),
        throughput=round(len(latencies) / seconds, 1) if seconds else 0.0,
        orders_per_second=round(posts_measured / seconds, 1) if seconds else 0.0,
        p50_ms=round(percentile(latencies, 0.50) * 1000, 3),
        p99_ms=round(percentile(latencies, 0.99) * 1000, 3),
        p999_ms=round(percentile(latencies, 0.999) * 1000, 3),
        max_ms=round(latencies[-1] * 1000, 3) if latencies else 0.0,
        statuses=dict(sorted(statuses.items())),
        errors=dict(sorted(errors.items())),
        cancels_skipped=skipped,
        client_cpu_percent=round(100 * cpu / wall, 1) if wall else 0.0,
        server_cpu_percent=server_percent,
        requests_per_server_cpu_second=per_cpu_second,
        role_cpu_us_per_request=role_us,
        rate=rate,
        stream_items_used=state.position - start_index,
        stream_exhausted=state.position >= total,
    )


async def prefund(client: Any, workload: Workload, connections: int, timeout: float) -> dict[str, int]:
    """Credit every user with both assets of the market through POST /onramp; returns statuses."""
    base, _, quote = workload.market.partition("_")
    nonce = f"{os.getpid()}.{time.time_ns()}"
    jobs = [
        (user, asset, amount) for user in workload.users for asset, amount in ((quote, QUOTE_FUNDS), (base, BASE_FUNDS))
    ]
    statuses: Counter[str] = Counter()
    queue = iter(jobs)

    async def worker() -> None:
        conn = await client.connect()
        try:
            for user, asset, amount in queue:
                body = json.dumps(
                    {"user_id": user, "asset": asset, "amount": amount, "txnId": f"bench.{nonce}.{user}.{asset}"},
                    separators=(",", ":"),
                ).encode()
                try:
                    status, _ = await asyncio.wait_for(client.send(conn, b"POST", b"/onramp", body), timeout)
                    statuses[f"onramp {status}"] += 1
                except (ConnectionError, OSError, TimeoutError) as error:
                    statuses[f"onramp {type(error).__name__}"] += 1
                    conn.close()
                    conn = await client.connect()
        finally:
            conn.close()

    await asyncio.gather(*(worker() for _ in range(min(connections, 16))))
    return dict(statuses)


def make_client(
    kind: str, url: str, connections: int, timeout: float, signers: dict[str, Any] | None = None, admin: str = ""
) -> Any:
    parts = urllib.parse.urlsplit(url)
    if parts.scheme != "http" or not parts.hostname:
        raise SystemExit(f"--url must be http://host:port[/prefix], got {url!r}")
    prefix = (parts.path.rstrip("/") or "") + "/api/v1"
    if kind == "httpx":
        if signers is not None:
            raise SystemExit("--sign needs the raw client")
        return HttpxClient(f"http://{parts.hostname}:{parts.port or 80}{prefix}", connections, timeout)
    return RawClient(parts.hostname, parts.port or 80, prefix, signers, admin or None)


def make_keys(url: str, users: list[str], admin_token: str) -> dict[str, Any]:
    """A signer per user, with a key made through the operator's route (before the measured phases)."""
    from openbell.client import Client, Signer

    signers: dict[str, Any] = {}
    with Client(url, admin_token=admin_token) as operator:
        for user in users:
            key = operator.create_key(user)
            signers[user] = Signer(key["apiKey"], key["secret"])
    return signers


def install_loop() -> str:
    try:
        import uvloop
    except ImportError:
        return "asyncio"
    asyncio.set_event_loop_policy(uvloop.EventLoopPolicy())
    return "uvloop"


def measure(
    args: argparse.Namespace,
    url: str,
    workload: Workload,
    *,
    do_prefund: bool,
    paced: float = 0.0,
    server_pid: int | None = None,
    roles: dict[str, int] | None = None,
) -> list:
    """One server: optional prefund, one saturated phase (or paced at --rate), optional paced phase."""

    signers = None
    admin_token = getattr(args, "admin_token", None) or os.environ.get("OPENBELL_ADMIN_TOKEN", "")
    if getattr(args, "sign", False):
        signers = make_keys(url, workload.users, admin_token)

    async def go() -> list:
        client = make_client(args.client, url, args.connections, args.timeout, signers, admin_token)
        out: list[Any] = []
        if do_prefund:
            out.append(await prefund(client, workload, args.connections, args.timeout))
        else:
            out.append({})
        state = LoadState()
        first = await run_load(
            client,
            workload,
            connections=args.connections,
            duration=args.duration,
            warmup=args.warmup,
            rate=args.rate,
            timeout=args.timeout,
            label="rate" if args.rate else "saturated",
            state=state,
            server_pid=server_pid,
            roles=roles,
        )
        out.append(first)
        if paced and first.throughput > 0:
            out.append(
                await run_load(
                    client,
                    workload,
                    connections=args.connections,
                    duration=args.duration,
                    warmup=args.warmup,
                    rate=round(first.throughput * paced, 1),
                    timeout=args.timeout,
                    label=f"paced {paced:g}x",
                    state=state,
                    server_pid=server_pid,
                )
            )
        if isinstance(client, HttpxClient):
            await client.client.aclose()
        return out

    return asyncio.run(go())


def show(result: Result) -> str:
    rate = f" at {result.rate:.0f}/s" if result.rate else ""
    lines = [
        f"  {result.label}{rate}: {result.orders_per_second:,.0f} orders/s ({result.throughput:,.0f} requests/s, "
        f"{result.requests} in {result.seconds:.2f} s), latency ms p50 {result.p50_ms:.2f} p99 {result.p99_ms:.2f} "
        f"p99.9 {result.p999_ms:.2f} max {result.max_ms:.2f}, client CPU {result.client_cpu_percent:.0f}%"
        + (
            f", server CPU {result.server_cpu_percent:.0f}% ({result.requests_per_server_cpu_second:,.0f} "
            "requests per server CPU-second)"
            if result.server_cpu_percent is not None
            else ""
        ),
        f"    statuses {result.statuses}  errors {result.errors or '{}'}  cancels skipped {result.cancels_skipped}"
        + ("  (stream exhausted)" if result.stream_exhausted else ""),
    ]
    if result.role_cpu_us_per_request:
        roles = ", ".join(f"{name} {us:.0f}" for name, us in result.role_cpu_us_per_request.items())
        lines.append(f"    CPU us per request: {roles}")
    return "\n".join(lines)


# --------------------------------------------------------------------------- servers (compare mode)
def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


class Server:
    def __init__(
        self, name: str, argv: list[str], port: int, log_dir: Path, cpus: str | None, env: dict[str, str] | None = None
    ) -> None:
        self.name = name
        self.port = port
        self.log_path = log_dir / f"{name}-{port}.log"
        prefix = ["taskset", "-c", cpus] if cpus else []
        self.log_file = self.log_path.open("wb")
        self.process = subprocess.Popen(
            [*prefix, *argv],
            cwd=ROOT,
            stdout=self.log_file,
            stderr=subprocess.STDOUT,
            env={**os.environ, "PYTHONUNBUFFERED": "1", **(env or {})},
        )

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def wait_ready(self, timeout: float = 30.0) -> None:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                raise RuntimeError(f"{self.name} exited with {self.process.returncode}:\n{self.log_tail()}")
            try:
                with urllib.request.urlopen(f"{self.url}/api/v1/health", timeout=1) as response:
                    if response.status == 200:
                        return
            except (urllib.error.URLError, ConnectionError, TimeoutError):
                pass
            time.sleep(0.1)
        raise RuntimeError(f"{self.name} did not answer /api/v1/health in {timeout}s:\n{self.log_tail()}")

    def log_tail(self, lines: int = 30) -> str:
        try:
            return "\n".join(self.log_path.read_text(errors="replace").splitlines()[-lines:])
        except OSError:
            return ""

    def stop(self) -> None:
        if self.process.poll() is None:
            self.process.send_signal(signal.SIGINT)
            try:
                self.process.wait(10)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait(5)
        self.log_file.close()


def cpu_plan(no_pin: bool) -> tuple[str | None, set[int] | None]:
    """(server cores for taskset, client cores) or (None, None) when not pinning."""
    cores = sorted(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else []
    if no_pin or len(cores) < 2 or shutil.which("taskset") is None:
        return None, None
    return ",".join(str(c) for c in cores[:-1]), {cores[-1]}


def median_of(results: list[Result], name: str) -> float:
    return round(statistics.median(getattr(r, name) for r in results), 3)


def compare(args: argparse.Namespace) -> int:
    server_cpus, client_cpus = cpu_plan(args.no_pin)
    if client_cpus:
        os.sched_setaffinity(0, client_cpus)
    started = time.monotonic()
    workload = build_workload(args.orders, args.seed, args.users, args.market)
    print(
        f"stream: {len(workload.items)} items (seed {args.seed}, {args.users} users) built in "
        f"{time.monotonic() - started:.1f} s; client {args.client} on {install_loop()}, "
        f"{args.connections} connections, {args.warmup:g} s warmup + {args.duration:g} s per phase; "
        f"servers on cores {server_cpus or 'any'}, client on {sorted(client_cpus) if client_cpus else 'any'}; "
        f"load average {' '.join(f'{x:.2f}' for x in os.getloadavg())}",
        flush=True,
    )
    ceilings: list[Result] = []
    exchanges: list[Result] = []
    paced: list[Result] = []
    log_dir = Path(tempfile.mkdtemp(prefix="http_load_"))
    python = sys.executable
    help_text = subprocess.run(
        [python, "run.py", "--help"], cwd=ROOT, capture_output=True, text=True, timeout=60
    ).stdout
    data_dir_option = "--data-dir" in help_text and "--in-memory" not in args.exchange_args.split()
    # this driver sends unsigned requests that name their user: the exchange runs in dev mode where it has one
    dev_option = ["--dev"] if "--dev" in help_text else []
    # and with the rate limits set never to refuse the load (every connection comes from one address)
    dev_option += NO_LIMITS if "--orders-per-address" in help_text else []
    for run in range(1, args.runs + 1):
        for name in ("ceiling", "exchange"):
            port = free_port()
            if name == "ceiling":
                argv = [python, "-m", "bench.http_ceiling_server", "--port", str(port)]
                if args.bare_ceiling:
                    argv.append("--bare")
            else:
                argv = [python, "run.py", "--host", "127.0.0.1", "--port", str(port), "--log-level", "warning"]
                argv += ["--max-open-orders", "100000", *dev_option]
                if data_dir_option:
                    argv += ["--data-dir", tempfile.mkdtemp(prefix=f"exchange-run{run}-", dir=log_dir)]
                argv += args.exchange_args.split()
            server = Server(name, argv, port, log_dir, server_cpus)
            try:
                server.wait_ready()
                if args.profile_exchange and name == "exchange":
                    profile_process(server.process.pid, log_dir, run, args.warmup + args.duration)
                out = measure(
                    args,
                    server.url,
                    workload,
                    do_prefund=name == "exchange",
                    paced=args.paced_fraction if name == "exchange" else 0.0,
                    server_pid=server.process.pid,
                )
            finally:
                server.stop()
            funded, *results = out
            command = " ".join(Path(argv[0]).name if i == 0 else part for i, part in enumerate(argv))
            print(f"run {run} {name}: {command}" + (f"; prefund {funded}" if funded else ""), flush=True)
            for result in results:
                print(show(result), flush=True)
            if name == "ceiling":
                ceilings.append(results[0])
            else:
                exchanges.append(results[0])
                if len(results) > 1:
                    paced.append(results[1])
    keys = ("orders_per_second", "throughput", "p50_ms", "p99_ms", "p999_ms")
    summary: dict[str, Any] = {
        "ceiling": {k: median_of(ceilings, k) for k in keys},
        "exchange": {k: median_of(exchanges, k) for k in keys},
    }
    if paced:
        summary["paced"] = {k: median_of(paced, k) for k in ("rate", *keys)}
    for key, results in (("ceiling", ceilings), ("exchange", exchanges), ("paced", paced)):
        cpu = [r for r in results if r.requests_per_server_cpu_second]
        if cpu:
            summary[key]["server_cpu_percent"] = median_of(cpu, "server_cpu_percent")
            summary[key]["requests_per_server_cpu_second"] = median_of(cpu, "requests_per_server_cpu_second")
    ratio = summary["exchange"]["orders_per_second"] / summary["ceiling"]["orders_per_second"]
    summary["ratio"] = round(ratio, 3)
    cpu_ratio = None
    if (
        "requests_per_server_cpu_second" in summary["ceiling"]
        and "requests_per_server_cpu_second" in summary["exchange"]
    ):
        cpu_ratio = (
            summary["exchange"]["requests_per_server_cpu_second"] / summary["ceiling"]["requests_per_server_cpu_second"]
        )
        summary["ratio_per_server_cpu_second"] = round(cpu_ratio, 3)
    print(f"\nmedians over {args.runs} runs ({time.monotonic() - started:.0f} s in all):")
    for key in ("ceiling", "exchange", "paced"):
        if key in summary:
            s = summary[key]
            rate = f" (paced at {s['rate']:,.0f} requests/s)" if "rate" in s else ""
            cpu_text = (
                f"  server CPU {s['server_cpu_percent']:.0f}%, {s['requests_per_server_cpu_second']:,.0f} requests/CPU-s"
                if "server_cpu_percent" in s
                else ""
            )
            print(
                f"  {key:8} {s['orders_per_second']:>9,.0f} orders/s ({s['throughput']:,.0f} requests/s){rate}  "
                f"p50 {s['p50_ms']:.2f} ms  p99 {s['p99_ms']:.2f} ms  p99.9 {s['p999_ms']:.2f} ms{cpu_text}"
            )
    p99 = summary.get("paced", summary["exchange"])["p99_ms"]
    print(
        f"  exchange / ceiling = {ratio:.1%} by orders/s"
        + (f", {cpu_ratio:.1%} by requests per server CPU-second" if cpu_ratio is not None else "")
        + f" (target {TARGET_RATIO:.0%}); exchange p99 {p99:.2f} ms"
        + (" paced" if "paced" in summary else " at saturation")
        + f" (target {TARGET_P99_MS:g} ms: {'met' if p99 < TARGET_P99_MS else 'MISSED'})"
    )
    print(f"  server logs in {log_dir}")
    if args.json:
        Path(args.json).write_text(
            json.dumps(
                {
                    "summary": summary,
                    "ceiling": [asdict(r) for r in ceilings],
                    "exchange": [asdict(r) for r in exchanges],
                    "paced": [asdict(r) for r in paced],
                    "args": vars(args),
                },
                indent=2,
            )
        )
    return 0


def alternate(
    args: argparse.Namespace, what: str, variants: dict[str, tuple[list[str], dict[str, str] | None, argparse.Namespace]],
    *, flip: bool = False,
) -> dict[str, list[Result]]:
    """Each of `variants` (name -> extra run.py arguments, environment, measuring arguments) on a fresh server,
    one after the other, --runs times (in reverse order every other run with `flip`), all at saturation against
    the same seeded stream: the A/B loop of the comparisons below."""
    server_cpus, client_cpus = cpu_plan(args.no_pin)
    if client_cpus:
        os.sched_setaffinity(0, client_cpus)
    workload = build_workload(args.orders, args.seed, args.users, args.market)
    print(
        f"{what}: {args.runs} run(s) of each; stream {len(workload.items)} items ({args.users} users), client raw on "
        f"{install_loop()}, {args.connections} connections, {args.warmup:g} s warmup + {args.duration:g} s; servers "
        f"on cores {server_cpus or 'any'}, client on {sorted(client_cpus) if client_cpus else 'any'}; load average "
        f"{' '.join(f'{x:.2f}' for x in os.getloadavg())}; {os.cpu_count()} cores",
        flush=True,
    )
    log_dir = Path(tempfile.mkdtemp(prefix="http_load_ab_"))
    results: dict[str, list[Result]] = {name: [] for name in variants}
    for run in range(1, args.runs + 1):
        names = list(variants)
        if flip and run % 2 == 0:
            names.reverse()
        for name in names:
            extra, env, run_args = variants[name]
            port = free_port()
            argv = [sys.executable, "run.py", "--host", "127.0.0.1", "--port", str(port), "--log-level", "warning"]
            argv += ["--max-open-orders", "100000", *NO_LIMITS, *extra, *args.exchange_args.split()]
            if "--in-memory" not in argv:
                argv += ["--data-dir", tempfile.mkdtemp(prefix=f"{name}-{run}-", dir=log_dir)]  # a fresh one each
            server = Server(f"{name}{run}", argv, port, log_dir, server_cpus, env)
            try:
                server.wait_ready()
                funded, result = measure(run_args, server.url, workload, do_prefund=True, server_pid=server.process.pid)
            finally:
                server.stop()
            print(f"run {run} {name}: prefund {funded}\n{show(result)}", flush=True)
            results[name].append(result)
    return results


def metrics_cost(args: argparse.Namespace) -> int:
    """The exchange with metrics (the default) and with `--no-metrics`, alternately in each run (on, off; then
    off, on; ...), at saturation: medians of orders/s and of requests per server CPU-second, and the cost."""
    results = alternate(
        args, "metrics on vs off", {"on": (["--dev"], None, args), "off": (["--dev", "--no-metrics"], None, args)}, flip=True
    )
    on, off = results["on"], results["off"]
    print(f"\nmedians over {args.runs} runs:")
    for name, found in (("on", on), ("off", off)):
        cpu = [r for r in found if r.requests_per_server_cpu_second]
        per_cpu = f", {median_of(cpu, 'requests_per_server_cpu_second'):,.0f} requests per server CPU-second" if cpu else ""
        print(f"  metrics {name:3}: {median_of(found, 'orders_per_second'):,.0f} orders/s, p50 {median_of(found, 'p50_ms'):.2f} ms{per_cpu}")
    cost = 1 - median_of(on, "orders_per_second") / median_of(off, "orders_per_second")
    print(f"  cost of metrics: {cost:+.1%} of orders/s (target <= 3%)")
    on_cpu = [r for r in on if r.requests_per_server_cpu_second]
    off_cpu = [r for r in off if r.requests_per_server_cpu_second]
    if on_cpu and off_cpu:
        ratio = median_of(on_cpu, "requests_per_server_cpu_second") / median_of(off_cpu, "requests_per_server_cpu_second")
        print(f"  cost of metrics: {1 - ratio:+.1%} of requests per server CPU-second")
    return 0


NO_LIMITS = [
    "--orders-per-key",
    "1e9",
    "--reads-per-key",
    "1e9",
    "--orders-per-address",
    "1e9",
    "--reads-per-address",
    "1e9",
]
"""The rate limits stay on (their buckets are checked on every request) but never refuse the benchmark's load."""


def compare_auth(args: argparse.Namespace) -> int:
    """The exchange in dev mode (unsigned requests that name their user) and signed (every order and cancel
    signed with its user's key, rate limits checked), alternately, --runs times; medians and the cost."""
    import secrets

    token = secrets.token_urlsafe(24)
    env = {"OPENBELL_ADMIN_TOKEN": token, "OPENBELL_KEY_SECRET": secrets.token_hex(32)}
    signed_args = argparse.Namespace(**{**vars(args), "sign": True, "admin_token": token})
    dev_args = argparse.Namespace(**{**vars(args), "sign": False, "admin_token": token})
    results = alternate(
        args,
        "dev vs signed",
        {"dev": (["--in-memory", "--dev"], env, dev_args), "signed": (["--in-memory"], env, signed_args)},
    )
    dev = median_of(results["dev"], "orders_per_second")
    signed = median_of(results["signed"], "orders_per_second")
    cost = 1 - signed / dev if dev else 0.0
    print(
        f"\nmedians over {args.runs} runs: dev {dev:,.0f} orders/s (p50 {median_of(results['dev'], 'p50_ms'):.2f} ms), "
        f"signed {signed:,.0f} orders/s (p50 {median_of(results['signed'], 'p50_ms'):.2f} ms): authentication and "
        f"rate limits cost {cost:.1%} of order throughput (target at most 10%)"
    )
    if args.json:
        Path(args.json).write_text(
            json.dumps(
                {
                    "dev": [asdict(r) for r in results["dev"]],
                    "signed": [asdict(r) for r in results["signed"]],
                    "cost": round(cost, 4),
                },
                indent=2,
            )
        )
    return 0


def profile_process(pid: int, log_dir: Path, run: int, seconds: float) -> None:
    """Start py-spy on the server for the measured phase (it writes its own file; not waited for)."""
    py_spy = shutil.which("py-spy") or str(Path(sys.executable).parent / "py-spy")
    if not Path(py_spy).exists():
        print("  (py-spy not found; no profile)")
        return
    out = log_dir / f"exchange-run{run}.svg"
    subprocess.Popen(
        [py_spy, "record", "--pid", str(pid), "--duration", str(int(seconds) + 1), "-o", str(out), "--threads"],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    print(f"  py-spy recording to {out}")


# --------------------------------------------------------------------------- command line
def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="python -m bench.http_load", description=__doc__.splitlines()[0])
    parser.add_argument("--url", default="http://127.0.0.1:8000", help="base URL of the server (default %(default)s)")
    parser.add_argument("--connections", type=int, default=64, help="keep-alive connections (default 64)")
    parser.add_argument("--duration", type=float, default=10.0, help="measured seconds per phase (default 10)")
    parser.add_argument("--warmup", type=float, default=1.0, help="seconds before measuring (default 1)")
    parser.add_argument("--orders", type=int, default=300_000, help="stream items at most (default 300000)")
    parser.add_argument("--seed", type=int, default=1)
    parser.add_argument("--users", type=int, default=100)
    parser.add_argument("--market", default="TATA_INR")
    parser.add_argument("--prefund", action="store_true", help="credit every user through POST /onramp first")
    parser.add_argument("--rate", type=float, default=None, help="open loop: requests per second (default: saturate)")
    parser.add_argument("--timeout", type=float, default=10.0, help="seconds a request may take (default 10)")
    parser.add_argument("--client", choices=("raw", "httpx"), default="raw")
    parser.add_argument("--cpu", default=None, help="pin this client to these cores, e.g. 1 or 1,2")
    parser.add_argument("--json", default=None, help="write the results to this file")
    parser.add_argument(
        "--server-pid", type=int, default=None, help="also report this local server process's CPU use (Linux /proc)"
    )
    parser.add_argument(
        "--role-pid",
        action="append",
        default=[],
        metavar="NAME=PID",
        help="also report the CPU per request of process PID and its descendants, as NAME (repeatable)",
    )
    parser.add_argument("--compare", action="store_true", help="measure the ceiling server and the exchange")
    parser.add_argument(
        "--metrics-cost",
        action="store_true",
        help="measure the exchange with metrics and with --no-metrics, alternately, --runs times each",
    )
    parser.add_argument(
        "--compare-auth",
        action="store_true",
        help="measure the exchange in dev mode and with signed requests, alternately (--runs times each)",
    )
    parser.add_argument(
        "--sign",
        action="store_true",
        help="sign every request as its user (keys made first through the operator's token, --admin-token)",
    )
    parser.add_argument(
        "--admin-token", default=None, help="the operator's token (default OPENBELL_ADMIN_TOKEN): onramp and keys"
    )
    parser.add_argument("--runs", type=int, default=3, help="--compare: runs (default 3)")
    parser.add_argument(
        "--paced-fraction",
        type=float,
        default=0.8,
        help="--compare: then pace the exchange at this fraction of its saturated rate (0: skip; default 0.8)",
    )
    parser.add_argument("--no-pin", action="store_true", help="--compare: do not pin client and servers to cores")
    parser.add_argument("--bare-ceiling", action="store_true", help="--compare: ceiling without sanic-ext")
    parser.add_argument(
        "--exchange-args",
        default="",
        help="--compare: more arguments for run.py, e.g. '--in-memory' or '--no-fsync' (each run gets a fresh "
        "--data-dir under the log directory when run.py has that option)",
    )
    parser.add_argument("--profile-exchange", action="store_true", help="--compare: py-spy record the exchange")
    return parser


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    if args.connections < 1 or args.duration <= 0 or args.orders < 1 or args.runs < 1:
        raise SystemExit("--connections, --duration, --orders and --runs must be positive")
    if args.compare:
        return compare(args)
    if args.metrics_cost:
        install_loop()
        return metrics_cost(args)
    if args.compare_auth:
        return compare_auth(args)
    if args.cpu:
        os.sched_setaffinity(0, {int(c) for c in args.cpu.split(",")})
    started = time.monotonic()
    workload = build_workload(args.orders, args.seed, args.users, args.market)
    loop_name = install_loop()
    print(
        f"stream: {len(workload.items)} items (seed {args.seed}, {args.users} users) built in "
        f"{time.monotonic() - started:.1f} s; {args.url} with {args.connections} connections, client "
        f"{args.client} on {loop_name}; load average {' '.join(f'{x:.2f}' for x in os.getloadavg())}",
        flush=True,
    )
    roles = dict(role.split("=", 1) for role in args.role_pid)
    funded, *results = measure(
        args,
        args.url,
        workload,
        do_prefund=args.prefund,
        server_pid=args.server_pid,
        roles={name: int(pid) for name, pid in roles.items()},
    )
    if funded:
        print(f"prefund: {funded}")
    for result in results:
        print(show(result))
    if args.json:
        Path(args.json).write_text(json.dumps([asdict(r) for r in results], indent=2))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
