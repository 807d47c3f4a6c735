"""Binance user data stream events (`executionReport`, `outboundAccountPosition`) from the engine's own events:
the book and ledger of `core_helpers.Venue` make them, `ws.binance_user.UserEvents` renders them."""

from __future__ import annotations

from typing import Any

import pytest
from core_helpers import BUY, INR, SELL, TATA, Venue

from openbell.core.events import BalanceChanged
from openbell.core.types import OrderType, TimeInForce
from openbell.ws.binance import BinanceRenderer
from openbell.ws.binance_user import USER_KEY, UserEvents

LISTENING = {USER_KEY + "seller", USER_KEY + "buyer"}


@pytest.fixture
def venue() -> Venue:
    v = Venue()
    v.fund("seller", tata_amount="10")
    v.fund("buyer", inr_amount="1000")
    return v


def reports(
    users: UserEvents | BinanceRenderer, events: list[object], wanted: set[str] = LISTENING
) -> list[tuple[str, dict[str, Any]]]:
    out = []
    for event in events:
        out.extend(users.render(event, wanted))
    return out


def brief(messages: list[tuple[str, dict[str, Any]]]) -> list[tuple[str, str, str, str, str, str]]:
    """(user, x, X, last quantity, cumulative quantity, cumulative quote) of each executionReport."""
    return [(key[len(USER_KEY) :], m["x"], m["X"], m["l"], m["z"], m["Z"]) for key, m in messages]


def test_a_fill_reports_new_then_one_trade_per_side_with_the_status_after_it(venue: Venue) -> None:
    users = UserEvents(lambda: {venue.spec.symbol: venue.spec}, lambda: {"INR": INR, "TATA": TATA})

    resting = reports(users, venue.limit("seller", SELL, "100", 5, client_order_id="ask-1"))
    taking = reports(users, venue.limit("buyer", BUY, "101", 3))

    assert brief(resting) == [("seller", "NEW", "NEW", "0", "0", "0.00")]
    assert resting[0][1]["c"] == "ask-1" and resting[0][1]["S"] == "SELL" and resting[0][1]["p"] == "100.00"
    assert brief(taking) == [
        ("buyer", "NEW", "NEW", "0", "0", "0.00"),
        ("seller", "TRADE", "PARTIALLY_FILLED", "3", "3", "300.00"),
        ("buyer", "TRADE", "FILLED", "3", "3", "300.00"),
    ]
    seller_fill, buyer_fill = taking[1][1], taking[2][1]
    assert (seller_fill["m"], buyer_fill["m"]) == (True, False)
    assert seller_fill["L"] == buyer_fill["L"] == "100.00" and seller_fill["t"] == buyer_fill["t"] == 1
    assert seller_fill["N"] == "INR" and buyer_fill["N"] == "TATA"
    assert users.orders.keys() == {resting[0][1]["i"]}  # only the open order is kept


def test_a_cancel_and_an_ioc_remainder_end_their_orders(venue: Venue) -> None:
    users = UserEvents(lambda: {venue.spec.symbol: venue.spec}, lambda: {"INR": INR, "TATA": TATA})
    ask = reports(users, venue.limit("seller", SELL, "100", 2))[0][1]

    ioc = reports(users, venue.limit("buyer", BUY, "100", 3, time_in_force=TimeInForce.IOC))
    canceled = reports(users, venue.cancel("seller", ask["i"]))

    assert brief(ioc) == [
        ("buyer", "NEW", "NEW", "0", "0", "0.00"),
        ("seller", "TRADE", "FILLED", "2", "2", "200.00"),
        ("buyer", "TRADE", "PARTIALLY_FILLED", "2", "2", "200.00"),
        ("buyer", "EXPIRED", "EXPIRED", "0", "2", "200.00"),
    ]
    assert canceled == []  # the ask was filled: nothing to cancel, nothing reported
    assert users.orders == {}


def test_a_rejected_post_only_is_reported_rejected(venue: Venue) -> None:
    users = UserEvents(lambda: {venue.spec.symbol: venue.spec}, lambda: {"INR": INR, "TATA": TATA})
    reports(users, venue.limit("seller", SELL, "100", 2))

    rejected = reports(users, venue.limit("buyer", BUY, "100", 1, post_only=True, client_order_id="maker-1"))

    assert brief(rejected) == [("buyer", "REJECTED", "REJECTED", "0", "0", "0.00")]
    assert rejected[0][1]["r"] == "POST_ONLY_WOULD_TAKE" and rejected[0][1]["c"] == "maker-1"


def test_only_listened_users_get_reports_but_every_order_is_followed(venue: Venue) -> None:
    users = UserEvents(lambda: {venue.spec.symbol: venue.spec}, lambda: {"INR": INR, "TATA": TATA})
    reports(users, venue.limit("seller", SELL, "100", 5), wanted=set())

    taking = reports(users, venue.limit("buyer", BUY, "100", 2), wanted={USER_KEY + "seller"})

    assert brief(taking) == [("seller", "TRADE", "PARTIALLY_FILLED", "2", "2", "200.00")]
    assert taking[0][1]["S"] == "SELL"  # the facts of an order accepted while nobody listened


def test_a_stop_reports_its_type_and_stop_price_waits_unworking_and_works_when_triggered(venue: Venue) -> None:
    # through the Binance hub's renderer, which hands order events (the trigger too) to its UserEvents
    renderer = BinanceRenderer(lambda: {venue.spec.symbol: venue.spec}, lambda: {"INR": INR, "TATA": TATA})
    venue.fund("holder", tata_amount="10")
    listening = LISTENING | {USER_KEY + "holder"}
    reports(renderer, venue.limit("seller", SELL, "100", 1), listening)
    reports(renderer, venue.limit("buyer", BUY, "100", 1), listening)  # the last price is 100
    reports(renderer, venue.limit("buyer", BUY, "95", 2), listening)
    reports(renderer, venue.limit("buyer", BUY, "96", 1), listening)

    placed = reports(renderer, venue.stop("holder", SELL, OrderType.STOP_LOSS_LIMIT, "96", 2, "95"), listening)
    triggering = reports(renderer, venue.limit("seller", SELL, "96", 1), listening)  # a trade at 96 reaches the stop

    [(_, waiting)] = placed
    assert (waiting["x"], waiting["o"], waiting["P"], waiting["p"], waiting["q"]) == (
        "NEW", "STOP_LOSS_LIMIT", "96.00", "95.00", "2"
    )  # fmt: skip
    assert (waiting["w"], waiting["W"]) == (False, -1)
    holder = [m for key, m in triggering if key == USER_KEY + "holder"]
    assert [(m["x"], m["X"], m["l"], m["z"], m["w"]) for m in holder] == [
        ("NEW", "NEW", "0", "0", True),
        ("TRADE", "FILLED", "2", "2", False),
    ]
    assert all((m["i"], m["o"], m["P"]) == (waiting["i"], "STOP_LOSS_LIMIT", "96.00") for m in holder)
    assert holder[0]["W"] == holder[0]["E"] and holder[1]["L"] == "95.00"
    assert waiting["i"] not in renderer.users.orders


def test_a_balance_change_is_an_account_position(venue: Venue) -> None:
    users = UserEvents(lambda: {venue.spec.symbol: venue.spec}, lambda: {"INR": INR, "TATA": TATA})

    [(key, message)] = users.render(BalanceChanged("buyer", "INR", 70_000, 30_000, 123, 9), LISTENING)

    assert key == USER_KEY + "buyer"
    assert message == {
        "e": "outboundAccountPosition",
        "E": 123,
        "u": 123,
        "B": [{"a": "INR", "f": "700.00", "l": "300.00"}],
    }
