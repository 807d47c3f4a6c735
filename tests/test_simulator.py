"""The market simulator (`python run.py simulate`) against real exchanges on free ports: it trades, gets no
5xx, its balance check passes (with API keys on, from streams opened with listen keys it keeps alive and ends),
the same seed sends the same requests, and an address that does not answer is refused in one line."""

from __future__ import annotations

import asyncio
import os
import pathlib
import random
import re
import subprocess
import sys
import time
from collections.abc import Iterator

import httpx
import pytest
import ujson
import websockets
from conftest import ADMIN_TOKEN, ROOT, RunningServer, free_port, start_server
from redis_server import redis_server  # noqa: F401  (fixture)
from test_cluster import Cluster, cluster  # noqa: F401  (fixture)

from openbell.simulator.accounting import Ledger
from openbell.simulator.agents import Maker, Quote, RandomWalk, Taker, heavy_tail
from openbell.simulator.grid import Grid
from openbell.simulator.session import Access, ListenKeys, Session
from openbell.simulator.stats import Stats

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


def exchange_with_fees(tmp: pathlib.Path, *flags: str) -> RunningServer:
    """An exchange with API keys on (its operator's token is OPENBELL_ADMIN_TOKEN, which the simulator reads too),
    or in dev mode with `--dev`."""
    return start_server(tmp, "--in-memory", "--markets", MARKETS, "--assets", ASSETS, *flags)


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


def listen_keys_line(output: str) -> tuple[int, int, int]:
    """(made, extensions, ended) from the summary's listen key line, which says nothing was refused."""
    match = re.search(r"listen keys: (\d+) made, (\d+) extensions, (\d+) ended$", output, re.MULTILINE)
    assert match, f"no listen key line, or something was refused, in:\n{output}"
    made, extensions, ended = (int(group) for group in match.groups())
    return made, extensions, ended


@pytest.mark.parametrize(
    ("mode", "flags", "options"),
    [
        ("signed with API keys", (), ("--concurrency", "3", "--listen-key-refresh", "1")),
        ("dev mode", ("--dev",), ("--concurrency", "3")),
    ],
    ids=["keys-concurrent", "dev-concurrent"],
)
def test_a_bounded_run_trades_with_no_server_error_and_its_users_hold_deposits_plus_fills_less_fees(
    tmp_path: pathlib.Path,
    fresh_exchanges: list[RunningServer],
    mode: str,
    flags: tuple[str, ...],
    options: tuple[str, ...],
) -> None:
    # Arrange: an exchange with two markets, one charging fees.
    server = exchange_with_fees(tmp_path, *flags)
    fresh_exchanges.append(server)

    # Act: a run of a few seconds, three traders of each market acting at once (with keys, the listen keys
    # extended each second).
    result = simulate(server.base_url, "--duration", "3", "--seed", "3", *options)

    # Assert: it exits 0 (check passed, no 5xx), it traded, and it left nothing on the books.
    output = result.stderr
    assert result.returncode == 0, output
    assert mode in output
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
    if flags != ("--dev",):  # 2 markets x (4 makers + 8 takers), each user's stream opened with a listen key
        made, extensions, ended = listen_keys_line(output)
        assert made == ended == 24 and extensions >= 24, output
    else:
        assert "listen keys:" not in output


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
    # Arrange: an engine, a WebSocket process, and an API process whose /config sends clients to it.
    cluster.engine("--in-memory")
    ws = cluster.ws()
    api = cluster.api("--public-ws-url", f"ws://127.0.0.1:{ws.port}/ws")

    # Act: the simulator, told only the API's address, finds the streams where the web page would, and opens
    # them with listen keys the API made (three traders of a market acting at once).
    result = simulate(f"http://127.0.0.1:{api.port}", "--duration", "3", "--concurrency", "3",
                      "--listen-key-refresh", "1")

    # Assert
    assert result.returncode == 0, result.stderr
    assert "signed with API keys" in result.stderr
    assert "balance check passed" in result.stderr
    assert summary_number(result.stderr, r"(\d+) trades \(") > 0
    made, extensions, ended = listen_keys_line(result.stderr)
    assert made == ended > 0 and extensions >= made, result.stderr


def test_a_users_listen_key_opens_its_stream_is_extended_while_the_run_lasts_and_ended_after(
    tmp_path: pathlib.Path, fresh_exchanges: list[RunningServer]
) -> None:
    # Arrange: an exchange with API keys on, and the simulator's access to it, extending keys every 0.2 s.
    server = exchange_with_fees(tmp_path)
    fresh_exchanges.append(server)
    access = Access(admin_token=ADMIN_TOKEN, listen_keys=ListenKeys(refresh=0.2))

    async def scenario() -> tuple[dict[str, object], int]:
        async with Session(server.base_url, "lk", Stats(), access) as session:
            await session.discover()
            user = await access.open_user(session, "sim-lk-TATA_INR-m0")
            # Act: keep it alive for two rounds, read its stream, then end it.
            keeper = asyncio.create_task(access.listen_keys.keep_alive(session))
            deadline = time.monotonic() + 10
            while access.listen_keys.extended < 2 and time.monotonic() < deadline:
                await asyncio.sleep(0.05)
            keeper.cancel()
            await asyncio.gather(keeper, return_exceptions=True)
            url = f"{session.ws_url}?{user.ws_query()}"
            async with websockets.connect(url, open_timeout=10) as ws:
                await ws.send(ujson.dumps({"method": "SUBSCRIBE", "params": [f"orders@{user.user_id}"], "id": 1}))
                answer = ujson.loads(await asyncio.wait_for(ws.recv(), 10))
            await access.listen_keys.end(session)
            with pytest.raises(websockets.exceptions.InvalidStatus) as refused:
                async with websockets.connect(url, open_timeout=10):
                    pass
            return answer, refused.value.response.status_code

    answer, status_after_end = asyncio.run(scenario())

    # Assert: the key opened the user's own stream, was extended without a refusal, and no longer opens anything.
    assert answer == {"result": None, "id": 1}
    keys = access.listen_keys
    assert (keys.made, keys.ended, keys.refused) == (1, 1, 0) and keys.extended >= 2
    assert status_after_end == 401


def test_with_api_keys_on_it_needs_the_operators_token_and_says_so_in_one_line(
    tmp_path: pathlib.Path, fresh_exchanges: list[RunningServer]
) -> None:
    server = exchange_with_fees(tmp_path)
    fresh_exchanges.append(server)

    result = subprocess.run(
        [sys.executable, "run.py", "simulate", "--url", server.base_url, "--duration", "1"],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=60,
        env={name: value for name, value in os.environ.items() if name != "OPENBELL_ADMIN_TOKEN"},
    )

    assert result.returncode == 2
    assert result.stderr.count("\n") == 1 and "has API keys on: pass --admin-token" in result.stderr


def test_a_listen_key_refresh_not_inside_the_hour_a_key_lasts_is_refused() -> None:
    for seconds in ("0", "3600"):
        result = simulate(f"http://127.0.0.1:{free_port()}", "--listen-key-refresh", seconds)

        assert result.returncode == 2
        assert f"--listen-key-refresh: {seconds} is not more than 0 and less than 3600" in result.stderr


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


# ------------------------------------------------------------------ the traders' decisions, without a server
def test_a_maker_quotes_levels_a_side_around_the_mid_and_shifts_them_against_its_inventory() -> None:
    maker = Maker(random.Random(1), levels=3, half_spread=2, gap=1, requote=1, unit=1, base_lots=1000, quote_units=10**9)

    flat = maker.ladder(100)
    maker.inventory = 25  # long 25 lots: two gaps lower, to sell more and buy less
    long = maker.ladder(100)

    assert flat == [("buy", 98), ("sell", 102), ("buy", 97), ("sell", 103), ("buy", 96), ("sell", 104)]
    assert long == [("buy", 96), ("sell", 100), ("buy", 95), ("sell", 101), ("buy", 94), ("sell", 102)]


def test_a_maker_replaces_only_the_levels_that_moved_and_quotes_post_only_within_what_it_holds() -> None:
    maker = Maker(random.Random(2), levels=2, half_spread=1, gap=1, requote=1, unit=1, base_lots=5, quote_units=10**9)
    maker.open = {"a": Quote("a", "buy", 99, 3, "1"), "b": Quote("b", "sell", 102, 3, "2")}

    wanted = maker.ladder(101)  # bids 100, 99; asks 102, 103
    stale = maker.stale(wanted)
    missing = maker.missing(wanted, lambda ticks, lots: ticks * lots)

    assert stale == []
    assert {(i.side, i.price) for i in missing} <= {("buy", 100), ("sell", 103)}
    assert all(i.post_only and i.time_in_force == "GTC" for i in missing)
    assert sum(i.quantity for i in missing if i.side == "sell") <= 5 - 3  # 3 of its 5 lots already offered


def test_a_maker_learns_a_fill_once_at_its_own_price() -> None:
    maker = Maker(random.Random(3), levels=1, half_spread=1, gap=1, requote=1, unit=1, base_lots=10, quote_units=1000)
    quote = Quote("a", "sell", 50, 4, "9")

    maker.filled(quote, 3, lambda ticks, lots: ticks * lots)
    maker.filled(quote, 3, lambda ticks, lots: ticks * lots)

    assert (maker.inventory, maker.base_lots, maker.quote_units, quote.filled) == (-3, 7, 1150, 3)


def test_the_mid_walks_in_whole_steps_between_half_and_twice_where_it_started() -> None:
    walk = RandomWalk(random.Random(4), mid=1000, step=10)

    mids = [walk.next() for _ in range(20_000)]

    assert all(500 <= mid <= 2000 and mid % 10 == 0 for mid in mids)
    assert len(set(mids)) > 20


def test_taker_sizes_are_whole_lots_mostly_small_with_a_heavy_tail_and_a_cap() -> None:
    rng = random.Random(5)

    sizes = [heavy_tail(rng, unit=1, cap=64) for _ in range(20_000)]

    assert min(sizes) >= 1 and max(sizes) == 64
    assert sorted(sizes)[len(sizes) // 2] <= 2  # the median order is a lot or two
    assert sum(size >= 32 for size in sizes) > 100  # and some are dozens of times larger


def test_a_taker_never_sells_more_base_than_it_holds_and_bursts_one_way() -> None:
    taker = Taker(random.Random(6), unit=1, reach=5, base_lots=3, quote_units=10**9)

    bursts = [taker.burst(100, lambda ticks, lots: ticks * lots) for _ in range(500)]

    for burst in bursts:
        assert len({intent.side for intent in burst}) <= 1
        for intent in burst:
            assert intent.order_type == "market" or intent.time_in_force == "IOC"
            assert intent.side == "buy" or intent.quantity <= 3


def test_an_order_whose_fills_do_not_add_up_to_what_the_api_said_it_executed_is_reported() -> None:
    grid = Grid.from_api({"symbol": "TATA_INR", "base": "TATA", "quote": "INR", "tickSize": "0.01", "lotSize": "1",
                          "baseDecimals": 2, "quoteDecimals": 2})
    ledger = Ledger({"TATA_INR": grid})
    ledger.executed.update({"7": 5, "8": 0, "9": 2})
    ledger.add_fill("u", {"s": "TATA_INR", "t": "1", "i": "7", "S": "buy", "p": "100.00", "q": "3", "m": True})
    ledger.add_fill("u", {"s": "TATA_INR", "t": "2", "i": "7", "S": "buy", "p": "100.00", "q": "2", "m": True})
    ledger.add_fill("u", {"s": "TATA_INR", "t": "3", "i": "9", "S": "sell", "p": "100.00", "q": "1", "m": False})

    assert ledger.uncovered() == ["9"]
