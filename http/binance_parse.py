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
from openbell.edge.binance import BinanceError, error_of_result
from openbell.edge.client import EngineUnavailable
from openbell.edge.errors import ApiError

MAX_PARAMS = 64
MAX_VALUE_LENGTH = 1024
FORM = "application/x-www-form-urlencoded"
SYMBOL = re.compile(r"^[A-Za-z0-9_.-]{1,32}\Z")
CLIENT_ORDER_ID = re.compile(r"^[A-Za-z0-9_.:-]{1,36}\Z")
"""Binance allows 1-36 of `[.A-Z:/a-z0-9_-]`; openbell's clientOrderId has no "/"."""
INTEGER = re.compile(r"^[0-9]{1,19}\Z")


def missing(name: str) -> BinanceError:
    return BinanceError(-1102, f"Mandatory parameter '{name}' was not sent, was empty/null, or malformed.")


def not_required(name: str) -> BinanceError:
    return BinanceError(-1106, f"Parameter '{name}' sent when not required.")


def binance_error(error: Exception) -> BinanceError:
    """Any exception a v3 handler (or Sanic, for a v3 path) raised, as the Binance error to answer."""
    if isinstance(error, BinanceError):
        return error
    if isinstance(error, ApiError):
        return error_of_result(error.result, error.message)
    if isinstance(error, EngineUnavailable):
        return error_of_result(ResultCode.ENGINE_UNAVAILABLE, str(error))
    if isinstance(error, GridError):
        return error_of_result(error.code, error.message)
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
