"""What a client is told about one order, folded from the events its command caused."""

from __future__ import annotations

from dataclasses import dataclass

from openbell.core.events import (
    OrderAccepted,
    OrderCanceled,
    OrderExpired,
    OrderFilled,
    OrderPartiallyFilled,
    OrderRejected,
    TradeExecuted,
)
from openbell.core.types import OrderStatus, OrderType, ResultCode, Side


@dataclass(frozen=True, slots=True)
class OrderSummary:
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


def summarize(order_id: int, events: tuple[object, ...] | list[object]) -> OrderSummary:
    """Fold the events of one place or cancel command into the state of order `order_id`."""
    status = OrderStatus.NEW
    executed = 0
    remaining = 0
    fills: list[tuple[int, int, int]] = []
    code = ResultCode.OK
    reason = ""
    for event in events:
        kind = type(event)
        if kind is TradeExecuted:
            if event.taker_order_id == order_id or event.maker_order_id == order_id:  # type: ignore[attr-defined]
                fills.append((event.price, event.quantity, event.trade_id))  # type: ignore[attr-defined]
            continue
        if getattr(event, "order_id", None) != order_id:
            continue
        if kind is OrderAccepted:
            remaining = event.quantity or 0  # type: ignore[attr-defined]
        elif kind is OrderRejected:
            status, code, reason = OrderStatus.REJECTED, event.code, event.reason  # type: ignore[attr-defined]
        elif kind is OrderPartiallyFilled:
            status = OrderStatus.PARTIALLY_FILLED
            executed, remaining = event.filled_quantity, event.remaining_quantity  # type: ignore[attr-defined]
        elif kind is OrderFilled:
            status, executed, remaining = OrderStatus.FILLED, event.filled_quantity, 0  # type: ignore[attr-defined]
        elif kind is OrderCanceled:
            status = OrderStatus.CANCELED
            executed, remaining = event.filled_quantity, event.remaining_quantity  # type: ignore[attr-defined]
        elif kind is OrderExpired:
            status = OrderStatus.EXPIRED
            executed, remaining = event.filled_quantity, event.remaining_quantity  # type: ignore[attr-defined]
    return OrderSummary(order_id, status, executed, remaining, tuple(fills), code, reason)


@dataclass(frozen=True, slots=True)
class OpenOrderView:
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

    @property
    def status(self) -> OrderStatus:
        return OrderStatus.PARTIALLY_FILLED if self.filled else OrderStatus.NEW
