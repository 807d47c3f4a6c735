"""A market sell sized by quote (Binance's MARKET SELL with `quoteOrderQty`): it sells whole lots, best bid
first, until one more lot would bring it more quote than asked, and never sells more base than it has."""

from __future__ import annotations

import pytest
from core_helpers import BUY, SELL, Venue, inr, kinds, only, tata, ticks

from openbell.core.events import OrderAccepted, OrderExpired, OrderFilled, OrderRejected, TradeExecuted
from openbell.core.types import OrderType, ResultCode, TimeInForce


@pytest.fixture
def venue() -> Venue:
    return Venue()


def test_market_sell_by_quote_stops_before_receiving_more_than_asked(venue: Venue) -> None:
    venue.fund("buyer", inr_amount="1000")
    venue.fund("seller", tata_amount="10")
    venue.limit("buyer", BUY, "100", 2)
    venue.limit("buyer", BUY, "90", 5)

    events = venue.market("seller", SELL, None, quote_quantity="300")

    assert [(t.price, t.quantity) for t in only(events, TradeExecuted)] == [(ticks("100"), 2), (ticks("90"), 1)]
    assert isinstance(events[-1], OrderFilled) and events[-1].filled_quantity == 3
    assert venue.balance("seller", "INR") == (inr("290"), 0)
    assert venue.balance("seller", "TATA") == (tata("7"), 0)
    venue.check_invariants()


def test_market_sell_by_quote_sells_at_most_what_the_seller_has(venue: Venue) -> None:
    venue.fund("buyer", inr_amount="1000")
    venue.fund("seller", tata_amount="2")
    venue.limit("buyer", BUY, "100", 5)

    events = venue.market("seller", SELL, None, quote_quantity="450")

    assert [(t.price, t.quantity) for t in only(events, TradeExecuted)] == [(ticks("100"), 2)]
    assert isinstance(events[-1], OrderFilled)
    assert venue.balance("seller", "TATA") == (0, 0) and venue.balance("seller", "INR") == (inr("200"), 0)
    venue.check_invariants()


def test_market_sell_by_quote_without_bids_expires_and_releases_its_hold(venue: Venue) -> None:
    venue.fund("seller", tata_amount="3")

    events = venue.market("seller", SELL, None, quote_quantity="100")

    assert kinds(events) == [OrderAccepted, OrderExpired]
    assert only(events, OrderExpired)[0].reason is ResultCode.NO_LIQUIDITY
    assert venue.balance("seller", "TATA") == (tata("3"), 0)
    venue.check_invariants()


def test_market_sell_by_quote_without_base_is_insufficient_funds(venue: Venue) -> None:
    venue.fund("buyer", inr_amount="1000")
    venue.limit("buyer", BUY, "100", 5)

    events = venue.market("seller", SELL, None, quote_quantity="100")

    assert kinds(events) == [OrderRejected]
    assert only(events, OrderRejected)[0].code is ResultCode.INSUFFICIENT_FUNDS
    venue.check_invariants()


def test_fok_market_sell_by_quote_is_refused(venue: Venue) -> None:
    venue.fund("seller", tata_amount="3")
    order = venue.order(
        "seller", SELL, None, None, order_type=OrderType.MARKET, quote_quantity="100", time_in_force=TimeInForce.FOK
    )

    events = venue.place(order)

    assert only(events, OrderRejected)[0].code is ResultCode.INVALID_ORDER
