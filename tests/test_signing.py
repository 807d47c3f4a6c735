"""Binance's signing rule as `openbell.edge.signing` implements it, checked against Binance's own published
examples (SIGNED endpoint examples for POST /api/v3/order), and the window and replay rules."""

from __future__ import annotations

import hashlib
import hmac

import pytest

from openbell.client import Signer
from openbell.core.types import ResultCode
from openbell.edge.auth import derive_secret
from openbell.edge.errors import ApiError
from openbell.edge.signing import (
    ReplayGuard,
    check_signature,
    check_window,
    sign,
    signed_params,
    signing_key,
    split_signature,
)

# Binance's documentation example key and requests
BINANCE_SECRET = "NhqPtmdSJYdKjVHjA7PZj4Mge3R5YNiP1e3UZjInClVN65XAbvqqM6A7H5fATj0j"
ALL_IN_QUERY = (
    b"symbol=LTCBTC&side=BUY&type=LIMIT&timeInForce=GTC&quantity=1&price=0.1&recvWindow=5000&timestamp=1499827319559"
)
ALL_IN_QUERY_SIGNATURE = b"c8db56825ae71d6d79447849e617115f4a920fa2acdcab2b053c4b2838bd6b71"
MIXED_QUERY = b"symbol=LTCBTC&side=BUY&type=LIMIT&timeInForce=GTC"
MIXED_BODY = b"quantity=1&price=0.1&recvWindow=5000&timestamp=1499827319559"
MIXED_SIGNATURE = b"0fd168b8ddb4876a0358a8d14d0c9f3da0e9b20c5d52b2a00fcf7d1c602f9a77"


def refused(code: ResultCode) -> pytest.RaisesExc[ApiError]:
    return pytest.raises(ApiError, check=lambda error: error.result is code)


def test_binance_example_with_every_parameter_in_the_query_verifies() -> None:
    query = ALL_IN_QUERY + b"&signature=" + ALL_IN_QUERY_SIGNATURE
    total, signature = split_signature(query, b"", body_is_form=False)
    assert total == ALL_IN_QUERY
    assert sign(BINANCE_SECRET, total).encode() == ALL_IN_QUERY_SIGNATURE
    check_signature(BINANCE_SECRET, total, signature)


def test_binance_example_with_query_and_form_body_signs_their_concatenation() -> None:
    body = MIXED_BODY + b"&signature=" + MIXED_SIGNATURE  # ccxt puts the signature at the end of the form body
    total, signature = split_signature(MIXED_QUERY, body, body_is_form=True)
    assert total == MIXED_QUERY + MIXED_BODY
    check_signature(BINANCE_SECRET, total, signature)


def test_a_signature_in_a_json_body_is_not_a_parameter() -> None:
    with refused(ResultCode.INVALID_SIGNATURE):
        split_signature(b"timestamp=1", b'{"signature=abc": 1}', body_is_form=False)


def test_a_second_signature_parameter_is_refused() -> None:
    with refused(ResultCode.INVALID_SIGNATURE):
        split_signature(b"a=1&signature=" + MIXED_SIGNATURE, b"signature=" + MIXED_SIGNATURE, body_is_form=True)


@pytest.mark.parametrize(
    "signature",
    [MIXED_SIGNATURE.upper(), MIXED_SIGNATURE[:-1], MIXED_SIGNATURE[:-1] + b"0", b"", b"zz" * 32],
    ids=["uppercase", "short", "one-digit-off", "empty", "not-hex"],
)
def test_a_wrong_or_malformed_signature_is_refused(signature: bytes) -> None:
    with refused(ResultCode.INVALID_SIGNATURE):
        check_signature(BINANCE_SECRET, MIXED_QUERY + MIXED_BODY, signature)


@pytest.mark.parametrize("length", [2046, 2047, 2048, 4094, 16_385])
def test_a_body_fed_to_the_hmac_in_pieces_signs_as_a_whole(length: int) -> None:
    # the check feeds a long body in pieces (so that OpenSSL keeps the GIL): the signature is still the HMAC
    # of the whole, a copy of the keyed secret is used, and the keyed secret itself is left untouched
    total = (b"quantity=1&price=0.1&" * 1000)[:length]
    expected = hmac.new(BINANCE_SECRET.encode(), total, hashlib.sha256).hexdigest()
    key = signing_key(BINANCE_SECRET)
    assert sign(BINANCE_SECRET, total) == expected
    check_signature(key, total, expected.encode())
    check_signature(key, total, expected.encode())
    with refused(ResultCode.INVALID_SIGNATURE):
        check_signature(key, total + b"&", expected.encode())


def test_the_client_signer_signs_what_the_server_checks() -> None:
    signer = Signer("key", "s3cret")
    query = signer.signed_query(b"symbol=TATA_INR", b'{"side":"buy"}', timestamp=1700000000000)
    total, signature = split_signature(query, b'{"side":"buy"}', body_is_form=False)
    assert total == b'symbol=TATA_INR&timestamp=1700000000000{"side":"buy"}'
    check_signature("s3cret", total, signature)


def test_timestamp_within_the_default_window_is_accepted() -> None:
    assert check_window({"timestamp": "1000000"}, now_ms=1004000) == (1000000, 5000)


@pytest.mark.parametrize(
    ("params", "now_ms"),
    [
        ({"timestamp": "1000000"}, 1005001),  # older than the default 5000 ms
        ({"timestamp": "1000000", "recvWindow": "100"}, 1000101),
        ({"timestamp": "1001000"}, 1000000),  # a second or more ahead of the server
        ({}, 1000000),
        ({"timestamp": "-5"}, 1000000),
        ({"timestamp": "1e6"}, 1000000),
    ],
    ids=["stale", "stale-short-window", "future", "missing", "negative", "not-an-integer"],
)
def test_timestamp_outside_its_window_is_refused(params: dict[str, str], now_ms: int) -> None:
    with refused(ResultCode.TIMESTAMP_OUTSIDE_WINDOW):
        check_window(params, now_ms)


@pytest.mark.parametrize("window", ["0", "60001", "abc", "-1"])
def test_recv_window_is_bounded(window: str) -> None:
    with refused(ResultCode.INVALID_REQUEST):
        check_window({"timestamp": "1000000", "recvWindow": window}, 1000000)


def test_signed_params_reads_the_query_then_a_form_body_and_refuses_duplicates() -> None:
    assert signed_params(MIXED_QUERY, MIXED_BODY, body_is_form=True) == {
        "recvWindow": "5000",
        "timestamp": "1499827319559",
    }
    assert signed_params(MIXED_QUERY, MIXED_BODY, body_is_form=False) == {}
    with refused(ResultCode.INVALID_REQUEST):
        signed_params(b"timestamp=1", b"timestamp=2", body_is_form=True)


def test_a_signature_seen_within_its_window_is_a_replay_and_is_forgotten_after() -> None:
    guard = ReplayGuard()
    guard.check_and_remember(b"a" * 64, timestamp=1000, window=5000, now_ms=1000)
    with refused(ResultCode.REPLAYED_REQUEST):
        guard.check_and_remember(b"a" * 64, timestamp=1000, window=5000, now_ms=3000)
    guard.check_and_remember(b"b" * 64, timestamp=1000, window=5000, now_ms=3000)
    guard.check_and_remember(b"c" * 64, timestamp=9000, window=5000, now_ms=9000)  # a and b expire
    assert len(guard) == 1


def test_the_replay_guard_holds_at_most_its_capacity() -> None:
    guard = ReplayGuard(capacity=10)
    for n in range(25):
        guard.check_and_remember(b"%064d" % n, timestamp=1000, window=5000, now_ms=1000)
    assert len(guard) == 10


def test_key_secrets_depend_on_the_server_secret_and_the_key() -> None:
    first = derive_secret(b"server-one", "key-a")
    assert len(first) == 64 and first == first.lower()
    assert first == derive_secret(b"server-one", "key-a")
    assert first != derive_secret(b"server-two", "key-a")
    assert first != derive_secret(b"server-one", "key-b")


def test_the_same_request_signed_twice_at_once_gets_two_signatures_and_distinct_ones_keep_the_clock() -> None:
    import time

    signer = Signer("key", "s3cret")
    same = {signer.signed_query(b"a=1", b"{}") for _ in range(50)}
    distinct = [signer.signed_query(b"", b"%d" % n) for n in range(5000)]
    last_stamp = int(distinct[-1].split(b"timestamp=")[1].split(b"&")[0])

    assert len(same) == 50  # never taken for a replay of each other
    assert last_stamp <= time.time_ns() // 1_000_000  # no drift ahead of the clock
