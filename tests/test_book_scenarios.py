"""Specification of matching: order types, priority, prices, self-trade prevention, cancels and depth.

Every scenario places orders the way the engine does (hold, match, settle; see `core_helpers`),
asserts on the events and balances, and ends by checking the book's and the ledger's invariants.
"""

from __future__ import annotations

import pytest
from core_helpers import (
    BUY,
    FOK,
    IOC,
    LIMIT,
    MARKET,
    MARKET_ORDER,
    SELL,
    Venue,
    inr,
    kinds,
    only,
    tata,
    ticks,
)

from openbell.core.book import OrderBook
from openbell.core.commands import PlaceOrder
from openbell.core.events import (
    CancelRejected,
    OrderAccepted,
    OrderCanceled,
    OrderExpired,
    OrderFilled,
    OrderPartiallyFilled,
    OrderRejected,
    TradeExecuted,
)
from openbell.core.orders import validate_order
from openbell.core.types import OrderType, ResultCode, SelfTradePrevention, TimeInForce

EXPIRE_MAKER = SelfTradePrevention.EXPIRE_MAKER
EXPIRE_TAKER = SelfTradePrevention.EXPIRE_TAKER
EXPIRE_BOTH = SelfTradePrevention.EXPIRE_BOTH


@pytest.fixture
def venue() -> Venue:
    return Venue()


# ------------------------------------------------------------------ limit GTC


def test_limit_gtc_buy_that_does_not_cross_rests_and_locks_price_times_quantity(venue: Venue) -> None:
    venue.fund("alice", inr_amount="1000")
    cmd = venue.order("alice", BUY, "100", 3)

    events = venue.place(cmd)

    assert kinds(events) == [OrderAccepted]
    accepted = events[0]
    assert isinstance(accepted, OrderAccepted)
    assert (accepted.order_id, accepted.side, accepted.price, accepted.quantity) == (cmd.seq, BUY, ticks("100"), 3)
    assert venue.book.best_bid == ticks("100")
    assert venue.book.best_ask is None
    resting = venue.book.order(cmd.seq)
    assert resting is not None and resting.remaining == 3
    assert venue.balance("alice", "INR") == (inr("700"), inr("300"))
    venue.check_invariants()


def test_limit_gtc_sell_that_does_not_cross_rests_and_locks_its_base(venue: Venue) -> None:
    venue.fund("bob", tata_amount="10")

    events = venue.limit("bob", SELL, "101.50", 4)

    assert kinds(events) == [OrderAccepted]
    assert venue.book.best_ask == ticks("101.50")
    assert venue.book.level_total(SELL, ticks("101.50")) == 4
    assert venue.balance("bob", "TATA") == (tata("6"), tata("4"))
    venue.check_invariants()


def test_crossing_limit_buy_fills_at_the_makers_price_and_both_sides_settle(venue: Venue) -> None:
    venue.fund("seller", tata_amount="5")
    venue.fund("buyer", inr_amount="1000")
    ask = venue.order("seller", SELL, "100", 5)
    venue.place(ask)
    bid = venue.order("buyer", BUY, "102", 5)

    events = venue.place(bid)

    assert kinds(events) == [OrderAccepted, TradeExecuted, OrderFilled, OrderFilled]
    trade = only(events, TradeExecuted)[0]
    assert trade.price == ticks("100")
    assert trade.quantity == 5
    assert trade.taker_side is BUY and not trade.is_buyer_maker
    assert (trade.maker_order_id, trade.maker_user_id) == (ask.seq, "seller")
    assert (trade.taker_order_id, trade.taker_user_id) == (bid.seq, "buyer")
    maker_filled, taker_filled = only(events, OrderFilled)
    assert (maker_filled.order_id, maker_filled.filled_quantity) == (ask.seq, 5)
    assert (taker_filled.order_id, taker_filled.filled_quantity) == (bid.seq, 5)
    assert len(venue.book) == 0
    assert venue.balance("buyer", "INR") == (inr("500"), 0)
    assert venue.balance("buyer", "TATA") == (tata("5"), 0)
    assert venue.balance("seller", "INR") == (inr("500"), 0)
    assert venue.balance("seller", "TATA") == (0, 0)
    venue.check_invariants()


def test_crossing_limit_sell_fills_at_the_resting_bids_higher_price(venue: Venue) -> None:
    venue.fund("buyer", inr_amount="1000")
    venue.fund("seller", tata_amount="2")
    venue.limit("buyer", BUY, "101", 2)

    events = venue.limit("seller", SELL, "99", 2)

    trade = only(events, TradeExecuted)[0]
    assert trade.price == ticks("101")
    assert trade.taker_side is SELL and trade.is_buyer_maker
    assert venue.balance("seller", "INR") == (inr("202"), 0)
    assert venue.balance("buyer", "INR") == (inr("798"), 0)
    assert venue.balance("buyer", "TATA") == (tata("2"), 0)
    venue.check_invariants()


def test_every_trade_across_levels_is_at_each_makers_own_price(venue: Venue) -> None:
    venue.fund("seller", tata_amount="10")
    venue.fund("buyer", inr_amount="10000")
    for price in ("100", "101", "103"):
        venue.limit("seller", SELL, price, 1)

    events = venue.limit("buyer", BUY, "105", 3)

    assert [trade.price for trade in only(events, TradeExecuted)] == [ticks("100"), ticks("101"), ticks("103")]
    assert venue.balance("buyer", "INR") == (inr("10000") - inr("304"), 0)
    venue.check_invariants()


def test_partial_fill_across_several_levels_rests_the_remainder_at_the_limit(venue: Venue) -> None:
    venue.fund("seller", tata_amount="20")
    venue.fund("buyer", inr_amount="10000")
    venue.limit("seller", SELL, "100", 2)
    venue.limit("seller", SELL, "101", 3)
    venue.limit("seller", SELL, "102", 4)
    bid = venue.order("buyer", BUY, "101", 6)

    events = venue.place(bid)

    assert kinds(events) == [
        OrderAccepted,
        TradeExecuted,
        OrderFilled,
        TradeExecuted,
        OrderFilled,
        OrderPartiallyFilled,
    ]
    assert [(t.price, t.quantity) for t in only(events, TradeExecuted)] == [(ticks("100"), 2), (ticks("101"), 3)]
    partial = events[-1]
    assert isinstance(partial, OrderPartiallyFilled)
    assert (partial.order_id, partial.filled_quantity, partial.remaining_quantity) == (bid.seq, 5, 1)
    assert venue.book.depth(10) == ([(ticks("101"), 1)], [(ticks("102"), 4)])
    assert venue.balance("buyer", "INR") == (inr("10000") - inr("503") - inr("101"), inr("101"))
    assert venue.balance("buyer", "TATA") == (tata("5"), 0)
    venue.check_invariants()


def test_trade_ids_increase_by_one_per_trade(venue: Venue) -> None:
    venue.fund("seller", tata_amount="10")
    venue.fund("buyer", inr_amount="10000")
    venue.limit("seller", SELL, "100", 1)
    venue.limit("seller", SELL, "101", 1)
    first = venue.limit("buyer", BUY, "101", 1)

    second = venue.limit("buyer", BUY, "101", 1)

    assert [t.trade_id for t in only(first + second, TradeExecuted)] == [1, 2]
    venue.check_invariants()


# ------------------------------------------------------------------ priority


def test_fifo_at_one_price_the_earlier_order_fills_first(venue: Venue) -> None:
    venue.fund("alice", tata_amount="5")
    venue.fund("bob", tata_amount="5")
    venue.fund("carol", inr_amount="1000")
    alice_ask = venue.order("alice", SELL, "100", 2)
    bob_ask = venue.order("bob", SELL, "100", 2)
    venue.place(alice_ask)
    venue.place(bob_ask)

    events = venue.limit("carol", BUY, "100", 3)

    trades = only(events, TradeExecuted)
    assert [(t.maker_order_id, t.quantity) for t in trades] == [(alice_ask.seq, 2), (bob_ask.seq, 1)]
    bob_partial = only(events, OrderPartiallyFilled)[0]
    assert (bob_partial.order_id, bob_partial.filled_quantity, bob_partial.remaining_quantity) == (bob_ask.seq, 1, 1)
    assert venue.book.order(alice_ask.seq) is None
    assert venue.book.depth(5)[1] == [(ticks("100"), 1)]
    venue.check_invariants()


def test_fifo_keeps_arrival_order_after_a_cancel_in_the_middle_of_a_level(venue: Venue) -> None:
    venue.fund("seller", tata_amount="10")
    venue.fund("buyer", inr_amount="1000")
    first = venue.order("seller", SELL, "100", 1)
    second = venue.order("seller", SELL, "100", 1)
    third = venue.order("seller", SELL, "100", 1)
    for cmd in (first, second, third):
        venue.place(cmd)
    venue.cancel("seller", second.seq)

    events = venue.limit("buyer", BUY, "100", 2)

    assert [t.maker_order_id for t in only(events, TradeExecuted)] == [first.seq, third.seq]
    assert len(venue.book) == 0
    venue.check_invariants()


def test_a_better_price_fills_before_an_earlier_worse_price(venue: Venue) -> None:
    venue.fund("seller", tata_amount="10")
    venue.fund("buyer", inr_amount="1000")
    venue.limit("seller", SELL, "101", 1)
    cheaper = venue.order("seller", SELL, "100", 1)
    venue.place(cheaper)

    events = venue.limit("buyer", BUY, "101", 1)

    trade = only(events, TradeExecuted)[0]
    assert (trade.maker_order_id, trade.price) == (cheaper.seq, ticks("100"))
    venue.check_invariants()


# ------------------------------------------------------------------ IOC


def test_ioc_fills_what_it_can_and_the_rest_expires(venue: Venue) -> None:
    venue.fund("seller", tata_amount="2")
    venue.fund("buyer", inr_amount="1000")
    venue.limit("seller", SELL, "100", 2)
    ioc = venue.order("buyer", BUY, "100", 5, time_in_force=IOC)

    events = venue.place(ioc)

    assert kinds(events) == [OrderAccepted, TradeExecuted, OrderFilled, OrderExpired]
    expired = events[-1]
    assert isinstance(expired, OrderExpired)
    assert (expired.order_id, expired.filled_quantity, expired.remaining_quantity) == (ioc.seq, 2, 3)
    assert expired.reason is ResultCode.NO_LIQUIDITY
    assert len(venue.book) == 0
    assert venue.balance("buyer", "INR") == (inr("800"), 0)
    assert venue.balance("buyer", "TATA") == (tata("2"), 0)
    venue.check_invariants()


def test_ioc_that_crosses_nothing_expires_whole_and_never_rests(venue: Venue) -> None:
    venue.fund("seller", tata_amount="2")
    venue.fund("buyer", inr_amount="1000")
    venue.limit("seller", SELL, "101", 2)

    events = venue.limit("buyer", BUY, "100", 3, time_in_force=IOC)

    assert kinds(events) == [OrderAccepted, OrderExpired]
    expired = events[-1]
    assert isinstance(expired, OrderExpired)
    assert (expired.filled_quantity, expired.remaining_quantity) == (0, 3)
    assert venue.book.best_bid is None
    assert venue.balance("buyer", "INR") == (inr("1000"), 0)
    venue.check_invariants()


# ------------------------------------------------------------------ FOK


def test_fok_buy_without_enough_liquidity_fills_nothing(venue: Venue) -> None:
    venue.fund("seller", tata_amount="10")
    venue.fund("buyer", inr_amount="1000")
    venue.limit("seller", SELL, "100", 2)
    venue.limit("seller", SELL, "101", 2)
    depth_before, update_before = venue.book.depth(10), venue.book.update_id
    fok = venue.order("buyer", BUY, "101", 5, time_in_force=FOK)

    events = venue.place(fok)

    assert kinds(events) == [OrderAccepted, OrderExpired]
    expired = events[-1]
    assert isinstance(expired, OrderExpired)
    assert (expired.order_id, expired.filled_quantity, expired.remaining_quantity) == (fok.seq, 0, 5)
    assert expired.reason is ResultCode.FOK_NOT_FILLED
    assert venue.book.depth(10) == depth_before
    assert venue.book.update_id == update_before
    assert venue.balance("buyer", "INR") == (inr("1000"), 0)
    assert venue.balance("buyer", "TATA") == (0, 0)
    venue.check_invariants()


def test_fok_does_not_count_liquidity_beyond_its_limit_price(venue: Venue) -> None:
    venue.fund("seller", tata_amount="10")
    venue.fund("buyer", inr_amount="1000")
    venue.limit("seller", SELL, "100", 2)
    venue.limit("seller", SELL, "105", 5)

    events = venue.limit("buyer", BUY, "101", 3, time_in_force=FOK)

    assert kinds(events) == [OrderAccepted, OrderExpired]
    assert venue.book.depth(10)[1] == [(ticks("100"), 2), (ticks("105"), 5)]
    venue.check_invariants()


def test_fok_buy_with_enough_liquidity_fills_completely_across_levels(venue: Venue) -> None:
    venue.fund("seller", tata_amount="10")
    venue.fund("buyer", inr_amount="1000")
    venue.limit("seller", SELL, "100", 2)
    venue.limit("seller", SELL, "101", 2)

    events = venue.limit("buyer", BUY, "101", 4, time_in_force=FOK)

    assert kinds(events)[0] is OrderAccepted
    assert kinds(events)[-1] is OrderFilled
    assert sum(t.quantity for t in only(events, TradeExecuted)) == 4
    assert len(venue.book) == 0
    assert venue.balance("buyer", "INR") == (inr("1000") - inr("402"), 0)
    venue.check_invariants()


def test_fok_market_sell_without_enough_bids_fills_nothing(venue: Venue) -> None:
    venue.fund("buyer", inr_amount="1000")
    venue.fund("seller", tata_amount="10")
    venue.limit("buyer", BUY, "100", 2)

    events = venue.market("seller", SELL, 3, time_in_force=FOK)

    assert kinds(events) == [OrderAccepted, OrderExpired]
    assert only(events, OrderExpired)[0].reason is ResultCode.FOK_NOT_FILLED
    assert venue.book.depth(10)[0] == [(ticks("100"), 2)]
    assert venue.balance("seller", "TATA") == (tata("10"), 0)
    venue.check_invariants()


def test_fok_market_buy_by_quantity_fails_when_the_held_budget_cannot_pay_for_all(venue: Venue) -> None:
    venue.fund("seller", tata_amount="10")
    venue.fund("buyer", inr_amount="250")
    venue.limit("seller", SELL, "100", 5)

    events = venue.market("buyer", BUY, 3, time_in_force=FOK)

    assert kinds(events) == [OrderAccepted, OrderExpired]
    assert only(events, OrderExpired)[0].reason is ResultCode.FOK_NOT_FILLED
    assert venue.balance("buyer", "INR") == (inr("250"), 0)
    venue.check_invariants()


# ------------------------------------------------------------------ market orders


def test_market_sell_by_quantity_sweeps_bids_from_the_best_down(venue: Venue) -> None:
    venue.fund("buyer", inr_amount="10000")
    venue.fund("seller", tata_amount="10")
    venue.limit("buyer", BUY, "99", 5)
    venue.limit("buyer", BUY, "100", 2)
    sell = venue.order("seller", SELL, None, 4, order_type=MARKET_ORDER, time_in_force=IOC)

    events = venue.place(sell)

    assert [(t.price, t.quantity) for t in only(events, TradeExecuted)] == [(ticks("100"), 2), (ticks("99"), 2)]
    filled = events[-1]
    assert isinstance(filled, OrderFilled)
    assert (filled.order_id, filled.filled_quantity) == (sell.seq, 4)
    assert venue.book.depth(10)[0] == [(ticks("99"), 3)]
    assert venue.balance("seller", "INR") == (inr("398"), 0)
    assert venue.balance("seller", "TATA") == (tata("6"), 0)
    venue.check_invariants()


def test_market_sell_beyond_the_book_fills_what_there_is_and_expires_the_rest(venue: Venue) -> None:
    venue.fund("buyer", inr_amount="1000")
    venue.fund("seller", tata_amount="10")
    venue.limit("buyer", BUY, "100", 2)

    events = venue.market("seller", SELL, 5)

    expired = events[-1]
    assert isinstance(expired, OrderExpired)
    assert (expired.filled_quantity, expired.remaining_quantity, expired.reason) == (2, 3, ResultCode.NO_LIQUIDITY)
    assert venue.balance("seller", "TATA") == (tata("8"), 0)
    assert venue.balance("seller", "INR") == (inr("200"), 0)
    venue.check_invariants()


def test_market_order_on_an_empty_book_expires_and_releases_its_hold(venue: Venue) -> None:
    venue.fund("seller", tata_amount="3")

    events = venue.market("seller", SELL, 3)

    assert kinds(events) == [OrderAccepted, OrderExpired]
    assert venue.balance("seller", "TATA") == (tata("3"), 0)
    venue.check_invariants()


def test_market_buy_by_quantity_holds_all_available_quote_and_returns_what_it_did_not_spend(venue: Venue) -> None:
    venue.fund("seller", tata_amount="10")
    venue.fund("buyer", inr_amount="1000")
    venue.limit("seller", SELL, "100", 2)
    venue.limit("seller", SELL, "101", 5)
    buy = venue.order("buyer", BUY, None, 3, order_type=MARKET_ORDER)

    events = venue.place(buy)

    accepted = events[0]
    assert isinstance(accepted, OrderAccepted)
    assert (accepted.quantity, accepted.quote_quantity) == (3, inr("1000"))
    assert [(t.price, t.quantity) for t in only(events, TradeExecuted)] == [(ticks("100"), 2), (ticks("101"), 1)]
    filled = events[-1]
    assert isinstance(filled, OrderFilled) and filled.filled_quantity == 3
    assert venue.balance("buyer", "INR") == (inr("699"), 0)
    assert venue.balance("buyer", "TATA") == (tata("3"), 0)
    venue.check_invariants()


def test_market_buy_by_quantity_stops_when_the_held_budget_runs_out(venue: Venue) -> None:
    venue.fund("seller", tata_amount="10")
    venue.fund("buyer", inr_amount="250")
    venue.limit("seller", SELL, "100", 5)

    events = venue.market("buyer", BUY, 4)

    assert sum(t.quantity for t in only(events, TradeExecuted)) == 2
    expired = events[-1]
    assert isinstance(expired, OrderExpired)
    assert (expired.filled_quantity, expired.remaining_quantity) == (2, 2)
    assert venue.balance("buyer", "INR") == (inr("50"), 0)
    assert venue.balance("buyer", "TATA") == (tata("2"), 0)
    assert venue.book.level_total(SELL, ticks("100")) == 3
    venue.check_invariants()


def test_market_buy_by_quantity_with_no_quote_available_is_rejected_for_insufficient_funds(venue: Venue) -> None:
    venue.fund("seller", tata_amount="10")
    venue.limit("seller", SELL, "100", 5)

    events = venue.market("nobody", BUY, 1)

    assert kinds(events) == [OrderRejected]
    assert only(events, OrderRejected)[0].code is ResultCode.INSUFFICIENT_FUNDS
    assert venue.book.level_total(SELL, ticks("100")) == 5
    venue.check_invariants()


def test_quote_only_market_buy_that_spends_its_budget_ends_filled(venue: Venue) -> None:
    venue.fund("seller", tata_amount="10")
    venue.fund("buyer", inr_amount="1000")
    venue.limit("seller", SELL, "100", 1)
    venue.limit("seller", SELL, "150", 5)
    buy = venue.order("buyer", BUY, None, None, order_type=MARKET_ORDER, quote_quantity="250")

    events = venue.place(buy)

    assert [(t.price, t.quantity) for t in only(events, TradeExecuted)] == [(ticks("100"), 1), (ticks("150"), 1)]
    filled = events[-1]
    assert isinstance(filled, OrderFilled)
    assert (filled.order_id, filled.filled_quantity) == (buy.seq, 2)
    assert venue.balance("buyer", "INR") == (inr("750"), 0)
    assert venue.balance("buyer", "TATA") == (tata("2"), 0)
    venue.check_invariants()


def test_quote_only_market_buy_left_with_less_than_one_lot_at_the_best_ask_ends_filled(venue: Venue) -> None:
    venue.fund("seller", tata_amount="10")
    venue.fund("buyer", inr_amount="1000")
    venue.limit("seller", SELL, "100", 1)
    venue.limit("seller", SELL, "150", 5)

    events = venue.market("buyer", BUY, None, quote_quantity="260")

    assert isinstance(events[-1], OrderFilled)
    assert venue.balance("buyer", "INR") == (inr("750"), 0)
    assert venue.book.level_total(SELL, ticks("150")) == 4
    venue.check_invariants()


def test_quote_only_market_buy_that_spends_its_budget_exactly_on_the_last_ask_ends_filled(venue: Venue) -> None:
    venue.fund("seller", tata_amount="10")
    venue.fund("buyer", inr_amount="1000")
    venue.limit("seller", SELL, "100", 2)

    events = venue.market("buyer", BUY, None, quote_quantity="200")

    filled = events[-1]
    assert isinstance(filled, OrderFilled)
    assert filled.filled_quantity == 2
    assert venue.balance("buyer", "INR") == (inr("800"), 0)
    venue.check_invariants()


def test_quote_only_market_buy_whose_budget_is_spent_leaves_its_users_own_order_at_that_price(venue: Venue) -> None:
    venue.fund("bob", tata_amount="2")
    venue.fund("alice", inr_amount="1000", tata_amount="1")
    venue.limit("bob", SELL, "100", 2)
    alice_ask = venue.order("alice", SELL, "100", 1)
    venue.place(alice_ask)

    events = venue.market("alice", BUY, None, quote_quantity="200")

    assert kinds(events) == [OrderAccepted, TradeExecuted, OrderFilled, OrderFilled]
    assert only(events, OrderExpired) == []
    assert venue.book.order(alice_ask.seq) is not None
    assert venue.book.depth(10) == ([], [(ticks("100"), 1)])
    assert venue.balance("alice", "TATA") == (tata("2"), tata("1"))
    venue.check_invariants()


def test_quote_only_market_buy_that_runs_out_of_book_ends_expired(venue: Venue) -> None:
    venue.fund("seller", tata_amount="10")
    venue.fund("buyer", inr_amount="1000")
    venue.limit("seller", SELL, "100", 2)
    buy = venue.order("buyer", BUY, None, None, order_type=MARKET_ORDER, quote_quantity="500")

    events = venue.place(buy)

    expired = events[-1]
    assert isinstance(expired, OrderExpired)
    assert (expired.order_id, expired.filled_quantity, expired.remaining_quantity) == (buy.seq, 2, 0)
    assert expired.reason is ResultCode.NO_LIQUIDITY
    assert venue.balance("buyer", "INR") == (inr("800"), 0)
    assert venue.balance("buyer", "TATA") == (tata("2"), 0)
    venue.check_invariants()


def test_quote_only_market_buy_too_small_for_one_lot_expires_without_trading(venue: Venue) -> None:
    venue.fund("seller", tata_amount="10")
    venue.fund("buyer", inr_amount="1000")
    venue.limit("seller", SELL, "100", 2)

    events = venue.market("buyer", BUY, None, quote_quantity="99.99")

    assert kinds(events) == [OrderAccepted, OrderExpired]
    assert venue.balance("buyer", "INR") == (inr("1000"), 0)
    assert venue.book.level_total(SELL, ticks("100")) == 2
    venue.check_invariants()


# ------------------------------------------------------------------ post-only


def test_post_only_buy_that_would_cross_is_rejected_and_holds_nothing(venue: Venue) -> None:
    venue.fund("seller", tata_amount="5")
    venue.fund("buyer", inr_amount="1000")
    venue.limit("seller", SELL, "100", 1)

    events = venue.limit("buyer", BUY, "100", 1, post_only=True)

    assert kinds(events) == [OrderRejected]
    assert only(events, OrderRejected)[0].code is ResultCode.POST_ONLY_WOULD_TAKE
    assert venue.book.best_bid is None
    assert venue.book.level_total(SELL, ticks("100")) == 1
    assert venue.balance("buyer", "INR") == (inr("1000"), 0)
    venue.check_invariants()


def test_post_only_sell_at_the_best_bid_is_rejected(venue: Venue) -> None:
    venue.fund("buyer", inr_amount="1000")
    venue.fund("seller", tata_amount="5")
    venue.limit("buyer", BUY, "100", 1)

    events = venue.limit("seller", SELL, "100", 1, post_only=True)

    assert [e.code for e in only(events, OrderRejected)] == [ResultCode.POST_ONLY_WOULD_TAKE]
    assert venue.balance("seller", "TATA") == (tata("5"), 0)
    venue.check_invariants()


def test_post_only_buy_below_the_best_ask_rests(venue: Venue) -> None:
    venue.fund("seller", tata_amount="5")
    venue.fund("buyer", inr_amount="1000")
    venue.limit("seller", SELL, "100", 1)

    events = venue.limit("buyer", BUY, "99.99", 1, post_only=True)

    assert kinds(events) == [OrderAccepted]
    assert venue.book.best_bid == ticks("99.99")
    assert venue.balance("buyer", "INR") == (inr("1000") - inr("99.99"), inr("99.99"))
    venue.check_invariants()


# ------------------------------------------------------------------ self-trade prevention


def test_self_trade_expire_maker_is_the_default_and_lets_the_taker_go_on_matching(venue: Venue) -> None:
    venue.fund("alice", inr_amount="1000", tata_amount="2")
    venue.fund("bob", tata_amount="2")
    alice_ask = venue.order("alice", SELL, "100", 2)
    bob_ask = venue.order("bob", SELL, "101", 2)
    venue.place(alice_ask)
    venue.place(bob_ask)
    alice_bid = venue.order("alice", BUY, "101", 3)

    events = venue.place(alice_bid)

    assert alice_bid.stp is EXPIRE_MAKER
    expired = only(events, OrderExpired)
    assert [(e.order_id, e.remaining_quantity, e.reason) for e in expired] == [
        (alice_ask.seq, 2, ResultCode.SELF_TRADE_PREVENTED)
    ]
    trades = only(events, TradeExecuted)
    assert [(t.maker_user_id, t.price, t.quantity) for t in trades] == [("bob", ticks("101"), 2)]
    assert isinstance(events[-1], OrderPartiallyFilled)
    assert venue.book.order(alice_ask.seq) is None
    assert venue.book.depth(10) == ([(ticks("101"), 1)], [])
    assert venue.balance("alice", "TATA") == (tata("4"), 0)
    assert venue.balance("alice", "INR") == (inr("1000") - inr("202") - inr("101"), inr("101"))
    venue.check_invariants()


def test_self_trade_expire_taker_expires_the_incoming_remainder_and_keeps_the_resting_order(venue: Venue) -> None:
    venue.fund("alice", inr_amount="1000", tata_amount="2")
    venue.fund("bob", tata_amount="1")
    venue.limit("bob", SELL, "100", 1)
    alice_ask = venue.order("alice", SELL, "101", 2)
    venue.place(alice_ask)
    alice_bid = venue.order("alice", BUY, "101", 3, stp=EXPIRE_TAKER)

    events = venue.place(alice_bid)

    assert kinds(events) == [OrderAccepted, TradeExecuted, OrderFilled, OrderExpired]
    expired = events[-1]
    assert isinstance(expired, OrderExpired)
    assert (expired.order_id, expired.filled_quantity, expired.remaining_quantity) == (alice_bid.seq, 1, 2)
    assert expired.reason is ResultCode.SELF_TRADE_PREVENTED
    assert venue.book.order(alice_ask.seq) is not None
    assert venue.book.depth(10) == ([], [(ticks("101"), 2)])
    assert venue.balance("alice", "INR") == (inr("900"), 0)
    assert venue.balance("alice", "TATA") == (tata("1"), tata("2"))
    venue.check_invariants()


def test_self_trade_expire_both_expires_the_resting_and_the_incoming_order(venue: Venue) -> None:
    venue.fund("alice", inr_amount="1000", tata_amount="2")
    venue.fund("bob", tata_amount="5")
    alice_ask = venue.order("alice", SELL, "100", 2)
    venue.place(alice_ask)
    venue.limit("bob", SELL, "100", 5)
    alice_bid = venue.order("alice", BUY, "100", 3, stp=EXPIRE_BOTH)

    events = venue.place(alice_bid)

    assert kinds(events) == [OrderAccepted, OrderExpired, OrderExpired]
    assert [(e.order_id, e.reason) for e in only(events, OrderExpired)] == [
        (alice_ask.seq, ResultCode.SELF_TRADE_PREVENTED),
        (alice_bid.seq, ResultCode.SELF_TRADE_PREVENTED),
    ]
    assert only(events, TradeExecuted) == []
    assert venue.book.depth(10) == ([], [(ticks("100"), 5)])
    assert venue.balance("alice", "INR") == (inr("1000"), 0)
    assert venue.balance("alice", "TATA") == (tata("2"), 0)
    venue.check_invariants()


def test_self_trade_expire_both_after_a_fill_removes_the_emptied_level_and_keeps_the_fill(venue: Venue) -> None:
    venue.fund("alice", inr_amount="1000", tata_amount="3")
    venue.fund("bob", tata_amount="1")
    venue.limit("bob", SELL, "100", 1)
    alice_ask = venue.order("alice", SELL, "101", 3)
    venue.place(alice_ask)
    alice_bid = venue.order("alice", BUY, "102", 4, stp=EXPIRE_BOTH)

    events = venue.place(alice_bid)

    assert kinds(events) == [OrderAccepted, TradeExecuted, OrderFilled, OrderExpired, OrderExpired]
    taker_expired = events[-1]
    assert isinstance(taker_expired, OrderExpired)
    assert (taker_expired.order_id, taker_expired.filled_quantity, taker_expired.remaining_quantity) == (
        alice_bid.seq,
        1,
        3,
    )
    assert venue.book.depth(10) == ([], [])
    assert venue.balance("alice", "INR") == (inr("900"), 0)
    assert venue.balance("alice", "TATA") == (tata("4"), 0)
    venue.check_invariants()


def test_self_trade_prevention_applies_to_market_orders_too(venue: Venue) -> None:
    venue.fund("alice", inr_amount="1000")
    venue.fund("bob", tata_amount="2")
    alice_bid = venue.order("alice", BUY, "100", 2)
    venue.place(alice_bid)
    venue.fund("alice", tata_amount="2")

    events = venue.market("alice", SELL, 2)

    assert [(e.order_id, e.reason) for e in only(events, OrderExpired)] == [
        (alice_bid.seq, ResultCode.SELF_TRADE_PREVENTED),
        (events[0].order_id, ResultCode.NO_LIQUIDITY),  # type: ignore[attr-defined]
    ]
    assert only(events, TradeExecuted) == []
    assert venue.balance("alice", "INR") == (inr("1000"), 0)
    assert venue.balance("alice", "TATA") == (tata("2"), 0)
    venue.check_invariants()


def test_fok_with_expire_maker_counts_only_other_users_liquidity(venue: Venue) -> None:
    venue.fund("alice", inr_amount="1000", tata_amount="2")
    venue.fund("bob", tata_amount="2")
    alice_ask = venue.order("alice", SELL, "100", 2)
    venue.place(alice_ask)
    venue.limit("bob", SELL, "100", 2)

    events = venue.limit("alice", BUY, "100", 2, time_in_force=FOK)

    assert [t.maker_user_id for t in only(events, TradeExecuted)] == ["bob"]
    assert isinstance(events[-1], OrderFilled)
    assert venue.book.order(alice_ask.seq) is None
    venue.check_invariants()


def test_fok_with_expire_taker_that_would_meet_its_own_order_fills_nothing(venue: Venue) -> None:
    venue.fund("alice", inr_amount="1000", tata_amount="2")
    venue.fund("bob", tata_amount="2")
    venue.limit("alice", SELL, "100", 2)
    venue.limit("bob", SELL, "100", 2)

    events = venue.limit("alice", BUY, "100", 2, time_in_force=FOK, stp=EXPIRE_TAKER)

    assert kinds(events) == [OrderAccepted, OrderExpired]
    assert only(events, OrderExpired)[0].reason is ResultCode.FOK_NOT_FILLED
    assert venue.book.depth(10) == ([], [(ticks("100"), 4)])
    venue.check_invariants()


# ------------------------------------------------------------------ cancel


def test_cancel_of_a_partly_filled_buy_releases_exactly_the_rest(venue: Venue) -> None:
    venue.fund("seller", tata_amount="2")
    venue.fund("buyer", inr_amount="1000")
    venue.limit("seller", SELL, "100", 2)
    bid = venue.order("buyer", BUY, "100", 5)
    venue.place(bid)
    assert venue.balance("buyer", "INR") == (inr("500"), inr("300"))

    events = venue.cancel("buyer", bid.seq)

    assert kinds(events) == [OrderCanceled]
    canceled = events[0]
    assert isinstance(canceled, OrderCanceled)
    assert (canceled.order_id, canceled.filled_quantity, canceled.remaining_quantity) == (bid.seq, 2, 3)
    assert venue.balance("buyer", "INR") == (inr("800"), 0)
    assert venue.balance("buyer", "TATA") == (tata("2"), 0)
    assert len(venue.book) == 0
    venue.check_invariants()


def test_cancel_of_a_partly_filled_sell_releases_the_remaining_base(venue: Venue) -> None:
    venue.fund("seller", tata_amount="10")
    venue.fund("buyer", inr_amount="1000")
    ask = venue.order("seller", SELL, "100", 5)
    venue.place(ask)
    venue.limit("buyer", BUY, "100", 1)

    events = venue.cancel("seller", ask.seq)

    assert kinds(events) == [OrderCanceled]
    assert venue.balance("seller", "TATA") == (tata("9"), 0)
    assert venue.balance("seller", "INR") == (inr("100"), 0)
    venue.check_invariants()


def test_cancel_by_another_user_looks_like_an_unknown_order_and_changes_nothing(venue: Venue) -> None:
    venue.fund("alice", inr_amount="1000")
    bid = venue.order("alice", BUY, "100", 2)
    venue.place(bid)
    unknown = venue.cancel("mallory", 999_999)

    events = venue.cancel("mallory", bid.seq)

    assert kinds(events) == [CancelRejected]
    rejected, unknown_rejected = events[0], unknown[0]
    assert isinstance(rejected, CancelRejected) and isinstance(unknown_rejected, CancelRejected)
    assert rejected.code is ResultCode.UNKNOWN_ORDER
    assert (rejected.code, rejected.reason) == (unknown_rejected.code, unknown_rejected.reason)
    assert venue.book.order(bid.seq) is not None
    assert venue.balance("alice", "INR") == (inr("800"), inr("200"))
    venue.check_invariants()


def test_an_order_survives_a_foreign_cancel_and_still_fills_and_settles(venue: Venue) -> None:
    venue.fund("alice", inr_amount="1000")
    venue.fund("bob", tata_amount="2")
    bid = venue.order("alice", BUY, "100", 2)
    venue.place(bid)
    venue.cancel("mallory", bid.seq)

    events = venue.limit("bob", SELL, "100", 2)

    assert [t.maker_order_id for t in only(events, TradeExecuted)] == [bid.seq]
    assert venue.balance("alice", "INR") == (inr("800"), 0)
    assert venue.balance("alice", "TATA") == (tata("2"), 0)
    venue.check_invariants()


def test_cancel_of_an_order_already_canceled_is_an_unknown_order(venue: Venue) -> None:
    venue.fund("alice", inr_amount="1000")
    bid = venue.order("alice", BUY, "100", 2)
    venue.place(bid)
    venue.cancel("alice", bid.seq)

    events = venue.cancel("alice", bid.seq)

    assert [e.code for e in only(events, CancelRejected)] == [ResultCode.UNKNOWN_ORDER]
    assert venue.balance("alice", "INR") == (inr("1000"), 0)
    venue.check_invariants()


def test_many_cancels_at_one_price_keep_the_level_consistent(venue: Venue) -> None:
    venue.fund("seller", tata_amount="100")
    venue.fund("buyer", inr_amount="1000")
    asks = [venue.order("seller", SELL, "100", 1) for _ in range(60)]
    for cmd in asks:
        venue.place(cmd)
    for cmd in asks[:50]:
        venue.cancel("seller", cmd.seq)

    events = venue.limit("buyer", BUY, "100", 3)

    assert [t.maker_order_id for t in only(events, TradeExecuted)] == [cmd.seq for cmd in asks[50:53]]
    assert venue.book.level_total(SELL, ticks("100")) == 7
    venue.check_invariants()


# ------------------------------------------------------------------ depth


def test_depth_aggregates_orders_at_one_price_and_lists_each_side_best_first(venue: Venue) -> None:
    venue.fund("buyer", inr_amount="10000")
    venue.fund("seller", tata_amount="100")
    for price, quantity in (("99", 1), ("100", 2), ("100", 3), ("98", 4)):
        venue.limit("buyer", BUY, price, quantity)
    for price, quantity in (("102", 5), ("101", 6), ("101", 7)):
        venue.limit("seller", SELL, price, quantity)

    bids, asks = venue.book.depth(10)

    assert bids == [(ticks("100"), 5), (ticks("99"), 1), (ticks("98"), 4)]
    assert asks == [(ticks("101"), 13), (ticks("102"), 5)]
    assert venue.book.depth(2) == (bids[:2], asks[:2])
    assert venue.book.depth(1) == ([(ticks("100"), 5)], [(ticks("101"), 13)])
    venue.check_invariants()


def test_drain_depth_changes_reports_each_changed_level_once_with_the_update_ids_it_spans(venue: Venue) -> None:
    venue.fund("buyer", inr_amount="10000")
    venue.fund("seller", tata_amount="100")
    venue.limit("buyer", BUY, "100", 2)
    venue.limit("buyer", BUY, "100", 3)
    venue.limit("seller", SELL, "101", 4)

    changes = venue.book.drain_depth_changes()

    assert changes == (1, 3, [(ticks("100"), 5)], [(ticks("101"), 4)])
    assert venue.book.drain_depth_changes() is None
    venue.check_invariants()


def test_drain_depth_changes_reports_an_emptied_level_with_total_zero(venue: Venue) -> None:
    venue.fund("buyer", inr_amount="10000")
    venue.fund("seller", tata_amount="100")
    venue.limit("seller", SELL, "101", 4)
    venue.limit("seller", SELL, "102", 4)
    venue.book.drain_depth_changes()

    venue.limit("buyer", BUY, "102", 5)
    changes = venue.book.drain_depth_changes()

    assert changes == (3, 3, [], [(ticks("101"), 0), (ticks("102"), 3)])
    venue.check_invariants()


def test_drain_depth_changes_after_a_cancel_and_rejections(venue: Venue) -> None:
    venue.fund("buyer", inr_amount="10000")
    bid = venue.order("buyer", BUY, "100", 2)
    venue.place(bid)
    venue.book.drain_depth_changes()
    venue.limit("buyer", BUY, "100", 1_000_000)  # insufficient funds: never reaches the book
    venue.limit("buyer", BUY, "100", 1, time_in_force=IOC, post_only=True)  # rejected by the book
    assert venue.book.drain_depth_changes() is None

    venue.cancel("buyer", bid.seq)
    changes = venue.book.drain_depth_changes()

    assert changes == (2, 2, [(ticks("100"), 0)], [])
    venue.check_invariants()


def test_ioc_and_fok_that_trade_nothing_change_no_update_id(venue: Venue) -> None:
    venue.fund("buyer", inr_amount="10000")
    venue.fund("seller", tata_amount="10")
    venue.limit("seller", SELL, "101", 1)
    venue.book.drain_depth_changes()
    update_before = venue.book.update_id

    venue.limit("buyer", BUY, "100", 1, time_in_force=IOC)
    venue.limit("buyer", BUY, "101", 5, time_in_force=FOK)

    assert venue.book.update_id == update_before
    assert venue.book.drain_depth_changes() is None
    venue.check_invariants()


# ------------------------------------------------------------------ validation


def _command(
    side: str,
    order_type: OrderType,
    time_in_force: TimeInForce = TimeInForce.GTC,
    price: int | None = None,
    quantity: int | None = None,
    quote_quantity: int | None = None,
    post_only: bool = False,
) -> PlaceOrder:
    return PlaceOrder(
        seq=1,
        ts=1,
        user_id="alice",
        market=MARKET,
        side=BUY if side == "buy" else SELL,
        order_type=order_type,
        time_in_force=time_in_force,
        price=price,
        quantity=quantity,
        quote_quantity=quote_quantity,
        post_only=post_only,
    )


@pytest.mark.parametrize(
    ("cmd", "code"),
    [
        pytest.param(
            _command("buy", MARKET_ORDER, price=100, quantity=1), ResultCode.INVALID_PRICE, id="market-with-price"
        ),
        pytest.param(_command("buy", LIMIT, quantity=1), ResultCode.INVALID_PRICE, id="limit-without-price"),
        pytest.param(_command("buy", LIMIT, price=0, quantity=1), ResultCode.INVALID_PRICE, id="limit-zero-price"),
        pytest.param(_command("buy", LIMIT, price=-5, quantity=1), ResultCode.INVALID_PRICE, id="limit-negative-price"),
        pytest.param(
            _command("buy", LIMIT, price=10**15 + 1, quantity=1), ResultCode.INVALID_PRICE, id="price-above-max"
        ),
        pytest.param(_command("buy", LIMIT, price=100), ResultCode.INVALID_QUANTITY, id="limit-without-quantity"),
        pytest.param(
            _command("sell", LIMIT, price=100, quantity=0), ResultCode.INVALID_QUANTITY, id="limit-zero-quantity"
        ),
        pytest.param(
            _command("sell", LIMIT, price=100, quantity=10**15 + 1),
            ResultCode.INVALID_QUANTITY,
            id="quantity-above-max",
        ),
        pytest.param(
            _command("buy", LIMIT, price=100, quantity=1, quote_quantity=100),
            ResultCode.INVALID_ORDER,
            id="limit-with-quote-quantity",
        ),
        pytest.param(
            _command("buy", LIMIT, TimeInForce.IOC, price=100, quantity=1, post_only=True),
            ResultCode.INVALID_ORDER,
            id="post-only-with-ioc",
        ),
        pytest.param(
            _command("sell", LIMIT, TimeInForce.FOK, price=100, quantity=1, post_only=True),
            ResultCode.INVALID_ORDER,
            id="post-only-with-fok",
        ),
        pytest.param(
            _command("buy", MARKET_ORDER, quantity=1, post_only=True), ResultCode.INVALID_ORDER, id="market-post-only"
        ),
        pytest.param(_command("sell", MARKET_ORDER), ResultCode.INVALID_QUANTITY, id="market-sell-without-quantity"),
        pytest.param(
            _command("sell", MARKET_ORDER, quantity=0), ResultCode.INVALID_QUANTITY, id="market-zero-quantity"
        ),
        pytest.param(
            _command("sell", MARKET_ORDER, quantity=1, quote_quantity=100),
            ResultCode.INVALID_ORDER,
            id="market-sell-with-quote-quantity",
        ),
        pytest.param(_command("buy", MARKET_ORDER), ResultCode.INVALID_QUANTITY, id="market-buy-without-any-size"),
        pytest.param(
            _command("buy", MARKET_ORDER, quote_quantity=0), ResultCode.INVALID_AMOUNT, id="market-buy-zero-quote"
        ),
        pytest.param(
            _command("buy", MARKET_ORDER, TimeInForce.FOK, quote_quantity=100),
            ResultCode.INVALID_ORDER,
            id="fok-market-buy-by-quote-only",
        ),
    ],
)
def test_malformed_orders_are_rejected_with_the_reason_and_leave_the_book_alone(
    cmd: PlaceOrder, code: ResultCode
) -> None:
    venue = Venue()
    venue.fund("seller", tata_amount="5")
    venue.fund("buyer", inr_amount="1000")
    venue.limit("seller", SELL, "100", 5)
    venue.limit("buyer", BUY, "99", 5)
    book_before, update_before = venue.book.depth(10), venue.book.update_id

    problem = validate_order(cmd)
    events = venue.place(cmd)

    assert problem is not None and problem[0] is code
    assert kinds(events) == [OrderRejected]
    rejected = events[0]
    assert isinstance(rejected, OrderRejected)
    assert (rejected.order_id, rejected.code, rejected.reason) == (cmd.seq, code, problem[1])
    assert venue.book.depth(10) == book_before
    assert venue.book.update_id == update_before
    venue.check_invariants()


@pytest.mark.parametrize(
    "cmd",
    [
        _command("buy", LIMIT, TimeInForce.GTC, price=100, quantity=1),
        _command("sell", LIMIT, TimeInForce.IOC, price=100, quantity=1),
        _command("buy", LIMIT, TimeInForce.GTC, price=100, quantity=1, post_only=True),
        _command("sell", MARKET_ORDER, TimeInForce.IOC, quantity=1),
        _command("buy", MARKET_ORDER, TimeInForce.IOC, quote_quantity=100),
        _command("buy", MARKET_ORDER, TimeInForce.FOK, quantity=1, quote_quantity=100),
    ],
)
def test_well_formed_orders_pass_validation(cmd: PlaceOrder) -> None:
    assert validate_order(cmd) is None


def test_an_order_rejected_by_the_book_releases_the_funds_held_for_it(venue: Venue) -> None:
    venue.fund("buyer", inr_amount="1000")

    events = venue.limit("buyer", BUY, "100", 2, time_in_force=IOC, post_only=True)

    assert [e.code for e in only(events, OrderRejected)] == [ResultCode.INVALID_ORDER]
    assert venue.balance("buyer", "INR") == (inr("1000"), 0)
    assert venue.ledger.holds == {}
    venue.check_invariants()


def test_a_second_order_with_an_id_already_on_the_book_is_rejected() -> None:
    book = OrderBook(Venue().spec)
    first = _command("buy", LIMIT, price=100, quantity=1)
    book.place(first)

    events = book.place(_command("buy", LIMIT, price=101, quantity=1))

    assert [e.code for e in only(events, OrderRejected)] == [ResultCode.INVALID_ORDER]
    assert book.depth(10) == ([(100, 1)], [])
    book.check_invariants()
