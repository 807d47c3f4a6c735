"""The Binance API (`/api/v3`) as the unmodified ccxt library uses it, against the real embedded server.

Each test trades in a market of its own (added through `/api/v1/markets`) with users of its own, so tests
share one server and never each other's book. Amounts are compared as decimal strings (ccxt's `info`, what
the server sent) or as the numbers ccxt parsed from them.
"""

from __future__ import annotations

import itertools
import json
import time
import urllib.request
from collections.abc import Iterator
from decimal import Decimal

import ccxt
import pytest
from binance_clients import BinanceKeys, deposit, rest_client
from conftest import ADMIN_TOKEN, RunningServer

_names = itertools.count(1)


@pytest.fixture(scope="module")
def keys(exchange: RunningServer) -> BinanceKeys:
    return BinanceKeys(exchange.base_url)


def add_market(base_url: str, *, tick: str = "0.5", lot: str = "0.1", maker_bps: int = 0, taker_bps: int = 0) -> str:
    """A new market `<BASE>_INR` trading at once; returns its ccxt symbol `BASE/INR`."""
    base = f"CX{next(_names)}"
    body = {
        "symbol": f"{base}_INR",
        "base": base,
        "quote": "INR",
        "tickSize": tick,
        "lotSize": lot,
        "baseDecimals": 4,
        "makerFeeBps": maker_bps,
        "takerFeeBps": taker_bps,
    }
    request = urllib.request.Request(
        f"{base_url}/api/v1/markets",
        data=json.dumps(body).encode(),
        headers={"Content-Type": "application/json", "Authorization": f"Bearer {ADMIN_TOKEN}"},
        method="POST",
    )
    with urllib.request.urlopen(request, timeout=10) as response:
        assert response.status == 201
    return f"{base}/INR"


class Venue:
    """One market of its own and a way to make funded ccxt clients on it."""

    def __init__(self, exchange: RunningServer, keys: BinanceKeys, **market: int | str) -> None:
        self.base_url = exchange.base_url
        self.keys = keys
        self.symbol = add_market(exchange.base_url, **market)  # type: ignore[arg-type]
        self.base = self.symbol.split("/")[0]
        self.clients: list[ccxt.binance] = []

    def client(self, name: str, *, inr: str = "0", base: str = "0") -> ccxt.binance:
        user = f"{self.base.lower()}-{name}"
        if inr != "0":
            deposit(self.base_url, user, "INR", inr, f"{user}-inr")
        if base != "0":
            deposit(self.base_url, user, self.base, base, f"{user}-base")
        client = rest_client(self.keys, user)
        client.load_markets()
        self.clients.append(client)
        return client


@pytest.fixture
def venue(exchange: RunningServer, keys: BinanceKeys) -> Iterator[Venue]:
    yield Venue(exchange, keys)


def free(client: ccxt.binance, asset: str) -> Decimal:
    return Decimal(str(client.fetch_balance()[asset]["free"]))


def used(client: ccxt.binance, asset: str) -> Decimal:
    return Decimal(str(client.fetch_balance()[asset]["used"]))


# ----------------------------------------------------------------------------------------- markets
def test_load_markets_shows_each_market_with_its_tick_and_lot(exchange: RunningServer, keys: BinanceKeys) -> None:
    symbol = add_market(exchange.base_url, tick="0.05", lot="0.2")
    client = rest_client(keys, "anyone")

    markets = client.load_markets()

    assert "TATA/INR" in markets
    market = markets[symbol]
    assert market["id"] == symbol.replace("/", "")
    assert market["spot"] and market["active"]
    assert market["precision"]["price"] == 0.05 and market["precision"]["amount"] == 0.2
    assert market["limits"]["amount"]["min"] == 0.2 and market["limits"]["price"]["min"] == 0.05


# ----------------------------------------------------------------------------------------- trading
def test_two_clients_trade_with_each_other_and_balances_follow(venue: Venue) -> None:
    seller = venue.client("seller", base="10")
    buyer = venue.client("buyer", inr="1000")
    symbol = venue.symbol

    ask = seller.create_order(symbol, "limit", "sell", 5, 100)
    taken = buyer.create_order(symbol, "limit", "buy", 3, 101)

    assert ask["status"] == "open" and ask["filled"] == 0
    assert taken["status"] == "closed" and taken["filled"] == 3 and taken["cost"] == 300
    assert [(t["price"], t["amount"]) for t in taken["trades"]] == [(100, 3)]
    resting = seller.fetch_order(ask["id"], symbol)
    assert resting["status"] == "open" and resting["filled"] == 3 and resting["remaining"] == 2
    assert resting["cost"] == 300 and resting["average"] == 100
    assert [o["id"] for o in seller.fetch_open_orders(symbol)] == [ask["id"]]
    assert buyer.fetch_open_orders(symbol) == []
    # The buyer paid 3 x 100 (its 101 limit gave back the difference); the seller holds 2 in its order.
    assert free(buyer, "INR") == Decimal("700") and free(buyer, venue.base) == Decimal("3")
    assert free(seller, "INR") == Decimal("300") and free(seller, venue.base) == Decimal("5")
    assert used(seller, venue.base) == Decimal("2")

    canceled = seller.cancel_order(ask["id"], symbol)

    assert canceled["status"] == "canceled" and canceled["filled"] == 3
    assert (canceled["side"], canceled["price"], canceled["amount"]) == ("sell", 100, 5)
    assert seller.fetch_order(ask["id"], symbol)["status"] == "canceled"
    assert seller.fetch_open_orders(symbol) == []
    assert free(seller, venue.base) == Decimal("7") and used(seller, venue.base) == Decimal("0")
    mine = seller.fetch_my_trades(symbol)
    theirs = buyer.fetch_my_trades(symbol)
    assert [(t["side"], t["price"], t["amount"], t["takerOrMaker"], t["order"]) for t in mine] == [
        ("sell", 100, 3, "maker", ask["id"])
    ]
    assert [(t["side"], t["price"], t["amount"], t["takerOrMaker"], t["order"]) for t in theirs] == [
        ("buy", 100, 3, "taker", taken["id"])
    ]
    assert mine[0]["id"] == theirs[0]["id"]


def test_market_data_shows_the_book_the_trades_the_candles_and_the_ticker(venue: Venue) -> None:
    maker = venue.client("maker", inr="10000", base="100")
    taker = venue.client("taker", inr="10000", base="100")
    symbol = venue.symbol
    maker.create_order(symbol, "limit", "buy", 2, 99)
    maker.create_order(symbol, "limit", "buy", 1.5, 98.5)
    maker.create_order(symbol, "limit", "sell", 4, 102)
    maker.create_order(symbol, "limit", "sell", 1, 101)
    taker.create_order(symbol, "limit", "buy", 0.5, 101)

    book = taker.fetch_order_book(symbol)
    trades = taker.fetch_trades(symbol)
    since = taker.fetch_trades(symbol, since=int(time.time() * 1000) - 60_000)  # aggTrades of a time range
    candles = taker.fetch_ohlcv(symbol, "1m")
    ticker = taker.fetch_ticker(symbol)
    tickers = taker.fetch_tickers([symbol])

    assert book["bids"] == [[99, 2], [98.5, 1.5]] and book["asks"] == [[101, 0.5], [102, 4]]
    assert isinstance(book["nonce"], int) and book["nonce"] > 0
    assert [(t["price"], t["amount"], t["side"]) for t in trades] == [(101, 0.5, "buy")]
    assert [t["id"] for t in since] == [t["id"] for t in trades]
    assert len(candles) == 1 and candles[0][1:] == [101, 101, 101, 101, 0.5]
    assert candles[0][0] == int(time.time()) // 60 * 60_000 or candles[0][0] == (int(time.time()) // 60 - 1) * 60_000
    assert ticker["last"] == 101 and ticker["baseVolume"] == 0.5 and ticker["quoteVolume"] == 50.5
    assert ticker["bid"] == 99 and ticker["ask"] == 101 and ticker["askVolume"] == 0.5
    assert list(tickers) == [symbol] and tickers[symbol]["last"] == 101


def test_ioc_fills_what_crosses_and_expires_the_rest(venue: Venue) -> None:
    seller = venue.client("seller", base="10")
    buyer = venue.client("buyer", inr="1000")
    seller.create_order(venue.symbol, "limit", "sell", 2, 50)

    order = buyer.create_order(venue.symbol, "limit", "buy", 5, 50, {"timeInForce": "IOC"})

    assert order["status"] == "expired" and order["filled"] == 2 and order["remaining"] == 3
    assert order["timeInForce"] == "IOC"
    assert free(buyer, "INR") == Decimal("900") and used(buyer, "INR") == Decimal("0")


def test_fok_without_enough_liquidity_fills_nothing(venue: Venue) -> None:
    seller = venue.client("seller", base="10")
    buyer = venue.client("buyer", inr="1000")
    seller.create_order(venue.symbol, "limit", "sell", 2, 50)

    order = buyer.create_order(venue.symbol, "limit", "buy", 3, 50, {"timeInForce": "FOK"})

    assert order["status"] == "expired" and order["filled"] == 0
    assert free(buyer, "INR") == Decimal("1000")
    assert venue.clients[0].fetch_order_book(venue.symbol)["asks"] == [[50, 2]]


def test_market_orders_by_quantity_and_by_cost(venue: Venue) -> None:
    seller = venue.client("seller", base="10")
    buyer = venue.client("buyer", inr="1000")
    seller.create_order(venue.symbol, "limit", "sell", 1, 40)
    seller.create_order(venue.symbol, "limit", "sell", 5, 50)

    by_quantity = buyer.create_order(venue.symbol, "market", "buy", 2)
    by_cost = buyer.create_order(venue.symbol, "market", "buy", None, None, {"cost": 100})

    assert by_quantity["status"] == "closed" and by_quantity["filled"] == 2 and by_quantity["cost"] == 90
    assert by_quantity["average"] == 45
    assert by_cost["status"] == "closed" and by_cost["filled"] == 2 and by_cost["cost"] == 100
    assert free(buyer, "INR") == Decimal("810") and free(buyer, venue.base) == Decimal("4")


def test_a_market_sell_by_cost_sells_until_it_has_received_that_much(venue: Venue) -> None:
    buyer = venue.client("buyer", inr="1000")
    seller = venue.client("seller", base="10")
    buyer.create_order(venue.symbol, "limit", "buy", 1, 60)
    buyer.create_order(venue.symbol, "limit", "buy", 5, 50)

    order = seller.create_order(venue.symbol, "market", "sell", None, None, {"cost": 110})

    assert order["status"] == "closed" and order["filled"] == 2 and order["cost"] == 110
    assert order["info"]["origQuoteOrderQty"] == "110.00"
    assert seller.fetch_order(order["id"], venue.symbol)["amount"] == 2
    assert free(seller, "INR") == Decimal("110") and free(seller, venue.base) == Decimal("8")


def test_limit_maker_rests_and_one_that_would_take_is_refused(venue: Venue) -> None:
    seller = venue.client("seller", base="10")
    maker = venue.client("maker", inr="1000")
    seller.create_order(venue.symbol, "limit", "sell", 1, 50)

    resting = maker.create_order(venue.symbol, "limit", "buy", 1, 49, {"postOnly": True})
    with pytest.raises(ccxt.OrderImmediatelyFillable):
        maker.create_order(venue.symbol, "limit", "buy", 1, 50, {"postOnly": True})

    assert resting["status"] == "open"
    assert [o["id"] for o in maker.fetch_open_orders(venue.symbol)] == [resting["id"]]
    assert used(maker, "INR") == Decimal("49")


def test_fills_carry_the_commission_the_ledger_charges(exchange: RunningServer, keys: BinanceKeys) -> None:
    venue = Venue(exchange, keys, maker_bps=10, taker_bps=25)
    seller = venue.client("seller", base="10")
    buyer = venue.client("buyer", inr="1000")
    seller.create_order(venue.symbol, "limit", "sell", 4, 50)

    order = buyer.create_order(venue.symbol, "limit", "buy", 4, 50)

    # The taker buyer pays 25 bps of the 4 base it receives; the maker seller 10 bps of the 200 INR.
    assert [(f["cost"], f["currency"]) for f in [t["fee"] for t in order["trades"]]] == [(0.01, venue.base)]
    assert free(buyer, venue.base) == Decimal("3.99")
    assert free(seller, "INR") == Decimal("199.80")
    [trade] = seller.fetch_my_trades(venue.symbol)
    assert trade["fee"] == {"cost": 0.2, "currency": "INR"} and trade["takerOrMaker"] == "maker"


# ----------------------------------------------------------------------------------------- errors
def test_insufficient_funds_is_insufficientfunds(venue: Venue) -> None:
    buyer = venue.client("buyer", inr="10")

    with pytest.raises(ccxt.InsufficientFunds):
        buyer.create_order(venue.symbol, "limit", "buy", 1, 11)

    assert free(buyer, "INR") == Decimal("10")


def test_unknown_orders_are_ordernotfound(venue: Venue) -> None:
    client = venue.client("nobody", inr="10")

    with pytest.raises(ccxt.OrderNotFound):
        client.cancel_order("999999", venue.symbol)
    with pytest.raises(ccxt.OrderNotFound):
        client.fetch_order("999999", venue.symbol)


def test_another_users_order_looks_unknown(venue: Venue) -> None:
    owner = venue.client("owner", inr="100")
    other = venue.client("other", inr="100")
    order = owner.create_order(venue.symbol, "limit", "buy", 1, 10)

    with pytest.raises(ccxt.OrderNotFound):
        other.cancel_order(order["id"], venue.symbol)
    with pytest.raises(ccxt.OrderNotFound):
        other.fetch_order(order["id"], venue.symbol)

    assert owner.fetch_order(order["id"], venue.symbol)["status"] == "open"


def test_an_unknown_symbol_is_badsymbol(keys: BinanceKeys) -> None:
    client = rest_client(keys, "anyone")

    with pytest.raises(ccxt.BadSymbol):
        client.public_get_depth({"symbol": "NOSUCHINR"})


def test_an_off_grid_price_is_invalidorder(venue: Venue) -> None:
    client = venue.client("grid", inr="100")

    with pytest.raises(ccxt.InvalidOrder):
        client.private_post_order(
            {"symbol": venue.symbol.replace("/", ""), "side": "BUY", "type": "LIMIT", "timeInForce": "GTC",
             "quantity": "1", "price": "10.25"}
        )  # fmt: skip


def test_a_malformed_api_key_is_authenticationerror(keys: BinanceKeys) -> None:
    client = rest_client(keys, "anyone")
    client.apiKey = "not a key!"

    with pytest.raises(ccxt.AuthenticationError):
        client.fetch_balance()


def test_a_wrong_secret_is_authenticationerror(keys: BinanceKeys) -> None:
    client = rest_client(keys, "anyone")
    client.secret = "not-the-secret"

    with pytest.raises(ccxt.AuthenticationError):
        client.fetch_balance()


# ----------------------------------------------------------------------------------------- stops
def trade_between(first: ccxt.binance, second: ccxt.binance, symbol: str, amount: float, price: float) -> None:
    """A trade at `price` between two clients: `first` rests a sell, `second` takes it."""
    first.create_order(symbol, "limit", "sell", amount, price)
    taken = second.create_order(symbol, "limit", "buy", amount, price)
    assert taken["status"] == "closed"


def test_a_stop_loss_limit_waits_with_its_stop_price_and_fills_when_a_trade_reaches_it(venue: Venue) -> None:
    holder = venue.client("holder", base="10")
    bidder = venue.client("bidder", inr="10000")
    trader = venue.client("trader", inr="10000", base="10")
    symbol = venue.symbol
    trade_between(trader, bidder, symbol, 1, 100)

    stop = holder.create_order(symbol, "STOP_LOSS_LIMIT", "sell", 2, 94, {"stopPrice": 95})
    [waiting] = holder.fetch_open_orders(symbol)
    held = used(holder, venue.base)
    bidder.create_order(symbol, "limit", "buy", 2, 94)
    bidder.create_order(symbol, "limit", "buy", 1, 95)
    trader.create_order(symbol, "limit", "sell", 1, 95)  # the last price falls to 95: the stop triggers

    assert (stop["status"], stop["info"]["type"], stop["info"]["stopPrice"]) == ("open", "STOP_LOSS_LIMIT", "95.0")
    assert (waiting["id"], waiting["triggerPrice"], waiting["price"], waiting["amount"]) == (stop["id"], 95, 94, 2)
    assert (waiting["info"]["type"], waiting["info"]["status"], waiting["info"]["isWorking"]) == (
        "STOP_LOSS_LIMIT", "NEW", False
    )  # fmt: skip
    assert held == Decimal("2")
    filled = holder.fetch_order(stop["id"], symbol)
    assert (filled["status"], filled["filled"], filled["cost"], filled["info"]["type"], filled["triggerPrice"]) == (
        "closed", 2, 188, "STOP_LOSS_LIMIT", 95
    )  # fmt: skip
    assert holder.fetch_open_orders(symbol) == []
    assert [(t["side"], t["price"], t["amount"], t["takerOrMaker"], t["order"]) for t in holder.fetch_my_trades(symbol)] == [
        ("sell", 94, 2, "taker", stop["id"])
    ]  # fmt: skip
    assert free(holder, "INR") == Decimal("188") and free(holder, venue.base) == Decimal("8")
    assert used(holder, venue.base) == Decimal("0")


def test_a_take_profit_sells_at_market_when_the_price_rises_to_it(venue: Venue) -> None:
    holder = venue.client("holder", base="10")
    bidder = venue.client("bidder", inr="10000")
    trader = venue.client("trader", inr="10000", base="10")
    symbol = venue.symbol
    trade_between(trader, bidder, symbol, 1, 100)

    order = holder.create_order(symbol, "TAKE_PROFIT", "sell", 3, None, {"triggerPrice": 105})
    [waiting] = holder.fetch_open_orders(symbol)
    bidder.create_order(symbol, "limit", "buy", 5, 103)
    trade_between(trader, bidder, symbol, 1, 105)  # the last price rises to 105: the take-profit sells at market

    assert (order["status"], order["info"]["type"]) == ("open", "TAKE_PROFIT")
    assert (waiting["id"], waiting["triggerPrice"], waiting["info"]["type"]) == (order["id"], 105, "TAKE_PROFIT")
    filled = holder.fetch_order(order["id"], symbol)
    assert (filled["status"], filled["filled"], filled["cost"]) == ("closed", 3, 309)
    assert [(t["side"], t["price"], t["amount"]) for t in holder.fetch_my_trades(symbol)] == [("sell", 103, 3)]
    assert free(holder, "INR") == Decimal("309") and free(holder, venue.base) == Decimal("7")
    assert [(o["side"], o["price"], o["remaining"]) for o in bidder.fetch_open_orders(symbol)] == [("buy", 103, 2)]


def test_canceling_a_waiting_stop_releases_its_funds(venue: Venue) -> None:
    holder = venue.client("holder", inr="1000")
    seller = venue.client("seller", base="10")
    buyer = venue.client("buyer", inr="1000")
    trade_between(seller, buyer, venue.symbol, 1, 100)

    stop = holder.create_order(venue.symbol, "STOP_LOSS_LIMIT", "buy", 2, 111, {"triggerPrice": 110})
    held = used(holder, "INR")
    canceled = holder.cancel_order(stop["id"], venue.symbol)

    assert held == Decimal("222")
    assert (canceled["status"], canceled["filled"], canceled["triggerPrice"]) == ("canceled", 0, 110)
    assert canceled["info"]["type"] == "STOP_LOSS_LIMIT"
    ended = holder.fetch_order(stop["id"], venue.symbol)  # from the history database: the stop price kept
    assert (ended["status"], ended["triggerPrice"]) == ("canceled", 110)
    assert holder.fetch_open_orders(venue.symbol) == []
    assert free(holder, "INR") == Decimal("1000") and used(holder, "INR") == Decimal("0")


def test_a_stop_the_last_price_has_reached_is_refused_as_immediately_fillable(venue: Venue) -> None:
    holder = venue.client("holder", base="10")
    seller = venue.client("seller", base="10")
    buyer = venue.client("buyer", inr="1000")
    trade_between(seller, buyer, venue.symbol, 1, 100)

    with pytest.raises(ccxt.OrderImmediatelyFillable, match="Order would trigger immediately"):
        holder.create_order(venue.symbol, "STOP_LOSS_LIMIT", "sell", 1, 100, {"stopPrice": 101})

    assert holder.fetch_open_orders(venue.symbol) == [] and used(holder, venue.base) == Decimal("0")


def test_a_stop_market_buy_by_quantity_alone_is_refused_for_want_of_a_quote_budget(venue: Venue) -> None:
    holder = venue.client("holder", inr="1000")

    # ccxt sends a STOP_LOSS's amount as `quantity`; a market buy that waits must name the quote it may spend.
    with pytest.raises(ccxt.BadRequest, match="quoteOrderQty"):
        holder.create_order(venue.symbol, "STOP_LOSS", "buy", 1, None, {"stopPrice": 110})
    placed = holder.private_post_order(
        {"symbol": venue.symbol.replace("/", ""), "side": "BUY", "type": "STOP_LOSS", "quoteOrderQty": "500",
         "stopPrice": "110", "newOrderRespType": "RESULT"}
    )  # fmt: skip

    assert (placed["type"], placed["status"], placed["stopPrice"], placed["origQuoteOrderQty"]) == (
        "STOP_LOSS", "NEW", "110.0", "500.00"
    )  # fmt: skip
    assert used(holder, "INR") == Decimal("500")


def test_a_halted_market_refuses_new_stops_and_still_cancels_a_waiting_one(venue: Venue) -> None:
    holder = venue.client("holder", base="10")
    waiting = holder.create_order(venue.symbol, "TAKE_PROFIT_LIMIT", "sell", 1, 120, {"stopPrice": 119})
    market = venue.symbol.replace("/", "_")
    request = urllib.request.Request(
        f"{venue.base_url}/api/v1/admin/markets/{market}/halt",
        headers={"Authorization": f"Bearer {ADMIN_TOKEN}"},
        method="POST",
    )
    with urllib.request.urlopen(request, timeout=10) as response:
        assert response.status == 200

    with pytest.raises(ccxt.MarketClosed):
        holder.create_order(venue.symbol, "STOP_LOSS_LIMIT", "sell", 1, 90, {"stopPrice": 91})
    canceled = holder.cancel_order(waiting["id"], venue.symbol)

    assert (canceled["status"], canceled["info"]["type"]) == ("canceled", "TAKE_PROFIT_LIMIT")
    assert holder.fetch_open_orders(venue.symbol) == [] and free(holder, venue.base) == Decimal("10")


def test_orders_are_found_by_client_order_id_and_listed_with_their_history(venue: Venue) -> None:
    seller = venue.client("seller", base="10")
    buyer = venue.client("buyer", inr="1000")
    first = buyer.create_order(venue.symbol, "limit", "buy", 1, 40, {"clientOrderId": "mine-1"})
    second = buyer.create_order(venue.symbol, "limit", "buy", 2, 41, {"clientOrderId": "mine-2"})
    seller.create_order(venue.symbol, "limit", "sell", 2, 41)

    found = buyer.fetch_order(None, venue.symbol, {"origClientOrderId": "mine-1"})
    canceled = buyer.cancel_order(None, venue.symbol, {"origClientOrderId": "mine-1"})
    listed = buyer.fetch_orders(venue.symbol)

    assert (found["id"], found["clientOrderId"], found["status"]) == (first["id"], "mine-1", "open")
    assert (canceled["id"], canceled["status"]) == (first["id"], "canceled")
    assert [(o["id"], o["clientOrderId"], o["status"], o["filled"]) for o in listed] == [
        (first["id"], "mine-1", "canceled", 0),
        (second["id"], "mine-2", "closed", 2),
    ]
    assert listed[1]["cost"] == 82 and listed[1]["average"] == 41
