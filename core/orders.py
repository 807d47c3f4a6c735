"""The one validation of an order's shape: what a well-formed order of each type and time in force carries.

`validate_order` needs no book or ledger state. The balance stage (`openbell.core.risk`) runs it once
per order, before it holds funds; the book and the ledger take only orders it accepted. The API layers
parse text into a `PlaceOrder` and leave these rules here, so an order type's rules live in one place.
"""

from __future__ import annotations

from openbell.core.commands import PlaceOrder
from openbell.core.grid import MAX_PRICE_TICKS, MAX_QUANTITY_LOTS
from openbell.core.types import OrderType, ResultCode, Side, TimeInForce

Problem = tuple[ResultCode, str]


def validate_order(cmd: PlaceOrder) -> Problem | None:
    """None when the order is well formed; else the result code and the reason, in words for a client."""
    if cmd.order_type is OrderType.LIMIT:
        if cmd.price is None or not 0 < cmd.price <= MAX_PRICE_TICKS:
            return ResultCode.INVALID_PRICE, "a limit order needs a positive price"
        if cmd.quantity is None or not 0 < cmd.quantity <= MAX_QUANTITY_LOTS:
            return ResultCode.INVALID_QUANTITY, "a limit order needs a positive quantity"
        if cmd.quote_quantity is not None:
            return ResultCode.INVALID_ORDER, "quoteQuantity is only for market buys"
        if cmd.post_only and cmd.time_in_force is not TimeInForce.GTC:
            return ResultCode.INVALID_ORDER, "postOnly needs timeInForce GTC"
        return None
    if cmd.price is not None:
        return ResultCode.INVALID_PRICE, "a market order takes no price"
    if cmd.post_only:
        return ResultCode.INVALID_ORDER, "a market order cannot be postOnly"
    if cmd.quantity is not None and not 0 < cmd.quantity <= MAX_QUANTITY_LOTS:
        return ResultCode.INVALID_QUANTITY, "quantity must be positive"
    if cmd.side is Side.SELL:
        if cmd.quote_quantity is not None:
            # A market sell sized by quote: sell until it has received that much (never more).
            if cmd.quantity is not None:
                return ResultCode.INVALID_ORDER, "a market sell takes a quantity or a quoteQuantity, not both"
            if cmd.quote_quantity <= 0:
                return ResultCode.INVALID_AMOUNT, "quoteQuantity must be positive"
            if cmd.time_in_force is TimeInForce.FOK:
                return ResultCode.INVALID_ORDER, "a FOK market sell needs a quantity"
            return None
        if cmd.quantity is None:
            return ResultCode.INVALID_QUANTITY, "a market sell needs a quantity or a quoteQuantity"
        return None
    if cmd.quantity is None and cmd.quote_quantity is None:
        return ResultCode.INVALID_QUANTITY, "a market buy needs a quantity or a quoteQuantity"
    if cmd.quote_quantity is not None and cmd.quote_quantity <= 0:
        return ResultCode.INVALID_AMOUNT, "quoteQuantity must be positive"
    if cmd.time_in_force is TimeInForce.FOK and cmd.quantity is None:
        return ResultCode.INVALID_ORDER, "a FOK market buy needs a quantity"
    return None
