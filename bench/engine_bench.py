"""Engine benchmark: orders through the actors, from many producer threads, until their settled replies.

Run from the repository root:

    .venv/bin/python -m bench.engine_bench [--orders N] [--runs R] [--producers P] [--window W]
        [--markets 1,4] [--switch 0.005,0.0005,0.0001] [--max-batch 512] [--json PATH]
        [--profile sections|yappi] [--timeout S]

Workload: one stream per market from `bench.streams` (seeds `seed`, `seed + 1`, ...; the `--orders` total
is split evenly over the markets), merged round-robin into one sequence. Producer `p` gets, in that
order, the items of the users whose number is `p` modulo `--producers`, so each user's cancels follow
its own orders in the same thread. Users are funded with `Deposit` through `engine.call` before timing.

Each producer thread builds every command with `engine.new` and sends it with `engine.submit(command,
callback)`, keeping at most `--window` commands outstanding (it sleeps on an event until the balance
actor's reply callbacks bring it down to three quarters of the window). An order is complete when its
reply arrives, which the balance actor sends only after the market's settlement is applied to the ledger.

- throughput: commands / (last reply - first submit), median over `--runs` runs;
- latency: `time.perf_counter_ns` just before `submit` to the start of the callback; p50/p99/p99.9 are
  the medians over runs of each run's percentiles;
- core: the same commands replayed in one thread on `OrderBook` + `Ledger` (hold_for -> place -> settle,
  via `bench.core_bench`), the engine's ceiling were the actors free; the report gives engine / core.

Each configuration is run at every `sys.setswitchinterval` value of `--switch` (the GIL hand-off
interval: with several busy threads, a thread that wants the GIL waits up to that long).
Every run is bounded: it aborts with a message after `--timeout` seconds (default 120).

`--profile sections` wraps the actors' handlers with wall-clock counters (one run per configuration);
`--profile yappi` runs yappi over all threads (needs `pip install yappi`, or PYTHONPATH to one).
"""

from __future__ import annotations

import argparse
import gc
import json
import os
import statistics
import sys
import threading
import time
from collections import Counter
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

from bench import core_bench, streams
from openbell.actors import balance as balance_module
from openbell.actors.balance import BalanceActor
from openbell.actors.engine import Engine, tune_garbage_collector
from openbell.actors.market import MarketActor
from openbell.core.book import OrderBook
from openbell.core.commands import CancelOrder, Deposit, GetBalances, PlaceOrder
from openbell.core.grid import Asset, MarketSpec, make_market_spec
from openbell.core.matching import MarketCore
from openbell.core.messages import Reply
from openbell.core.risk import BalanceCore
from openbell.core.types import ResultCode

TARGET_ORDERS_PER_SECOND = 100_000
TARGET_P99_NS = 2_000_000
DEFAULT_SWITCH = (0.005, 0.0005, 0.0001)
OK = ResultCode.OK

Command = PlaceOrder | CancelOrder


class RunAborted(Exception):
    """A run went over its time bound."""


# --------------------------------------------------------------------------- workload
def market_specs(count: int) -> list[MarketSpec]:
    """TATA_INR alone, or TATA_INR, TATB_INR, ... sharing INR (same grid as `streams.market_spec`)."""
    if count == 1:
        return [streams.market_spec()]
    assets = {"INR": Asset("INR", 2)}
    specs = []
    for i in range(count):
        base = f"TAT{chr(ord('A') + i)}"
        assets[base] = Asset(base, 2)
        specs.append(make_market_spec(f"{base}_INR", "0.01", "1", assets))
    return specs


@dataclass(slots=True)
class Workload:
    specs: list[MarketSpec]
    users: list[str]
    merged: list[tuple[int, streams.StreamItem]]
    """(market index, item) in the order all markets' streams are interleaved."""
    core_commands: list[Command]
    """The merged sequence as commands numbered 1..n (cancels renumbered), for the one-thread core."""
    kinds: dict[str, int]


def make_workload(orders: int, markets: int, seed: int) -> Workload:
    specs = market_specs(markets)
    mix = streams.StreamMix()
    per_market = [orders // markets + (1 if i < orders % markets else 0) for i in range(markets)]
    lists = [list(streams.generate(n, seed + i, mix)) for i, n in enumerate(per_market)]
    merged: list[tuple[int, streams.StreamItem]] = []
    for j in range(max(per_market)):
        for m, items in enumerate(lists):
            if j < len(items):
                merged.append((m, items[j]))
    core_commands: list[Command] = []
    global_id: dict[tuple[int, int], int] = {}
    for number, (m, item) in enumerate(merged, 1):
        symbol = specs[m].symbol
        if isinstance(item, streams.Cancel):
            core_commands.append(CancelOrder(number, item.ts, item.user_id, symbol, global_id[(m, item.order_id)]))
        else:
            global_id[(m, item.seq)] = number
            command = streams.to_command(item, symbol)
            core_commands.append(PlaceOrder(number, *_place_fields(command)))
    kinds = Counter("cancel" if isinstance(item, streams.Cancel) else item.order_type.value for _, item in merged)
    return Workload(specs, streams.user_ids(mix.users), merged, core_commands, dict(sorted(kinds.items())))


def _place_fields(command: PlaceOrder) -> tuple[Any, ...]:
    return (
        command.ts,
        command.user_id,
        command.market,
        command.side,
        command.order_type,
        command.time_in_force,
        command.price,
        command.quantity,
    )


# --------------------------------------------------------------------------- core (one thread)
def make_core(specs: Sequence[MarketSpec], users: Sequence[str]) -> core_bench.Engine:
    """Book + ledger over several markets: one ledger, one book per market (the core_bench loop)."""
    if len(specs) == 1:
        return core_bench.make_book_and_ledger(specs[0], users)
    ledger = core_bench.funded_ledger(specs[0], users)
    for spec in specs[1:]:
        ledger.add_market(spec)
        for user_id in users:
            ledger.deposit(user_id, spec.base.symbol, core_bench.FUNDING_BASE_UNITS, f"fund-{user_id}-{spec.symbol}")
    books = {spec.symbol: OrderBook(spec) for spec in specs}
    hold_for = ledger.hold_for
    settle = ledger.settle

    def place(cmd: PlaceOrder) -> None:
        code, cmd = hold_for(cmd)
        if code is OK:
            settle(books[cmd.market].place(cmd))

    def cancel(cmd: CancelOrder) -> None:
        settle(books[cmd.market].cancel(cmd.order_id, cmd.user_id, cmd.ts))

    return core_bench.Engine(place, cancel, lambda: sum(len(book) for book in books.values()))


def core_rates(workload: Workload, runs: int) -> list[float]:
    n = len(workload.core_commands)
    return [
        n * 1e9 / core_bench.time_throughput(make_core(workload.specs, workload.users), workload.core_commands)
        for _ in range(runs)
    ]


# --------------------------------------------------------------------------- engine run
@dataclass(slots=True, eq=False)
class Producer:
    items: list[tuple[bool, int, int, dict[str, Any]]]
    """(is cancel, market index, stream seq, fields for engine.new)."""
    event: threading.Event = field(default_factory=threading.Event)
    submitted: int = 0
    completed: int = 0
    waiting: bool = False
    cpu_seconds: float = 0.0
    error: BaseException | None = None


def split_producers(workload: Workload, producers: int) -> list[Producer]:
    out = [Producer([]) for _ in range(producers)]
    for m, item in workload.merged:
        symbol = workload.specs[m].symbol
        owner = out[(int(item.user_id[1:]) - 1) % producers]
        if isinstance(item, streams.Cancel):
            fields = {"user_id": item.user_id, "market": symbol}
            owner.items.append((True, m, item.order_id, fields))
        else:
            command = streams.to_command(item, symbol)
            fields = {
                "user_id": command.user_id,
                "market": symbol,
                "side": command.side,
                "order_type": command.order_type,
                "time_in_force": command.time_in_force,
                "price": command.price,
                "quantity": command.quantity,
            }
            owner.items.append((False, m, item.seq, fields))
    return [p for p in out if p.items]


def fund(engine: Engine, workload: Workload) -> None:
    assets = {workload.specs[0].quote.symbol: core_bench.FUNDING_QUOTE_UNITS}
    for spec in workload.specs:
        assets[spec.base.symbol] = core_bench.FUNDING_BASE_UNITS
    for user_id in workload.users:
        for asset, amount in assets.items():
            reply = engine.call(
                engine.new(Deposit, user_id=user_id, asset=asset, amount=amount, txn_id=f"{user_id}-{asset}")
            )
            if not reply.ok:
                raise RuntimeError(f"funding {user_id} {asset} failed: {reply}")


def thread_cpu_seconds() -> dict[str, float]:
    """CPU seconds (user + system) used so far by each live thread of this process, by role.

    Read from /proc (10 ms ticks), so it counts only this process's work and is not inflated by other
    processes competing for the cores, unlike wall-clock figures. Empty where /proc is missing.
    """
    ticks = os.sysconf("SC_CLK_TCK") if hasattr(os, "sysconf") else 100
    out: Counter[str] = Counter()
    for thread in threading.enumerate():
        name = thread.name
        role = (
            "balance"
            if name.startswith("BalanceActor")
            else "markets"
            if name.startswith("MarketActor")
            else "producers"
            if name.startswith("producer-")
            else "other"
        )
        try:
            with open(f"/proc/self/task/{thread.native_id}/stat", encoding="ascii") as stat:
                fields = stat.read().rsplit(")", 1)[1].split()
        except (OSError, IndexError):
            continue
        out[role] += (int(fields[11]) + int(fields[12])) / ticks
    return dict(out)


class GcWatch:
    """Collector pauses during a run, from `gc.callbacks` (any thread's collection stops every thread)."""

    def __init__(self) -> None:
        self.pauses: list[tuple[int, int]] = []
        self._start = 0

    def __call__(self, phase: str, info: dict[str, int]) -> None:
        if phase == "start":
            self._start = time.perf_counter_ns()
        else:
            self.pauses.append((info["generation"], time.perf_counter_ns() - self._start))

    def summary(self) -> dict[str, Any]:
        gen2 = [ns for generation, ns in self.pauses if generation == 2]
        return {
            "gc_collections": len(self.pauses),
            "gc_gen2_collections": len(gen2),
            "gc_pause_total_ms": sum(ns for _, ns in self.pauses) / 1e6,
            "gc_pause_max_ms": max((ns for _, ns in self.pauses), default=0) / 1e6,
        }


def engine_run(
    workload: Workload,
    producers: int,
    window: int,
    timeout: float,
    gc_freeze: bool = False,
    make_engine: Callable[[], Engine] | None = None,
) -> dict[str, Any]:
    """One timed run on a fresh engine (`make_engine()`, default in memory). Raises RunAborted past `timeout` seconds."""
    total = len(workload.merged)
    engine = make_engine() if make_engine is not None else Engine(max_open_orders_per_user=10**6)
    engine.start(workload.specs)
    try:
        fund(engine, workload)
        base = engine.new(GetBalances, user_id="probe").seq + 1  # first seq the producers get
        submit_ns = [0] * total
        done_ns = [0] * total
        codes: list[ResultCode | None] = [None] * total
        workers = split_producers(workload, producers)
        low = window - max(1, window // 4)
        clock = time.perf_counter_ns
        deadline = clock() + int(timeout * 1e9)
        abort = threading.Event()
        barrier = threading.Barrier(len(workers) + 1)

        def make_callback(state: Producer) -> Callable[[Reply], None]:
            event_set = state.event.set

            def callback(reply: Reply) -> None:
                i = reply.seq - base
                done_ns[i] = clock()
                codes[i] = reply.code
                state.completed += 1
                if state.waiting and state.submitted - state.completed <= low:
                    state.waiting = False
                    event_set()

            return callback

        def produce(state: Producer) -> None:
            new = engine.new
            submit = engine.submit
            callback = make_callback(state)
            event = state.event
            ids: dict[tuple[int, int], int] = {}
            submitted = 0
            try:
                barrier.wait(timeout)
                cpu_start = time.thread_time()
                for is_cancel, m, stream_seq, fields in state.items:
                    if submitted - state.completed >= window:
                        state.submitted = submitted
                        state.waiting = True
                        while submitted - state.completed > low:
                            event.wait(0.02)
                            event.clear()
                            if abort.is_set() or clock() > deadline:
                                raise RunAborted("producer gave up waiting for replies")
                        state.waiting = False
                    if is_cancel:
                        command = new(CancelOrder, order_id=ids[(m, stream_seq)], **fields)
                    else:
                        command = new(PlaceOrder, **fields)
                        ids[(m, stream_seq)] = command.seq
                    submit_ns[command.seq - base] = clock()
                    submit(command, callback)
                    submitted += 1
                state.submitted = submitted
                state.cpu_seconds = time.thread_time() - cpu_start
            except BaseException as exc:
                state.error = exc
                abort.set()

        threads = [
            threading.Thread(target=produce, args=(w,), daemon=True, name=f"producer-{i}")
            for i, w in enumerate(workers)
        ]
        gc.collect()
        if gc_freeze:
            gc.freeze()
        watch = GcWatch()
        gc.callbacks.append(watch)
        for thread in threads:
            thread.start()
        barrier.wait(timeout)
        cpu_before = thread_cpu_seconds()
        for thread in threads:
            thread.join(max(0.0, (deadline - clock()) / 1e9))
        while sum(w.completed for w in workers) < total:
            if abort.is_set() or clock() > deadline:
                break
            time.sleep(0.002)
        cpu_after = thread_cpu_seconds()
        done = sum(w.completed for w in workers)
        errors = [w.error for w in workers if w.error is not None]
        if done < total or errors or any(t.is_alive() for t in threads):
            abort.set()
            raise RunAborted(
                f"run aborted after {timeout:.0f} s bound or error: {done:,} of {total:,} replies"
                + (f"; producer error: {errors[0]!r}" if errors else "")
            )
    finally:
        if "watch" in locals():
            gc.callbacks.remove(watch)
        if gc_freeze:
            gc.unfreeze()
        engine.stop()
    first = min(submit_ns)
    last = max(done_ns)
    latencies = sorted(d - s for s, d in zip(submit_ns, done_ns, strict=True))
    code_counts = Counter(c.name for c in codes if c is not None)
    return {
        "orders_per_second": total * 1e9 / (last - first),
        "seconds": (last - first) / 1e9,
        "p50_ns": core_bench.percentile(latencies, 0.50),
        "p99_ns": core_bench.percentile(latencies, 0.99),
        "p999_ns": core_bench.percentile(latencies, 0.999),
        "max_ns": latencies[-1],
        "codes": dict(sorted(code_counts.items())),
        **watch.summary(),
        "cpu_us_per_order": {
            "balance": (cpu_after.get("balance", 0) - cpu_before.get("balance", 0)) * 1e6 / total,
            "markets": (cpu_after.get("markets", 0) - cpu_before.get("markets", 0)) * 1e6 / total,
            "producers": sum(w.cpu_seconds for w in workers) * 1e6 / total,
        },
    }


# --------------------------------------------------------------------------- profiling
class Sections:
    """Wall-clock counters around the actors' handlers, installed by monkeypatching classes."""

    TARGETS = (
        (BalanceActor, "on_receive", "balance.on_receive (all)"),
        (BalanceActor, "_drain", "balance._drain"),
        (BalanceCore, "handle_commands", "balance.handle_commands"),
        (BalanceCore, "handle_settlement", "balance.handle_settlement"),
        (BalanceActor, "_send", "balance._send (replies + events)"),
        (Engine, "_deliver", "engine._deliver (callbacks)"),
        (MarketActor, "on_receive", "market.on_receive (all)"),
        (MarketCore, "handle_batch", "market.handle_batch"),
        (Engine, "submit", "engine.submit (producers)"),
        (Engine, "new", "engine.new (producers)"),
    )

    def __init__(self) -> None:
        self.ns: Counter[str] = Counter()
        self.calls: Counter[str] = Counter()
        self.items: Counter[str] = Counter()
        self._saved: list[tuple[type, str, object]] = []

    def install(self) -> None:
        clock = time.perf_counter_ns
        for cls, name, label in self.TARGETS:
            original = cls.__dict__[name]
            self._saved.append((cls, name, original))

            def wrapper(
                *args: Any,
                _original: Any = original,
                _label: str = label,
                ns: Counter[str] = self.ns,
                calls: Counter[str] = self.calls,
                items: Counter[str] = self.items,
                **kwargs: Any,
            ) -> Any:
                start = clock()
                try:
                    return _original(*args, **kwargs)
                finally:
                    ns[_label] += clock() - start
                    calls[_label] += 1
                    if len(args) > 1:
                        arg = args[1]
                        size = getattr(arg, "commands", None) or getattr(arg, "outcomes", None)
                        if size is None and isinstance(arg, list | tuple):
                            size = arg
                        if size is not None:
                            items[_label] += len(size)

            setattr(cls, name, wrapper)

    def uninstall(self) -> None:
        for cls, name, original in reversed(self._saved):
            setattr(cls, name, original)
        self._saved.clear()

    def report(self, wall_ns: int) -> list[dict[str, Any]]:
        rows = []
        for _, _, label in self.TARGETS:
            calls = self.calls[label]
            rows.append(
                {
                    "section": label,
                    "calls": calls,
                    "items_per_call": self.items[label] / calls if calls and self.items[label] else None,
                    "ms": self.ns[label] / 1e6,
                    "percent_of_wall": 100 * self.ns[label] / wall_ns if wall_ns else 0,
                    "us_per_call": self.ns[label] / calls / 1e3 if calls else 0,
                }
            )
        return rows


def profile_sections(workload: Workload, producers: int, window: int, timeout: float) -> dict[str, Any]:
    sections = Sections()
    sections.install()
    try:
        result = engine_run(workload, producers, window, timeout)
    finally:
        sections.uninstall()
    wall = int(result["seconds"] * 1e9)
    return {"run": result, "sections": sections.report(wall)}


def profile_yappi(workload: Workload, producers: int, window: int, timeout: float, top: int) -> str:
    import io

    import yappi  # type: ignore[import-not-found]

    yappi.clear_stats()
    yappi.set_clock_type("cpu")
    yappi.start(builtins=True, profile_threads=True)
    try:
        result = engine_run(workload, producers, window, timeout)
    finally:
        yappi.stop()
    out = io.StringIO()
    out.write(f"yappi (CPU clock, all threads; slowed by the profiler): {result['orders_per_second']:,.0f} orders/s\n")
    stats = yappi.get_func_stats()
    stats.sort("tsub", "desc")
    out.write(f"{'function':<90} {'ncall':>9} {'tsub s':>8} {'ttot s':>8}\n")
    for stat in list(stats)[:top]:
        name = f"{stat.module.rsplit('/', 2)[-1] if stat.module else ''}:{stat.lineno} {stat.name}"
        out.write(f"{name[-90:]:<90} {stat.ncall:>9} {stat.tsub:>8.3f} {stat.ttot:>8.3f}\n")
    for thread in yappi.get_thread_stats():
        out.write(
            f"thread {thread.name:<20} id {thread.id:>3} ttot {thread.ttot:.3f} s, switches {thread.sched_count}\n"
        )
    yappi.clear_stats()
    return out.getvalue()


# --------------------------------------------------------------------------- driver
def load_average() -> str:
    try:
        return " ".join(f"{x:.2f}" for x in os.getloadavg())
    except OSError:
        return "n/a"


def run(args: argparse.Namespace) -> dict[str, Any]:
    started = time.monotonic()
    original_interval = sys.getswitchinterval()
    original_batch = balance_module.MAX_BATCH
    configs: list[dict[str, Any]] = []
    try:
        for markets in args.markets:
            workload = make_workload(args.orders, markets, args.seed)
            core = core_rates(workload, args.runs)
            core_median = statistics.median(core)
            for max_batch in args.max_batch:
                balance_module.MAX_BATCH = max_batch
                for window, interval in [(w, i) for w in args.window for i in args.switch]:
                    sys.setswitchinterval(interval)
                    load_before = load_average()
                    runs = [
                        engine_run(workload, args.producers, window, args.timeout, args.gc_freeze)
                        for _ in range(args.runs)
                    ]
                    rates = [r["orders_per_second"] for r in runs]
                    config = {
                        "markets": markets,
                        "switch_interval": interval,
                        "max_batch": max_batch,
                        "window": window,
                        "orders_per_second": statistics.median(rates),
                        "orders_per_second_runs": rates,
                        "p50_ns": statistics.median(r["p50_ns"] for r in runs),
                        "p99_ns": statistics.median(r["p99_ns"] for r in runs),
                        "p999_ns": statistics.median(r["p999_ns"] for r in runs),
                        "max_ns": max(r["max_ns"] for r in runs),
                        "codes": runs[-1]["codes"],
                        "cpu_us_per_order": {
                            role: statistics.median(r["cpu_us_per_order"][role] for r in runs)
                            for role in ("balance", "markets", "producers")
                        },
                        "gc_gen2_collections": statistics.median(r["gc_gen2_collections"] for r in runs),
                        "gc_pause_max_ms": max(r["gc_pause_max_ms"] for r in runs),
                        "gc_pause_total_ms": statistics.median(r["gc_pause_total_ms"] for r in runs),
                        "core_orders_per_second": core_median,
                        "core_orders_per_second_runs": core,
                        "engine_vs_core": statistics.median(rates) / core_median,
                        "load_average_before": load_before,
                        "load_average_after": load_average(),
                    }
                    config["throughput_met"] = config["orders_per_second"] >= TARGET_ORDERS_PER_SECOND
                    config["p99_met"] = config["p99_ns"] < TARGET_P99_NS
                    configs.append(config)
                    print(_row(config), file=sys.stderr, flush=True)
            if args.profile == "sections":
                balance_module.MAX_BATCH = args.max_batch[0]
                sys.setswitchinterval(args.switch[0])
                prof = profile_sections(workload, args.producers, args.window[0], args.timeout)
                prof.update(markets=markets, switch_interval=args.switch[0], max_batch=args.max_batch[0])
                configs.append({"profile": prof})
            elif args.profile == "yappi":
                balance_module.MAX_BATCH = args.max_batch[0]
                sys.setswitchinterval(args.switch[0])
                text = profile_yappi(workload, args.producers, args.window[0], args.timeout, args.top)
                configs.append({"profile_yappi": text, "markets": markets})
    finally:
        sys.setswitchinterval(original_interval)
        balance_module.MAX_BATCH = original_batch
    return {
        "machine": core_bench.machine(),
        "params": {
            "orders": args.orders,
            "runs": args.runs,
            "producers": args.producers,
            "window": args.window,
            "seed": args.seed,
            "gc_freeze": args.gc_freeze,
            "users": streams.StreamMix().users,
        },
        "results": configs,
        "total_seconds": time.monotonic() - started,
        "targets": {"orders_per_second": TARGET_ORDERS_PER_SECOND, "p99_ns": TARGET_P99_NS},
    }


HEADER = (
    "| markets | window | switch interval s | MAX_BATCH | engine orders/s (median) | runs min-max | p50 ms | p99 ms "
    "| p99.9 ms | max ms | gc max pause ms | CPU us/order bal+mkt+prod | core orders/s | engine/core "
    "| load avg before -> after |"
)


def _row(c: dict[str, Any]) -> str:
    runs = c["orders_per_second_runs"]
    return (
        f"| {c['markets']} | {c['window']} | {c['switch_interval']:g} | {c['max_batch']} | {c['orders_per_second']:,.0f} "
        f"| {min(runs):,.0f}-{max(runs):,.0f} | {c['p50_ns'] / 1e6:.2f} | {c['p99_ns'] / 1e6:.2f} "
        f"| {c['p999_ns'] / 1e6:.2f} | {c['max_ns'] / 1e6:.1f} | {c['gc_pause_max_ms']:.1f} "
        f"| {_cpu(c['cpu_us_per_order'])} | {c['core_orders_per_second']:,.0f} "
        f"| {c['engine_vs_core']:.2f} | {c['load_average_before']} -> {c['load_average_after']} |"
    )


def _cpu(cpu: dict[str, float]) -> str:
    return f"{cpu['balance']:.1f}+{cpu['markets']:.1f}+{cpu['producers']:.1f}={sum(cpu.values()):.1f}"


def markdown(report: dict[str, Any]) -> str:
    m = report["machine"]
    p = report["params"]
    t = report["targets"]
    lines = [
        f"{m['date']} - {m['cpu_model']}, nproc {m['nproc']}, {m['python']}",
        f"{p['orders']:,} commands per run, {p['producers']} producer threads, each with at most `window` "
        f"commands outstanding, {p['users']} users per market, seed {p['seed']}; median of {p['runs']} runs"
        + ("; gc.freeze() before each run" if p["gc_freeze"] else ""),
        "",
        HEADER,
        "|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---|---:|---|",
    ]
    profiles = []
    for c in report["results"]:
        if "profile" in c or "profile_yappi" in c:
            profiles.append(c)
            continue
        lines.append(_row(c))
    met = [c for c in report["results"] if "orders_per_second" in c]
    lines += [
        "",
        f"Targets: >= {t['orders_per_second']:,} orders/s with settlement, p99 < {t['p99_ns'] / 1e6:.0f} ms. "
        f"Met by {sum(c['throughput_met'] and c['p99_met'] for c in met)} of {len(met)} configurations.",
        "Reply codes (last run of each configuration): "
        + "; ".join(f"{c['markets']}m/w{c['window']}/{c['switch_interval']:g}: {c['codes']}" for c in met),
    ]
    for c in profiles:
        if "profile_yappi" in c:
            lines += ["", f"yappi profile, {c['markets']} market(s):", "```", c["profile_yappi"].rstrip(), "```"]
            continue
        prof = c["profile"]
        run_ = prof["run"]
        lines += [
            "",
            f"Sections, {prof['markets']} market(s), switch {prof['switch_interval']:g} s, MAX_BATCH "
            f"{prof['max_batch']} (instrumented run: {run_['orders_per_second']:,.0f} orders/s, "
            f"wall {run_['seconds']:.2f} s; section times are wall time and include GIL waits):",
            "",
            "| section | calls | items/call | ms | % of wall | us/call |",
            "|---|---:|---:|---:|---:|---:|",
        ]
        for s in prof["sections"]:
            per = f"{s['items_per_call']:.1f}" if s["items_per_call"] else ""
            lines.append(
                f"| {s['section']} | {s['calls']:,} | {per} | {s['ms']:,.0f} | {s['percent_of_wall']:.0f} "
                f"| {s['us_per_call']:.1f} |"
            )
    return "\n".join(lines)


def _floats(text: str) -> list[float]:
    return [float(x) for x in text.split(",") if x]


def _ints(text: str) -> list[int]:
    return [int(x) for x in text.split(",") if x]


def main(argv: Sequence[str] | None = None) -> int:
    tune_garbage_collector()  # as python run.py does
    parser = argparse.ArgumentParser(prog="python -m bench.engine_bench", description=__doc__.split("\n")[0])
    parser.add_argument("--orders", type=int, default=100_000, help="commands per run (default 100000)")
    parser.add_argument("--runs", type=int, default=5, help="runs per configuration (default 5)")
    parser.add_argument("--producers", type=int, default=4, help="producer threads (default 4)")
    parser.add_argument(
        "--window", type=_ints, default=[256], help="outstanding commands per producer, one or more (default 256)"
    )
    parser.add_argument("--markets", type=_ints, default=[1, 4], help="market counts (default 1,4)")
    parser.add_argument(
        "--switch", type=_floats, default=list(DEFAULT_SWITCH), help="switch intervals (default 0.005,0.0005,0.0001)"
    )
    parser.add_argument(
        "--max-batch", type=_ints, default=[balance_module.MAX_BATCH], help="balance MAX_BATCH values to try"
    )
    parser.add_argument(
        "--gc-freeze", action="store_true", help="gc.freeze() the set-up heap before each run (an experiment)"
    )
    parser.add_argument("--seed", type=int, default=1, help="stream seed (default 1)")
    parser.add_argument("--timeout", type=float, default=120.0, help="abort a run after this many seconds")
    parser.add_argument("--json", metavar="PATH", help="also write the results as JSON to PATH")
    parser.add_argument("--profile", choices=("sections", "yappi"), help="add one profiled run per market count")
    parser.add_argument("--top", type=int, default=30, help="with --profile yappi: functions to list")
    args = parser.parse_args(argv)
    if args.orders <= 0 or args.runs <= 0 or args.producers <= 0 or min(args.window, default=0) <= 0:
        parser.error("--orders, --runs, --producers and --window must be positive")
    if not args.markets or not args.switch or not args.max_batch:
        parser.error("--markets, --switch and --max-batch need at least one value")
    try:
        report = run(args)
    except RunAborted as exc:
        print(f"engine_bench: {exc}", file=sys.stderr)
        return 2
    print(markdown(report))
    if args.json:
        with open(args.json, "w", encoding="utf-8") as out:
            json.dump(report, out, indent=2, default=str)
            out.write("\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
