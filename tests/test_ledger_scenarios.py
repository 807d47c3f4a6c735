"""Specification of the funds ledger: deposits, holds, settlement, price improvement, fees, conservation.

Scenarios run through the same path as the engine (hold, match, settle; see `core_helpers`) and end by
checking the book's and the ledger's invariants, which include conservation of every asset.
"""

from __future__ import annotations

import pytest
from core_helpers import (
    BUY,
    IOC,
    MARKET,
    MARKET_ORDER,
    SELL,
    Venue,
    inr,
    kinds,
    only,
    tata,
    tata_inr,
    ticks,
)

from openbell.core.events import (
    BalanceChanged,
    OrderAccepted,
    OrderFilled,
    OrderPartiallyFilled,
    OrderRejected,
    TradeExecuted,
)
from openbell.core.ledger import FEE_ACCOUNT, Ledger
from openbell.core.types import ResultCode


@pytest.fixture
def venue() -> Venue:
    return Venue()


# ------------------------------------------------------------------ deposits


def test_deposit_credits_available_once_per_txn_id(venue: Venue) -> None:
    result = venue.ledger.deposit("alice", "INR", inr("500"), "txn-1")

    assert result == (ResultCode.OK, True)
    assert venue.balance("alice", "INR") == (inr("500"), 0)
    assert venue.ledger.deposited() == {"INR": inr("500")}
    venue.check_invariants()


def test_repeating_a_deposit_with_the_same_txn_id_credits_nothing(venue: Venue) -> None:
    venue.ledger.deposit("alice", "INR", inr("500"), "txn-1")

    result = venue.ledger.deposit("alice", "INR", inr("500"), "txn-1")

    assert result == (ResultCode.OK, False)
    assert venue.balance("alice", "INR") == (inr("500"), 0)
    venue.check_invariants()


@pytest.mark.parametrize(
    ("user_id", "asset", "amount"),
    [("alice", "INR", inr("501")), ("bob", "INR", inr("500")), ("alice", "TATA", inr("500"))],
    ids=["other-amount", "other-user", "other-asset"],
)
def test_reusing_a_txn_id_for_a_different_deposit_is_rejected_as_a_conflict(
    venue: Venue, user_id: str, asset: str, amount: int
) -> None:
    venue.ledger.deposit("alice", "INR", inr("500"), "txn-1")

    result = venue.ledger.deposit(user_id, asset, amount, "txn-1")

    assert result == (ResultCode.DEPOSIT_CONFLICT, False)
    assert venue.balance("alice", "INR") == (inr("500"), 0)
    assert venue.balance("bob", "INR") == (0, 0)
    assert venue.balance("alice", "TATA") == (0, 0)
    venue.check_invariants()


def test_deposits_with_different_txn_ids_add_up(venue: Venue) -> None:
    venue.ledger.deposit("alice", "INR", inr("500"), "txn-1")

    result = venue.ledger.deposit("alice", "INR", inr("500"), "txn-2")

    assert result == (ResultCode.OK, True)
    assert venue.balance("alice", "INR") == (inr("1000"), 0)
    venue.check_invariants()


def test_deposit_of_an_asset_no_market_trades_is_rejected(venue: Venue) -> None:
    result = venue.ledger.deposit("alice", "BTC", 1, "txn-1")

    assert result == (ResultCode.UNKNOWN_ASSET, False)
    assert venue.ledger.balances("alice") == {}
    venue.check_invariants()


@pytest.mark.parametrize("amount", [0, -100])
def test_deposit_of_a_non_positive_amount_is_rejected(venue: Venue, amount: int) -> None:
    result = venue.ledger.deposit("alice", "INR", amount, "txn-1")

    assert result == (ResultCode.INVALID_AMOUNT, False)
    assert venue.balance("alice", "INR") == (0, 0)
    assert venue.ledger.deposit("alice", "INR", 1, "txn-1") == (ResultCode.OK, True)
    venue.check_invariants()


# ------------------------------------------------------------------ holds


def test_limit_buy_beyond_available_quote_is_rejected_and_changes_nothing(venue: Venue) -> None:
    venue.fund("alice", inr_amount="299.99")

    events = venue.limit("alice", BUY, "100", 3)

    assert [e.code for e in only(events, OrderRejected)] == [ResultCode.INSUFFICIENT_FUNDS]
    assert venue.balance("alice", "INR") == (inr("299.99"), 0)
    assert venue.ledger.holds == {}
    assert len(venue.book) == 0
    venue.check_invariants()


def test_limit_buy_of_exactly_the_available_quote_is_accepted(venue: Venue) -> None:
    venue.fund("alice", inr_amount="300")

    events = venue.limit("alice", BUY, "100", 3)

    assert kinds(events) == [OrderAccepted]
    assert venue.balance("alice", "INR") == (0, inr("300"))
    venue.check_invariants()


def test_limit_sell_beyond_available_base_is_rejected_and_changes_nothing(venue: Venue) -> None:
    venue.fund("bob", tata_amount="2")
    venue.fund("alice", inr_amount="1000")
    venue.limit("alice", BUY, "100", 3)
    depth_before = venue.book.depth(10)

    events = venue.limit("bob", SELL, "100", 3)

    assert [e.code for e in only(events, OrderRejected)] == [ResultCode.INSUFFICIENT_FUNDS]
    assert venue.balance("bob", "TATA") == (tata("2"), 0)
    assert venue.balance("bob", "INR") == (0, 0)
    assert venue.book.depth(10) == depth_before
    venue.check_invariants()


def test_funds_locked_by_a_resting_order_cannot_pay_for_another(venue: Venue) -> None:
    venue.fund("alice", inr_amount="500")
    venue.limit("alice", BUY, "100", 4)

    events = venue.limit("alice", BUY, "99", 2)

    assert [e.code for e in only(events, OrderRejected)] == [ResultCode.INSUFFICIENT_FUNDS]
    assert venue.balance("alice", "INR") == (inr("100"), inr("400"))
    venue.check_invariants()


def test_market_sell_beyond_available_base_is_rejected(venue: Venue) -> None:
    venue.fund("alice", inr_amount="1000")
    venue.fund("bob", tata_amount="1")
    venue.limit("alice", BUY, "100", 3)

    events = venue.market("bob", SELL, 2)

    assert [e.code for e in only(events, OrderRejected)] == [ResultCode.INSUFFICIENT_FUNDS]
    assert venue.book.level_total(BUY, ticks("100")) == 3
    venue.check_invariants()


def test_quote_only_market_buy_beyond_available_quote_is_rejected(venue: Venue) -> None:
    venue.fund("alice", inr_amount="100")

    events = venue.market("alice", BUY, None, quote_quantity="100.01")

    assert [e.code for e in only(events, OrderRejected)] == [ResultCode.INSUFFICIENT_FUNDS]
    assert venue.balance("alice", "INR") == (inr("100"), 0)
    venue.check_invariants()


def test_hold_for_an_unknown_market_is_refused(venue: Venue) -> None:
    venue.fund("alice", inr_amount="100")
    cmd = venue.order("alice", BUY, "1", 1)
    ledger = Ledger()

    code, order = ledger.hold_for(cmd)

    assert code is ResultCode.UNKNOWN_MARKET
    assert order is cmd
    assert ledger.holds == {}
    venue.check_invariants()


def test_hold_for_an_order_id_that_is_already_open_is_refused(venue: Venue) -> None:
    venue.fund("alice", inr_amount="1000")
    cmd = venue.order("alice", BUY, "100", 1)
    venue.place(cmd)

    code, _ = venue.ledger.hold_for(cmd)

    assert code is ResultCode.INVALID_ORDER
    assert venue.balance("alice", "INR") == (inr("900"), inr("100"))
    venue.check_invariants()


# ------------------------------------------------------------------ price improvement


def test_buy_limit_filling_below_its_price_gets_the_difference_back_when_fully_filled(venue: Venue) -> None:
    venue.fund("seller", tata_amount="3")
    venue.fund("buyer", inr_amount="1000")
    venue.limit("seller", SELL, "100", 3)

    events = venue.limit("buyer", BUY, "102", 3)

    assert isinstance(events[-1], OrderFilled)
    assert venue.balance("buyer", "INR") == (inr("700"), 0)
    assert venue.balance("buyer", "TATA") == (tata("3"), 0)
    venue.check_invariants()


def test_buy_limit_filling_below_its_price_gets_the_difference_back_at_once_while_the_rest_rests(
    venue: Venue,
) -> None:
    venue.fund("seller", tata_amount="2")
    venue.fund("buyer", inr_amount="1000")
    venue.limit("seller", SELL, "100", 2)
    bid = venue.order("buyer", BUY, "102", 5)

    events = venue.place(bid)

    assert isinstance(events[-1], OrderPartiallyFilled)
    assert venue.ledger.holds[bid.seq].amount == inr("306")
    assert venue.balance("buyer", "INR") == (inr("1000") - inr("200") - inr("306"), inr("306"))
    venue.check_invariants()


def test_a_resting_buy_filled_by_a_later_sell_pays_its_own_price_and_keeps_the_rest_held(venue: Venue) -> None:
    venue.fund("buyer", inr_amount="1000")
    venue.fund("seller", tata_amount="5")
    bid = venue.order("buyer", BUY, "102", 5)
    venue.place(bid)

    venue.limit("seller", SELL, "99", 2)

    assert venue.balance("buyer", "INR") == (inr("490"), inr("306"))
    assert venue.balance("seller", "INR") == (inr("204"), 0)
    venue.check_invariants()


# ------------------------------------------------------------------ fees


def test_maker_and_taker_fees_go_to_the_fee_account_when_the_taker_buys() -> None:
    venue = Venue(tata_inr(maker_fee_bps=10, taker_fee_bps=20))
    venue.fund("seller", tata_amount="10")
    venue.fund("buyer", inr_amount="1000")
    venue.limit("seller", SELL, "100", 10)

    venue.limit("buyer", BUY, "100", 10)

    assert venue.balance("buyer", "TATA") == (tata("10") - 2, 0)  # taker: 20 bps of 1000 TATA units
    assert venue.balance("buyer", "INR") == (0, 0)
    assert venue.balance("seller", "INR") == (inr("1000") - 100, 0)  # maker: 10 bps of 100000 paisa
    assert venue.balance("seller", "TATA") == (0, 0)
    assert venue.ledger.balances(FEE_ACCOUNT) == {"TATA": (2, 0), "INR": (100, 0)}
    assert venue.ledger.totals() == {"INR": inr("1000"), "TATA": tata("10")}
    venue.check_invariants()


def test_maker_and_taker_fees_go_to_the_fee_account_when_the_taker_sells() -> None:
    venue = Venue(tata_inr(maker_fee_bps=10, taker_fee_bps=20))
    venue.fund("buyer", inr_amount="1000")
    venue.fund("seller", tata_amount="10")
    venue.limit("buyer", BUY, "100", 10)

    venue.market("seller", SELL, 10)

    assert venue.balance("buyer", "TATA") == (tata("10") - 1, 0)  # maker: 10 bps of 1000 TATA units
    assert venue.balance("seller", "INR") == (inr("1000") - 200, 0)  # taker: 20 bps of 100000 paisa
    assert venue.ledger.balances(FEE_ACCOUNT) == {"TATA": (1, 0), "INR": (200, 0)}
    assert venue.ledger.totals() == {"INR": inr("1000"), "TATA": tata("10")}
    venue.check_invariants()


def test_fees_round_down_to_whole_minor_units() -> None:
    venue = Venue(tata_inr(maker_fee_bps=10, taker_fee_bps=20))
    venue.fund("seller", tata_amount="1")
    venue.fund("buyer", inr_amount="1")
    venue.limit("seller", SELL, "1", 1)

    venue.limit("buyer", BUY, "1", 1)

    assert venue.balance("buyer", "TATA") == (tata("1"), 0)
    assert venue.balance("seller", "INR") == (inr("1"), 0)
    assert venue.ledger.balances(FEE_ACCOUNT) == {}
    venue.check_invariants()


def test_fees_across_many_trades_conserve_every_asset() -> None:
    venue = Venue(tata_inr(maker_fee_bps=7, taker_fee_bps=13))
    venue.fund("seller", tata_amount="1000")
    venue.fund("buyer", inr_amount="100000")
    for price in ("100.01", "100.37", "101.99", "103.33"):
        venue.limit("seller", SELL, price, 77)

    events = venue.limit("buyer", BUY, "103.33", 250, time_in_force=IOC)
    venue.market("seller", SELL, 3)  # nothing to sell into: expires

    fee_tata, fee_inr = venue.ledger.balance(FEE_ACCOUNT, "TATA")[0], venue.ledger.balance(FEE_ACCOUNT, "INR")[0]
    assert len(only(events, TradeExecuted)) == 4
    assert fee_tata > 0 and fee_inr > 0
    assert venue.ledger.totals() == {"INR": inr("100000"), "TATA": tata("1000")}
    venue.check_invariants()


# ------------------------------------------------------------------ balance changes


def test_drain_changes_reports_each_touched_balance_once_with_its_value_now(venue: Venue) -> None:
    venue.fund("seller", tata_amount="5")
    venue.fund("buyer", inr_amount="1000")
    venue.limit("seller", SELL, "100", 5)
    venue.ledger.drain_changes(ts=1)

    venue.limit("buyer", BUY, "100", 2)
    changes = venue.ledger.drain_changes(ts=2)

    # In the order the balances first changed: the buyer's hold, its fill, then the seller's side.
    # change_id goes on from the earlier drain (2 balances changed then) without a gap.
    assert changes == [
        BalanceChanged("buyer", "INR", inr("800"), 0, 2, 3),
        BalanceChanged("buyer", "TATA", tata("2"), 0, 2, 4),
        BalanceChanged("seller", "TATA", 0, tata("3"), 2, 5),
        BalanceChanged("seller", "INR", inr("200"), 0, 2, 6),
    ]
    assert venue.ledger.drain_changes(ts=3) == []
    venue.check_invariants()


def test_a_repeated_deposit_reports_no_balance_change(venue: Venue) -> None:
    venue.ledger.deposit("alice", "INR", inr("10"), "txn-1")
    venue.ledger.drain_changes(ts=1)

    venue.ledger.deposit("alice", "INR", inr("10"), "txn-1")

    assert venue.ledger.drain_changes(ts=2) == []
    venue.check_invariants()


def test_market_buy_by_quantity_reports_the_budget_it_held(venue: Venue) -> None:
    venue.fund("seller", tata_amount="5")
    venue.fund("buyer", inr_amount="1000")
    venue.limit("seller", SELL, "100", 5)
    cmd = venue.order("buyer", BUY, None, 2, order_type=MARKET_ORDER)

    code, held = venue.ledger.hold_for(cmd)

    assert code is ResultCode.OK
    assert (held.seq, held.market, held.quantity, held.quote_quantity) == (cmd.seq, MARKET, 2, inr("1000"))
    assert venue.balance("buyer", "INR") == (0, inr("1000"))
    venue.ledger.settle(venue.book.place(held))
    assert venue.balance("buyer", "INR") == (inr("800"), 0)
    venue.check_invariants()
