"""One market's order book: price-time priority matching on integer ticks and lots.

Invariants (`check_invariants` verifies them; tests call it after every scenario):
- the book is never crossed: best bid < best ask whenever both sides have orders;
- a level's `total` is the sum of its live orders' remaining lots and its `live` count is their number;
  an empty level is removed at once;
- every live order is in the id index exactly once, on the level of its side and price, and every
  order in the index is live with a positive remainder.

Orders at one price keep arrival order in a deque. A cancel marks the order dead and fixes the level's
totals at once (O(1) after the index lookup, O(log n) if the level empties); matching skips dead orders
at the head, and a level compacts its deque when dead entries pile up. Bids are keyed by the negated
price so that the best level of either side is the first key.

Stop and take-profit orders (`openbell.core.stops`) wait off the book, in the book's `stops`, until the
last trade price (`last_price`) reaches their stop price; a stop already reached when placed is rejected
(STOP_WOULD_TRIGGER). After every order that traded, the book triggers the stops the new last price
reached: each gets `OrderTriggered` and matches at once as a new taker (a market or limit order, with its
time in force), at that point of the command sequence, its events among the triggering command's. Trades
of a triggered stop may trigger more; one command triggers at most `MAX_TRIGGERS_PER_COMMAND` (the rest
stay due and trigger after the market's next order). A waiting stop can be canceled like a resting
order; it changes no level and no update id. A cancel never triggers anything (so a halted market, which
takes only cancels, triggers nothing).

`place` takes orders that `openbell.core.orders.validate_order` accepted (the balance stage validates
every order once, before it holds funds for it); it is the hot path, written for CPython's costs: it
takes a GTC limit that does not cross straight to the book (the commonest order: it only rests). None
of this changes what any order does or which events it gives; `tests/test_core_properties.py` checks
that against a reference matcher.
"""

from __future__ import annotations

import logging
from collections import deque
from collections.abc import Iterator
from typing import Any

import msgspec
from sortedcontainers import SortedDict

from openbell.core.commands import PlaceOrder
from openbell.core.events import (
    CancelRejected,
    Event,
    OrderAccepted,
    OrderCanceled,
    OrderExpired,
    OrderFilled,
    OrderPartiallyFilled,
    OrderRejected,
    OrderTriggered,
    TradeExecuted,
)
from openbell.core.grid import MAX_QUANTITY_LOTS, MarketSpec
from openbell.core.stops import MAX_TRIGGERS_PER_COMMAND, StopOrders, would_trigger
from openbell.core.types import OrderType, ResultCode, SelfTradePrevention, Side, TimeInForce, require

log = logging.getLogger(__name__)

BUY = Side.BUY
SELL = Side.SELL
EXPIRE_MAKER = SelfTradePrevention.EXPIRE_MAKER
EXPIRE_TAKER = SelfTradePrevention.EXPIRE_TAKER
EXPIRE_BOTH = SelfTradePrevention.EXPIRE_BOTH

LIMIT = OrderType.LIMIT
GTC = TimeInForce.GTC
FOK = TimeInForce.FOK
NO_LIQUIDITY = ResultCode.NO_LIQUIDITY
FOK_NOT_FILLED = ResultCode.FOK_NOT_FILLED
SELF_TRADE_PREVENTED = ResultCode.SELF_TRADE_PREVENTED


class RestingOrder:
    """An order on the book. Mutable, and owned by the book alone."""

    __slots__ = (
        "client_order_id",
        "filled",
        "live",
        "order_id",
        "price",
        "quantity",
        "remaining",
        "side",
        "ts",
        "user_id",
    )

    def __init__(
        self,
        order_id: int,
        user_id: str,
        side: Side,
        price: int,
        quantity: int,
        filled: int,
        ts: int,
        client_order_id: str | None,
    ) -> None:
        self.order_id = order_id
        self.user_id = user_id
        self.side = side
        self.price = price
        self.quantity = quantity
        self.remaining = quantity - filled
        self.filled = filled
        self.ts = ts
        self.client_order_id = client_order_id
        self.live = True


class PriceLevel:
    __slots__ = ("dead", "live", "orders", "price", "total")

    def __init__(self, price: int) -> None:
        self.price = price
        self.orders: deque[RestingOrder] = deque()
        self.total = 0
        """Sum of live orders' remaining lots."""
        self.live = 0
        """Number of live orders."""
        self.dead = 0
        """Canceled orders still in the deque, skipped by matching."""


class OrderBook:
    """The book of one market. `place` and `cancel` return the events they caused."""

    def __init__(self, spec: MarketSpec) -> None:
        self.spec = spec
        self.symbol = spec.symbol
        self._quote_per_tick_lot = spec.quote_units_per_tick_lot
        self._bids: SortedDict = SortedDict()  # -price -> PriceLevel
        self._asks: SortedDict = SortedDict()  # price -> PriceLevel
        self._orders: dict[int, RestingOrder] = {}
        self._best_bid_level: PriceLevel | None = None
        """The first level of `_bids`, kept at hand: finding it in the SortedDict costs a Python call."""
        self._best_ask_level: PriceLevel | None = None
        self.update_id = 0
        """Increases by one for every operation that changed a level."""
        self.next_trade_id = 1
        self._changed_bids: set[int] = set()
        self._changed_asks: set[int] = set()
        self._first_unpublished_update = 1
        self.last_price: int | None = None
        """The price of the last trade (ticks), None before the first: what triggers stops."""
        self.stops = StopOrders()
        """Stop and take-profit orders waiting for `last_price` to reach their stop price."""
        self._stops_due = False
        """Some waiting stop was reached but not triggered yet (the last command used up its trigger budget)."""

    # ----------------------------------------------------------------- queries
    @property
    def best_bid(self) -> int | None:
        level = self._best_bid_level
        return level.price if level is not None else None

    @property
    def best_ask(self) -> int | None:
        level = self._best_ask_level
        return level.price if level is not None else None

    def _refresh_best(self, side: Side) -> None:
        if side is BUY:
            self._best_bid_level = self._bids.peekitem(0)[1] if self._bids else None
        else:
            self._best_ask_level = self._asks.peekitem(0)[1] if self._asks else None

    def order(self, order_id: int) -> RestingOrder | None:
        return self._orders.get(order_id)

    def __len__(self) -> int:
        return len(self._orders)

    def orders(self) -> Iterator[RestingOrder]:
        """Live orders, in no particular order."""
        return iter(self._orders.values())

    def depth(self, limit: int) -> tuple[list[tuple[int, int]], list[tuple[int, int]]]:
        """Top `limit` levels per side as (price, total lots), best first."""
        bids = [(level.price, level.total) for level in self._bids.values()[:limit]]
        asks = [(level.price, level.total) for level in self._asks.values()[:limit]]
        return bids, asks

    def level_total(self, side: Side, price: int) -> int:
        level = self._bids.get(-price) if side is BUY else self._asks.get(price)
        return level.total if level is not None else 0

    def drain_depth_changes(self) -> tuple[int, int, list[tuple[int, int]], list[tuple[int, int]]] | None:
        """Levels changed since the last drain, with their totals now, and the update ids they span.

        None when nothing changed. Bids best (highest) first, asks best (lowest) first.
        """
        if self._first_unpublished_update > self.update_id:
            return None
        bids = [(price, self.level_total(BUY, price)) for price in sorted(self._changed_bids, reverse=True)]
        asks = [(price, self.level_total(SELL, price)) for price in sorted(self._changed_asks)]
        first = self._first_unpublished_update
        self._first_unpublished_update = self.update_id + 1
        self._changed_bids.clear()
        self._changed_asks.clear()
        return first, self.update_id, bids, asks

    # ----------------------------------------------------------------- commands
    def place(self, cmd: PlaceOrder, out: list[Event] | None = None) -> list[Event]:
        """Match `cmd` (a validated order) against the book, rest what a GTC limit leaves, and return the events.

        With `out`, events are appended to it as they happen, so a caller still has the events of
        the fills already made if something raises half-way.
        """
        events: list[Event] = out if out is not None else []
        seq = cmd.seq
        price = cmd.price
        # Fast path for the commonest order: a GTC limit that does not cross. It only rests, with the
        # events and state `_place` would give it; anything else goes there.
        if (
            cmd.order_type is LIMIT
            and cmd.time_in_force is GTC
            and price is not None
            and cmd.quantity is not None
            and seq not in self._orders
            and not self._stops_due
        ):
            side = cmd.side
            if side is BUY:
                best = self._best_ask_level
                rests = best is None or price < best.price
            else:
                best = self._best_bid_level
                rests = best is None or price > best.price
            if rests:
                user_id, quantity, ts, client_order_id = cmd.user_id, cmd.quantity, cmd.ts, cmd.client_order_id
                events.append(
                    OrderAccepted(
                        self.symbol, seq, user_id, side, LIMIT, GTC, price, quantity, None, client_order_id, ts
                    )
                )
                self._rest(seq, user_id, side, price, quantity, 0, ts, client_order_id)
                self.update_id += 1
                return events
        if cmd.order_type.is_stop:
            self._wait(cmd, events)
        else:
            self._place(cmd, events)
        stops = self.stops
        if len(stops) and (self._stops_due or stops.due(self.last_price)):
            self._trigger_stops(cmd.ts, events)
        return events

    def _wait(self, cmd: PlaceOrder, events: list[Event]) -> None:
        """Accept a stop or take-profit order to wait off the book, unless the last price has reached it."""
        seq, user_id, client_order_id = cmd.seq, cmd.user_id, cmd.client_order_id
        if seq in self._orders or self.stops.get(seq) is not None:
            events.append(
                OrderRejected(
                    self.symbol, seq, user_id, ResultCode.INVALID_ORDER, "order id already used", cmd.ts, client_order_id
                )
            )
            return
        if would_trigger(cmd, self.last_price):
            events.append(
                OrderRejected(
                    self.symbol,
                    seq,
                    user_id,
                    ResultCode.STOP_WOULD_TRIGGER,
                    "the last price has already reached the stop price: the order would trigger at once",
                    cmd.ts,
                    client_order_id,
                )
            )
            return
        events.append(
            OrderAccepted(
                self.symbol,
                seq,
                user_id,
                cmd.side,
                cmd.order_type,
                cmd.time_in_force,
                cmd.price,
                cmd.quantity,
                cmd.quote_quantity,
                client_order_id,
                cmd.ts,
                cmd.stop_price,
            )
        )
        self.stops.add(cmd)

    def _trigger_stops(self, ts: int, events: list[Event]) -> None:
        """Trigger the waiting stops the last price has reached, cascades included, at most
        `MAX_TRIGGERS_PER_COMMAND`; each matches as a new taker at once (see the module docstring)."""
        stops = self.stops
        budget = MAX_TRIGGERS_PER_COMMAND
        last = self.last_price
        while budget and last is not None and stops.due(last):
            for stop in stops.take_triggered(last, budget):
                budget -= 1
                assert stop.stop_price is not None
                events.append(OrderTriggered(self.symbol, stop.seq, stop.user_id, stop.stop_price, last, ts))
                taker = msgspec.structs.replace(stop, order_type=stop.order_type.when_triggered, ts=ts, stop_price=None)
                started = len(events)
                try:
                    self._place(taker, events, announce=False)
                except Exception:
                    log.exception("market %s failed to match triggered order %s", self.symbol, stop.seq)
                    self._expire_after_failure(taker, events, started)
            last = self.last_price
        self._stops_due = stops.due(last)

    def _expire_after_failure(self, taker: PlaceOrder, events: list[Event], started: int) -> None:
        """A triggered stop whose matching raised: off the book, and expired, so its hold is released."""
        resting = self._orders.get(taker.seq)
        if resting is not None:
            self._remove(resting)
            self.update_id += 1
        filled = sum(
            e.quantity for e in events[started:] if type(e) is TradeExecuted and e.taker_order_id == taker.seq
        )
        asked = taker.quantity or 0
        events.append(
            OrderExpired(
                self.symbol,
                taker.seq,
                taker.user_id,
                filled,
                max(asked - filled, 0),
                ResultCode.ENGINE_ERROR,
                taker.ts,
            )
        )

    def _place(self, cmd: PlaceOrder, events: list[Event], announce: bool = True) -> None:
        seq, ts, user_id, side, limit = cmd.seq, cmd.ts, cmd.user_id, cmd.side, cmd.price
        order_type, time_in_force, asked, budget = cmd.order_type, cmd.time_in_force, cmd.quantity, cmd.quote_quantity
        client_order_id = cmd.client_order_id
        symbol = self.symbol
        if seq in self._orders:
            events.append(
                OrderRejected(
                    symbol, seq, user_id, ResultCode.INVALID_ORDER, "order id already on the book", ts, client_order_id
                )
            )
            return
        if cmd.post_only and limit is not None:
            best = self.best_ask if side is BUY else self.best_bid
            if best is not None and (best <= limit if side is BUY else best >= limit):
                events.append(
                    OrderRejected(
                        symbol,
                        seq,
                        user_id,
                        ResultCode.POST_ONLY_WOULD_TAKE,
                        "post-only order would take liquidity",
                        ts,
                        client_order_id,
                    )
                )
                return
        accepted_at = len(events)
        if announce:
            events.append(
                OrderAccepted(
                    symbol, seq, user_id, side, order_type, time_in_force, limit, asked, budget, client_order_id, ts
                )
            )
        else:
            accepted_at -= 1  # a triggered stop: accepted when it was placed
        quantity = asked if asked is not None else MAX_QUANTITY_LOTS
        if time_in_force is FOK and not self._can_fill_completely(cmd, quantity, budget):
            events.append(OrderExpired(symbol, seq, user_id, 0, quantity, FOK_NOT_FILLED, ts))
            return
        filled, taker_stopped, budget_left = self._match(
            side, limit, seq, user_id, ts, cmd.stp, quantity, budget, events
        )
        remaining = quantity - filled
        changed = bool(filled) or len(events) > accepted_at + 1
        # Sized by quote: a market buy without a quantity, or a market sell with a budget (its quantity is
        # only what it may sell).
        by_quote = budget is not None and (asked is None or side is SELL)
        if remaining and by_quote and taker_stopped is None and filled:
            # An order by quote is done when its budget is spent or cannot trade one more lot at the best price.
            best_level = self._best_ask_level if side is BUY else self._best_bid_level
            if budget_left == 0 or (
                best_level is not None
                and budget_left is not None
                and budget_left < best_level.price * self._quote_per_tick_lot
            ):
                remaining = 0
        if remaining == 0:
            events.append(OrderFilled(symbol, seq, user_id, filled, ts))
        elif order_type is LIMIT and time_in_force is GTC and taker_stopped is None and limit is not None:
            self._rest(seq, user_id, side, limit, quantity, filled, ts, client_order_id)
            changed = True
            if filled:
                events.append(OrderPartiallyFilled(symbol, seq, user_id, filled, remaining, ts))
        else:
            if by_quote:  # nothing was asked in lots
                remaining = 0
            reason = taker_stopped or NO_LIQUIDITY
            events.append(OrderExpired(symbol, seq, user_id, filled, remaining, reason, ts))
        if changed:
            self.update_id += 1

    def cancel(self, order_id: int, user_id: str, ts: int) -> list[Event]:
        """Cancel a resting or waiting order of `user_id`. Another user's order is reported as unknown."""
        order = self._orders.get(order_id)
        events: list[Event]
        if order is not None and order.user_id == user_id:
            self._remove(order)
            self.update_id += 1
            events = [OrderCanceled(self.symbol, order_id, user_id, order.filled, order.remaining, ts)]
        else:
            stop = self.stops.get(order_id)
            if stop is not None and stop.user_id == user_id:
                self.stops.remove(order_id)
                events = [OrderCanceled(self.symbol, order_id, user_id, 0, stop.quantity or 0, ts)]
            else:
                events = [CancelRejected(self.symbol, order_id, user_id, ResultCode.UNKNOWN_ORDER, "unknown order", ts)]
        return events

    def drop(self, order_id: int) -> bool:
        """Take an order off the book or out of the waiting stops, with no event and no trigger (after a fault)."""
        order = self._orders.get(order_id)
        if order is not None:
            self._remove(order)
            self.update_id += 1
            return True
        return self.stops.remove(order_id) is not None

    # ----------------------------------------------------------------- internals
    def _opposite(self, side: Side) -> SortedDict:
        return self._asks if side is BUY else self._bids

    def _crosses(self, side: Side, limit: int | None, price: int) -> bool:
        if limit is None:
            return True
        return price <= limit if side is BUY else price >= limit

    def _can_fill_completely(self, cmd: PlaceOrder, quantity: int, budget: int | None) -> bool:
        """Whether matching `cmd` now would fill all of `quantity` (FOK pre-check, changes nothing)."""
        needed = quantity
        user_id = cmd.user_id
        per_lot = self._quote_per_tick_lot
        for level in self._opposite(cmd.side).values():
            if not self._crosses(cmd.side, cmd.price, level.price):
                return False
            for maker in level.orders:
                if not maker.live:
                    continue
                if maker.user_id == user_id:
                    if cmd.stp is EXPIRE_MAKER:
                        continue
                    return False
                take = min(needed, maker.remaining)
                if budget is not None:
                    affordable = budget // (level.price * per_lot)
                    take = min(take, affordable)
                    budget -= take * level.price * per_lot
                needed -= take
                if needed == 0:
                    return True
                if budget is not None and take < maker.remaining:
                    return False
        return False

    def _match(
        self,
        side: Side,
        limit: int | None,
        taker_id: int,
        taker_user: str,
        ts: int,
        stp: SelfTradePrevention,
        quantity: int,
        budget: int | None,
        events: list[Event],
    ) -> tuple[int, ResultCode | None, int | None]:
        """Fill the taker (`taker_id`, up to `quantity` lots or `budget` quote) against the opposite side.

        Returns (lots filled, why self-trade prevention stopped the taker or None, quote budget left).
        """
        buying = side is BUY
        changed = self._changed_asks if buying else self._changed_bids
        symbol = self.symbol
        per_lot = self._quote_per_tick_lot
        index = self._orders
        append = events.append
        remaining = quantity
        while remaining:
            level = self._best_ask_level if buying else self._best_bid_level
            if level is None:
                break
            price = level.price
            if limit is not None and (price > limit if buying else price < limit):
                break
            if budget is not None:
                affordable = budget // (price * per_lot)
                if affordable == 0:
                    break
            orders = level.orders
            changed.add(price)
            while remaining and orders:
                maker = orders[0]
                if not maker.live:
                    orders.popleft()
                    level.dead -= 1
                    continue
                if budget is not None and budget < price * per_lot:
                    break  # the budget is spent: no trade, so no self-trade to prevent either
                maker_id = maker.order_id
                maker_user = maker.user_id
                maker_remaining = maker.remaining
                if maker_user == taker_user:
                    if stp is not EXPIRE_TAKER:
                        orders.popleft()
                        maker.live = False
                        del index[maker_id]
                        level.live -= 1
                        level.total -= maker_remaining
                        append(
                            OrderExpired(
                                symbol, maker_id, maker_user, maker.filled, maker_remaining, SELF_TRADE_PREVENTED, ts
                            )
                        )
                    if stp is not EXPIRE_MAKER:
                        if not level.live:
                            self._drop_best_level(buying, price)
                        return quantity - remaining, SELF_TRADE_PREVENTED, budget
                    continue
                take = remaining if remaining < maker_remaining else maker_remaining
                if budget is not None:
                    affordable = budget // (price * per_lot)
                    if affordable < take:
                        take = affordable
                        if take == 0:
                            break
                    budget -= take * price * per_lot
                remaining -= take
                self.last_price = price
                maker.remaining = maker_remaining = maker_remaining - take
                maker.filled = maker_filled = maker.filled + take
                level.total -= take
                trade_id = self.next_trade_id
                self.next_trade_id = trade_id + 1
                append(
                    TradeExecuted(symbol, trade_id, price, take, side, maker_id, maker_user, taker_id, taker_user, ts)
                )
                if maker_remaining == 0:
                    orders.popleft()
                    maker.live = False
                    del index[maker_id]
                    level.live -= 1
                    append(OrderFilled(symbol, maker_id, maker_user, maker_filled, ts))
                else:
                    append(OrderPartiallyFilled(symbol, maker_id, maker_user, maker_filled, maker_remaining, ts))
            if not level.live:
                self._drop_best_level(buying, price)
            elif remaining:
                break  # stopped inside the level: budget ran out
        return quantity - remaining, None, budget

    def _drop_best_level(self, buying: bool, price: int) -> None:
        """Remove the emptied best level of the side a taker that is `buying` (or selling) matches against."""
        if buying:
            del self._asks[price]
            self._refresh_best(SELL)
        else:
            del self._bids[-price]
            self._refresh_best(BUY)

    def _rest(
        self,
        order_id: int,
        user_id: str,
        side: Side,
        price: int,
        quantity: int,
        filled: int,
        ts: int,
        client_order_id: str | None,
    ) -> None:
        order = RestingOrder(order_id, user_id, side, price, quantity, filled, ts, client_order_id)
        remaining = order.remaining
        if side is BUY:
            book, key, changed = self._bids, -price, self._changed_bids
        else:
            book, key, changed = self._asks, price, self._changed_asks
        level = book.get(key)
        if level is None:
            level = book[key] = PriceLevel(price)
            if side is BUY:
                best = self._best_bid_level
                if best is None or price > best.price:
                    self._best_bid_level = level
            else:
                best = self._best_ask_level
                if best is None or price < best.price:
                    self._best_ask_level = level
        level.orders.append(order)
        level.total += remaining
        level.live += 1
        self._orders[order_id] = order
        changed.add(price)

    def _remove(self, order: RestingOrder) -> None:
        if order.side is BUY:
            book, key, changed = self._bids, -order.price, self._changed_bids
        else:
            book, key, changed = self._asks, order.price, self._changed_asks
        level = book[key]
        order.live = False
        del self._orders[order.order_id]
        level.total -= order.remaining
        level.live -= 1
        changed.add(order.price)
        if level.live == 0:
            del book[key]
            if level is self._best_bid_level or level is self._best_ask_level:
                self._refresh_best(order.side)
            return
        level.dead += 1
        if level.dead > 32 and level.dead > level.live:
            level.orders = deque(o for o in level.orders if o.live)
            level.dead = 0

    # ----------------------------------------------------------------- state
    def to_state(self) -> dict[str, object]:
        """Everything needed to rebuild this book: plain JSON-able values, orders in priority order."""

        def side(book: SortedDict) -> list[list[object]]:
            return [
                [o.order_id, o.user_id, o.price, o.quantity, o.filled, o.ts, o.client_order_id]
                for level in book.values()
                for o in level.orders
                if o.live
            ]

        return {
            "update_id": self.update_id,
            "next_trade_id": self.next_trade_id,
            "bids": side(self._bids),
            "asks": side(self._asks),
            "last_price": self.last_price,
            "stops": self.stops.to_state(),
        }

    @classmethod
    def from_state(cls, spec: MarketSpec, state: dict[str, Any]) -> OrderBook:
        book = cls(spec)
        for side, rows in ((BUY, state["bids"]), (SELL, state["asks"])):
            for order_id, user_id, price, quantity, filled, ts, client_order_id in rows:
                book._rest(order_id, user_id, side, price, quantity, filled, ts, client_order_id)
        book._changed_bids.clear()  # restoring is not a change to publish
        book._changed_asks.clear()
        book.update_id = state["update_id"]
        book.next_trade_id = state["next_trade_id"]
        book.last_price = state.get("last_price")
        book.stops = StopOrders.from_state(state.get("stops", []))
        book._stops_due = book.stops.due(book.last_price)
        book._first_unpublished_update = book.update_id + 1
        return book

    # ----------------------------------------------------------------- checks
    def check_invariants(self) -> None:
        """Raise AssertionError if the book's internal state is inconsistent."""
        seen: set[int] = set()
        for book, side in ((self._bids, BUY), (self._asks, SELL)):
            for key, level in book.items():
                require(key == (-level.price if side is BUY else level.price), "level keyed at the wrong price")
                live = [o for o in level.orders if o.live]
                require(bool(live), f"empty level {level.price} left on the book")
                require(level.live == len(live), f"level {level.price} live count {level.live} != {len(live)}")
                require(level.dead == len(level.orders) - len(live), f"level {level.price} dead count is wrong")
                require(level.total == sum(o.remaining for o in live), f"level {level.price} total is wrong")
                o: RestingOrder
                for o in live:
                    require(o.remaining > 0, f"order {o.order_id} rests with nothing left")
                    require(o.filled + o.remaining == o.quantity, f"order {o.order_id} quantities disagree")
                    require(o.side is side and o.price == level.price, f"order {o.order_id} on the wrong level")
                    require(
                        o.order_id in self._orders and self._orders[o.order_id] is o,
                        (f"order {o.order_id} missing from the index"),
                    )
                    require(o.order_id not in seen, f"order {o.order_id} rests twice")
                    seen.add(o.order_id)
        require(seen == set(self._orders), "index holds orders that are not on any level")
        require(self._best_bid_level is (self._bids.peekitem(0)[1] if self._bids else None), "best bid cache is stale")
        require(self._best_ask_level is (self._asks.peekitem(0)[1] if self._asks else None), "best ask cache is stale")
        bid, ask = self.best_bid, self.best_ask
        require(bid is None or ask is None or bid < ask, f"book is crossed: bid {bid} >= ask {ask}")
        self.stops.check_invariants()
        for cmd in self.stops.orders():
            require(cmd.seq not in self._orders, f"order {cmd.seq} both waits and rests")
