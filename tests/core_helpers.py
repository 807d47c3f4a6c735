"""Builders for scenario tests of the matching core and the ledger.

The scenarios run on one market, TATA_INR: tick 0.01 INR, lot 1 TATA, both assets with 2 decimals. So
a price of 100.00 INR is 10_000 ticks, one lot is 100 TATA minor units, and one lot at one tick is
one INR minor unit (paisa). Amounts in tests are written as text in whole units (`inr("100.50")`)
and converted here with plain `Decimal` arithmetic, independently of `openbell.core.grid`, so that a
mistake in the grid cannot hide itself.

`place_order` is the path an order takes through the engine: hold funds, match, settle.
"""

from __future__ import annotations

import itertools
from dataclasses import dataclass, field
from decimal import Decimal
from typing import TypeVar

from openbell.core.book import OrderBook
from openbell.core.commands import PlaceOrder
from openbell.core.events import OrderRejected
from openbell.core.grid import Asset, MarketSpec
from openbell.core.ledger import Ledger
from openbell.core.orders import validate_order
from openbell.core.types import OrderType, ResultCode, SelfTradePrevention, Side, TimeInForce

EventT = TypeVar("EventT")

MARKET = "TATA_INR"
INR = Asset("INR", 2)
TATA = Asset("TATA", 2)

BUY = Side.BUY
SELL = Side.SELL
LIMIT = OrderType.LIMIT
MARKET_ORDER = OrderType.MARKET
GTC = TimeInForce.GTC
IOC = TimeInForce.IOC
FOK = TimeInForce.FOK


def tata_inr(maker_fee_bps: int = 0, taker_fee_bps: int = 0) -> MarketSpec:
    """TATA_INR with tick 0.01, lot 1, INR and TATA with 2 decimals."""
    return MarketSpec(MARKET, TATA, INR, Decimal("0.01"), Decimal("1"), maker_fee_bps, taker_fee_bps)


def _scaled(text: str, decimals: int) -> int:
    value = Decimal(text).scaleb(decimals)
    assert value == value.to_integral_value(), f"{text} is finer than {decimals} decimals"
    return int(value)


def inr(text: str) -> int:
    """INR minor units (paisa) for whole-rupee text such as "100.50"."""
    return _scaled(text, 2)


def tata(text: str) -> int:
    """TATA minor units for whole-share text such as "3"."""
    return _scaled(text, 2)


def ticks(price: str) -> int:
    """Price text in INR -> ticks of 0.01."""
    return _scaled(price, 2)


def kinds(events: list[object]) -> list[type]:
    return [type(event) for event in events]


def only(events: list[object], kind: type[EventT]) -> list[EventT]:
    return [event for event in events if isinstance(event, kind)]


@dataclass
class Venue:
    """One TATA_INR book and its ledger, with a sequence counter for commands."""

    spec: MarketSpec = field(default_factory=tata_inr)
    book: OrderBook = field(init=False)
    ledger: Ledger = field(init=False)
    _seq: itertools.count = field(default_factory=lambda: itertools.count(1), init=False)
    _txn: itertools.count = field(default_factory=lambda: itertools.count(1), init=False)

    def __post_init__(self) -> None:
        self.book = OrderBook(self.spec)
        self.ledger = Ledger()
        self.ledger.add_market(self.spec)

    def next_seq(self) -> int:
        return next(self._seq)

    def fund(self, user_id: str, *, inr_amount: str = "0", tata_amount: str = "0") -> None:
        """Deposit whole-unit amounts of INR and TATA (zero amounts are skipped)."""
        for asset, amount in (("INR", inr(inr_amount)), ("TATA", tata(tata_amount))):
            if amount:
                code, credited = self.ledger.deposit(user_id, asset, amount, f"fund-{next(self._txn)}")
                assert code is ResultCode.OK and credited

    def order(
        self,
        user_id: str,
        side: Side,
        price: str | None = None,
        quantity: int | None = None,
        *,
        order_type: OrderType = LIMIT,
        time_in_force: TimeInForce = GTC,
        quote_quantity: str | None = None,
        post_only: bool = False,
        stp: SelfTradePrevention = SelfTradePrevention.EXPIRE_MAKER,
        client_order_id: str | None = None,
        stop_price: str | None = None,
    ) -> PlaceOrder:
        """A PlaceOrder with the next seq; price, stop_price and quote_quantity in INR text, quantity in lots."""
        seq = self.next_seq()
        return PlaceOrder(
            seq=seq,
            ts=1_700_000_000_000 + seq,
            user_id=user_id,
            market=MARKET,
            side=side,
            order_type=order_type,
            time_in_force=time_in_force,
            price=ticks(price) if price is not None else None,
            quantity=quantity,
            quote_quantity=inr(quote_quantity) if quote_quantity is not None else None,
            post_only=post_only,
            client_order_id=client_order_id,
            stp=stp,
            stop_price=ticks(stop_price) if stop_price is not None else None,
        )

    def stop(
        self,
        user_id: str,
        side: Side,
        order_type: OrderType,
        stop_price: str,
        quantity: int | None = None,
        price: str | None = None,
        **options: object,
    ) -> list[object]:
        """Place a stop or take-profit order (a limit kind with `price`); stop_price and price in INR text."""
        cmd = self.order(user_id, side, price, quantity, order_type=order_type, stop_price=stop_price, **options)  # type: ignore[arg-type]
        return self.place(cmd)

    def place(self, cmd: PlaceOrder) -> list[object]:
        return place_order(self.book, self.ledger, cmd)

    def limit(self, user_id: str, side: Side, price: str, quantity: int, **options: object) -> list[object]:
        return self.place(self.order(user_id, side, price, quantity, **options))  # type: ignore[arg-type]

    def market(self, user_id: str, side: Side, quantity: int | None = None, **options: object) -> list[object]:
        return self.place(self.order(user_id, side, None, quantity, order_type=MARKET_ORDER, **options))  # type: ignore[arg-type]

    def cancel(self, user_id: str, order_id: int) -> list[object]:
        events = self.book.cancel(order_id, user_id, 1_700_000_000_000 + self.next_seq())
        self.ledger.settle(events)
        return events

    def balance(self, user_id: str, asset: str) -> tuple[int, int]:
        """(available, locked) in minor units."""
        return self.ledger.balance(user_id, asset)

    def check_invariants(self) -> None:
        check_invariants(self.book, self.ledger)


def place_order(book: OrderBook, ledger: Ledger, cmd: PlaceOrder) -> list[object]:
    """Validate `cmd`, hold funds for it, match it, settle the events, and return them: the engine's path.

    When validation or the ledger refuses it, the book never sees the order and the only event is the
    `OrderRejected` the engine reports, carrying the result code and reason.
    """
    problem = validate_order(cmd)
    if problem is not None:
        return [OrderRejected(cmd.market, cmd.seq, cmd.user_id, problem[0], problem[1], cmd.ts, cmd.client_order_id)]
    code, order = ledger.hold_for(cmd)
    if code is not ResultCode.OK:
        return [OrderRejected(cmd.market, cmd.seq, cmd.user_id, code, code.name, cmd.ts, cmd.client_order_id)]
    events = book.place(order)
    ledger.settle(events)
    return events


def check_invariants(book: OrderBook, ledger: Ledger) -> None:
    """The book's and the ledger's own checks, plus what only the two together can tell.

    - every asset's total over all accounts equals what was deposited of it;
    - after settlement the ledger holds funds for exactly the orders resting on the book, a limit buy
      exactly price x remaining in quote and a sell exactly its remaining base.
    """
    book.check_invariants()
    ledger.check_invariants()
    totals, deposited = ledger.totals(), ledger.deposited()
    for asset in totals.keys() | deposited.keys():
        assert totals.get(asset, 0) == deposited.get(asset, 0), f"{asset} is not conserved"
    spec = book.spec
    resting = {order.order_id: order for order in book.orders()}
    waiting = {cmd.seq: cmd for cmd in book.stops.orders()}
    assert set(ledger.holds) == set(resting) | set(waiting), "ledger holds differ from resting and waiting orders"
    for order_id, cmd in waiting.items():
        hold = ledger.holds[order_id]
        if cmd.side is SELL:
            expected = spec.base_value(cmd.quantity or 0)
        elif cmd.price is not None:
            expected = spec.quote_value(cmd.price, cmd.quantity or 0)
        else:
            expected = cmd.quote_quantity or 0
        assert hold.amount == expected and not hold.triggered, f"waiting order {order_id} holds {hold.amount}"
    for order_id, order in resting.items():
        hold = ledger.holds[order_id]
        if order.side is BUY:
            expected = spec.quote_value(order.price, order.remaining)
        else:
            expected = spec.base_value(order.remaining)
        assert hold.amount == expected, f"order {order_id} holds {hold.amount}, expected {expected}"
