"""Errors as clients see them: `{"code": <int>, "message": "..."}` with the right HTTP status.

`STATUS_BY_CODE` is the one table from result codes to HTTP statuses, and `ApiError.of(code, message)`
the one way to build an error: 400 for malformed or invalid input and for business rejections
(insufficient funds, post-only would take, a stop that would trigger at once, a new order in a halted or
cancel-only market), 404 for an unknown market, order or asset, 409 for a market
that already exists, a reused deposit txnId, or a clientOrderId already used by one of the user's orders
(the body then carries that order as "order"), 503 when the engine is not running (nothing was applied),
504 when it did not answer in time (the outcome is then unknown); 401 for a request without valid
credentials (no key, an unknown or revoked key, a bad signature, a wrong operator token: distinct codes),
400 for a timestamp outside its window or a replayed request, 403 for a right the key does not have (a
read-only key trading, a user's key on an operator's route, a user_id that is not the key's), 429 over a
rate limit. The WebSocket server answers with the
same codes, in `{"error": {"code", "message"}, "id"}`.
"""

from __future__ import annotations

from typing import Any

from openbell.core.types import ResultCode

STATUS_BY_CODE: dict[ResultCode, int] = {
    ResultCode.OK: 200,
    ResultCode.INVALID_REQUEST: 400,
    ResultCode.INVALID_PRICE: 400,
    ResultCode.INVALID_QUANTITY: 400,
    ResultCode.INVALID_AMOUNT: 400,
    ResultCode.INVALID_ORDER: 400,
    ResultCode.INVALID_MARKET_SPEC: 400,
    ResultCode.INVALID_USER: 400,
    ResultCode.INVALID_ASSET: 400,
    ResultCode.INSUFFICIENT_FUNDS: 400,
    ResultCode.POST_ONLY_WOULD_TAKE: 400,
    ResultCode.FOK_NOT_FILLED: 400,
    ResultCode.NO_LIQUIDITY: 400,
    ResultCode.SELF_TRADE_PREVENTED: 400,
    ResultCode.DUPLICATE_CLIENT_ORDER_ID: 409,
    ResultCode.TOO_MANY_OPEN_ORDERS: 400,
    ResultCode.MARKET_EXISTS: 409,
    ResultCode.DEPOSIT_CONFLICT: 409,
    ResultCode.DUPLICATE_REQUEST: 409,
    ResultCode.STOP_WOULD_TRIGGER: 400,
    ResultCode.MARKET_HALTED: 400,
    ResultCode.MARKET_CANCEL_ONLY: 400,
    ResultCode.UNKNOWN_MARKET: 404,
    ResultCode.UNKNOWN_ORDER: 404,
    ResultCode.UNKNOWN_ASSET: 404,
    ResultCode.NOT_FOUND: 404,
    ResultCode.UNKNOWN_API_KEY_TO_REVOKE: 404,
    ResultCode.MISSING_API_KEY: 401,
    ResultCode.UNKNOWN_API_KEY: 401,
    ResultCode.INVALID_SIGNATURE: 401,
    ResultCode.INVALID_ADMIN_TOKEN: 401,
    ResultCode.TIMESTAMP_OUTSIDE_WINDOW: 400,
    ResultCode.REPLAYED_REQUEST: 400,
    ResultCode.MISSING_PERMISSION: 403,
    ResultCode.ADMIN_ONLY: 403,
    ResultCode.NOT_YOUR_USER: 403,
    ResultCode.RATE_LIMITED: 429,
    ResultCode.UNKNOWN_LISTEN_KEY: 401,
    ResultCode.ORIGIN_NOT_ALLOWED: 403,
    ResultCode.ENGINE_ERROR: 500,
    ResultCode.HISTORY_BEHIND: 503,
    ResultCode.ENGINE_UNAVAILABLE: 503,
    ResultCode.ENGINE_TIMEOUT: 504,
    ResultCode.METHOD_NOT_ALLOWED: 405,
    ResultCode.BODY_TOO_LARGE: 413,
    ResultCode.REQUEST_TIMEOUT: 408,
    ResultCode.UNSUPPORTED_MEDIA_TYPE: 415,
}


def status_for(code: ResultCode) -> int:
    return STATUS_BY_CODE.get(code, 400)


class ApiError(Exception):
    """An error a handler raises to answer the client; rendered by the app's one error handler.

    Built only through `ApiError.of`, so its status always comes from `STATUS_BY_CODE`.
    """

    def __init__(self, code: ResultCode, message: str, *, extra: dict[str, Any] | None = None) -> None:
        super().__init__(message)
        self.result = code
        self.status = status_for(code)
        self.code = int(code)
        self.message = message or code.name.replace("_", " ").lower()
        self.extra = extra
        """More fields for the error body (e.g. the order a duplicate clientOrderId names)."""
        self.headers: dict[str, str] | None = None
        """Headers of the answer (e.g. Retry-After on 429)."""

    @classmethod
    def of(cls, code: ResultCode, message: str = "", **extra: Any) -> ApiError:
        return cls(code, message, extra=extra or None)

    def body(self) -> dict[str, Any]:
        out: dict[str, Any] = {"code": self.code, "message": self.message}
        if self.extra:
            out.update(self.extra)
        return out
