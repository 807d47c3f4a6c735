"""The engine fed through Redis: CPU per order of the engine process, next to the same engine in one process.

    .venv/bin/python -m bench.redis_engine_bench [--orders 40000] [--window 1000] [--runs 3] [--json PATH]

Per run, fresh: a private redis-server (free port, 127.0.0.1, no persistence) and `python run.py engine
--in-memory --redis URL` (the engine and its relay, no journal: what is measured is the Redis path). This
process feeds it through `RemoteEngine` (what an API worker uses), keeping `--window` commands in flight: the
funding deposits, then the seeded order stream of `bench/streams.py` (one market, 100 users, 10% cancels).
The engine process's CPU (user + system, from /proc, all its threads) over the order stream, divided by the
orders, is its CPU per order; orders/s is the stream over its wall time. In the same run, the same stream goes
through an in-process `Engine` (`submit_all`, the relay's own way in) in a child process, whose CPU per order
is the baseline: the difference is what Redis costs the engine process.

The feeder shares the machine: on 2 cores, throughput is bounded by the feeder and Redis too; CPU per order
of the engine process is the figure that carries to a bigger machine.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

from bench import streams
from bench.cluster_bench import free_port, redis_binary, spawn

ROOT = Path(__file__).resolve().parent.parent
CLOCK_TICKS = os.sysconf("SC_CLK_TCK")


def cpu_seconds(pid: int) -> float:
    """User + system CPU of process `pid` (all its threads), from /proc."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / CLOCK_TICKS


def commands(orders: int, seed: int) -> tuple[list[Any], list[Any]]:
    """(deposits, the order stream) for one market; a cancel names the stream's own order number."""
    from openbell.core.commands import Deposit

    spec = streams.market_spec()
    mix = streams.StreamMix()
    deposits = [
        Deposit(0, 0, user, asset, 10**18, f"{user}-{asset}")
        for user in streams.user_ids(mix.users)
        for asset in (spec.base.symbol, spec.quote.symbol)
    ]
    return deposits, list(streams.generate(orders, seed, mix))


async def feed(redis_url: str, engine_pid: int, orders: int, window: int, seed: int) -> dict[str, float]:
    import msgspec

    from openbell.cluster.remote import RemoteEngine
    from openbell.core.commands import CancelOrder

    deposits, stream = commands(orders, seed)
    client = RemoteEngine(redis_url, reply_timeout=60.0)
    await client.start(wait=10.0)
    deadline = time.monotonic() + 20
    while "TATA_INR" not in client.markets and time.monotonic() < deadline:
        await asyncio.sleep(0.05)
    gate = asyncio.Semaphore(window)
    order_ids: dict[int, int] = {}
    codes: dict[str, int] = {}

    async def send(command: Any, stream_seq: int | None = None) -> None:
        async with gate:
            reply = await client.request(msgspec.structs.replace(command, seq=next(client._seq)))
        codes[reply.code.name] = codes.get(reply.code.name, 0) + 1
        if stream_seq is not None:
            order_ids[stream_seq] = reply.seq

    await asyncio.gather(*(send(deposit) for deposit in deposits))
    started, cpu_before = time.perf_counter(), cpu_seconds(engine_pid)
    tasks = []
    for item in stream:
        if isinstance(item, streams.Cancel):
            command: Any = CancelOrder(0, 0, item.user_id, "TATA_INR", order_ids.get(item.order_id, 0))
            tasks.append(asyncio.ensure_future(send(command)))
        else:
            tasks.append(asyncio.ensure_future(send(streams.to_command(item), item.seq)))
        if len(tasks) >= window * 4:
            await asyncio.gather(*tasks)
            tasks = []
    await asyncio.gather(*tasks)
    wall, cpu = time.perf_counter() - started, cpu_seconds(engine_pid) - cpu_before
    await client.stop()
    return {"orders_per_s": len(stream) / wall, "cpu_us_per_order": cpu / len(stream) * 1e6, "codes": codes}  # type: ignore[dict-item]


IN_PROCESS = """
import sys, time, os, threading
sys.setswitchinterval(0.005)
from bench.redis_engine_bench import commands, cpu_seconds
from bench import streams
from openbell.actors.engine import BatchSink, Engine, tune_garbage_collector
from openbell.core.commands import CancelOrder
tune_garbage_collector()
orders, window, seed = int(sys.argv[1]), int(sys.argv[2]), int(sys.argv[3])
deposits, stream = commands(orders, seed)
engine = Engine(reply_timeout=60).start([streams.market_spec()])
done = threading.Semaphore(0)
order_ids = {}
pending = {}
def deliver(replies):
    for reply in replies:
        item = pending.pop(reply.seq, None)
        if item is not None:
            order_ids[item] = reply.seq
        done.release()
sink = BatchSink(deliver)
for deposit in deposits:
    engine.submit_all([engine.restamp(deposit)], sink); done.acquire()
started, cpu_before = time.perf_counter(), cpu_seconds(os.getpid())
in_flight = 0
for item in stream:
    if isinstance(item, streams.Cancel):
        command = engine.restamp(CancelOrder(0, 0, item.user_id, "TATA_INR", order_ids.get(item.order_id, 0)))
    else:
        command = engine.restamp(streams.to_command(item))
        pending[command.seq] = item.seq
    if in_flight >= window:
        done.acquire(); in_flight -= 1
    engine.submit_all([command], sink); in_flight += 1
for _ in range(in_flight):
    done.acquire()
wall, cpu = time.perf_counter() - started, cpu_seconds(os.getpid()) - cpu_before
engine.stop()
print(len(stream) / wall, cpu / len(stream) * 1e6)
"""


def in_process(orders: int, window: int, seed: int) -> dict[str, float]:
    result = subprocess.run(
        [sys.executable, "-c", IN_PROCESS, str(orders), str(window), str(seed)],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=600,
        check=True,
    )
    rate, cpu = map(float, result.stdout.split())
    return {"orders_per_s": rate, "cpu_us_per_order": cpu}


def one_run(orders: int, window: int, seed: int, work: Path) -> dict[str, Any]:
    port = free_port()
    redis = subprocess.Popen(
        [redis_binary(), "--port", str(port), "--bind", "127.0.0.1", "--save", "", "--appendonly", "no"],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.STDOUT,
    )
    url = f"redis://127.0.0.1:{port}/0"
    engine = spawn([sys.executable, "run.py", "engine", "--in-memory", "--redis", url, "--log-level", "warning"],
                   work / f"engine-{port}.log")  # fmt: skip
    try:
        time.sleep(1.5)
        remote = asyncio.run(feed(url, engine.pid, orders, window, seed))
    finally:
        engine.terminate()
        engine.wait(30)
        redis.terminate()
        redis.wait(10)
    local = in_process(orders, window, seed)
    return {"redis": remote, "in_process": local}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.redis_engine_bench", description=__doc__.split("\n\n")[0])
    parser.add_argument("--orders", type=int, default=40_000, help="orders in the stream (default 40000)")
    parser.add_argument("--window", type=int, default=1000, help="commands in flight (default 1000)")
    parser.add_argument("--runs", type=int, default=3, help="runs; medians are reported (default 3)")
    parser.add_argument("--seed", type=int, default=1, help="stream seed (default 1)")
    parser.add_argument("--json", help="also write the results as JSON to this path")
    args = parser.parse_args(argv)
    results = []
    with tempfile.TemporaryDirectory(prefix="redis-engine-bench-") as tmp:
        for run in range(args.runs):
            load = os.getloadavg()
            result = one_run(args.orders, args.window, args.seed, Path(tmp))
            result["load"] = load
            results.append(result)
            print(f"run {run + 1}: {json.dumps(result)}", flush=True)

    def median(where: str, what: str) -> float:
        return statistics.median(float(r[where][what]) for r in results)

    print(
        f"\n| | orders/s | engine process CPU us/order |\n|---|---:|---:|\n"
        f"| engine through Redis (relay + engine) | {median('redis', 'orders_per_s'):,.0f} | "
        f"{median('redis', 'cpu_us_per_order'):.1f} |\n"
        f"| same engine in process (baseline) | {median('in_process', 'orders_per_s'):,.0f} | "
        f"{median('in_process', 'cpu_us_per_order'):.1f} |\n"
        f"\nmedians of {args.runs} runs, {args.orders} orders, {args.window} in flight; "
        f"load average before the runs: {[r['load'] for r in results]}"
    )
    if args.json:
        Path(args.json).write_text(json.dumps(results, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
