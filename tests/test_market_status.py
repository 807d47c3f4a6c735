"""Market status in the balance stage: a halted or cancel-only market refuses new orders before any funds are
held, still takes cancels, and keeps its status in snapshots and replay; the change is one command, in order.

Pure `BalanceCore` (no actors): each scenario feeds `CommandBatch`es and the settlements a `MarketCore` makes,
as the engine does, and asserts on replies, events and balances.
"""

from __future__ import annotations

import itertools

from core_helpers import tata_inr

from openbell.core.commands import AddMarket, CancelOrder, Command, Deposit, PlaceOrder, SetMarketStatus
from openbell.core.events import MarketStatusChanged, OrderCanceled, OrderRejected
from openbell.core.grid import MarketSpec
from openbell.core.matching import MarketCore
from openbell.core.messages import CommandBatch, Reply
from openbell.core.risk import BalanceCore
from openbell.core.types import MarketStatus, OrderType, ResultCode, Side, TimeInForce

MARKET = "TATA_INR"


class Venue:
    """A balance stage and one market stage, driven one batch at a time."""

    def __init__(self) -> None:
        self.core = BalanceCore()
        self.market: MarketCore | None = None
        self.seq = itertools.count(1)
        self.events: list[object] = []

    def run(self, *commands: Command) -> list[Reply]:
        effects = self.core.handle_commands(CommandBatch(commands))
        replies, self.events = list(effects.replies), list(effects.events)
        for spec in effects.new_markets:
            self.market = MarketCore(spec)
        for batch in effects.batches:
            assert self.market is not None
            settlement, _ = self.market.handle_batch(batch)
            settled = self.core.handle_settlement(settlement)
            replies += settled.replies
        return sorted(replies, key=lambda reply: reply.seq)

    def add_market(self) -> None:
        [reply] = self.run(AddMarket(next(self.seq), 1, tata_inr()))
        assert reply.ok

    def deposit(self, user: str, asset: str, amount: int) -> None:
        [reply] = self.run(Deposit(next(self.seq), 1, user, asset, amount, f"{user}-{asset}"))
        assert reply.ok

    def limit(self, user: str, side: Side, price: int, quantity: int) -> PlaceOrder:
        return PlaceOrder(next(self.seq), 2, user, MARKET, side, OrderType.LIMIT, TimeInForce.GTC, price, quantity)

    def set_status(self, status: MarketStatus) -> SetMarketStatus:
        return SetMarketStatus(next(self.seq), 3, MARKET, status)


def funded_venue() -> Venue:
    venue = Venue()
    venue.add_market()
    venue.deposit("alice", "INR", 100_000)
    venue.deposit("bob", "TATA", 1_000)
    return venue


def test_a_halted_market_refuses_new_orders_with_market_halted_and_holds_nothing() -> None:
    venue = funded_venue()
    [halted] = venue.run(venue.set_status(MarketStatus.HALTED))

    [reply] = venue.run(venue.limit("alice", Side.BUY, 100, 5))

    assert halted.ok and halted.expect(MarketSpec).status is MarketStatus.HALTED
    assert reply.code is ResultCode.MARKET_HALTED
    assert isinstance(reply.events[0], OrderRejected) and reply.events[0].code is ResultCode.MARKET_HALTED
    assert venue.core.ledger.balance("alice", "INR") == (100_000, 0)
    assert not venue.core.pending
    venue.core.ledger.check_invariants()


def test_a_halted_market_still_takes_cancels_of_its_resting_orders() -> None:
    venue = funded_venue()
    order = venue.limit("alice", Side.BUY, 100, 5)
    assert venue.run(order)[0].ok
    venue.run(venue.set_status(MarketStatus.HALTED))

    [reply] = venue.run(CancelOrder(next(venue.seq), 4, "alice", MARKET, order.seq))

    assert reply.ok and isinstance(reply.events[0], OrderCanceled)
    assert venue.core.ledger.balance("alice", "INR") == (100_000, 0)


def test_cancel_only_refuses_new_orders_with_its_own_code_and_resume_lets_them_in_again() -> None:
    venue = funded_venue()
    venue.run(venue.set_status(MarketStatus.CANCEL_ONLY))
    [refused] = venue.run(venue.limit("bob", Side.SELL, 100, 1))

    venue.run(venue.set_status(MarketStatus.TRADING))
    [accepted] = venue.run(venue.limit("bob", Side.SELL, 100, 1))

    assert refused.code is ResultCode.MARKET_CANCEL_ONLY
    assert accepted.ok
    assert venue.core.ledger.balance("bob", "TATA") == (900, 100)


def test_a_status_change_and_the_orders_after_it_in_one_batch_apply_in_command_order() -> None:
    venue = funded_venue()
    before = venue.limit("alice", Side.BUY, 100, 1)
    halt = venue.set_status(MarketStatus.HALTED)
    after = venue.limit("alice", Side.BUY, 100, 1)

    replies = venue.run(before, halt, after)

    assert [(r.seq, r.code) for r in replies] == [
        (before.seq, ResultCode.OK),
        (halt.seq, ResultCode.OK),
        (after.seq, ResultCode.MARKET_HALTED),
    ]


def test_a_change_publishes_one_status_event_and_setting_the_same_status_again_publishes_none() -> None:
    venue = funded_venue()

    venue.run(venue.set_status(MarketStatus.HALTED))
    first = list(venue.events)
    [again] = venue.run(venue.set_status(MarketStatus.HALTED))

    assert first == [MarketStatusChanged(MARKET, MarketStatus.HALTED, 3)]
    assert again.ok and venue.events == []


def test_the_status_of_an_unknown_market_cannot_be_set() -> None:
    venue = funded_venue()

    [reply] = venue.run(SetMarketStatus(next(venue.seq), 3, "NOPE_INR", MarketStatus.HALTED))

    assert reply.code is ResultCode.UNKNOWN_MARKET


def test_the_status_survives_a_snapshot_of_the_balance_stage() -> None:
    venue = funded_venue()
    venue.run(venue.set_status(MarketStatus.HALTED))

    restored = BalanceCore.from_state(venue.core.to_state())
    venue.core = restored
    [reply] = venue.run(venue.limit("alice", Side.BUY, 100, 1))

    assert restored.ledger.markets[MARKET].status is MarketStatus.HALTED
    assert reply.code is ResultCode.MARKET_HALTED
