"""Events: what happened, in the past tense, as immutable records.

The order book returns the events each operation caused, in the order they happened, so no caller
ever has to compare states to learn what changed. The ledger settles funds from those same events.
Quantities are lots, prices ticks, amounts minor units; `ts` is the causing command's entry time (ms).

Per placed order the book emits, in order: `OrderAccepted` (or only `OrderRejected`); then for each
fill a `TradeExecuted` followed by the maker's `OrderFilled` or `OrderPartiallyFilled`; any maker
removed by self-trade prevention as `OrderExpired`; and last, the taker's own outcome if it changed:
`OrderFilled`, `OrderPartiallyFilled` (rests after some fills), or `OrderExpired` (remainder dropped).

Events are `NamedTuple`s rather than frozen dataclasses: they are just as immutable and serialisable,
and an order makes three or four of them, where a frozen dataclass costs about four times as much to
build (measured in bench/core_bench.py). Equality also compares the event type, so an `OrderFilled`
never equals an `OrderCanceled` that happens to hold the same values.
"""

from __future__ import annotations

from typing import NamedTuple

from openbell.core.types import OrderStatus, OrderType, ResultCode, Side, TimeInForce


class OrderAccepted(NamedTuple):
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


class OrderRejected(NamedTuple):
    market: str
    order_id: int
    user_id: str
    code: ResultCode
    reason: str
    ts: int
    client_order_id: str | None = None

    @property
    def status(self) -> OrderStatus:
        return OrderStatus.REJECTED


class TradeExecuted(NamedTuple):
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


class OrderPartiallyFilled(NamedTuple):
    market: str
    order_id: int
    user_id: str
    filled_quantity: int
    """Cumulative lots filled."""
    remaining_quantity: int
    """Lots still resting."""
    ts: int

    @property
    def status(self) -> OrderStatus:
        return OrderStatus.PARTIALLY_FILLED


class OrderFilled(NamedTuple):
    market: str
    order_id: int
    user_id: str
    filled_quantity: int
    ts: int

    @property
    def status(self) -> OrderStatus:
        return OrderStatus.FILLED

    @property
    def remaining_quantity(self) -> int:
        return 0


class OrderCanceled(NamedTuple):
    market: str
    order_id: int
    user_id: str
    filled_quantity: int
    remaining_quantity: int
    """Lots that were still resting when canceled."""
    ts: int

    @property
    def status(self) -> OrderStatus:
        return OrderStatus.CANCELED


class OrderExpired(NamedTuple):
    market: str
    order_id: int
    user_id: str
    filled_quantity: int
    remaining_quantity: int
    """Lots dropped unfilled (for a market buy by quote: what was asked and not bought, or 0)."""
    reason: ResultCode
    """Why: IOC/market remainder (NO_LIQUIDITY), FOK_NOT_FILLED, or SELF_TRADE_PREVENTED."""
    ts: int

    @property
    def status(self) -> OrderStatus:
        return OrderStatus.EXPIRED


class BalanceChanged(NamedTuple):
    user_id: str
    asset: str
    available: int
    locked: int
    ts: int
    change_id: int = 0
    """Ledger-wide, increasing by one per BalanceChanged: orders two changes within one millisecond, and
    is the same when replay makes the event again (the history store's key)."""


class DepthUpdated(NamedTuple):
    """Levels changed by updates `first_update_id`..`last_update_id`, as their totals after them."""

    market: str
    first_update_id: int
    last_update_id: int
    bids: tuple[tuple[int, int], ...]
    """(price ticks, total lots); total 0 removes the level."""
    asks: tuple[tuple[int, int], ...]
    ts: int


TERMINAL_EVENTS = (OrderFilled, OrderCanceled, OrderExpired, OrderRejected)
