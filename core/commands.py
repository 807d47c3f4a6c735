"""Commands: what a client asks the engine to do, as immutable records.

Every command carries `seq`, a number unique per engine assigned where the command enters it, and
`ts`, the entry time in milliseconds since the epoch. Both are inputs, not read from a clock inside an
actor, so that processing the same commands in the same order always gives the same state. A placed
order's id is its `seq`. Amounts are integers on the market's grid (see `openbell.core.grid`).

`PlaceOrder` and `CancelOrder`, made once per order on the hot path, are `NamedTuple`s: as immutable
and serialisable as the frozen dataclasses used for the rarer commands, at a third of the cost to
build. `restamp` gives any command a new seq and entry time, whichever kind it is.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from typing import Any, NamedTuple

from openbell.core.grid import MarketSpec
from openbell.core.types import OrderType, SelfTradePrevention, Side, TimeInForce


class PlaceOrder(NamedTuple):
    seq: int
    """Entry sequence number; also the new order's id."""
    ts: int
    """Entry time, ms since the epoch."""
    user_id: str
    market: str
    side: Side
    order_type: OrderType
    time_in_force: TimeInForce
    price: int | None
    """Limit price in ticks; None for a market order."""
    quantity: int | None
    """Quantity in lots; None only for a market buy sized by `quote_quantity`."""
    quote_quantity: int | None = None
    """Market buys only: the most quote (minor units) to spend."""
    post_only: bool = False
    """Limit only: reject the order rather than let it take liquidity."""
    client_order_id: str | None = None
    stp: SelfTradePrevention = SelfTradePrevention.EXPIRE_MAKER

    @property
    def order_id(self) -> int:
        return self.seq


class CancelOrder(NamedTuple):
    seq: int
    ts: int
    user_id: str
    market: str
    order_id: int


@dataclass(frozen=True, slots=True)
class Deposit:
    seq: int
    ts: int
    user_id: str
    asset: str
    amount: int
    """Minor units of `asset`, positive."""
    txn_id: str
    """Idempotency key: a second deposit with the same id credits nothing."""


@dataclass(frozen=True, slots=True)
class AddMarket:
    seq: int
    ts: int
    spec: MarketSpec


@dataclass(frozen=True, slots=True)
class GetBalances:
    seq: int
    ts: int
    user_id: str


@dataclass(frozen=True, slots=True)
class GetOpenOrders:
    seq: int
    ts: int
    user_id: str
    market: str | None = None
    """None: every market."""


@dataclass(frozen=True, slots=True)
class GetDepth:
    seq: int
    ts: int
    market: str
    limit: int


@dataclass(frozen=True, slots=True)
class GetTrades:
    seq: int
    ts: int
    market: str
    limit: int


@dataclass(frozen=True, slots=True)
class GetTicker:
    seq: int
    ts: int
    market: str


@dataclass(frozen=True, slots=True)
class GetKlines:
    seq: int
    ts: int
    market: str
    interval_seconds: int
    start: int
    """Unix seconds, inclusive."""
    end: int
    """Unix seconds, exclusive."""


STATE_CHANGING = (PlaceOrder, CancelOrder, Deposit, AddMarket)
"""Commands that change state: journaled, deduplicated on redelivery."""
MARKET_QUERIES = (GetDepth, GetTrades, GetTicker, GetKlines)
"""Queries a market's actor answers."""
QUERIES = (GetBalances, GetOpenOrders, *MARKET_QUERIES)


def _typed_eq(self: tuple, other: object) -> bool:  # type: ignore[type-arg]
    return type(self) is type(other) and tuple.__eq__(self, other)  # type: ignore[arg-type]


def _typed_ne(self: tuple, other: object) -> bool:  # type: ignore[type-arg]
    return not _typed_eq(self, other)


for _command_class in (PlaceOrder, CancelOrder):
    _command_class.__eq__ = _typed_eq  # type: ignore[assignment,method-assign]
    _command_class.__ne__ = _typed_ne  # type: ignore[assignment,method-assign]
    _command_class.__hash__ = tuple.__hash__  # type: ignore[assignment,method-assign]


def restamp(command: Any, seq: int, ts: int) -> Any:
    """The same command with a new `seq` and entry time `ts`."""
    if isinstance(command, tuple):
        return command._replace(seq=seq, ts=ts)  # type: ignore[attr-defined]
    return dataclasses.replace(command, seq=seq, ts=ts)
