"""Matching-core benchmark: the order book alone, the book with the ledger, and a plain baseline.

Run from the repository root:

    .venv/bin/python -m bench.core_bench [--orders N] [--runs R] [--seed S] [--json PATH] [--profile]

One stream from `bench.streams` (TATA_INR, about a hundred users) is generated and turned into commands
before anything is timed. Each scenario then replays the same commands on fresh state:

- `plain`: a minimal SortedDict + deque price-time matcher written here, with no validation, no events
  and no funds; the floor that any Python matcher on these structures pays;
- `book`: `OrderBook.place` / `OrderBook.cancel`;
- `book+ledger`: `validate_order` -> `Ledger.hold_for` -> `OrderBook.place` -> `Ledger.settle`, and for cancels
  `OrderBook.cancel` -> `Ledger.settle`, with every user funded far beyond need so nothing is refused.

Throughput is the median over `--runs` passes of commands per second, each pass timed as a whole with
garbage collection left on (as in production) after a `gc.collect()`. Latency comes from one more pass
per scenario that reads `time.perf_counter_ns` around every command, kept apart so the clock reads do
not slow the throughput passes; the clock's own cost is printed alongside. After timing, an untimed
pass replays book + ledger counting events and checks both invariants, so a fast run is also a correct one.
"""

from __future__ import annotations

import argparse
import cProfile
import datetime
import gc
import json
import os
import platform
import statistics
import sys
import time
from collections import Counter, deque
from collections.abc import Callable, Sequence
from dataclasses import dataclass

from sortedcontainers import SortedDict

from bench import streams
from openbell.core.book import OrderBook
from openbell.core.commands import CancelOrder, PlaceOrder
from openbell.core.events import OrderExpired, OrderRejected, TradeExecuted
from openbell.core.grid import MarketSpec
from openbell.core.ledger import Ledger
from openbell.core.orders import validate_order
from openbell.core.types import ResultCode, Side, TimeInForce

TARGET_ORDERS_PER_SECOND = 300_000
"""Target for book + ledger throughput."""
TARGET_P99_NS = 10_000
"""Target for book + ledger per-command p99 latency."""
FUNDING_QUOTE_UNITS = 10**13
"""INR minor units each user starts with: far more than any user can lock."""
FUNDING_BASE_UNITS = 10**11
"""TATA minor units each user starts with."""

Command = PlaceOrder | CancelOrder
BUY = Side.BUY
GTC = TimeInForce.GTC
OK = ResultCode.OK


@dataclass(slots=True)
class Engine:
    """One scenario's fresh state, reduced to what the timing loops call."""

    place: Callable[[PlaceOrder], object]
    cancel: Callable[[CancelOrder], object]
    resting: Callable[[], int]
    """Orders resting on the book now (for a sanity line in the report)."""


def make_plain(spec: MarketSpec, users: Sequence[str]) -> Engine:
    """The baseline: price-time matching on SortedDict + deque, and nothing else.

    A resting order is a list [remaining lots, order id, user id]. A cancel zeroes `remaining` and the
    matching loop drops zeroed entries when it meets them, so a level may linger with only canceled
    orders until then. Market and IOC remainders are dropped; a GTC limit rests what is left. There is
    no self-trade prevention, no validation and no event.
    """
    bids: SortedDict = SortedDict()  # -price -> deque of entries
    asks: SortedDict = SortedDict()  # price -> deque of entries
    index: dict[int, list] = {}

    def place(cmd: PlaceOrder) -> None:
        buying = cmd.side is BUY
        book = asks if buying else bids
        limit = cmd.price
        remaining = cmd.quantity or 0
        while remaining and book:
            key, level = book.peekitem(0)
            if limit is not None and (key > limit if buying else -key < limit):
                break
            while remaining and level:
                maker = level[0]
                available = maker[0]
                if available == 0:  # canceled
                    level.popleft()
                elif remaining < available:
                    maker[0] = available - remaining
                    remaining = 0
                else:
                    remaining -= available
                    maker[0] = 0
                    level.popleft()
                    del index[maker[1]]
            if not level:
                del book[key]
        if remaining and limit is not None and cmd.time_in_force is GTC:
            own, key = (bids, -limit) if buying else (asks, limit)
            level = own.get(key)
            if level is None:
                level = own[key] = deque()
            entry = [remaining, cmd.seq, cmd.user_id]
            level.append(entry)
            index[cmd.seq] = entry

    def cancel(cmd: CancelOrder) -> None:
        entry = index.get(cmd.order_id)
        if entry is not None and entry[2] == cmd.user_id:
            del index[cmd.order_id]
            entry[0] = 0

    return Engine(place, cancel, index.__len__)


def make_book(spec: MarketSpec, users: Sequence[str]) -> Engine:
    book = OrderBook(spec)
    book_cancel = book.cancel

    def cancel(cmd: CancelOrder) -> list[object]:
        return book_cancel(cmd.order_id, cmd.user_id, cmd.ts)

    return Engine(book.place, cancel, book.__len__)


def funded_ledger(spec: MarketSpec, users: Sequence[str]) -> Ledger:
    ledger = Ledger()
    ledger.add_market(spec)
    for user_id in users:
        ledger.deposit(user_id, spec.quote.symbol, FUNDING_QUOTE_UNITS, f"fund-{user_id}-quote")
        ledger.deposit(user_id, spec.base.symbol, FUNDING_BASE_UNITS, f"fund-{user_id}-base")
    return ledger


def make_book_and_ledger(spec: MarketSpec, users: Sequence[str]) -> Engine:
    book = OrderBook(spec)
    ledger = funded_ledger(spec, users)
    hold_for = ledger.hold_for
    settle = ledger.settle
    book_place = book.place
    book_cancel = book.cancel

    def place(cmd: PlaceOrder) -> None:
        if validate_order(cmd) is not None:  # the one validation, as the balance stage runs it
            return
        code, cmd = hold_for(cmd)
        if code is OK:
            settle(book_place(cmd))

    def cancel(cmd: CancelOrder) -> None:
        settle(book_cancel(cmd.order_id, cmd.user_id, cmd.ts))

    return Engine(place, cancel, book.__len__)


SCENARIOS: dict[str, Callable[[MarketSpec, Sequence[str]], Engine]] = {
    "plain": make_plain,
    "book": make_book,
    "book+ledger": make_book_and_ledger,
}


def time_throughput(engine: Engine, commands: Sequence[Command]) -> int:
    """Nanoseconds to replay every command, timed as a whole."""
    place = engine.place
    cancel = engine.cancel
    cancel_class = CancelOrder
    gc.collect()
    start = time.perf_counter_ns()
    for cmd in commands:
        if cmd.__class__ is cancel_class:
            cancel(cmd)  # type: ignore[arg-type]
        else:
            place(cmd)  # type: ignore[arg-type]
    return time.perf_counter_ns() - start


def time_each(engine: Engine, commands: Sequence[Command]) -> list[int]:
    """Nanoseconds for each command, in stream order."""
    place = engine.place
    cancel = engine.cancel
    cancel_class = CancelOrder
    clock = time.perf_counter_ns
    samples = [0] * len(commands)
    gc.collect()
    for i, cmd in enumerate(commands):
        if cmd.__class__ is cancel_class:
            start = clock()
            cancel(cmd)  # type: ignore[arg-type]
            samples[i] = clock() - start
        else:
            start = clock()
            place(cmd)  # type: ignore[arg-type]
            samples[i] = clock() - start
    return samples


def clock_overhead_ns(reads: int = 100_000) -> int:
    """Median cost of one back-to-back pair of `perf_counter_ns` reads."""
    clock = time.perf_counter_ns
    deltas = []
    for _ in range(reads):
        start = clock()
        deltas.append(clock() - start)
    return int(statistics.median(deltas))


def percentile(sorted_samples: Sequence[int], fraction: float) -> int:
    """Nearest-rank percentile of already sorted samples."""
    rank = max(0, min(len(sorted_samples) - 1, round(fraction * len(sorted_samples)) - 1))
    return sorted_samples[rank]


def replay_checked(spec: MarketSpec, users: Sequence[str], commands: Sequence[Command]) -> dict[str, int]:
    """Untimed: replay book + ledger, count what happened, and check both sides' invariants."""
    book = OrderBook(spec)
    ledger = funded_ledger(spec, users)
    counts: Counter[str] = Counter()
    for cmd in commands:
        if isinstance(cmd, CancelOrder):
            events = book.cancel(cmd.order_id, cmd.user_id, cmd.ts)
        else:
            code, cmd = ledger.hold_for(cmd)
            if code is not OK:
                counts[f"refused_by_ledger_{code.name.lower()}"] += 1
                continue
            events = book.place(cmd)
        ledger.settle(events)
        for event in events:
            if type(event) is TradeExecuted:
                counts["trades"] += 1
            elif type(event) is OrderRejected:
                counts[f"rejected_{event.code.name.lower()}"] += 1
            elif type(event) is OrderExpired:
                counts[f"expired_{event.reason.name.lower()}"] += 1
    book.check_invariants()
    ledger.check_invariants()
    counts["resting_at_end"] = len(book)
    counts["bid_levels_at_end"] = len(book.depth(10**9)[0])
    counts["ask_levels_at_end"] = len(book.depth(10**9)[1])
    return dict(sorted(counts.items()))


def machine() -> dict[str, object]:
    model = "unknown"
    try:
        with open("/proc/cpuinfo", encoding="utf-8") as cpuinfo:
            for line in cpuinfo:
                if line.startswith("model name"):
                    model = line.split(":", 1)[1].strip()
                    break
    except OSError:
        pass
    return {
        "nproc": len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count(),
        "cpu_model": model,
        "python": f"{platform.python_implementation()} {platform.python_version()}",
        "platform": platform.platform(),
        "date": datetime.datetime.now(datetime.UTC).strftime("%Y-%m-%d %H:%M UTC"),
    }


def run(orders: int, runs: int, seed: int) -> dict[str, object]:
    spec = streams.market_spec()
    mix = streams.StreamMix()
    users = streams.user_ids(mix.users)
    started = time.perf_counter()
    items = list(streams.generate(orders, seed, mix))
    commands: list[Command] = [streams.to_command(item, spec.symbol) for item in items]
    generation_seconds = time.perf_counter() - started
    kinds = Counter(
        "cancel"
        if isinstance(item, streams.Cancel)
        else f"{'crossing' if item.crossing else 'resting'} {item.order_type.value} {item.time_in_force.value}"
        for item in items
    )
    overhead = clock_overhead_ns()

    results: dict[str, dict[str, object]] = {}
    for name, make in SCENARIOS.items():
        elapsed = [time_throughput(make(spec, users), commands) for _ in range(runs)]
        engine = make(spec, users)
        samples = sorted(time_each(engine, commands))
        rates = [orders * 1e9 / ns for ns in elapsed]
        results[name] = {
            "orders_per_second": statistics.median(rates),
            "orders_per_second_runs": rates,
            "mean_ns_per_order": statistics.median(elapsed) / orders,
            "p50_ns": percentile(samples, 0.50),
            "p99_ns": percentile(samples, 0.99),
            "p999_ns": percentile(samples, 0.999),
            "max_ns": samples[-1],
            "resting_at_end": engine.resting(),
        }
    plain = results["plain"]
    for result in results.values():
        result["throughput_vs_plain"] = result["orders_per_second"] / plain["orders_per_second"]  # type: ignore[operator]
        result["p50_vs_plain"] = result["p50_ns"] / plain["p50_ns"]  # type: ignore[operator]
        result["p99_vs_plain"] = result["p99_ns"] / plain["p99_ns"]  # type: ignore[operator]
    target = results["book+ledger"]
    return {
        "machine": machine(),
        "params": {"orders": orders, "runs": runs, "seed": seed, "market": spec.symbol, "users": mix.users},
        "stream": {"generation_seconds": generation_seconds, "kinds": dict(sorted(kinds.items()))},
        "clock_overhead_ns": overhead,
        "scenarios": results,
        "replay_check": replay_checked(spec, users, commands),
        "targets": {
            "book+ledger_orders_per_second": TARGET_ORDERS_PER_SECOND,
            "book+ledger_p99_ns": TARGET_P99_NS,
            "throughput_met": target["orders_per_second"] >= TARGET_ORDERS_PER_SECOND,  # type: ignore[operator]
            "p99_met": target["p99_ns"] < TARGET_P99_NS,  # type: ignore[operator]
        },
    }


def markdown(report: dict[str, object]) -> str:
    machine_info = report["machine"]
    params = report["params"]
    scenarios = report["scenarios"]
    targets = report["targets"]
    assert isinstance(machine_info, dict) and isinstance(params, dict)
    assert isinstance(scenarios, dict) and isinstance(targets, dict)
    lines = [
        f"{machine_info['date']} - {machine_info['cpu_model']}, nproc {machine_info['nproc']}, {machine_info['python']}",
        f"{params['orders']:,} commands ({params['market']}, {params['users']} users, seed {params['seed']}), "
        f"median of {params['runs']} runs; perf_counter_ns pair costs {report['clock_overhead_ns']} ns "
        "(included in the latencies)",
        "",
        "| scenario | orders/s (median) | runs min-max | mean ns/order | p50 us | p99 us | p99.9 us | max us "
        "| throughput vs plain | p99 vs plain |",
        "|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|",
    ]
    for name, r in scenarios.items():
        runs = r["orders_per_second_runs"]
        lines.append(
            f"| {name} | {r['orders_per_second']:,.0f} | {min(runs):,.0f}-{max(runs):,.0f} "
            f"| {r['mean_ns_per_order']:,.0f} | {r['p50_ns'] / 1000:.2f} | {r['p99_ns'] / 1000:.2f} "
            f"| {r['p999_ns'] / 1000:.2f} | {r['max_ns'] / 1000:,.0f} "
            f"| {r['throughput_vs_plain']:.2f}x | {r['p99_vs_plain']:.2f}x |"
        )
    lines += [
        "",
        f"Targets (book+ledger): >= {targets['book+ledger_orders_per_second']:,} orders/s: "
        f"{'met' if targets['throughput_met'] else 'NOT met'}; "
        f"p99 < {targets['book+ledger_p99_ns'] / 1000:.0f} us: {'met' if targets['p99_met'] else 'NOT met'}",
        f"Stream: {report['stream']}",  # type: ignore[index]
        f"Replay check (book+ledger, invariants hold): {report['replay_check']}",
    ]
    return "\n".join(lines)


def profile(orders: int, seed: int, top: int) -> None:
    """cProfile one book + ledger pass and print the costliest functions, by own time and by total time.

    `pstats` is not used: it files every dataclass-generated `__init__` under the same "<string>:2"
    key and keeps only one of them, which hides what building events costs. Entries are summed here
    by code object instead, with dataclass `__init__`s named after their class.
    """
    spec = streams.market_spec()
    mix = streams.StreamMix()
    users = streams.user_ids(mix.users)
    commands = [streams.to_command(item, spec.symbol) for item in streams.generate(orders, seed, mix)]
    engine = make_book_and_ledger(spec, users)
    profiler = cProfile.Profile()
    profiler.enable()
    time_throughput(engine, commands)
    profiler.disable()
    names = _generated_init_names()
    rows: dict[str, list[float]] = {}
    for entry in profiler.getstats():
        code = entry.code
        if isinstance(code, str):
            label = code
        else:
            label = names.get(id(code)) or f"{os.path.relpath(code.co_filename)}:{code.co_firstlineno}({code.co_name})"
        row = rows.setdefault(label, [0, 0.0, 0.0])
        row[0] += entry.callcount
        row[1] += entry.inlinetime
        row[2] += entry.totaltime
    total = sum(row[1] for row in rows.values())
    for title, column in (("own time", 1), ("total time (own + callees)", 2)):
        print(f"\nTop {top} by {title}; profiled run {total:.2f} s (cProfile inflates small calls)")
        print(f"{'calls':>10} {'own s':>8} {'total s':>8} {'own %':>6}  function")
        for label, (calls, own, cumulative) in sorted(rows.items(), key=lambda item: -item[1][column])[:top]:
            print(f"{int(calls):>10} {own:>8.3f} {cumulative:>8.3f} {100 * own / total:>5.1f}%  {label}")


def _generated_init_names() -> dict[int, str]:
    """Ids of the code objects of dataclass-generated `__init__`s in the engine's records, named after their class.

    Keyed by identity: two records with the same fields have equal code objects.
    """
    from openbell.core import commands, events

    names: dict[int, str] = {}
    for module in (commands, events):
        for value in vars(module).values():
            init = getattr(value, "__init__", None)
            code = getattr(init, "__code__", None)
            if isinstance(value, type) and code is not None and code.co_filename == "<string>":
                names[id(code)] = f"{value.__name__}.__init__ (dataclass, {module.__name__.rsplit('.', 1)[-1]})"
    return names


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.core_bench", description=__doc__.split("\n")[0])
    parser.add_argument("--orders", type=int, default=200_000, help="commands in the stream (default 200000)")
    parser.add_argument("--runs", type=int, default=5, help="throughput passes per scenario (default 5)")
    parser.add_argument("--seed", type=int, default=1, help="stream seed (default 1)")
    parser.add_argument("--json", metavar="PATH", help="also write the results as JSON to PATH")
    parser.add_argument("--profile", action="store_true", help="instead, cProfile one book+ledger pass")
    parser.add_argument("--top", type=int, default=25, help="with --profile: functions to list (default 25)")
    args = parser.parse_args(argv)
    if args.orders <= 0 or args.runs <= 0:
        parser.error("--orders and --runs must be positive")
    if args.profile:
        profile(args.orders, args.seed, args.top)
        return 0
    report = run(args.orders, args.runs, args.seed)
    print(markdown(report))
    if args.json:
        with open(args.json, "w", encoding="utf-8") as out:
            json.dump(report, out, indent=2)
            out.write("\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
