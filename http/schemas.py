"""Request bodies as documented in the OpenAPI document (sanic-ext reads these dataclasses).

Handlers do their own parsing and validation (see `openbell.http.parse`); these models only describe
the API so that clients, the interactive docs and the fuzz tests know what to send.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Optional


@dataclass
class PlaceOrderBody:
    market: str
    side: str
    user_id: str
    price: Optional[str] = None  # noqa: UP045
    quantity: Optional[str] = None  # noqa: UP045
    type: Optional[str] = None  # noqa: UP045
    timeInForce: Optional[str] = None  # noqa: UP045
    postOnly: Optional[bool] = None  # noqa: UP045
    clientOrderId: Optional[str] = None  # noqa: UP045
    quoteQuantity: Optional[str] = None  # noqa: UP045
    selfTradePrevention: Optional[str] = None  # noqa: UP045


@dataclass
class CancelOrderBody:
    orderId: str
    market: str
    user_id: str


@dataclass
class OnrampBody:
    user_id: str
    asset: str
    amount: str
    txnId: str


@dataclass
class AddMarketBody:
    symbol: str
    base: str
    quote: str
    tickSize: str
    lotSize: str
    makerFeeBps: Optional[int] = None  # noqa: UP045
    takerFeeBps: Optional[int] = None  # noqa: UP045
    baseDecimals: Optional[int] = None  # noqa: UP045
    quoteDecimals: Optional[int] = None  # noqa: UP045
