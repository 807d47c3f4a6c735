"""A deliberately naive matcher that the order book is cross-checked against.

Resting orders sit in two plain lists in arrival order. Every matching step scans the whole opposite
list for the best maker (best price, then earliest arrival), so a step is O(n): slow, but short enough
to check by eye. It is written from the rules the book documents, not from the book's algorithm:

- a limit order trades with makers whose price is at or better than its limit; a market order with any;
- every trade is at the maker's price;
- GTC rests its remainder, IOC expires it, FOK fills its whole quantity at once or nothing at all;
- a market buy may carry a quote budget (`quote_quantity`): it never spends more than that, where
  `lots` at `price` cost price x lots x `quote_units_per_tick_lot`;
- a post-only order that would trade at once (the best opposite price crosses its limit) is rejected;
- self-trade prevention, when the best maker belongs to the taker's user: EXPIRE_MAKER removes the maker
  and goes on, EXPIRE_TAKER expires the taker's remainder (the maker stays), EXPIRE_BOTH does both.

Orders are assumed well formed (the property tests only generate valid shapes).
"""

from __future__ import annotations

import copy
from dataclasses import dataclass, field

from openbell.core.commands import PlaceOrder
from openbell.core.types import OrderType, SelfTradePrevention, Side, TimeInForce


@dataclass(frozen=True, slots=True)
class ReferenceTrade:
    price: int
    """The maker's price, in ticks."""
    quantity: int
    """Lots."""
    maker_order_id: int
    taker_order_id: int


@dataclass(slots=True)
class ReferenceOrder:
    """A resting order. Mutable, owned by the matcher."""

    order_id: int
    user_id: str
    side: Side
    price: int
    remaining: int


@dataclass(slots=True)
class ReferenceOutcome:
    """What placing one order did."""

    trades: list[ReferenceTrade] = field(default_factory=list)
    rejected: bool = False
    """Post-only and would have crossed: nothing happened."""
    expired_makers: list[int] = field(default_factory=list)
    """Makers removed by self-trade prevention, in order."""
    rests: bool = False
    """The remainder went onto the book."""


class ReferenceMatcher:
    def __init__(self, quote_units_per_tick_lot: int) -> None:
        self.quote_units_per_tick_lot = quote_units_per_tick_lot
        self.bids: list[ReferenceOrder] = []
        self.asks: list[ReferenceOrder] = []

    def resting(self) -> dict[int, tuple[str, Side, int, int]]:
        """Every resting order as order id -> (user, side, price, remaining lots)."""
        return {o.order_id: (o.user_id, o.side, o.price, o.remaining) for o in self.bids + self.asks}

    def best_maker(self, taker_side: Side) -> ReferenceOrder | None:
        """The opposite order a taker on `taker_side` would meet first: best price, then earliest."""
        best: ReferenceOrder | None = None
        if taker_side is Side.BUY:
            for order in self.asks:
                if best is None or order.price < best.price:
                    best = order
        else:
            for order in self.bids:
                if best is None or order.price > best.price:
                    best = order
        return best

    def cancel(self, order_id: int, user_id: str) -> bool:
        """Remove `user_id`'s resting order `order_id`. False if there is none (or it is someone else's)."""
        for orders in (self.bids, self.asks):
            for i, order in enumerate(orders):
                if order.order_id == order_id and order.user_id == user_id:
                    del orders[i]
                    return True
        return False

    def place(self, cmd: PlaceOrder) -> ReferenceOutcome:
        if cmd.post_only:
            maker = self.best_maker(cmd.side)
            if maker is not None and _crosses(cmd.side, cmd.price, maker.price):
                return ReferenceOutcome(rejected=True)
        if cmd.time_in_force is TimeInForce.FOK:
            trial = copy.deepcopy(self)
            _, left, _ = trial._take(cmd, ReferenceOutcome())
            if left != 0:
                return ReferenceOutcome()
        outcome = ReferenceOutcome()
        _, left, stopped = self._take(cmd, outcome)
        if cmd.order_type is OrderType.LIMIT and cmd.time_in_force is TimeInForce.GTC and left and not stopped:
            assert cmd.price is not None and left is not None
            resting = ReferenceOrder(cmd.seq, cmd.user_id, cmd.side, cmd.price, left)
            (self.bids if cmd.side is Side.BUY else self.asks).append(resting)
            outcome.rests = True
        return outcome

    def _take(self, cmd: PlaceOrder, outcome: ReferenceOutcome) -> tuple[int, int | None, bool]:
        """Trade `cmd` against the book, one maker at a time.

        Returns (lots filled, lots left or None when only a budget bounds it, whether self-trade
        prevention expired the taker).
        """
        left = cmd.quantity
        budget = cmd.quote_quantity
        filled = 0
        per_tick_lot = self.quote_units_per_tick_lot
        while left is None or left > 0:
            maker = self.best_maker(cmd.side)
            if maker is None or not _crosses(cmd.side, cmd.price, maker.price):
                break
            lot_cost = maker.price * per_tick_lot
            if budget is not None and budget < lot_cost:
                break
            if maker.user_id == cmd.user_id:
                if cmd.stp in (SelfTradePrevention.EXPIRE_MAKER, SelfTradePrevention.EXPIRE_BOTH):
                    self._remove(maker)
                    outcome.expired_makers.append(maker.order_id)
                if cmd.stp in (SelfTradePrevention.EXPIRE_TAKER, SelfTradePrevention.EXPIRE_BOTH):
                    return filled, left, True
                continue
            lots = maker.remaining
            if left is not None:
                lots = min(lots, left)
            if budget is not None:
                lots = min(lots, budget // lot_cost)
                budget -= lots * lot_cost
            outcome.trades.append(ReferenceTrade(maker.price, lots, maker.order_id, cmd.seq))
            maker.remaining -= lots
            if maker.remaining == 0:
                self._remove(maker)
            filled += lots
            if left is not None:
                left -= lots
        return filled, left, False

    def _remove(self, maker: ReferenceOrder) -> None:
        orders = self.bids if maker.side is Side.BUY else self.asks
        orders[:] = [o for o in orders if o is not maker]


def _crosses(taker_side: Side, limit: int | None, maker_price: int) -> bool:
    if limit is None:
        return True
    return maker_price <= limit if taker_side is Side.BUY else maker_price >= limit
