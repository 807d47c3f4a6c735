"""What the simulated traders decide. Pure: every decision is a function of the agent's seeded `random.Random`
and of what it knows (the mid, its own orders and fills as the API reported them); nothing here reads a clock
or sends a request (`runner` does).

Prices are integer ticks and quantities integer lots throughout. Random draws are used for choices and
counts only; a size is a whole number of lots and a price a whole number of ticks, never a float.
"""

from __future__ import annotations

import random
from collections.abc import Callable
from dataclasses import dataclass, field

BUY, SELL = "buy", "sell"

QuoteValue = Callable[[int, int], int]
"""Quote minor units for (ticks, lots): `Grid.quote_units`."""


def heavy_tail(rng: random.Random, unit: int, cap: int) -> int:
    """A size in lots with a tail like Pareto's (alpha about 1): doublings k with P(k) = 2^-(k+1), then a
    uniform draw up to 2^k units. Most orders are a unit or two; a few are tens of times larger."""
    doublings = 0
    while doublings < 12 and rng.getrandbits(1):
        doublings += 1
    return max(1, min(cap, rng.randint(1, 2**doublings) * unit))


@dataclass
class RandomWalk:
    """A market's mid in ticks: each step -1, 0 or +1 `step` (now and then a jump of five), kept between half
    and twice where it started."""

    rng: random.Random
    mid: int
    step: int
    low: int = 0
    high: int = 0

    def __post_init__(self) -> None:
        self.low, self.high = max(1, self.mid // 2), self.mid * 2

    def next(self) -> int:
        move = self.rng.choice((-1, 0, 0, 1)) * self.step
        if self.rng.random() < 0.01:
            move = self.rng.choice((-5, 5)) * self.step
        self.mid = min(self.high, max(self.low, self.mid + move))
        return self.mid


@dataclass
class Quote:
    """One of a maker's orders: its clientOrderId, the order id the exchange gave it, what it asked and how much
    of it the API has said was filled."""

    client_order_id: str
    side: str
    price: int
    quantity: int
    order_id: str | None = None
    filled: int = 0


@dataclass(frozen=True, slots=True)
class Intent:
    """An order an agent wants sent."""

    side: str
    quantity: int
    price: int | None
    """Limit price in ticks; None for a market order."""
    order_type: str = "limit"
    time_in_force: str = "GTC"
    post_only: bool = False


@dataclass
class Maker:
    """Quotes `levels` bids and asks around the mid, `half_spread` from it and `gap` apart, shifted against its
    inventory (long base: both sides lower, to sell more and buy less), post-only. It requotes when the mid has
    moved `requote` ticks from where it last quoted, or now and then anyway."""

    rng: random.Random
    levels: int
    half_spread: int
    gap: int
    requote: int
    unit: int
    """Lots in one size unit; a level is 1-10 units."""
    base_lots: int
    """Base it holds, in lots (its deposit, then what its fills changed)."""
    quote_units: int
    """Quote it holds, in minor units."""
    open: dict[str, Quote] = field(default_factory=dict)
    inventory: int = 0
    """Lots bought less lots sold."""
    quoted_mid: int | None = None

    def wants_to_requote(self, mid: int) -> bool:
        nudge = self.rng.random() < 0.05  # drawn every step, so the draws do not depend on the branch taken
        return self.quoted_mid is None or abs(mid - self.quoted_mid) >= self.requote or nudge

    def ladder(self, mid: int) -> list[tuple[str, int]]:
        """The (side, price) levels it wants now."""
        limit = self.levels * self.gap
        skew = max(-limit, min(limit, -(self.inventory // (10 * self.unit)) * self.gap))
        levels = []
        for level in range(self.levels):
            offset = self.half_spread + level * self.gap
            bid, ask = mid + skew - offset, mid + skew + offset
            if bid > 0:
                levels.append((BUY, bid))
            levels.append((SELL, ask))
        return levels

    def stale(self, wanted: list[tuple[str, int]]) -> list[Quote]:
        """Its open quotes that are not on the ladder it wants, in the order they were placed."""
        keep = set(wanted)
        return [quote for quote in self.open.values() if (quote.side, quote.price) not in keep]

    def missing(self, wanted: list[tuple[str, int]], quote_value: QuoteValue) -> list[Intent]:
        """Post-only orders for the levels of `wanted` it has no quote at, sized 1-10 units, as far as what it
        holds beyond its other quotes allows."""
        have = {(quote.side, quote.price) for quote in self.open.values()}
        base_free = self.base_lots - sum(q.quantity - q.filled for q in self.open.values() if q.side == SELL)
        quote_free = self.quote_units - sum(
            quote_value(q.price, q.quantity - q.filled) for q in self.open.values() if q.side == BUY
        )
        intents = []
        for side, price in wanted:
            size = self.rng.randint(1, 10) * self.unit
            if (side, price) in have:
                continue
            if side == SELL:
                if size > base_free:
                    continue
                base_free -= size
            else:
                cost = quote_value(price, size)
                if cost > quote_free:
                    continue
                quote_free -= cost
            intents.append(Intent(side, size, price, post_only=True))
        return intents

    def filled(self, quote: Quote, lots: int, quote_value: QuoteValue) -> None:
        """The API reports `quote` filled `lots` in all (it fills at its own price: it only ever makes)."""
        new = lots - quote.filled
        if new <= 0:
            return
        quote.filled = lots
        value = quote_value(quote.price, new)
        if quote.side == BUY:
            self.inventory += new
            self.base_lots += new
            self.quote_units -= value
        else:
            self.inventory -= new
            self.base_lots -= new
            self.quote_units += value


@dataclass
class Taker:
    """Sends market and IOC orders in bursts, sized from a heavy-tailed distribution, leaning to the side that
    brings its base back to where it started."""

    rng: random.Random
    unit: int
    reach: int
    """How far past the mid an IOC limit may reach, in ticks."""
    base_lots: int
    quote_units: int
    start_base: int = 0

    def __post_init__(self) -> None:
        self.start_base = self.base_lots

    def burst(self, mid: int, quote_value: QuoteValue) -> list[Intent]:
        count = 1
        while count < 8 and self.rng.random() < 0.5:
            count += 1
        lean = (self.start_base - self.base_lots) / max(1, self.start_base)
        buying = self.rng.random() < min(0.9, max(0.1, 0.5 + lean))
        intents = []
        for _ in range(count):
            size = heavy_tail(self.rng, self.unit, 64 * self.unit)
            market = self.rng.random() < 0.5
            reach = self.rng.randint(0, self.reach)
            price = None if market else (mid + reach if buying else max(1, mid - reach))
            if buying:
                budget_price = price if price is not None else mid + self.reach
                while size > 1 and quote_value(budget_price, size) > self.quote_units:
                    size //= 2
            else:
                size = min(size, self.base_lots)
            if size <= 0:
                continue
            if market:
                intents.append(Intent(BUY if buying else SELL, size, None, order_type="market"))
            else:
                intents.append(Intent(BUY if buying else SELL, size, price, time_in_force="IOC"))
        return intents

    def traded(self, side: str, price: int, lots: int, quote_value: QuoteValue) -> None:
        value = quote_value(price, lots)
        if side == BUY:
            self.base_lots += lots
            self.quote_units -= value
        else:
            self.base_lots -= lots
            self.quote_units += value
