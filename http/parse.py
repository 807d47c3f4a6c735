"""Request text -> engine command fields: decimals onto the market's grid, names onto enums, a clear 400 for
anything malformed. Parsing only: what makes an order well formed (a limit needs a price, post-only needs
GTC...) is `openbell.core.orders.validate_order`, run by the engine.

Conventions (the README lists them): `side`, `type`, `timeInForce` and `selfTradePrevention` in either
case; `market` or `symbol` for the market; order and trade ids as strings (numbers are accepted too);
times in milliseconds since the epoch.
"""

from __future__ import annotations

import json
import re
from collections.abc import Callable, Mapping
from typing import Any, TypeVar

from openbell.core.grid import GridError, MarketSpec
from openbell.core.types import OrderType, ResultCode, SelfTradePrevention, Side, TimeInForce
from openbell.edge.errors import ApiError

E = TypeVar("E")

CLIENT_ORDER_ID = re.compile(r"^[A-Za-z0-9_.:-]{1,64}\Z")
TXN_ID = re.compile(r"^[A-Za-z0-9_.:-]{1,128}\Z")
MARKET_SYMBOL = re.compile(r"^[A-Za-z0-9_]{1,32}\Z")
MAX_TIME_MS = 10**14
SECONDS_BEFORE = 10**11
"""A time below this is read as seconds (the older klines convention): every time in milliseconds after
1973-03-03 is above it, and every time in seconds before the year 5138 below it."""

SIDES = {side.value.upper(): side for side in Side}
ORDER_TYPES = {kind.value.upper(): kind for kind in OrderType}
TIMES_IN_FORCE = {tif.value.upper(): tif for tif in TimeInForce}
SELF_TRADE_PREVENTION = {mode.value.upper(): mode for mode in SelfTradePrevention}


def bad(message: str, code: ResultCode = ResultCode.INVALID_REQUEST) -> ApiError:
    return ApiError.of(code, message)


class DuplicateKey(ValueError):
    pass


def _object_without_duplicates(pairs: list[tuple[str, Any]]) -> dict[str, Any]:
    out = dict(pairs)
    if len(out) != len(pairs):
        seen: set[str] = set()
        for name, _ in pairs:
            if name in seen:
                raise DuplicateKey(name)
            seen.add(name)
    return out


def _no_constant(name: str) -> Any:
    raise ValueError(f"{name} is not a JSON number")


def loads_strict(body: bytes | str) -> Any:
    """JSON as RFC 8259 has it, refusing what parsers disagree on: a name twice in one object (some parsers keep
    the first, some the last: `"user_id":"bob","user_id":"eve"` must mean nothing), NaN and Infinity.
    Raises ValueError (DuplicateKey for a repeated name), RecursionError for absurd nesting."""
    return json.loads(body, object_pairs_hook=_object_without_duplicates, parse_constant=_no_constant)


def json_body(request: Any) -> dict[str, Any]:
    body = request.body
    if not body:
        raise bad("a JSON object body is required")
    if request.content_type.split(";", 1)[0].strip().lower() != "application/json":
        # a cross-site form or text/plain POST needs no preflight: only JSON is accepted here
        raise ApiError.of(
            ResultCode.UNSUPPORTED_MEDIA_TYPE, "the body must be JSON, sent as Content-Type: application/json"
        )
    try:
        data = loads_strict(body)
    except DuplicateKey as duplicate:
        raise bad(f"the body names {str(duplicate)[:64]!r} twice") from None
    except (ValueError, TypeError, RecursionError):
        raise bad("the body is not valid JSON") from None
    if not isinstance(data, dict):
        raise bad("the body must be a JSON object")
    return data


def fields_of(request: Any) -> dict[str, Any]:
    """A request's fields: its JSON body if it has one, else its query string (one value per name)."""
    if request.body:
        return json_body(request)
    return {name: request.args.get(name) for name in request.args}


def text_field(data: Mapping[str, Any], name: str, *, required: bool = True, max_length: int = 64) -> str | None:
    value = data.get(name)
    if value is None:
        if required:
            raise bad(f"{name} is required")
        return None
    if not isinstance(value, str) or not value or len(value) > max_length:
        raise bad(f"{name} must be a non-empty string of at most {max_length} characters")
    return value


def market_field(data: Mapping[str, Any]) -> str:
    """The market a request names, as `market` or `symbol`."""
    value = data.get("market")
    if value is None:
        value = data.get("symbol")
    if value is None:
        raise bad("market is required (a symbol such as TATA_INR; `symbol` is accepted too)")
    if not isinstance(value, str) or not MARKET_SYMBOL.match(value):
        raise bad("market must be a market symbol such as TATA_INR")
    return value


def enum_field(data: Mapping[str, Any], name: str, table: Mapping[str, E], default: E | None = None) -> E:
    value = data.get(name)
    if value is None:
        if default is None:
            raise bad(f"{name} is required")
        return default
    found = table.get(value.upper()) if isinstance(value, str) else None
    if found is None:
        raise bad(f"{name} must be one of {', '.join(table)} (in either case)")
    return found


def bool_field(data: Mapping[str, Any], name: str) -> bool:
    value = data.get(name, False)
    if value is None:
        return False
    if isinstance(value, str) and value.lower() in ("true", "false"):
        return value.lower() == "true"
    if not isinstance(value, bool):
        raise bad(f"{name} must be true or false")
    return value


def on_grid(parse: Callable[[Any], int], value: Any) -> int:
    try:
        return int(parse(value))
    except GridError as error:
        raise ApiError.of(error.code, error.message) from None


def order_fields(data: Mapping[str, Any], spec: MarketSpec) -> dict[str, Any]:
    """The PlaceOrder fields (besides seq, ts, user and market) from a POST /order body, as given."""
    client_order_id = data.get("clientOrderId")
    if client_order_id is not None and (
        not isinstance(client_order_id, str) or not CLIENT_ORDER_ID.match(client_order_id)
    ):
        raise bad("clientOrderId must be 1-64 characters of A-Z a-z 0-9 _ . : -")
    price, quantity, quote = data.get("price"), data.get("quantity"), data.get("quoteQuantity")
    stop_price = data.get("stopPrice")
    return {
        "side": enum_field(data, "side", SIDES),
        "order_type": enum_field(data, "type", ORDER_TYPES, OrderType.LIMIT),
        "time_in_force": enum_field(data, "timeInForce", TIMES_IN_FORCE, TimeInForce.GTC),
        "price": None if price is None else on_grid(spec.parse_price, price),
        "quantity": None if quantity is None else on_grid(spec.parse_quantity, quantity),
        "quote_quantity": None if quote is None else on_grid(spec.parse_quote_amount, quote),
        "post_only": bool_field(data, "postOnly"),
        "client_order_id": client_order_id,
        "stp": enum_field(data, "selfTradePrevention", SELF_TRADE_PREVENTION, SelfTradePrevention.EXPIRE_MAKER),
        "stop_price": None if stop_price is None else on_grid(spec.parse_price, stop_price),
    }


def order_id_field(value: Any) -> int:
    if isinstance(value, bool):
        raise bad("orderId must be an order id string")
    if isinstance(value, int):
        order_id = value
    elif isinstance(value, str) and value.isascii() and value.isdigit() and len(value) <= 19:
        order_id = int(value)
    elif value is None:
        raise bad("orderId is required")
    else:
        raise bad('orderId must be an order id string such as "42"')
    if order_id <= 0:
        raise bad("orderId must be positive")
    return order_id


def int_arg(request: Any, name: str, default: int | None, low: int, high: int) -> int:
    raw = request.args.get(name)
    if raw is None or raw == "":
        if default is None:
            raise bad(f"{name} is required")
        return default
    if not re.fullmatch(r"-?[0-9]{1,19}", raw):
        raise bad(f"{name} must be an integer")
    value = int(raw)
    if not low <= value <= high:
        raise bad(f"{name} must be between {low} and {high}")
    return value


def time_arg_ms(request: Any, name: str, default: int) -> int:
    """A time parameter in ms since the epoch; a value below `SECONDS_BEFORE` is read as seconds."""
    value = int_arg(request, name, default, 0, MAX_TIME_MS)
    return value * 1000 if value < SECONDS_BEFORE and request.args.get(name) is not None else value
