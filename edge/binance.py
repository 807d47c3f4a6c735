"""What the Binance API's REST and WebSocket edges share: a market's Binance symbol, an order type's Binance
name, a percent change, a fill's commission, and Binance's errors (`BinanceError`, `error_of_result`)."""

from __future__ import annotations

from typing import Any

from openbell.core.grid import MarketSpec
from openbell.core.types import OrderType, ResultCode, Side

INSUFFICIENT_BALANCE = "Account has insufficient balance for requested action."
WOULD_TAKE = "Order would immediately match and take."
WOULD_TRIGGER = "Order would trigger immediately."
"""Binance Spot's words (-2010) for a stop whose stop price the last price has already reached; ccxt reads them
as OrderImmediatelyFillable (Binance's futures say -2021 "Order would immediately trigger.")."""
UNKNOWN_ORDER_SENT = "Unknown order sent."
ORDER_DOES_NOT_EXIST = "Order does not exist."
LISTEN_KEY_UNKNOWN = "This listenKey does not exist."


class BinanceError(Exception):
    """An answer of the Binance API: `{"code": code, "msg": msg}` with HTTP `status`."""

    def __init__(self, code: int, msg: str, status: int = 400) -> None:
        super().__init__(msg)
        self.code = code
        self.msg = msg
        self.status = status

    def body(self) -> dict[str, Any]:
        return {"code": self.code, "msg": self.msg}


# Result codes -> (Binance code, status, Binance's message or None to keep openbell's). Keyed by name so
# that codes another package adds (the 4xx of keys, signatures and rates) map here by their names.
_BY_RESULT: dict[str, tuple[int, int, str | None]] = {
    "INVALID_REQUEST": (-1100, 400, None),
    "INVALID_PRICE": (-1013, 400, None),
    "INVALID_QUANTITY": (-1013, 400, None),
    "INVALID_AMOUNT": (-1111, 400, None),
    "INVALID_ORDER": (-1013, 400, None),
    "INVALID_MARKET_SPEC": (-1100, 400, None),
    "INVALID_USER": (-2014, 401, "API-key format invalid."),
    "INVALID_ASSET": (-1100, 400, None),
    "INSUFFICIENT_FUNDS": (-2010, 400, INSUFFICIENT_BALANCE),
    "POST_ONLY_WOULD_TAKE": (-2010, 400, WOULD_TAKE),
    "FOK_NOT_FILLED": (-2010, 400, None),
    "NO_LIQUIDITY": (-2010, 400, None),
    "SELF_TRADE_PREVENTED": (-2010, 400, None),
    "DUPLICATE_CLIENT_ORDER_ID": (-2010, 400, "Duplicate order sent."),
    "TOO_MANY_OPEN_ORDERS": (-2010, 400, "Filter failure: MAX_NUM_ORDERS"),
    "MARKET_EXISTS": (-1100, 400, None),
    "DEPOSIT_CONFLICT": (-1100, 400, None),
    "DUPLICATE_REQUEST": (-2010, 400, "Duplicate order sent."),
    "UNKNOWN_MARKET": (-1121, 400, "Invalid symbol."),
    "UNKNOWN_ORDER": (-2013, 400, ORDER_DOES_NOT_EXIST),
    "UNKNOWN_ASSET": (-1100, 400, None),
    "NOT_FOUND": (-1020, 404, "This operation is not supported."),
    "ENGINE_ERROR": (-1000, 500, "An unknown error occurred while processing the request."),
    "HISTORY_BEHIND": (-1001, 503, "Internal error; unable to process your request. Please try again."),
    "ENGINE_UNAVAILABLE": (-1001, 503, "Internal error; unable to process your request. Please try again."),
    "ENGINE_TIMEOUT": (
        -1007,
        503,
        "Timeout waiting for response from backend server. Send status unknown; execution status unknown.",
    ),
    "METHOD_NOT_ALLOWED": (-1020, 405, "This operation is not supported."),
    "BODY_TOO_LARGE": (-1101, 413, "Too many parameters sent for this endpoint."),
    "REQUEST_TIMEOUT": (-1007, 408, None),
    "UNSUPPORTED_MEDIA_TYPE": (-1100, 415, None),
    # who is asking (keys, signatures, rights, rates): Binance's codes and statuses for the same refusals
    "MISSING_API_KEY": (-2014, 401, "API-key format invalid."),
    "UNKNOWN_API_KEY": (-2014, 401, "API-key format invalid."),
    "INVALID_SIGNATURE": (-1022, 400, "Signature for this request is not valid."),
    "INVALID_ADMIN_TOKEN": (-2015, 401, "Invalid API-key, IP, or permissions for action."),
    "TIMESTAMP_OUTSIDE_WINDOW": (-1021, 400, "Timestamp for this request is outside of the recvWindow."),
    "REPLAYED_REQUEST": (-1021, 400, "This request was already received (same signature within its recvWindow)."),
    "MISSING_PERMISSION": (-2015, 401, "Invalid API-key, IP, or permissions for action."),
    "ADMIN_ONLY": (-2015, 401, "Invalid API-key, IP, or permissions for action."),
    "NOT_YOUR_USER": (-2015, 401, "Invalid API-key, IP, or permissions for action."),
    "RATE_LIMITED": (-1003, 429, "Too many requests; current limit is exceeded. Please try again later."),
    # market status and stops
    "MARKET_HALTED": (-2010, 400, "Market is closed."),
    "MARKET_CANCEL_ONLY": (-2010, 400, "Market is closed (cancel only)."),
    "STOP_WOULD_TRIGGER": (-2010, 400, WOULD_TRIGGER),
    "UNKNOWN_LISTEN_KEY": (-1125, 400, LISTEN_KEY_UNKNOWN),
}


def error_of_result(code: ResultCode, message: str) -> BinanceError:
    """The Binance error for an openbell result code (and openbell's message where Binance has no words)."""
    found = _BY_RESULT.get(code.name)
    if found is None:
        return BinanceError(-1000, message or code.name.lower(), 400)
    binance_code, status, text = found
    if binance_code == -1013 and code in (ResultCode.INVALID_PRICE, ResultCode.INVALID_QUANTITY):
        # ccxt reads a filter failure from the filter's name in the message
        name = "PRICE_FILTER" if code is ResultCode.INVALID_PRICE else "LOT_SIZE"
        text = f"Filter failure: {name} ({message})"
    return BinanceError(binance_code, text or message or code.name.lower(), status)


def binance_symbol(spec: MarketSpec) -> str:
    """`TATAINR` for TATA_INR: the base and quote joined, as Binance names symbols."""
    return spec.base.symbol + spec.quote.symbol


def binance_type(order_type: OrderType, post_only: bool = False) -> str:
    """Binance's name of an order type: `LIMIT_MAKER` for a post-only limit, else the type's own name in capitals
    (`MARKET`, `STOP_LOSS_LIMIT`...); a triggered stop keeps its type."""
    if order_type is OrderType.LIMIT and post_only:
        return "LIMIT_MAKER"
    return order_type.value.upper()


def percent_change(change: int, base: int) -> str:
    """change / base * 100 with three decimals (Binance's), rounded half away from zero, in integers only."""
    scaled = abs(change) * 100_000
    thousandths, remainder = divmod(scaled, base)
    if remainder * 2 >= base:
        thousandths += 1
    text = f"{thousandths // 1000}.{thousandths % 1000:03d}"
    return "-" + text if change < 0 and thousandths else text


def commission(spec: MarketSpec, side: Side, is_maker: bool, price: int, lots: int) -> tuple[str, str]:
    """(commission, its asset) of one fill of an order on `side`, as the ledger charges it
    (`openbell.core.ledger.Ledger._settle_trade`): a buyer pays `base received x bps // 10000` in the base
    asset, a seller `quote received x bps // 10000` in the quote asset, at the maker's or the taker's rate."""
    bps = spec.maker_fee_bps if is_maker else spec.taker_fee_bps
    if side is Side.BUY:
        base = spec.base_value(lots)
        return spec.base.format_amount(base * bps // 10_000), spec.base.symbol
    quote = spec.quote_value(price, lots)
    return spec.quote.format_amount(quote * bps // 10_000), spec.quote.symbol
