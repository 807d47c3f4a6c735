"""Engine results -> the JSON shapes of the API. Integers become decimal strings here and nowhere else.

Conventions: amounts, prices and quantities are decimal strings; order and trade ids are strings; times
are milliseconds since the epoch (a candle also keeps `start`/`end` in seconds, its older names).
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from openbell.core.events import KlineSnapshot, Ticker, TradeExecuted
from openbell.core.grid import Asset, MarketSpec
from openbell.core.messages import Depth
from openbell.core.summary import OpenOrderView, OrderSummary


def order_result(spec: MarketSpec, summary: OrderSummary, client_order_id: str | None = None) -> dict[str, Any]:
    out: dict[str, Any] = {
        "orderId": str(summary.order_id),
        "market": spec.symbol,
        "status": summary.status.value,
        "executedQty": spec.format_quantity(summary.executed_quantity),
        "remainingQty": spec.format_quantity(summary.remaining_quantity),
        "fills": [
            {"price": spec.format_price(price), "quantity": spec.format_quantity(lots), "tradeId": str(trade_id)}
            for price, lots, trade_id in summary.fills
        ],
    }
    if client_order_id is not None:
        out["clientOrderId"] = client_order_id
    return out


def cancel_result(spec: MarketSpec, summary: OrderSummary) -> dict[str, Any]:
    return {
        "orderId": str(summary.order_id),
        "market": spec.symbol,
        "status": summary.status.value,
        "executedQty": spec.format_quantity(summary.executed_quantity),
        "remainingQty": spec.format_quantity(summary.remaining_quantity),
    }


def open_order(spec: MarketSpec, order: OpenOrderView) -> dict[str, Any]:
    """An open order; a stop or take-profit order also says its `stopPrice` and whether it has `triggered`
    (it is `NEW` until then, waiting off the book)."""
    out: dict[str, Any] = {
        "orderId": str(order.order_id),
        "market": order.market,
        "price": spec.format_price(order.price) if order.price is not None else None,
        "quantity": spec.format_quantity(order.quantity) if order.quantity is not None else None,
        "filled": spec.format_quantity(order.filled),
        "side": order.side.value,
        "type": order.order_type.value,
        "status": order.status.value,
        "timestamp": order.ts,
        "clientOrderId": order.client_order_id,
        "stopPrice": spec.format_price(order.stop_price) if order.stop_price is not None else None,
    }
    if order.stop_price is not None:
        out["triggered"] = order.triggered
    return out


def depth(spec: MarketSpec, levels: Depth) -> dict[str, Any]:
    fp, fq = spec.format_price, spec.format_quantity
    return {
        "bids": [[fp(price), fq(lots)] for price, lots in levels.bids],
        "asks": [[fp(price), fq(lots)] for price, lots in levels.asks],
        "lastUpdateId": levels.update_id,
    }


def trade(spec: MarketSpec, t: TradeExecuted) -> dict[str, Any]:
    return {
        "id": str(t.trade_id),
        "price": spec.format_price(t.price),
        "quantity": spec.format_quantity(t.quantity),
        "quoteQuantity": spec.quote.format_amount(spec.quote_value(t.price, t.quantity)),
        "timestamp": t.ts,
        "isBuyerMaker": t.is_buyer_maker,
    }


def kline(spec: MarketSpec, c: KlineSnapshot) -> dict[str, Any]:
    fp = spec.format_price
    return {
        "openTime": c.start * 1000,
        "closeTime": c.end * 1000,
        "start": c.start,
        "end": c.end,
        "open": fp(c.open),
        "high": fp(c.high),
        "low": fp(c.low),
        "close": fp(c.close),
        "volume": spec.format_quantity(c.volume),
        "quoteVolume": spec.quote.format_amount(c.quote_volume),
        "trades": c.trades,
        "closed": c.closed,
    }


def ticker(spec: MarketSpec, t: Ticker) -> dict[str, Any]:
    fp = spec.format_price
    zero = fp(0)
    first = t.first_price
    last = t.last_price
    change = (last - first) if (first is not None and last is not None) else 0
    if first:
        percent = _percent(change, first)
    else:
        percent = "0.00"
    return {
        "symbol": spec.symbol,
        "firstPrice": fp(first) if first is not None else zero,
        "lastPrice": fp(last) if last is not None else zero,
        "high": fp(t.high) if t.high is not None else zero,
        "low": fp(t.low) if t.low is not None else zero,
        "priceChange": ("-" + fp(-change)) if change < 0 else fp(change),
        "priceChangePercent": percent,
        "volume": spec.format_quantity(t.volume),
        "quoteVolume": spec.quote.format_amount(t.quote_volume),
        "trades": t.trades,
    }


def _percent(change: int, base: int) -> str:
    """change / base * 100 with two decimals, rounded half away from zero, exactly (integers only)."""
    scaled = abs(change) * 10_000
    hundredths, remainder = divmod(scaled, base)
    if remainder * 2 >= base:
        hundredths += 1
    text = f"{hundredths // 100}.{hundredths % 100:02d}"
    return "-" + text if change < 0 and hundredths else text


def balances(assets: Mapping[str, Asset], values: dict[str, tuple[int, int]]) -> dict[str, Any]:
    out = {}
    for symbol, (available, locked) in sorted(values.items()):
        asset = assets.get(symbol) or Asset(symbol, 0)
        out[symbol] = {"available": asset.format_amount(available), "locked": asset.format_amount(locked)}
    return out


def market(spec: MarketSpec, shard: int | None = None) -> dict[str, Any]:
    """A market as `/markets` shows it; `shard`: the market shard that matches it, shown where there are shards."""
    out = {
        "symbol": spec.symbol,
        "base": spec.base.symbol,
        "quote": spec.quote.symbol,
        "tickSize": format(spec.tick_size, "f"),
        "lotSize": format(spec.lot_size, "f"),
        "baseDecimals": spec.base.decimals,
        "quoteDecimals": spec.quote.decimals,
        "makerFeeBps": spec.maker_fee_bps,
        "takerFeeBps": spec.taker_fee_bps,
        "status": spec.status.value,
    }
    if shard is not None:
        out["shard"] = shard
    return out
