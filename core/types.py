"""Enumerations of the trade, with wire names that match the API, and numbered result codes.

Result codes live in numbered ranges, as in exchange-core: 0 is success, 1xx are malformed or
off-grid input, 2xx are business rejections (funds, liquidity, post-only), 3xx are lookups that
found nothing, 5xx are engine faults. A normal rejection is a result carrying one of these codes,
never an exception.
"""

from __future__ import annotations

from enum import IntEnum, StrEnum


class Side(StrEnum):
    BUY = "buy"
    SELL = "sell"

    @property
    def opposite(self) -> Side:
        return Side.SELL if self is Side.BUY else Side.BUY


class OrderType(StrEnum):
    LIMIT = "limit"
    MARKET = "market"


class TimeInForce(StrEnum):
    GTC = "GTC"
    """Good till canceled: the unfilled remainder rests on the book."""
    IOC = "IOC"
    """Immediate or cancel: fill what crosses now, expire the rest."""
    FOK = "FOK"
    """Fill or kill: fill the whole quantity at once, or nothing at all."""


class OrderStatus(StrEnum):
    NEW = "NEW"
    PARTIALLY_FILLED = "PARTIALLY_FILLED"
    FILLED = "FILLED"
    CANCELED = "CANCELED"
    REJECTED = "REJECTED"
    EXPIRED = "EXPIRED"

    @property
    def is_final(self) -> bool:
        return self in _FINAL_STATUSES


_FINAL_STATUSES = frozenset({OrderStatus.FILLED, OrderStatus.CANCELED, OrderStatus.REJECTED, OrderStatus.EXPIRED})


class SelfTradePrevention(StrEnum):
    """What happens when an incoming order would trade with a resting order of the same user."""

    EXPIRE_MAKER = "EXPIRE_MAKER"
    """The resting order expires; the incoming order goes on matching (the default)."""
    EXPIRE_TAKER = "EXPIRE_TAKER"
    """The incoming order's remainder expires; the resting order stays."""
    EXPIRE_BOTH = "EXPIRE_BOTH"
    """Both expire."""


class ResultCode(IntEnum):
    OK = 0

    # 1xx: malformed or invalid input
    INVALID_REQUEST = 100
    INVALID_PRICE = 101
    INVALID_QUANTITY = 102
    INVALID_AMOUNT = 103
    INVALID_ORDER = 104
    INVALID_MARKET_SPEC = 105
    INVALID_USER = 106
    INVALID_ASSET = 107

    # 2xx: business rejections
    INSUFFICIENT_FUNDS = 200
    POST_ONLY_WOULD_TAKE = 201
    FOK_NOT_FILLED = 202
    NO_LIQUIDITY = 203
    SELF_TRADE_PREVENTED = 204
    MARKET_EXISTS = 205
    DUPLICATE_CLIENT_ORDER_ID = 206
    TOO_MANY_OPEN_ORDERS = 207
    DEPOSIT_CONFLICT = 208

    # 3xx: nothing found
    UNKNOWN_MARKET = 300
    UNKNOWN_ORDER = 301
    UNKNOWN_ASSET = 302

    # 5xx: engine faults
    ENGINE_ERROR = 500
    ENGINE_UNAVAILABLE = 503
    ENGINE_TIMEOUT = 504
