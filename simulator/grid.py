"""A market's grid as `GET /api/v1/markets` describes it: prices in integer ticks, quantities in integer lots,
amounts in integer minor units of an asset. Text crosses this module's edge as exact decimals; nothing here
is ever a float, and a value off the grid is an error, never rounded.
"""

from __future__ import annotations

from dataclasses import dataclass
from decimal import Decimal
from typing import Any


class OffGrid(ValueError):
    """A decimal from the exchange that is not a whole number of the unit it should count."""


def whole(value: Decimal, unit: Decimal, what: str) -> int:
    """`value` / `unit` as an integer, exactly."""
    count = value / unit
    if count != count.to_integral_value():
        raise OffGrid(f"{what} {value} is not a multiple of {unit}")
    return int(count)


@dataclass(frozen=True, slots=True)
class Grid:
    """One market: its symbol, assets, tick and lot sizes, and fees in basis points."""

    symbol: str
    base: str
    quote: str
    tick_size: Decimal
    lot_size: Decimal
    base_decimals: int
    quote_decimals: int
    maker_fee_bps: int
    taker_fee_bps: int

    @classmethod
    def from_api(cls, market: dict[str, Any]) -> Grid:
        return cls(
            symbol=str(market["symbol"]),
            base=str(market["base"]),
            quote=str(market["quote"]),
            tick_size=Decimal(str(market["tickSize"])),
            lot_size=Decimal(str(market["lotSize"])),
            base_decimals=int(market["baseDecimals"]),
            quote_decimals=int(market["quoteDecimals"]),
            maker_fee_bps=int(market.get("makerFeeBps", 0)),
            taker_fee_bps=int(market.get("takerFeeBps", 0)),
        )

    # ---------------------------------------------------------------- text out
    def price_text(self, ticks: int) -> str:
        return format(self.tick_size * ticks, "f")

    def quantity_text(self, lots: int) -> str:
        return format(self.lot_size * lots, "f")

    # ---------------------------------------------------------------- text in
    def ticks(self, text: str) -> int:
        return whole(Decimal(text), self.tick_size, "price")

    def lots(self, text: str) -> int:
        return whole(Decimal(text), self.lot_size, "quantity")

    # ---------------------------------------------------------------- minor units
    def base_units(self, lots: int) -> int:
        """Base minor units in `lots`."""
        return whole(self.lot_size * lots, Decimal(1).scaleb(-self.base_decimals), "base amount")

    def quote_units(self, ticks: int, lots: int) -> int:
        """Quote minor units paid for `lots` at `ticks` (exact: tick x lot is on the quote asset's grid)."""
        return whole(self.tick_size * self.lot_size * ticks * lots, Decimal(1).scaleb(-self.quote_decimals), "value")


def asset_units(text: str, decimals: int) -> int:
    """An amount the API printed for an asset of `decimals` places, in that asset's minor units."""
    return whole(Decimal(text), Decimal(1).scaleb(-decimals), "amount")


def asset_text(units: int, decimals: int) -> str:
    return format(Decimal(units).scaleb(-decimals), "f")
