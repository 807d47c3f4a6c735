"""The API as the OpenAPI document at /docs/openapi.json describes it: every request body and every response,
errors included, with required fields and enumerations.

Handlers do their own parsing and validation (`openbell.http.parse`, `openbell.core.orders`); these
schemas describe the API for clients, the interactive docs and the schema fuzz tests. Decimals are
strings (exact), ids strings, times milliseconds since the epoch; names of sides, types and times in
force are accepted in either case (the enumerations list the canonical spelling).
"""

from __future__ import annotations

from typing import Any

from sanic_ext.extensions.openapi.types import Array, Boolean, Integer, Long, Object, Schema, String

from openbell.core.marketdata import INTERVALS
from openbell.core.types import MarketStatus, OrderStatus, OrderType, SelfTradePrevention, Side, TimeInForce

DECIMAL = {"pattern": r"^[0-9]{1,30}(\.[0-9]{1,18})?$"}


def decimal(description: str) -> String:
    return String(description=f'{description} (a decimal string, e.g. "100.5")', **DECIMAL)


def names(enum: Any) -> list[str]:
    return [member.value for member in enum]


MARKET = String(description="market symbol, BASE_QUOTE (e.g. TATA_INR)", pattern=r"^[A-Za-z0-9_]{1,32}$")
USER_ID = String(
    description="the acting user (in --dev mode; with API keys, the key's user)", pattern=r"^[A-Za-z0-9_.-]{1,64}$"
)
ORDER_ID = String(description="an order id (digits)", pattern=r"^[0-9]{1,19}$")
CLIENT_ORDER_ID = String(
    description="your id for the order, unique among your orders", pattern=r"^[A-Za-z0-9_.:-]{1,64}$"
)
TIME_MS = Long(description="milliseconds since the epoch")

# ----------------------------------------------------------------------------------------------- requests
PLACE_ORDER = Object(
    {
        "market": MARKET,
        "symbol": String(description="the same as market (either may be given)"),
        "side": String(enum=names(Side), description="buy or sell (either case)"),
        "type": String(
            enum=names(OrderType),
            description="limit (default), market, or a stop: stop_loss, stop_loss_limit, take_profit, "
            "take_profit_limit (either case)",
        ),
        "timeInForce": String(enum=names(TimeInForce), description="GTC (default), IOC or FOK"),
        "price": decimal("limit price, on the market's tick"),
        "stopPrice": decimal(
            "stop and take-profit orders: the last trade price that triggers the order, on the market's tick"
        ),
        "quantity": decimal("quantity in base, on the market's lot"),
        "quoteQuantity": decimal("market buys: the most quote to spend (required for stop_loss/take_profit buys)"),
        "postOnly": Boolean(description="limit GTC only: refuse rather than take liquidity"),
        "clientOrderId": CLIENT_ORDER_ID,
        "selfTradePrevention": String(enum=names(SelfTradePrevention), description="default EXPIRE_MAKER"),
        "user_id": USER_ID,
    },
    required=["market", "side"],
    description="A limit order needs price and quantity; a market order quantity, or quoteQuantity for a buy. "
    "A stop or take-profit order also needs stopPrice; it waits off the book (status NEW) until the last trade "
    "price reaches it (stop_loss: a sell at or below, a buy at or above; take_profit: the other way round).",
)
CANCEL_ORDER = Object(
    {"orderId": ORDER_ID, "market": MARKET, "user_id": USER_ID},
    required=["orderId", "market"],
    description="In a JSON body or as query parameters.",
)
ONRAMP = Object(
    {
        "user_id": USER_ID,
        "asset": String(description="asset symbol, e.g. INR"),
        "amount": decimal("amount, within the asset's decimals"),
        "txnId": String(
            description="idempotency key: the same txnId credits once", pattern=r"^[A-Za-z0-9_.:-]{1,128}$"
        ),
    },
    required=["user_id", "asset", "amount", "txnId"],
)
ADD_MARKET = Object(
    {
        "symbol": String(description="BASE_QUOTE"),
        "base": String(description="base asset symbol"),
        "quote": String(description="quote asset symbol"),
        "tickSize": decimal("price step"),
        "lotSize": decimal("quantity step"),
        "makerFeeBps": Integer(description="fee of the resting side, basis points (0-1000)"),
        "takerFeeBps": Integer(description="fee of the incoming side, basis points (0-1000)"),
        "baseDecimals": Integer(description="a new base asset's decimals (default 8, or what the grid needs)"),
        "quoteDecimals": Integer(description="a new quote asset's decimals (default 8, or what the grid needs)"),
    },
    required=["symbol", "base", "quote", "tickSize", "lotSize"],
)

# ----------------------------------------------------------------------------------------------- responses
ERROR = Object(
    {
        "code": Integer(
            description="result code: 1xx input, 2xx business, 3xx not found, 4xx access, 5xx engine, 6xx request"
        ),
        "message": String(description="what is wrong, in words"),
        "order": Object(description="409 for a reused clientOrderId: the order that used it first, as it is now"),
    },
    required=["code", "message"],
)
FILL = Object(
    {"price": decimal("price"), "quantity": decimal("quantity"), "tradeId": String(description="trade id")},
    required=["price", "quantity", "tradeId"],
)
ORDER_RESULT = Object(
    {
        "orderId": ORDER_ID,
        "market": MARKET,
        "status": String(enum=names(OrderStatus)),
        "executedQty": decimal("filled so far"),
        "remainingQty": decimal("still open, or dropped if the order ended unfilled"),
        "fills": Array(FILL, description="fills this request made"),
        "clientOrderId": CLIENT_ORDER_ID,
    },
    required=["orderId", "market", "status", "executedQty", "remainingQty", "fills"],
)
CANCEL_RESULT = Object(
    {
        "orderId": ORDER_ID,
        "market": MARKET,
        "status": String(enum=names(OrderStatus)),
        "executedQty": decimal("filled before the cancel"),
        "remainingQty": decimal("what was still open"),
    },
    required=["orderId", "market", "status", "executedQty", "remainingQty"],
)
OPEN_ORDER = Object(
    {
        "orderId": ORDER_ID,
        "market": MARKET,
        "price": decimal("limit price (null for a market order)"),
        "quantity": decimal("quantity"),
        "filled": decimal("filled so far"),
        "side": String(enum=names(Side)),
        "type": String(enum=names(OrderType)),
        "status": String(enum=[OrderStatus.NEW.value, OrderStatus.PARTIALLY_FILLED.value]),
        "timestamp": TIME_MS,
        "clientOrderId": CLIENT_ORDER_ID,
        "stopPrice": decimal("stop and take-profit orders: the trigger price (null for other orders)"),
        "triggered": Boolean(description="stop and take-profit orders only: whether the order has triggered"),
    },
    required=["orderId", "market", "side", "type", "status", "filled", "timestamp"],
)
LEVELS = Array(Array(String()), description="[price, total quantity] per level, best first")
DEPTH = Object(
    {"bids": LEVELS, "asks": LEVELS, "lastUpdateId": Long(description="depth@ diffs continue it")},
    required=["bids", "asks", "lastUpdateId"],
)
TRADE = Object(
    {
        "id": String(description="trade id, per market"),
        "price": decimal("price"),
        "quantity": decimal("quantity"),
        "quoteQuantity": decimal("price x quantity"),
        "timestamp": TIME_MS,
        "isBuyerMaker": Boolean(),
    },
    required=["id", "price", "quantity", "quoteQuantity", "timestamp", "isBuyerMaker"],
)
KLINE = Object(
    {
        "openTime": TIME_MS,
        "closeTime": TIME_MS,
        "start": Integer(description="unix seconds (older name of openTime)"),
        "end": Integer(description="unix seconds (older name of closeTime)"),
        "open": decimal("first price"),
        "high": decimal("highest price"),
        "low": decimal("lowest price"),
        "close": decimal("last price"),
        "volume": decimal("base traded"),
        "quoteVolume": decimal("quote traded"),
        "trades": Integer(),
        "closed": Boolean(description="whether the candle's time is over"),
    },
    required=["openTime", "closeTime", "open", "high", "low", "close", "volume", "quoteVolume", "trades"],
)
TICKER = Object(
    {
        "symbol": MARKET,
        "firstPrice": decimal("first price of the 24 h window"),
        "lastPrice": decimal("last price"),
        "high": decimal("24 h high"),
        "low": decimal("24 h low"),
        "priceChange": decimal("last - first (may be negative: a leading -)"),
        "priceChangePercent": String(description="percent, two decimals"),
        "volume": decimal("base traded in 24 h"),
        "quoteVolume": decimal("quote traded in 24 h"),
        "trades": Integer(),
    },
    required=["symbol", "lastPrice", "high", "low", "volume", "quoteVolume", "trades"],
)
BALANCES = Object(
    description="asset -> {available, locked}",
    additionalProperties=Object(
        {"available": decimal("free to use"), "locked": decimal("held for open orders")},
        required=["available", "locked"],
    ),
)
MARKET_INFO = Object(
    {
        "symbol": MARKET,
        "base": String(),
        "quote": String(),
        "tickSize": decimal("price step"),
        "lotSize": decimal("quantity step"),
        "baseDecimals": Integer(),
        "quoteDecimals": Integer(),
        "makerFeeBps": Integer(),
        "takerFeeBps": Integer(),
        "status": String(
            enum=names(MarketStatus),
            description="TRADING; HALTED or CANCEL_ONLY: new orders are refused (codes 211, 212), cancels taken",
        ),
    },
    required=["symbol", "base", "quote", "tickSize", "lotSize", "baseDecimals", "quoteDecimals", "status"],
)
ONRAMP_RESULT = Object(
    {
        "user_id": USER_ID,
        "asset": String(),
        "amount": decimal("amount credited (or credited before, for a repeated txnId)"),
        "txnId": String(),
        "status": String(enum=["credited"]),
    },
    required=["user_id", "asset", "amount", "txnId", "status"],
)
HEALTH = Object(
    {"status": String(enum=["ok"]), "markets": Integer(), "engineLatencyMs": String(description="a number")},
    required=["status", "markets"],
)
INTERVAL = String(enum=list(INTERVALS), description="candle interval")
PERMISSIONS = Array(String(enum=["read", "trade"]), description='what the key may do (default ["read", "trade"])')
CREATE_KEY = Object({"user_id": USER_ID, "permissions": PERMISSIONS}, required=["user_id"])
_API_KEY_FIELDS: dict[str, Any] = {
    "user_id": USER_ID,
    "apiKey": String(description="the X-MBX-APIKEY header value"),
    "permissions": PERMISSIONS,
    "createdTime": Integer(description="ms since the epoch"),
}
API_KEY = Object(_API_KEY_FIELDS, required=["user_id", "apiKey", "permissions"])
API_KEY_CREATED = Object(
    {**_API_KEY_FIELDS, "secret": String(description="signs requests; shown only in this answer")},
    required=["user_id", "apiKey", "secret", "permissions"],
)
LISTEN_KEY_RESULT = Object(
    {"listenKey": String(description="open /ws?listenKey=<key> for orders@<user> and balance@<user>")},
    required=["listenKey"],
)
EMPTY = Object({}, description="nothing more to say")
API_KEY_REVOKED = Object({"apiKey": String(), "status": String(enum=["revoked"])}, required=["apiKey", "status"])


def json_content(schema: Schema) -> dict[str, Schema]:
    return {"application/json": schema}


ERRORS = {
    400: "malformed or invalid input, or a business rejection (insufficient funds, post-only would take...), "
    "a timestamp outside its recvWindow, a replayed signed request",
    401: "no API key (or operator token), an unknown or revoked key, a bad signature",
    403: "the key may not do this: a read-only key trading, a user's key on an operator's route, another user_id",
    404: "unknown market, order or asset (another user's order looks exactly like an unknown one)",
    408: "the request body did not arrive in time",
    409: "a conflict with existing state: market exists, txnId reused, clientOrderId in use (`order` says which)",
    413: "body over 16 KiB",
    503: "the engine is unavailable: nothing was applied",
    504: "the engine did not answer in time: the outcome is unknown (retry with the same clientOrderId)",
}
