"""Events: what happened, in the past tense, as `Record`s.

The order book returns the events each operation caused, in the order they happened, so no caller
ever has to compare states to learn what changed. The ledger settles funds from those same events.
Quantities are lots, prices ticks, amounts minor units; `ts` is the causing command's entry time (ms).

Per placed order the book emits, in order: `OrderAccepted` (or only `OrderRejected`); then for each
fill a `TradeExecuted` followed by the maker's `OrderFilled` or `OrderPartiallyFilled`; any maker
removed by self-trade prevention as `OrderExpired`; and last, the taker's own outcome if it changed:
`OrderFilled`, `OrderPartiallyFilled` (rests after some fills), or `OrderExpired` (remainder dropped).
A cancel emits `OrderCanceled`, or `CancelRejected` when there is no such order of that user (which
leaves every order as it was). Equality compares the event type too, so an `OrderFilled` never
equals an `OrderCanceled` that happens to hold the same values.
"""

from __future__ import annotations

from typing import TypeAlias

from openbell.core.grid import MarketSpec
from openbell.core.types import OrderStatus, OrderType, Record, ResultCode, Side, TimeInForce


class OrderAccepted(Record, frozen=True):
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


class OrderRejected(Record, frozen=True):
    """An order refused before it reached the book (or by it: post-only would take, an id in use)."""

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


class CancelRejected(Record, frozen=True):
    """A cancel refused: the user has no open order with this id in this market. No order changed."""

    market: str
    order_id: int
    user_id: str
    code: ResultCode
    reason: str
    ts: int


class TradeExecuted(Record, frozen=True):
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


class OrderPartiallyFilled(Record, frozen=True):
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


class OrderFilled(Record, frozen=True):
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


class OrderCanceled(Record, frozen=True):
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


class OrderExpired(Record, frozen=True):
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


class BalanceChanged(Record, frozen=True):
    user_id: str
    asset: str
    available: int
    locked: int
    ts: int
    change_id: int = 0
    """Ledger-wide, increasing by one per BalanceChanged: orders two changes within one millisecond, and
    is the same when replay makes the event again (the history store's key)."""


class Deposited(Record, frozen=True):
    """A deposit credited (once per txn id), for the history's statements."""

    user_id: str
    asset: str
    amount: int
    """Minor units credited to `available`."""
    txn_id: str
    ts: int


class MarketAdded(Record, frozen=True):
    """A market added: its grid and fees, so the history can turn trades into amounts and fees."""

    spec: MarketSpec
    ts: int


class DepthUpdated(Record, frozen=True):
    """Levels changed by updates `first_update_id`..`last_update_id`, as their totals after them."""

    market: str
    first_update_id: int
    last_update_id: int
    bids: tuple[tuple[int, int], ...]
    """(price ticks, total lots); total 0 removes the level."""
    asks: tuple[tuple[int, int], ...]
    ts: int


class Ticker(Record, frozen=True):
    """24 h statistics of one market, published after a batch with trades and returned by ticker queries."""

    market: str
    first_price: int | None
    """Price of the first trade in the window (ticks); None if the window had no trade."""
    last_price: int | None
    """Price of the newest trade ever seen (ticks); None before the first trade."""
    high: int | None
    low: int | None
    volume: int
    """Lots traded in the window."""
    quote_volume: int
    """Quote traded in the window, in minor units."""
    trades: int
    window_start: int
    """Unix seconds."""
    window_end: int


class KlineSnapshot(Record, frozen=True):
    """One candle, as published and returned; prices in ticks, volume in lots, quote in minor units."""

    market: str
    interval: str
    """Its wire name: "1m", "1h", ..."""
    start: int
    """Unix seconds."""
    end: int
    open: int
    high: int
    low: int
    close: int
    volume: int
    quote_volume: int
    trades: int
    closed: bool
    """Whether the candle's time is over (no trade can change it any more)."""


OrderEvent: TypeAlias = (
    OrderAccepted | OrderRejected | OrderPartiallyFilled | OrderFilled | OrderCanceled | OrderExpired
)
Event = (
    OrderEvent
    | CancelRejected
    | TradeExecuted
    | BalanceChanged
    | Deposited
    | MarketAdded
    | DepthUpdated
    | KlineSnapshot
    | Ticker
)
"""Everything the engine publishes."""

ORDER_EVENTS = (OrderAccepted, OrderRejected, OrderPartiallyFilled, OrderFilled, OrderCanceled, OrderExpired)
TERMINAL_EVENTS = (OrderFilled, OrderCanceled, OrderExpired, OrderRejected)
"""An order's last event: after one of these it holds nothing and is on no book."""
