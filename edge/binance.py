"""What the Binance API's REST and WebSocket edges share: a market's Binance symbol, an order type's Binance
name, a percent change and a fill's commission."""

from __future__ import annotations

from openbell.core.grid import MarketSpec
from openbell.core.types import OrderType, Side


def binance_symbol(spec: MarketSpec) -> str:
    """`TATAINR` for TATA_INR: the base and quote joined, as Binance names symbols."""
    return spec.base.symbol + spec.quote.symbol


def binance_type(order_type: OrderType, post_only: bool = False) -> str:
    """Binance's name of an order type: `LIMIT_MAKER` for a post-only limit, else the type's own name in capitals
    (`MARKET`, `STOP_LOSS_LIMIT`...); a triggered stop keeps its type."""
    if order_type is OrderType.LIMIT and post_only:
        return "LIMIT_MAKER"
    return order_type.value.upper()


def percent_change(change: int, base: int) -> str:
    """change / base * 100 with three decimals (Binance's), rounded half away from zero, in integers only."""
    scaled = abs(change) * 100_000
    thousandths, remainder = divmod(scaled, base)
    if remainder * 2 >= base:
        thousandths += 1
    text = f"{thousandths // 1000}.{thousandths % 1000:03d}"
    return "-" + text if change < 0 and thousandths else text


def commission(spec: MarketSpec, side: Side, is_maker: bool, price: int, lots: int) -> tuple[str, str]:
    """(commission, its asset) of one fill of an order on `side`, as the ledger charges it
    (`openbell.core.ledger.Ledger._settle_trade`): a buyer pays `base received x bps // 10000` in the base
    asset, a seller `quote received x bps // 10000` in the quote asset, at the maker's or the taker's rate."""
    bps = spec.maker_fee_bps if is_maker else spec.taker_fee_bps
    if side is Side.BUY:
        base = spec.base_value(lots)
        return spec.base.format_amount(base * bps // 10_000), spec.base.symbol
    quote = spec.quote_value(price, lots)
    return spec.quote.format_amount(quote * bps // 10_000), spec.quote.symbol
