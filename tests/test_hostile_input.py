"""Hostile input a server exposed to the world meets: duplicate JSON names, a request head trickled in
byte by byte (slowloris), cross-site bodies. Against `python run.py` on a free port."""

from __future__ import annotations

import json
import pathlib
import socket
import time
from collections.abc import Iterator

import httpx
import pytest
from conftest import RunningServer, start_server

from openbell.core.types import ResultCode
from openbell.http.parse import DuplicateKey, loads_strict


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[RunningServer]:
    running = start_server(tmp_path_factory.mktemp("hostile"), "--in-memory", "--head-timeout", "2")
    yield running
    assert running.stop() == 0, running.log()


def test_a_json_name_given_twice_is_refused_whatever_the_parser() -> None:
    with pytest.raises(DuplicateKey):
        loads_strict('{"user_id":"bob","market":"X","user_id":"eve"}')
    with pytest.raises(DuplicateKey):
        loads_strict('{"a":{"b":1,"b":2}}')
    with pytest.raises(ValueError):
        loads_strict('{"price":NaN}')
    assert loads_strict('{"a":{"b":1},"b":[{"a":2}]}') == {"a": {"b": 1}, "b": [{"a": 2}]}


def test_an_order_naming_its_user_twice_is_refused(server: RunningServer) -> None:
    body = '{"market":"TATA_INR","side":"buy","price":"1","quantity":"1","user_id":"bob","user_id":"eve"}'
    response = httpx.post(
        f"{server.api}/admin/keys", content=body, headers={"Content-Type": "application/json"}, auth=server.admin
    )
    assert response.status_code == 400, response.text
    assert response.json()["code"] == int(ResultCode.INVALID_REQUEST)
    assert "twice" in response.json()["message"]


def test_a_request_head_trickled_in_is_cut_off_after_the_head_timeout(server: RunningServer) -> None:
    started = time.monotonic()
    answer = b""
    with socket.create_connection(("127.0.0.1", server.port), timeout=10) as sock:
        sock.sendall(b"GET /api/v1/markets HTTP/1.1\r\nHost: x\r\n")
        try:
            for _ in range(40):  # a header byte every 0.25 s: 10 s if never cut off
                sock.sendall(b"X")
                time.sleep(0.25)
                sock.settimeout(0.01)
                try:
                    answer += sock.recv(4096)
                except TimeoutError:
                    continue
                if answer or time.monotonic() - started > 10:
                    break
        except (BrokenPipeError, ConnectionResetError):
            pass
    elapsed = time.monotonic() - started
    assert answer.startswith(b"HTTP/1.1 408"), answer[:200]
    assert elapsed < 6, elapsed  # the bound is 2 s from the first byte (checked every second)


def test_a_quick_request_on_the_same_server_is_unaffected(server: RunningServer) -> None:
    assert httpx.get(f"{server.api}/markets").status_code == 200


def test_a_form_body_on_a_json_route_is_refused_before_anything_is_done(tmp_path: pathlib.Path) -> None:
    dev = start_server(tmp_path, "--in-memory", "--dev")
    try:
        form = httpx.post(
            f"{dev.api}/onramp", data={"user_id": "x", "asset": "INR", "amount": "5", "txnId": "t"}, timeout=10
        )
        balance = httpx.get(f"{dev.api}/balance", params={"user_id": "x"}, timeout=10).json()
    finally:
        assert dev.stop() == 0
    assert form.status_code == 415 and json.loads(form.text)["code"] == int(ResultCode.UNSUPPORTED_MEDIA_TYPE)
    assert balance == {}
