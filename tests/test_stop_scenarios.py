"""Specification of stop and take-profit orders: where they wait, what they hold, when and in which order they
trigger, how they match once triggered, cancels, cascades and their bound, snapshots.

Every scenario places orders the way the engine does (hold, match, settle; see `core_helpers`), asserts on
the events and balances, and ends by checking the book's and the ledger's invariants (which count waiting
stops: each holds what it will spend, and nothing rests on the book for it).
"""

from __future__ import annotations

import pytest
from core_helpers import BUY, IOC, SELL, Venue, inr, kinds, only, tata, ticks

from openbell.core import book as book_module
from openbell.core.book import OrderBook
from openbell.core.events import (
    CancelRejected,
    OrderAccepted,
    OrderCanceled,
    OrderExpired,
    OrderFilled,
    OrderPartiallyFilled,
    OrderRejected,
    OrderTriggered,
    TradeExecuted,
)
from openbell.core.orders import validate_order
from openbell.core.types import OrderType, ResultCode

STOP_LOSS = OrderType.STOP_LOSS
STOP_LOSS_LIMIT = OrderType.STOP_LOSS_LIMIT
TAKE_PROFIT = OrderType.TAKE_PROFIT
TAKE_PROFIT_LIMIT = OrderType.TAKE_PROFIT_LIMIT


@pytest.fixture
def venue() -> Venue:
    venue = Venue()
    for user in ("alice", "bob", "carol", "dave"):
        venue.fund(user, inr_amount="100000", tata_amount="100")
    return venue


def trade_at(venue: Venue, price: str, quantity: int = 1) -> list[object]:
    """carol rests a sell at `price` and dave buys it: the last price becomes `price`."""
    venue.limit("carol", SELL, price, quantity)
    return venue.limit("dave", BUY, price, quantity)


# ------------------------------------------------------------------ waiting


def test_a_stop_loss_sell_waits_off_the_book_and_holds_its_base(venue: Venue) -> None:
    trade_at(venue, "100")
    update_id = venue.book.update_id

    events = venue.stop("alice", SELL, STOP_LOSS, "95", 3)

    assert kinds(events) == [OrderAccepted]
    accepted = events[0]
    assert isinstance(accepted, OrderAccepted)
    assert (accepted.order_type, accepted.stop_price) == (STOP_LOSS, ticks("95"))
    assert venue.book.best_ask is None and venue.book.order(accepted.order_id) is None
    assert venue.book.update_id == update_id  # no level changed
    assert venue.balance("alice", "TATA") == (tata("97"), tata("3"))
    venue.check_invariants()


def test_a_stop_loss_limit_buy_holds_its_limit_price_times_quantity_while_it_waits(venue: Venue) -> None:
    trade_at(venue, "100")

    venue.stop("alice", BUY, STOP_LOSS_LIMIT, "105", 2, price="106")

    assert venue.balance("alice", "INR") == (inr("100000") - inr("212"), inr("212"))
    venue.check_invariants()


def test_a_stop_market_buy_holds_its_quote_budget(venue: Venue) -> None:
    trade_at(venue, "100")

    venue.stop("alice", BUY, STOP_LOSS, "105", quote_quantity="500")

    assert venue.balance("alice", "INR") == (inr("99500"), inr("500"))
    venue.check_invariants()


def test_a_stop_market_buy_without_a_quote_budget_is_malformed(venue: Venue) -> None:
    cmd = venue.order("alice", BUY, None, 2, order_type=STOP_LOSS, stop_price="105")

    problem = validate_order(cmd)

    assert problem is not None and problem[0] is ResultCode.INVALID_AMOUNT


@pytest.mark.parametrize(
    "changes",
    [
        {"stop_price": None},
        {"post_only": True},
        {"order_type": OrderType.LIMIT},
    ],
    ids=["no stop price", "post-only", "stop price on a limit order"],
)
def test_malformed_stop_orders_are_refused_before_they_hold_anything(venue: Venue, changes: dict[str, object]) -> None:
    import msgspec

    cmd = venue.order("alice", SELL, "99", 2, order_type=STOP_LOSS_LIMIT, stop_price="100")
    cmd = msgspec.structs.replace(cmd, **changes)

    events = venue.place(cmd)

    assert kinds(events) == [OrderRejected]
    assert venue.balance("alice", "TATA") == (tata("100"), 0)
    venue.check_invariants()


def test_a_stop_whose_price_the_last_trade_already_reached_is_rejected_and_holds_nothing(venue: Venue) -> None:
    trade_at(venue, "100")

    events = venue.stop("alice", SELL, STOP_LOSS, "100", 3)

    assert kinds(events) == [OrderRejected]
    rejected = events[0]
    assert isinstance(rejected, OrderRejected) and rejected.code is ResultCode.STOP_WOULD_TRIGGER
    assert venue.balance("alice", "TATA") == (tata("100"), 0)
    venue.check_invariants()


def test_a_stop_placed_before_any_trade_waits_whatever_its_price(venue: Venue) -> None:
    events = venue.stop("alice", SELL, STOP_LOSS, "95", 1)

    assert kinds(events) == [OrderAccepted]
    assert len(venue.book.stops) == 1
    venue.check_invariants()


# ------------------------------------------------------------------ triggering


def test_a_stop_loss_sell_triggers_when_the_last_price_falls_to_its_stop_and_sells_at_market(venue: Venue) -> None:
    trade_at(venue, "100")
    venue.limit("bob", BUY, "94", 5)
    stop = venue.stop("alice", SELL, STOP_LOSS, "95", 3)[0]
    assert isinstance(stop, OrderAccepted)

    events = trade_at(venue, "95")

    triggered = only(events, OrderTriggered)
    assert [(t.order_id, t.stop_price, t.last_price) for t in triggered] == [(stop.order_id, ticks("95"), ticks("95"))]
    after = events[events.index(triggered[0]) + 1 :]
    assert kinds(after) == [TradeExecuted, OrderPartiallyFilled, OrderFilled]  # bob's bid, then the stop itself
    trades = only(after, TradeExecuted)
    assert [(t.price, t.quantity, t.taker_order_id, t.maker_user_id) for t in trades] == [
        (ticks("94"), 3, stop.order_id, "bob")
    ]
    assert isinstance(after[-1], OrderFilled) and after[-1].order_id == stop.order_id
    assert venue.book.last_price == ticks("94")
    assert venue.balance("alice", "TATA") == (tata("97"), 0)
    assert venue.balance("alice", "INR") == (inr("100000") + inr("282"), 0)
    venue.check_invariants()


def test_a_stop_loss_sell_does_not_trigger_while_the_price_stays_above_its_stop(venue: Venue) -> None:
    trade_at(venue, "100")
    venue.stop("alice", SELL, STOP_LOSS, "95", 3)

    events = trade_at(venue, "95.01")

    assert not only(events, OrderTriggered)
    assert len(venue.book.stops) == 1
    venue.check_invariants()


def test_a_stop_loss_buy_triggers_when_the_last_price_rises_to_its_stop(venue: Venue) -> None:
    trade_at(venue, "100")
    venue.limit("bob", SELL, "106", 5)
    stop = venue.stop("alice", BUY, STOP_LOSS, "105", quote_quantity="300")[0]

    events = trade_at(venue, "105")

    assert [t.order_id for t in only(events, OrderTriggered)] == [stop.order_id]  # type: ignore[attr-defined]
    trades = [t for t in only(events, TradeExecuted) if t.taker_user_id == "alice"]
    assert [(t.price, t.quantity) for t in trades] == [(ticks("106"), 2)]  # 300 buys two lots at 106
    assert venue.balance("alice", "INR") == (inr("100000") - inr("212"), 0)
    assert venue.balance("alice", "TATA") == (tata("102"), 0)
    venue.check_invariants()


def test_a_take_profit_sell_triggers_on_a_rising_price_and_a_take_profit_buy_on_a_falling_one(venue: Venue) -> None:
    trade_at(venue, "100")
    sell = venue.stop("alice", SELL, TAKE_PROFIT_LIMIT, "110", 1, price="110")[0]
    buy = venue.stop("bob", BUY, TAKE_PROFIT_LIMIT, "90", 1, price="90")[0]

    rising = trade_at(venue, "110")
    falling = trade_at(venue, "90")

    assert [t.order_id for t in only(rising, OrderTriggered)] == [sell.order_id]  # type: ignore[attr-defined]
    assert [t.order_id for t in only(falling, OrderTriggered)] == [buy.order_id]  # type: ignore[attr-defined]
    # Each then rests at its limit (nothing crossed it): a limit order on the book, its hold unchanged.
    assert venue.book.best_ask == ticks("110") and venue.book.best_bid == ticks("90")
    assert venue.ledger.holds[sell.order_id].triggered  # type: ignore[attr-defined]
    venue.check_invariants()


def test_a_triggered_stop_limit_buy_that_fills_below_its_limit_gets_the_difference_back(venue: Venue) -> None:
    trade_at(venue, "100")
    venue.limit("bob", SELL, "104", 2)
    venue.stop("alice", BUY, STOP_LOSS_LIMIT, "103", 2, price="106")

    trade_at(venue, "103")

    assert venue.balance("alice", "INR") == (inr("100000") - inr("208"), 0)
    assert venue.balance("alice", "TATA") == (tata("102"), 0)
    venue.check_invariants()


def test_a_triggered_stop_market_sell_with_no_buyers_expires_and_releases_its_hold(venue: Venue) -> None:
    trade_at(venue, "100")
    stop = venue.stop("alice", SELL, STOP_LOSS, "95", 3)[0]

    events = trade_at(venue, "95")

    expired = [e for e in only(events, OrderExpired) if e.order_id == stop.order_id]  # type: ignore[attr-defined]
    assert len(expired) == 1 and expired[0].reason is ResultCode.NO_LIQUIDITY and expired[0].remaining_quantity == 3
    assert venue.balance("alice", "TATA") == (tata("100"), 0)
    venue.check_invariants()


def test_a_triggered_stop_limit_ioc_expires_what_it_cannot_fill(venue: Venue) -> None:
    trade_at(venue, "100")
    venue.limit("bob", BUY, "94", 1)
    stop = venue.stop("alice", SELL, STOP_LOSS_LIMIT, "95", 3, price="94", time_in_force=IOC)[0]

    events = trade_at(venue, "95")

    expired = [e for e in only(events, OrderExpired) if e.order_id == stop.order_id]  # type: ignore[attr-defined]
    assert [(e.filled_quantity, e.remaining_quantity) for e in expired] == [(1, 2)]
    assert venue.book.order(stop.order_id) is None  # type: ignore[attr-defined]
    venue.check_invariants()


def test_stops_triggered_by_one_trade_go_by_stop_price_then_time(venue: Venue) -> None:
    trade_at(venue, "100")
    venue.limit("bob", BUY, "80", 10)
    ids = []
    for stop_price in ("96", "98", "96", "97"):
        accepted = venue.stop("alice", SELL, STOP_LOSS_LIMIT, stop_price, 1, price="80")[0]
        ids.append(accepted.order_id)  # type: ignore[attr-defined]

    events = trade_at(venue, "95")

    # A falling price reaches the highest stop first; equal stops go in the order they were placed.
    assert [t.order_id for t in only(events, OrderTriggered)] == [ids[1], ids[3], ids[0], ids[2]]
    taker_order = [t.taker_order_id for t in only(events, TradeExecuted) if t.taker_user_id == "alice"]
    assert taker_order == [ids[1], ids[3], ids[0], ids[2]]
    venue.check_invariants()


def test_a_triggered_stops_trades_trigger_the_next_stop_in_the_same_command(venue: Venue) -> None:
    trade_at(venue, "100")
    venue.limit("bob", BUY, "94", 1)
    venue.limit("bob", BUY, "90", 1)
    first = venue.stop("alice", SELL, STOP_LOSS, "95", 1)[0]
    second = venue.stop("alice", SELL, STOP_LOSS, "94", 1)[0]

    events = trade_at(venue, "95")

    triggered = only(events, OrderTriggered)
    assert [(t.order_id, t.last_price) for t in triggered] == [
        (first.order_id, ticks("95")),  # type: ignore[attr-defined]
        (second.order_id, ticks("94")),  # type: ignore[attr-defined]  # by the first stop's own trade at 94
    ]
    assert venue.book.last_price == ticks("90")
    assert len(venue.book.stops) == 0
    venue.check_invariants()


def test_one_command_triggers_at_most_the_bound_and_the_rest_trigger_after_the_next_order_not_a_cancel(
    venue: Venue, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(book_module, "MAX_TRIGGERS_PER_COMMAND", 2)
    trade_at(venue, "100")
    venue.limit("bob", BUY, "80", 10)
    ids = [
        venue.stop("alice", SELL, STOP_LOSS_LIMIT, price, 1, price="80")[0].order_id  # type: ignore[attr-defined]
        for price in ("99", "98", "97")
    ]

    events = trade_at(venue, "95")
    canceled = venue.cancel("bob", 10**9)
    later = venue.limit("carol", SELL, "120", 1)  # any next order of the market, even one that only rests

    assert [t.order_id for t in only(events, OrderTriggered)] == ids[:2]
    assert kinds(canceled) == [CancelRejected]
    assert kinds(later)[0] is OrderAccepted
    assert [t.order_id for t in only(later, OrderTriggered)] == ids[2:]
    venue.check_invariants()


# ------------------------------------------------------------------ cancels and state


def test_a_waiting_stop_can_be_canceled_and_releases_all_it_holds(venue: Venue) -> None:
    trade_at(venue, "100")
    stop = venue.stop("alice", BUY, STOP_LOSS_LIMIT, "105", 2, price="106")[0]

    events = venue.cancel("alice", stop.order_id)  # type: ignore[attr-defined]

    assert kinds(events) == [OrderCanceled]
    canceled = events[0]
    assert isinstance(canceled, OrderCanceled) and (canceled.filled_quantity, canceled.remaining_quantity) == (0, 2)
    assert venue.balance("alice", "INR") == (inr("100000"), 0)
    assert len(venue.book.stops) == 0
    venue.check_invariants()


def test_another_users_waiting_stop_looks_like_an_unknown_order(venue: Venue) -> None:
    trade_at(venue, "100")
    stop = venue.stop("alice", SELL, STOP_LOSS, "95", 1)[0]

    events = venue.cancel("bob", stop.order_id)  # type: ignore[attr-defined]

    assert kinds(events) == [CancelRejected]
    assert len(venue.book.stops) == 1
    venue.check_invariants()


def test_a_book_rebuilt_from_its_state_keeps_waiting_stops_and_the_last_price_and_triggers_alike(
    venue: Venue,
) -> None:
    trade_at(venue, "100")
    venue.limit("bob", BUY, "94", 5)
    venue.stop("alice", SELL, STOP_LOSS, "95", 2)
    venue.stop("alice", BUY, TAKE_PROFIT_LIMIT, "90", 1, price="90")
    rebuilt = OrderBook.from_state(venue.spec, venue.book.to_state())

    assert rebuilt.last_price == ticks("100")
    assert [c.seq for c in rebuilt.stops.orders()] == [c.seq for c in venue.book.stops.orders()]
    sell = venue.order("carol", SELL, "95", 1)
    buy = venue.order("dave", BUY, "95", 1)
    expected = [venue.book.place(sell), venue.book.place(buy)]
    assert [rebuilt.place(sell), rebuilt.place(buy)] == expected
    assert rebuilt.to_state() == venue.book.to_state()
    rebuilt.check_invariants()


def test_a_triggered_stop_whose_matching_raises_expires_with_engine_error_and_releases_its_hold(
    venue: Venue, monkeypatch: pytest.MonkeyPatch
) -> None:
    trade_at(venue, "100")
    venue.limit("bob", BUY, "94", 5)
    stop = venue.stop("alice", SELL, STOP_LOSS, "95", 3)[0]
    place = OrderBook._place

    def failing(self: OrderBook, cmd: object, events: list[object], announce: bool = True) -> None:
        if not announce:
            raise RuntimeError("a fault while matching a triggered order")
        place(self, cmd, events, announce)  # type: ignore[arg-type]

    monkeypatch.setattr(OrderBook, "_place", failing)

    events = trade_at(venue, "95")

    expired = [e for e in only(events, OrderExpired) if e.order_id == stop.order_id]  # type: ignore[attr-defined]
    assert [(e.reason, e.filled_quantity, e.remaining_quantity) for e in expired] == [(ResultCode.ENGINE_ERROR, 0, 3)]
    assert venue.balance("alice", "TATA") == (tata("100"), 0)
    assert venue.book.level_total(BUY, ticks("94")) == 5  # bob's bid untouched
    venue.check_invariants()
