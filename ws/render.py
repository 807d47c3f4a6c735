"""Engine events -> stream messages: `(stream name, data)` pairs, with integers made decimal strings.

Only messages for streams in `wanted` (the streams someone subscribed to) are built. Order events after
`OrderAccepted` do not repeat the order's side, type or clientOrderId, so the renderer keeps them per
open order (`OrderFacts`), from acceptance to the order's terminal event, whoever is subscribed; an
order accepted before the server started is rendered without them (null).

Wire shapes (all times are ms since the epoch; "E" is the event's engine time):
- depth:  {"e":"depth","E","s","U","u","b":[[price,qty]],"a"} changed levels only; qty "0" removes one
          (the same shape on `depth@M@100ms`, one merged diff per interval).
- trade:  {"e":"trade","E","s","t","p","q","m":isBuyerMaker,"T"}; no user ids.
- ticker: {"e":"ticker","E","s","c","o","h","l","v","q","V","n","O","C"}; "q" and "V" are both quote volume.
- kline:  {"e":"kline","E","s","k":{"t","T","i","o","h","l","c","v","q","n","x"}}.
- order:  {"e":"order","E","s","i","c","S","o","f","p","q","X","z","r","R","P"}; "P" is a stop or take-profit
          order's stop price (null for others). A stop's trigger is an order message with "X":"NEW" and
          "R":"TRIGGERED"; its fills and outcome follow as for any order.
- fill:   {"e":"fill","E","s","t","i","c","S","p","q","m":isMaker,"T"}, one per side the user traded on.
- balance: {"e":"balance","E","a","f":available,"l":locked}.
- status: {"e":"status","E","s","X":"TRADING"|"HALTED"|"CANCEL_ONLY"}, when an operator changes it.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Container, Mapping
from dataclasses import dataclass
from typing import Any

from openbell.core.events import (
    TERMINAL_EVENTS,
    BalanceChanged,
    DepthUpdated,
    KlineSnapshot,
    MarketStatusChanged,
    OrderAccepted,
    OrderCanceled,
    OrderExpired,
    OrderFilled,
    OrderPartiallyFilled,
    OrderRejected,
    OrderTriggered,
    Ticker,
    TradeExecuted,
)
from openbell.core.grid import Asset, MarketSpec
from openbell.core.types import OrderStatus, Side

Message = tuple[str, dict[str, Any]]


@dataclass(frozen=True, slots=True)
class OrderFacts:
    """What an order update does not repeat: taken from its OrderAccepted."""

    side: Side
    order_type: str
    time_in_force: str
    price: int | None
    quantity: int | None
    client_order_id: str | None
    stop_price: int | None = None


class Renderer:
    def __init__(self, markets: Callable[[], Mapping[str, MarketSpec]], assets: Callable[[], Mapping[str, Asset]]):
        self._markets = markets
        self._assets = assets
        self.open_orders: dict[int, OrderFacts] = {}
        self._last_ts = 0

    def render(self, event: object, wanted: Container[str]) -> list[Message]:
        """The messages `event` makes for the streams in `wanted` (and the order facts it updates)."""
        if isinstance(event, TradeExecuted):
            return self._trade(event, wanted)
        if isinstance(event, DepthUpdated):
            return self._depth(event, wanted)
        if isinstance(event, KlineSnapshot):
            return self._kline(event, wanted)
        if isinstance(event, Ticker):
            return self._ticker(event, wanted)
        if isinstance(event, BalanceChanged):
            return self._balance(event, wanted)
        if type(event) in ORDER_EVENTS:
            return self._order(event, wanted)
        if isinstance(event, MarketStatusChanged):
            stream = f"status@{event.market}"
            if stream not in wanted:
                return []
            return [(stream, {"e": "status", "E": event.ts, "s": event.market, "X": event.status.value})]
        return []

    # ----------------------------------------------------------------- market streams
    def _spec(self, market: str) -> MarketSpec | None:
        return self._markets().get(market)

    def _trade(self, t: TradeExecuted, wanted: Container[str]) -> list[Message]:
        self._last_ts = t.ts
        out: list[Message] = []
        public = f"trade@{t.market}"
        maker_stream = f"orders@{t.maker_user_id}"
        taker_stream = f"orders@{t.taker_user_id}"
        needed = public in wanted or maker_stream in wanted or taker_stream in wanted
        spec = self._spec(t.market) if needed else None
        if spec is None:
            return out
        price = spec.format_price(t.price)
        quantity = spec.format_quantity(t.quantity)
        if public in wanted:
            out.append(
                (
                    public,
                    {
                        "e": "trade",
                        "E": t.ts,
                        "s": t.market,
                        "t": t.trade_id,
                        "p": price,
                        "q": quantity,
                        "m": t.is_buyer_maker,
                        "T": t.ts,
                    },
                )
            )
        for stream, order_id, side, is_maker in (
            (maker_stream, t.maker_order_id, t.taker_side.opposite, True),
            (taker_stream, t.taker_order_id, t.taker_side, False),
        ):
            if stream in wanted:
                facts = self.open_orders.get(order_id)
                out.append(
                    (
                        stream,
                        {
                            "e": "fill",
                            "E": t.ts,
                            "s": t.market,
                            "t": t.trade_id,
                            "i": str(order_id),
                            "c": facts.client_order_id if facts is not None else None,
                            "S": side.value,
                            "p": price,
                            "q": quantity,
                            "m": is_maker,
                            "T": t.ts,
                        },
                    )
                )
        return out

    def _depth(self, d: DepthUpdated, wanted: Container[str]) -> list[Message]:
        stream = f"depth@{d.market}"
        data = self.depth_data(d) if stream in wanted else None
        return [(stream, data)] if data is not None else []

    def depth_data(self, d: Any) -> dict[str, Any] | None:
        """The data of a depth message for `d`: a `DepthUpdated` or a merged diff (`openbell.ws.throttle`),
        read by field name. None if its market is unknown."""
        spec = self._spec(d.market)
        if spec is None:
            return None
        fp, fq = spec.format_price, spec.format_quantity
        return {
            "e": "depth",
            "E": d.ts,
            "s": d.market,
            "U": d.first_update_id,
            "u": d.last_update_id,
            "b": [[fp(price), fq(qty)] for price, qty in d.bids],
            "a": [[fp(price), fq(qty)] for price, qty in d.asks],
        }

    def _event_time(self) -> int:
        return self._last_ts or time.time_ns() // 1_000_000

    def _kline(self, k: KlineSnapshot, wanted: Container[str]) -> list[Message]:
        stream = f"kline_{k.interval}@{k.market}"
        spec = self._spec(k.market) if stream in wanted else None
        if spec is None:
            return []
        fp = spec.format_price
        candle = {
            "t": k.start * 1000,
            "T": k.end * 1000,
            "i": k.interval,
            "o": fp(k.open),
            "h": fp(k.high),
            "l": fp(k.low),
            "c": fp(k.close),
            "v": spec.format_quantity(k.volume),
            "q": spec.quote.format_amount(k.quote_volume),
            "n": k.trades,
            "x": k.closed,
        }
        return [(stream, {"e": "kline", "E": self._event_time(), "s": k.market, "k": candle})]

    def _ticker(self, t: Ticker, wanted: Container[str]) -> list[Message]:
        stream = f"ticker@{t.market}"
        spec = self._spec(t.market) if stream in wanted else None
        if spec is None:
            return []
        fp = spec.format_price
        quote_volume = spec.quote.format_amount(t.quote_volume)
        data = {
            "e": "ticker",
            "E": self._event_time(),
            "s": t.market,
            "c": fp(t.last_price) if t.last_price is not None else None,
            "o": fp(t.first_price) if t.first_price is not None else None,
            "h": fp(t.high) if t.high is not None else None,
            "l": fp(t.low) if t.low is not None else None,
            "v": spec.format_quantity(t.volume),
            "q": quote_volume,
            "V": quote_volume,
            "n": t.trades,
            "O": t.window_start * 1000,
            "C": t.window_end * 1000,
        }
        return [(stream, data)]

    # ----------------------------------------------------------------- user streams
    def _balance(self, b: BalanceChanged, wanted: Container[str]) -> list[Message]:
        stream = f"balance@{b.user_id}"
        if stream not in wanted:
            return []
        asset = self._assets().get(b.asset) or Asset(b.asset, 0)
        data = {
            "e": "balance",
            "E": b.ts,
            "a": b.asset,
            "f": asset.format_amount(b.available),
            "l": asset.format_amount(b.locked),
        }
        return [(stream, data)]

    def _order(self, event: Any, wanted: Container[str]) -> list[Message]:
        kind = type(event)
        facts: OrderFacts | None
        if kind is OrderAccepted:
            facts = OrderFacts(
                event.side,
                event.order_type.value,
                event.time_in_force.value,
                event.price,
                event.quantity,
                event.client_order_id,
                event.stop_price,
            )
            self.open_orders[event.order_id] = facts
        elif kind in TERMINAL_EVENTS:
            facts = self.open_orders.pop(event.order_id, None)
        else:
            facts = self.open_orders.get(event.order_id)
        stream = f"orders@{event.user_id}"
        spec = self._spec(event.market) if stream in wanted else None
        if spec is None:
            return []
        fq = spec.format_quantity
        if kind is OrderAccepted:
            status, filled, remaining = OrderStatus.NEW, 0, event.quantity
        elif kind is OrderTriggered:
            status, filled = OrderStatus.NEW, 0
            remaining = facts.quantity if facts is not None else None
        elif kind is OrderRejected:
            status, filled, remaining = OrderStatus.REJECTED, 0, 0
        else:
            status, filled, remaining = event.status, event.filled_quantity, event.remaining_quantity
        client_order_id = facts.client_order_id if facts is not None else getattr(event, "client_order_id", None)
        data = {
            "e": "order",
            "E": event.ts,
            "s": event.market,
            "i": str(event.order_id),
            "c": client_order_id,
            "S": facts.side.value if facts is not None else None,
            "o": facts.order_type if facts is not None else None,
            "f": facts.time_in_force if facts is not None else None,
            "p": spec.format_price(facts.price) if facts is not None and facts.price is not None else None,
            "q": fq(facts.quantity) if facts is not None and facts.quantity is not None else None,
            "X": status.value,
            "z": fq(filled),
            "r": fq(remaining) if remaining is not None else None,
            "R": _reason(event),
            "P": spec.format_price(facts.stop_price) if facts is not None and facts.stop_price is not None else None,
        }
        return [(stream, data)]


def _reason(event: Any) -> str | None:
    if type(event) is OrderRejected:
        return f"{event.code.name}: {event.reason}"
    if type(event) is OrderExpired:
        return str(event.reason.name)
    if type(event) is OrderTriggered:
        return "TRIGGERED"
    return None


ORDER_EVENTS = frozenset(
    {OrderAccepted, OrderRejected, OrderPartiallyFilled, OrderFilled, OrderCanceled, OrderExpired, OrderTriggered}
)
