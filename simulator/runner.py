"""`python run.py simulate`: start-up, one loop per market, the end-of-run check.

A run: check the exchange answers; read its markets; make the run's users (per market: `--makers` makers and
`--takers` takers, `sim-<run>-<market>-m<i>` / `-t<i>`, so one market's traders never share funds with
another's); read their balances; open their `orders@<user>` streams; fund them through the onramp (txnIds
named after the run's users, so unique per run); then every market steps until `--duration` or `--steps`:

- its mid takes one step of its random walk;
- each maker that wants to (the mid moved away from its quotes, or now and then) reads its open orders (which
  says what of its quotes was filled), cancels its quotes off the new ladder and places the missing levels;
- with some probability one taker sends a burst of market and IOC orders.

At the end each maker cancels what it still has open; the run waits until its users' streams have brought a fill
for everything the API said was executed, then checks every user's balances (`accounting`). With API keys on, each
user's stream is opened with a listen key of its own, extended while the run lasts and ended after the check
(`session.ListenKeys`).

Reproducibility. Each market's requests go one at a time, in the order its loop decides them, and every
decision comes from `random.Random` instances seeded with `--seed` (one for the market, one per trader) and
from what the API answered; never from a clock or from when an answer came. Different markets' traders share
nothing. So against a fresh exchange (same markets, nobody else trading), two runs with the same seed send
the same requests, market by market, with the same bodies (`--record FILE` writes them, the run id and the
exchange's order ids replaced by names). What is not reproducible: how the markets' requests interleave with
each other, timestamps and latency, how many steps a `--duration` allows (use `--steps`), and anything when
someone else trades on the same markets (their orders change what the simulator's orders meet), or with
`--concurrency` above 1 (a step's makers and taker then act side by side, and which of their requests
arrives first is up to the network).
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import random
import signal
import sys
import time
from collections.abc import Coroutine
from dataclasses import dataclass, field
from decimal import Decimal
from typing import Any, Generic, TypeVar

from openbell.simulator.accounting import FillStreams, Ledger
from openbell.simulator.agents import Intent, Maker, Quote, RandomWalk, Taker
from openbell.simulator.grid import Grid, asset_text, asset_units
from openbell.simulator.session import LISTEN_KEY_REFRESH, Access, ListenKeys, Reply, Session, SimulatorError, User
from openbell.simulator.stats import Stats

LEVELS = 5
BURST_PROBABILITY = 0.7
FILLS_WAIT = 15.0
"""Seconds the end of a run waits for the streams to bring every fill."""


@dataclass
class Options:
    url: str
    ws_url: str | None = None
    markets: list[str] | None = None
    makers: int = 4
    takers: int = 8
    rate: float = 200.0
    duration: float = 60.0
    steps: int | None = None
    seed: int = 1
    concurrency: int = 1
    admin_token: str | None = None
    record: str | None = None
    progress: float = 1.0
    wait: float = 0.0
    listen_key_refresh: float = LISTEN_KEY_REFRESH


Agent = TypeVar("Agent", Maker, Taker)


@dataclass
class Trader(Generic[Agent]):
    """A user of the run and the agent that decides what it sends."""

    user: User
    agent: Agent
    tag: str
    """`m0`, `t3`: names its clientOrderIds."""
    orders: int = 0

    def next_client_order_id(self) -> str:
        self.orders += 1
        return f"{self.tag}-{self.orders}"


@dataclass
class Lane:
    """One market: its walk, traders and requests, one at a time."""

    session: Session
    ledger: Ledger
    grid: Grid
    walk: RandomWalk
    rng: random.Random
    concurrency: int = 1
    """Traders acting at once, each with one request in flight; 1 keeps the run reproducible."""
    makers: list[Trader[Maker]] = field(default_factory=list)
    takers: list[Trader[Taker]] = field(default_factory=list)
    steps: int = 0

    def quote_value(self, ticks: int, lots: int) -> int:
        return self.grid.quote_units(ticks, lots)

    async def run(self, stop: asyncio.Event, steps: int | None) -> None:
        while not stop.is_set() and (steps is None or self.steps < steps):
            await self.step()
            self.steps += 1
        await self.finish()

    async def step(self) -> None:
        """One step: the mid moves; the makers that want to requote and, maybe, a taker's burst act, in that
        order, one request at a time (or, with `concurrency` above 1, that many of them side by side)."""
        mid = self.walk.next()
        work: list[Coroutine[Any, Any, None]] = []
        for maker in self.makers:
            if maker.agent.wants_to_requote(mid):
                work.append(self.requote(maker, mid))
        if self.takers and self.rng.random() < BURST_PROBABILITY:
            taker = self.takers[self.rng.randrange(len(self.takers))]
            work.append(self.burst(taker, taker.agent.burst(mid, self.quote_value)))
        if self.concurrency <= 1:
            for job in work:
                await job
            return
        slots = asyncio.Semaphore(self.concurrency)

        async def in_a_slot(job: Coroutine[Any, Any, None]) -> None:
            async with slots:
                await job

        await asyncio.gather(*(in_a_slot(job) for job in work))

    # ------------------------------------------------------------------ makers
    async def requote(self, maker: Trader[Maker], mid: int) -> None:
        agent = maker.agent
        await self.refresh(maker)
        wanted = agent.ladder(mid)
        for quote in agent.stale(wanted):
            await self.cancel(maker, quote)
        for intent in agent.missing(wanted, self.quote_value):
            await self.place(maker, intent)
        agent.quoted_mid = mid

    async def refresh(self, maker: Trader[Maker]) -> list[dict[str, Any]]:
        """Read the maker's open orders: a quote's `filled` tells its fills; a quote no longer open was filled.
        Returns the open orders the API listed."""
        agent = maker.agent
        reply = await self.session.send(
            self.grid.symbol, "GET", "/order/open", user=maker.user, params={"market": self.grid.symbol}
        )
        if not reply.ok or not isinstance(reply.body, list):
            return []
        open_now = {str(row.get("clientOrderId")): row for row in reply.body}
        for client_order_id, quote in list(agent.open.items()):
            row = open_now.get(client_order_id)
            if row is None:
                agent.filled(quote, quote.quantity, self.quote_value)
                self.ended(quote, quote.quantity)
                del agent.open[client_order_id]
            else:
                agent.filled(quote, self.grid.lots(str(row["filled"])), self.quote_value)
        return reply.body

    async def cancel(self, maker: Trader[Maker], quote: Quote) -> None:
        agent = maker.agent
        reply = await self.session.send(
            self.grid.symbol,
            "DELETE",
            "/order",
            user=maker.user,
            body={"orderId": quote.order_id, "market": self.grid.symbol},
            limited=True,
            logged_as={"clientOrderId": quote.client_order_id, "market": self.grid.symbol, "user_id": maker.user.user_id},
        )
        if reply.ok and isinstance(reply.body, dict):
            executed = self.grid.lots(str(reply.body["executedQty"]))
        elif reply.code is not None and reply.status == 404:  # ended since it was read: filled
            executed = quote.quantity
        else:
            return
        agent.filled(quote, executed, self.quote_value)
        self.ended(quote, executed)
        del agent.open[quote.client_order_id]

    def ended(self, quote: Quote, executed: int) -> None:
        if quote.order_id is not None:
            self.ledger.executed[quote.order_id] = executed

    async def place(self, maker: Trader[Maker], intent: Intent) -> None:
        agent = maker.agent
        client_order_id = maker.next_client_order_id()
        reply = await self.send_order(maker, intent, client_order_id)
        if reply.ok and isinstance(reply.body, dict):
            quote = Quote(client_order_id, intent.side, int(intent.price or 0), intent.quantity, str(reply.body["orderId"]))
            if reply.body.get("status") in ("NEW", "PARTIALLY_FILLED"):
                agent.open[client_order_id] = quote
            else:  # rejected (post-only would take) or ended at once
                self.ended(quote, self.grid.lots(str(reply.body["executedQty"])))

    # ------------------------------------------------------------------ takers
    async def burst(self, taker: Trader[Taker], intents: list[Intent]) -> None:
        for intent in intents:
            await self.take(taker, intent)

    async def take(self, taker: Trader[Taker], intent: Intent) -> None:
        agent = taker.agent
        reply = await self.send_order(taker, intent, taker.next_client_order_id())
        if not reply.ok or not isinstance(reply.body, dict):
            return
        self.ledger.executed[str(reply.body["orderId"])] = self.grid.lots(str(reply.body["executedQty"]))
        for fill in reply.body.get("fills", []):
            price, lots = self.grid.ticks(str(fill["price"])), self.grid.lots(str(fill["quantity"]))
            agent.traded(intent.side, price, lots, self.quote_value)
            self.session.stats.trades += 1

    async def send_order(self, trader: Trader[Any], intent: Intent, client_order_id: str) -> Reply:
        body: dict[str, Any] = {
            "market": self.grid.symbol,
            "side": intent.side,
            "type": intent.order_type,
            "quantity": self.grid.quantity_text(intent.quantity),
            "clientOrderId": client_order_id,
        }
        if intent.price is not None:
            body["price"] = self.grid.price_text(intent.price)
            body["timeInForce"] = intent.time_in_force
        if intent.post_only:
            body["postOnly"] = True
        return await self.session.send(self.grid.symbol, "POST", "/order", user=trader.user, body=body, limited=True)

    async def finish(self) -> None:
        """Cancel every maker's open orders (those whose placing got no answer too), so that what the makers hold
        stops moving."""
        for maker in self.makers:
            agent = maker.agent
            listed = await self.refresh(maker)
            tracked = set(agent.open)
            for quote in list(agent.open.values()):
                await self.cancel(maker, quote)
            for row in listed:
                client_order_id = str(row.get("clientOrderId"))
                if client_order_id not in tracked and row.get("side") in ("buy", "sell") and row.get("price"):
                    # placed, but its answer was lost (a timeout): its fills still come on the stream
                    stray = Quote(client_order_id, str(row["side"]), self.grid.ticks(str(row["price"])),
                                  self.grid.lots(str(row["quantity"])), str(row["orderId"]))
                    agent.open[client_order_id] = stray
                    await self.cancel(maker, stray)


# ---------------------------------------------------------------------- start-up
async def connect(session: Session, wait: float) -> None:
    deadline = time.monotonic() + wait
    while True:
        try:
            await session.reachable()
            return
        except SimulatorError:
            if time.monotonic() >= deadline:
                raise
        await asyncio.sleep(0.2)


async def read_markets(session: Session, wanted: list[str] | None) -> list[Grid]:
    reply = await session.send("setup", "GET", "/markets")
    if not reply.ok or not isinstance(reply.body, list):
        raise SimulatorError(f"GET /markets answered HTTP {reply.status}")
    grids = {row["symbol"]: Grid.from_api(row) for row in reply.body}
    if wanted is None:
        return [grids[name] for name in sorted(grids)]
    unknown = [name for name in wanted if name not in grids]
    if unknown:
        raise SimulatorError(f"--markets: the exchange has no market {', '.join(unknown)} (it has {', '.join(sorted(grids))})")
    return [grids[name] for name in wanted]


async def starting_mid(session: Session, grid: Grid) -> int:
    """Ticks: the middle of the book if it has both sides, else its one side, else the last trade, else 100."""
    reply = await session.send("setup", "GET", "/depth", params={"symbol": grid.symbol, "limit": 1})
    bids = reply.body.get("bids", []) if isinstance(reply.body, dict) else []
    asks = reply.body.get("asks", []) if isinstance(reply.body, dict) else []
    if bids and asks:
        return (grid.ticks(bids[0][0]) + grid.ticks(asks[0][0])) // 2
    if bids or asks:
        return grid.ticks((bids or asks)[0][0])
    reply = await session.send("setup", "GET", "/ticker", params={"symbol": grid.symbol})
    last = reply.body.get("lastPrice") if isinstance(reply.body, dict) else None
    if last and Decimal(last) > 0:
        return grid.ticks(last)
    return max(100, int(Decimal(100) / grid.tick_size))


async def fund(session: Session, ledger: Ledger, user: User, run_id: str, amounts: dict[str, int]) -> None:
    for asset, units in amounts.items():
        decimals = ledger.decimals[asset]
        reply = await session.send(
            "setup",
            "POST",
            "/onramp",
            body={"user_id": user.user_id, "asset": asset, "amount": asset_text(units, decimals),
                  "txnId": f"{user.user_id}-{asset}"},
            operator=True,
        )
        if not reply.ok:
            raise SimulatorError(f"the onramp refused {user.user_id} {asset}: HTTP {reply.status} {reply.body}")
        ledger.deposits[user.user_id][asset] += units


async def build_lane(session: Session, ledger: Ledger, streams: FillStreams, grid: Grid, options: Options) -> Lane:
    run_id = session.run_id
    mid = await starting_mid(session, grid)
    step = max(1, mid // 2000)
    seed = f"{options.seed}:{grid.symbol}"
    walk = RandomWalk(random.Random(f"{seed}:walk"), mid, step)
    lane = Lane(session, ledger, grid, walk, random.Random(seed), concurrency=options.concurrency)
    maker_lots, taker_lots = 40 * 10 * LEVELS, 1000
    roles = [("m", i, maker_lots) for i in range(options.makers)] + [("t", i, taker_lots) for i in range(options.takers)]
    for role, index, lots in roles:
        user = await session.access.open_user(session, f"sim-{run_id}-{grid.symbol}-{role}{index}")
        reply = await session.send("setup", "GET", "/balance", user=user)
        held = reply.body if reply.ok and isinstance(reply.body, dict) else {}
        ledger.start[user.user_id] = {
            asset: asset_units(row["available"], ledger.decimals.get(asset, 0))
            + asset_units(row["locked"], ledger.decimals.get(asset, 0))
            for asset, row in held.items()
        }
        await streams.open(user)
        quote_units = grid.quote_units(2 * mid, lots)
        await fund(session, ledger, user, run_id, {grid.base: grid.base_units(lots), grid.quote: quote_units})
        rng = random.Random(f"{seed}:{role}{index}")
        agent: Maker | Taker
        if role == "m":
            agent = Maker(rng, LEVELS, half_spread=step * (2 + index % 3), gap=step, requote=step * (1 + index % 2),
                          unit=1, base_lots=lots, quote_units=quote_units)
            lane.makers.append(Trader(user, agent, f"m{index}"))
        else:
            agent = Taker(rng, unit=1, reach=step * (2 + LEVELS), base_lots=lots, quote_units=quote_units)
            lane.takers.append(Trader(user, agent, f"t{index}"))
    return lane


# ---------------------------------------------------------------------- the run
async def simulate(options: Options, out: Any = sys.stderr) -> int:
    """Run the simulation; 0 if the balance check passed and no request got a 5xx."""
    stats = Stats()
    run_id = os.urandom(4).hex()
    access = Access(admin_token=options.admin_token, ws_url=options.ws_url,
                    listen_keys=ListenKeys(refresh=options.listen_key_refresh))
    session = Session(options.url.rstrip("/"), run_id, stats, access, rate=options.rate, recording=bool(options.record))
    async with session:
        await connect(session, options.wait)
        await session.discover()
        grids = await read_markets(session, options.markets)
        ledger = Ledger({grid.symbol: grid for grid in grids})
        streams = FillStreams(session.ws_url, ledger)
        try:
            lanes = [await build_lane(session, ledger, streams, grid, options) for grid in grids]
            mode = "signed with API keys" if access.keys else "dev mode"
            print(f"simulating {', '.join(g.symbol for g in grids)}: run {run_id}, seed {options.seed}, "
                  f"{options.makers} makers and {options.takers} takers per market, {mode}", file=out)
            stop = asyncio.Event()
            main_task = asyncio.current_task()

            def interrupted() -> None:  # Ctrl-C: stop and check; a second one: stop at once
                if stop.is_set() and main_task is not None:
                    main_task.cancel()
                stop.set()

            with contextlib.suppress(NotImplementedError, RuntimeError):
                asyncio.get_running_loop().add_signal_handler(signal.SIGINT, interrupted)
            reporter = asyncio.create_task(report(stats, options.progress, out))
            timer = asyncio.create_task(stop_after(stop, options.duration))
            keeper = asyncio.create_task(access.listen_keys.keep_alive(session))
            try:
                await asyncio.gather(*(lane.run(stop, options.steps) for lane in lanes))
                problems = await check(session, ledger, streams, lanes)
            finally:
                for task in (timer, reporter, keeper):
                    task.cancel()
                await asyncio.gather(keeper, return_exceptions=True)
                with contextlib.suppress(NotImplementedError, RuntimeError):
                    asyncio.get_running_loop().remove_signal_handler(signal.SIGINT)
        finally:
            await streams.close()
            await access.listen_keys.end(session)
    if options.record:
        write_record(options.record, session.log, [grid.symbol for grid in grids])
    for line in stats.summary():
        print(line, file=out)
    steps = ", ".join(f"{lane.grid.symbol} {lane.steps}" for lane in lanes)
    print(f"steps {steps}", file=out)
    if access.keys:
        print(access.listen_keys.summary(), file=out)
    if problems:
        for problem in problems:
            print(f"balance check FAILED: {problem}", file=out)
    else:
        users = len(ledger.start)
        print(f"balance check passed: {users} users hold exactly their deposits plus their fills less fees", file=out)
    return 1 if problems or stats.server_errors else 0


async def stop_after(stop: asyncio.Event, duration: float) -> None:
    if duration > 0:
        await asyncio.sleep(duration)
        stop.set()


async def report(stats: Stats, interval: float, out: Any) -> None:
    if interval <= 0:
        return
    live = hasattr(out, "isatty") and out.isatty()
    try:
        while True:
            await asyncio.sleep(interval)
            line = stats.progress()
            print(f"\r{line}\x1b[K" if live else line, end="" if live else "\n", file=out, flush=True)
    finally:
        if live:
            print(file=out)


async def check(session: Session, ledger: Ledger, streams: FillStreams, lanes: list[Lane]) -> list[str]:
    """Wait for the streams to bring every fill, then compare every user's balances with what they must be."""
    deadline = time.monotonic() + FILLS_WAIT
    while ledger.uncovered() and time.monotonic() < deadline:
        await asyncio.sleep(0.05)
    problems = []
    uncovered = ledger.uncovered()
    if uncovered:
        problems.append(f"{len(uncovered)} orders' fills did not all arrive on the streams within {FILLS_WAIT:.0f} s")
    if streams.lost:
        problems.append(f"the stream of {len(streams.lost)} users closed early ({', '.join(streams.lost[:3])})")
    for lane in lanes:
        for trader in lane.makers + lane.takers:
            reply = await session.send("check", "GET", "/balance", user=trader.user)
            if not reply.ok or not isinstance(reply.body, dict):
                problems.append(f"{trader.user.user_id}: GET /balance answered HTTP {reply.status}")
                continue
            problems += ledger.compare(trader.user.user_id, reply.body)
    return problems


def write_record(path: str, log: dict[str, list[str]], markets: list[str]) -> None:
    """The request log, lane by lane (setup, each market in order, the check): the same for the same seed."""
    with open(path, "w", encoding="utf-8") as file:
        for lane in ["setup", *markets, "check"]:
            for line in log.get(lane, []):
                file.write(f"{lane} {line}\n")


def main(options: Options) -> int:
    try:
        return asyncio.run(simulate(options))
    except (KeyboardInterrupt, asyncio.CancelledError):
        print("openbell simulate: interrupted before the end of the run; nothing was checked", file=sys.stderr)
        return 130
