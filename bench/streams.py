"""Deterministic order streams for benchmarks: one market, about a hundred users, from a seed.

A stream is a sequence of plain descriptions, `NewOrder` and `Cancel`, that `to_command` turns into
`PlaceOrder` and `CancelOrder`. Its shape imitates a busy market: most orders rest a few ticks from a
mid price that drifts by a tick at a time, about a third cross the spread (aggressive GTC limits, IOC
limits and market orders), and about a tenth cancel an order that is still live.

To know which orders are live and where the spread is, the generator replays its own orders through a
small shadow book with the engine's rules: price-time priority, makers at the maker's price, and
self-trade prevention that expires the resting order (the `PlaceOrder` default). The module depends
on `openbell.core` only for the market spec, the enums and the command records, never on actor code.

Invariants:
- the same `count`, `seed` and `StreamMix` give the same items, item for item, on any machine
  (only integer draws from `random.Random` are used; no float touches a price or a quantity);
- `seq` runs 1..count without gaps and a placed order's id is its `seq`; `ts` increases by 1 ms per item;
- a `Cancel` names an order of the same user that is live when the stream reaches it, provided every
  order before it was accepted (users funded well enough never to be refused);
- a resting order never crosses the shadow book; a crossing order crosses it whenever the opposite side
  has any order.
"""

from __future__ import annotations

import random
from collections import deque
from collections.abc import Iterator
from dataclasses import dataclass

from sortedcontainers import SortedDict

from openbell.core.commands import CancelOrder, PlaceOrder
from openbell.core.grid import Asset, MarketSpec, make_market_spec
from openbell.core.types import OrderType, Side, TimeInForce

SYMBOL = "TATA_INR"
START_TS = 1_700_000_000_000
"""Entry time of the item before the first, ms since the epoch."""

BUY = Side.BUY
SELL = Side.SELL
LIMIT = OrderType.LIMIT
MARKET = OrderType.MARKET
GTC = TimeInForce.GTC
IOC = TimeInForce.IOC

REST_LOTS = (1, 1, 1, 2, 2, 3, 4, 5, 5, 8, 10, 10, 15, 20, 25, 40, 50, 100)
"""Sizes of resting orders, in lots, drawn uniformly (a long right tail, as in real books)."""
CROSS_LOTS = (1, 2, 3, 5, 8, 10, 10, 15, 20, 25, 30, 40, 50, 60, 100, 150)
"""Sizes of crossing orders, in lots: larger than resting ones, so that takers eat most of what rests.

The book still grows slowly, mostly by orders left far from a mid that has moved on (seed 1: about
4,500 live orders after 200,000 items).
"""
REST_OFFSETS = (0, 0, 0, 1, 1, 1, 2, 2, 3, 4, 5, 6, 8, 10, 13, 17, 25, 40)
"""Ticks between the mid and a resting order's price, counted beyond the first tick."""
SWEEP_TICKS = (0, 0, 0, 0, 1, 1, 2, 3)
"""Ticks beyond the best opposite price that an aggressive limit is willing to pay."""


def market_spec() -> MarketSpec:
    """TATA_INR: tick 0.01 INR, lot 1 TATA, both assets with 2 decimals."""
    return make_market_spec("TATA_INR", "0.01", "1", {"INR": Asset("INR", 2), "TATA": Asset("TATA", 2)})


def user_ids(users: int) -> list[str]:
    """The stream's user ids, "u001", "u002", ... in draw order."""
    return [f"u{number:03d}" for number in range(1, users + 1)]


@dataclass(frozen=True, slots=True)
class StreamMix:
    """The shape of a stream. Percentages are of all items."""

    crossing_percent: int = 33
    """Orders meant to take liquidity: aggressive GTC limits, IOC limits and market orders."""
    cancel_percent: int = 10
    """Cancels of a live order (a resting order is drawn instead while none is live)."""
    market_percent_of_crossing: int = 25
    """Of crossing orders, how many are market orders; the rest are limits."""
    ioc_percent_of_crossing_limits: int = 40
    """Of crossing limit orders, how many are IOC; the rest are GTC and may rest what they do not fill."""
    users: int = 100
    start_mid: int = 10_000
    """Mid price at the start, in ticks (100.00 INR)."""
    drift_percent: int = 20
    """Chance per item that the mid moves by one tick, up or down alike."""


@dataclass(frozen=True, slots=True)
class NewOrder:
    """An order to place. Its id is `seq`."""

    seq: int
    ts: int
    """Entry time, ms since the epoch."""
    user_id: str
    side: Side
    order_type: OrderType
    time_in_force: TimeInForce
    price: int | None
    """Limit price in ticks; None for a market order."""
    quantity: int
    """Quantity in lots."""
    crossing: bool
    """Whether the order was drawn to take liquidity (a crossing limit may still rest its remainder)."""


@dataclass(frozen=True, slots=True)
class Cancel:
    """A cancel of a live order placed earlier in the stream by the same user."""

    seq: int
    ts: int
    user_id: str
    order_id: int
    """The `seq` of the order to cancel."""


StreamItem = NewOrder | Cancel


def to_command(item: StreamItem, market: str = SYMBOL) -> PlaceOrder | CancelOrder:
    """The engine command that carries out `item` on `market`."""
    if isinstance(item, Cancel):
        return CancelOrder(item.seq, item.ts, item.user_id, market, item.order_id)
    return PlaceOrder(
        item.seq,
        item.ts,
        item.user_id,
        market,
        item.side,
        item.order_type,
        item.time_in_force,
        item.price,
        item.quantity,
    )


def generate(count: int, seed: int = 1, mix: StreamMix | None = None) -> Iterator[StreamItem]:
    """Yield `count` items of a stream drawn from `seed`."""
    mix = mix or StreamMix()
    rng = random.Random(seed)
    users = user_ids(mix.users)
    book = _ShadowBook()
    mid = mix.start_mid
    for seq in range(1, count + 1):
        ts = START_TS + seq
        if rng.randrange(100) < mix.drift_percent:
            mid = max(2, mid + (1 if rng.randrange(2) else -1))
        draw = rng.randrange(100)
        if draw < mix.cancel_percent and book.live:
            target = book.live[rng.randrange(len(book.live))]
            book.cancel(target)
            yield Cancel(seq, ts, target.user_id, target.order_id)
            continue
        user_id = users[rng.randrange(len(users))]
        side = BUY if rng.randrange(2) else SELL
        if draw < mix.cancel_percent + mix.crossing_percent:
            item = _crossing_order(rng, mix, book, seq, ts, user_id, side, mid)
        else:
            item = _resting_order(rng, book, seq, ts, user_id, side, mid)
        book.place(item)
        yield item


def _resting_order(
    rng: random.Random, book: _ShadowBook, seq: int, ts: int, user_id: str, side: Side, mid: int
) -> NewOrder:
    offset = 1 + REST_OFFSETS[rng.randrange(len(REST_OFFSETS))]
    if side is BUY:
        price = mid - offset
        best_ask = book.best_ask()
        if best_ask is not None and price >= best_ask:
            price = best_ask - 1
    else:
        price = mid + offset
        best_bid = book.best_bid()
        if best_bid is not None and price <= best_bid:
            price = best_bid + 1
    quantity = REST_LOTS[rng.randrange(len(REST_LOTS))]
    return NewOrder(seq, ts, user_id, side, LIMIT, GTC, max(1, price), quantity, crossing=False)


def _crossing_order(
    rng: random.Random, mix: StreamMix, book: _ShadowBook, seq: int, ts: int, user_id: str, side: Side, mid: int
) -> NewOrder:
    quantity = CROSS_LOTS[rng.randrange(len(CROSS_LOTS))]
    if rng.randrange(100) < mix.market_percent_of_crossing:
        return NewOrder(seq, ts, user_id, side, MARKET, IOC, None, quantity, crossing=True)
    tif = IOC if rng.randrange(100) < mix.ioc_percent_of_crossing_limits else GTC
    sweep = SWEEP_TICKS[rng.randrange(len(SWEEP_TICKS))]
    if side is BUY:
        best_ask = book.best_ask()
        price = (best_ask if best_ask is not None else mid + 1) + sweep
    else:
        best_bid = book.best_bid()
        price = (best_bid if best_bid is not None else mid - 1) - sweep
    return NewOrder(seq, ts, user_id, side, LIMIT, tif, max(1, price), quantity, crossing=True)


class _Resting:
    """A live order in the shadow book."""

    __slots__ = ("order_id", "position", "price", "remaining", "side", "user_id")

    def __init__(self, order_id: int, user_id: str, side: Side, price: int, remaining: int, position: int) -> None:
        self.order_id = order_id
        self.user_id = user_id
        self.side = side
        self.price = price
        self.remaining = remaining
        self.position = position
        """Index in `_ShadowBook.live`."""


class _ShadowBook:
    """Just enough of a price-time book to know the spread and which orders are live.

    Levels hold only live orders (a cancel removes its order at once), so the first key of a side is
    its best price. Bids are keyed by the negated price.
    """

    def __init__(self) -> None:
        self.bids: SortedDict = SortedDict()  # -price -> deque[_Resting]
        self.asks: SortedDict = SortedDict()  # price -> deque[_Resting]
        self.live: list[_Resting] = []
        """Every live order once, in no particular order (for drawing cancel targets)."""

    def best_bid(self) -> int | None:
        return -self.bids.peekitem(0)[0] if self.bids else None

    def best_ask(self) -> int | None:
        return self.asks.peekitem(0)[0] if self.asks else None

    def place(self, order: NewOrder) -> None:
        remaining = self._match(order)
        if remaining and order.order_type is LIMIT and order.time_in_force is GTC:
            assert order.price is not None
            resting = _Resting(order.seq, order.user_id, order.side, order.price, remaining, len(self.live))
            self.live.append(resting)
            book, key = (self.bids, -order.price) if order.side is BUY else (self.asks, order.price)
            level = book.get(key)
            if level is None:
                level = book[key] = deque()
            level.append(resting)

    def cancel(self, order: _Resting) -> None:
        book, key = (self.bids, -order.price) if order.side is BUY else (self.asks, order.price)
        level = book[key]
        level.remove(order)
        if not level:
            del book[key]
        self._forget(order)

    def _match(self, order: NewOrder) -> int:
        """Fill `order` against the opposite side; return the lots left."""
        buying = order.side is BUY
        book = self.asks if buying else self.bids
        limit = order.price
        remaining = order.quantity
        while remaining and book:
            key, level = book.peekitem(0)
            price = key if buying else -key
            if limit is not None and (price > limit if buying else price < limit):
                break
            while remaining and level:
                maker = level[0]
                if maker.user_id != order.user_id:
                    take = min(remaining, maker.remaining)
                    remaining -= take
                    maker.remaining -= take
                    if maker.remaining:
                        continue
                level.popleft()  # filled, or expired by self-trade prevention
                self._forget(maker)
            if not level:
                del book[key]
        return remaining

    def _forget(self, order: _Resting) -> None:
        """Swap-remove `order` from `live` in O(1)."""
        last = self.live.pop()
        if last is not order:
            self.live[order.position] = last
            last.position = order.position
