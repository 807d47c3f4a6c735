"""Durability benchmark: engine throughput with the journal on and off, and the time to recover.

    python -m bench.durability_bench [--orders N] [--runs R] [--recovery-commands M]

1. The engine benchmark's workload (bench/engine_bench.py: producer threads, bounded windows, fills
   settled) on an in-memory engine and on one journaling to a fresh data directory with fsync, in
   the same run; median of R runs each, and the ratio (target: on >= 70% of off).
2. Recovery: a data directory holding a snapshot and then M journaled commands (default 1,000,000)
   written by a real engine, abandoned without a shutdown snapshot (as a crash leaves it); a fresh
   process then recovers it (`Persistence.recover`: load the snapshot, replay the journal) and the
   wall time is reported (target: under 20 s for 1,000,000 commands).
"""

from __future__ import annotations

import argparse
import pathlib
import shutil
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Sequence

from bench import engine_bench
from openbell.actors.engine import Engine, tune_garbage_collector
from openbell.core.commands import Deposit, PlaceOrder
from openbell.core.types import OrderType, Side, TimeInForce
from openbell.durability.persistence import Persistence

SPEC_MARKETS = 1


def throughput(orders: int, runs: int, producers: int, window: int) -> dict[str, object]:
    workload = engine_bench.make_workload(orders, SPEC_MARKETS, 1)
    off: list[float] = []
    on: list[float] = []
    p99_off: list[float] = []
    p99_on: list[float] = []
    for _ in range(runs):
        result = engine_bench.engine_run(workload, producers, window, 120)
        off.append(result["orders_per_second"])
        p99_off.append(result["p99_ns"] / 1e6)
        data_dir = pathlib.Path(tempfile.mkdtemp(prefix="openbell-bench-"))
        try:

            def make(directory: pathlib.Path = data_dir) -> Engine:
                return Engine(
                    max_open_orders_per_user=10**6,
                    persistence=Persistence(directory, snapshot_every_commands=10**9, snapshot_every_seconds=10**9),
                )

            result = engine_bench.engine_run(workload, producers, window, 120, make_engine=make)
            on.append(result["orders_per_second"])
            p99_on.append(result["p99_ns"] / 1e6)
        finally:
            shutil.rmtree(data_dir, ignore_errors=True)
    return {
        "off": statistics.median(off),
        "on": statistics.median(on),
        "ratio": statistics.median(on) / statistics.median(off),
        "p99_off_ms": statistics.median(p99_off),
        "p99_on_ms": statistics.median(p99_on),
        "runs_off": off,
        "runs_on": on,
    }


def write_journal(data_dir: pathlib.Path, commands: int, users: int = 200) -> float:
    """A snapshot, then `commands` journaled orders; left without a shutdown snapshot. Returns seconds."""
    from openbell.options import DEFAULT_ASSETS, DEFAULT_MARKETS, parse_markets

    persistence = Persistence(data_dir, snapshot_every_commands=10**12, snapshot_every_seconds=10**9)
    engine = Engine(max_open_orders_per_user=10**6, persistence=persistence).start(
        parse_markets(DEFAULT_MARKETS, DEFAULT_ASSETS)
    )
    for user in range(users):
        for asset in ("INR", "TATA"):
            engine.call(engine.new(Deposit, user_id=f"u{user}", asset=asset, amount=10**15, txn_id=f"{user}{asset}"))
    persistence.snapshot(engine.balance_core, wait=True)  # quiet: nothing in flight after the calls
    done = threading.Semaphore(0)
    window = 2048
    started = time.perf_counter()
    for i in range(commands):
        if i >= window:
            done.acquire()
        side = Side.BUY if i % 2 else Side.SELL
        price = 10_000 + (i * 7919 % 41) - 20 + (3 if side is Side.BUY else -3)
        engine.submit(
            engine.new(
                PlaceOrder,
                user_id=f"u{i % users}",
                market="TATA_INR",
                side=side,
                order_type=OrderType.LIMIT,
                time_in_force=TimeInForce.GTC,
                price=price,
                quantity=1 + i % 5,
            ),
            lambda reply: done.release(),
        )
        if i % 100_000 == 0 and i:
            print(f"  journaled {i:,} commands ({time.perf_counter() - started:.0f} s)", flush=True)
    for _ in range(min(window, commands)):
        done.acquire()
    elapsed = time.perf_counter() - started
    persistence.journal.journal.flush()  # type: ignore[union-attr]
    # Abandon the engine as a crash would: no stop(), so no shutdown snapshot.
    return elapsed


WRITE = """
import os, pathlib, sys
from bench.durability_bench import write_journal
from openbell.actors.engine import tune_garbage_collector
tune_garbage_collector()
seconds = write_journal(pathlib.Path(sys.argv[1]), int(sys.argv[2]))
print(seconds, flush=True)
os._exit(0)
"""

RECOVER = """
import pathlib, sys, time
from openbell.actors.engine import tune_garbage_collector
from openbell.durability.persistence import Persistence
tune_garbage_collector()
started = time.perf_counter()
replayed = Persistence(pathlib.Path(sys.argv[1])).recover(10**6)
elapsed = time.perf_counter() - started
book = replayed.markets["TATA_INR"].book
print(f"{elapsed:.3f} {replayed.records} {len(book)} {book.next_trade_id - 1}")
"""


def recovery(commands: int, runs: int) -> dict[str, object]:
    data_dir = pathlib.Path(tempfile.mkdtemp(prefix="openbell-recovery-"))
    try:
        print(f"writing a snapshot and {commands:,} journaled commands ...", flush=True)
        # In a child process that then dies without stopping the engine, as a crash would.
        child = subprocess.run(
            [sys.executable, "-c", WRITE, str(data_dir), str(commands)], capture_output=True, text=True, timeout=1800
        )
        if child.returncode != 0:
            raise RuntimeError(f"writing the journal failed:\n{child.stderr[-4000:]}")
        write_seconds = float(child.stdout.split()[-1])
        size = sum(p.stat().st_size for p in (data_dir / "journal").glob("*.log"))
        times = []
        detail = ""
        for _ in range(runs):
            out = subprocess.run(
                [sys.executable, "-c", RECOVER, str(data_dir)], capture_output=True, text=True, timeout=600, check=True
            ).stdout.split()
            times.append(float(out[0]))
            detail = f"{int(out[1]):,} journal records replayed; {int(out[2]):,} open orders, {int(out[3]):,} trades"
        return {
            "commands": commands,
            "write_seconds": write_seconds,
            "journal_bytes": size,
            "recover_seconds": statistics.median(times),
            "runs": times,
            "detail": detail,
        }
    finally:
        shutil.rmtree(data_dir, ignore_errors=True)


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.durability_bench", description=__doc__.split("\n")[0])
    parser.add_argument("--orders", type=int, default=100_000, help="commands per throughput run (default 100000)")
    parser.add_argument("--runs", type=int, default=3, help="runs of each measurement (default 3)")
    parser.add_argument("--producers", type=int, default=4)
    parser.add_argument("--window", type=int, default=256)
    parser.add_argument("--recovery-commands", type=int, default=1_000_000, help="journaled commands (default 1000000)")
    parser.add_argument("--skip-throughput", action="store_true")
    args = parser.parse_args(argv)
    tune_garbage_collector()
    if not args.skip_throughput:
        t = throughput(args.orders, args.runs, args.producers, args.window)
        print(
            f"engine, 1 market, {args.producers} producers x window {args.window}, median of {args.runs}: "
            f"journal off {t['off']:,.0f} orders/s (p99 {t['p99_off_ms']:.1f} ms), "
            f"journal on (fsync) {t['on']:,.0f} orders/s (p99 {t['p99_on_ms']:.1f} ms): "
            f"on/off = {t['ratio']:.0%} (target >= 70%)"
        )
    r = recovery(args.recovery_commands, args.runs)
    print(
        f"recovery of a snapshot + {r['commands']:,} journaled commands ({r['journal_bytes'] / 1e6:.0f} MB, written in "
        f"{r['write_seconds']:.0f} s): median {r['recover_seconds']:.2f} s of {[round(x, 2) for x in r['runs']]} "
        f"(target < 20 s); {r['detail']}"
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
