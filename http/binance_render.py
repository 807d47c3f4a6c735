"""Engine results -> the JSON shapes of Binance's Spot API (`/api/v3`). Integers become decimal strings here.

A market `TATA_INR` is the Binance symbol `TATAINR` (base and quote joined); `BinanceSymbols` keeps that map.
Commissions are computed as the ledger charges them (`openbell.edge.binance.commission`).
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from decimal import ROUND_HALF_EVEN, Decimal
from typing import Any

from openbell.core.events import KlineSnapshot, Ticker, TradeExecuted
from openbell.core.grid import MAX_PRICE_TICKS, MAX_QUANTITY_LOTS, Asset, MarketSpec
from openbell.core.messages import Depth
from openbell.core.summary import OpenOrderView, OrderRecord, OrderSummary
from openbell.core.types import MarketStatus, OrderStatus, OrderType, Side, TimeInForce
from openbell.edge.binance import binance_symbol, binance_type, commission, percent_change
from openbell.edge.ratelimit import RateLimits

ORDER_TYPES = ["LIMIT", "LIMIT_MAKER", "MARKET", "STOP_LOSS", "STOP_LOSS_LIMIT", "TAKE_PROFIT", "TAKE_PROFIT_LIMIT"]


def rate_limits(limits: RateLimits | None) -> list[dict[str, Any]]:
    """`exchangeInfo.rateLimits`: the token buckets the authenticator enforces (`openbell.edge.ratelimit`), one
    row per bucket that is on, in Binance's shape plus `per` ("API_KEY" or "ADDRESS") and `burst` (what the
    bucket holds). REQUEST_WEIGHT rows are the reads buckets (every request but placing and canceling orders
    weighs 1), ORDERS rows the order-entry buckets; `limit` is the bucket's rate per second. None: no limits."""
    if limits is None:
        return []
    rows: list[dict[str, Any]] = []
    for kind, per_key, per_address in (
        ("REQUEST_WEIGHT", limits.reads_per_key, limits.reads_per_address),
        ("ORDERS", limits.orders_per_key, limits.orders_per_address),
    ):
        for per, limit in (("API_KEY", per_key), ("ADDRESS", per_address)):
            if limit.rate:
                rows.append(
                    {
                        "rateLimitType": kind,
                        "interval": "SECOND",
                        "intervalNum": 1,
                        "limit": _whole(limit.rate),
                        "per": per,
                        "burst": _whole(limit.burst),
                    }
                )
    return rows


def _whole(value: float) -> int | float:
    return int(value) if value == int(value) else value


class BinanceSymbols:
    """Binance symbol -> market, rebuilt when the set of markets grows (markets are never removed)."""

    def __init__(self) -> None:
        self._count = -1
        self._by_symbol: dict[str, str] = {}

    def lookup(self, markets: Mapping[str, MarketSpec], symbol: str) -> MarketSpec | None:
        """The market `symbol` names: its Binance symbol (`TATAINR`) or its own (`TATA_INR`)."""
        if len(markets) != self._count:
            by_symbol: dict[str, str] = {}
            for spec in list(markets.values()):
                by_symbol.setdefault(binance_symbol(spec), spec.symbol)
            self._by_symbol, self._count = by_symbol, len(markets)
        market = self._by_symbol.get(symbol.upper(), symbol.upper())
        return markets.get(market)


# ----------------------------------------------------------------------------------------- market data
def exchange_symbol(spec: MarketSpec) -> dict[str, Any]:
    tick, lot = format(spec.tick_size, "f"), format(spec.lot_size, "f")
    max_price = spec.format_price(MAX_PRICE_TICKS)
    max_quantity = spec.format_quantity(MAX_QUANTITY_LOTS)
    min_notional = spec.quote.format_amount(spec.quote_value(1, 1))
    return {
        "symbol": binance_symbol(spec),
        "status": "TRADING" if spec.status is MarketStatus.TRADING else "BREAK",
        "baseAsset": spec.base.symbol,
        "baseAssetPrecision": spec.base.decimals,
        "quoteAsset": spec.quote.symbol,
        "quotePrecision": spec.quote.decimals,
        "quoteAssetPrecision": spec.quote.decimals,
        "baseCommissionPrecision": spec.base.decimals,
        "quoteCommissionPrecision": spec.quote.decimals,
        "orderTypes": ORDER_TYPES,
        "icebergAllowed": False,
        "ocoAllowed": False,
        "otoAllowed": False,
        "quoteOrderQtyMarketAllowed": True,
        "allowTrailingStop": False,
        "cancelReplaceAllowed": False,
        "isSpotTradingAllowed": True,
        "isMarginTradingAllowed": False,
        "filters": [
            {"filterType": "PRICE_FILTER", "minPrice": tick, "maxPrice": max_price, "tickSize": tick},
            {"filterType": "LOT_SIZE", "minQty": lot, "maxQty": max_quantity, "stepSize": lot},
            {"filterType": "MARKET_LOT_SIZE", "minQty": lot, "maxQty": max_quantity, "stepSize": lot},
            {
                "filterType": "NOTIONAL",
                "minNotional": min_notional,
                "applyMinToMarket": False,
                "maxNotional": spec.quote.format_amount(spec.quote_value(MAX_PRICE_TICKS, MAX_QUANTITY_LOTS)),
                "applyMaxToMarket": False,
                "avgPriceMins": 0,
            },
        ],
        "permissions": [],
        "permissionSets": [["SPOT"]],
        "defaultSelfTradePreventionMode": "EXPIRE_MAKER",
        "allowedSelfTradePreventionModes": ["EXPIRE_TAKER", "EXPIRE_MAKER", "EXPIRE_BOTH"],
        "openbellMarket": spec.symbol,
        "makerFeeBps": spec.maker_fee_bps,
        "takerFeeBps": spec.taker_fee_bps,
    }


def depth(levels: Depth, spec: MarketSpec) -> dict[str, Any]:
    fp, fq = spec.format_price, spec.format_quantity
    return {
        "lastUpdateId": levels.update_id,
        "bids": [[fp(price), fq(lots)] for price, lots in levels.bids],
        "asks": [[fp(price), fq(lots)] for price, lots in levels.asks],
    }


def trade(spec: MarketSpec, t: TradeExecuted) -> dict[str, Any]:
    return {
        "id": t.trade_id,
        "price": spec.format_price(t.price),
        "qty": spec.format_quantity(t.quantity),
        "quoteQty": spec.quote.format_amount(spec.quote_value(t.price, t.quantity)),
        "time": t.ts,
        "isBuyerMaker": t.is_buyer_maker,
        "isBestMatch": True,
    }


def agg_trade(spec: MarketSpec, t: TradeExecuted) -> dict[str, Any]:
    """One trade as an aggregate of one (every fill is its own aggregate here)."""
    return {
        "a": t.trade_id,
        "p": spec.format_price(t.price),
        "q": spec.format_quantity(t.quantity),
        "f": t.trade_id,
        "l": t.trade_id,
        "T": t.ts,
        "m": t.is_buyer_maker,
        "M": True,
    }


def kline(spec: MarketSpec, c: KlineSnapshot) -> list[Any]:
    """[open time, open, high, low, close, volume, close time, quote volume, trades] (Binance's first nine)."""
    fp = spec.format_price
    return [
        c.start * 1000,
        fp(c.open),
        fp(c.high),
        fp(c.low),
        fp(c.close),
        spec.format_quantity(c.volume),
        c.end * 1000 - 1,
        spec.quote.format_amount(c.quote_volume),
        c.trades,
    ]


def ticker_24hr(spec: MarketSpec, t: Ticker, book: Depth | None) -> dict[str, Any]:
    fp, fq = spec.format_price, spec.format_quantity
    zero_price, zero_quantity = fp(0), fq(0)
    first, last = t.first_price, t.last_price
    change = (last - first) if first is not None and last is not None else 0
    volume, quote_volume = fq(t.volume), spec.quote.format_amount(t.quote_volume)
    if t.volume:
        weighted = (Decimal(quote_volume) / Decimal(volume)).quantize(
            Decimal(1).scaleb(-spec.tick_parts[1]), rounding=ROUND_HALF_EVEN
        )
        weighted_text = format(weighted, "f")
    else:
        weighted_text = zero_price
    out = {
        "symbol": binance_symbol(spec),
        "priceChange": ("-" + fp(-change)) if change < 0 else fp(change),
        "priceChangePercent": percent_change(change, first) if first else "0.000",
        "weightedAvgPrice": weighted_text,
        "prevClosePrice": fp(first) if first is not None else zero_price,
        "lastPrice": fp(last) if last is not None else zero_price,
        "openPrice": fp(first) if first is not None else zero_price,
        "highPrice": fp(t.high) if t.high is not None else zero_price,
        "lowPrice": fp(t.low) if t.low is not None else zero_price,
        "volume": volume,
        "quoteVolume": quote_volume,
        "openTime": t.window_start * 1000,
        "closeTime": t.window_end * 1000 - 1,
        "count": t.trades,
    }
    if book is not None:
        out.update(book_ticker(spec, book))
    else:
        out.update({"bidPrice": zero_price, "bidQty": zero_quantity, "askPrice": zero_price, "askQty": zero_quantity})
    return out


def book_ticker(spec: MarketSpec, book: Depth) -> dict[str, Any]:
    fp, fq = spec.format_price, spec.format_quantity
    bid = book.bids[0] if book.bids else None
    ask = book.asks[0] if book.asks else None
    return {
        "symbol": binance_symbol(spec),
        "bidPrice": fp(bid[0]) if bid else fp(0),
        "bidQty": fq(bid[1]) if bid else fq(0),
        "askPrice": fp(ask[0]) if ask else fp(0),
        "askQty": fq(ask[1]) if ask else fq(0),
    }


def price_ticker(spec: MarketSpec, t: Ticker) -> dict[str, Any]:
    return {
        "symbol": binance_symbol(spec),
        "price": spec.format_price(t.last_price) if t.last_price is not None else spec.format_price(0),
    }


# ----------------------------------------------------------------------------------------- account
def account(
    assets: Mapping[str, Asset], values: Mapping[str, tuple[int, int]], user_id: str, now_ms: int
) -> dict[str, Any]:
    balances = []
    for symbol in sorted(set(assets) | set(values)):
        asset = assets.get(symbol) or Asset(symbol, 0)
        available, locked = values.get(symbol, (0, 0))
        balances.append(
            {"asset": symbol, "free": asset.format_amount(available), "locked": asset.format_amount(locked)}
        )
    return {
        "makerCommission": 0,
        "takerCommission": 0,
        "buyerCommission": 0,
        "sellerCommission": 0,
        "canTrade": True,
        "canWithdraw": False,
        "canDeposit": False,
        "brokered": False,
        "requireSelfTradePrevention": False,
        "preventSor": False,
        "updateTime": now_ms,
        "accountType": "SPOT",
        "balances": balances,
        "permissions": ["SPOT"],
        "uid": user_id,
    }


def new_order(
    spec: MarketSpec,
    summary: OrderSummary,
    *,
    response_type: str,
    client_order_id: str | None,
    side: Side,
    order_type: OrderType,
    post_only: bool,
    time_in_force: TimeInForce,
    price: int | None,
    quantity: int | None,
    quote_quantity: int | None,
    transact_time: int,
    stop_price: int | None = None,
) -> dict[str, Any]:
    """The answer to `POST /api/v3/order` in the shape `newOrderRespType` asks for (ACK, RESULT or FULL). A stop
    or take-profit order also says its `stopPrice`; one still waiting (status NEW, no fills) is not working yet
    (`workingTime` -1), as on Binance."""
    out: dict[str, Any] = {
        "symbol": binance_symbol(spec),
        "orderId": summary.order_id,
        "orderListId": -1,
        "clientOrderId": client_order_id or "",
        "transactTime": transact_time,
    }
    if response_type == "ACK":
        return out
    executed_quote = sum(spec.quote_value(p, lots) for p, lots, _ in summary.fills)
    original = quantity if quantity is not None else summary.executed_quantity
    out.update(
        {
            "price": spec.format_price(price or 0),
            "origQty": spec.format_quantity(original),
            "executedQty": spec.format_quantity(summary.executed_quantity),
            "origQuoteOrderQty": spec.quote.format_amount(quote_quantity or 0),
            "cummulativeQuoteQty": spec.quote.format_amount(executed_quote),
            "status": summary.status.value,
            "timeInForce": time_in_force.value,
            "type": binance_type(order_type, post_only),
            "side": side.value.upper(),
            "workingTime": transact_time if summary.status is not OrderStatus.REJECTED else -1,
            "selfTradePreventionMode": "EXPIRE_MAKER",
        }
    )
    if stop_price is not None:
        out["stopPrice"] = spec.format_price(stop_price)
        if summary.status is OrderStatus.NEW and not summary.fills:
            out["workingTime"] = -1
    if response_type == "FULL":
        fills = []
        for p, lots, trade_id in summary.fills:
            fee, fee_asset = commission(spec, side, False, p, lots)
            fills.append(
                {
                    "price": spec.format_price(p),
                    "qty": spec.format_quantity(lots),
                    "commission": fee,
                    "commissionAsset": fee_asset,
                    "tradeId": trade_id,
                }
            )
        out["fills"] = fills
    return out


def open_order(spec: MarketSpec, order: OpenOrderView, executed_quote: int | None) -> dict[str, Any]:
    """An open order (from the engine) as `GET openOrders`/`GET order` show it. A stop or take-profit order
    waiting for its stop price is NEW and not working (`isWorking` false, `workingTime` -1); once triggered it
    goes on as the order it became, keeping its type and `stopPrice`."""
    fp, fq = spec.format_price, spec.format_quantity
    waiting = order.stop_price is not None and not order.triggered
    return {
        "symbol": binance_symbol(spec),
        "orderId": order.order_id,
        "orderListId": -1,
        "clientOrderId": order.client_order_id or "",
        "price": fp(order.price or 0),
        "origQty": fq(order.quantity or 0),
        "executedQty": fq(order.filled),
        "cummulativeQuoteQty": spec.quote.format_amount(executed_quote or 0),
        "status": order.status.value,
        "timeInForce": "GTC",
        "type": binance_type(order.order_type),
        "side": order.side.value.upper(),
        "stopPrice": fp(order.stop_price or 0),
        "icebergQty": fq(0),
        "time": order.ts,
        "updateTime": order.ts,
        "isWorking": not waiting,
        "workingTime": -1 if waiting else order.ts,
        "origQuoteOrderQty": spec.quote.format_amount(0),
        "selfTradePreventionMode": "EXPIRE_MAKER",
    }


def order_record(spec: MarketSpec, order: OrderRecord, opened: OpenOrderView | None = None) -> dict[str, Any]:
    """An order from the history database as `GET order`/`GET allOrders` show it. A stop or take-profit order
    still open says whether it waits from the engine's view of it, `opened`; its `stopPrice` comes from there or
    from the history database (which keeps it since schema 4: a stop stored before leaves `stopPrice` out)."""
    fp, fq = spec.format_price, spec.format_quantity
    waiting = opened is not None and opened.stop_price is not None and not opened.triggered
    # A market order by quote asked for no quantity (a sell's recorded quantity is only what it could sell).
    by_quote = order.quote_quantity is not None and (order.quantity is None or order.side is Side.SELL)
    original = order.filled if by_quote or order.quantity is None else order.quantity
    out: dict[str, Any] = {
        "symbol": binance_symbol(spec),
        "orderId": order.order_id,
        "orderListId": -1,
        "clientOrderId": order.client_order_id or "",
        "price": fp(order.price or 0),
        "origQty": fq(original),
        "executedQty": fq(order.filled),
        "cummulativeQuoteQty": spec.quote.format_amount(order.executed_quote),
        "status": order.status.value,
        "timeInForce": order.time_in_force.value,
        "type": binance_type(order.order_type),
        "side": order.side.value.upper(),
        "stopPrice": fp(0),
        "icebergQty": fq(0),
        "time": order.ts,
        "updateTime": order.updated,
        "isWorking": order.status in (OrderStatus.NEW, OrderStatus.PARTIALLY_FILLED) and not waiting,
        "workingTime": -1 if waiting else order.ts,
        "origQuoteOrderQty": spec.quote.format_amount(order.quote_quantity or 0),
        "selfTradePreventionMode": "EXPIRE_MAKER",
    }
    if order.order_type.is_stop:
        stop_price = opened.stop_price if opened is not None and opened.stop_price is not None else order.stop_price
        if stop_price is not None:
            out["stopPrice"] = fp(stop_price)
        else:
            del out["stopPrice"]
    return out


def my_trades(spec: MarketSpec, user_id: str, trades: Iterable[TradeExecuted]) -> list[dict[str, Any]]:
    """A user's trades as `GET myTrades` shows them (one row per trade, from the user's side)."""
    out = []
    for t in trades:
        is_maker = t.maker_user_id == user_id
        side = t.taker_side.opposite if is_maker else t.taker_side
        fee, fee_asset = commission(spec, side, is_maker, t.price, t.quantity)
        out.append(
            {
                "symbol": binance_symbol(spec),
                "id": t.trade_id,
                "orderId": t.maker_order_id if is_maker else t.taker_order_id,
                "orderListId": -1,
                "price": spec.format_price(t.price),
                "qty": spec.format_quantity(t.quantity),
                "quoteQty": spec.quote.format_amount(spec.quote_value(t.price, t.quantity)),
                "commission": fee,
                "commissionAsset": fee_asset,
                "time": t.ts,
                "isBuyer": side is Side.BUY,
                "isMaker": is_maker,
                "isBestMatch": True,
            }
        )
    return out
