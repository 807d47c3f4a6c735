"""WebSocket fan-out: N clients on trade@ and depth@ of one market while trades stream in at a fixed rate.

    .venv/bin/python -m bench.ws_fanout_bench [--clients 100,1000] [--rate 1000] [--seconds 10]
                                              [--client-procs 2] [--json PATH]

Per configuration: start `tests/ws_server_main.py` (engine + `install_websocket`) on a free port; start
`--client-procs` client processes holding N connections between them (asyncio, `FanoutClient`), each
subscribed to `trade@TATA_INR` and `depth@TATA_INR`; when all are subscribed, the server's producer
thread makes `rate` trades per second for `seconds` (a resting sell of one lot met by an IOC buy,
submitted straight to the engine). Each client records, per trade message, arrival time minus the
trade's engine time "T" (ms since the epoch, the command's entry time: latency includes the engine),
counts trade and depth messages, and checks trade ids for gaps. Reported: p50/p99/max delay over all
deliveries, messages/s delivered (all clients), trades lost by connections that stayed open, and
connections closed by the server (send-queue overflow). Server CPU time comes from /proc.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import pathlib
import platform
import signal
import socket
import subprocess
import sys
import time
from typing import Any

ROOT = pathlib.Path(__file__).resolve().parent.parent
MARKET = "TATA_INR"


# --------------------------------------------------------------------------------------------- client
class Stats:
    def __init__(self) -> None:
        self.histogram: dict[int, int] = {}
        self.trades = self.depth = self.lost = self.closed = 0
        self.last_trade = 0
        self.counting = False


class FanoutClient(asyncio.Protocol):
    """A minimal RFC 6455 client: handshake, subscribe, then parse server frames with a few slices.

    Python-level parsing in `websockets` costs several times the server's per-client cost, and the
    clients share the server's two cores, so the benchmark clients parse only what they measure:
    the frame header, and in trade messages the trade id "t" and time "T"."""

    def __init__(self, stats: Stats, subscribed: asyncio.Future[None]) -> None:
        self.stats = stats
        self.subscribed = subscribed
        self.buffer = bytearray()
        self.handshake_done = False
        self.previous_trade: int | None = None
        self.transport: asyncio.Transport | None = None

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        assert isinstance(transport, asyncio.Transport)
        self.transport = transport
        transport.write(
            b"GET /ws HTTP/1.1\r\nHost: 127.0.0.1\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n"
            b"Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 13\r\n\r\n"
        )

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
            params = [f"trade@{MARKET}", f"depth@{MARKET}"]
            self.send_frame(1, json.dumps({"method": "SUBSCRIBE", "params": params, "id": 1}).encode())
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
                    if not stats.counting:
                        continue
                    t_at = payload.rfind(b'"T":')
                    delay = int(now_ms - int(payload[t_at + 4 : -2]))
                    stats.histogram[delay] = stats.histogram.get(delay, 0) + 1
                    id_at = payload.find(b'"t":')
                    trade_id = int(payload[id_at + 4 : payload.find(b",", id_at)])
                    if self.previous_trade is not None and trade_id != self.previous_trade + 1:
                        stats.lost += trade_id - self.previous_trade - 1
                    self.previous_trade = trade_id
                    stats.trades += 1
                    stats.last_trade = max(stats.last_trade, trade_id)
                elif payload.startswith(b'{"stream":"depth@'):
                    if stats.counting:
                        stats.depth += 1
                elif not self.subscribed.done():
                    self.subscribed.set_result(None)
        del buffer[:position]


async def client_main(port: int, connections: int, collect_seconds: float) -> dict[str, Any]:
    loop = asyncio.get_running_loop()
    stats = Stats()
    transports = []
    for start in range(0, connections, 50):  # in waves, so that handshakes do not pile up
        waves = []
        for _ in range(min(50, connections - start)):
            subscribed: asyncio.Future[None] = loop.create_future()
            transport, _ = await loop.create_connection(
                lambda subscribed=subscribed: FanoutClient(stats, subscribed),  # type: ignore[misc]
                "127.0.0.1",
                port,
            )
            transports.append(transport)
            waves.append(subscribed)
        await asyncio.wait_for(asyncio.gather(*waves), 60)
    print("READY", flush=True)
    await loop.run_in_executor(None, sys.stdin.readline)  # "GO" from the parent
    stats.counting = True
    await asyncio.sleep(collect_seconds)
    stats.counting = False
    for transport in transports:
        transport.close()
    return {
        "histogram": stats.histogram,
        "trades": stats.trades,
        "depth": stats.depth,
        "lost": stats.lost,
        "closed": stats.closed,
        "last_trade": stats.last_trade,
    }


# --------------------------------------------------------------------------------------------- parent
def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def cpu_seconds(pid: int) -> float:
    fields = pathlib.Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def percentile(histogram: dict[int, int], fraction: float) -> int:
    total = sum(histogram.values())
    rank = fraction * total
    seen = 0
    for delay in sorted(histogram):
        seen += histogram[delay]
        if seen >= rank:
            return delay
    return max(histogram)


def run_one(clients: int, rate: float, seconds: float, client_procs: int) -> dict[str, Any]:
    import httpx

    port = free_port()
    server = subprocess.Popen(
        [sys.executable, "tests/ws_server_main.py", "--port", str(port), "--max-connections", str(clients + 100)],
        cwd=ROOT,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    procs: list[subprocess.Popen[str]] = []
    try:
        for _ in range(300):
            try:
                if httpx.get(f"http://127.0.0.1:{port}/_test/stats", timeout=1).status_code == 200:
                    break
            except httpx.HTTPError:
                time.sleep(0.1)
        collect = seconds + 5
        shares = [clients // client_procs + (1 if i < clients % client_procs else 0) for i in range(client_procs)]
        for share in shares:
            procs.append(
                subprocess.Popen(
                    [sys.executable, "-m", "bench.ws_fanout_bench", "--client", str(port), str(share), str(collect)],
                    cwd=ROOT,
                    stdin=subprocess.PIPE,
                    stdout=subprocess.PIPE,
                    text=True,
                )
            )
        for proc in procs:
            assert proc.stdout is not None
            line = proc.stdout.readline()
            if line.strip() != "READY":
                raise RuntimeError(f"client process failed: {line!r}")
        stats_before = httpx.get(f"http://127.0.0.1:{port}/_test/stats", timeout=5).json()
        for proc in procs:
            assert proc.stdin is not None
            proc.stdin.write("GO\n")
            proc.stdin.flush()
        cpu_before = cpu_seconds(server.pid)
        httpx.post(f"http://127.0.0.1:{port}/_test/produce", json={"rate": rate, "seconds": seconds}, timeout=10)
        time.sleep(seconds)
        cpu_during = cpu_seconds(server.pid) - cpu_before
        results = []
        for proc in procs:
            out, _ = proc.communicate(timeout=collect + 60)
            results.append(json.loads(out.strip().splitlines()[-1]))
        stats_after = httpx.get(f"http://127.0.0.1:{port}/_test/stats", timeout=5).json()
    finally:
        for proc in procs:
            if proc.poll() is None:
                proc.kill()
        server.send_signal(signal.SIGTERM)
        try:
            server.wait(15)
        except subprocess.TimeoutExpired:
            server.kill()

    histogram: dict[int, int] = {}
    for result in results:
        for delay, count in result["histogram"].items():
            histogram[int(delay)] = histogram.get(int(delay), 0) + count
    trades = sum(r["trades"] for r in results)
    depth = sum(r["depth"] for r in results)
    closed = sum(r["closed"] for r in results)
    expected = int(rate * seconds)
    return {
        "clients": clients,
        "rate": rate,
        "seconds": seconds,
        "trades_made": expected,
        "trade_messages": trades,
        "depth_messages": depth,
        "messages_per_second": round((trades + depth) / seconds),
        "trade_deliveries_expected": expected * clients,
        "lost_by_open_connections": sum(r["lost"] for r in results),
        "closed_by_server": closed,
        "overflows": stats_after["overflows"] - stats_before["overflows"],
        "p50_ms": percentile(histogram, 0.50) if histogram else None,
        "p99_ms": percentile(histogram, 0.99) if histogram else None,
        "max_ms": max(histogram) if histogram else None,
        "server_cpu_percent_during_production": round(100 * cpu_during / seconds),
    }


def machine() -> str:
    model = "unknown CPU"
    for line in pathlib.Path("/proc/cpuinfo").read_text().splitlines():
        if line.startswith("model name"):
            model = line.split(":", 1)[1].strip()
            break
    return f"nproc {os.cpu_count()}, {model}, CPython {platform.python_version()}, Linux {platform.release()}"


def main(argv: list[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    if argv and argv[0] == "--client":
        port, connections, collect = int(argv[1]), int(argv[2]), float(argv[3])
        print(json.dumps(asyncio.run(client_main(port, connections, collect))), flush=True)
        return 0
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--clients", default="100,1000", help="comma-separated client counts (default 100,1000)")
    parser.add_argument("--rate", type=float, default=1000.0, help="trades per second (default 1000)")
    parser.add_argument("--seconds", type=float, default=10.0, help="seconds of production (default 10)")
    parser.add_argument("--client-procs", type=int, default=2, help="client processes (default 2)")
    parser.add_argument("--json", type=pathlib.Path, help="also write the results here")
    args = parser.parse_args(argv)
    print(machine())
    rows = []
    for clients in (int(c) for c in args.clients.split(",")):
        row = run_one(clients, args.rate, args.seconds, args.client_procs)
        rows.append(row)
        print(json.dumps(row), flush=True)
    if args.json is not None:
        args.json.write_text(json.dumps({"machine": machine(), "results": rows}, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
