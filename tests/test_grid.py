"""Specification of the grid: text in, integer ticks, lots and minor units out, and back; nothing rounded."""

from __future__ import annotations

from decimal import Decimal

import pytest
from core_helpers import INR, TATA, tata_inr

from openbell.core.grid import (
    MAX_PRICE_TICKS,
    MAX_QUANTITY_LOTS,
    Asset,
    GridError,
    MarketSpec,
    make_market_spec,
)
from openbell.core.types import ResultCode

# ------------------------------------------------------------------ prices


@pytest.mark.parametrize(
    ("text", "expected_ticks"),
    [("100", 10_000), ("100.5", 10_050), ("100.05", 10_005), ("0.01", 1), ("007.10", 710), (42, 4_200)],
)
def test_parse_price_accepts_on_grid_values(text: object, expected_ticks: int) -> None:
    spec = tata_inr()

    assert spec.parse_price(text) == expected_ticks


@pytest.mark.parametrize(
    ("text", "rule"),
    [
        ("100.005", "off the tick grid"),
        ("0.001", "finer than one tick"),
        ("0", "zero"),
        ("0.00", "zero with decimals"),
        ("-1", "negative text"),
        (-1, "negative integer"),
        ("1e2", "exponent notation"),
        ("1E2", "upper-case exponent"),
        (100.5, "float"),
        (True, "boolean"),
        (None, "missing"),
        ("", "empty"),
        (" 100", "leading blank"),
        ("100.", "trailing point"),
        (".5", "no integer part"),
        ("+100", "explicit sign"),
        ("NaN", "not a number"),
        ("Infinity", "infinity"),
        ("1_000", "underscore"),
        ("0" * 38 + "1.5", "text longer than 40 characters"),
        ("10000000000000.01", "one tick above the maximum"),
    ],
)
def test_parse_price_rejects_off_grid_or_malformed_values_with_invalid_price(text: object, rule: str) -> None:
    spec = tata_inr()

    with pytest.raises(GridError) as caught:
        spec.parse_price(text)

    assert caught.value.code is ResultCode.INVALID_PRICE, rule


def test_parse_price_accepts_exactly_the_maximum_number_of_ticks() -> None:
    spec = tata_inr()

    assert spec.parse_price("10000000000000") == MAX_PRICE_TICKS


def test_parse_price_on_a_coarse_tick_rejects_values_between_ticks() -> None:
    spec = MarketSpec("TATA_INR", TATA, INR, Decimal("0.05"), Decimal("1"))

    assert spec.parse_price("100.05") == 2_001
    with pytest.raises(GridError) as caught:
        spec.parse_price("100.02")
    assert caught.value.code is ResultCode.INVALID_PRICE


# ------------------------------------------------------------------ quantities


@pytest.mark.parametrize(("text", "expected_lots"), [("1", 1), ("25", 25), ("3.000", 3), (7, 7)])
def test_parse_quantity_accepts_whole_lots(text: object, expected_lots: int) -> None:
    spec = tata_inr()

    assert spec.parse_quantity(text) == expected_lots


@pytest.mark.parametrize(
    ("text", "rule"),
    [
        ("1.5", "half a lot"),
        ("0.01", "finer than a lot"),
        ("0", "zero"),
        ("-3", "negative"),
        ("2e3", "exponent notation"),
        (2.0, "float"),
        (False, "boolean"),
        ([1], "list"),
        ("1" * 41, "text longer than 40 characters"),
        (str(MAX_QUANTITY_LOTS + 1), "above the maximum"),
    ],
)
def test_parse_quantity_rejects_off_grid_or_malformed_values_with_invalid_quantity(text: object, rule: str) -> None:
    spec = tata_inr()

    with pytest.raises(GridError) as caught:
        spec.parse_quantity(text)

    assert caught.value.code is ResultCode.INVALID_QUANTITY, rule


def test_parse_quantity_accepts_exactly_the_maximum_number_of_lots() -> None:
    spec = tata_inr()

    assert spec.parse_quantity(str(MAX_QUANTITY_LOTS)) == MAX_QUANTITY_LOTS


def test_parse_quantity_on_a_fractional_lot_counts_lots() -> None:
    spec = MarketSpec("TATA_INR", TATA, INR, Decimal("0.04"), Decimal("0.25"))

    assert spec.parse_quantity("1.75") == 7
    with pytest.raises(GridError) as caught:
        spec.parse_quantity("1.1")
    assert caught.value.code is ResultCode.INVALID_QUANTITY


# ------------------------------------------------------------------ amounts


@pytest.mark.parametrize(("text", "expected_units"), [("1", 100), ("100.50", 10_050), ("0.01", 1), (5, 500)])
def test_parse_amount_accepts_values_within_the_assets_decimals(text: object, expected_units: int) -> None:
    assert INR.parse_amount(text) == expected_units


@pytest.mark.parametrize(
    ("text", "rule"),
    [
        ("0.001", "finer than the asset's decimals"),
        ("0", "zero"),
        ("-5", "negative"),
        ("1e3", "exponent notation"),
        (10.5, "float"),
        (True, "boolean"),
        ("9" * 41, "text longer than 40 characters"),
        ("1" + "0" * 29, "above the maximum number of minor units"),
    ],
)
def test_parse_amount_rejects_off_grid_or_malformed_values_with_invalid_amount(text: object, rule: str) -> None:
    with pytest.raises(GridError) as caught:
        INR.parse_amount(text)

    assert caught.value.code is ResultCode.INVALID_AMOUNT, rule


def test_parse_quote_amount_uses_the_quote_assets_decimals_and_names_the_field() -> None:
    spec = tata_inr()

    assert spec.parse_quote_amount("250.25") == 25_025
    with pytest.raises(GridError) as caught:
        spec.parse_quote_amount("250.255")
    assert caught.value.code is ResultCode.INVALID_AMOUNT
    assert "quoteQuantity" in caught.value.message


# ------------------------------------------------------------------ formatting


@pytest.mark.parametrize(("ticks", "text"), [(10_000, "100.00"), (10_005, "100.05"), (1, "0.01"), (0, "0.00")])
def test_format_price_writes_exactly_the_tick_decimals(ticks: int, text: str) -> None:
    spec = tata_inr()

    assert spec.format_price(ticks) == text


@pytest.mark.parametrize("text", ["0.01", "1.00", "100.05", "99999.99", "10000000000000.00"])
def test_format_price_round_trips_through_parse_price(text: str) -> None:
    spec = tata_inr()

    assert spec.format_price(spec.parse_price(text)) == text


@pytest.mark.parametrize(
    ("tick", "lot", "price", "quantity"),
    [
        ("0.05", "1", "100.05", "3"),
        ("0.5", "0.25", "12.5", "1.75"),
        ("10", "0.001", "1230", "0.007"),
        ("1", "100", "7", "2500"),
    ],
)
def test_format_round_trips_on_unusual_grids(tick: str, lot: str, price: str, quantity: str) -> None:
    spec = make_market_spec("ABC_XYZ", tick, lot, {})

    assert spec.format_price(spec.parse_price(price)) == price
    assert spec.format_quantity(spec.parse_quantity(quantity)) == quantity


def test_format_amount_round_trips_through_parse_amount() -> None:
    for text in ("0.01", "1.00", "123456789.99"):
        assert INR.format_amount(INR.parse_amount(text)) == text


def test_format_amount_of_a_zero_decimal_asset_has_no_point() -> None:
    yen = Asset("JPY", 0)

    assert yen.format_amount(1_500) == "1500"
    assert yen.parse_amount("1500") == 1_500


# ------------------------------------------------------------------ market specs


def test_market_spec_derives_units_per_lot_and_per_tick_lot() -> None:
    spec = tata_inr()

    assert spec.base_units_per_lot == 100
    assert spec.quote_units_per_tick_lot == 1
    assert spec.quote_value(ticks=10_000, lots=3) == 30_000
    assert spec.base_value(3) == 300


def test_make_market_spec_refuses_a_tick_finer_than_a_known_quote_assets_decimals() -> None:
    assets = {"INR": INR}

    with pytest.raises(GridError) as caught:
        make_market_spec("TATA_INR", "0.001", "1", assets)

    assert caught.value.code is ResultCode.INVALID_MARKET_SPEC


def test_make_market_spec_refuses_a_lot_finer_than_a_known_base_assets_decimals() -> None:
    assets = {"TATA": TATA, "INR": INR}

    with pytest.raises(GridError) as caught:
        make_market_spec("TATA_INR", "0.01", "0.001", assets)

    assert caught.value.code is ResultCode.INVALID_MARKET_SPEC


def test_make_market_spec_refuses_other_decimals_for_a_known_asset() -> None:
    with pytest.raises(GridError) as caught:
        make_market_spec("TATA_INR", "0.01", "1", {"INR": INR}, quote_decimals=4)

    assert caught.value.code is ResultCode.INVALID_MARKET_SPEC


def test_make_market_spec_keeps_a_known_assets_decimals() -> None:
    spec = make_market_spec("TATA_INR", "0.05", "1", {"INR": INR})

    assert spec.quote is INR
    assert spec.base == Asset("TATA", 8)


def test_make_market_spec_invents_the_default_decimals_for_new_assets() -> None:
    spec = make_market_spec("BTC_USDT", "0.01", "0.0001", {})

    assert spec.base == Asset("BTC", 8)
    assert spec.quote == Asset("USDT", 8)
    assert spec.base_units_per_lot == 10_000
    assert spec.quote_units_per_tick_lot == 100


def test_make_market_spec_invents_more_decimals_when_the_grid_needs_them() -> None:
    spec = make_market_spec("DOGE_BTC", "0.000001", "0.00001", {})

    assert spec.base.decimals == 8
    assert spec.quote.decimals == 11
    assert spec.quote_units_per_tick_lot == 1


def test_make_market_spec_takes_asked_decimals_for_new_assets() -> None:
    spec = make_market_spec("TATA_INR", "0.01", "1", {}, base_decimals=0, quote_decimals=2)

    assert spec.base == Asset("TATA", 0)
    assert spec.quote == Asset("INR", 2)


@pytest.mark.parametrize(
    ("symbol", "tick", "lot"),
    [
        ("TATAINR", "0.01", "1"),
        ("TATA_INR_X", "0.01", "1"),
        ("tata_inr", "0.01", "1"),
        ("INR_INR", "0.01", "1"),
        ("TATA_INR", "0", "1"),
        ("TATA_INR", "0.01", "0"),
        ("TATA_INR", "-0.01", "1"),
        ("TATA_INR", "1e-2", "1"),
        ("TATA_INR", "0.01", "0." + "0" * 18 + "1"),
    ],
)
def test_make_market_spec_rejects_malformed_specs(symbol: str, tick: str, lot: str) -> None:
    with pytest.raises(GridError) as caught:
        make_market_spec(symbol, tick, lot, {})

    assert caught.value.code in (ResultCode.INVALID_MARKET_SPEC, ResultCode.INVALID_ASSET)


@pytest.mark.parametrize(("maker", "taker"), [(-1, 0), (0, 1001)])
def test_make_market_spec_rejects_fees_outside_zero_to_a_thousand_bps(maker: int, taker: int) -> None:
    with pytest.raises(GridError) as caught:
        make_market_spec("TATA_INR", "0.01", "1", {}, maker_fee_bps=maker, taker_fee_bps=taker)

    assert caught.value.code is ResultCode.INVALID_MARKET_SPEC
