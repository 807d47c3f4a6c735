"""The engine under concurrent load: whatever the interleaving, funds are conserved and books stay sound.

Several producer threads send a few thousand mixed commands (limit GTC/IOC/FOK, post-only, market
orders by quantity and by quote budget, cancels, top-up deposits) for about thirty users whose funds
cover only some of their orders, on three markets, two of which share the INR quote asset. After the
engine stops, the ledger and every book must check out, and every accepted order must be resting or
ended by some event. A hypothesis property drives random streams through `Engine.call` and checks the
same things.

`Load` and `assert_engine_consistent` are also used by the determinism tests.
"""

from __future__ import annotations

import random
import threading
import time
from collections.abc import Callable, Iterator, Sequence
from typing import Any

import pytest
from core_helpers import tata_inr
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from openbell.actors.engine import Engine
from openbell.core.commands import CancelOrder, Deposit, PlaceOrder
from openbell.core.events import TERMINAL_EVENTS, OrderRejected, TradeExecuted
from openbell.core.grid import Asset, MarketSpec, make_market_spec
from openbell.core.messages import Reply
from openbell.core.summary import OriginalOrder, summarize
from openbell.core.types import OrderStatus, OrderType, ResultCode, Side, TimeInForce

ASSETS = {"INR": Asset("INR", 2), "TATA": Asset("TATA", 2), "INFY": Asset("INFY", 2)}
WAIT = 10.0
"""Seconds any single wait may take."""
LOAD_TIME_LIMIT = 20.0
"""Seconds the producers may keep sending before they stop early."""
USERS = tuple(f"user{i:02}" for i in range(30))

BUY, SELL = Side.BUY, Side.SELL
LIMIT, MARKET_ORDER = OrderType.LIMIT, OrderType.MARKET
GTC, IOC, FOK = TimeInForce.GTC, TimeInForce.IOC, TimeInForce.FOK


def infy_inr() -> MarketSpec:
    return make_market_spec("INFY_INR", "0.01", "1", ASSETS)


def btc_usdt() -> MarketSpec:
    return make_market_spec("BTC_USDT", "0.01", "0.001", {})


MID_PRICE = {"TATA_INR": 10_000, "INFY_INR": 15_000, "BTC_USDT": 3_000_000}
"""Ticks each market's orders are priced around."""
SPREAD = {"TATA_INR": 12, "INFY_INR": 12, "BTC_USDT": 1_200}
MAX_LOTS = 6


def starting_funds(spec: MarketSpec) -> dict[str, int]:
    """Enough quote for about three average buys and base for about three average sells."""
    average_lots = (MAX_LOTS + 1) // 2
    quote = 3 * average_lots * MID_PRICE[spec.symbol] * spec.quote_units_per_tick_lot
    base = 3 * average_lots * spec.base_units_per_lot
    return {spec.quote.symbol: quote, spec.base.symbol: base}


# --------------------------------------------------------------------------------------------- load
class Load:
    """Random commands from several threads through `Engine.submit`, with every reply collected."""

    def __init__(self, engine: Engine, specs: Sequence[MarketSpec], seed: int) -> None:
        self.engine = engine
        self.specs = list(specs)
        self.seed = seed
        self.commands: dict[int, object] = {}
        self.replies: dict[int, Reply] = {}
        self.problems: list[str] = []
        self._lock = threading.Lock()

    def fund(self, spec: MarketSpec, users: Sequence[str] = USERS) -> None:
        for user in users:
            for asset, amount in starting_funds(spec).items():
                command = self.engine.new(
                    Deposit, user_id=user, asset=asset, amount=amount, txn_id=f"{user}-{spec.symbol}-{asset}"
                )
                reply = self.engine.call(command)
                assert reply.ok, reply

    def run(self, producers: int, commands_each: int, extra: Callable[[], None] | None = None) -> None:
        """Start `producers` threads (and `extra`, if given, on its own thread) and wait for all replies."""
        deadline = time.monotonic() + LOAD_TIME_LIMIT
        start = threading.Barrier(producers + (extra is not None), timeout=WAIT)

        def produce(n: int) -> None:
            start.wait()
            self._produce(n, producers, commands_each, deadline)

        def run_extra() -> None:
            assert extra is not None
            start.wait()
            extra()

        threads = [threading.Thread(target=produce, args=(n,), name=f"producer-{n}") for n in range(producers)]
        if extra is not None:
            threads.append(threading.Thread(target=run_extra, name="extra"))
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join(timeout=LOAD_TIME_LIMIT + 2 * WAIT)
        assert not any(thread.is_alive() for thread in threads), "a producer did not finish"
        assert not self.problems, self.problems
        missing = set(self.commands) - set(self.replies)
        assert not missing, f"{len(missing)} commands got no reply"

    def _produce(self, n: int, producers: int, count: int, deadline: float) -> None:
        rng = random.Random(self.seed * 1000 + n)
        users = USERS[n::producers]
        resting: list[PlaceOrder] = []
        """Orders whose reply said they rest (appended from actor threads): what this producer cancels."""
        in_flight = threading.BoundedSemaphore(32)
        for i in range(count):
            if time.monotonic() > deadline:
                break
            if not in_flight.acquire(timeout=WAIT):
                self.problems.append(f"producer {n} waited too long for replies")
                return
            command = self._random_command(rng, users, resting, f"p{n}-{i}")
            with self._lock:
                self.commands[command.seq] = command
            self.engine.submit(command, self._receiver(in_flight, command, resting))
        for _ in range(32):
            if not in_flight.acquire(timeout=WAIT):
                self.problems.append(f"producer {n}'s last replies did not come")
                return

    def _receiver(
        self, in_flight: threading.BoundedSemaphore, command: object, resting: list[PlaceOrder]
    ) -> Callable[[Reply], None]:
        def receive(reply: Reply) -> None:
            with self._lock:
                self.replies[reply.seq] = reply
            if type(command) is PlaceOrder and reply.ok:
                status = summarize(command.seq, reply.events).status
                if not status.is_final:
                    resting.append(command)
            in_flight.release()

        return receive

    def _random_command(self, rng: random.Random, users: Sequence[str], resting: list[PlaceOrder], txn: str) -> Any:
        engine = self.engine
        user = rng.choice(users)
        roll = rng.random()
        if roll < 0.15 and resting:
            target = resting.pop(rng.randrange(len(resting)))
            owner = target.user_id if rng.random() < 0.9 else rng.choice(USERS)
            return engine.new(CancelOrder, user_id=owner, market=target.market, order_id=target.seq)
        spec = rng.choice(self.specs)
        if roll < 0.18:
            asset = rng.choice([spec.base, spec.quote]).symbol
            amount = starting_funds(spec)[asset] // 2
            return engine.new(Deposit, user_id=user, asset=asset, amount=amount, txn_id=txn)
        side = rng.choice((BUY, SELL))
        quantity = rng.randint(1, MAX_LOTS)
        price = MID_PRICE[spec.symbol] + rng.randint(-SPREAD[spec.symbol], SPREAD[spec.symbol])
        fields: dict[str, Any] = {"user_id": user, "market": spec.symbol, "side": side, "quantity": quantity}
        kind = rng.random()
        if kind < 0.45:
            fields.update(order_type=LIMIT, time_in_force=GTC, price=price)
        elif kind < 0.55:
            fields.update(order_type=LIMIT, time_in_force=IOC, price=price)
        elif kind < 0.65:
            fields.update(order_type=LIMIT, time_in_force=FOK, price=price)
        elif kind < 0.80:
            fields.update(order_type=LIMIT, time_in_force=GTC, price=price, post_only=True)
        else:
            fields.update(order_type=MARKET_ORDER, time_in_force=IOC, price=None)
            if side is BUY and rng.random() < 0.5:
                budget = rng.randint(1, MAX_LOTS) * MID_PRICE[spec.symbol] * spec.quote_units_per_tick_lot
                fields.update(quantity=None, quote_quantity=budget)
        if rng.random() < 0.1:
            fields["client_order_id"] = f"c{rng.randint(0, 5)}"
        return engine.new(PlaceOrder, **fields)


# --------------------------------------------------------------------------------------------- checks
def assert_engine_consistent(engine: Engine, commands: dict[int, object], replies: dict[int, Reply]) -> None:
    """Stop `engine` and check its ledger and books against each other and against the replies."""
    engine.stop()
    ledger = engine.balance_core.ledger
    books = {symbol: core.book for symbol, core in engine.market_cores.items()}

    # The ledger and every book check their own state; funds are conserved and never negative.
    ledger.check_invariants()
    for book in books.values():
        book.check_invariants()
    assert {asset: total for asset, total in ledger.totals().items() if total} == ledger.deposited()
    for user in ledger.users():
        for asset, (available, locked) in ledger.balances(user).items():
            assert available >= 0 and locked >= 0, (user, asset, available, locked)
    assert not engine.balance_core.pending

    # Funds are locked for exactly the resting orders, each holding what its remainder needs.
    resting = {order.order_id: (symbol, order) for symbol, book in books.items() for order in book.orders()}
    assert set(ledger.holds) == set(resting)
    for order_id, (symbol, order) in resting.items():
        spec = books[symbol].spec
        hold = ledger.holds[order_id]
        if order.side is BUY:
            need = order.price * order.remaining * spec.quote_units_per_tick_lot
        else:
            need = order.remaining * spec.base_units_per_lot
        assert (hold.user_id, hold.market, hold.amount, hold.filled) == (order.user_id, symbol, need, order.filled)

    # Every command was answered, and no answer was an engine fault.
    assert set(replies) >= set(commands)
    faults = [reply for reply in replies.values() if reply.code >= ResultCode.ENGINE_ERROR]
    assert not faults, faults[:5]

    # Every accepted order is resting or was ended by some event, never both; fills add up.
    events = [event for reply in replies.values() for event in reply.events]
    ended = {
        event.order_id
        for event in events
        if type(event) in TERMINAL_EVENTS
        and not (type(event) is OrderRejected and event.code is ResultCode.UNKNOWN_ORDER)
    }
    filled: dict[int, int] = {}
    trade_ids: dict[str, list[int]] = {symbol: [] for symbol in books}
    for event in events:
        if type(event) is TradeExecuted:
            trade_ids[event.market].append(event.trade_id)
            for order_id in (event.maker_order_id, event.taker_order_id):
                filled[order_id] = filled.get(order_id, 0) + event.quantity
    for seq, command in commands.items():
        if type(command) is not PlaceOrder:
            continue
        reply = replies[seq]
        if reply.code is ResultCode.DUPLICATE_CLIENT_ORDER_ID:  # refused: the first order of that id answers
            assert seq not in resting and reply.expect(OriginalOrder).summary.order_id != seq
            continue
        status = summarize(seq, reply.events).status
        if status is OrderStatus.REJECTED:
            assert not reply.ok and seq not in resting
            continue
        assert reply.ok, reply
        is_resting = seq in resting
        assert status.is_final or is_resting or seq in ended, f"order {seq} ({status}) vanished"
        assert not (is_resting and seq in ended), f"order {seq} rests after it ended"
        if is_resting:
            assert resting[seq][1].filled == filled.get(seq, 0)
    for symbol, ids in trade_ids.items():
        assert sorted(ids) == list(range(1, books[symbol].next_trade_id)), f"{symbol} trade ids have gaps"


# --------------------------------------------------------------------------------------------- tests
@pytest.fixture
def engine() -> Iterator[Engine]:
    engine = Engine(reply_timeout=WAIT).start([tata_inr(), infy_inr(), btc_usdt()])
    yield engine
    engine.stop()


@pytest.mark.parametrize("seed", [7, 8, 9])
def test_concurrent_mixed_load_conserves_funds_and_keeps_books_and_holds_consistent(engine: Engine, seed: int) -> None:
    # Arrange
    specs = list(engine.markets.values())
    load = Load(engine, specs, seed=seed)
    for spec in specs:
        load.fund(spec)

    # Act: six producers, 800 commands each (or fewer if the time limit comes first).
    load.run(producers=6, commands_each=800)

    # Assert
    placed = [seq for seq, command in load.commands.items() if type(command) is PlaceOrder]
    assert len(placed) > 1000
    outcomes = {reply.code for seq, reply in load.replies.items() if seq in placed}
    assert {ResultCode.OK, ResultCode.INSUFFICIENT_FUNDS, ResultCode.POST_ONLY_WOULD_TAKE} <= outcomes
    assert all(core.book.next_trade_id > 10 for core in engine.market_cores.values())
    assert_engine_consistent(engine, load.commands, load.replies)


# --------------------------------------------------------------------------------------------- property
PROPERTY_USERS = ("ana", "bo", "cy", "di")
PROPERTY_MARKETS = ("TATA_INR", "INFY_INR")

deposits = st.tuples(
    st.just("deposit"),
    st.sampled_from(PROPERTY_USERS),
    st.sampled_from(("INR", "TATA", "INFY")),
    st.integers(1, 60_000),
)
orders = st.tuples(
    st.just("order"),
    st.sampled_from(PROPERTY_USERS),
    st.sampled_from(PROPERTY_MARKETS),
    st.sampled_from((BUY, SELL)),
    st.sampled_from(("gtc", "ioc", "fok", "post_only", "market", "market_by_quote")),
    st.integers(-3, 3),
    st.integers(1, 5),
)
cancels = st.tuples(st.just("cancel"), st.sampled_from(PROPERTY_USERS), st.integers(0, 100))
steps = st.lists(st.one_of(deposits, orders, orders, cancels), min_size=1, max_size=80)


@pytest.fixture
def start_engine() -> Iterator[Callable[[], Engine]]:
    """Starts a fresh two-market engine per hypothesis example; stops every one of them in teardown."""
    started: list[Engine] = []

    def start() -> Engine:
        engine = Engine(reply_timeout=WAIT).start([tata_inr(), infy_inr()])
        started.append(engine)
        return engine

    yield start
    for engine in started:
        engine.stop()


def command_for(engine: Engine, step: tuple[Any, ...], placed: list[PlaceOrder], n: int) -> Any:
    if step[0] == "deposit":
        _, user, asset, amount = step
        return engine.new(Deposit, user_id=user, asset=asset, amount=amount, txn_id=f"t{n}")
    if step[0] == "cancel":
        _, user, pick = step
        if not placed:
            return engine.new(CancelOrder, user_id=user, market="TATA_INR", order_id=pick)
        target = placed[pick % len(placed)]
        return engine.new(CancelOrder, user_id=user, market=target.market, order_id=target.seq)
    _, user, market, side, kind, offset, quantity = step
    fields: dict[str, Any] = {"user_id": user, "market": market, "side": side, "quantity": quantity}
    if kind in ("market", "market_by_quote"):
        fields.update(order_type=MARKET_ORDER, time_in_force=IOC, price=None)
        if kind == "market_by_quote" and side is BUY:
            fields.update(quantity=None, quote_quantity=quantity * MID_PRICE[market])
    else:
        tif = {"gtc": GTC, "ioc": IOC, "fok": FOK, "post_only": GTC}[kind]
        fields.update(order_type=LIMIT, time_in_force=tif, price=MID_PRICE[market] + offset)
        fields["post_only"] = kind == "post_only"
    command = engine.new(PlaceOrder, **fields)
    placed.append(command)
    return command


@settings(
    max_examples=100,
    deadline=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
)
@given(steps=steps)
def test_random_command_streams_through_the_engine_keep_funds_and_books_consistent(
    start_engine: Callable[[], Engine], steps: list[tuple[Any, ...]]
) -> None:
    # Arrange
    engine = start_engine()
    placed: list[PlaceOrder] = []
    commands: dict[int, object] = {}
    replies: dict[int, Reply] = {}

    # Act
    for n, step in enumerate(steps):
        command = command_for(engine, step, placed, n)
        commands[command.seq] = command
        replies[command.seq] = engine.call(command)

    # Assert
    assert_engine_consistent(engine, commands, replies)
