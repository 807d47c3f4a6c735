"""Request text -> engine commands' fields, with a clear 400 for anything malformed."""

from __future__ import annotations

import re
from typing import Any

import ujson

from openbell.core.grid import GridError, MarketSpec
from openbell.core.types import OrderType, ResultCode, SelfTradePrevention, Side, TimeInForce
from openbell.http.errors import ApiError

CLIENT_ORDER_ID = re.compile(r"^[A-Za-z0-9_.:-]{1,64}\Z")
TXN_ID = re.compile(r"^[A-Za-z0-9_.:-]{1,128}\Z")

_SIDES = {"buy": Side.BUY, "sell": Side.SELL}
_TYPES = {"limit": OrderType.LIMIT, "market": OrderType.MARKET}
_TIFS = {"GTC": TimeInForce.GTC, "IOC": TimeInForce.IOC, "FOK": TimeInForce.FOK}
_STPS = {mode.value: mode for mode in SelfTradePrevention}


def bad(message: str, code: ResultCode = ResultCode.INVALID_REQUEST) -> ApiError:
    return ApiError(400, code, message)


def json_body(request: Any) -> dict[str, Any]:
    body = request.body
    if not body:
        raise bad("a JSON object body is required")
    try:
        data = ujson.loads(body)
    except (ValueError, TypeError):
        raise bad("the body is not valid JSON") from None
    if not isinstance(data, dict):
        raise bad("the body must be a JSON object")
    return data


def text_field(data: dict[str, Any], name: str, *, required: bool = True, max_length: int = 64) -> str | None:
    value = data.get(name)
    if value is None:
        if required:
            raise bad(f"{name} is required")
        return None
    if not isinstance(value, str) or not value or len(value) > max_length:
        raise bad(f"{name} must be a non-empty string of at most {max_length} characters")
    return value


def enum_field(data: dict[str, Any], name: str, table: dict[str, Any], default: Any = None) -> Any:
    value = data.get(name)
    if value is None:
        if default is None:
            raise bad(f"{name} is required")
        return default
    if not isinstance(value, str) or value not in table:
        raise bad(f"{name} must be one of {', '.join(table)}")
    return table[value]


def bool_field(data: dict[str, Any], name: str) -> bool:
    value = data.get(name, False)
    if value is None:
        return False
    if not isinstance(value, bool):
        raise bad(f"{name} must be true or false")
    return value


def on_grid(parse: Any, value: Any) -> int:
    try:
        return int(parse(value))
    except GridError as error:
        raise ApiError(400, error.code, error.message) from None


def order_fields(data: dict[str, Any], spec: MarketSpec) -> dict[str, Any]:
    """The PlaceOrder fields (besides seq, ts, user and market) from a POST /order body."""
    side = enum_field(data, "side", _SIDES)
    order_type = enum_field(data, "type", _TYPES, OrderType.LIMIT)
    tif = enum_field(data, "timeInForce", _TIFS, TimeInForce.GTC)
    stp = enum_field(data, "selfTradePrevention", _STPS, SelfTradePrevention.EXPIRE_MAKER)
    post_only = bool_field(data, "postOnly")
    client_order_id = data.get("clientOrderId")
    if client_order_id is not None and (
        not isinstance(client_order_id, str) or not CLIENT_ORDER_ID.match(client_order_id)
    ):
        raise bad("clientOrderId must be 1-64 characters of A-Z a-z 0-9 _ . : -")
    price = quantity = quote_quantity = None
    if order_type is OrderType.LIMIT:
        if data.get("price") is None:
            raise bad("price is required for a limit order", ResultCode.INVALID_PRICE)
        price = on_grid(spec.parse_price, data["price"])
        if data.get("quantity") is None:
            raise bad("quantity is required", ResultCode.INVALID_QUANTITY)
        quantity = on_grid(spec.parse_quantity, data["quantity"])
        if data.get("quoteQuantity") is not None:
            raise bad("quoteQuantity is only for market buys", ResultCode.INVALID_ORDER)
    else:
        if data.get("price") is not None:
            raise bad("a market order takes no price", ResultCode.INVALID_PRICE)
        if post_only:
            raise bad("a market order cannot be postOnly", ResultCode.INVALID_ORDER)
        if data.get("quantity") is not None:
            quantity = on_grid(spec.parse_quantity, data["quantity"])
        if data.get("quoteQuantity") is not None:
            if side is not Side.BUY:
                raise bad("quoteQuantity is only for market buys", ResultCode.INVALID_ORDER)
            quote_quantity = on_grid(spec.parse_quote_amount, data["quoteQuantity"])
        if quantity is None and quote_quantity is None:
            raise bad("a market order needs quantity (or quoteQuantity for a buy)", ResultCode.INVALID_QUANTITY)
    if post_only and tif is not TimeInForce.GTC:
        raise bad("postOnly needs timeInForce GTC", ResultCode.INVALID_ORDER)
    return {
        "side": side,
        "order_type": order_type,
        "time_in_force": tif,
        "price": price,
        "quantity": quantity,
        "quote_quantity": quote_quantity,
        "post_only": post_only,
        "client_order_id": client_order_id,
        "stp": stp,
    }


def order_id_field(value: Any) -> int:
    if isinstance(value, bool):
        raise bad("orderId must be an order id string")
    if isinstance(value, int):
        order_id = value
    elif isinstance(value, str) and value.isascii() and value.isdigit() and len(value) <= 19:
        order_id = int(value)
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
