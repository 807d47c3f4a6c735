"""Accounts and security end to end: signed requests, API keys, the operator's token and dev mode, against
`python run.py` on a free port. Every refusal is checked by its status and its own result code."""

from __future__ import annotations

import json
import os
import pathlib
import stat
import subprocess
import sys
import time
import uuid
from collections.abc import Iterator
from typing import Any

import httpx
import pytest
from conftest import ADMIN_TOKEN, ROOT, RunningServer, create_key, free_port, start_server

from openbell.client import Client, OperatorAuth, SignedAuth, Signer, sign_request
from openbell.core.types import ResultCode

MARKET = "TATA_INR"


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[RunningServer]:
    running = start_server(tmp_path_factory.mktemp("auth"))
    yield running
    assert running.stop() == 0, running.log()


def unique(prefix: str) -> str:
    return f"{prefix}-{uuid.uuid4().hex[:10]}"


def assert_refused(response: httpx.Response, status: int, code: ResultCode) -> None:
    assert response.status_code == status, response.text
    body = response.json()
    assert body["code"] == int(code), body
    assert set(body) == {"code", "message"}


def operator(server: RunningServer) -> httpx.Client:
    return httpx.Client(base_url=server.api, auth=OperatorAuth(ADMIN_TOKEN), timeout=10)


def signed(server: RunningServer, key: dict[str, Any]) -> httpx.Client:
    return httpx.Client(base_url=server.api, auth=SignedAuth(Signer(key["apiKey"], key["secret"])), timeout=10)


def fund(server: RunningServer, user: str, asset: str, amount: str) -> None:
    with operator(server) as admin:
        body = {"user_id": user, "asset": asset, "amount": amount, "txnId": unique("txn")}
        response = admin.post("/onramp", json=body)
    assert response.status_code == 200, response.text


def order(user: str | None = None, price: str = "100.00", side: str = "sell") -> dict[str, Any]:
    body: dict[str, Any] = {"market": MARKET, "side": side, "type": "limit", "price": price, "quantity": "1"}
    if user is not None:
        body["user_id"] = user
    return body


# ------------------------------------------------------------------------------------------- the happy path
def test_a_signed_order_acts_as_the_keys_user_without_naming_it(server: RunningServer) -> None:
    alice = unique("alice")
    key = create_key(server.api, alice)
    fund(server, alice, "TATA", "5")
    with signed(server, key) as client:
        placed = client.post("/order", json=order(price="900.00"))
        assert placed.status_code == 200, placed.text
        balance = client.get("/balance").json()
        listed = client.get("/order/open").json()
    assert balance["TATA"] == {"available": "4.00", "locked": "1.00"}
    assert [o["orderId"] for o in listed] == [placed.json()["orderId"]]


def test_a_key_creation_answers_its_secret_once_and_the_listing_never(server: RunningServer) -> None:
    alice = unique("alice")
    with operator(server) as admin:
        created = admin.post("/admin/keys", json={"user_id": alice, "permissions": ["read"]})
        listed = admin.get("/admin/keys", params={"user_id": alice})
    assert created.status_code == 200, created.text
    key = created.json()
    assert {"user_id", "apiKey", "secret", "permissions"} <= set(key)
    assert key["user_id"] == alice and key["permissions"] == ["read"]
    assert [k["apiKey"] for k in listed.json()] == [key["apiKey"]]
    assert key["secret"] not in listed.text


# ------------------------------------------------------------------------------------------- refusals
def test_a_request_without_a_key_is_refused(server: RunningServer) -> None:
    response = httpx.post(f"{server.api}/order", json=order("alice"))
    assert_refused(response, 401, ResultCode.MISSING_API_KEY)
    assert_refused(httpx.get(f"{server.api}/balance", params={"user_id": "alice"}), 401, ResultCode.MISSING_API_KEY)


def test_an_unknown_key_is_refused(server: RunningServer) -> None:
    with signed(server, {"apiKey": "0" * 64, "secret": "x" * 64}) as client:
        assert_refused(client.get("/balance"), 401, ResultCode.UNKNOWN_API_KEY)


def test_a_bad_signature_is_refused(server: RunningServer) -> None:
    key = create_key(server.api, unique("alice"))
    with signed(server, {**key, "secret": "not-the-secret"}) as client:
        assert_refused(client.get("/balance"), 401, ResultCode.INVALID_SIGNATURE)
    response = httpx.get(f"{server.api}/balance", headers={"X-MBX-APIKEY": key["apiKey"]})
    assert_refused(response, 401, ResultCode.INVALID_SIGNATURE)


def test_a_request_changed_after_signing_is_refused(server: RunningServer) -> None:
    key = create_key(server.api, unique("alice"))
    request = httpx.Request("POST", f"{server.api}/order", json=order(price="900.00"))
    sign_request(request, Signer(key["apiKey"], key["secret"]))
    tampered = httpx.Request(
        "POST", request.url, headers=request.headers, content=request.content.replace(b"900.00", b"100.00")
    )
    with httpx.Client(timeout=10) as client:
        assert_refused(client.send(tampered), 401, ResultCode.INVALID_SIGNATURE)


@pytest.mark.parametrize("offset_ms", [-10_000, 5_000], ids=["stale", "future"])
def test_a_timestamp_outside_the_window_is_refused(server: RunningServer, offset_ms: int) -> None:
    key = create_key(server.api, unique("alice"))
    signer = Signer(key["apiKey"], key["secret"])
    query = signer.signed_query(b"", timestamp=time.time_ns() // 1_000_000 + offset_ms)
    response = httpx.get(f"{server.api}/balance?{query.decode()}", headers={"X-MBX-APIKEY": key["apiKey"]})
    assert_refused(response, 400, ResultCode.TIMESTAMP_OUTSIDE_WINDOW)


def test_a_replayed_order_is_refused_and_a_repeated_read_is_not(server: RunningServer) -> None:
    alice = unique("alice")
    key = create_key(server.api, alice)
    fund(server, alice, "TATA", "5")
    request = httpx.Request("POST", f"{server.api}/order", json=order(price="900.00"))
    sign_request(request, Signer(key["apiKey"], key["secret"]))
    read = httpx.Request("GET", f"{server.api}/balance")
    sign_request(read, Signer(key["apiKey"], key["secret"]))
    with httpx.Client(timeout=10) as client:
        assert client.send(request).status_code == 200
        assert_refused(client.send(request), 400, ResultCode.REPLAYED_REQUEST)
        assert client.send(read).status_code == 200
        assert client.send(read).status_code == 200
    with signed(server, key) as client:
        assert len(client.get("/order/open").json()) == 1


def test_a_read_only_key_cannot_place_or_cancel(server: RunningServer) -> None:
    alice = unique("alice")
    key = create_key(server.api, alice, ("read",))
    with signed(server, key) as client:
        assert_refused(client.post("/order", json=order()), 403, ResultCode.MISSING_PERMISSION)
        cancel = client.request("DELETE", "/order", json={"market": MARKET, "orderId": "1"})
        assert_refused(cancel, 403, ResultCode.MISSING_PERMISSION)
        assert client.get("/balance").status_code == 200


@pytest.mark.parametrize(
    ("method", "path", "body"),
    [
        ("POST", "/onramp", {"user_id": "x", "asset": "INR", "amount": "1", "txnId": "t1"}),
        ("POST", "/markets", {"symbol": "A_INR", "base": "A", "quote": "INR", "tickSize": "1", "lotSize": "1"}),
        ("POST", "/admin/keys", {"user_id": "x"}),
        ("GET", "/admin/keys?user_id=x", None),
        ("DELETE", "/admin/keys/abc", None),
    ],
)
def test_operator_routes_refuse_user_keys_and_missing_or_wrong_tokens(
    server: RunningServer, method: str, path: str, body: dict[str, Any] | None
) -> None:
    key = create_key(server.api, unique("alice"))
    with signed(server, key) as client:
        assert_refused(client.request(method, path, json=body), 403, ResultCode.ADMIN_ONLY)
    with httpx.Client(base_url=server.api, timeout=10) as client:
        assert_refused(client.request(method, path, json=body), 401, ResultCode.MISSING_API_KEY)
    with httpx.Client(base_url=server.api, auth=OperatorAuth("wrong"), timeout=10) as client:
        assert_refused(client.request(method, path, json=body), 401, ResultCode.INVALID_ADMIN_TOKEN)


def test_a_user_cannot_act_or_read_as_another_user(server: RunningServer) -> None:
    alice, bob = unique("alice"), unique("bob")
    fund(server, bob, "TATA", "5")
    with signed(server, create_key(server.api, bob)) as as_bob:
        bobs_order = as_bob.post("/order", json=order(price="900.00")).json()["orderId"]
    with signed(server, create_key(server.api, alice)) as as_alice:
        assert_refused(as_alice.post("/order", json=order(bob)), 403, ResultCode.NOT_YOUR_USER)
        assert_refused(as_alice.get("/balance", params={"user_id": bob}), 403, ResultCode.NOT_YOUR_USER)
        assert_refused(as_alice.get("/order/open", params={"user_id": bob}), 403, ResultCode.NOT_YOUR_USER)
        by_name = as_alice.request("DELETE", "/order", json={"market": MARKET, "orderId": bobs_order, "user_id": bob})
        assert_refused(by_name, 403, ResultCode.NOT_YOUR_USER)
        # without naming bob, bob's order is alice's unknown order
        unnamed = as_alice.request("DELETE", "/order", json={"market": MARKET, "orderId": bobs_order})
        assert_refused(unnamed, 404, ResultCode.UNKNOWN_ORDER)
    with signed(server, create_key(server.api, bob)) as as_bob:
        assert [o["orderId"] for o in as_bob.get("/order/open").json()] == [bobs_order]


def test_a_revoked_key_is_refused_at_once(server: RunningServer) -> None:
    key = create_key(server.api, unique("alice"))
    with signed(server, key) as client:
        assert client.get("/balance").status_code == 200
        with operator(server) as admin:
            assert admin.delete(f"/admin/keys/{key['apiKey']}").json() == {"apiKey": key["apiKey"], "status": "revoked"}
            assert_refused(admin.delete(f"/admin/keys/{key['apiKey']}"), 404, ResultCode.UNKNOWN_API_KEY_TO_REVOKE)
        assert_refused(client.get("/balance"), 401, ResultCode.UNKNOWN_API_KEY)


def test_a_cross_site_text_plain_post_places_nothing(server: RunningServer) -> None:
    headers = {"Content-Type": "text/plain", "Origin": "https://evil.example"}
    response = httpx.post(f"{server.api}/order", content=json.dumps(order("alice")), headers=headers)
    assert_refused(response, 401, ResultCode.MISSING_API_KEY)
    assert "access-control-allow-origin" not in response.headers


def test_market_data_needs_no_key(server: RunningServer) -> None:
    for path in ("/depth?symbol=TATA_INR", "/trades?symbol=TATA_INR", "/ticker?symbol=TATA_INR", "/markets", "/health"):
        assert httpx.get(f"{server.api}{path}").status_code == 200, path


def test_the_signing_client_trades_and_the_key_command_prints_a_key(server: RunningServer) -> None:
    alice = unique("alice")
    result = subprocess.run(
        [sys.executable, "run.py", "key", "create", "--user", alice, "--url", server.base_url],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert result.returncode == 0, result.stderr
    key = json.loads(result.stdout)
    assert key["user_id"] == alice and key["permissions"] == ["read", "trade"]
    fund(server, alice, "TATA", "2")
    with Client(server.base_url, api_key=key["apiKey"], secret=key["secret"]) as client:
        assert client.post("/order", json=order(price="900.00")).status_code == 200
        assert client.get("/balance").json()["TATA"]["locked"] == "1.00"

    def key_command(*words: str) -> subprocess.CompletedProcess[str]:
        argv = [sys.executable, "run.py", "key", *words, "--url", server.base_url]
        return subprocess.run(argv, cwd=ROOT, capture_output=True, text=True, timeout=60)

    listed = key_command("list", "--user", alice)
    assert listed.returncode == 0 and [k["apiKey"] for k in json.loads(listed.stdout)] == [key["apiKey"]]
    assert key["secret"] not in listed.stdout
    assert key_command("revoke", key["apiKey"]).returncode == 0
    with Client(server.base_url, api_key=key["apiKey"], secret=key["secret"]) as client:
        assert client.get("/balance").status_code == 401


# ------------------------------------------------------------------------------------------- durability
def test_keys_survive_kill_9_and_the_data_directory_holds_no_secret(tmp_path: pathlib.Path) -> None:
    data = tmp_path / "data"
    first = start_server(tmp_path, "--data-dir", str(data))
    try:
        key = create_key(first.api, "alice")
        revoked = create_key(first.api, "alice")
        with operator(first) as admin:
            assert admin.delete(f"/admin/keys/{revoked['apiKey']}").status_code == 200
    finally:
        first.process.kill()
        first.process.wait(10)
    for path in data.rglob("*"):
        if path.is_file():
            assert key["secret"].encode() not in path.read_bytes(), path
    second = start_server(tmp_path, "--data-dir", str(data))
    try:
        with signed(second, key) as client:
            assert client.get("/balance").status_code == 200
        with signed(second, revoked) as client:
            assert_refused(client.get("/balance"), 401, ResultCode.UNKNOWN_API_KEY)
    finally:
        assert second.stop() == 0, second.log()


# ------------------------------------------------------------------------------------------- the token
def start_without_token(tmp_path: pathlib.Path, *args: str) -> tuple[subprocess.Popen[str], int]:
    port = free_port()
    env = {k: v for k, v in os.environ.items() if k != "OPENBELL_ADMIN_TOKEN"}
    process = subprocess.Popen(
        [sys.executable, "run.py", "--host", "127.0.0.1", "--port", str(port), "--log-level", "info", *args],
        cwd=ROOT,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
        env=env,
    )
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        try:
            if httpx.get(f"http://127.0.0.1:{port}/api/v1/health", timeout=1).status_code == 200:
                return process, port
        except httpx.HTTPError:
            time.sleep(0.1)
    process.kill()
    raise AssertionError(process.communicate(timeout=10)[0])


def stop(process: subprocess.Popen[str]) -> str:
    process.send_signal(2)
    output, _ = process.communicate(timeout=15)
    return output


def test_the_operator_token_is_made_once_in_the_data_directory_mode_0600_and_never_logged(
    tmp_path: pathlib.Path,
) -> None:
    data = tmp_path / "data"
    process, port = start_without_token(tmp_path, "--data-dir", str(data))
    token_file = data / "admin-token"
    token = token_file.read_text().strip()
    response = httpx.get(
        f"http://127.0.0.1:{port}/api/v1/admin/keys?user_id=a", headers={"Authorization": f"Bearer {token}"}
    )
    output = stop(process)
    assert response.status_code == 200, response.text
    assert stat.S_IMODE(token_file.stat().st_mode) == 0o600
    assert str(token_file) in output
    assert token not in output
    process, port = start_without_token(tmp_path, "--data-dir", str(data))
    stop(process)
    assert token_file.read_text().strip() == token


def test_in_memory_without_a_token_prints_one_made_for_the_run_once(tmp_path: pathlib.Path) -> None:
    process, _port = start_without_token(tmp_path, "--in-memory")
    output = ""
    try:
        assert process.stdout is not None
        deadline = time.monotonic() + 10
        while "operator token" not in output and time.monotonic() < deadline:
            output += process.stdout.readline()
    finally:
        output += stop(process)
    lines = [line for line in output.splitlines() if "operator token" in line]
    assert len(lines) == 1, output
    token = lines[0].rsplit(" ", 1)[1]
    assert len(token) >= 32


# ------------------------------------------------------------------------------------------- dev mode
def test_dev_mode_takes_the_user_from_the_request_or_the_api_key_header(tmp_path: pathlib.Path) -> None:
    server = start_server(tmp_path, "--in-memory", "--dev")
    try:
        fund_body = {"user_id": "carol", "asset": "TATA", "amount": "3", "txnId": unique("txn")}
        assert httpx.post(f"{server.api}/onramp", json=fund_body).status_code == 200
        by_header = httpx.get(f"{server.api}/balance", headers={"X-MBX-APIKEY": "carol"}).json()
        by_name = httpx.get(f"{server.api}/balance", params={"user_id": "carol"}).json()
        config = httpx.get(f"{server.api}/config").json()
        text_plain = httpx.post(
            f"{server.api}/order", content=json.dumps(order("carol")), headers={"Content-Type": "text/plain"}
        )
    finally:
        assert server.stop() == 0
    assert by_header == by_name and by_name["TATA"]["available"] == "3.00"
    assert config["auth"] == "dev"  # the web page signs in by user id
    assert_refused(text_plain, 415, ResultCode.UNSUPPORTED_MEDIA_TYPE)
    assert "DEV MODE" in server.log()


def test_dev_mode_is_refused_on_a_non_loopback_address() -> None:
    result = subprocess.run(
        [sys.executable, "run.py", "--dev", "--in-memory", "--host", "0.0.0.0", "--port", str(free_port())],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert result.returncode == 2
    assert "--dev" in result.stderr and "0.0.0.0" in result.stderr
