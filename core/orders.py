"""The one validation of an order's shape: what a well-formed order of each type and time in force carries.

`validate_order` needs no book or ledger state. The balance stage (`openbell.core.risk`) runs it once
per order, before it holds funds; the book and the ledger take only orders it accepted. The API layers
parse text into a `PlaceOrder` and leave these rules here, so an order type's rules live in one place.

Stop and take-profit orders carry a positive `stop_price` (no other type may); the limit kinds
(`stop_loss_limit`, `take_profit_limit`) are shaped as a limit order, the market kinds as a market order,
except that a market buy must name its quote budget (`quote_quantity`): funds are held at placement, and the
quote the buy may spend is then known before it triggers. No stop is post-only.
"""

from __future__ import annotations

from openbell.core.commands import PlaceOrder
from openbell.core.grid import MAX_PRICE_TICKS, MAX_QUANTITY_LOTS
from openbell.core.types import OrderType, ResultCode, Side, TimeInForce

Problem = tuple[ResultCode, str]

LIMIT = OrderType.LIMIT
MARKET = OrderType.MARKET


def validate_order(cmd: PlaceOrder) -> Problem | None:
    """None when the order is well formed; else the result code and the reason, in words for a client."""
    order_type = cmd.order_type
    if order_type is LIMIT or order_type is MARKET:
        if cmd.stop_price is not None:
            return ResultCode.INVALID_ORDER, "stopPrice is only for stop_loss and take_profit orders"
        return _limit_problem(cmd, "a limit order") if order_type is LIMIT else _market_problem(cmd)
    stop_price = cmd.stop_price
    if stop_price is None or not 0 < stop_price <= MAX_PRICE_TICKS:
        return ResultCode.INVALID_PRICE, f"a {order_type.value} order needs a positive stopPrice"
    if cmd.post_only:
        return ResultCode.INVALID_ORDER, f"a {order_type.value} order cannot be postOnly"
    if order_type.has_limit_price:
        return _limit_problem(cmd, f"a {order_type.value} order")
    if cmd.side is Side.BUY and cmd.quote_quantity is None:
        return ResultCode.INVALID_AMOUNT, f"a {order_type.value} buy needs a quoteQuantity (its budget, held until then)"
    return _market_problem(cmd)


def _limit_problem(cmd: PlaceOrder, kind: str) -> Problem | None:
    if cmd.price is None or not 0 < cmd.price <= MAX_PRICE_TICKS:
        return ResultCode.INVALID_PRICE, f"{kind} needs a positive price"
    if cmd.quantity is None or not 0 < cmd.quantity <= MAX_QUANTITY_LOTS:
        return ResultCode.INVALID_QUANTITY, f"{kind} needs a positive quantity"
    if cmd.quote_quantity is not None:
        return ResultCode.INVALID_ORDER, "quoteQuantity is only for market buys"
    if cmd.post_only and cmd.time_in_force is not TimeInForce.GTC:
        return ResultCode.INVALID_ORDER, "postOnly needs timeInForce GTC"
    return None


def _market_problem(cmd: PlaceOrder) -> Problem | None:
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
