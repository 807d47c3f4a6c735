"""Stop and take-profit orders waiting off the book of one market, and which of them a price triggers.

A waiting order triggers when the market's last trade price reaches its stop price, in the direction its
type and side give (as on Binance):

| type | side | triggers when the last price is |
| --- | --- | --- |
| `stop_loss`, `stop_loss_limit` | buy | at or above the stop price (rising) |
| `stop_loss`, `stop_loss_limit` | sell | at or below it (falling) |
| `take_profit`, `take_profit_limit` | buy | at or below it (falling) |
| `take_profit`, `take_profit_limit` | sell | at or above it (rising) |

Order of triggering (`take_triggered`): rising orders by stop price, lowest first, then falling orders by
stop price, highest first; equal stop prices by order id (time of placement). That is the order in which a
moving price reaches them; both kinds can be due at once only at a market's first trade (a stop placed
before any trade cannot be checked against a last price).

Invariants (`check_invariants`): every waiting order is in exactly one of the two price indexes, under its
own stop price and id, and the indexes hold nothing else. Orders are the `PlaceOrder`s as accepted, so a
snapshot keeps them as they came.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import msgspec
from sortedcontainers import SortedList

from openbell.core.commands import PlaceOrder
from openbell.core.types import OrderType, Side, require

MAX_TRIGGERS_PER_COMMAND = 100
"""Most stops one command may trigger, cascades included; the rest stay due and trigger after the market's
next order (a cancel triggers nothing), in the same order."""

_RISING = frozenset(
    {
        (OrderType.STOP_LOSS, Side.BUY),
        (OrderType.STOP_LOSS_LIMIT, Side.BUY),
        (OrderType.TAKE_PROFIT, Side.SELL),
        (OrderType.TAKE_PROFIT_LIMIT, Side.SELL),
    }
)


def triggers_rising(cmd: PlaceOrder) -> bool:
    """Whether `cmd` triggers on a last price at or above its stop price (else at or below it)."""
    return (cmd.order_type, cmd.side) in _RISING


def would_trigger(cmd: PlaceOrder, last_price: int | None) -> bool:
    """Whether a last trade price of `last_price` has already reached `cmd`'s stop price."""
    stop = cmd.stop_price
    if last_price is None or stop is None:
        return False
    return last_price >= stop if triggers_rising(cmd) else last_price <= stop


class StopOrders:
    """The waiting stop and take-profit orders of one market, indexed by stop price."""

    def __init__(self) -> None:
        self._orders: dict[int, PlaceOrder] = {}
        self._rising: SortedList = SortedList()
        """(stop price, order id) of orders that trigger on a rising price: the first is due first."""
        self._falling: SortedList = SortedList()
        """(-stop price, order id) of orders that trigger on a falling price: the first is due first."""

    def __len__(self) -> int:
        return len(self._orders)

    def get(self, order_id: int) -> PlaceOrder | None:
        return self._orders.get(order_id)

    def orders(self) -> Iterator[PlaceOrder]:
        """Waiting orders, oldest first."""
        return iter(sorted(self._orders.values(), key=lambda cmd: cmd.seq))

    def add(self, cmd: PlaceOrder) -> None:
        assert cmd.stop_price is not None
        self._orders[cmd.seq] = cmd
        if triggers_rising(cmd):
            self._rising.add((cmd.stop_price, cmd.seq))
        else:
            self._falling.add((-cmd.stop_price, cmd.seq))

    def remove(self, order_id: int) -> PlaceOrder | None:
        cmd = self._orders.pop(order_id, None)
        if cmd is not None:
            assert cmd.stop_price is not None
            if triggers_rising(cmd):
                self._rising.remove((cmd.stop_price, order_id))
            else:
                self._falling.remove((-cmd.stop_price, order_id))
        return cmd

    def due(self, last_price: int | None) -> bool:
        """Whether any waiting order has been reached by `last_price`."""
        if last_price is None:
            return False
        rising, falling = self._rising, self._falling
        return bool(rising and rising[0][0] <= last_price) or bool(falling and -falling[0][0] >= last_price)

    def take_triggered(self, last_price: int, limit: int) -> list[PlaceOrder]:
        """Remove and return (in triggering order, at most `limit`) the orders `last_price` has reached."""
        taken: list[PlaceOrder] = []
        rising, falling = self._rising, self._falling
        while rising and len(taken) < limit and rising[0][0] <= last_price:
            _, order_id = rising.pop(0)
            taken.append(self._orders.pop(order_id))
        while falling and len(taken) < limit and -falling[0][0] >= last_price:
            _, order_id = falling.pop(0)
            taken.append(self._orders.pop(order_id))
        return taken

    # ----------------------------------------------------------------- state
    def to_state(self) -> list[Any]:
        return [msgspec.to_builtins(cmd) for cmd in self.orders()]

    @classmethod
    def from_state(cls, rows: list[Any]) -> StopOrders:
        stops = cls()
        for row in rows:
            stops.add(msgspec.convert(row, PlaceOrder))
        return stops

    def check_invariants(self) -> None:
        expected_rising = sorted((c.stop_price, c.seq) for c in self._orders.values() if triggers_rising(c))
        expected_falling = sorted(
            (-(c.stop_price or 0), c.seq) for c in self._orders.values() if not triggers_rising(c)
        )
        require(list(self._rising) == expected_rising, "rising stop index disagrees with the waiting orders")
        require(list(self._falling) == expected_falling, "falling stop index disagrees with the waiting orders")
        for order_id, cmd in self._orders.items():
            require(cmd.seq == order_id and cmd.order_type.is_stop, f"order {order_id} waits but is no stop")
