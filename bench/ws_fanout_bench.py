"""WebSocket fan-out: server CPU per delivered message, next to the same server's CPU per order, and delay.

    .venv/bin/python -m bench.ws_fanout_bench [--clients 100,300,1000] [--rate 100] [--seconds 10]
        [--runs 1] [--client-procs N] [--throttled] [--saturation-seconds 5] [--json PATH]

One server for the whole run, started as a user starts it: `python run.py --in-memory --dev` (engine, REST and
WebSocket in one process) with two markets, TATA_INR and FAN_INR. Then, in order:

1. Saturation: the REST load generator of `bench.http_load` (64 keep-alive connections, closed loop, the
   seeded order stream) on TATA_INR for `--saturation-seconds`, no WebSocket client connected. The
   server's CPU per request (orders and about 10% cancels) is its CPU time over the measured window
   divided by the requests completed in it.
2. For each client count N, and first for N = 0 (the baseline): N connections spread over client
   processes (`--client-procs`, default one per 250 connections), each subscribed to `trade@FAN_INR` and
   `depth@FAN_INR` (`depth@FAN_INR@100ms` with `--throttled`). When all are subscribed, this process
   sends `--rate` crossing pairs per second over REST for `--seconds` (a resting sell of one lot, then an
   IOC buy of one lot at the same price: one trade and two depth updates per pair), waits `--drain`
   seconds, and stops the clients' counters.

Counting: a delivered message is one WebSocket frame of stream data that a client received between the
start of production and the end of the drain (per connection: N clients subscribed to a stream that
has 3 messages per pair receive 3 * N messages per pair). The server's CPU (user + system, all threads,
from /proc) is read over exactly that window. CPU per delivered message = (server CPU with N clients -
server CPU of the baseline with none, same orders) / delivered messages: the orders' own cost is
measured, not estimated, and taken out. Delay: for each trade message, the client's arrival time minus
the trade's engine time "T" (the order's entry time in ms; so it includes the REST request's matching
and the fan-out); 1 ms resolution. Every connection checks its trade ids and depth update ids for gaps.

The clients are minimal RFC 6455 readers (`FanoutClient`) that parse only what they check: on this
machine they share the server's cores, so their CPU use is reported too.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import math
import os
import pathlib
import platform
import statistics
import subprocess
import sys
import tempfile
import time
from typing import Any

ROOT = pathlib.Path(__file__).resolve().parent.parent
MARKET = "FAN_INR"
SATURATION_MARKET = "TATA_INR"
MAKER = "fan-maker"
TAKER = "fan-taker"
PRICE = "100.00"


# --------------------------------------------------------------------------------------------- client
class Stats:
    def __init__(self) -> None:
        self.histogram: dict[int, int] = {}
        self.trades = self.depth = self.lost_trades = self.depth_gaps = self.closed = 0
        self.counting = False


class FanoutClient(asyncio.Protocol):
    """A minimal RFC 6455 client: handshake, subscribe, then parse server frames with a few slices.

    It reads the frame header and, in trade messages, the trade id "t" and time "T"; in depth messages
    the update ids "U" and "u" (checked for continuity)."""

    def __init__(self, stats: Stats, streams: list[str], subscribed: asyncio.Future[None]) -> None:
        self.stats = stats
        self.streams = streams
        self.subscribed = subscribed
        self.buffer = bytearray()
        self.handshake_done = False
        self.previous_trade: int | None = None
        self.previous_update: int | None = None
        self.transport: asyncio.Transport | None = None

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        assert isinstance(transport, asyncio.Transport)
        self.transport = transport
        transport.write(
            b"GET /ws HTTP/1.1\r\nHost: 127.0.0.1\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n"
            b"Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 13\r\n\r\n"
        )

    def connection_lost(self, exc: Exception | None) -> None:
        if not self.subscribed.done():
            self.subscribed.set_exception(ConnectionError("closed before subscribing"))

    def send_frame(self, opcode: int, payload: bytes) -> None:
        # Client frames must be masked; a zero mask key leaves the payload as it is.
        assert self.transport is not None and len(payload) < 126
        self.transport.write(bytes((0x80 | opcode, 0x80 | len(payload))) + b"\x00\x00\x00\x00" + payload)

    def data_received(self, data: bytes) -> None:
        buffer = self.buffer
        buffer += data
        if not self.handshake_done:
            end = buffer.find(b"\r\n\r\n")
            if end < 0:
                return
            if not buffer.startswith(b"HTTP/1.1 101"):
                raise RuntimeError(bytes(buffer[:200]).decode(errors="replace"))
            del buffer[: end + 4]
            self.handshake_done = True
            self.send_frame(1, json.dumps({"method": "SUBSCRIBE", "params": self.streams, "id": 1}).encode())
        stats = self.stats
        position = 0
        size = len(buffer)
        now_ms = time.time() * 1000.0
        while size - position >= 2:
            opcode = buffer[position] & 0x0F
            length = buffer[position + 1] & 0x7F
            header = 2
            if length == 126:
                if size - position < 4:
                    break
                length = int.from_bytes(buffer[position + 2 : position + 4], "big")
                header = 4
            elif length == 127:
                if size - position < 10:
                    break
                length = int.from_bytes(buffer[position + 2 : position + 10], "big")
                header = 10
            if size - position < header + length:
                break
            payload = bytes(buffer[position + header : position + header + length])
            position += header + length
            if opcode == 9:
                self.send_frame(10, payload)
            elif opcode == 8:
                stats.closed += 1
            elif opcode == 1:
                if payload.startswith(b'{"stream":"trade@'):
                    id_at = payload.find(b'"t":')
                    trade_id = int(payload[id_at + 4 : payload.find(b",", id_at)])
                    previous, self.previous_trade = self.previous_trade, trade_id
                    if not stats.counting:
                        continue
                    if previous is not None and trade_id != previous + 1:
                        stats.lost_trades += trade_id - previous - 1
                    t_at = payload.rfind(b'"T":')
                    delay = int(now_ms - int(payload[t_at + 4 : -2]))
                    stats.histogram[delay] = stats.histogram.get(delay, 0) + 1
                    stats.trades += 1
                elif payload.startswith(b'{"stream":"depth@'):
                    first_at = payload.find(b'"U":')
                    last_at = payload.find(b'"u":', first_at)
                    first = int(payload[first_at + 4 : payload.find(b",", first_at)])
                    last = int(payload[last_at + 4 : payload.find(b",", last_at)])
                    previous, self.previous_update = self.previous_update, last
                    if not stats.counting:
                        continue
                    if previous is not None and first != previous + 1:
                        stats.depth_gaps += 1
                    stats.depth += 1
                elif not self.subscribed.done():
                    self.subscribed.set_result(None)
        del buffer[:position]


async def client_main(port: int, connections: int, streams: list[str]) -> dict[str, Any]:
    """Open `connections` subscribed connections, print READY; count between GO and STOP (stdin lines)."""
    loop = asyncio.get_running_loop()
    stats = Stats()
    transports = []
    for start in range(0, connections, 50):  # in waves, so that handshakes do not pile up
        wave = []
        for _ in range(min(50, connections - start)):
            subscribed: asyncio.Future[None] = loop.create_future()
            transport, _ = await loop.create_connection(
                lambda subscribed=subscribed: FanoutClient(stats, streams, subscribed),  # type: ignore[misc]
                "127.0.0.1",
                port,
            )
            transports.append(transport)
            wave.append(subscribed)
        await asyncio.wait_for(asyncio.gather(*wave), 60)
    print("READY", flush=True)
    await loop.run_in_executor(None, sys.stdin.readline)  # GO
    stats.counting = True
    cpu_start = sum(os.times()[:2])
    await loop.run_in_executor(None, sys.stdin.readline)  # STOP
    stats.counting = False
    cpu = sum(os.times()[:2]) - cpu_start
    for transport in transports:
        transport.close()
    return {
        "histogram": stats.histogram,
        "trades": stats.trades,
        "depth": stats.depth,
        "lost_trades": stats.lost_trades,
        "depth_gaps": stats.depth_gaps,
        "closed": stats.closed,
        "cpu_seconds": cpu,
    }


# --------------------------------------------------------------------------------------------- orders
class Producer:
    """Crossing pairs over REST: a resting sell of one lot by MAKER, then an IOC buy by TAKER."""

    def __init__(self, port: int) -> None:
        from bench.http_load import RawClient

        self.client = RawClient("127.0.0.1", port, "/api/v1")
        self.sell = (
            f'{{"market":"{MARKET}","price":"{PRICE}","quantity":"1","side":"sell","user_id":"{MAKER}"}}'.encode()
        )
        self.buy = (
            f'{{"market":"{MARKET}","price":"{PRICE}","quantity":"1","side":"buy","user_id":"{TAKER}",'
            f'"timeInForce":"IOC"}}'
        ).encode()

    async def fund(self, nonce: str) -> None:
        conn = await self.client.connect()
        try:
            for user, asset, amount in ((MAKER, "FAN", "100000000"), (TAKER, "INR", "100000000000")):
                body = json.dumps({"user_id": user, "asset": asset, "amount": amount, "txnId": f"{nonce}.{user}"})
                status, reply = await self.client.send(conn, b"POST", b"/onramp", body.encode())
                if status != 200:
                    raise RuntimeError(f"onramp failed: {status} {reply[:200]!r}")
        finally:
            conn.close()

    async def run(self, rate: float, seconds: float) -> dict[str, int]:
        """Send `rate` pairs per second for `seconds`; returns counts of pairs sent, trades made, errors.

        A server that cannot keep up makes pairs late; none is started after 1.5 x `seconds` (the rest
        are counted as skipped), so a run ends in bounded time."""
        total = int(rate * seconds)
        lanes = max(2, math.ceil(rate / 20))
        conns = [await self.client.connect() for _ in range(lanes)]
        counts = {"pairs": 0, "trades": 0, "errors": 0, "skipped": 0}
        start = time.perf_counter()
        stop_at = start + 1.5 * seconds

        async def lane(k: int) -> None:
            conn = conns[k]
            for i in range(k, total, lanes):
                now = time.perf_counter()
                if now > stop_at:
                    counts["skipped"] += 1
                    continue
                if start + i / rate > now:
                    await asyncio.sleep(start + i / rate - now)
                try:
                    status, _ = await asyncio.wait_for(self.client.send(conn, b"POST", b"/order", self.sell), 10)
                    status_buy, reply = await asyncio.wait_for(self.client.send(conn, b"POST", b"/order", self.buy), 10)
                except (ConnectionError, OSError, TimeoutError):
                    counts["errors"] += 1
                    conn.close()
                    conn = conns[k] = await self.client.connect()
                    continue
                counts["pairs"] += 1
                if status != 200 or status_buy != 200:
                    counts["errors"] += 1
                elif b'"FILLED"' in reply:
                    counts["trades"] += 1

        try:
            await asyncio.gather(*(lane(k) for k in range(lanes)))
        finally:
            for conn in conns:
                conn.close()
        return counts


# --------------------------------------------------------------------------------------------- parent
def cpu_split(pid: int) -> tuple[float, float]:
    """(user, system) CPU seconds of process `pid`, all threads, from /proc."""
    fields = pathlib.Path(f"/proc/{pid}/stat").read_text().rpartition(")")[2].split()
    tick = os.sysconf("SC_CLK_TCK")
    return int(fields[11]) / tick, int(fields[12]) / tick


def percentile(histogram: dict[int, int], fraction: float) -> int | None:
    total = sum(histogram.values())
    if not total:
        return None
    seen = 0
    for delay in sorted(histogram):
        seen += histogram[delay]
        if seen >= fraction * total:
            return delay
    return max(histogram)


def saturation(port: int, pid: int, seconds: float) -> dict[str, Any]:
    """The server's CPU per REST request at saturation (bench.http_load, closed loop, no WS clients)."""
    from bench.http_load import RawClient, build_workload, prefund, run_load

    workload = build_workload(int(seconds * 25_000) + 20_000, 1, 100, SATURATION_MARKET)
    client = RawClient("127.0.0.1", port, "/api/v1")

    async def go() -> Any:
        await prefund(client, workload, 16, 10.0)
        return await run_load(
            client,
            workload,
            connections=64,
            duration=seconds,
            warmup=1.0,
            rate=None,
            timeout=10.0,
            label="saturated",
            server_pid=pid,
        )

    result = asyncio.run(go())
    per_second = result.requests_per_server_cpu_second
    return {
        "requests_per_second": result.throughput,
        "server_cpu_percent": result.server_cpu_percent,
        "server_cpu_us_per_request": round(1e6 / per_second, 1) if per_second else None,
        "p99_ms": result.p99_ms,
        "errors": result.errors,
    }


def start_clients(port: int, clients: int, procs: int, streams: list[str]) -> list[subprocess.Popen[str]]:
    shares = [clients // procs + (1 if i < clients % procs else 0) for i in range(procs)]
    started = []
    for share in filter(None, shares):
        started.append(
            subprocess.Popen(
                [sys.executable, "-m", "bench.ws_fanout_bench", "--client", str(port), str(share), ",".join(streams)],
                cwd=ROOT,
                stdin=subprocess.PIPE,
                stdout=subprocess.PIPE,
                text=True,
            )
        )
    for proc in started:
        assert proc.stdout is not None
        line = proc.stdout.readline()
        if line.strip() != "READY":
            for other in started:
                other.kill()
            raise RuntimeError(f"client process failed: {line!r}")
    return started


def tell(procs: list[subprocess.Popen[str]], word: str) -> None:
    for proc in procs:
        assert proc.stdin is not None
        proc.stdin.write(word + "\n")
        proc.stdin.flush()


def one_point(port: int, pid: int, clients: int, args: argparse.Namespace, streams: list[str]) -> dict[str, Any]:
    procs = (
        start_clients(port, clients, args.client_procs or max(1, math.ceil(clients / 250)), streams) if clients else []
    )
    producer = Producer(port)
    try:
        tell(procs, "GO")
        time.sleep(0.2)
        load_before = os.getloadavg()[0]
        user_before, system_before = cpu_split(pid)
        wall_before = time.perf_counter()
        counts = asyncio.run(producer.run(args.rate, args.seconds))
        time.sleep(args.drain)
        user_after, system_after = cpu_split(pid)
        user, system = user_after - user_before, system_after - system_before
        wall = time.perf_counter() - wall_before
        tell(procs, "STOP")
        results = []
        for proc in procs:
            out, _ = proc.communicate(timeout=60)
            results.append(json.loads(out.strip().splitlines()[-1]))
    finally:
        for proc in procs:
            if proc.poll() is None:
                proc.kill()
    histogram: dict[int, int] = {}
    for result in results:
        for delay, count in result["histogram"].items():
            histogram[int(delay)] = histogram.get(int(delay), 0) + count
    trades = sum(r["trades"] for r in results)
    depth = sum(r["depth"] for r in results)
    return {
        "clients": clients,
        "pairs": counts["pairs"],
        "pairs_skipped": counts["skipped"],
        "trades_made": counts["trades"],
        "order_errors": counts["errors"],
        "window_seconds": round(wall, 2),
        "server_cpu_seconds": round(user + system, 3),
        "server_system_seconds": round(system, 3),
        "delivered": trades + depth,
        "delivered_trade": trades,
        "delivered_depth": depth,
        "trade_deliveries_missing": counts["trades"] * clients - trades,
        "lost_trades": sum(r["lost_trades"] for r in results),
        "depth_gaps": sum(r["depth_gaps"] for r in results),
        "closed_by_server": sum(r["closed"] for r in results),
        "client_cpu_percent": round(100 * sum(r["cpu_seconds"] for r in results) / wall),
        "p50_ms": percentile(histogram, 0.50),
        "p99_ms": percentile(histogram, 0.99),
        "max_ms": max(histogram) if histogram else None,
        "load_average": round(load_before, 2),
    }


def machine() -> str:
    model = "unknown CPU"
    for line in pathlib.Path("/proc/cpuinfo").read_text().splitlines():
        if line.startswith("model name"):
            model = line.split(":", 1)[1].strip()
            break
    return f"nproc {os.cpu_count()}, {model}, CPython {platform.python_version()}, Linux {platform.release()}"


def one_server(args: argparse.Namespace, streams: list[str], flush_interval: str) -> dict[str, Any]:
    """Start `python run.py`, measure the saturation and every client count against it, stop it."""
    from bench.http_load import NO_LIMITS, Server, free_port

    port = free_port()
    # every client connects from 127.0.0.1: lift the per-address connection cap (64 by default) for the server
    os.environ["OPENBELL_WS_MAX_CONNECTIONS_PER_ADDRESS"] = str(10**6)
    if flush_interval:
        os.environ["OPENBELL_WS_FLUSH_INTERVAL"] = flush_interval  # inherited by the server
    else:
        os.environ.pop("OPENBELL_WS_FLUSH_INTERVAL", None)
    server = Server(
        "ws-fanout",
        [
            sys.executable,
            "run.py",
            "--port",
            str(port),
            "--in-memory",
            "--dev",  # the crossing orders are unsigned and name their users
            *NO_LIMITS,  # the saturation phase comes from one address: rate limits set never to refuse it
            "--log-level",
            "warning",
            "--max-open-orders",
            "1000000",
            "--markets",
            f"{SATURATION_MARKET}:0.01:1,{MARKET}:0.01:1",
            "--assets",
            "TATA:2,INR:2,FAN:2",
            *args.server_args.split(),
        ],
        port,
        pathlib.Path(tempfile.mkdtemp(prefix="ws-fanout-")),
        None,
    )
    report: dict[str, Any] = {"flush_interval": flush_interval or "default"}
    try:
        server.wait_ready()
        pid = server.process.pid
        sat = saturation(port, pid, args.saturation_seconds)
        report["saturation"] = sat
        order_us = sat["server_cpu_us_per_request"]
        print(f"flush interval {report['flush_interval']}; saturation: {json.dumps(sat)}", flush=True)
        asyncio.run(Producer(port).fund(f"fan.{os.getpid()}.{time.time_ns()}"))
        points: list[dict[str, Any]] = []
        for clients in [0, *(int(c) for c in args.clients.split(","))]:
            runs = [one_point(port, pid, clients, args, streams) for _ in range(args.runs)]
            point = dict(runs[0])
            for key in MEDIAN_KEYS:
                values = [r[key] for r in runs if r[key] is not None]
                point[key] = statistics.median(values) if values else None
            point["runs"] = runs
            if clients:
                baseline = points[0]["server_cpu_seconds"]
                extra = point["server_cpu_seconds"] - baseline
                per_message = 1e6 * extra / point["delivered"] if point["delivered"] else None
                point["server_cpu_us_per_message"] = round(per_message, 3) if per_message is not None else None
                point["message_cpu_over_order_cpu"] = (
                    round(per_message / order_us, 4) if per_message is not None and order_us else None
                )
                point["delivered_per_second"] = round(point["delivered"] / point["window_seconds"])
                extra_system = point["server_system_seconds"] - points[0]["server_system_seconds"]
                point["system_share_of_extra"] = round(extra_system / extra, 2) if extra > 0 else None
            points.append(point)
            print(json.dumps({k: v for k, v in point.items() if k != "runs"}), flush=True)
        report["points"] = points
    finally:
        server.stop()
    return report


MEDIAN_KEYS = (
    "server_cpu_seconds",
    "server_system_seconds",
    "delivered",
    "p50_ms",
    "p99_ms",
    "max_ms",
    "client_cpu_percent",
)


def main(argv: list[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    if argv and argv[0] == "--client":
        port, connections, streams = int(argv[1]), int(argv[2]), argv[3].split(",")
        print(json.dumps(asyncio.run(client_main(port, connections, streams))), flush=True)
        return 0
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--clients", default="100,300,1000", help="comma-separated client counts (default %(default)s)")
    parser.add_argument("--rate", type=float, default=100.0, help="crossing pairs per second (default %(default)s)")
    parser.add_argument("--seconds", type=float, default=10.0, help="seconds of production (default %(default)s)")
    parser.add_argument(
        "--drain", type=float, default=2.0, help="seconds counted after production (default %(default)s)"
    )
    parser.add_argument("--runs", type=int, default=1, help="runs per client count; medians reported (default 1)")
    parser.add_argument("--client-procs", type=int, default=0, help="client processes (default one per 250 clients)")
    parser.add_argument("--throttled", action="store_true", help="subscribe to depth@M@100ms instead of depth@M")
    parser.add_argument(
        "--flush-intervals",
        default="",
        help="comma-separated OPENBELL_WS_FLUSH_INTERVAL values, one server each (default: the server's default)",
    )
    parser.add_argument("--saturation-seconds", type=float, default=5.0, help="REST saturation phase (default 5)")
    parser.add_argument("--server-args", default="", help="extra arguments for run.py, space-separated")
    parser.add_argument("--json", type=pathlib.Path, help="also write the results here")
    args = parser.parse_args(argv)
    from bench.http_load import install_loop

    install_loop()
    streams = [f"trade@{MARKET}", f"depth@{MARKET}@100ms" if args.throttled else f"depth@{MARKET}"]
    print(machine(), flush=True)
    print(f"load average at start {' '.join(f'{x:.2f}' for x in os.getloadavg())}", flush=True)
    report: dict[str, Any] = {"machine": machine(), "args": vars(args) | {"json": str(args.json)}, "servers": []}
    for flush_interval in args.flush_intervals.split(","):
        report["servers"].append(one_server(args, streams, flush_interval.strip()))
    print(f"load average at end {' '.join(f'{x:.2f}' for x in os.getloadavg())}", flush=True)
    summary = [
        "| flush interval | clients | delivered msgs/s | server CPU us/msg | / order CPU (us) | p50 ms | p99 ms "
        "| max ms | lost | closed | client CPU |",
        "|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|",
    ]
    for server in report["servers"]:
        order_us = server["saturation"]["server_cpu_us_per_request"]
        for p in server.get("points", [])[1:]:
            summary.append(
                f"| {server['flush_interval']} | {p['clients']:,} | {p['delivered_per_second']:,} | "
                f"{p['server_cpu_us_per_message']} | {p['message_cpu_over_order_cpu']} ({order_us}) | "
                f"{p['p50_ms']} | {p['p99_ms']} | {p['max_ms']} | "
                f"{p['lost_trades'] + p['depth_gaps'] + max(0, p['trade_deliveries_missing'])} | "
                f"{p['closed_by_server']} | {p['client_cpu_percent']}% |"
            )
    print("\n".join(summary))
    if args.json is not None:
        args.json.write_text(json.dumps(report, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
