"""Every error reaches the client as `{"code": int, "message": str}` with the right HTTP status, and a
rejected request changes nothing.

400: malformed or invalid input, and business rejections (insufficient funds, post-only would take);
404: unknown market, order or asset (another user's order looks exactly like an unknown one);
409: the market exists, or a deposit txnId is reused for a different deposit;
413: the body is over the size limit (Sanic's own answer, in the same shape);
503: the engine is not running; 504: the engine did not answer in time.
"""

from __future__ import annotations

import pathlib
import signal
import socket
import subprocess
import sys
import textwrap
import time
import uuid
from collections.abc import Iterator
from decimal import Decimal
from typing import Any

import httpx
import pytest
import ujson
from conftest import ROOT, RunningServer, free_port, start_server

from openbell.core.types import ResultCode

INVALID_REQUEST = 100
INVALID_PRICE = 101
INVALID_QUANTITY = 102
INVALID_AMOUNT = 103
INVALID_ORDER = 104
INVALID_MARKET_SPEC = 105
INVALID_USER = 106
INSUFFICIENT_FUNDS = 200
POST_ONLY_WOULD_TAKE = 201
MARKET_EXISTS = 205
DUPLICATE_CLIENT_ORDER_ID = 206
DEPOSIT_CONFLICT = 208
UNKNOWN_MARKET = 300
UNKNOWN_ORDER = 301
UNKNOWN_ASSET = 302
ENGINE_UNAVAILABLE = 503
ENGINE_TIMEOUT = 504
JSON = {"Content-Type": "application/json"}


# ----------------------------------------------------------------------------- helpers
@pytest.fixture(scope="module")
def exchange(tmp_path_factory: pytest.TempPathFactory) -> Iterator[RunningServer]:
    """Dev mode: these tests are about what a request says, so each names its user (the refusals of who is
    asking are tests/test_auth.py's)."""
    server = start_server(tmp_path_factory.mktemp("errors"), "--dev")
    yield server
    assert server.stop() == 0, server.log()


@pytest.fixture(scope="module")
def client(exchange: RunningServer) -> Iterator[httpx.Client]:
    with httpx.Client(base_url=exchange.api, timeout=10) as http:
        yield http


def unique(prefix: str) -> str:
    return f"{prefix}-{uuid.uuid4().hex[:12]}"


def assert_error(response: httpx.Response, status: int | tuple[int, ...], code: int | None = None) -> dict[str, Any]:
    statuses = status if isinstance(status, tuple) else (status,)
    assert response.status_code in statuses, (response.status_code, response.text)
    assert response.headers["content-type"].startswith("application/json"), response.headers
    body: dict[str, Any] = response.json()
    # A duplicate clientOrderId also carries the order that used it first.
    assert set(body) == {"code", "message"} or (body.get("code") == 206 and set(body) == {"code", "message", "order"})
    assert isinstance(body["code"], int) and not isinstance(body["code"], bool), body
    assert isinstance(body["message"], str) and body["message"], body
    if code is not None:
        assert body["code"] == code, body
    return body


def fund(client: httpx.Client, user_id: str, asset: str, amount: str) -> None:
    response = client.post(
        "/onramp", json={"user_id": user_id, "asset": asset, "amount": amount, "txnId": unique("txn")}
    )
    assert response.status_code == 200, response.text


def state_of(client: httpx.Client, user_id: str) -> tuple[Any, Any, Any]:
    """What a rejected request must leave as it was: balances, open orders and the book.

    An all-zero balance row is left out: a rejected order may create one for the asset it would have
    received (see `test_a_rejected_order_adds_no_empty_balance_row`).
    """
    rows = client.get("/balance", params={"user_id": user_id}).json()
    return (
        {asset: row for asset, row in rows.items() if any(Decimal(value) for value in row.values())},
        client.get("/order/open", params={"user_id": user_id}).json(),
        client.get("/depth", params={"symbol": "TATA_INR"}).json()["asks"],
    )


@pytest.fixture
def trader(client: httpx.Client) -> str:
    """A user with 1,000.00 INR and 20.00 TATA, and nothing on the book."""
    user = unique("trader")
    fund(client, user, "INR", "1000")
    fund(client, user, "TATA", "20")
    return user


def order(owner: str, /, **changes: Any) -> dict[str, Any]:
    """A valid far-from-the-touch buy that would rest, changed as the test needs (`...` drops a field)."""
    body: dict[str, Any] = {"market": "TATA_INR", "price": "1", "quantity": "1", "side": "buy", "user_id": owner}
    body.update(changes)
    return {name: value for name, value in body.items() if value is not ...}


# ----------------------------------------------------------------------------- 400: malformed input
@pytest.mark.parametrize(
    "content",
    [b"", b"{", b"not json", b'{"market": "TATA_INR",}', b"[1, 2]", b'"a string"', b"null", b"\xff\xfe\x00"],
    ids=["empty", "truncated", "text", "trailing-comma", "array", "string", "null", "binary"],
)
def test_a_body_that_is_not_a_json_object_is_refused(client: httpx.Client, trader: str, content: bytes) -> None:
    before = state_of(client, trader)

    response = client.post("/order", content=content, headers={"content-type": "application/json"})

    assert_error(response, 400, INVALID_REQUEST)
    assert state_of(client, trader) == before


@pytest.mark.parametrize(
    "changes",
    [
        {"side": "BUY"},
        {"side": "Buy", "type": "LIMIT", "timeInForce": "gtc"},
        {"market": ..., "symbol": "TATA_INR"},
        {"selfTradePrevention": "expire_taker"},
    ],
    ids=repr,
)
def test_names_are_taken_in_either_case_and_symbol_names_the_market_too(
    client: httpx.Client, trader: str, changes: dict[str, Any]
) -> None:
    response = client.post("/order", json=order(trader, **changes))

    assert response.status_code == 200, response.text
    assert response.json()["status"] == "NEW"


@pytest.mark.parametrize(
    ("changes", "code"),
    [
        ({"market": ...}, INVALID_REQUEST),
        ({"side": ...}, INVALID_REQUEST),
        ({"user_id": ...}, INVALID_USER),
        ({"price": ...}, INVALID_PRICE),
        ({"quantity": ...}, INVALID_QUANTITY),
        ({"side": "BUYS"}, INVALID_REQUEST),
        ({"side": "hold"}, INVALID_REQUEST),
        ({"side": 1}, INVALID_REQUEST),
        ({"type": "stop"}, INVALID_REQUEST),
        ({"timeInForce": "GTD"}, INVALID_REQUEST),
        ({"selfTradePrevention": "NONE"}, INVALID_REQUEST),
        ({"price": "1.001"}, INVALID_PRICE),
        ({"price": "0"}, INVALID_PRICE),
        ({"price": "-1"}, INVALID_PRICE),
        ({"price": "1e2"}, INVALID_PRICE),
        ({"price": 1.5}, INVALID_PRICE),
        ({"price": "NaN"}, INVALID_PRICE),
        ({"price": "100000000000000000"}, INVALID_PRICE),
        ({"price": ""}, INVALID_PRICE),
        ({"quantity": "1.5"}, INVALID_QUANTITY),
        ({"quantity": "0"}, INVALID_QUANTITY),
        ({"quantity": "-3"}, INVALID_QUANTITY),
        ({"quantity": "1000000000000001"}, INVALID_QUANTITY),
        ({"quantity": "9" * 60}, INVALID_QUANTITY),
        ({"quantity": True}, INVALID_QUANTITY),
        ({"quantity": [1]}, INVALID_QUANTITY),
        ({"user_id": ""}, INVALID_USER),
        ({"user_id": "a b"}, INVALID_USER),
        ({"user_id": "u" * 65}, INVALID_USER),
        ({"user_id": "trader\n"}, INVALID_USER),
        ({"user_id": True}, INVALID_USER),
        ({"market": 7}, INVALID_REQUEST),
        ({"market": "T" * 33}, INVALID_REQUEST),
        ({"postOnly": "yes"}, INVALID_REQUEST),
        ({"postOnly": True, "timeInForce": "IOC"}, INVALID_ORDER),
        ({"clientOrderId": "has space"}, INVALID_REQUEST),
        ({"clientOrderId": "x" * 65}, INVALID_REQUEST),
        ({"clientOrderId": "id\n"}, INVALID_REQUEST),
        ({"quoteQuantity": "10"}, INVALID_ORDER),
        ({"type": "market"}, INVALID_PRICE),
        ({"type": "market", "price": ..., "quantity": ...}, INVALID_QUANTITY),
        ({"type": "market", "price": ..., "side": "sell", "quoteQuantity": "10"}, INVALID_ORDER),  # both sizes
        ({"type": "market", "price": ..., "postOnly": True}, INVALID_ORDER),
        ({"type": "market", "price": ..., "quantity": ..., "quoteQuantity": "0.001"}, INVALID_AMOUNT),
    ],
    ids=lambda value: repr(value)[:60] if isinstance(value, dict) else str(value),
)
def test_an_invalid_order_is_refused_with_400_and_changes_nothing(
    client: httpx.Client, trader: str, changes: dict[str, Any], code: int
) -> None:
    if changes.get("user_id") == "trader\n":
        changes = {**changes, "user_id": trader + "\n"}
    before = state_of(client, trader)

    response = client.post("/order", json=order(trader, **changes))

    assert_error(response, 400, code)
    assert state_of(client, trader) == before


def test_a_decimal_with_a_trailing_newline_is_refused(client: httpx.Client, trader: str) -> None:
    response = client.post("/order", json=order(trader, price="1\n"))

    assert_error(response, 400, INVALID_PRICE)


@pytest.mark.parametrize(
    ("order_id", "code"),
    [("abc", INVALID_REQUEST), ("-1", INVALID_REQUEST), ("0", INVALID_REQUEST), (0, INVALID_REQUEST),
     (1.5, INVALID_REQUEST), (True, INVALID_REQUEST), (None, INVALID_REQUEST), ("1" * 20, INVALID_REQUEST),
     ("²", INVALID_REQUEST), ("١٢", INVALID_REQUEST)],
    ids=repr,
)  # fmt: skip
def test_a_cancel_with_a_malformed_order_id_is_refused(client: httpx.Client, order_id: Any, code: int) -> None:
    response = client.request("DELETE", "/order", json={"orderId": order_id, "market": "TATA_INR", "user_id": "u1"})

    assert_error(response, 400, code)


@pytest.mark.parametrize(
    ("path", "params", "code"),
    [
        ("/depth", {}, INVALID_REQUEST),
        ("/depth", {"symbol": "TATA_INR", "limit": "0"}, INVALID_REQUEST),
        ("/depth", {"symbol": "TATA_INR", "limit": "5001"}, INVALID_REQUEST),
        ("/depth", {"symbol": "TATA_INR", "limit": "ten"}, INVALID_REQUEST),
        ("/depth", {"symbol": "TATA_INR", "limit": "9" * 30}, INVALID_REQUEST),
        ("/trades", {}, INVALID_REQUEST),
        ("/trades", {"symbol": "TATA_INR", "limit": "-1"}, INVALID_REQUEST),
        ("/trades", {"symbol": "TATA_INR", "limit": "1.5"}, INVALID_REQUEST),
        ("/klines", {"interval": "1m"}, INVALID_REQUEST),
        ("/klines", {"symbol": "TATA_INR", "interval": "7m"}, INVALID_REQUEST),
        ("/klines", {"symbol": "TATA_INR", "interval": "1m", "startTime": "20", "endTime": "10"}, INVALID_REQUEST),
        ("/klines", {"symbol": "TATA_INR", "interval": "1m", "startTime": "x"}, INVALID_REQUEST),
        ("/klines", {"symbol": "TATA_INR", "interval": "1m", "startTime": "-5"}, INVALID_REQUEST),
        ("/klines", {"symbol": "TATA_INR", "interval": "1m", "endTime": "1" * 25}, INVALID_REQUEST),
        ("/ticker", {}, INVALID_REQUEST),
        ("/balance", {}, INVALID_USER),
        ("/balance", {"user_id": "bad id"}, INVALID_USER),
        ("/balance", {"user_id": "u\n"}, INVALID_USER),
        ("/order/open", {}, INVALID_USER),
    ],
    ids=lambda value: str(value)[:50],
)
def test_an_invalid_query_is_refused_with_400(
    client: httpx.Client, path: str, params: dict[str, str], code: int
) -> None:
    assert_error(client.get(path, params=params), 400, code)


@pytest.mark.parametrize(
    ("changes", "status", "code"),
    [
        ({"amount": "0"}, 400, INVALID_AMOUNT),
        ({"amount": "-5"}, 400, INVALID_AMOUNT),
        ({"amount": "1.001"}, 400, INVALID_AMOUNT),
        ({"amount": 1.5}, 400, INVALID_AMOUNT),
        ({"amount": "1" * 40}, 400, INVALID_AMOUNT),
        ({"txnId": ""}, 400, INVALID_REQUEST),
        ({"txnId": "has space"}, 400, INVALID_REQUEST),
        ({"txnId": "t" * 129}, 400, INVALID_REQUEST),
        ({"txnId": "txn\n"}, 400, INVALID_REQUEST),
        ({"txnId": None}, 400, INVALID_REQUEST),
        ({"user_id": None}, 400, INVALID_USER),
        ({"asset": None}, 400, INVALID_REQUEST),
        ({"asset": "DOGE"}, 404, UNKNOWN_ASSET),
    ],
    ids=lambda value: str(value)[:40],
)
def test_an_invalid_onramp_is_refused_and_credits_nothing(
    client: httpx.Client, changes: dict[str, Any], status: int, code: int
) -> None:
    user = unique("onramp")
    body = {"user_id": user, "asset": "INR", "amount": "10", "txnId": unique("txn"), **changes}

    assert_error(client.post("/onramp", json={k: v for k, v in body.items() if v is not None}), status, code)
    assert client.get("/balance", params={"user_id": user}).json() == {}


@pytest.mark.parametrize(
    ("changes", "code"),
    [
        ({"symbol": None}, INVALID_REQUEST),
        ({"symbol": "AB_CD_EF"}, INVALID_MARKET_SPEC),
        ({"quote": "XY"}, INVALID_MARKET_SPEC),
        ({"tickSize": "0"}, INVALID_MARKET_SPEC),
        ({"tickSize": "-0.01"}, INVALID_MARKET_SPEC),
        ({"lotSize": "abc"}, INVALID_MARKET_SPEC),
        ({"lotSize": None}, INVALID_MARKET_SPEC),
        ({"makerFeeBps": -1}, INVALID_MARKET_SPEC),
        ({"takerFeeBps": 5000}, INVALID_MARKET_SPEC),
        ({"baseDecimals": True}, INVALID_MARKET_SPEC),
        ({"baseDecimals": 19}, INVALID_MARKET_SPEC),
        ({"quoteDecimals": 5}, INVALID_MARKET_SPEC),
    ],
    ids=lambda value: str(value)[:40],
)
def test_an_invalid_market_spec_is_refused_and_adds_no_market(
    client: httpx.Client, changes: dict[str, Any], code: int
) -> None:
    base = "E" + uuid.uuid4().hex[:8].upper()
    body = {"symbol": f"{base}_INR", "base": base, "quote": "INR", "tickSize": "0.01", "lotSize": "1", **changes}
    before = client.get("/markets").json()

    response = client.post("/markets", json={k: v for k, v in body.items() if v is not None})

    assert_error(response, 400, code)
    assert client.get("/markets").json() == before


def test_a_lowercase_asset_in_a_market_spec_is_refused(client: httpx.Client) -> None:
    response = client.post(
        "/markets", json={"symbol": "ab_inr", "base": "ab", "quote": "inr", "tickSize": "0.01", "lotSize": "1"}
    )

    body = assert_error(response, 400)
    assert 100 <= body["code"] < 200


def test_a_body_over_the_size_limit_is_refused(client: httpx.Client, trader: str) -> None:
    before = state_of(client, trader)
    body = order(trader, clientOrderId="x" * 20_000)

    response = client.post("/order", json=body)

    assert_error(response, (400, 413))
    assert state_of(client, trader) == before


def test_a_deeply_nested_body_is_refused_not_crashed_on(client: httpx.Client) -> None:
    assert_error(client.post("/order", content=b"[" * 5000 + b"]" * 5000, headers=JSON), 400, INVALID_REQUEST)


def raw_exchange(exchange: RunningServer, request: bytes, wait: float = 30.0) -> tuple[int, dict[str, Any]]:
    """Send `request` bytes as they are and read the answer's status and JSON body (bounded by `wait`)."""
    with socket.create_connection(("127.0.0.1", exchange.port), timeout=wait) as sock:
        sock.sendall(request)
        answer = b""
        while b"\r\n\r\n" not in answer or len(answer.split(b"\r\n\r\n", 1)[1]) < content_length(answer):
            chunk = sock.recv(65536)
            if not chunk:
                break
            answer += chunk
    head, _, body = answer.partition(b"\r\n\r\n")
    return int(head.split()[1]), ujson.loads(body)


def content_length(answer: bytes) -> int:
    for line in answer.split(b"\r\n\r\n", 1)[0].split(b"\r\n")[1:]:
        name, _, value = line.partition(b":")
        if name.strip().lower() == b"content-length":
            return int(value)
    return 0


def test_a_body_shorter_than_its_content_length_is_answered_408_not_held_a_minute(exchange: RunningServer) -> None:
    request = (
        b"POST /api/v1/order HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n"
        b'Content-Length: 100\r\n\r\n{"market": "TATA_INR"'
    )

    status, body = raw_exchange(exchange, request, wait=30.0)  # the server used to hold it 60 s, then say 503

    assert status == 408
    assert body["code"] == ResultCode.REQUEST_TIMEOUT
    assert "did not arrive" in body["message"]


def test_a_get_with_a_body_is_answered_and_logs_no_error(exchange: RunningServer) -> None:
    request = b"GET /api/v1/markets HTTP/1.1\r\nHost: x\r\nContent-Length: 5\r\n\r\nhello"

    status, body = raw_exchange(exchange, request)

    assert status == 200 and any(market["symbol"] == "TATA_INR" for market in body)
    assert "body not consumed" not in exchange.log()
    assert " ERROR " not in exchange.log()


def test_an_unknown_route_and_an_unknown_method_answer_in_the_same_shape(client: httpx.Client) -> None:
    assert_error(client.get("/no-such-thing"), 404)
    assert_error(client.put("/order", json={}), 405)


# ----------------------------------------------------------------------------- 404: unknown things
@pytest.mark.parametrize(
    ("method", "path", "payload"),
    [
        ("POST", "/order", {"market": "NOPE_INR", "price": "1", "quantity": "1", "side": "buy", "user_id": "u1"}),
        ("DELETE", "/order", {"market": "NOPE_INR", "orderId": "1", "user_id": "u1"}),
        ("GET", "/depth", {"symbol": "NOPE_INR"}),
        ("GET", "/trades", {"symbol": "NOPE_INR"}),
        ("GET", "/klines", {"symbol": "NOPE_INR", "interval": "1m"}),
        ("GET", "/ticker", {"symbol": "NOPE_INR"}),
        ("GET", "/order/open", {"user_id": "u1", "market": "NOPE_INR"}),
    ],
    ids=lambda value: value if isinstance(value, str) else "",
)
def test_an_unknown_market_is_404(client: httpx.Client, method: str, path: str, payload: dict[str, str]) -> None:
    if method == "GET":
        response = client.get(path, params=payload)
    else:
        response = client.request(method, path, json=payload)

    assert_error(response, 404, UNKNOWN_MARKET)


def test_canceling_an_unknown_order_is_404(client: httpx.Client) -> None:
    response = client.request(
        "DELETE", "/order", json={"orderId": "987654321", "market": "TATA_INR", "user_id": unique("u")}
    )

    assert_error(response, 404, UNKNOWN_ORDER)


def test_another_users_order_looks_exactly_like_an_unknown_one_and_stays(client: httpx.Client, trader: str) -> None:
    placed = client.post("/order", json=order(trader, price="2"))
    assert placed.status_code == 200, placed.text
    order_id = placed.json()["orderId"]
    intruder = unique("intruder")

    theirs = client.request("DELETE", "/order", json={"orderId": order_id, "market": "TATA_INR", "user_id": intruder})
    unknown = client.request(
        "DELETE", "/order", json={"orderId": "987654321", "market": "TATA_INR", "user_id": intruder}
    )

    assert_error(theirs, 404, UNKNOWN_ORDER)
    assert (theirs.status_code, theirs.json()) == (unknown.status_code, unknown.json())
    assert [o["orderId"] for o in client.get("/order/open", params={"user_id": trader}).json()] == [order_id]


def test_canceling_an_order_twice_is_404_the_second_time(client: httpx.Client, trader: str) -> None:
    order_id = client.post("/order", json=order(trader, price="3")).json()["orderId"]
    body = {"orderId": order_id, "market": "TATA_INR", "user_id": trader}
    assert client.request("DELETE", "/order", json=body).status_code == 200
    after_first = state_of(client, trader)

    again = client.request("DELETE", "/order", json=body)

    assert_error(again, 404, UNKNOWN_ORDER)
    assert state_of(client, trader) == after_first


# ----------------------------------------------------------------------------- 400: business rejections
def test_an_order_beyond_the_users_funds_is_refused_and_holds_nothing(client: httpx.Client, trader: str) -> None:
    before = state_of(client, trader)

    buy = client.post("/order", json=order(trader, price="100.01", quantity="10"))
    sell = client.post("/order", json=order(trader, side="sell", price="5000", quantity="21"))
    market_buy = client.post(
        "/order", json=order(trader, type="market", price=..., quantity=..., quoteQuantity="1000.01")
    )

    assert_error(buy, 400, INSUFFICIENT_FUNDS)
    assert_error(sell, 400, INSUFFICIENT_FUNDS)
    assert_error(market_buy, 400, INSUFFICIENT_FUNDS)
    assert state_of(client, trader) == before


def test_a_post_only_order_that_would_take_is_refused_when_funded(client: httpx.Client) -> None:
    maker, taker = unique("maker"), unique("taker")
    fund(client, maker, "TATA", "1")
    fund(client, taker, "INR", "10000")
    resting = client.post("/order", json=order(maker, side="sell", price="8000"))
    assert resting.status_code == 200, resting.text
    before = state_of(client, taker)

    response = client.post("/order", json=order(taker, price="8000", postOnly=True))

    assert_error(response, 400, POST_ONLY_WOULD_TAKE)
    assert state_of(client, taker) == before
    client.request(
        "DELETE", "/order", json={"orderId": resting.json()["orderId"], "market": "TATA_INR", "user_id": maker}
    )


def test_a_rejected_order_adds_no_empty_balance_row(client: httpx.Client) -> None:
    maker, taker = unique("maker"), unique("taker")
    fund(client, maker, "TATA", "1")
    fund(client, taker, "INR", "10000")
    resting = client.post("/order", json=order(maker, side="sell", price="7000"))
    assert resting.status_code == 200, resting.text

    response = client.post("/order", json=order(taker, price="7000", postOnly=True))

    assert_error(response, 400, POST_ONLY_WOULD_TAKE)
    client.request(
        "DELETE", "/order", json={"orderId": resting.json()["orderId"], "market": "TATA_INR", "user_id": maker}
    )
    assert client.get("/balance", params={"user_id": taker}).json() == {
        "INR": {"available": "10000.00", "locked": "0.00"}
    }


def test_a_client_order_id_in_use_by_an_open_order_is_refused(client: httpx.Client, trader: str) -> None:
    first = client.post("/order", json=order(trader, clientOrderId="dup-1"))
    assert first.status_code == 200, first.text
    before = state_of(client, trader)

    again = client.post("/order", json=order(trader, clientOrderId="dup-1", price="2"))

    assert_error(again, 409, DUPLICATE_CLIENT_ORDER_ID)
    assert again.json()["order"]["orderId"] == first.json()["orderId"]
    assert again.json()["order"]["status"] == "NEW"
    assert state_of(client, trader) == before


def test_a_retry_of_an_order_that_already_ended_returns_its_outcome_not_a_second_order(
    client: httpx.Client, trader: str
) -> None:
    first = client.post("/order", json=order(trader, clientOrderId="dup-2"))
    assert first.status_code == 200, first.text
    cancel = client.request(
        "DELETE", "/order", json={"orderId": first.json()["orderId"], "market": "TATA_INR", "user_id": trader}
    )
    assert cancel.status_code == 200, cancel.text
    before = state_of(client, trader)

    retry = client.post("/order", json=order(trader, clientOrderId="dup-2"))

    assert_error(retry, 409, DUPLICATE_CLIENT_ORDER_ID)
    assert retry.json()["order"]["orderId"] == first.json()["orderId"]
    assert retry.json()["order"]["status"] == "CANCELED"
    assert state_of(client, trader) == before


# ----------------------------------------------------------------------------- 409: conflicts
def test_adding_a_market_that_exists_is_409(client: httpx.Client) -> None:
    before = client.get("/markets").json()

    response = client.post(
        "/markets", json={"symbol": "TATA_INR", "base": "TATA", "quote": "INR", "tickSize": "0.05", "lotSize": "1"}
    )

    assert_error(response, 409, MARKET_EXISTS)
    assert client.get("/markets").json() == before


@pytest.mark.parametrize(
    "changes",
    [{"amount": "11"}, {"asset": "TATA"}, {"user_id": "someone-else"}],
    ids=["other-amount", "other-asset", "other-user"],
)
def test_a_txn_id_reused_for_a_different_deposit_is_409_and_credits_nothing(
    client: httpx.Client, changes: dict[str, str]
) -> None:
    user, txn_id = unique("dep"), unique("txn")
    first = {"user_id": user, "asset": "INR", "amount": "10", "txnId": txn_id}
    assert client.post("/onramp", json=first).status_code == 200
    other = {**first, **changes}
    if other["user_id"] != user:
        other["user_id"] = unique("other")

    response = client.post("/onramp", json=other)

    assert_error(response, 409, DEPOSIT_CONFLICT)
    assert client.get("/balance", params={"user_id": user}).json() == {"INR": {"available": "10.00", "locked": "0.00"}}
    assert client.get("/balance", params={"user_id": other["user_id"]}).json() in (
        {},
        {"INR": {"available": "10.00", "locked": "0.00"}},
    )


# ----------------------------------------------------------------------------- 503 / 504: the engine
ENGINE_STOPPED_BY_SIGNAL = textwrap.dedent(
    """
    import signal, sys, threading
    from openbell.actors.engine import Engine
    from openbell.options import DEFAULT_ASSETS, DEFAULT_MARKETS, parse_markets
    from openbell.edge.auth import Authenticator
    from openbell.http.app import create_app

    engine = Engine().start(parse_markets(DEFAULT_MARKETS, DEFAULT_ASSETS))
    signal.signal(signal.SIGUSR1, lambda *_: threading.Thread(target=engine.stop).start())
    app = create_app(engine, websocket=False, auth=Authenticator(engine, dev=True))
    try:
        app.run(host="127.0.0.1", port=int(sys.argv[1]), single_process=True, access_log=False, motd=False)
    finally:
        engine.stop()
    """
)


def launch(tmp_path: pathlib.Path, argv: list[str]) -> RunningServer:
    """Start a server process and wait until GET /api/v1/markets answers (it needs no engine reply)."""
    port = free_port()
    log_path = tmp_path / f"server-{port}.log"
    process = subprocess.Popen(
        [sys.executable, *[arg.replace("{port}", str(port)) for arg in argv]],
        cwd=ROOT,
        stdout=log_path.open("wb"),
        stderr=subprocess.STDOUT,
    )
    server = RunningServer(process, port, log_path)
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise RuntimeError(f"server exited with {process.returncode}:\n{server.log()}")
        try:
            if httpx.get(f"{server.api}/markets", timeout=1).status_code == 200:
                return server
        except httpx.TransportError:
            pass
        time.sleep(0.1)
    server.stop()
    raise RuntimeError(f"server did not answer in 30 s:\n{server.log()}")


def test_when_the_engine_has_stopped_requests_get_503(tmp_path: pathlib.Path) -> None:
    server = launch(tmp_path, ["-c", ENGINE_STOPPED_BY_SIGNAL, "{port}"])
    try:
        assert httpx.get(f"{server.api}/health", timeout=5).status_code == 200

        server.process.send_signal(signal.SIGUSR1)
        deadline = time.monotonic() + 10
        while httpx.get(f"{server.api}/health", timeout=5).status_code == 200 and time.monotonic() < deadline:
            time.sleep(0.05)

        with httpx.Client(base_url=server.api, timeout=5) as http:
            assert_error(http.get("/health"), 503, ENGINE_UNAVAILABLE)
            assert_error(http.get("/balance", params={"user_id": "1"}), 503, ENGINE_UNAVAILABLE)
            assert_error(http.get("/depth", params={"symbol": "TATA_INR"}), 503, ENGINE_UNAVAILABLE)
            placed = http.post("/order", json=order("1", price="100"))
            assert_error(placed, 503, ENGINE_UNAVAILABLE)
            onramp = http.post("/onramp", json={"user_id": "1", "asset": "INR", "amount": "1", "txnId": "t1"})
            assert_error(onramp, 503, ENGINE_UNAVAILABLE)
            assert_error(http.post("/order", content=b"{", headers=JSON), 400, INVALID_REQUEST)
    finally:
        code = server.stop()
    assert code == 0, server.log()


def test_when_the_engine_does_not_answer_in_time_requests_get_504(tmp_path: pathlib.Path) -> None:
    # No boot markets: the engine adds them with the same timeout, which this one would fail.
    server = launch(
        tmp_path,
        ["run.py", "--port", "{port}", "--in-memory", "--dev", "--markets", "", "--reply-timeout", "0.000001"],
    )
    try:
        with httpx.Client(base_url=server.api, timeout=5) as http:
            answers = [http.get("/balance", params={"user_id": "1"}) for _ in range(10)]
            answers += [http.get("/health") for _ in range(10)]
    finally:
        code = server.stop()
    assert code == 0, server.log()
    timed_out = [a for a in answers if a.status_code == 504]
    assert timed_out, [a.text for a in answers]
    for answer in answers:
        assert answer.status_code in (200, 504), answer.text
    for answer in timed_out:
        assert_error(answer, 504, ENGINE_TIMEOUT)
