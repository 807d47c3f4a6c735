"""Events: what happened, in the past tense, as immutable records.

The order book returns the events each operation caused, in the order they happened, so no caller
ever has to compare states to learn what changed. The ledger settles funds from those same events.
Quantities are lots, prices ticks, amounts minor units; `ts` is the causing command's entry time (ms).

Per placed order the book emits, in order: `OrderAccepted` (or only `OrderRejected`); then for each
fill a `TradeExecuted` followed by the maker's `OrderFilled` or `OrderPartiallyFilled`; any maker
removed by self-trade prevention as `OrderExpired`; and last, the taker's own outcome if it changed:
`OrderFilled`, `OrderPartiallyFilled` (rests after some fills), or `OrderExpired` (remainder dropped).
"""

from __future__ import annotations

from dataclasses import dataclass

from openbell.core.types import OrderStatus, OrderType, ResultCode, Side, TimeInForce


@dataclass(frozen=True, slots=True)
class OrderAccepted:
    market: str
    order_id: int
    user_id: str
    side: Side
    order_type: OrderType
    time_in_force: TimeInForce
    price: int | None
    quantity: int | None
    quote_quantity: int | None
    client_order_id: str | None
    ts: int


@dataclass(frozen=True, slots=True)
class OrderRejected:
    market: str
    order_id: int
    user_id: str
    code: ResultCode
    reason: str
    ts: int
    client_order_id: str | None = None

    status = OrderStatus.REJECTED


@dataclass(frozen=True, slots=True)
class TradeExecuted:
    market: str
    trade_id: int
    """Per-market, increasing from 1."""
    price: int
    """The maker's price, in ticks."""
    quantity: int
    taker_side: Side
    maker_order_id: int
    maker_user_id: str
    taker_order_id: int
    taker_user_id: str
    ts: int

    @property
    def is_buyer_maker(self) -> bool:
        return self.taker_side is Side.SELL


@dataclass(frozen=True, slots=True)
class OrderPartiallyFilled:
    market: str
    order_id: int
    user_id: str
    filled_quantity: int
    """Cumulative lots filled."""
    remaining_quantity: int
    """Lots still resting."""
    ts: int

    status = OrderStatus.PARTIALLY_FILLED


@dataclass(frozen=True, slots=True)
class OrderFilled:
    market: str
    order_id: int
    user_id: str
    filled_quantity: int
    ts: int

    status = OrderStatus.FILLED
    remaining_quantity = 0


@dataclass(frozen=True, slots=True)
class OrderCanceled:
    market: str
    order_id: int
    user_id: str
    filled_quantity: int
    remaining_quantity: int
    """Lots that were still resting when canceled."""
    ts: int

    status = OrderStatus.CANCELED


@dataclass(frozen=True, slots=True)
class OrderExpired:
    market: str
    order_id: int
    user_id: str
    filled_quantity: int
    remaining_quantity: int
    """Lots dropped unfilled (for a market buy by quote: what was asked and not bought, or 0)."""
    reason: ResultCode
    """Why: IOC/market remainder (NO_LIQUIDITY), FOK_NOT_FILLED, or SELF_TRADE_PREVENTED."""
    ts: int

    status = OrderStatus.EXPIRED


@dataclass(frozen=True, slots=True)
class BalanceChanged:
    user_id: str
    asset: str
    available: int
    locked: int
    ts: int


@dataclass(frozen=True, slots=True)
class DepthUpdated:
    """Levels changed by updates `first_update_id`..`last_update_id`, as their totals after them."""

    market: str
    first_update_id: int
    last_update_id: int
    bids: tuple[tuple[int, int], ...]
    """(price ticks, total lots); total 0 removes the level."""
    asks: tuple[tuple[int, int], ...]
    ts: int


OrderEvent = OrderAccepted | OrderRejected | OrderPartiallyFilled | OrderFilled | OrderCanceled | OrderExpired
TERMINAL_EVENTS = (OrderFilled, OrderCanceled, OrderExpired, OrderRejected)
