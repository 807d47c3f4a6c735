"""Conversion between decimal text at the edges and the integers the engine keeps.

Inside the engine a price is an integer number of ticks, a quantity an integer number of lots, and a
balance an integer number of an asset's minor units. This module is the one place where text turns
into those integers and back, with `Decimal`. A value off the grid, negative, zero where it must be
positive, or beyond sane bounds is rejected with a `GridError` naming the reason; nothing is rounded.

Invariants a `MarketSpec` keeps (checked when it is made):
- one lot is a whole number of the base asset's minor units (`base_units_per_lot`);
- one tick times one lot is a whole number of the quote asset's minor units (`quote_units_per_tick_lot`),
  so the quote value of any (price, quantity) on the grid is an exact integer.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from decimal import Decimal, InvalidOperation, localcontext

from msgspec.structs import force_setattr

from openbell.core.types import MarketStatus, Record, ResultCode

MAX_DECIMALS = 18
"""No asset, tick or lot may be finer than 10**-18."""
MAX_PRICE_TICKS = 10**15
MAX_QUANTITY_LOTS = 10**15
MAX_AMOUNT_UNITS = 10**30
MAX_TEXT_LENGTH = 40
DEFAULT_ASSET_DECIMALS = 8

_DECIMAL_TEXT = re.compile(r"^[0-9]{1,30}(\.[0-9]{1,18})?\Z")
_SYMBOL_PART = re.compile(r"^[A-Z0-9]{1,12}\Z")


class GridError(ValueError):
    """A value that cannot be put on the grid. `code` says which kind of value it was."""

    def __init__(self, code: ResultCode, message: str) -> None:
        super().__init__(message)
        self.code = code
        self.message = message


def parse_decimal(text: object, what: str, code: ResultCode = ResultCode.INVALID_REQUEST) -> Decimal:
    """Parse a plain non-negative decimal string such as "100" or "0.015" (no sign, no exponent).

    JSON integers are accepted too; JSON floats are refused because they have already lost
    precision by the time they arrive.
    """
    text = _checked_text(text, what, code)
    try:
        return Decimal(text)
    except InvalidOperation as exc:  # pragma: no cover - the regex admits only valid text
        raise GridError(code, f"{what} is not a number: {text!r}") from exc


def _checked_text(text: object, what: str, code: ResultCode) -> str:
    if isinstance(text, bool):
        raise GridError(code, f"{what} must be a decimal string")
    if isinstance(text, int):
        text = str(text)
    if not isinstance(text, str):
        raise GridError(code, f'{what} must be a decimal string such as "1.5"')
    if len(text) > MAX_TEXT_LENGTH or not _DECIMAL_TEXT.match(text):
        raise GridError(code, f"{what} must be a plain non-negative decimal string, got {text[:MAX_TEXT_LENGTH]!r}")
    return text


def _text_units(text: str, step_units: int, step_decimals: int) -> tuple[int, bool]:
    """`text / step` for a step of `step_units` x 10**-step_decimals, in integers only: (quotient, exact)."""
    whole, _, fraction = text.partition(".")
    numerator = int(whole + fraction) * 10**step_decimals
    denominator = step_units * 10 ** len(fraction)
    quotient, remainder = divmod(numerator, denominator)
    return quotient, remainder == 0


def _step_parts(step: Decimal) -> tuple[int, int]:
    """(units, decimals) with step == units x 10**-decimals."""
    decimals = step_decimals(step)
    return int(step.scaleb(decimals)), decimals


def _units(value: Decimal, step: Decimal) -> tuple[int, bool]:
    """`value / step` as an integer, and whether the division was exact."""
    with localcontext() as ctx:
        ctx.prec = 80
        quotient = value / step
        integral = quotient.to_integral_value()
        return int(integral), integral == quotient


def step_decimals(step: Decimal) -> int:
    """How many decimal places a step such as 0.01 needs (2)."""
    exponent = step.normalize().as_tuple().exponent
    assert isinstance(exponent, int)
    return max(0, -exponent)


class Asset(Record, frozen=True):
    symbol: str
    """Upper-case name such as "INR"."""
    decimals: int
    """How many minor units make one whole unit, as a power of ten (INR: 2)."""

    def __post_init__(self) -> None:
        if not _SYMBOL_PART.match(self.symbol):
            raise GridError(ResultCode.INVALID_ASSET, f"asset symbol must be 1-12 of A-Z0-9, got {self.symbol!r}")
        if not 0 <= self.decimals <= MAX_DECIMALS:
            raise GridError(ResultCode.INVALID_ASSET, f"asset decimals must be 0..{MAX_DECIMALS}")

    def parse_amount(self, text: object, what: str = "amount") -> int:
        """Positive amount text -> minor units, rejecting anything finer than the asset's decimals."""
        checked = _checked_text(text, what, ResultCode.INVALID_AMOUNT)
        units, exact = _text_units(checked, 1, self.decimals)
        if not exact:
            raise GridError(
                ResultCode.INVALID_AMOUNT, f"{what} has more than {self.decimals} decimals for {self.symbol}"
            )
        if units <= 0:
            raise GridError(ResultCode.INVALID_AMOUNT, f"{what} must be positive")
        if units > MAX_AMOUNT_UNITS:
            raise GridError(ResultCode.INVALID_AMOUNT, f"{what} is too large")
        return units

    def format_amount(self, units: int) -> str:
        return _format_scaled(units, self.decimals)


def _format_scaled(units: int, decimals: int) -> str:
    """Exact text for units * 10**-decimals, with exactly `decimals` places."""
    if decimals == 0:
        return str(units)
    sign = "-" if units < 0 else ""
    digits = str(abs(units)).rjust(decimals + 1, "0")
    return f"{sign}{digits[:-decimals]}.{digits[-decimals:]}"


class MarketSpec(Record, frozen=True):
    """A market's grid and fees. Prices are in quote per one base.

    The four fields after the fees are derived from the others when a spec is made or decoded (whatever
    values they were given), so a spec that crossed the wire is checked and complete. `status` is the
    market's trading status as the balance stage last set it (`SetMarketStatus`); the registry shows it.
    """

    symbol: str
    """"BASE_QUOTE", such as "TATA_INR"."""
    base: Asset
    quote: Asset
    tick_size: Decimal
    """Smallest price step, in quote."""
    lot_size: Decimal
    """Smallest quantity step, in base."""
    maker_fee_bps: int = 0
    """Fee charged to the resting side of a trade, in basis points of what it receives."""
    taker_fee_bps: int = 0
    """Fee charged to the incoming side of a trade, in basis points of what it receives."""
    base_units_per_lot: int = 0
    """Base minor units in one lot (derived)."""
    quote_units_per_tick_lot: int = 0
    """Quote minor units in one tick times one lot (derived)."""
    tick_parts: tuple[int, int] = (0, 0)
    """The tick size as (units, decimals): units x 10**-decimals (derived)."""
    lot_parts: tuple[int, int] = (0, 0)
    """The lot size as (units, decimals) (derived)."""
    status: MarketStatus = MarketStatus.TRADING
    """Whether the market takes new orders (TRADING), or only cancels (HALTED, CANCEL_ONLY)."""

    def with_status(self, status: MarketStatus) -> MarketSpec:
        """The same market with another trading status."""
        return MarketSpec(
            self.symbol,
            self.base,
            self.quote,
            self.tick_size,
            self.lot_size,
            self.maker_fee_bps,
            self.taker_fee_bps,
            status=status,
        )

    def __post_init__(self) -> None:
        if self.symbol != f"{self.base.symbol}_{self.quote.symbol}":
            raise GridError(ResultCode.INVALID_MARKET_SPEC, f"symbol must be BASE_QUOTE, got {self.symbol!r}")
        if self.base.symbol == self.quote.symbol:
            raise GridError(ResultCode.INVALID_MARKET_SPEC, "base and quote must differ")
        for name, step in (("tickSize", self.tick_size), ("lotSize", self.lot_size)):
            if not step.is_finite() or step <= 0 or step_decimals(step) > MAX_DECIMALS or step > 10**9:
                raise GridError(
                    ResultCode.INVALID_MARKET_SPEC,
                    f"{name} must be a positive decimal of at most {MAX_DECIMALS} places",
                )
        for name, fee in (("makerFeeBps", self.maker_fee_bps), ("takerFeeBps", self.taker_fee_bps)):
            if not 0 <= fee <= 1000:
                raise GridError(ResultCode.INVALID_MARKET_SPEC, f"{name} must be 0..1000 basis points")
        _, base_exact = _units(self.lot_size, Decimal(1).scaleb(-self.base.decimals))
        if not base_exact:
            raise GridError(
                ResultCode.INVALID_MARKET_SPEC,
                f"lotSize {self.lot_size} is finer than {self.base.symbol}'s {self.base.decimals} decimals",
            )
        _, quote_exact = _units(self.tick_size * self.lot_size, Decimal(1).scaleb(-self.quote.decimals))
        if not quote_exact:
            raise GridError(
                ResultCode.INVALID_MARKET_SPEC,
                f"tickSize x lotSize is finer than {self.quote.symbol}'s {self.quote.decimals} decimals",
            )
        force_setattr(self, "base_units_per_lot", _units(self.lot_size, Decimal(1).scaleb(-self.base.decimals))[0])
        force_setattr(self, "tick_parts", _step_parts(self.tick_size))
        force_setattr(self, "lot_parts", _step_parts(self.lot_size))
        force_setattr(
            self,
            "quote_units_per_tick_lot",
            _units(self.tick_size * self.lot_size, Decimal(1).scaleb(-self.quote.decimals))[0],
        )

    def parse_price(self, text: object) -> int:
        checked = _checked_text(text, "price", ResultCode.INVALID_PRICE)
        ticks, exact = _text_units(checked, *self.tick_parts)
        if not exact:
            raise GridError(
                ResultCode.INVALID_PRICE, f"price {text} is not a multiple of the tick size {self.tick_size}"
            )
        if ticks <= 0:
            raise GridError(ResultCode.INVALID_PRICE, "price must be positive")
        if ticks > MAX_PRICE_TICKS:
            raise GridError(ResultCode.INVALID_PRICE, f"price is above the limit of {MAX_PRICE_TICKS} ticks")
        return ticks

    def parse_quantity(self, text: object) -> int:
        checked = _checked_text(text, "quantity", ResultCode.INVALID_QUANTITY)
        lots, exact = _text_units(checked, *self.lot_parts)
        if not exact:
            raise GridError(
                ResultCode.INVALID_QUANTITY, f"quantity {text} is not a multiple of the lot size {self.lot_size}"
            )
        if lots <= 0:
            raise GridError(ResultCode.INVALID_QUANTITY, "quantity must be positive")
        if lots > MAX_QUANTITY_LOTS:
            raise GridError(ResultCode.INVALID_QUANTITY, f"quantity is above the limit of {MAX_QUANTITY_LOTS} lots")
        return lots

    def parse_quote_amount(self, text: object) -> int:
        return self.quote.parse_amount(text, "quoteQuantity")

    def format_price(self, ticks: int) -> str:
        units, decimals = self.tick_parts
        return _format_scaled(ticks * units, decimals)

    def format_quantity(self, lots: int) -> str:
        units, decimals = self.lot_parts
        return _format_scaled(lots * units, decimals)

    def quote_value(self, ticks: int, lots: int) -> int:
        """Quote minor units for `lots` at `ticks`: exact by the spec's invariant."""
        return ticks * lots * self.quote_units_per_tick_lot

    def base_value(self, lots: int) -> int:
        return lots * self.base_units_per_lot


def make_market_spec(
    symbol: str,
    tick_size: object,
    lot_size: object,
    assets: Mapping[str, Asset],
    *,
    maker_fee_bps: int = 0,
    taker_fee_bps: int = 0,
    base_decimals: int | None = None,
    quote_decimals: int | None = None,
) -> MarketSpec:
    """Build a spec from text (tick and lot sizes as decimal strings; anything else is refused), taking known
    assets from `assets` and inventing decimals for new ones.

    A new asset gets `DEFAULT_ASSET_DECIMALS` or as many as the grid needs, whichever is more. A known
    asset keeps its decimals; if they are too coarse for the grid, the spec is refused.
    """
    if not isinstance(symbol, str) or symbol.count("_") != 1:
        raise GridError(ResultCode.INVALID_MARKET_SPEC, "symbol must look like BASE_QUOTE, such as BTC_USDT")
    base_name, quote_name = symbol.split("_")
    tick = parse_decimal(tick_size, "tickSize", ResultCode.INVALID_MARKET_SPEC)
    lot = parse_decimal(lot_size, "lotSize", ResultCode.INVALID_MARKET_SPEC)
    if tick <= 0 or lot <= 0:
        raise GridError(ResultCode.INVALID_MARKET_SPEC, "tickSize and lotSize must be positive")

    def asset(name: str, wanted: int | None, needed: int) -> Asset:
        known = assets.get(name)
        if known is not None:
            if wanted is not None and wanted != known.decimals:
                raise GridError(ResultCode.INVALID_MARKET_SPEC, f"{name} already has {known.decimals} decimals")
            return known
        decimals = wanted if wanted is not None else max(DEFAULT_ASSET_DECIMALS, needed)
        if decimals > MAX_DECIMALS:
            raise GridError(
                ResultCode.INVALID_MARKET_SPEC, f"the grid needs more than {MAX_DECIMALS} decimals of {name}"
            )
        return Asset(name, decimals)

    base = asset(base_name, base_decimals, step_decimals(lot))
    quote = asset(quote_name, quote_decimals, step_decimals(tick * lot))
    return MarketSpec(symbol, base, quote, tick, lot, maker_fee_bps, taker_fee_bps)
