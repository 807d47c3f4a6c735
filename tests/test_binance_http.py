"""`/api/v3` at the HTTP level, with a plain client: strict parameters, Binance's error bodies and statuses,
and the shapes Binance clients other than ccxt read."""

from __future__ import annotations

import json
from collections.abc import Iterator

import httpx
import pytest
from binance_clients import deposit
from conftest import RunningServer, start_server

FORM = {"Content-Type": "application/x-www-form-urlencoded"}


@pytest.fixture(scope="module")
def exchange(tmp_path_factory: pytest.TempPathFactory) -> Iterator[RunningServer]:
    """A `--dev` server: these tests are about how /api/v3 parses and answers, so `X-MBX-APIKEY` names the user
    and nothing is signed (signed requests are tested through ccxt in test_binance_ccxt.py)."""
    server = start_server(tmp_path_factory.mktemp("binance-http"), "--dev")
    yield server
    assert server.stop() == 0, server.log()


@pytest.fixture(scope="module")
def http(exchange: RunningServer) -> Iterator[httpx.Client]:
    with httpx.Client(base_url=f"{exchange.base_url}/api/v3", timeout=10) as client:
        yield client


def signed_headers(user: str) -> dict[str, str]:
    return {**FORM, "X-MBX-APIKEY": user}


def test_ping_time_and_exchange_info_answer(http: httpx.Client) -> None:
    assert http.get("/ping").json() == {}
    assert http.get("/time").json()["serverTime"] > 1_600_000_000_000
    info = http.get("/exchangeInfo", params={"symbol": "TATAINR"}).json()
    [symbol] = info["symbols"]
    assert (symbol["symbol"], symbol["baseAsset"], symbol["quoteAsset"], symbol["status"]) == (
        "TATAINR", "TATA", "INR", "TRADING"
    )  # fmt: skip
    filters = {f["filterType"]: f for f in symbol["filters"]}
    assert filters["PRICE_FILTER"]["tickSize"] == "0.01" and filters["LOT_SIZE"]["stepSize"] == "1"


def test_a_parameter_given_twice_is_refused(http: httpx.Client) -> None:
    response = http.get("/depth?symbol=TATAINR&symbol=TATAINR")

    assert response.status_code == 400 and response.json()["code"] == -1101


def test_a_parameter_in_both_query_and_body_is_refused(http: httpx.Client) -> None:
    response = http.post("/order?symbol=TATAINR", content="symbol=TATAINR&timestamp=1", headers=signed_headers("u1"))

    assert response.status_code == 400 and response.json()["code"] == -1101


def test_a_json_body_is_refused(http: httpx.Client) -> None:
    response = http.post("/order", content=json.dumps({"symbol": "TATAINR"}), headers={"X-MBX-APIKEY": "u1"})

    assert response.status_code == 415 and response.json()["code"] == -1100


def test_a_parameter_that_is_not_utf8_is_refused(http: httpx.Client) -> None:
    response = http.get("/depth?symbol=%FF")

    assert response.status_code == 400 and response.json()["code"] == -1100


def test_an_unknown_order_parameter_is_refused_and_nothing_is_placed(
    exchange: RunningServer, http: httpx.Client
) -> None:
    deposit(exchange.base_url, "strict-1", "INR", "1000", "strict-1-inr")
    body = "symbol=TATAINR&side=BUY&type=LIMIT&timeInForce=GTC&quantity=1&price=10&timestamp=1&colour=blue"

    response = http.post("/order", content=body, headers=signed_headers("strict-1"))

    assert response.status_code == 400 and response.json()["code"] == -1104
    assert http.get("/openOrders?timestamp=1", headers={"X-MBX-APIKEY": "strict-1"}).json() == []


def test_a_signed_request_needs_a_timestamp_and_a_sane_recv_window(http: httpx.Client) -> None:
    headers = {"X-MBX-APIKEY": "u2"}

    assert http.get("/account", headers=headers).json()["code"] == -1102
    assert http.get("/account?timestamp=1&recvWindow=60001", headers=headers).json()["code"] == -1131
    assert http.get("/account?timestamp=1", headers=headers).status_code == 200


def test_no_key_and_no_user_is_an_authentication_error(http: httpx.Client) -> None:
    response = http.get("/account?timestamp=1")

    assert response.status_code == 401 and response.json() == {"code": -2014, "msg": "API-key format invalid."}


def test_unknown_paths_and_symbols_answer_in_binance_shape(http: httpx.Client) -> None:
    missing = http.get("/nowhere")
    unknown = http.get("/ticker/24hr", params={"symbol": "NOPEINR"})

    assert missing.status_code == 404 and missing.json()["code"] == -1020
    assert unknown.status_code == 400 and unknown.json() == {"code": -1121, "msg": "Invalid symbol."}


def test_a_limit_order_needs_its_time_in_force_and_a_market_order_refuses_a_price(
    exchange: RunningServer, http: httpx.Client
) -> None:
    deposit(exchange.base_url, "strict-2", "INR", "1000", "strict-2-inr")
    headers = signed_headers("strict-2")

    no_tif = http.post("/order", content="symbol=TATAINR&side=BUY&type=LIMIT&quantity=1&price=10&timestamp=1",
                       headers=headers)  # fmt: skip
    priced = http.post("/order", content="symbol=TATAINR&side=BUY&type=MARKET&quantity=1&price=10&timestamp=1",
                       headers=headers)  # fmt: skip

    assert no_tif.json()["code"] == -1102 and "timeInForce" in no_tif.json()["msg"]
    assert priced.json()["code"] == -1106 and "price" in priced.json()["msg"]


def test_ack_and_result_responses_carry_what_binance_puts_in_them(exchange: RunningServer, http: httpx.Client) -> None:
    deposit(exchange.base_url, "strict-3", "INR", "1000", "strict-3-inr")
    headers = signed_headers("strict-3")
    order = "symbol=TATAINR&side=BUY&type=LIMIT&timeInForce=GTC&quantity=1&price=10&timestamp=1"

    ack = http.post("/order", content=order + "&newOrderRespType=ACK&newClientOrderId=ack-1", headers=headers).json()
    result = http.post("/order", content=order + "&newOrderRespType=RESULT", headers=headers).json()

    assert set(ack) == {"symbol", "orderId", "orderListId", "clientOrderId", "transactTime"}
    assert ack["clientOrderId"] == "ack-1"
    assert result["status"] == "NEW" and result["origQty"] == "1" and "fills" not in result


def test_tickers_of_a_symbol_list_and_prices(http: httpx.Client) -> None:
    listed = http.get("/ticker/24hr", params={"symbols": '["TATAINR"]'}).json()
    price = http.get("/ticker/price", params={"symbol": "TATAINR"}).json()
    book = http.get("/ticker/bookTicker").json()

    assert [t["symbol"] for t in listed] == ["TATAINR"]
    assert set(price) == {"symbol", "price"} and price["symbol"] == "TATAINR"
    assert [b["symbol"] for b in book] == ["TATAINR"]


# ----------------------------------------------------------------------------------------- stops
STOP_LIMIT_SELL = "symbol=TATAINR&side=SELL&type=STOP_LOSS_LIMIT&timeInForce=GTC&quantity=1&price=1&stopPrice=1.5"


@pytest.mark.parametrize(
    ("order", "code", "named"),
    [
        ("symbol=TATAINR&side=SELL&type=STOP_LOSS_LIMIT&timeInForce=GTC&quantity=1&price=1", -1102, "stopPrice"),
        ("symbol=TATAINR&side=SELL&type=TAKE_PROFIT_LIMIT&quantity=1&price=1&stopPrice=2", -1102, "timeInForce"),
        ("symbol=TATAINR&side=SELL&type=STOP_LOSS_LIMIT&timeInForce=GTC&quantity=1&stopPrice=2", -1102, "price"),
        ("symbol=TATAINR&side=SELL&type=TAKE_PROFIT_LIMIT&timeInForce=GTC&price=1&stopPrice=2", -1102, "quantity"),
        ("symbol=TATAINR&side=SELL&type=STOP_LOSS&quantity=1&price=1&stopPrice=2", -1106, "price"),
        ("symbol=TATAINR&side=SELL&type=TAKE_PROFIT&quantity=1&timeInForce=GTC&stopPrice=2", -1106, "timeInForce"),
        ("symbol=TATAINR&side=SELL&type=STOP_LOSS&stopPrice=2", -1102, "quantity"),
        ("symbol=TATAINR&side=SELL&type=STOP_LOSS&quantity=1&quoteOrderQty=5&stopPrice=2", -1106, "quoteOrderQty"),
        ("symbol=TATAINR&side=BUY&type=STOP_LOSS&quantity=1&stopPrice=2", -1102, "quoteOrderQty"),
        ("symbol=TATAINR&side=BUY&type=TAKE_PROFIT&quantity=1&stopPrice=2", -1102, "quoteOrderQty"),
        ("symbol=TATAINR&side=BUY&type=LIMIT&timeInForce=GTC&quantity=1&price=1&stopPrice=2", -1106, "stopPrice"),
        ("symbol=TATAINR&side=BUY&type=MARKET&quantity=1&stopPrice=2", -1106, "stopPrice"),
        ("symbol=TATAINR&side=SELL&type=STOP_LOSS_LIMIT&timeInForce=GTC&quantity=1&price=1&stopPrice=1.505", -1013,
         "PRICE_FILTER"),
        ("symbol=TATAINR&side=SELL&type=STOP_LOSS_LIMIT&timeInForce=GTC&quantity=1&price=1&stopPrice=abc", -1013,
         "PRICE_FILTER"),
        ("symbol=TATAINR&side=SELL&type=STOP_LOSS_LIMIT&timeInForce=GTC&quantity=1&price=1&stopPrice=0", -1013,
         "PRICE_FILTER"),
        ("symbol=TATAINR&side=SELL&type=STOP_LOSS_LIMIT&timeInForce=FOREVER&quantity=1&price=1&stopPrice=2", -1115,
         "timeInForce"),
        ("symbol=TATAINR&side=SELL&type=STOP_LOSS_LIMIT&timeInForce=GTC&quantity=1&price=1&stopPrice=2"
         "&trailingDelta=100", -1106, "trailingDelta"),
        ("symbol=TATAINR&side=SELL&type=STOP_MARKET&quantity=1&stopPrice=2", -1116, "orderType"),
    ],
)  # fmt: skip
@pytest.mark.parametrize("path", ["/order", "/order/test"])
def test_a_malformed_stop_order_is_refused_with_binances_code(
    exchange: RunningServer, http: httpx.Client, path: str, order: str, code: int, named: str
) -> None:
    deposit(exchange.base_url, "stops-1", "TATA", "10", "stops-1-tata")
    headers = signed_headers("stops-1")

    response = http.post(path, content=order + "&timestamp=1", headers=headers)

    assert response.status_code == 400 and response.json()["code"] == code
    assert named in response.json()["msg"]
    assert http.get("/openOrders?timestamp=1", headers={"X-MBX-APIKEY": "stops-1"}).json() == []


def test_a_waiting_stop_is_answered_listed_and_canceled_with_its_type_and_stop_price(
    exchange: RunningServer, http: httpx.Client
) -> None:
    deposit(exchange.base_url, "stops-2", "TATA", "10", "stops-2-tata")
    headers = signed_headers("stops-2")
    tested = http.post("/order/test", content=STOP_LIMIT_SELL + "&timestamp=1", headers=headers)

    placed = http.post("/order", content=STOP_LIMIT_SELL + "&newOrderRespType=RESULT&timestamp=1", headers=headers)
    [listed] = http.get("/openOrders?timestamp=1", headers=headers).json()
    found = http.get(f"/order?symbol=TATAINR&orderId={placed.json()['orderId']}&timestamp=1", headers=headers).json()
    [account_tata] = [b for b in http.get("/account?timestamp=1", headers=headers).json()["balances"]
                      if b["asset"] == "TATA"]  # fmt: skip
    canceled = http.delete(f"/order?symbol=TATAINR&orderId={placed.json()['orderId']}&timestamp=1", headers=headers)

    assert tested.status_code == 200 and tested.json() == {}
    result = placed.json()
    assert (result["type"], result["status"], result["stopPrice"], result["price"]) == (
        "STOP_LOSS_LIMIT", "NEW", "1.50", "1.00"
    )  # fmt: skip
    assert result["workingTime"] == -1 and "fills" not in result
    for shown in (listed, found):
        assert (shown["orderId"], shown["type"], shown["status"], shown["stopPrice"]) == (
            result["orderId"], "STOP_LOSS_LIMIT", "NEW", "1.50"
        )  # fmt: skip
        assert shown["isWorking"] is False and shown["workingTime"] == -1
    assert (account_tata["free"], account_tata["locked"]) == ("9.00", "1.00")
    assert canceled.status_code == 200
    assert (canceled.json()["status"], canceled.json()["type"], canceled.json()["stopPrice"]) == (
        "CANCELED", "STOP_LOSS_LIMIT", "1.50"
    )  # fmt: skip
    assert http.get("/openOrders?timestamp=1", headers=headers).json() == []


def test_exchange_info_lists_the_stop_and_take_profit_order_types(http: httpx.Client) -> None:
    [symbol] = http.get("/exchangeInfo", params={"symbol": "TATAINR"}).json()["symbols"]

    assert set(symbol["orderTypes"]) == {
        "LIMIT", "LIMIT_MAKER", "MARKET", "STOP_LOSS", "STOP_LOSS_LIMIT", "TAKE_PROFIT", "TAKE_PROFIT_LIMIT"
    }  # fmt: skip
