"""The REST API end to end: real HTTP (httpx) against `python run.py` on a free port.

One server is shared by the module, so every test uses its own users, and every test that trades
(except the quick start, which is the only one to touch TATA_INR's book) first adds a market of its
own through POST /markets. Expected figures are worked out by hand and compared as exact decimal
strings.
"""

from __future__ import annotations

import re
import time
import uuid
from decimal import Decimal
from typing import Any

import httpx

ORDER_REPLY_KEYS = {"orderId", "market", "status", "executedQty", "remainingQty", "fills"}
FILL_KEYS = {"price", "quantity", "tradeId"}
KLINE_INTERVALS = ("1m", "5m", "15m", "1h", "4h", "1d", "1w")


# ----------------------------------------------------------------------------- helpers
def unique(prefix: str) -> str:
    return f"{prefix}-{uuid.uuid4().hex[:12]}"


def new_market(client: httpx.Client, tick_size: str = "0.01", lot_size: str = "1", base_decimals: int = 2) -> str:
    """A market of this test's own (BASE_INR, INR with its 2 decimals), trading at once."""
    base = "M" + uuid.uuid4().hex[:10].upper()
    symbol = f"{base}_INR"
    response = client.post(
        "/markets",
        json={
            "symbol": symbol,
            "base": base,
            "quote": "INR",
            "tickSize": tick_size,
            "lotSize": lot_size,
            "baseDecimals": base_decimals,
        },
    )
    assert response.status_code == 201, response.text
    return symbol


def fund(client: httpx.Client, user_id: str, asset: str, amount: str) -> None:
    response = client.post(
        "/onramp", json={"user_id": user_id, "asset": asset, "amount": amount, "txnId": unique("txn")}
    )
    assert response.status_code == 200, response.text


def place(client: httpx.Client, **order: Any) -> dict[str, Any]:
    response = client.post("/order", json=order)
    assert response.status_code == 200, response.text
    reply: dict[str, Any] = response.json()
    return reply


def cancel(client: httpx.Client, market: str, order_id: str, user_id: str) -> dict[str, Any]:
    response = client.request("DELETE", "/order", json={"orderId": order_id, "market": market, "user_id": user_id})
    assert response.status_code == 200, response.text
    reply: dict[str, Any] = response.json()
    return reply


def balances(client: httpx.Client, user_id: str) -> dict[str, dict[str, str]]:
    response = client.get("/balance", params={"user_id": user_id})
    assert response.status_code == 200, response.text
    reply: dict[str, dict[str, str]] = response.json()
    return reply


def trade_at(client: httpx.Client, market: str, seller: str, buyer: str, price: str, quantity: str) -> None:
    """One trade: the seller rests a sell, the buyer takes all of it at the same price."""
    place(client, market=market, price=price, quantity=quantity, side="sell", user_id=seller)
    taken = place(client, market=market, price=price, quantity=quantity, side="buy", user_id=buyer)
    assert taken["status"] == "FILLED", taken


def traders(
    client: httpx.Client, market: str, base_amount: str = "1000", quote_amount: str = "100000"
) -> tuple[str, str]:
    seller, buyer = unique("seller"), unique("buyer")
    fund(client, seller, market.split("_")[0], base_amount)
    fund(client, buyer, "INR", quote_amount)
    return seller, buyer


# ----------------------------------------------------------------------------- service endpoints
def test_health_answers_ok_with_the_number_of_markets(client: httpx.Client) -> None:
    response = client.get("/health")

    assert response.status_code == 200
    body = response.json()
    assert body["status"] == "ok"
    assert body["markets"] == len(client.get("/markets").json())
    assert isinstance(body["engineLatencyMs"], int | float)


def test_markets_lists_the_boot_market_with_its_grid(client: httpx.Client) -> None:
    response = client.get("/markets")

    assert response.status_code == 200
    tata = next(m for m in response.json() if m["symbol"] == "TATA_INR")
    assert tata == {
        "symbol": "TATA_INR",
        "base": "TATA",
        "quote": "INR",
        "tickSize": "0.01",
        "lotSize": "1",
        "baseDecimals": 2,
        "quoteDecimals": 2,
        "makerFeeBps": 0,
        "takerFeeBps": 0,
        "status": "TRADING",
    }


# ----------------------------------------------------------------------------- the quick start
def test_quick_start_fills_at_the_resting_price_and_settles_exact_balances(client: httpx.Client) -> None:
    buyer, seller = unique("qs-buyer"), unique("qs-seller")
    fund(client, buyer, "INR", "1000")
    fund(client, seller, "TATA", "50")

    resting = place(client, market="TATA_INR", price="100", quantity="10", side="sell", user_id=seller)
    taken = place(client, market="TATA_INR", price="101", quantity="4", side="buy", user_id=buyer)

    assert resting == {
        "orderId": resting["orderId"],
        "market": "TATA_INR",
        "status": "NEW",
        "executedQty": "0",
        "remainingQty": "10",
        "fills": [],
    }
    assert set(taken) == ORDER_REPLY_KEYS
    assert taken["status"] == "FILLED"
    assert (taken["executedQty"], taken["remainingQty"]) == ("4", "0")
    [fill] = taken["fills"]
    assert set(fill) == FILL_KEYS
    assert (fill["price"], fill["quantity"]) == ("100.00", "4")

    depth = client.get("/depth", params={"symbol": "TATA_INR"}).json()
    assert depth["bids"] == []
    assert depth["asks"] == [["100.00", "6"]]
    assert isinstance(depth["lastUpdateId"], int)

    newest = client.get("/trades", params={"symbol": "TATA_INR"}).json()[0]
    assert newest["id"] == fill["tradeId"]
    assert (newest["price"], newest["quantity"], newest["quoteQuantity"]) == ("100.00", "4", "400.00")
    assert newest["isBuyerMaker"] is False

    assert balances(client, buyer) == {
        "INR": {"available": "600.00", "locked": "0.00"},
        "TATA": {"available": "4.00", "locked": "0.00"},
    }
    assert balances(client, seller) == {
        "INR": {"available": "400.00", "locked": "0.00"},
        "TATA": {"available": "40.00", "locked": "6.00"},
    }


def test_order_replies_name_no_counterparty(client: httpx.Client) -> None:
    market = new_market(client)
    seller, buyer = traders(client, market)
    place(client, market=market, price="10", quantity="2", side="sell", user_id=seller)

    taken = place(client, market=market, price="10", quantity="2", side="buy", user_id=buyer)

    assert set(taken) == ORDER_REPLY_KEYS
    assert all(set(fill) == FILL_KEYS for fill in taken["fills"])
    assert seller not in str(taken)


# ----------------------------------------------------------------------------- market data
KNOWN_TRADES = (("80.00", "2"), ("85.50", "1"), ("79.25", "3"), ("81.23", "4"))
"""open 80.00, high 85.50, low 79.25, close 81.23; volume 2+1+3+4 = 10;
quote 160.00 + 85.50 + 237.75 + 324.92 = 808.17; change 1.23 = 1.5375 % of 80.00, shown as 1.54."""


def fold(candles: list[dict[str, Any]]) -> dict[str, Any]:
    """The candles of a range folded into one (they split only if the trades straddled a boundary)."""
    return {
        "open": candles[0]["open"],
        "high": max((c["high"] for c in candles), key=Decimal),
        "low": min((c["low"] for c in candles), key=Decimal),
        "close": candles[-1]["close"],
        "volume": str(sum(Decimal(c["volume"]) for c in candles)),
        "quoteVolume": str(sum(Decimal(c["quoteVolume"]) for c in candles)),
        "trades": sum(c["trades"] for c in candles),
    }


def test_klines_of_every_interval_aggregate_a_known_trade_sequence(client: httpx.Client) -> None:
    market = new_market(client)
    seller, buyer = traders(client, market)
    for price, quantity in KNOWN_TRADES:
        trade_at(client, market, seller, buyer, price, quantity)

    for interval in KLINE_INTERVALS:
        response = client.get("/klines", params={"symbol": market, "interval": interval})

        assert response.status_code == 200, response.text
        candles = response.json()
        assert 1 <= len(candles) <= 2, (interval, candles)
        for candle in candles:
            assert candle["end"] > candle["start"]
            assert re.fullmatch(r"[0-9]+\.[0-9]{2}", candle["open"]), candle
            assert re.fullmatch(r"[0-9]+\.[0-9]{2}", candle["quoteVolume"]), candle
            assert re.fullmatch(r"[0-9]+", candle["volume"]), candle
        assert fold(candles) == {
            "open": "80.00",
            "high": "85.50",
            "low": "79.25",
            "close": "81.23",
            "volume": "10",
            "quoteVolume": "808.17",
            "trades": 4,
        }, interval
    one_minute = client.get("/klines", params={"symbol": market, "interval": "1m"}).json()
    assert all(c["end"] - c["start"] == 60 and c["start"] % 60 == 0 for c in one_minute)


def test_klines_keep_to_the_start_and_end_time(client: httpx.Client) -> None:
    market = new_market(client)
    seller, buyer = traders(client, market)
    trade_at(client, market, seller, buyer, "12.34", "5")
    now = int(time.time())

    around = client.get(
        "/klines", params={"symbol": market, "interval": "1m", "startTime": now - 600, "endTime": now + 600}
    )
    after = client.get(
        "/klines", params={"symbol": market, "interval": "1m", "startTime": now + 120, "endTime": now + 600}
    )
    before = client.get("/klines", params={"symbol": market, "interval": "1h", "startTime": 0, "endTime": now - 7200})

    assert fold(around.json())["volume"] == "5"
    assert after.json() == []
    assert before.json() == []


def test_ticker_reports_24h_statistics_of_a_known_trade_sequence(client: httpx.Client) -> None:
    market = new_market(client)
    seller, buyer = traders(client, market)
    for price, quantity in KNOWN_TRADES:
        trade_at(client, market, seller, buyer, price, quantity)

    ticker = client.get("/ticker", params={"symbol": market})

    assert ticker.status_code == 200
    assert ticker.json() == {
        "symbol": market,
        "firstPrice": "80.00",
        "lastPrice": "81.23",
        "high": "85.50",
        "low": "79.25",
        "priceChange": "1.23",
        "priceChangePercent": "1.54",
        "volume": "10",
        "quoteVolume": "808.17",
        "trades": 4,
    }
    every = client.get("/tickers").json()
    assert [t for t in every if t["symbol"] == market] == [ticker.json()]


def test_ticker_of_a_falling_market_shows_a_negative_change(client: httpx.Client) -> None:
    market = new_market(client)
    seller, buyer = traders(client, market)
    trade_at(client, market, seller, buyer, "300.00", "1")
    trade_at(client, market, seller, buyer, "296.50", "1")

    ticker = client.get("/ticker", params={"symbol": market}).json()

    # -3.50 / 300.00 = -1.1666... %, rounded half away from zero to -1.17
    assert (ticker["priceChange"], ticker["priceChangePercent"]) == ("-3.50", "-1.17")
    assert (ticker["high"], ticker["low"], ticker["quoteVolume"]) == ("300.00", "296.50", "596.50")


def test_ticker_of_a_market_without_trades_is_all_zero(client: httpx.Client) -> None:
    market = new_market(client)

    ticker = client.get("/ticker", params={"symbol": market}).json()

    assert ticker == {
        "symbol": market,
        "firstPrice": "0.00",
        "lastPrice": "0.00",
        "high": "0.00",
        "low": "0.00",
        "priceChange": "0.00",
        "priceChangePercent": "0.00",
        "volume": "0",
        "quoteVolume": "0.00",
        "trades": 0,
    }
    assert client.get("/klines", params={"symbol": market, "interval": "1m"}).json() == []


def test_depth_aggregates_each_price_level_best_first_and_honours_the_limit(client: httpx.Client) -> None:
    market = new_market(client)
    seller, buyer = traders(client, market)
    for price, quantity in (("101", "1"), ("101", "2"), ("102.5", "4"), ("103", "1")):
        place(client, market=market, price=price, quantity=quantity, side="sell", user_id=seller)
    for price, quantity in (("99", "3"), ("98", "1"), ("99", "1")):
        place(client, market=market, price=price, quantity=quantity, side="buy", user_id=buyer)

    full = client.get("/depth", params={"symbol": market}).json()
    top = client.get("/depth", params={"symbol": market, "limit": 1}).json()

    assert full["bids"] == [["99.00", "4"], ["98.00", "1"]]
    assert full["asks"] == [["101.00", "3"], ["102.50", "4"], ["103.00", "1"]]
    assert (top["bids"], top["asks"]) == ([["99.00", "4"]], [["101.00", "3"]])
    assert top["lastUpdateId"] >= 1


def test_trades_come_newest_first_and_honour_the_limit(client: httpx.Client) -> None:
    market = new_market(client)
    seller, buyer = traders(client, market)
    for price in ("10.00", "11.00", "12.00"):
        trade_at(client, market, seller, buyer, price, "1")

    every = client.get("/trades", params={"symbol": market}).json()
    newest_two = client.get("/trades", params={"symbol": market, "limit": 2}).json()

    assert [t["price"] for t in every] == ["12.00", "11.00", "10.00"]
    assert [t["id"] for t in every] == sorted((t["id"] for t in every), reverse=True)
    assert newest_two == every[:2]
    assert set(every[0]) == {"id", "price", "quantity", "quoteQuantity", "timestamp", "isBuyerMaker"}


# ----------------------------------------------------------------------------- markets at run time
def test_a_market_added_at_run_time_trades_at_once(client: httpx.Client) -> None:
    added = client.post(
        "/markets",
        json={"symbol": "BTC_USDT", "base": "BTC", "quote": "USDT", "tickSize": "0.01", "lotSize": "0.0001"},
    )
    assert added.status_code == 201, added.text
    assert added.json()["symbol"] == "BTC_USDT"
    assert (added.json()["tickSize"], added.json()["lotSize"]) == ("0.01", "0.0001")
    assert "BTC_USDT" in [m["symbol"] for m in client.get("/markets").json()]
    seller, buyer = unique("btc-seller"), unique("btc-buyer")
    fund(client, seller, "BTC", "1")
    fund(client, buyer, "USDT", "10000")

    place(client, market="BTC_USDT", price="30000.00", quantity="0.5", side="sell", user_id=seller)
    taken = place(client, market="BTC_USDT", price="30000.50", quantity="0.1234", side="buy", user_id=buyer)

    assert taken["status"] == "FILLED"
    assert [(f["price"], f["quantity"]) for f in taken["fills"]] == [("30000.00", "0.1234")]
    # 0.1234 x 30000.00 = 3702 USDT; BTC and USDT are new assets, so they get 8 decimals
    assert balances(client, buyer) == {
        "BTC": {"available": "0.12340000", "locked": "0.00000000"},
        "USDT": {"available": "6298.00000000", "locked": "0.00000000"},
    }
    assert balances(client, seller) == {
        "BTC": {"available": "0.50000000", "locked": "0.37660000"},
        "USDT": {"available": "3702.00000000", "locked": "0.00000000"},
    }
    assert client.get("/depth", params={"symbol": "BTC_USDT"}).json()["asks"] == [["30000.00", "0.3766"]]


# ----------------------------------------------------------------------------- orders
def test_canceling_a_partially_filled_order_releases_the_unfilled_rest(client: httpx.Client) -> None:
    market = new_market(client)
    seller, buyer = traders(client, market, base_amount="50")
    resting = place(client, market=market, price="100", quantity="10", side="sell", user_id=seller)
    place(client, market=market, price="100", quantity="4", side="buy", user_id=buyer)

    canceled = cancel(client, market, resting["orderId"], seller)

    assert canceled == {
        "orderId": resting["orderId"],
        "market": market,
        "status": "CANCELED",
        "executedQty": "4",
        "remainingQty": "6",
    }
    base = market.split("_")[0]
    assert balances(client, seller) == {
        base: {"available": "46.00", "locked": "0.00"},
        "INR": {"available": "400.00", "locked": "0.00"},
    }
    assert client.get("/order/open", params={"user_id": seller}).json() == []
    assert client.get("/depth", params={"symbol": market}).json()["asks"] == []


def test_canceling_a_resting_order_returns_all_its_held_funds(client: httpx.Client) -> None:
    market = new_market(client)
    _, buyer = traders(client, market, quote_amount="500")
    resting = place(client, market=market, price="45.5", quantity="10", side="buy", user_id=buyer)
    assert balances(client, buyer)["INR"] == {"available": "45.00", "locked": "455.00"}

    canceled = cancel(client, market, resting["orderId"], buyer)

    assert (canceled["status"], canceled["executedQty"], canceled["remainingQty"]) == ("CANCELED", "0", "10")
    assert balances(client, buyer)["INR"] == {"available": "500.00", "locked": "0.00"}


def test_a_buy_above_the_best_ask_pays_the_ask_and_keeps_the_difference(client: httpx.Client) -> None:
    market = new_market(client)
    seller, buyer = traders(client, market, quote_amount="1000")
    place(client, market=market, price="90", quantity="5", side="sell", user_id=seller)

    taken = place(client, market=market, price="110", quantity="5", side="buy", user_id=buyer)

    assert [(f["price"], f["quantity"]) for f in taken["fills"]] == [("90.00", "5")]
    assert balances(client, buyer)["INR"] == {"available": "550.00", "locked": "0.00"}


def test_a_sell_below_the_best_bid_receives_the_bid_price(client: httpx.Client) -> None:
    market = new_market(client)
    seller, buyer = traders(client, market, base_amount="10", quote_amount="1000")
    place(client, market=market, price="90", quantity="5", side="buy", user_id=buyer)

    taken = place(client, market=market, price="80", quantity="5", side="sell", user_id=seller)

    assert [(f["price"], f["quantity"]) for f in taken["fills"]] == [("90.00", "5")]
    base = market.split("_")[0]
    assert balances(client, seller) == {
        base: {"available": "5.00", "locked": "0.00"},
        "INR": {"available": "450.00", "locked": "0.00"},
    }
    assert balances(client, buyer) == {
        base: {"available": "5.00", "locked": "0.00"},
        "INR": {"available": "550.00", "locked": "0.00"},
    }


def test_a_market_buy_by_quote_quantity_spends_no_more_than_that(client: httpx.Client) -> None:
    market = new_market(client)
    seller, buyer = traders(client, market, quote_amount="1000")
    place(client, market=market, price="100", quantity="5", side="sell", user_id=seller)
    place(client, market=market, price="102", quantity="5", side="sell", user_id=seller)

    # 706.00 buys 5 at 100.00 (500.00) and 2 at 102.00 (204.00); the 2.00 left is less than one lot
    taken = place(client, market=market, type="market", quoteQuantity="706.00", side="buy", user_id=buyer)

    assert taken["status"] == "FILLED"
    assert taken["executedQty"] == "7"
    assert [(f["price"], f["quantity"]) for f in taken["fills"]] == [("100.00", "5"), ("102.00", "2")]
    base = market.split("_")[0]
    assert balances(client, buyer) == {
        base: {"available": "7.00", "locked": "0.00"},
        "INR": {"available": "296.00", "locked": "0.00"},
    }


def test_a_market_sell_by_quantity_sweeps_the_bids(client: httpx.Client) -> None:
    market = new_market(client)
    seller, buyer = traders(client, market, base_amount="10", quote_amount="1000")
    place(client, market=market, price="50", quantity="2", side="buy", user_id=buyer)
    place(client, market=market, price="49", quantity="2", side="buy", user_id=buyer)

    taken = place(client, market=market, type="market", quantity="3", side="sell", user_id=seller)

    assert (taken["status"], taken["executedQty"], taken["remainingQty"]) == ("FILLED", "3", "0")
    assert [(f["price"], f["quantity"]) for f in taken["fills"]] == [("50.00", "2"), ("49.00", "1")]
    assert balances(client, seller)["INR"] == {"available": "149.00", "locked": "0.00"}


def test_ioc_fills_what_crosses_and_expires_the_rest(client: httpx.Client) -> None:
    market = new_market(client)
    seller, buyer = traders(client, market, quote_amount="10000")
    place(client, market=market, price="100", quantity="3", side="sell", user_id=seller)

    taken = place(client, market=market, price="101", quantity="5", side="buy", user_id=buyer, timeInForce="IOC")

    assert (taken["status"], taken["executedQty"], taken["remainingQty"]) == ("EXPIRED", "3", "2")
    assert [(f["price"], f["quantity"]) for f in taken["fills"]] == [("100.00", "3")]
    assert client.get("/order/open", params={"user_id": buyer}).json() == []
    assert balances(client, buyer)["INR"] == {"available": "9700.00", "locked": "0.00"}


def test_ioc_that_crosses_nothing_expires_unfilled(client: httpx.Client) -> None:
    market = new_market(client)
    _, buyer = traders(client, market, quote_amount="100")

    taken = place(client, market=market, price="10", quantity="1", side="buy", user_id=buyer, timeInForce="IOC")

    assert (taken["status"], taken["executedQty"], taken["fills"]) == ("EXPIRED", "0", [])
    assert balances(client, buyer)["INR"] == {"available": "100.00", "locked": "0.00"}


def test_fok_without_enough_liquidity_fills_nothing(client: httpx.Client) -> None:
    market = new_market(client)
    seller, buyer = traders(client, market, quote_amount="10000")
    place(client, market=market, price="100", quantity="3", side="sell", user_id=seller)

    taken = place(client, market=market, price="100", quantity="5", side="buy", user_id=buyer, timeInForce="FOK")

    assert (taken["status"], taken["executedQty"], taken["fills"]) == ("EXPIRED", "0", [])
    assert client.get("/depth", params={"symbol": market}).json()["asks"] == [["100.00", "3"]]
    assert balances(client, buyer)["INR"] == {"available": "10000.00", "locked": "0.00"}


def test_fok_with_enough_liquidity_fills_completely(client: httpx.Client) -> None:
    market = new_market(client)
    seller, buyer = traders(client, market, quote_amount="10000")
    place(client, market=market, price="100", quantity="3", side="sell", user_id=seller)
    place(client, market=market, price="101", quantity="3", side="sell", user_id=seller)

    taken = place(client, market=market, price="101", quantity="5", side="buy", user_id=buyer, timeInForce="FOK")

    assert (taken["status"], taken["executedQty"], taken["remainingQty"]) == ("FILLED", "5", "0")
    assert [(f["price"], f["quantity"]) for f in taken["fills"]] == [("100.00", "3"), ("101.00", "2")]


def test_a_post_only_order_that_would_not_take_rests(client: httpx.Client) -> None:
    market = new_market(client)
    seller, buyer = traders(client, market)
    place(client, market=market, price="100", quantity="1", side="sell", user_id=seller)

    resting = place(client, market=market, price="99.99", quantity="1", side="buy", user_id=buyer, postOnly=True)

    assert (resting["status"], resting["remainingQty"]) == ("NEW", "1")
    assert client.get("/depth", params={"symbol": market}).json()["bids"] == [["99.99", "1"]]


def test_client_order_id_is_echoed_in_the_reply_and_open_orders(client: httpx.Client) -> None:
    market = new_market(client)
    _, buyer = traders(client, market)

    placed = place(client, market=market, price="1", quantity="1", side="buy", user_id=buyer, clientOrderId="my-1")

    assert placed["clientOrderId"] == "my-1"
    [listed] = client.get("/order/open", params={"user_id": buyer}).json()
    assert (listed["orderId"], listed["clientOrderId"]) == (placed["orderId"], "my-1")


def test_open_orders_span_every_market_and_filter_by_one(client: httpx.Client) -> None:
    first, second = new_market(client), new_market(client)
    user = unique("both")
    fund(client, user, "INR", "1000")
    fund(client, user, second.split("_")[0], "10")
    bid = place(client, market=first, price="10", quantity="2", side="buy", user_id=user)
    ask = place(client, market=second, price="20", quantity="3", side="sell", user_id=user)

    every = client.get("/order/open", params={"user_id": user}).json()
    only_second = client.get("/order/open", params={"user_id": user, "market": second}).json()

    assert sorted((o["orderId"], o["market"], o["side"], o["price"], o["quantity"]) for o in every) == sorted(
        [(bid["orderId"], first, "buy", "10.00", "2"), (ask["orderId"], second, "sell", "20.00", "3")]
    )
    assert all(o["status"] == "NEW" and o["filled"] == "0" and o["type"] == "limit" for o in every)
    assert [o["orderId"] for o in only_second] == [ask["orderId"]]
    assert client.get("/order/open", params={"user_id": unique("nobody")}).json() == []


# ----------------------------------------------------------------------------- funds
def test_onramp_credits_and_a_repeat_of_the_same_txn_id_credits_nothing(client: httpx.Client) -> None:
    user, txn_id = unique("onramp"), unique("txn")
    body = {"user_id": user, "asset": "INR", "amount": "250.5", "txnId": txn_id}

    first = client.post("/onramp", json=body)
    again = client.post("/onramp", json=body)

    assert first.status_code == again.status_code == 200
    assert (
        first.json()
        == again.json()
        == {
            "user_id": user,
            "asset": "INR",
            "amount": "250.50",
            "txnId": txn_id,
            "status": "credited",
        }
    )
    assert balances(client, user) == {"INR": {"available": "250.50", "locked": "0.00"}}


def test_a_user_who_never_deposited_has_no_balances(client: httpx.Client) -> None:
    assert balances(client, unique("empty")) == {}
