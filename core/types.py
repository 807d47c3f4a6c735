"""The base of every message, enumerations of the trade with wire names that match the API, and result codes.

Every command, event, reply and actor message is a `Record`: a frozen msgspec Struct, read by field
name, encoded by msgspec as an array tagged with its class name (the same bytes in the journal and on
Redis; see `openbell.core.wire`). Records are never mutated once made.

Result codes live in numbered ranges, as in exchange-core: 0 is success, 1xx are malformed or
off-grid input, 2xx are business rejections (funds, liquidity, post-only), 3xx are lookups that
found nothing, 4xx are refusals of who is asking (keys, signatures, rights, rates), 5xx are engine
faults, 6xx are faults of the request itself at the HTTP or WebSocket level. A normal rejection is a
result carrying one of these codes, never an exception.
"""

from __future__ import annotations

from enum import IntEnum, StrEnum

import msgspec


class Record(msgspec.Struct, frozen=True, array_like=True, gc=False, tag=True, forbid_unknown_fields=True):
    """Base of every message: immutable, typed, encoded by msgspec as `[ClassName, field, ...]`.

    `gc=False`: records hold only strings, numbers, enums, tuples and other records, so they never form a
    reference cycle and the cyclic collector need not track them (cheaper to make, on the hot path).
    """


class Side(StrEnum):
    BUY = "buy"
    SELL = "sell"

    @property
    def opposite(self) -> Side:
        return Side.SELL if self is Side.BUY else Side.BUY


class OrderType(StrEnum):
    LIMIT = "limit"
    MARKET = "market"
    STOP_LOSS = "stop_loss"
    """A market order that waits off the book until the last trade price reaches `stop_price` against the
    order (a sell: at or below it; a buy: at or above it)."""
    STOP_LOSS_LIMIT = "stop_loss_limit"
    """As `STOP_LOSS`, entering as a limit order at `price` when triggered."""
    TAKE_PROFIT = "take_profit"
    """A market order that waits off the book until the last trade price reaches `stop_price` in the order's
    favour (a sell: at or above it; a buy: at or below it)."""
    TAKE_PROFIT_LIMIT = "take_profit_limit"
    """As `TAKE_PROFIT`, entering as a limit order at `price` when triggered."""

    @property
    def is_stop(self) -> bool:
        """Whether orders of this type wait for a `stop_price` before they match."""
        return self in _STOP_TYPES

    @property
    def has_limit_price(self) -> bool:
        """Whether orders of this type carry a limit `price` (limit and the two stop-limit types)."""
        return self in _PRICED_TYPES

    @property
    def when_triggered(self) -> OrderType:
        """The type a triggered stop matches as: `LIMIT` or `MARKET` (any other type is itself)."""
        return _TRIGGERED_AS.get(self, self)


_STOP_TYPES = frozenset(
    {OrderType.STOP_LOSS, OrderType.STOP_LOSS_LIMIT, OrderType.TAKE_PROFIT, OrderType.TAKE_PROFIT_LIMIT}
)
_PRICED_TYPES = frozenset({OrderType.LIMIT, OrderType.STOP_LOSS_LIMIT, OrderType.TAKE_PROFIT_LIMIT})
_TRIGGERED_AS = {
    OrderType.STOP_LOSS: OrderType.MARKET,
    OrderType.STOP_LOSS_LIMIT: OrderType.LIMIT,
    OrderType.TAKE_PROFIT: OrderType.MARKET,
    OrderType.TAKE_PROFIT_LIMIT: OrderType.LIMIT,
}


class MarketStatus(StrEnum):
    """Whether a market takes new orders. Every status takes cancels."""

    TRADING = "TRADING"
    HALTED = "HALTED"
    """Trading stopped (an operator's halt): new orders are refused with MARKET_HALTED; cancels are taken."""
    CANCEL_ONLY = "CANCEL_ONLY"
    """Winding down: new orders are refused with MARKET_CANCEL_ONLY; cancels are taken."""


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


class Permission(StrEnum):
    """What an API key may do."""

    READ = "read"
    """Read the key user's orders, balances and streams."""
    TRADE = "trade"
    """Place and cancel orders as the key's user."""


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

    DUPLICATE_REQUEST = 209
    """The same request (by its request id) was applied before: answered, not applied again."""
    STOP_WOULD_TRIGGER = 210
    """A stop order whose stop price the last trade price has already reached (it would trigger at once)."""
    MARKET_HALTED = 211
    """The market is halted: it takes cancels, not new orders."""
    MARKET_CANCEL_ONLY = 212
    """The market is in cancel-only: it takes cancels, not new orders."""

    # 3xx: nothing found
    UNKNOWN_MARKET = 300
    UNKNOWN_ORDER = 301
    UNKNOWN_ASSET = 302
    NOT_FOUND = 303
    """Nothing is served at this path, or this server keeps no such data (e.g. no history database)."""
    UNKNOWN_API_KEY_TO_REVOKE = 304
    """An admin revoked (or looked up) an API key that does not exist."""

    # 4xx: who is asking (keys, signatures, rights, rates)
    MISSING_API_KEY = 400
    """No X-MBX-APIKEY header (or, on an admin route, no `Authorization: Bearer` token)."""
    UNKNOWN_API_KEY = 401
    """The API key does not exist, or was revoked."""
    INVALID_SIGNATURE = 402
    """The signature is missing, malformed, or not the HMAC of the request with the key's secret."""
    INVALID_ADMIN_TOKEN = 403
    """The `Authorization: Bearer` token is not the operator's."""
    TIMESTAMP_OUTSIDE_WINDOW = 404
    """`timestamp` is older than `recvWindow`, more than a second ahead of the server, or missing."""
    REPLAYED_REQUEST = 405
    """A state-changing request whose signature was already seen within its window."""
    MISSING_PERMISSION = 406
    """A key without the permission its route needs (a read-only key placing or cancelling)."""
    ADMIN_ONLY = 407
    """A user's key on an operator's route."""
    NOT_YOUR_USER = 408
    """The request names a user_id that is not the key's user."""
    RATE_LIMITED = 409
    """Over a rate limit: retry after the time in `Retry-After`."""
    UNKNOWN_LISTEN_KEY = 410
    """The listen key does not exist, has expired, or is another user's."""
    ORIGIN_NOT_ALLOWED = 411
    """A WebSocket upgrade from a web page of another site."""

    # 5xx: engine faults
    ENGINE_ERROR = 500
    HISTORY_BEHIND = 502
    """The history database has not stored everything yet; try again."""
    ENGINE_UNAVAILABLE = 503
    ENGINE_TIMEOUT = 504

    # 6xx: the request itself, at the HTTP or WebSocket level
    METHOD_NOT_ALLOWED = 600
    BODY_TOO_LARGE = 601
    REQUEST_TIMEOUT = 602
    UNSUPPORTED_MEDIA_TYPE = 603


class InvariantViolation(AssertionError):
    """A state that must never exist (a crossed book, funds not conserved...): a bug, reported by name."""


def require(condition: bool, message: str) -> None:
    """Raise InvariantViolation(message) unless `condition`: an invariant check that `python -O` keeps."""
    if not condition:
        raise InvariantViolation(message)
