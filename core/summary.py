"""What a client is told about orders: one order folded from the events its command caused, open orders."""

from __future__ import annotations

from collections.abc import Iterable

from openbell.core.events import (
    OrderAccepted,
    OrderCanceled,
    OrderExpired,
    OrderFilled,
    OrderPartiallyFilled,
    OrderRejected,
    TradeExecuted,
)
from openbell.core.types import OrderStatus, OrderType, Record, ResultCode, Side, TimeInForce


class OrderSummary(Record, frozen=True):
    order_id: int
    status: OrderStatus
    executed_quantity: int
    """Lots filled so far."""
    remaining_quantity: int
    """Lots still open (resting), or dropped if the order ended unfilled."""
    fills: tuple[tuple[int, int, int], ...]
    """(price ticks, lots, trade id) of each fill this command made, in order."""
    code: ResultCode = ResultCode.OK
    reason: str = ""


def summarize(order_id: int, events: Iterable[object]) -> OrderSummary:
    """Fold the events of one place or cancel command into the state of order `order_id`."""
    status = OrderStatus.NEW
    executed = 0
    remaining = 0
    fills: list[tuple[int, int, int]] = []
    code = ResultCode.OK
    reason = ""
    for event in events:
        if isinstance(event, TradeExecuted):
            if event.taker_order_id == order_id or event.maker_order_id == order_id:
                fills.append((event.price, event.quantity, event.trade_id))
        elif isinstance(event, OrderAccepted):
            if event.order_id == order_id:
                remaining = event.quantity or 0
        elif isinstance(event, OrderRejected):
            if event.order_id == order_id:
                status, code, reason = OrderStatus.REJECTED, event.code, event.reason
        elif isinstance(event, OrderFilled):
            if event.order_id == order_id:
                status, executed, remaining = OrderStatus.FILLED, event.filled_quantity, 0
        elif isinstance(event, (OrderPartiallyFilled, OrderCanceled, OrderExpired)):
            if event.order_id == order_id:
                status, executed, remaining = event.status, event.filled_quantity, event.remaining_quantity
    return OrderSummary(order_id, status, executed, remaining, tuple(fills), code, reason)


class OpenOrderView(Record, frozen=True):
    """An open order as a query returns it: a copy, safe to read from any thread."""

    order_id: int
    market: str
    side: Side
    order_type: OrderType
    price: int | None
    quantity: int | None
    filled: int
    ts: int
    client_order_id: str | None
    stop_price: int | None = None
    """A stop or take-profit order's trigger price (ticks); None for other orders."""
    triggered: bool = False
    """Whether a stop or take-profit order has been triggered (until then it waits off the book, status NEW)."""

    @property
    def status(self) -> OrderStatus:
        return OrderStatus.PARTIALLY_FILLED if self.filled else OrderStatus.NEW


class OriginalOrder(Record, frozen=True):
    """What a duplicate clientOrderId's reply carries: the order that used it first, as it is now."""

    market: str
    summary: OrderSummary


class OrderRecord(Record, frozen=True):
    """An order as the history database knows it: as accepted, and its latest state."""

    order_id: int
    market: str
    side: Side
    order_type: OrderType
    time_in_force: TimeInForce
    price: int | None
    quantity: int | None
    """Lots asked; None for a market buy sized by quote."""
    quote_quantity: int | None
    """The quote budget of a market order by quote (minor units), or None."""
    client_order_id: str | None
    ts: int
    """Entry time, ms."""
    status: OrderStatus
    filled: int
    """Lots filled."""
    executed_quote: int
    """Quote of its fills, minor units (price x lots x quote units per tick-lot, summed)."""
    updated: int
    """Time of its latest state change (its entry time if none), ms."""
    stop_price: int | None = None
    """A stop or take-profit order's stop price (ticks); None for other orders, and for stops stored before the
    history database kept it (schema 4)."""
