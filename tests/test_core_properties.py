"""Properties of the pure core: random streams of deposits, orders (stop and take-profit orders among them)
and cancels from a few users.

Every step goes through the ledger and the book the way the engine drives them (hold, place, settle;
or cancel, settle). After each step the properties below must hold; the naive matcher in
`reference_matcher` is fed the same accepted orders and must agree on every trade and resting order.
"""

from __future__ import annotations

import os
from dataclasses import dataclass

from hypothesis import HealthCheck, event, example, given, note, settings
from hypothesis import strategies as st
from reference_matcher import ReferenceMatcher, ReferenceTrade

from openbell.core import book as book_module
from openbell.core.book import OrderBook
from openbell.core.commands import PlaceOrder
from openbell.core.events import (
    TERMINAL_EVENTS,
    CancelRejected,
    OrderAccepted,
    OrderCanceled,
    OrderExpired,
    OrderRejected,
    OrderTriggered,
    TradeExecuted,
)
from openbell.core.grid import MarketSpec, make_market_spec
from openbell.core.ledger import FEE_ACCOUNT, Ledger
from openbell.core.stops import MAX_TRIGGERS_PER_COMMAND
from openbell.core.types import OrderType, ResultCode, SelfTradePrevention, Side, TimeInForce

MARKET = "TATA_INR"
LOW_PRICE, HIGH_PRICE = 98, 102
"""Ticks: a narrow band, so that orders cross often."""
USERS = ("alice", "bob", "carol", "dave", "erin")
SCALE = int(os.environ.get("OPENBELL_PROPERTY_SCALE", "1"))
"""Multiplies every property's example count, for a longer hunt than the default run of a few seconds."""


def tata_inr(base_decimals: int, quote_decimals: int, maker_fee_bps: int = 0, taker_fee_bps: int = 0) -> MarketSpec:
    return make_market_spec(
        MARKET,
        "0.01",
        "1",
        {},
        base_decimals=base_decimals,
        quote_decimals=quote_decimals,
        maker_fee_bps=maker_fee_bps,
        taker_fee_bps=taker_fee_bps,
    )


# ------------------------------------------------------------------ steps
@dataclass(frozen=True)
class DepositStep:
    user: str
    base: bool
    """True: deposit the base asset (TATA); False: the quote asset (INR)."""
    amount: int
    txn_id: str


@dataclass(frozen=True)
class ReplayDeposit:
    pick: int
    """Which earlier deposit to send again, exactly (modulo how many there were)."""


@dataclass(frozen=True)
class PlaceStep:
    user: str
    side: Side
    order_type: OrderType
    time_in_force: TimeInForce
    price: int | None
    quantity: int | None
    quote_quantity: int | None
    post_only: bool
    stp: SelfTradePrevention
    stop_price: int | None = None


@dataclass(frozen=True)
class CancelStep:
    user: str
    pick: int | None
    """Which earlier order id to cancel (modulo how many were placed); None: an id never used."""


@dataclass(frozen=True)
class RestoreStep:
    """Rebuild the book and the ledger from their snapshot state (waiting stops and the last price included)."""


Step = DepositStep | ReplayDeposit | PlaceStep | CancelStep | RestoreStep


@st.composite
def scenarios(draw: st.DrawFn, spec: MarketSpec) -> tuple[list[str], list[Step]]:
    users = list(USERS[: draw(st.integers(3, 5))])
    per_lot = spec.base_units_per_lot
    per_tick_lot = spec.quote_units_per_tick_lot
    user = st.sampled_from(users)
    side = st.sampled_from(Side)
    price = st.integers(LOW_PRICE, HIGH_PRICE)
    quantity = st.integers(1, 8)
    stp = st.sampled_from(SelfTradePrevention)
    base_amount = st.integers(1, 25 * per_lot)
    quote_amount = st.integers(1, 25 * HIGH_PRICE * per_tick_lot)
    # Opening balances: enough for a good many lots, plus an odd remainder so budgets rarely divide evenly.
    lot_cost = HIGH_PRICE * per_tick_lot
    opening_base = st.builds(lambda lots, odd: lots * per_lot + odd, st.integers(5, 40), st.integers(0, per_lot - 1))
    opening_quote = st.builds(lambda lots, odd: lots * lot_cost + odd, st.integers(5, 40), st.integers(0, lot_cost))

    funding: list[Step] = []
    for name in users:
        funding.append(DepositStep(name, True, draw(opening_base), f"fund-{name}-base"))
        funding.append(DepositStep(name, False, draw(opening_quote), f"fund-{name}-quote"))

    limit = st.builds(
        PlaceStep,
        user,
        side,
        st.just(OrderType.LIMIT),
        st.sampled_from(TimeInForce),
        price,
        quantity,
        st.none(),
        st.just(False),
        stp,
    )
    resting_limit = st.builds(
        PlaceStep,
        user,
        side,
        st.just(OrderType.LIMIT),
        st.just(TimeInForce.GTC),
        price,
        quantity,
        st.none(),
        st.just(False),
        stp,
    )
    post_only = st.builds(
        PlaceStep,
        user,
        side,
        st.just(OrderType.LIMIT),
        st.just(TimeInForce.GTC),
        price,
        quantity,
        st.none(),
        st.just(True),
        stp,
    )
    market_by_quantity = st.builds(
        PlaceStep,
        user,
        side,
        st.just(OrderType.MARKET),
        st.sampled_from(TimeInForce),
        st.none(),
        quantity,
        st.none(),
        st.just(False),
        stp,
    )
    market_buy_by_quote = st.builds(
        PlaceStep,
        user,
        st.just(Side.BUY),
        st.just(OrderType.MARKET),
        st.sampled_from([TimeInForce.GTC, TimeInForce.IOC]),
        st.none(),
        st.none(),
        st.integers(1, 8 * HIGH_PRICE * per_tick_lot),
        st.just(False),
        stp,
    )
    stop_limit = st.builds(
        PlaceStep,
        user,
        side,
        st.sampled_from([OrderType.STOP_LOSS_LIMIT, OrderType.TAKE_PROFIT_LIMIT]),
        st.sampled_from(TimeInForce),
        price,
        quantity,
        st.none(),
        st.just(False),
        stp,
        price,
    )
    stop_market_sell = st.builds(
        PlaceStep,
        user,
        st.just(Side.SELL),
        st.sampled_from([OrderType.STOP_LOSS, OrderType.TAKE_PROFIT]),
        st.sampled_from([TimeInForce.GTC, TimeInForce.IOC]),
        st.none(),
        quantity,
        st.none(),
        st.just(False),
        stp,
        price,
    )
    stop_market_buy = st.builds(
        PlaceStep,
        user,
        st.just(Side.BUY),
        st.sampled_from([OrderType.STOP_LOSS, OrderType.TAKE_PROFIT]),
        st.sampled_from([TimeInForce.GTC, TimeInForce.IOC]),
        st.none(),
        st.one_of(st.none(), quantity),
        st.integers(1, 8 * HIGH_PRICE * per_tick_lot),
        st.just(False),
        stp,
        price,
    )
    deposit = st.builds(
        DepositStep,
        user,
        st.booleans(),
        st.one_of(base_amount, quote_amount),
        st.integers(0, 5).map(lambda k: f"txn-{k}"),
    )
    replay = st.builds(ReplayDeposit, st.integers(0, 50))
    restore = st.just(RestoreStep())
    cancel = st.builds(CancelStep, user, st.one_of(st.none(), st.integers(0, 60)))
    step = st.one_of(
        resting_limit,
        resting_limit,
        resting_limit,
        limit,
        limit,
        post_only,
        market_by_quantity,
        market_buy_by_quote,
        stop_limit,
        stop_limit,
        stop_market_sell,
        stop_market_buy,
        deposit,
        replay,
        restore,
        cancel,
        cancel,
    )
    return users, funding + draw(st.lists(step, min_size=8, max_size=60))


# ------------------------------------------------------------------ the driver
class Exchange:
    """A book, a ledger and the reference matcher, driven in step; checks everything after each step."""

    def __init__(self, spec: MarketSpec, max_triggers: int = MAX_TRIGGERS_PER_COMMAND) -> None:
        self.spec = spec
        self.book = OrderBook(spec)
        self.ledger = Ledger()
        self.ledger.add_market(spec)
        self.reference = ReferenceMatcher(spec.quote_units_per_tick_lot, max_triggers)
        self.seq = 0
        self.order_ids: list[int] = []
        self.deposits: list[DepositStep] = []
        self.credited: dict[str, DepositStep] = {}
        self.expected_funds: dict[tuple[str, str], int] = {}
        """(account, asset) -> available + locked, worked out from credited deposits and the trades."""

    def next_seq(self) -> int:
        self.seq += 1
        return self.seq

    def run(self, step: Step) -> None:
        if isinstance(step, DepositStep):
            self.deposit(step)
        elif isinstance(step, RestoreStep):
            state = self.book.to_state()
            self.book = OrderBook.from_state(self.spec, state)
            self.ledger = Ledger.from_state(self.ledger.to_state())
            assert self.book.to_state() == state
        elif isinstance(step, ReplayDeposit):
            if self.deposits:
                self.deposit(self.deposits[step.pick % len(self.deposits)])
        elif isinstance(step, PlaceStep):
            self.place(step)
        else:
            self.cancel(step)
        self.check()

    def deposit(self, step: DepositStep) -> None:
        asset = self.spec.base.symbol if step.base else self.spec.quote.symbol
        self.next_seq()
        code, credited = self.ledger.deposit(step.user, asset, step.amount, step.txn_id)
        previous = self.credited.get(step.txn_id)
        if previous is None:
            assert (code, credited) == (ResultCode.OK, True)
            self.credited[step.txn_id] = step
            self.add_funds(step.user, asset, step.amount)
        elif previous == step:
            assert (code, credited) == (ResultCode.OK, False)
        else:
            assert (code, credited) == (ResultCode.DEPOSIT_CONFLICT, False)
        self.deposits.append(step)

    def place(self, step: PlaceStep) -> None:
        seq = self.next_seq()
        self.order_ids.append(seq)
        cmd = PlaceOrder(
            seq,
            1_000 + seq,
            step.user,
            MARKET,
            step.side,
            step.order_type,
            step.time_in_force,
            step.price,
            step.quantity,
            step.quote_quantity,
            step.post_only,
            None,
            step.stp,
            stop_price=step.stop_price,
        )
        code, cmd = self.ledger.hold_for(cmd)
        if code is not ResultCode.OK:
            assert code is ResultCode.INSUFFICIENT_FUNDS, code
            event("an order was refused for insufficient funds")
            return
        events = self.book.place(cmd)
        self.ledger.settle(events)
        expected = self.reference.place(cmd)

        trades = [e for e in events if isinstance(e, TradeExecuted)]
        assert [ReferenceTrade(t.price, t.quantity, t.maker_order_id, t.taker_order_id) for t in trades] == (
            expected.all_trades()
        )
        triggered = [e for e in events if isinstance(e, OrderTriggered)]
        assert [e.order_id for e in triggered] == [stop.order_id for stop in expected.triggered]
        assert self.book.last_price == self.reference.last_price
        first_trigger = events.index(triggered[0]) if triggered else len(events)
        own = events[:first_trigger]
        """The events of the order itself; after them come the stops it triggered, each with its own."""
        rejections = [e for e in own if isinstance(e, OrderRejected)]
        if expected.rejected:
            code = ResultCode.POST_ONLY_WOULD_TAKE if cmd.post_only else ResultCode.STOP_WOULD_TRIGGER
            assert len(own) == 1 and rejections and rejections[0].code is code, events
        else:
            assert not rejections and isinstance(events[0], OrderAccepted), events
        stp_expired = [
            e.order_id for e in events if isinstance(e, OrderExpired) and e.reason is ResultCode.SELF_TRADE_PREVENTED
        ]
        assert stp_expired == expected.self_trade_expiries()
        if not triggered:  # else a triggered stop may have filled or expired it since (`check` compares the books)
            assert (self.book.order(seq) is not None) == expected.rests
            assert (self.book.stops.get(seq) is not None) == expected.waits
        endings = [e for e in own if isinstance(e, TERMINAL_EVENTS) and e.order_id == seq]
        if expected.rests or expected.waits:
            assert not endings, endings
        else:
            assert len(endings) == 1 and endings[0] is own[-1], events

        self.label(cmd, events)
        if self.book.stops.due(self.book.last_price):
            event("stops left due for the next order (the trigger budget was used up)")
        for trade in trades:
            assert trade.maker_user_id != trade.taker_user_id
            if trade in own:
                assert trade.taker_side is cmd.side
            self.settle_expected(trade)

    def label(self, cmd: PlaceOrder, events: list[object]) -> None:
        """Tell hypothesis's statistics which paths this order took, to see that the streams reach them."""
        kind = f"{cmd.order_type} {cmd.time_in_force}" + (" post-only" if cmd.post_only else "")
        fired = sum(isinstance(e, OrderTriggered) for e in events)
        if fired:
            event(f"triggered {min(fired, 3)}{'+' if fired > 3 else ''} stops")
        if cmd.order_type is OrderType.MARKET and cmd.side is Side.BUY:
            kind += " by quote" if cmd.quantity is None else " by quantity"
        traded = any(isinstance(e, TradeExecuted) for e in events)
        event(f"{kind}: {'traded' if traded else 'no trade'}")
        for e in events:
            if isinstance(e, OrderExpired) and e.reason is not ResultCode.NO_LIQUIDITY:
                who = "taker" if e.order_id == cmd.seq else "maker"
                event(f"{who} expired: {e.reason.name} ({cmd.stp})")
            elif isinstance(e, OrderRejected):
                event(f"rejected: {e.code.name}")

    def settle_expected(self, trade: TradeExecuted) -> None:
        spec = self.spec
        base_asset, quote_asset = spec.base.symbol, spec.quote.symbol
        quote = trade.price * trade.quantity * spec.quote_units_per_tick_lot
        base = trade.quantity * spec.base_units_per_lot
        if trade.taker_side is Side.BUY:
            buyer, buyer_bps, seller, seller_bps = (
                trade.taker_user_id,
                spec.taker_fee_bps,
                trade.maker_user_id,
                spec.maker_fee_bps,
            )
        else:
            buyer, buyer_bps, seller, seller_bps = (
                trade.maker_user_id,
                spec.maker_fee_bps,
                trade.taker_user_id,
                spec.taker_fee_bps,
            )
        buyer_fee = base * buyer_bps // 10_000
        seller_fee = quote * seller_bps // 10_000
        self.add_funds(buyer, quote_asset, -quote)
        self.add_funds(buyer, base_asset, base - buyer_fee)
        self.add_funds(seller, base_asset, -base)
        self.add_funds(seller, quote_asset, quote - seller_fee)
        self.add_funds(FEE_ACCOUNT, base_asset, buyer_fee)
        self.add_funds(FEE_ACCOUNT, quote_asset, seller_fee)

    def add_funds(self, account: str, asset: str, amount: int) -> None:
        key = (account, asset)
        self.expected_funds[key] = self.expected_funds.get(key, 0) + amount

    def cancel(self, step: CancelStep) -> None:
        seq = self.next_seq()
        if step.pick is None or not self.order_ids:
            order_id = 10**9 + seq
        else:
            order_id = self.order_ids[step.pick % len(self.order_ids)]
        events = self.book.cancel(order_id, step.user, 1_000 + seq)
        self.ledger.settle(events)
        canceled = self.reference.cancel(order_id, step.user)
        event(f"cancel: {'done' if canceled else 'unknown order'}")
        if canceled:
            assert isinstance(events[0], OrderCanceled) and events[0].order_id == order_id
        else:
            assert isinstance(events[0], CancelRejected) and events[0].code is ResultCode.UNKNOWN_ORDER

    def check(self) -> None:
        book, ledger, spec = self.book, self.ledger, self.spec
        book.check_invariants()
        ledger.check_invariants()

        bid, ask = book.best_bid, book.best_ask
        assert bid is None or ask is None or bid < ask, f"crossed book: bid {bid}, ask {ask}"

        for account in ledger.users():
            for asset, (available, locked) in ledger.balances(account).items():
                assert available >= 0 and locked >= 0, (account, asset, available, locked)
                assert available + locked == self.expected_funds.get((account, asset), 0), (account, asset)
        for (account, asset), amount in self.expected_funds.items():
            assert sum(ledger.balance(account, asset)) == amount, (account, asset)

        totals = ledger.totals()
        deposited = ledger.deposited()
        for asset in set(totals) | set(deposited):
            assert totals.get(asset, 0) == deposited.get(asset, 0), asset

        open_orders = {o.order_id: o for o in book.orders()}
        waiting = {cmd.seq: cmd for cmd in book.stops.orders()}
        assert set(ledger.holds) == set(open_orders) | set(waiting)
        assert set(waiting) == {stop.seq for stop in self.reference.stops}
        for order_id, cmd in waiting.items():
            hold = ledger.holds[order_id]
            if cmd.side is Side.SELL:
                assert hold.amount == (cmd.quantity or 0) * spec.base_units_per_lot, order_id
            elif cmd.price is not None:
                assert hold.amount == cmd.price * (cmd.quantity or 0) * spec.quote_units_per_tick_lot, order_id
            else:
                assert hold.amount == cmd.quote_quantity, order_id
        for order_id, order in open_orders.items():
            hold = ledger.holds[order_id]
            assert hold.user_id == order.user_id
            if order.side is Side.BUY:
                assert hold.asset == spec.quote.symbol
                assert hold.amount == order.price * order.remaining * spec.quote_units_per_tick_lot, order_id
            else:
                assert hold.asset == spec.base.symbol
                assert hold.amount == order.remaining * spec.base_units_per_lot, order_id

        resting = {o.order_id: (o.user_id, o.side, o.price, o.remaining) for o in book.orders()}
        assert resting == self.reference.resting()


def run_scenario(
    spec: MarketSpec, scenario: tuple[list[str], list[Step]], max_triggers: int = MAX_TRIGGERS_PER_COMMAND
) -> Exchange:
    users, steps = scenario
    note(f"users: {users}")
    for i, step in enumerate(steps):
        note(f"step {i}: {step}")
    exchange = Exchange(spec, max_triggers)
    saved = book_module.MAX_TRIGGERS_PER_COMMAND
    book_module.MAX_TRIGGERS_PER_COMMAND = max_triggers
    try:
        for step in steps:
            exchange.run(step)
    finally:
        book_module.MAX_TRIGGERS_PER_COMMAND = saved
    return exchange


# ------------------------------------------------------------------ properties
PLAIN = tata_inr(base_decimals=3, quote_decimals=4)
"""One lot is 1000 TATA minor units, one tick times one lot 100 INR minor units: mixing them up shows."""
COARSE = tata_inr(base_decimals=0, quote_decimals=2)
"""Both conversion factors are 1."""


def funded(*users: str) -> list[Step]:
    """Opening deposits of 10 lots of TATA and 10 lots' worth of INR at the highest price, per user."""
    steps: list[Step] = []
    for name in users:
        steps.append(DepositStep(name, True, 10 * PLAIN.base_units_per_lot, f"fund-{name}-base"))
        steps.append(DepositStep(name, False, 10 * HIGH_PRICE * PLAIN.quote_units_per_tick_lot, f"fund-{name}-quote"))
    return steps


def limit_step(user: str, side: Side, price: int, quantity: int) -> PlaceStep:
    return PlaceStep(
        user, side, OrderType.LIMIT, TimeInForce.GTC, price, quantity, None, False, SelfTradePrevention.EXPIRE_MAKER
    )


USERS_ABC = ["alice", "bob", "carol"]
CANCEL_OF_ANOTHER_USERS_ORDER = (
    USERS_ABC,
    [*funded(*USERS_ABC), limit_step("alice", Side.BUY, 98, 1), CancelStep("bob", 0)],
)
"""Found by these properties: the ledger released alice's hold when bob's cancel of her order was refused."""
SELF_TRADE_AFTER_THE_BUDGET_IS_SPENT = (
    USERS_ABC,
    [
        *funded(*USERS_ABC),
        limit_step("bob", Side.SELL, 99, 1),
        limit_step("alice", Side.SELL, 99, 1),
        PlaceStep(
            "alice",
            Side.BUY,
            OrderType.MARKET,
            TimeInForce.IOC,
            None,
            None,
            99 * PLAIN.quote_units_per_tick_lot + 50,
            False,
            SelfTradePrevention.EXPIRE_MAKER,
        ),
    ],
)
"""Found by these properties: a market buy whose budget could not buy another lot still expired its
user's own resting order by self-trade prevention."""


@settings(max_examples=400 * SCALE, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(scenario=scenarios(PLAIN))
@example(scenario=CANCEL_OF_ANOTHER_USERS_ORDER)
@example(scenario=SELF_TRADE_AFTER_THE_BUDGET_IS_SPENT)
def test_random_streams_keep_funds_conserved_the_book_uncrossed_and_agree_with_the_reference(
    scenario: tuple[list[str], list[Step]],
) -> None:
    run_scenario(PLAIN, scenario)


@settings(max_examples=120 * SCALE, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(scenario=scenarios(COARSE))
def test_random_streams_on_a_unit_grid_agree_with_the_reference(scenario: tuple[list[str], list[Step]]) -> None:
    run_scenario(COARSE, scenario)


@settings(max_examples=200 * SCALE, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(
    fees=st.tuples(st.integers(1, 1000), st.integers(1, 1000)),
    scenario=scenarios(tata_inr(base_decimals=8, quote_decimals=6)),
)
def test_fees_only_move_funds_between_accounts(fees: tuple[int, int], scenario: tuple[list[str], list[Step]]) -> None:
    maker_bps, taker_bps = fees
    spec = tata_inr(base_decimals=8, quote_decimals=6, maker_fee_bps=maker_bps, taker_fee_bps=taker_bps)
    exchange = run_scenario(spec, scenario)
    fee_funds = exchange.ledger.balances(FEE_ACCOUNT)
    assert all(locked == 0 for _, locked in fee_funds.values())


@settings(max_examples=150 * SCALE, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(scenario=scenarios(PLAIN))
def test_stops_left_due_by_a_small_trigger_budget_trigger_later_as_the_reference_says(
    scenario: tuple[list[str], list[Step]],
) -> None:
    run_scenario(PLAIN, scenario, max_triggers=1)
