"""Markets that match in parallel, measured: orders fed straight into the command stream (no HTTP), through a
balance process and 1, 2 or 4 market shards (or one `run.py engine` process), with CPU per order per process.

    .venv/bin/python -m bench.shard_bench [--layouts engine,1,2,4] [--orders 100000] [--runs 3]
        [--window 4000] [--entry 64] [--no-fsync] [--history] [--json PATH]

Each run starts a fresh private redis-server (free port, no persistence) and fresh processes with their own
data directories (journal with fsync unless --no-fsync; no history database unless --history):
`run.py markets --shard K --shards N` for each shard and `run.py balance` (layout N), or `run.py engine`
(layout `engine`). Four markets (`bench.engine_bench.market_specs(4)`), spread by the shard map: with 2 shards
two each, with 4 one each.

This process plays the API processes: it writes `CommandEntry`s of `--entry` commands to the command stream
(encoded before the clock starts), keeps at most `--window` commands unanswered, and reads the `ReplyBatch`es
on its reply channel. The workload is `bench.engine_bench.make_workload` (the seeded streams of
`bench.streams`, one per market, merged round-robin; 10% cancels). The engine numbers commands in the order
it reads them, so a cancel names the order id its order will get (checked on the replies).

Reported per layout (medians of `--runs`): orders/s (commands / first write to last reply), latency p50/p99
(write of a command's entry to its reply), and CPU microseconds per order of each process from
/proc/<pid>/stat (user + system, all threads) over the same window: the balance process, the market shards
(all together, and the busiest), the engine process, redis-server, and this generator. CPU per order depends
less than orders/s on how many other processes share the two cores, which is why both are given; on a shared
machine it still moves by about 10% from run to run.

`--valgrind` counts instructions instead, repeatable whatever else the machine does: the balance (or engine)
process runs under callgrind, once with `--orders` orders and once with twice as many, and the report gives
(instructions of the second - of the first) / `--orders`: its instructions per order, start-up and funding
cancelled out. Slow (callgrind runs Python some 50x slower): use --orders 5000 or so.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import redis
import redis.asyncio as aioredis

from bench.cluster_bench import free_port, redis_binary, spawn, stop
from bench.engine_bench import Workload, make_workload
from openbell.cluster import COMMANDS, CommandEntry, ReplyBatch, RoutedCommand, reply_channel
from openbell.core.commands import CancelOrder, Command, Deposit, GetBalances, PlaceOrder
from openbell.core.types import ResultCode
from openbell.core.wire import decode, encode

ROOT = Path(__file__).resolve().parent.parent
TICKS = os.sysconf("SC_CLK_TCK")
FUNDING_QUOTE = 10**15
FUNDING_BASE = 10**13


# --------------------------------------------------------------------------- processes
def cpu_seconds(pid: int) -> float:
    """User + system CPU seconds of process `pid` (all its threads) so far."""
    with open(f"/proc/{pid}/stat", encoding="ascii") as stat:
        fields = stat.read().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / TICKS


def wait_for_line(log: Path, text: str, process: subprocess.Popen[bytes], timeout: float = 60.0) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if text in log.read_text(errors="replace"):
            return
        if process.poll() is not None:
            raise RuntimeError(f"{log.name} exited with {process.returncode}:\n{log.read_text()[-2000:]}")
        time.sleep(0.05)
    raise RuntimeError(f"{log.name}: no {text!r} in {timeout}s")


def markets_option(workload: Workload) -> tuple[str, str]:
    markets = ",".join(f"{spec.symbol}:{spec.tick_size}:{spec.lot_size}" for spec in workload.specs)
    assets = {workload.specs[0].quote.symbol: workload.specs[0].quote.decimals}
    for spec in workload.specs:
        assets[spec.base.symbol] = spec.base.decimals
    return markets, ",".join(f"{name}:{decimals}" for name, decimals in assets.items())


class Layout:
    """The processes of one run, started in `work`, stopped by `close`."""

    def __init__(self, layout: str, workload: Workload, work: Path, args: argparse.Namespace) -> None:
        self.work = work
        self.port = free_port()
        self.url = f"redis://127.0.0.1:{self.port}/0"
        self.redis = subprocess.Popen(
            [redis_binary(), "--port", str(self.port), "--bind", "127.0.0.1", "--save", "", "--appendonly", "no"],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.STDOUT,
        )
        client = redis.Redis.from_url(self.url)
        for _ in range(100):
            try:
                client.ping()
                break
            except redis.ConnectionError:
                time.sleep(0.05)
        client.close()
        markets, assets = markets_option(workload)
        common = ["--redis", self.url, "--log-level", "warning"]
        durability = ["--no-fsync"] if args.no_fsync else []
        if not args.history:
            durability.append("--no-history")
        self.shards: list[subprocess.Popen[bytes]] = []
        self.procs: list[subprocess.Popen[bytes]] = []
        self.wrap = ["valgrind", "--tool=callgrind", "--callgrind-out-file=/dev/null"] if args.valgrind else []
        self.engine_log = work / ("engine.log" if layout == "engine" else "balance.log")
        if layout == "engine":
            log = work / "engine.log"
            argv = ["engine", *common, "--log-level", "info", "--data-dir", str(work / "engine"), *durability]
            self.engine = spawn(
                [*self.wrap, sys.executable, "run.py", *argv, "--markets", markets, "--assets", assets], log
            )
            self.procs.append(self.engine)
            wait_for_line(log, "relay ready", self.engine)
            return
        shards = int(layout)
        for k in range(shards):
            log = work / f"markets-{k}.log"
            argv = ["markets", *common, "--log-level", "info", "--shard", str(k), "--shards", str(shards)]
            proc = spawn([sys.executable, "run.py", *argv, "--data-dir", str(work / f"markets-{k}"), *durability], log)
            self.shards.append(proc)
            self.procs.append(proc)
            wait_for_line(log, f"shard {k} ready", proc)
        log = work / "balance.log"
        argv = ["balance", *common, "--log-level", "info", "--data-dir", str(work / "balance"), *durability]
        self.engine = spawn(
            [*self.wrap, sys.executable, "run.py", *argv, "--markets", markets, "--assets", assets], log
        )
        self.procs.append(self.engine)
        wait_for_line(log, "relay ready", self.engine)

    def cpu(self) -> dict[str, Any]:
        return {
            "engine": cpu_seconds(self.engine.pid),
            "shards": [cpu_seconds(p.pid) for p in self.shards],
            "redis": cpu_seconds(self.redis.pid),
            "generator": time.process_time(),
        }

    def close(self) -> None:
        for proc in self.procs:
            stop(proc, timeout=600 if self.wrap else 15)
        stop(self.redis)

    def instructions(self) -> int:
        """What callgrind counted in the balance (or engine) process, once it has stopped."""
        for line in self.engine_log.read_text(errors="replace").splitlines():
            if "Collected :" in line:
                return int(line.rsplit(":", 1)[1].strip())
        raise RuntimeError(f"no instruction count in {self.engine_log}")


# --------------------------------------------------------------------------- the generator
class Generator:
    """Writes pre-encoded entries to the command stream, at most `window` commands unanswered."""

    def __init__(self, url: str, window: int) -> None:
        self.url = url
        self.window = window
        self.reply_to = reply_channel("bench")
        self.replies: dict[str, Any] = {}
        self.done = 0
        self._arrived = asyncio.Event()

    async def __aenter__(self) -> Generator:
        self.client = aioredis.Redis.from_url(self.url)
        self.pubsub = self.client.pubsub()
        await self.pubsub.subscribe(self.reply_to)
        self._reader = asyncio.create_task(self._read())
        return self

    async def __aexit__(self, *exc: object) -> None:
        self._reader.cancel()
        await asyncio.gather(self._reader, return_exceptions=True)
        await self.pubsub.aclose()
        await self.client.aclose()

    async def _read(self) -> None:
        clock = time.perf_counter_ns
        while True:
            message = await self.pubsub.get_message(ignore_subscribe_messages=True, timeout=1.0)
            if message is None:
                continue
            now = clock()
            batch = decode(message["data"], ReplyBatch)
            for routed in batch.replies:
                self.replies[routed.request_id] = (now, routed.reply)
            self.done += len(batch.replies)
            self._arrived.set()

    def entries(self, commands: Sequence[Command], prefix: str, size: int) -> list[tuple[list[str], bytes]]:
        out = []
        far = 2**62
        for start in range(0, len(commands), size):
            chunk = commands[start : start + size]
            ids = [f"{prefix}:{start + i}" for i in range(len(chunk))]
            routed = tuple(RoutedCommand(rid, self.reply_to, far, command) for rid, command in zip(ids, chunk))
            out.append((ids, encode(CommandEntry(routed))))
        return out

    async def send(self, entries: list[tuple[list[str], bytes]], timeout: float) -> dict[str, int]:
        """Write every entry, keeping the window; returns request id -> write time (ns)."""
        sent: dict[str, int] = {}
        clock = time.perf_counter_ns
        total = sum(len(ids) for ids, _ in entries)
        start_done = self.done
        deadline = time.monotonic() + timeout
        written = 0
        for ids, payload in entries:
            while written + len(ids) - (self.done - start_done) > self.window:
                self._arrived.clear()
                await asyncio.wait_for(self._arrived.wait(), max(0.1, deadline - time.monotonic()))
            now = clock()
            await self.client.xadd(COMMANDS, {"m": payload})
            for rid in ids:
                sent[rid] = now
            written += len(ids)
        while self.done - start_done < total:
            self._arrived.clear()
            await asyncio.wait_for(self._arrived.wait(), max(0.1, deadline - time.monotonic()))
        return sent


def percentile(values: list[int], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(q * len(ordered)))] / 1e6


async def run_load(url: str, workload: Workload, args: argparse.Namespace, layout: Layout) -> dict[str, Any]:
    async with Generator(url, args.window) as gen:
        funding: list[Command] = []
        for user in workload.users:
            funding.append(Deposit(0, 0, user, workload.specs[0].quote.symbol, FUNDING_QUOTE, f"{user}-q"))
            for spec in workload.specs:
                funding.append(Deposit(0, 0, user, spec.base.symbol, FUNDING_BASE, f"{user}-{spec.base.symbol}"))
        await gen.send(gen.entries(funding, "fund", 64), args.timeout)
        await gen.send(gen.entries([GetBalances(0, 0, "probe")], "probe", 1), args.timeout)
        base = gen.replies["probe:0"][1].seq + 1
        commands: list[Command] = []
        for command in workload.core_commands:  # numbered 1..n: the engine gives them base .. base + n - 1
            if isinstance(command, CancelOrder):
                commands.append(CancelOrder(0, 0, command.user_id, command.market, base + command.order_id - 1))
            else:
                commands.append(command)
        entries = gen.entries(commands, "o", args.entry)
        before = layout.cpu()
        started = time.perf_counter_ns()
        sent = await gen.send(entries, args.timeout)
        ended = max(gen.replies[rid][0] for rid in sent)
        after = layout.cpu()
    n = len(commands)
    seconds = (ended - started) / 1e9
    latencies = [gen.replies[rid][0] - at for rid, at in sent.items()]
    codes: dict[str, int] = {}
    for rid in sent:
        reply = gen.replies[rid][1]
        codes[reply.code.name] = codes.get(reply.code.name, 0) + 1
    placed = [rid for rid in sent if isinstance(commands[int(rid.split(":")[1])], PlaceOrder)][:50]
    for rid in placed:  # the engine numbered them as predicted (cancels name the right orders)
        reply = gen.replies[rid][1]
        assert reply.seq == base + int(rid.split(":")[1]), (rid, reply.seq, base)
    us = 1e6 / n
    shards = [a - b for a, b in zip(after["shards"], before["shards"])]
    return {
        "orders": n,
        "orders_per_s": n / seconds,
        "p50_ms": percentile(latencies, 0.5),
        "p99_ms": percentile(latencies, 0.99),
        "cpu_us": {
            "engine": (after["engine"] - before["engine"]) * us,
            "shards": sum(shards) * us,
            "busiest_shard": max(shards, default=0.0) * us,
            "redis": (after["redis"] - before["redis"]) * us,
            "generator": (after["generator"] - before["generator"]) * us,
        },
        "codes": codes,
        "ok": codes.get(ResultCode.OK.name, 0),
    }


def one_run(layout_name: str, workload: Workload, args: argparse.Namespace) -> dict[str, Any]:
    work = Path(tempfile.mkdtemp(prefix=f"shard-bench-{layout_name}-"))
    layout = Layout(layout_name, workload, work, args)
    try:
        result = asyncio.run(run_load(layout.url, workload, args, layout))
    finally:
        layout.close()
    if args.valgrind:
        result["instructions"] = layout.instructions()
    shutil.rmtree(work, ignore_errors=True)
    return result


def count_instructions(name: str, args: argparse.Namespace) -> float:
    """Instructions per order of the balance (or engine) process: runs of N and 2N orders, differenced."""
    counts = []
    for orders in (args.orders, 2 * args.orders):
        counts.append(one_run(name, make_workload(orders, 4, args.seed), args)["instructions"])
    per_order = (counts[1] - counts[0]) / args.orders
    print(
        f"{name:>6}: {per_order:,.0f} instructions per order in the {'engine' if name == 'engine' else 'balance'} "
        f"process ({counts[0]:,} for {args.orders:,} orders, {counts[1]:,} for {2 * args.orders:,})",
        flush=True,
    )
    return per_order


def load_average() -> str:
    return " ".join(f"{value:.2f}" for value in os.getloadavg())


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.shard_bench", description=__doc__.split("\n\n")[0])
    parser.add_argument("--layouts", default="engine,1,2,4", help="engine and/or shard counts (default engine,1,2,4)")
    parser.add_argument("--orders", type=int, default=100_000, help="commands per run, over 4 markets (default 100000)")
    parser.add_argument("--runs", type=int, default=3, help="runs per layout; medians are reported (default 3)")
    parser.add_argument("--window", type=int, default=4000, help="most commands unanswered (default 4000)")
    parser.add_argument("--entry", type=int, default=64, help="commands per stream entry (default 64)")
    parser.add_argument("--seed", type=int, default=1)
    parser.add_argument("--no-fsync", action="store_true", help="journal without fsync")
    parser.add_argument("--history", action="store_true", help="keep the SQLite history database in each process")
    parser.add_argument("--timeout", type=float, default=300.0, help="seconds a run may take (default 300)")
    parser.add_argument("--json", help="write every run's figures here")
    parser.add_argument(
        "--valgrind", action="store_true", help="count the balance (or engine) process's instructions per order"
    )
    args = parser.parse_args(argv)
    if args.valgrind:
        for name in args.layouts.split(","):
            count_instructions(name, args)
        return 0
    workload = make_workload(args.orders, 4, args.seed)
    report: dict[str, Any] = {"load_average_before": load_average(), "layouts": {}}
    for name in args.layouts.split(","):
        runs = []
        for number in range(args.runs):
            result = one_run(name, workload, args)
            result["load_average"] = load_average()
            runs.append(result)
            cpu = result["cpu_us"]
            print(
                f"{name:>6} run {number + 1}: {result['orders_per_s']:9,.0f} orders/s  p50 {result['p50_ms']:6.1f} ms"
                f"  p99 {result['p99_ms']:6.1f} ms  cpu us/order: engine/balance {cpu['engine']:5.1f}"
                f"  shards {cpu['shards']:5.1f} (busiest {cpu['busiest_shard']:5.1f})  redis {cpu['redis']:4.1f}"
                f"  generator {cpu['generator']:4.1f}  load {result['load_average']}",
                flush=True,
            )
        report["layouts"][name] = runs
        median = {
            "orders_per_s": statistics.median(r["orders_per_s"] for r in runs),
            "p50_ms": statistics.median(r["p50_ms"] for r in runs),
            "p99_ms": statistics.median(r["p99_ms"] for r in runs),
            "cpu_us": {k: statistics.median(r["cpu_us"][k] for r in runs) for k in runs[0]["cpu_us"]},
        }
        report["layouts"][name + "_median"] = median
        cpu = median["cpu_us"]
        print(
            f"{name:>6} median: {median['orders_per_s']:9,.0f} orders/s  p50 {median['p50_ms']:6.1f} ms  p99 "
            f"{median['p99_ms']:6.1f} ms  cpu us/order: engine/balance {cpu['engine']:5.1f}  shards "
            f"{cpu['shards']:5.1f} (busiest {cpu['busiest_shard']:5.1f})  redis {cpu['redis']:4.1f}  codes "
            f"{runs[-1]['codes']}",
            flush=True,
        )
    report["load_average_after"] = load_average()
    if args.json:
        Path(args.json).write_text(json.dumps(report, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
