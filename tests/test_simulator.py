"""The market simulator (`python run.py simulate`) against real exchanges on free ports: it trades, gets no
5xx, its balance check passes, the same seed sends the same requests, and an address that does not answer is
refused in one line."""

from __future__ import annotations

import pathlib
import re
import subprocess
import sys
from collections.abc import Iterator

import httpx
import pytest
from conftest import ROOT, RunningServer, free_port, start_server
from redis_server import redis_server  # noqa: F401  (fixture)
from test_cluster import Cluster, cluster  # noqa: F401  (fixture)

from openbell.simulator.accounting import Ledger
from openbell.simulator.grid import Grid

MARKETS = "TATA_INR:0.01:1:10:25,INFY_INR:0.05:1"
"""Two markets, one with maker and taker fees, so the check covers fees and markets trading side by side."""
ASSETS = "TATA:2,INFY:2,INR:2"


def simulate(server_url: str, *args: str, timeout: float = 120.0) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "run.py", "simulate", "--url", server_url, "--progress", "0.5", "--rate", "0", *args],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=timeout,
    )


def exchange_with_fees(tmp: pathlib.Path) -> RunningServer:
    return start_server(tmp, "--in-memory", "--markets", MARKETS, "--assets", ASSETS)


@pytest.fixture
def fresh_exchanges(tmp_path: pathlib.Path) -> Iterator[list[RunningServer]]:
    """Exchanges a test starts (each from empty books and balances); stopped in teardown."""
    started: list[RunningServer] = []
    yield started
    for server in started:
        server.stop()


def summary_number(output: str, pattern: str) -> int:
    match = re.search(pattern, output)
    assert match, f"{pattern!r} not in:\n{output}"
    return int(match.group(1))


def test_a_bounded_run_trades_with_no_server_error_and_its_users_hold_deposits_plus_fills_less_fees(
    tmp_path: pathlib.Path, fresh_exchanges: list[RunningServer]
) -> None:
    # Arrange: an exchange with two markets, one charging fees.
    server = exchange_with_fees(tmp_path)
    fresh_exchanges.append(server)

    # Act: a run of a few seconds.
    result = simulate(server.base_url, "--duration", "3", "--seed", "3")

    # Assert: it exits 0 (check passed, no 5xx), it traded, and it left nothing on the books.
    output = result.stderr
    assert result.returncode == 0, output
    assert "balance check passed" in output
    assert summary_number(output, r"(\d+) trades \(") > 0
    statuses = re.search(r"statuses (.*)", output)
    assert statuses and not re.search(r"\b5\d\d:", statuses.group(1)), output
    assert re.search(r"orders +\d+/s +trades +\d+/s +p50", output), "no progress line"
    for market in ("TATA_INR", "INFY_INR"):
        trades = httpx.get(f"{server.api}/trades", params={"symbol": market}).json()
        assert trades, f"no trade on {market}"
        book = httpx.get(f"{server.api}/depth", params={"symbol": market}).json()
        assert book["bids"] == [] and book["asks"] == [], f"{market}: the makers left orders open: {book}"


def test_the_same_seed_sends_the_same_requests_to_fresh_exchanges_and_another_seed_does_not(
    tmp_path: pathlib.Path, fresh_exchanges: list[RunningServer]
) -> None:
    # Arrange: three fresh exchanges alike.
    records = []
    for run, seed in enumerate(("11", "11", "12")):
        (tmp_path / f"run-{run}").mkdir()
        server = exchange_with_fees(tmp_path / f"run-{run}")
        fresh_exchanges.append(server)
        record = tmp_path / f"requests-{run}.txt"

        # Act: the same number of steps, seeds 11, 11, 12.
        result = simulate(server.base_url, "--steps", "30", "--seed", seed, "--duration", "0", "--record", str(record))
        assert result.returncode == 0, result.stderr
        records.append(record.read_text())

    # Assert: the first two sent the same requests, in the same order per market; the third did not.
    first, second, other = records
    assert first.count("POST /order") > 30 and "DELETE /order" in first
    assert first == second
    assert first != other


def test_a_bounded_run_against_the_cluster_trades_and_passes_its_check(cluster: Cluster) -> None:  # noqa: F811
    # Arrange: an engine, an API process and a WebSocket process over Redis.
    cluster.engine("--in-memory")
    api = cluster.api()
    ws = cluster.ws()

    # Act: the simulator on the API process, reading fills from the WebSocket process.
    result = simulate(f"http://127.0.0.1:{api.port}", "--ws-url", f"ws://127.0.0.1:{ws.port}/ws", "--duration", "3")

    # Assert
    assert result.returncode == 0, result.stderr
    assert "balance check passed" in result.stderr
    assert summary_number(result.stderr, r"(\d+) trades \(") > 0


def test_an_address_that_does_not_answer_is_refused_in_one_line() -> None:
    result = simulate(f"http://127.0.0.1:{free_port()}", "--duration", "1")

    assert result.returncode == 2
    assert result.stderr.count("\n") == 1, result.stderr
    assert result.stderr.startswith("openbell simulate: cannot reach the exchange at http://127.0.0.1:")


def test_the_check_charges_each_fill_its_fee_at_the_rate_of_its_side() -> None:
    """What the balance check expects, worked by hand: a fee is floor(received x bps / 10000), per fill."""
    grid = Grid.from_api({"symbol": "TATA_INR", "base": "TATA", "quote": "INR", "tickSize": "0.01", "lotSize": "1",
                          "baseDecimals": 2, "quoteDecimals": 2, "makerFeeBps": 10, "takerFeeBps": 25})
    ledger = Ledger({"TATA_INR": grid})
    ledger.deposits["u"]["INR"] += 1_000_000  # 10000.00 INR
    ledger.deposits["u"]["TATA"] += 10_000  # 100.00 TATA
    # it took 50 at 101.37 (buying), and its resting sell made 20 at 101.50
    ledger.add_fill("u", {"s": "TATA_INR", "t": "1", "i": "7", "S": "BUY", "p": "101.37", "q": "50", "m": False})
    ledger.add_fill("u", {"s": "TATA_INR", "t": "2", "i": "8", "S": "SELL", "p": "101.50", "q": "20", "m": True})
    ledger.add_fill("u", {"s": "TATA_INR", "t": "2", "i": "8", "S": "SELL", "p": "101.50", "q": "20", "m": True})

    expected = ledger.expected("u")

    # TATA: 100.00 + 50.00 received - 0.12 taker fee (12.5 units, floored) - 20.00 sold
    assert expected["TATA"] == 10_000 + 5_000 - 12 - 2_000
    # INR: 10000.00 - 5068.50 paid + 2030.00 received - 2.03 maker fee (a redelivered fill counts once)
    assert expected["INR"] == 1_000_000 - 506_850 + 203_000 - 203
    held = {"TATA": {"available": "129.88", "locked": "0.00"}, "INR": {"available": "6959.47", "locked": "0.00"}}
    assert ledger.compare("u", held) == []
    held["TATA"] = {"available": "129.87", "locked": "0.01"}
    assert ledger.compare("u", held) == ["u TATA: 0.01 still locked with no order open"]
    held["INR"] = {"available": "6959.48", "locked": "0.00"}
    assert ledger.compare("u", held)[0] == "u INR: holds 6959.48, deposits and fills say 6959.47"
