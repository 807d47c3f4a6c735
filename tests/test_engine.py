"""The actor engine seen from its callers: the order path, adding markets, timeouts, failures and events.

Every scenario runs on TATA_INR (tick 0.01 INR, lot 1 TATA, both assets with 2 decimals): a price of
100.00 INR is 10_000 ticks, one lot is 100 TATA minor units, and one lot at one tick is one paisa, so a
limit buy of q lots at p ticks holds exactly p * q paisa. Each test starts a real engine (real pykka
actors, real threads) in a fixture and stops it in teardown; every wait has a timeout.
"""

from __future__ import annotations

import asyncio
import itertools
import threading
import time
from collections.abc import Callable, Iterator
from typing import Any

import pytest
from core_helpers import tata_inr

from openbell.actors.bus import InProcessEventBus
from openbell.actors.engine import Engine, EngineTimeout, EngineUnavailable
from openbell.core.commands import (
    AddMarket,
    CancelOrder,
    Deposit,
    GetBalances,
    GetDepth,
    GetOpenOrders,
    PlaceOrder,
)
from openbell.core.events import (
    BalanceChanged,
    DepthUpdated,
    OrderAccepted,
    OrderCanceled,
    OrderFilled,
    OrderTriggered,
    TradeExecuted,
)
from openbell.core.grid import Asset, MarketSpec, make_market_spec
from openbell.core.messages import Balances, Depth, OpenOrders, Reply
from openbell.core.summary import OriginalOrder, summarize
from openbell.core.types import OrderStatus, OrderType, ResultCode, Side, TimeInForce

MARKET = "TATA_INR"
ASSETS = {"INR": Asset("INR", 2), "TATA": Asset("TATA", 2)}
LOT = 100
"""TATA minor units in one lot."""
WAIT = 5.0
"""Seconds any single wait in these tests may take."""

BUY, SELL = Side.BUY, Side.SELL
LIMIT, MARKET_ORDER = OrderType.LIMIT, OrderType.MARKET
GTC, IOC = TimeInForce.GTC, TimeInForce.IOC


def btc_usdt() -> MarketSpec:
    return make_market_spec("BTC_USDT", "0.01", "0.001", {})


# --------------------------------------------------------------------------------------------- fixtures
@pytest.fixture
def bus() -> InProcessEventBus:
    return InProcessEventBus()


@pytest.fixture
def engine(bus: InProcessEventBus) -> Iterator[Engine]:
    engine = Engine(bus=bus, reply_timeout=WAIT).start([tata_inr()])
    yield engine
    engine.stop()


@pytest.fixture
def two_market_engine() -> Iterator[Engine]:
    engine = Engine(reply_timeout=WAIT).start([tata_inr(), btc_usdt()])
    yield engine
    engine.stop()


class EventLog:
    """Every batch of events the bus published, in the order each publishing thread sent them."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._events: list[object] = []

    def __call__(self, events: Any) -> None:
        with self._lock:
            self._events.extend(events)

    def of(self, kind: type) -> list[Any]:
        with self._lock:
            return [event for event in self._events if isinstance(event, kind)]


@pytest.fixture
def event_log(bus: InProcessEventBus) -> Iterator[EventLog]:
    log = EventLog()
    unsubscribe = bus.subscribe(log)
    yield log
    unsubscribe()


# --------------------------------------------------------------------------------------------- helpers
def deposit(engine: Engine, user: str, asset: str, amount: int) -> None:
    reply = engine.call(
        engine.new(Deposit, user_id=user, asset=asset, amount=amount, txn_id=f"{user}-{asset}-{amount}")
    )
    assert reply.ok, reply


def limit_order(
    engine: Engine,
    user: str,
    side: Side,
    price: int,
    quantity: int,
    *,
    market: str = MARKET,
    time_in_force: TimeInForce = GTC,
    client_order_id: str | None = None,
) -> PlaceOrder:
    return engine.new(
        PlaceOrder,
        user_id=user,
        market=market,
        side=side,
        order_type=LIMIT,
        time_in_force=time_in_force,
        price=price,
        quantity=quantity,
        client_order_id=client_order_id,
    )


def place(engine: Engine, user: str, side: Side, price: int, quantity: int, **fields: Any) -> Reply:
    return engine.call(limit_order(engine, user, side, price, quantity, **fields))


def cancel(engine: Engine, user: str, order_id: int, market: str = MARKET) -> Reply:
    return engine.call(engine.new(CancelOrder, user_id=user, market=market, order_id=order_id))


def balances(engine: Engine, user: str) -> dict[str, tuple[int, int]]:
    reply = engine.call(engine.new(GetBalances, user_id=user))
    assert reply.ok, reply
    return reply.expect(Balances).assets


def status_of(reply: Reply, order_id: int) -> OrderStatus:
    return summarize(order_id, reply.events).status


class Replies:
    """Callbacks for `Engine.submit` that collect replies by seq, and a bounded wait for them."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._all_in = threading.Event()
        self.by_seq: dict[int, Reply] = {}
        self.expected = 0

    def callback(self) -> Callable[[Reply], None]:
        with self._lock:
            self.expected += 1
            self._all_in.clear()

        def receive(reply: Reply) -> None:
            with self._lock:
                self.by_seq[reply.seq] = reply
                if len(self.by_seq) >= self.expected:
                    self._all_in.set()

        return receive

    def wait(self, timeout: float = WAIT) -> None:
        assert self._all_in.wait(timeout), f"only {len(self.by_seq)} of {self.expected} replies arrived"


def assert_consistent_after_stop(engine: Engine) -> None:
    """Stop the engine, then check the ledger and every book, and that holds match resting orders."""
    engine.stop()
    ledger = engine.balance_core.ledger
    ledger.check_invariants()
    assert {asset: total for asset, total in ledger.totals().items() if total} == ledger.deposited()
    resting: set[int] = set()
    for core in engine.market_cores.values():
        core.book.check_invariants()
        resting.update(order.order_id for order in core.book.orders())
        resting.update(stop.seq for stop in core.book.stops.orders())
    assert set(ledger.holds) == resting
    assert not engine.balance_core.pending


# --------------------------------------------------------------------------------------------- 1. order path
def test_crossing_order_reply_comes_after_settlement_with_price_improvement_released(engine: Engine) -> None:
    # Arrange: a seller offers 5 lots at 100.00; the buyer has 1_000_000 paisa.
    deposit(engine, "seller", "TATA", 10 * LOT)
    deposit(engine, "buyer", "INR", 1_000_000)
    assert place(engine, "seller", SELL, 10_000, 5).ok

    # Act: buy 8 lots at 101.00: 5 fill at 100.00, 3 rest at 101.00.
    order = limit_order(engine, "buyer", BUY, 10_100, 8)
    reply = engine.call(order)
    buyer = balances(engine, "buyer")
    seller = balances(engine, "seller")

    # Assert: the reply tells of the fill; the very next query sees it settled, and the buyer locks only
    # what the resting 3 lots need (the 5 x 1.00 saved on the fill is back in available).
    assert reply.ok and status_of(reply, order.seq) is OrderStatus.PARTIALLY_FILLED
    assert summarize(order.seq, reply.events).fills[0][:2] == (10_000, 5)
    assert buyer["INR"] == (1_000_000 - 5 * 10_000 - 3 * 10_100, 3 * 10_100)
    assert buyer["TATA"] == (5 * LOT, 0)
    assert seller["INR"] == (5 * 10_000, 0)
    assert seller["TATA"] == (5 * LOT, 0)
    assert_consistent_after_stop(engine)


def test_cancel_releases_exactly_what_the_order_locked(engine: Engine) -> None:
    # Arrange: a buy of 7 lots at 99.50, then 3 of them filled by a seller.
    deposit(engine, "buyer", "INR", 1_000_000)
    deposit(engine, "seller", "TATA", 3 * LOT)
    order = limit_order(engine, "buyer", BUY, 9_950, 7)
    assert engine.call(order).ok
    locked_before = balances(engine, "buyer")["INR"]
    assert place(engine, "seller", SELL, 9_950, 3).ok
    locked_after_fill = balances(engine, "buyer")["INR"]

    # Act
    reply = cancel(engine, "buyer", order.seq)

    # Assert: the hold followed the fill, and the cancel gave back all that was left of it.
    assert locked_before == (1_000_000 - 7 * 9_950, 7 * 9_950)
    assert locked_after_fill == (1_000_000 - 7 * 9_950, 4 * 9_950)
    assert reply.ok and status_of(reply, order.seq) is OrderStatus.CANCELED
    canceled = [event for event in reply.events if isinstance(event, OrderCanceled)]
    assert [(c.filled_quantity, c.remaining_quantity) for c in canceled] == [(3, 4)]
    assert balances(engine, "buyer")["INR"] == (1_000_000 - 3 * 9_950, 0)
    assert_consistent_after_stop(engine)


def test_cancel_of_another_users_order_is_unknown_order_and_leaves_it_resting(engine: Engine) -> None:
    # Arrange
    deposit(engine, "owner", "INR", 100_000)
    order = limit_order(engine, "owner", BUY, 9_000, 10)
    assert engine.call(order).ok

    # Act
    other_user = cancel(engine, "intruder", order.seq)
    wrong_market = cancel(engine, "owner", order.seq, market="NOPE_INR")

    # Assert: indistinguishable from an unknown order, and the order is untouched.
    assert other_user.code is ResultCode.UNKNOWN_ORDER
    assert wrong_market.code is ResultCode.UNKNOWN_ORDER
    assert balances(engine, "owner")["INR"] == (10_000, 90_000)
    open_orders = engine.call(engine.new(GetOpenOrders, user_id="owner")).expect(OpenOrders).orders
    assert [view.order_id for view in open_orders] == [order.seq]
    assert_consistent_after_stop(engine)


def test_cancel_of_unknown_order_id_is_unknown_order(engine: Engine) -> None:
    reply = cancel(engine, "anyone", 987_654)

    assert reply.code is ResultCode.UNKNOWN_ORDER


def test_cancel_racing_a_fill_is_rejected_and_funds_stay_consistent(engine: Engine) -> None:
    # Arrange: the seller rests 5 lots at 100.00; the buyer can take them all.
    deposit(engine, "seller", "TATA", 5 * LOT)
    deposit(engine, "buyer", "INR", 100_000)
    resting = limit_order(engine, "seller", SELL, 10_000, 5)
    assert engine.call(resting).ok
    replies = Replies()

    # Act: the counter-order goes in just before the seller's cancel, without waiting for either.
    counter = limit_order(engine, "buyer", BUY, 10_000, 5)
    late_cancel = engine.new(CancelOrder, user_id="seller", market=MARKET, order_id=resting.seq)
    engine.submit(counter, replies.callback())
    engine.submit(late_cancel, replies.callback())
    replies.wait()

    # Assert: the fill wins, the cancel is refused, nothing stays locked and funds moved once.
    assert status_of(replies.by_seq[counter.seq], counter.seq) is OrderStatus.FILLED
    assert replies.by_seq[late_cancel.seq].code is ResultCode.UNKNOWN_ORDER
    assert balances(engine, "seller") == {"TATA": (0, 0), "INR": (50_000, 0)}
    assert balances(engine, "buyer") == {"INR": (50_000, 0), "TATA": (5 * LOT, 0)}
    assert_consistent_after_stop(engine)


def test_cancel_sent_with_its_order_before_the_order_settles_is_unknown_order(engine: Engine) -> None:
    # Arrange
    deposit(engine, "buyer", "INR", 100_000)
    order = limit_order(engine, "buyer", BUY, 9_000, 1)
    early_cancel = engine.new(CancelOrder, user_id="buyer", market=MARKET, order_id=order.seq)
    replies = Replies()

    # Act: the cancel may arrive while the order is still being matched.
    engine.submit(order, replies.callback())
    engine.submit(early_cancel, replies.callback())
    replies.wait()

    # Assert: either the cancel found the order resting, or it was refused and the order rests.
    assert replies.by_seq[order.seq].ok
    cancel_reply = replies.by_seq[early_cancel.seq]
    expected = (100_000, 0) if cancel_reply.ok else (100_000 - 9_000, 9_000)
    assert cancel_reply.code in (ResultCode.OK, ResultCode.UNKNOWN_ORDER)
    assert balances(engine, "buyer")["INR"] == expected
    assert_consistent_after_stop(engine)


def test_order_for_unknown_market_gets_unknown_market_reply(engine: Engine) -> None:
    deposit(engine, "buyer", "INR", 100_000)

    reply = place(engine, "buyer", BUY, 100, 1, market="GOLD_INR")

    assert reply.code is ResultCode.UNKNOWN_MARKET
    assert balances(engine, "buyer")["INR"] == (100_000, 0)


def test_market_query_for_unknown_market_gets_unknown_market_reply(engine: Engine) -> None:
    reply = engine.call(engine.new(GetDepth, market="GOLD_INR", limit=10))

    assert reply.code is ResultCode.UNKNOWN_MARKET


def test_order_without_enough_funds_is_rejected_with_insufficient_funds(engine: Engine) -> None:
    # Arrange: 10 lots at 100.00 need 100_000 paisa; the buyer has one paisa less.
    deposit(engine, "buyer", "INR", 99_999)
    deposit(engine, "seller", "TATA", 2 * LOT)

    # Act
    buy = place(engine, "buyer", BUY, 10_000, 10)
    sell = place(engine, "seller", SELL, 10_000, 3)

    # Assert
    assert buy.code is ResultCode.INSUFFICIENT_FUNDS
    assert sell.code is ResultCode.INSUFFICIENT_FUNDS
    assert balances(engine, "buyer")["INR"] == (99_999, 0)
    assert balances(engine, "seller")["TATA"] == (2 * LOT, 0)
    assert_consistent_after_stop(engine)


def test_a_client_order_id_never_makes_a_second_order_and_the_retry_gets_the_first_ones_state(
    engine: Engine,
) -> None:
    # Arrange
    deposit(engine, "buyer", "INR", 100_000)
    first = limit_order(engine, "buyer", BUY, 9_000, 1, client_order_id="mine-1")
    assert engine.call(first).ok

    # Act
    duplicate = place(engine, "buyer", BUY, 9_100, 1, client_order_id="mine-1")
    other_user = place(engine, "someone", BUY, 9_100, 1, client_order_id="mine-1")
    assert cancel(engine, "buyer", first.seq).ok
    retried_after_cancel = place(engine, "buyer", BUY, 9_200, 1, client_order_id="mine-1")

    # Assert: both retries are refused and carry the first order's state; another user's id is theirs.
    assert duplicate.code is ResultCode.DUPLICATE_CLIENT_ORDER_ID
    assert duplicate.expect(OriginalOrder).summary.order_id == first.seq
    assert duplicate.expect(OriginalOrder).summary.status is OrderStatus.NEW
    assert other_user.code is ResultCode.INSUFFICIENT_FUNDS
    assert retried_after_cancel.code is ResultCode.DUPLICATE_CLIENT_ORDER_ID
    assert retried_after_cancel.expect(OriginalOrder).summary.order_id == first.seq
    assert retried_after_cancel.expect(OriginalOrder).summary.status is OrderStatus.CANCELED
    assert balances(engine, "buyer")["INR"] == (100_000, 0)
    assert_consistent_after_stop(engine)


# --------------------------------------------------------------------------------------------- 2. add_market
def test_market_added_while_others_trade_accepts_orders_right_after_its_reply(engine: Engine) -> None:
    # Arrange: three traders on TATA_INR with plenty of funds, and a thread that adds BTC_USDT.
    traders = [f"trader{i}" for i in range(3)]
    for trader in traders:
        deposit(engine, trader, "INR", 10**9)
        deposit(engine, trader, "TATA", 10**6 * LOT)
    start = threading.Barrier(len(traders) + 1, timeout=WAIT)
    trader_replies: list[Reply] = []
    new_market: list[Reply] = []
    spec = btc_usdt()

    def trade(trader: str) -> None:
        start.wait()
        for i in range(150):
            side = BUY if i % 2 else SELL
            trader_replies.append(place(engine, trader, side, 10_000 + (i % 7) - 3, 1 + i % 3))

    def add_market_then_trade() -> None:
        start.wait()
        time.sleep(0.01)
        added = engine.call(engine.new(AddMarket, spec=spec))
        new_market.append(added)
        deposit(engine, "btc_seller", "BTC", 10**8)
        deposit(engine, "btc_buyer", "USDT", 10**12)
        new_market.append(place(engine, "btc_seller", SELL, 3_000_000, 5, market=spec.symbol))
        new_market.append(place(engine, "btc_buyer", BUY, 3_000_000, 5, market=spec.symbol))

    threads = [threading.Thread(target=trade, args=(trader,)) for trader in traders]
    threads.append(threading.Thread(target=add_market_then_trade))

    # Act
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=30)

    # Assert: the new market traded at once, and the old one never missed a reply.
    assert not any(thread.is_alive() for thread in threads)
    added, sold, bought = new_market
    assert added.ok and added.data == spec
    assert spec.symbol in engine.markets
    assert sold.ok and status_of(sold, sold.seq) is OrderStatus.NEW
    assert bought.ok and status_of(bought, bought.seq) is OrderStatus.FILLED
    assert len(trader_replies) == 3 * 150 and all(reply.ok for reply in trader_replies)
    bought_btc = 5 * spec.base_units_per_lot
    assert balances(engine, "btc_buyer")["BTC"] == (bought_btc, 0)
    assert_consistent_after_stop(engine)


def test_adding_an_existing_market_is_refused(engine: Engine) -> None:
    reply = engine.call(engine.new(AddMarket, spec=tata_inr()))

    assert reply.code is ResultCode.MARKET_EXISTS


# --------------------------------------------------------------------------------------------- 3. timeouts
class Gate:
    """A bus subscriber that, once armed, holds the publishing actor until opened (or WAIT passes)."""

    def __init__(self) -> None:
        self.armed = threading.Event()
        self.holding = threading.Event()
        self.open = threading.Event()

    def __call__(self, events: Any) -> None:
        if self.armed.is_set() and any(isinstance(event, BalanceChanged) for event in events):
            self.armed.clear()
            self.holding.set()
            self.open.wait(WAIT)


@pytest.fixture
def gate(bus: InProcessEventBus) -> Iterator[Gate]:
    gate = Gate()
    unsubscribe = bus.subscribe(gate)
    yield gate
    gate.open.set()
    unsubscribe()


def test_request_without_a_reply_in_time_raises_engine_timeout_and_engine_keeps_working(
    engine: Engine, gate: Gate
) -> None:
    # Arrange: the balance actor is held up publishing the events of a deposit.
    gate.armed.set()
    assert engine.call(engine.new(Deposit, user_id="u", asset="INR", amount=500, txn_id="t1")).ok
    assert gate.holding.wait(WAIT)

    async def ask_while_blocked() -> float:
        began = time.monotonic()
        with pytest.raises(EngineTimeout):
            await engine.request(engine.new(GetBalances, user_id="u"), timeout=0.05)
        return time.monotonic() - began

    # Act
    waited = asyncio.run(ask_while_blocked())
    with pytest.raises(EngineTimeout):
        engine.call(engine.new(GetBalances, user_id="u"), timeout=0.05)
    gate.open.set()

    async def ask_again() -> Reply:
        return await engine.request(engine.new(GetBalances, user_id="u"), timeout=WAIT)

    later = asyncio.run(ask_again())

    # Assert: the wait was bounded, and the engine answers afterwards (the late replies were dropped).
    assert waited < 1.0
    assert later.ok and later.expect(Balances).assets == {"INR": (500, 0)}
    assert place(engine, "u", BUY, 100, 5).ok
    assert not engine._waiters


def test_request_with_a_tiny_timeout_raises_engine_timeout_or_answers(engine: Engine) -> None:
    async def ask() -> Reply | None:
        try:
            return await engine.request(engine.new(GetBalances, user_id="u"), timeout=0.0001)
        except EngineTimeout:
            return None

    outcomes = [asyncio.run(ask()) for _ in range(5)]

    assert all(outcome is None or outcome.ok for outcome in outcomes)
    assert engine.call(engine.new(Deposit, user_id="u", asset="INR", amount=1, txn_id="after")).ok


def test_request_on_a_stopped_engine_raises_engine_unavailable_at_once(engine: Engine) -> None:
    engine.stop()

    async def ask() -> float:
        began = time.monotonic()
        with pytest.raises(EngineUnavailable):
            await engine.request(engine.new(GetBalances, user_id="u"), timeout=WAIT)
        return time.monotonic() - began

    assert asyncio.run(ask()) < 0.5
    assert engine.call(engine.new(GetBalances, user_id="u")).code is ResultCode.ENGINE_UNAVAILABLE


def test_stop_lets_a_request_in_flight_finish_and_refuses_new_ones(engine: Engine) -> None:
    # Arrange: the market actor is held inside matching, so the order is still in flight at the stop.
    deposit(engine, "buyer", "INR", 100_000)
    entered, release = threading.Event(), threading.Event()
    book = engine.market_cores[MARKET].book
    original = book.place

    def slow_place(command: PlaceOrder, out: list[object] | None = None) -> list[object]:
        entered.set()
        release.wait(WAIT)
        return original(command, out)

    book.place = slow_place  # type: ignore[method-assign]
    stopper = threading.Thread(target=engine.stop)

    async def order_then_stop() -> Reply:
        pending = asyncio.ensure_future(engine.request(limit_order(engine, "buyer", BUY, 9_000, 1), timeout=WAIT))
        assert await asyncio.to_thread(entered.wait, WAIT)
        stopper.start()
        await asyncio.sleep(0.05)
        # Assert (during the stop): new commands are refused at once.
        with pytest.raises(EngineUnavailable):
            await engine.request(engine.new(GetBalances, user_id="buyer"), timeout=WAIT)
        release.set()
        return await pending

    # Act
    reply = asyncio.run(order_then_stop())
    stopper.join(WAIT)

    # Assert: the order in flight was finished, not abandoned, and its funds are held by a resting order.
    assert not stopper.is_alive()
    assert reply.ok
    assert summarize(reply.seq, reply.events).status is OrderStatus.NEW
    assert (
        engine.balance_core.ledger.balance("buyer", "INR")[1] == 9_000 * engine.markets[MARKET].quote_units_per_tick_lot
    )
    assert engine.balance_core.pending == {}


# --------------------------------------------------------------------------------------------- 4. failures
def fail_on(engine: Engine, market: str, order_id: int, *, after_matching: bool) -> None:
    """Make `market`'s book raise while placing `order_id`: before touching the book, or after it."""
    book = engine.market_cores[market].book
    original = book.place

    def place_or_fail(command: PlaceOrder, out: list[object] | None = None) -> list[object]:
        if command.seq != order_id:
            return original(command, out)
        if after_matching:
            original(command, out)
        raise RuntimeError(f"matching failed for order {order_id}")

    book.place = place_or_fail  # type: ignore[method-assign]


@pytest.mark.parametrize("after_matching", [False, True], ids=["before-matching", "after-resting"])
def test_order_whose_matching_raises_gets_engine_error_and_its_hold_released(
    two_market_engine: Engine, after_matching: bool
) -> None:
    # Arrange
    engine = two_market_engine
    deposit(engine, "buyer", "INR", 100_000)
    deposit(engine, "seller", "TATA", 10 * LOT)
    deposit(engine, "btc", "USDT", 10**12)
    doomed = limit_order(engine, "buyer", BUY, 9_000, 10)
    fail_on(engine, MARKET, doomed.seq, after_matching=after_matching)

    # Act
    reply = engine.call(doomed)

    # Assert: the caller is told, nothing stays locked or on the book, and both markets go on trading.
    assert reply.code is ResultCode.ENGINE_ERROR
    assert balances(engine, "buyer")["INR"] == (100_000, 0)
    depth = engine.call(engine.new(GetDepth, market=MARKET, limit=10))
    assert (depth.expect(Depth).bids, depth.expect(Depth).asks) == ((), ())
    assert place(engine, "buyer", BUY, 9_000, 2).ok
    counter = limit_order(engine, "seller", SELL, 9_000, 2)
    assert status_of(engine.call(counter), counter.seq) is OrderStatus.FILLED
    assert place(engine, "btc", BUY, 1_000, 1, market="BTC_USDT").ok
    assert balances(engine, "buyer") == {"INR": (100_000 - 2 * 9_000, 0), "TATA": (2 * LOT, 0)}
    assert_consistent_after_stop(engine)


def test_matching_that_raises_after_trading_leaves_no_funds_locked_without_a_resting_order(engine: Engine) -> None:
    # Arrange: a maker rests 2 lots; resting the taker's remainder will raise after the trade.
    deposit(engine, "seller", "TATA", 2 * LOT)
    deposit(engine, "buyer", "INR", 100_000)
    assert place(engine, "seller", SELL, 10_000, 2).ok
    book = engine.market_cores[MARKET].book

    def rest_or_fail(*args: object) -> None:
        raise RuntimeError("resting failed")

    book._rest = rest_or_fail  # type: ignore[method-assign]

    # Act
    reply = place(engine, "buyer", BUY, 10_000, 5)

    # Assert
    assert reply.code is ResultCode.ENGINE_ERROR
    assert_consistent_after_stop(engine)


# --------------------------------------------------------------------------------------------- 5. events
def test_bus_subscriber_receives_order_trade_balance_and_depth_events(engine: Engine, event_log: EventLog) -> None:
    # Arrange
    deposit(engine, "seller", "TATA", 4 * LOT)
    deposit(engine, "buyer", "INR", 100_000)
    maker = limit_order(engine, "seller", SELL, 10_000, 4)
    taker = limit_order(engine, "buyer", BUY, 10_000, 4)

    # Act
    engine.call(maker)
    engine.call(taker)
    engine.call(engine.new(GetDepth, market=MARKET, limit=10))  # the market actor has published by now
    balances(engine, "buyer")  # and so has the balance actor

    # Assert
    accepted = {event.order_id for event in event_log.of(OrderAccepted)}
    assert {maker.seq, taker.seq} <= accepted
    trades = event_log.of(TradeExecuted)
    assert [(t.price, t.quantity, t.maker_order_id, t.taker_order_id) for t in trades] == [
        (10_000, 4, maker.seq, taker.seq)
    ]
    assert {event.order_id for event in event_log.of(OrderFilled)} == {maker.seq, taker.seq}
    final_balances = {(e.user_id, e.asset): (e.available, e.locked) for e in event_log.of(BalanceChanged)}
    assert final_balances[("buyer", "INR")] == (100_000 - 40_000, 0)
    assert final_balances[("buyer", "TATA")] == (4 * LOT, 0)
    assert final_balances[("seller", "INR")] == (40_000, 0)
    depth = event_log.of(DepthUpdated)
    assert depth and depth[0].asks == ((10_000, 4),)
    assert depth[-1].asks == ((10_000, 0),)


def test_depth_updates_are_contiguous_and_end_at_the_snapshot_update_id(engine: Engine, event_log: EventLog) -> None:
    # Arrange: two traders place and cancel orders around 100.00 from two threads.
    for user in ("a", "b"):
        deposit(engine, user, "INR", 10**9)
        deposit(engine, user, "TATA", 10**6 * LOT)

    def trade(user: str, offset: int) -> None:
        placed: list[int] = []
        for i in range(120):
            side = BUY if (i + offset) % 2 else SELL
            order = limit_order(engine, user, side, 10_000 + (i * 7 + offset) % 11 - 5, 1 + i % 4)
            if engine.call(order).ok:
                placed.append(order.seq)
            if i % 5 == 4 and placed:
                cancel(engine, user, placed.pop(0))

    threads = [threading.Thread(target=trade, args=(user, n)) for n, user in enumerate(("a", "b"))]

    # Act
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=30)
    snapshot = engine.call(engine.new(GetDepth, market=MARKET, limit=5000))

    # Assert: each update starts where the last one ended, and replaying them gives the snapshot.
    assert not any(thread.is_alive() for thread in threads)
    updates = [event for event in event_log.of(DepthUpdated) if event.market == MARKET]
    assert updates and updates[0].first_update_id == 1
    for previous, current in itertools.pairwise(updates):
        assert current.first_update_id == previous.last_update_id + 1
        assert current.last_update_id >= current.first_update_id
    depth = snapshot.expect(Depth)
    bids, asks, update_id = list(depth.bids), list(depth.asks), depth.update_id
    assert update_id == updates[-1].last_update_id
    levels: dict[Side, dict[int, int]] = {BUY: {}, SELL: {}}
    for update in updates:
        for side, changes in ((BUY, update.bids), (SELL, update.asks)):
            for price, total in changes:
                if total:
                    levels[side][price] = total
                else:
                    levels[side].pop(price, None)
    assert sorted(levels[BUY].items(), reverse=True) == bids
    assert sorted(levels[SELL].items()) == asks
    assert_consistent_after_stop(engine)


def test_market_order_with_no_liquidity_expires_and_releases_its_budget(engine: Engine) -> None:
    # Arrange
    deposit(engine, "buyer", "INR", 50_000)
    order = engine.new(
        PlaceOrder,
        user_id="buyer",
        market=MARKET,
        side=BUY,
        order_type=MARKET_ORDER,
        time_in_force=IOC,
        price=None,
        quantity=3,
    )

    # Act
    reply = engine.call(order)

    # Assert
    assert reply.ok and status_of(reply, order.seq) is OrderStatus.EXPIRED
    assert balances(engine, "buyer")["INR"] == (50_000, 0)
    assert_consistent_after_stop(engine)


# --------------------------------------------------------------------------------------------- stop orders
def test_a_stop_waits_in_open_orders_then_a_trade_triggers_it_and_its_owner_is_settled(
    engine: Engine, event_log: EventLog
) -> None:
    # Arrange: a trade at 100.00 sets the last price; bob bids 94.00; alice waits to sell 3 below 95.00.
    deposit(engine, "alice", "TATA", 10 * LOT)
    deposit(engine, "bob", "INR", 1_000_000)
    deposit(engine, "carol", "TATA", 10 * LOT)
    deposit(engine, "dave", "INR", 1_000_000)
    assert place(engine, "carol", SELL, 10_000, 1).ok and place(engine, "dave", BUY, 10_000, 1).ok
    assert place(engine, "bob", BUY, 9_400, 5).ok
    stop = engine.call(
        engine.new(
            PlaceOrder,
            user_id="alice",
            market=MARKET,
            side=SELL,
            order_type=OrderType.STOP_LOSS,
            time_in_force=GTC,
            price=None,
            quantity=3,
            stop_price=9_500,
        )
    )
    assert stop.ok and status_of(stop, stop.seq) is OrderStatus.NEW
    waiting = engine.call(engine.new(GetOpenOrders, user_id="alice")).expect(OpenOrders).orders
    assert [(o.order_id, o.order_type, o.stop_price, o.status, o.triggered) for o in waiting] == [
        (stop.seq, OrderType.STOP_LOSS, 9_500, OrderStatus.NEW, False)
    ]
    assert balances(engine, "alice")["TATA"] == (7 * LOT, 3 * LOT)

    # Act: carol and dave trade at 95.00.
    assert place(engine, "carol", SELL, 9_500, 1).ok
    trigger = place(engine, "dave", BUY, 9_500, 1)

    # Assert: dave's reply carries the stop's events; alice sold 3 to bob at 94.00 and holds nothing.
    assert trigger.ok and status_of(trigger, trigger.seq) is OrderStatus.FILLED
    assert status_of(trigger, stop.seq) is OrderStatus.FILLED
    assert [e.order_id for e in trigger.events if isinstance(e, OrderTriggered)] == [stop.seq]
    assert balances(engine, "alice") == {"TATA": (7 * LOT, 0), "INR": (3 * 9_400, 0)}
    assert engine.call(engine.new(GetOpenOrders, user_id="alice")).expect(OpenOrders).orders == ()
    deadline = time.monotonic() + WAIT
    while not event_log.of(OrderTriggered) and time.monotonic() < deadline:
        time.sleep(0.01)
    assert [e.order_id for e in event_log.of(OrderTriggered)] == [stop.seq]
    assert_consistent_after_stop(engine)


def test_a_waiting_stop_is_canceled_through_the_engine_and_releases_its_hold(engine: Engine) -> None:
    deposit(engine, "alice", "INR", 1_000_000)
    stop = engine.call(
        engine.new(
            PlaceOrder,
            user_id="alice",
            market=MARKET,
            side=BUY,
            order_type=OrderType.STOP_LOSS_LIMIT,
            time_in_force=GTC,
            price=10_600,
            quantity=2,
            stop_price=10_500,
        )
    )
    assert stop.ok and balances(engine, "alice")["INR"] == (1_000_000 - 21_200, 21_200)

    canceled = cancel(engine, "alice", stop.seq)

    assert canceled.ok and status_of(canceled, stop.seq) is OrderStatus.CANCELED
    assert balances(engine, "alice")["INR"] == (1_000_000, 0)
    assert_consistent_after_stop(engine)
