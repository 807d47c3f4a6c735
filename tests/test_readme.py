"""README.md's quick start works as written: its curl commands, run in order against a fresh server,
all succeed, and the balances they end with are the ones the README states."""

from __future__ import annotations

import json
import re
import shlex
import shutil
import subprocess
from collections.abc import Iterator

import httpx
import pytest
from conftest import ROOT, RunningServer, start_server

README = ROOT / "README.md"
README_ORIGIN = "http://127.0.0.1:8000"
BALANCE_ROW = re.compile(r'"([A-Z0-9]+)":\{"available":"([0-9.]+)","locked":"([0-9.]+)"\}')

USER_2_EXPECTED = {
    "INR": {"available": "400.00", "locked": "0.00"},
    "TATA": {"available": "40.00", "locked": "6.00"},
}
"""User 2 sold 4 of the 10 TATA offered at 100.00: the README states these in prose."""


def quick_start() -> str:
    text = README.read_text()
    match = re.search(r"^## Quick start\n(.*?)(?=^## |\Z)", text, flags=re.MULTILINE | re.DOTALL)
    assert match, "README.md has no '## Quick start' section"
    return match.group(1)


def curl_commands() -> list[str]:
    return [line.strip() for line in quick_start().splitlines() if line.strip().startswith("curl ")]


@pytest.fixture(scope="module")
def fresh_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[RunningServer]:
    server = start_server(tmp_path_factory.mktemp("readme"), "--dev")  # the quick start says dev mode
    yield server
    code = server.stop()
    assert code == 0, f"server exited with {code}:\n{server.log()}"


def run_with_curl(argv: list[str]) -> tuple[int, str]:
    completed = subprocess.run(
        [*argv, "--max-time", "10", "-w", "\n%{http_code}"], capture_output=True, text=True, timeout=20, check=False
    )
    assert completed.returncode == 0, completed.stderr
    body, _, status = completed.stdout.rpartition("\n")
    return int(status), body


def run_with_httpx(argv: list[str]) -> tuple[int, str]:
    """The same command without a curl binary; only the flags the quick start uses are understood."""
    method, data, url = "GET", None, None
    headers: dict[str, str] = {}
    words = iter(argv[1:])
    for word in words:
        if word == "-s":
            continue
        if word == "-H":
            name, _, value = next(words).partition(":")
            headers[name.strip()] = value.strip()
        elif word == "-X":
            method = next(words)
        elif word == "-d":
            data = next(words)
            method = "POST" if method == "GET" else method
        elif word.startswith("http"):
            url = word
        else:
            raise AssertionError(f"unexpected curl argument {word!r} in the quick start")
    assert url is not None
    response = httpx.request(method, url, content=data, headers=headers, timeout=10)
    return response.status_code, response.text


def signed_requests() -> str:
    text = README.read_text()
    match = re.search(r"^## Signed requests.*?\n(.*?)(?=^## |\Z)", text, flags=re.MULTILINE | re.DOTALL)
    assert match, "README.md has no '## Signed requests' section"
    return match.group(1)


def test_the_worked_signing_example_is_what_the_server_computes() -> None:
    section = signed_requests()
    secret = re.search(r"whose secret is `([0-9a-f]{64})`", section)
    rows = dict(re.findall(r"^(query|body|totalParams|signature|request) {2,}(.+)$", section, flags=re.MULTILINE))
    assert secret and set(rows) == {"query", "body", "totalParams", "signature", "request"}, rows
    from openbell.edge.signing import check_signature, split_signature

    assert rows["totalParams"] == rows["query"] + rows["body"]
    query = rows["request"].split("?", 1)[1].encode()
    total, signature = split_signature(query, rows["body"].encode(), body_is_form=False)
    assert total.decode() == rows["totalParams"] and signature.decode() == rows["signature"]
    check_signature(secret.group(1), total, signature)


def test_the_quick_start_has_the_planned_commands() -> None:
    commands = curl_commands()

    assert len(commands) >= 8, commands
    assert all(README_ORIGIN + "/api/v1/" in command for command in commands), commands


def test_the_quick_start_commands_succeed_and_end_with_the_stated_balances(fresh_server: RunningServer) -> None:
    run = run_with_curl if shutil.which("curl") else run_with_httpx
    outputs: list[tuple[str, str]] = []

    for command in curl_commands():
        argv = shlex.split(command.replace(README_ORIGIN, fresh_server.base_url))
        status, body = run(argv)
        assert 200 <= status < 300, (command, status, body)
        outputs.append((command, body))

    balances = {
        re.search(r"user_id=([^&\s\"']+)", command).group(1): json.loads(body)  # type: ignore[union-attr]
        for command, body in outputs
        if "/balance?" in command
    }
    stated_for_user_1 = {asset: {"available": a, "locked": lk} for asset, a, lk in BALANCE_ROW.findall(quick_start())}
    assert set(stated_for_user_1) == {"INR", "TATA"}, "the README should state user 1's INR and TATA rows"
    assert (
        balances["1"]
        == stated_for_user_1
        == {
            "INR": {"available": "600.00", "locked": "0.00"},
            "TATA": {"available": "4.00", "locked": "0.00"},
        }
    )
    assert balances["2"] == USER_2_EXPECTED
    for figure in ("40.00 TATA available", "6.00 still locked", "400.00 INR"):
        assert figure in " ".join(quick_start().split()), figure


def test_the_quick_start_shows_the_fill_at_the_resting_price(fresh_server: RunningServer) -> None:
    """Runs after the commands above (same server): the book and the tape they leave."""
    depth = httpx.get(f"{fresh_server.api}/depth", params={"symbol": "TATA_INR"}, timeout=10).json()
    trades = httpx.get(f"{fresh_server.api}/trades", params={"symbol": "TATA_INR"}, timeout=10).json()

    assert (depth["bids"], depth["asks"]) == ([], [["100.00", "6"]])
    assert [(t["price"], t["quantity"]) for t in trades] == [("100.00", "4")]
