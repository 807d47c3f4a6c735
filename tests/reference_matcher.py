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

Stop and take-profit orders, written from the rules `openbell.core.stops` documents:

- one whose stop price the last trade price has already reached when it is placed is rejected; any other
  waits, off the book;
- after every order (a rejected one too; never after a cancel), while some waiting order's stop price has been reached by the last trade price
  (rising kinds: last >= stop; falling kinds: last <= stop), all those reached are taken at once, rising
  ones by stop price ascending then falling ones by stop price descending, ties by order id, and each
  matches in turn as a new market or limit taker; then the check repeats (a cascade), at most
  `max_triggers` per command in all;
- the last trade price is the price of the latest trade, whichever order made it.

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
    """What placing one order did (or triggering one stop: then `order_id` is the stop's)."""

    order_id: int = 0
    trades: list[ReferenceTrade] = field(default_factory=list)
    rejected: bool = False
    """Post-only and would have crossed, or a stop already reached: nothing happened."""
    expired_makers: list[int] = field(default_factory=list)
    """Makers removed by self-trade prevention, in order."""
    taker_stopped: bool = False
    """Self-trade prevention expired the taker itself."""
    rests: bool = False
    """The remainder went onto the book."""
    waits: bool = False
    """A stop or take-profit order now waits off the book."""
    triggered: list[ReferenceOutcome] = field(default_factory=list)
    """The stops this command triggered, in order, each with what it did."""

    def all_trades(self) -> list[ReferenceTrade]:
        return self.trades + [trade for stop in self.triggered for trade in stop.trades]

    def self_trade_expiries(self) -> list[int]:
        """Every order self-trade prevention expired (makers, and stopped takers after their makers), in order."""
        out: list[int] = []
        for outcome in (self, *self.triggered):
            out += outcome.expired_makers + ([outcome.order_id] if outcome.taker_stopped else [])
        return out


RISING = {
    (OrderType.STOP_LOSS, Side.BUY),
    (OrderType.STOP_LOSS_LIMIT, Side.BUY),
    (OrderType.TAKE_PROFIT, Side.SELL),
    (OrderType.TAKE_PROFIT_LIMIT, Side.SELL),
}
TRIGGERED_AS = {
    OrderType.STOP_LOSS: OrderType.MARKET,
    OrderType.TAKE_PROFIT: OrderType.MARKET,
    OrderType.STOP_LOSS_LIMIT: OrderType.LIMIT,
    OrderType.TAKE_PROFIT_LIMIT: OrderType.LIMIT,
}


def reached(stop: PlaceOrder, last_price: int | None) -> bool:
    assert stop.stop_price is not None
    if last_price is None:
        return False
    if (stop.order_type, stop.side) in RISING:
        return last_price >= stop.stop_price
    return last_price <= stop.stop_price


class ReferenceMatcher:
    def __init__(self, quote_units_per_tick_lot: int, max_triggers: int = 100) -> None:
        self.quote_units_per_tick_lot = quote_units_per_tick_lot
        self.max_triggers = max_triggers
        self.bids: list[ReferenceOrder] = []
        self.asks: list[ReferenceOrder] = []
        self.stops: list[PlaceOrder] = []
        """Waiting stop and take-profit orders, in the order they were placed."""
        self.last_price: int | None = None

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
        """Remove `user_id`'s resting or waiting order `order_id`. False if there is none (or it is someone
        else's). A cancel triggers nothing."""
        for orders in (self.bids, self.asks):
            for i, order in enumerate(orders):
                if order.order_id == order_id and order.user_id == user_id:
                    del orders[i]
                    return True
        for i, stop in enumerate(self.stops):
            if stop.seq == order_id and stop.user_id == user_id:
                del self.stops[i]
                return True
        return False

    def place(self, cmd: PlaceOrder) -> ReferenceOutcome:
        if cmd.order_type in TRIGGERED_AS:
            if reached(cmd, self.last_price):
                outcome = ReferenceOutcome(cmd.seq, rejected=True)
            else:
                self.stops.append(cmd)
                outcome = ReferenceOutcome(cmd.seq, waits=True)
        else:
            outcome = self._match(cmd)
        outcome.triggered = self._trigger()
        return outcome

    def _trigger(self) -> list[ReferenceOutcome]:
        fired: list[ReferenceOutcome] = []
        budget = self.max_triggers
        while budget:
            due = [stop for stop in self.stops if reached(stop, self.last_price)]
            if not due:
                break
            rising = sorted(
                (s for s in due if (s.order_type, s.side) in RISING), key=lambda s: (s.stop_price, s.seq)
            )
            falling = sorted(
                (s for s in due if (s.order_type, s.side) not in RISING),
                key=lambda s: (-(s.stop_price or 0), s.seq),
            )
            for stop in (rising + falling)[:budget]:
                budget -= 1
                self.stops.remove(stop)
                taker = PlaceOrder(
                    stop.seq,
                    stop.ts,
                    stop.user_id,
                    stop.market,
                    stop.side,
                    TRIGGERED_AS[stop.order_type],
                    stop.time_in_force,
                    stop.price,
                    stop.quantity,
                    stop.quote_quantity,
                    False,
                    None,
                    stop.stp,
                )
                fired.append(self._match(taker))
        return fired

    def _match(self, cmd: PlaceOrder) -> ReferenceOutcome:
        if cmd.post_only:
            maker = self.best_maker(cmd.side)
            if maker is not None and _crosses(cmd.side, cmd.price, maker.price):
                return ReferenceOutcome(cmd.seq, rejected=True)
        if cmd.time_in_force is TimeInForce.FOK:
            trial = copy.deepcopy(self)
            _, left, _ = trial._take(cmd, ReferenceOutcome())
            if left != 0:
                return ReferenceOutcome(cmd.seq)
        outcome = ReferenceOutcome(cmd.seq)
        _, left, stopped = self._take(cmd, outcome)
        outcome.taker_stopped = stopped
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
            self.last_price = maker.price
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
