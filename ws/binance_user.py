"""Binance's user data stream events from engine events: `executionReport` and `outboundAccountPosition`.

What a user data stream carries for one user, rendered for the users someone listens to (hub key
`USER_KEY + user_id`). Listening needs a listen key, which API keys bring: until then nothing subscribes to
these keys, and `UserEvents` only keeps its order state.

An order event does not repeat the order's side, type, price or clientOrderId, and a fill does not say the
order's running totals, so `UserEvents` keeps, per open order (from its `OrderAccepted` to its terminal
event, whoever listens), those facts and its executed quantity and quote. (The Binance hub renders nothing
while no client is connected to it, so an order accepted then is reported without them: nulls.) Reports follow Binance's:
`x` NEW on acceptance, one TRADE per fill (`l`, `L`, `t`, `n`, `N`, `m`) whose `X` is the order's status after
that fill, CANCELED, EXPIRED (IOC/FOK/market remainders, self-trade prevention), REJECTED. A taker's fills
come before the book says how the order ended, so they are held until its outcome event (the same batch)
and then reported, the last one with the final status. A stop or take-profit order carries its type
(`STOP_LOSS_LIMIT`...) and stop price (`P`); while it waits it is not working (`w` false, `W` -1), and when the
last price triggers it a NEW report says it works now (`w` true, `W` the time), before its fills.
"""

from __future__ import annotations

from collections.abc import Callable, Container, Mapping
from dataclasses import dataclass, field
from typing import Any

from openbell.core.events import (
    BalanceChanged,
    OrderAccepted,
    OrderCanceled,
    OrderExpired,
    OrderFilled,
    OrderPartiallyFilled,
    OrderRejected,
    OrderTriggered,
    TradeExecuted,
)
from openbell.core.grid import Asset, MarketSpec
from openbell.core.types import OrderStatus, Side
from openbell.edge.binance import binance_symbol, binance_type, commission

USER_KEY = "user:"
Message = tuple[str, dict[str, Any]]


@dataclass(slots=True)
class OpenOrder:
    """What later reports of one order need: its facts and running totals."""

    user_id: str
    side: Side
    order_type: str
    time_in_force: str
    price: int | None
    quantity: int | None
    quote_quantity: int | None
    client_order_id: str | None
    created: int
    stop_price: int | None = None
    """A stop or take-profit order's stop price (ticks)."""
    working: int | None = None
    """When the order started working (ms): its acceptance, or a stop's triggering; None while a stop waits."""
    filled: int = 0
    executed_quote: int = 0
    held: list[dict[str, Any]] = field(default_factory=list)
    """TRADE reports of a taker waiting for its outcome."""


class UserEvents:
    def __init__(
        self, markets: Callable[[], Mapping[str, MarketSpec]], assets: Callable[[], Mapping[str, Asset]]
    ) -> None:
        self._markets = markets
        self._assets = assets
        self.orders: dict[int, OpenOrder] = {}

    def render(self, event: object, wanted: Container[str]) -> list[Message]:
        kind = type(event)
        e: Any = event
        if kind is BalanceChanged:
            return self._balance(e, wanted)
        if kind is OrderAccepted:
            return self._accepted(e, wanted)
        if kind is OrderTriggered:
            return self._triggered(e, wanted)
        if kind is TradeExecuted:
            return self._trade(e, wanted)
        if kind in (OrderFilled, OrderPartiallyFilled, OrderCanceled, OrderExpired, OrderRejected):
            return self._outcome(e, wanted)
        return []

    # ------------------------------------------------------------------------------------------ reports
    def _report(self, spec: MarketSpec, order_id: int, order: OpenOrder | None, ts: int) -> dict[str, Any]:
        fp, fq = spec.format_price, spec.format_quantity
        zero_price, zero_quantity = fp(0), fq(0)
        return {
            "e": "executionReport",
            "E": ts,
            "s": binance_symbol(spec),
            "c": (order.client_order_id if order is not None else None) or "",
            "S": order.side.value.upper() if order is not None else None,
            "o": order.order_type if order is not None else None,
            "f": order.time_in_force if order is not None else None,
            "q": fq(order.quantity) if order is not None and order.quantity is not None else zero_quantity,
            "p": fp(order.price) if order is not None and order.price is not None else zero_price,
            "P": fp(order.stop_price) if order is not None and order.stop_price is not None else zero_price,
            "F": zero_quantity,
            "g": -1,
            "C": "",
            "x": "NEW",
            "X": "NEW",
            "r": "NONE",
            "i": order_id,
            "l": zero_quantity,
            "z": fq(order.filled) if order is not None else zero_quantity,
            "L": zero_price,
            "n": "0",
            "N": None,
            "T": ts,
            "t": -1,
            "w": True,
            "m": False,
            "O": order.created if order is not None else ts,
            "Z": spec.quote.format_amount(order.executed_quote if order is not None else 0),
            "Y": spec.quote.format_amount(0),
            "Q": spec.quote.format_amount(order.quote_quantity or 0) if order is not None else "0",
            "W": (order.working if order.working is not None else -1) if order is not None else ts,
            "V": "EXPIRE_MAKER",
        }

    def _accepted(self, e: OrderAccepted, wanted: Container[str]) -> list[Message]:
        order = self.orders[e.order_id] = OpenOrder(
            e.user_id,
            e.side,
            binance_type(e.order_type),
            e.time_in_force.value,
            e.price,
            e.quantity,
            e.quote_quantity,
            e.client_order_id,
            e.ts,
            e.stop_price,
            None if e.order_type.is_stop else e.ts,
        )
        key = USER_KEY + e.user_id
        spec = self._markets().get(e.market) if key in wanted else None
        if spec is None:
            return []
        report = self._report(spec, e.order_id, order, e.ts)
        if order.working is None:
            report["w"] = False
        return [(key, report)]

    def _triggered(self, e: OrderTriggered, wanted: Container[str]) -> list[Message]:
        """A waiting stop was triggered: it starts working (a NEW report with `w` true and `W` its time)."""
        order = self.orders.get(e.order_id)
        if order is not None:
            order.working = e.ts
        key = USER_KEY + e.user_id
        spec = self._markets().get(e.market) if key in wanted else None
        if spec is None:
            return []
        report = self._report(spec, e.order_id, order, e.ts)
        if order is None:
            report["P"] = spec.format_price(e.stop_price)
        return [(key, report)]

    def _trade(self, t: TradeExecuted, wanted: Container[str]) -> list[Message]:
        spec = self._markets().get(t.market)
        if spec is None:
            return []
        quote = spec.quote_value(t.price, t.quantity)
        out: list[Message] = []
        for order_id, user_id, is_maker in (
            (t.maker_order_id, t.maker_user_id, True),
            (t.taker_order_id, t.taker_user_id, False),
        ):
            order = self.orders.get(order_id)
            if order is not None:
                order.filled += t.quantity
                order.executed_quote += quote
            key = USER_KEY + user_id
            if key not in wanted:
                continue
            side = t.taker_side.opposite if is_maker else t.taker_side
            report = self._report(spec, order_id, order, t.ts)
            fee, fee_asset = commission(spec, side, is_maker, t.price, t.quantity)
            report.update(
                {
                    "x": "TRADE",
                    "X": "PARTIALLY_FILLED",
                    "l": spec.format_quantity(t.quantity),
                    "L": spec.format_price(t.price),
                    "n": fee,
                    "N": fee_asset,
                    "t": t.trade_id,
                    "m": is_maker,
                    "Y": spec.quote.format_amount(quote),
                }
            )
            if is_maker:
                # A maker's quantity is known: whether this fill completed it is known now.
                if order is not None and order.quantity is not None and order.filled >= order.quantity:
                    report["X"] = "FILLED"
                    report["w"] = False
                out.append((key, report))
            elif order is not None:
                order.held.append(report)
            else:
                out.append((key, report))
        return out

    def _outcome(self, e: Any, wanted: Container[str]) -> list[Message]:
        order = (
            self.orders.pop(e.order_id, None) if type(e) is not OrderPartiallyFilled else self.orders.get(e.order_id)
        )
        key = USER_KEY + e.user_id
        spec = self._markets().get(e.market) if key in wanted else None
        if spec is None:
            if order is not None:
                order.held.clear()
            return []
        out: list[Message] = []
        held = order.held if order is not None else []
        status: OrderStatus = e.status
        if held:
            if status is OrderStatus.FILLED:
                held[-1]["X"] = "FILLED"
                held[-1]["w"] = False
            out.extend((key, report) for report in held)
            if order is not None:
                order.held = []
        if type(e) in (OrderFilled, OrderPartiallyFilled):
            return out  # the TRADE reports said it
        report = self._report(spec, e.order_id, order, e.ts)
        report["x"] = report["X"] = status.value
        report["w"] = False
        if type(e) is OrderRejected:
            report["r"] = e.code.name
            if order is None and e.client_order_id:
                report["c"] = e.client_order_id
        out.append((key, report))
        return out

    # ------------------------------------------------------------------------------------------ balances
    def _balance(self, b: BalanceChanged, wanted: Container[str]) -> list[Message]:
        key = USER_KEY + b.user_id
        if key not in wanted:
            return []
        asset = self._assets().get(b.asset) or Asset(b.asset, 0)
        return [
            (
                key,
                {
                    "e": "outboundAccountPosition",
                    "E": b.ts,
                    "u": b.ts,
                    "B": [{"a": b.asset, "f": asset.format_amount(b.available), "l": asset.format_amount(b.locked)}],
                },
            )
        ]
