"""No request to `/api/v3`, however malformed, makes the server answer 5xx, and every refusal is Binance's
`{"code": <negative int>, "msg": "..."}`. Hypothesis generates query strings and form bodies from the names
the endpoints read, with values drawn from plausible, boundary and hostile text, against the real server."""

from __future__ import annotations

from collections.abc import Iterator
from urllib.parse import quote

import httpx
import pytest
from binance_clients import deposit
from conftest import RunningServer
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

NAMES = ["symbol", "symbols", "side", "type", "timeInForce", "quantity", "quoteOrderQty", "price", "newClientOrderId",
         "newOrderRespType", "orderId", "origClientOrderId", "limit", "fromId", "startTime", "endTime", "interval",
         "timestamp", "recvWindow", "selfTradePreventionMode", "stopPrice", "user_id", "colour"]  # fmt: skip
VALUES = st.one_of(
    st.sampled_from(
        [
            "TATAINR",
            "TATA_INR",
            "tatainr",
            "BUY",
            "sell",
            "LIMIT",
            "MARKET",
            "LIMIT_MAKER",
            "STOP_LOSS",
            "GTC",
            "IOC",
            "FOK",
            "FULL",
            "ACK",
            "1m",
            "1w",
            '["TATAINR"]',
            "[]",
            "1",
            "0",
            "-1",
            "100.5",
            "0.001",
            "1e5",
            "99999999999999999999",
            "9223372036854775808",
            "1796086835310",
            "",
        ]
    ),
    st.text(max_size=40),
    st.integers(min_value=-(2**70), max_value=2**70).map(str),
)
ROUTES = [("GET", "/depth"), ("GET", "/trades"), ("GET", "/aggTrades"), ("GET", "/klines"), ("GET", "/ticker/24hr"),
          ("GET", "/ticker/price"), ("GET", "/ticker/bookTicker"), ("GET", "/exchangeInfo"), ("GET", "/account"),
          ("POST", "/order"), ("POST", "/order/test"), ("GET", "/order"), ("DELETE", "/order"), ("GET", "/openOrders"),
          ("GET", "/allOrders"), ("GET", "/myTrades")]  # fmt: skip


@pytest.fixture(scope="module")
def http(exchange: RunningServer) -> Iterator[httpx.Client]:
    deposit(exchange.base_url, "fuzz", "INR", "1000000", "fuzz-inr")
    deposit(exchange.base_url, "fuzz", "TATA", "10000", "fuzz-tata")
    with httpx.Client(base_url=f"{exchange.base_url}/api/v3", timeout=10) as client:
        yield client


@pytest.mark.parametrize(("method", "path"), ROUTES, ids=[f"{m} {p}" for m, p in ROUTES])
def test_no_v3_request_is_answered_with_a_server_error(http: httpx.Client, method: str, path: str) -> None:
    @settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
    @given(params=st.dictionaries(st.sampled_from(NAMES), VALUES, max_size=8), in_body=st.booleans())
    def check(params: dict[str, str], in_body: bool) -> None:
        text = "&".join(f"{quote(name)}={quote(value)}" for name, value in params.items())
        headers = {"X-MBX-APIKEY": "fuzz"}
        if in_body and method != "GET":
            headers["Content-Type"] = "application/x-www-form-urlencoded"
            response = http.request(method, path, content=text, headers=headers)
        else:
            response = http.request(method, f"{path}?{text}", headers=headers)
        assert response.status_code < 500, (method, path, text, response.text)
        if response.status_code >= 400:
            body = response.json()
            assert set(body) == {"code", "msg"} and body["code"] < 0, body

    check()
