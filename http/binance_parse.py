"""Binance Spot API requests and errors at the edge: strict parameter parsing, and `{"code": -NNNN, "msg"}`.

Parameters come from the query string and, for POST/PUT/DELETE, from an `application/x-www-form-urlencoded`
body (what ccxt and Binance's own clients send); both are parsed strictly: at most `MAX_PARAMS` fields of at
most `MAX_VALUE_LENGTH` characters, valid UTF-8, and a name given twice (in one part or across both) is
refused (-1101), never resolved by picking one. A JSON body is refused: this API takes forms.

Errors: `BinanceError(code, msg, status)` for what this API refuses itself, and `binance_error` for the
`ApiError`s the shared code raises (engine rejections, grid errors, identity), mapped by result code onto
Binance's codes and messages. ccxt picks its exception class by these codes, and for -2010 by the exact
message ("Account has insufficient balance for requested action." is InsufficientFunds), so those
messages are Binance's own words.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from typing import Any
from urllib.parse import unquote_plus

from sanic.exceptions import SanicException

from openbell.core.grid import GridError
from openbell.core.types import ResultCode
from openbell.edge.client import EngineUnavailable
from openbell.edge.errors import ApiError

MAX_PARAMS = 64
MAX_VALUE_LENGTH = 1024
FORM = "application/x-www-form-urlencoded"
SYMBOL = re.compile(r"^[A-Za-z0-9_.-]{1,32}\Z")
CLIENT_ORDER_ID = re.compile(r"^[A-Za-z0-9_.:-]{1,36}\Z")
"""Binance allows 1-36 of `[.A-Z:/a-z0-9_-]`; openbell's clientOrderId has no "/"."""
INTEGER = re.compile(r"^[0-9]{1,19}\Z")

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


def missing(name: str) -> BinanceError:
    return BinanceError(-1102, f"Mandatory parameter '{name}' was not sent, was empty/null, or malformed.")


def not_required(name: str) -> BinanceError:
    return BinanceError(-1106, f"Parameter '{name}' sent when not required.")


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


def binance_error(error: Exception) -> BinanceError:
    """Any exception a v3 handler (or Sanic, for a v3 path) raised, as the Binance error to answer."""
    if isinstance(error, BinanceError):
        return error
    if isinstance(error, ApiError):
        return _from_result(error.result, error.message)
    if isinstance(error, EngineUnavailable):
        return _from_result(ResultCode.ENGINE_UNAVAILABLE, str(error))
    if isinstance(error, GridError):
        return _from_result(error.code, error.message)
    if isinstance(error, SanicException):
        status = getattr(error, "status_code", 500) or 500
        if status == 404:
            return BinanceError(-1020, "This operation is not supported.", 404)
        if status == 405:
            return BinanceError(-1020, "This operation is not supported.", 405)
        if status == 413:
            return BinanceError(-1101, "Too many parameters sent for this endpoint.", 413)
        return BinanceError(-1000, str(error) or "An unknown error occurred while processing the request.", status)
    return BinanceError(-1000, "An unknown error occurred while processing the request.", 500)


def _from_result(code: ResultCode, message: str) -> BinanceError:
    found = _BY_RESULT.get(code.name)
    if found is None:
        return BinanceError(-1000, message or code.name.lower(), 400)
    binance_code, status, text = found
    if binance_code == -1013 and code in (ResultCode.INVALID_PRICE, ResultCode.INVALID_QUANTITY):
        # ccxt reads a filter failure from the filter's name in the message
        name = "PRICE_FILTER" if code is ResultCode.INVALID_PRICE else "LOT_SIZE"
        text = f"Filter failure: {name} ({message})"
    return BinanceError(binance_code, text or message or code.name.lower(), status)


# ----------------------------------------------------------------------------------------- parameters
def parse_pairs(text: str, into: dict[str, str]) -> None:
    """Add the fields of query or form text to `into`; a name already there, too many fields, or a value
    too long or not UTF-8 is refused."""
    if not text:
        return
    for part in text.split("&"):
        if not part:
            continue
        name, _, value = part.partition("=")
        if "%" in part or "+" in part:
            try:
                name = unquote_plus(name, errors="strict")
                value = unquote_plus(value, errors="strict")
            except UnicodeDecodeError:
                raise BinanceError(-1100, "Illegal characters found in a parameter.") from None
        if not name or len(name) > 64 or len(value) > MAX_VALUE_LENGTH:
            raise BinanceError(-1100, "Illegal characters found in a parameter.")
        if name in into:
            raise BinanceError(-1101, "Duplicate values for a parameter detected.")
        if len(into) >= MAX_PARAMS:
            raise BinanceError(-1101, "Too many parameters sent for this endpoint.")
        into[name] = value


def params_of(request: Any) -> dict[str, str]:
    """Every parameter of a v3 request: its query string and its form body (if any), each name once."""
    params: dict[str, str] = {}
    parse_pairs(request.query_string, params)
    body = request.body
    if body:
        content_type = (request.headers.get("content-type") or "").split(";")[0].strip().lower()
        if content_type != FORM:
            raise BinanceError(-1100, f"A request body must be {FORM}.", 415)
        try:
            text = body.decode("ascii")
        except UnicodeDecodeError:
            raise BinanceError(-1100, "Illegal characters found in a parameter.") from None
        parse_pairs(text, params)
    return params


def text_param(params: Mapping[str, str], name: str, *, required: bool = True) -> str | None:
    value = params.get(name)
    if value is None or value == "":
        if required:
            raise missing(name)
        return None
    return value


def int_param(params: Mapping[str, str], name: str, default: int | None, low: int, high: int) -> int | None:
    value = params.get(name)
    if value is None or value == "":
        return default
    if not INTEGER.match(value):
        raise BinanceError(-1100, f"Illegal characters found in parameter '{name}'; legal range is '^[0-9]{{1,19}}$'.")
    number = int(value)
    if not low <= number <= high:
        raise BinanceError(-1100, f"Parameter '{name}' must be between {low} and {high}.")
    return number


def limit_param(params: Mapping[str, str], default: int, high: int) -> int:
    value = int_param(params, "limit", default, 1, 10**9)
    assert value is not None
    return min(value, high)


def symbols_param(params: Mapping[str, str]) -> list[str] | None:
    """`symbols=["A","B"]` (a JSON array of names, as Binance and ccxt write it), or None if absent."""
    value = params.get("symbols")
    if value is None:
        return None
    if not (value.startswith("[") and value.endswith("]")):
        raise BinanceError(-1100, "Illegal characters found in parameter 'symbols'.")
    names = [part.strip().strip('"') for part in value[1:-1].split(",") if part.strip()]
    if not names or len(names) > 256 or not all(SYMBOL.match(name) for name in names):
        raise BinanceError(-1100, "Illegal characters found in parameter 'symbols'.")
    return names
