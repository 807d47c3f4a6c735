"""`python run.py statement`: a user's deposits, trades with fees and orders for a period, from the history
database (SQLite and PostgreSQL), with the balance at both ends equal to what the engine held then and
reconciling exactly (opening + changes = closing), in JSON and CSV.

An engine with fees (maker 10 bp, taker 20 bp) runs three days of commands, each stamped with a fixed time; at
the end of each day the test notes the engine's own balances. The statement of the middle day must open with
the first day's balances, close with the second's, and list that day's deposits, trades and orders only.
"""

from __future__ import annotations

import csv
import datetime as dt
import io
import json
import pathlib
import subprocess
import sys
from collections.abc import Iterator
from decimal import Decimal
from typing import Any

import pytest
from core_helpers import tata_inr
from test_history import history_url, postgres_database  # noqa: F401 (fixtures)

from openbell.actors.engine import Engine
from openbell.core.commands import CancelOrder, Deposit, PlaceOrder, restamp
from openbell.core.events import BalanceChanged
from openbell.core.messages import CommandBatch
from openbell.core.risk import BalanceCore
from openbell.core.types import OrderType, Side, TimeInForce
from openbell.history.store import HistoryStore
from openbell.history.writer import HistoryWriter

ROOT = pathlib.Path(__file__).resolve().parent.parent
WAIT = 20.0
DAY_MS = 86_400_000
DAY1 = int(dt.datetime(2024, 1, 1, tzinfo=dt.UTC).timestamp()) * 1000
GTC = TimeInForce.GTC

# (day, ms into the day, step): ("deposit", user, asset, units, txn) | ("limit", label, user, side, ticks, lots)
# | ("cancel", label, user)
DAYS: list[tuple[int, int, tuple[Any, ...]]] = [
    (0, 1_000, ("deposit", "alice", "INR", 5_000_000, "a-1")),
    (0, 2_000, ("deposit", "bob", "TATA", 10_000, "b-1")),
    (0, 3_000, ("limit", "a1", "alice", Side.BUY, 10_000, 10)),
    (0, 4_000, ("limit", "b1", "bob", Side.SELL, 10_000, 4)),  # bob takes 4 of a1
    (0, DAY_MS - 1, ("limit", "b2", "bob", Side.SELL, 10_100, 5)),  # rests over midnight
    (1, 0, ("limit", "a2", "alice", Side.BUY, 10_100, 3)),  # alice takes 3 of b2 at midnight
    (1, 5_000, ("deposit", "alice", "INR", 123_45, "a-2")),
    (1, 6_000, ("cancel", "a1", "alice")),
    (1, 7_000, ("limit", "b3", "bob", Side.SELL, 9_900, 1)),  # bob takes nothing (a1 canceled), rests
    (1, 8_000, ("limit", "a3", "alice", Side.BUY, 9_900, 1)),  # alice takes b3
    (1, DAY_MS - 1, ("limit", "a4", "alice", Side.BUY, 9_000, 2)),  # rests
    (2, 0, ("limit", "b4", "bob", Side.SELL, 9_000, 2)),  # bob takes a4 at the next midnight
    (2, 9_000, ("deposit", "alice", "TATA", 1_00, "a-3")),
    (2, 10_000, ("market_quote", "a5", "alice", 150_00)),  # a budget of 150.00 INR buys 1 of b2's 2 at 101.00
]


def command_for(engine: Engine, step: tuple[Any, ...], ids: dict[str, int]) -> Any:
    if step[0] == "deposit":
        _, user, asset, amount, txn = step
        return engine.new(Deposit, user_id=user, asset=asset, amount=amount, txn_id=txn)
    if step[0] == "cancel":
        _, label, user = step
        return engine.new(CancelOrder, user_id=user, market="TATA_INR", order_id=ids[label])
    if step[0] == "market_quote":
        _, label, user, budget = step
        command = engine.new(
            PlaceOrder,
            user_id=user,
            market="TATA_INR",
            side=Side.BUY,
            order_type=OrderType.MARKET,
            time_in_force=TimeInForce.IOC,
            price=None,
            quantity=None,
            quote_quantity=budget,
            client_order_id=label,
        )
        ids[label] = command.seq
        return command
    _, label, user, side, price, quantity = step
    command = engine.new(
        PlaceOrder,
        user_id=user,
        market="TATA_INR",
        side=side,
        order_type=OrderType.LIMIT,
        time_in_force=GTC,
        price=price,
        quantity=quantity,
        client_order_id=label,
    )
    ids[label] = command.seq
    return command


def units(text: str) -> int:
    return int(Decimal(text) * 100)  # INR and TATA have 2 decimals


@pytest.fixture
def three_days(history_url: str) -> Iterator[tuple[str, list[dict[str, tuple[int, int]]]]]:  # noqa: F811
    """The history database after DAYS, and alice's balances (available, locked) at the end of each day."""
    writer = HistoryWriter(HistoryStore(history_url))
    engine = Engine(reply_timeout=WAIT, history=writer).start([tata_inr(maker_fee_bps=10, taker_fee_bps=20)])
    ends: list[dict[str, tuple[int, int]]] = []
    try:
        ids: dict[str, int] = {}
        for index, (day, at, step) in enumerate(DAYS):
            command = command_for(engine, step, ids)
            engine.call(restamp(command, command.seq, DAY1 + day * DAY_MS + at), timeout=WAIT)
            if index + 1 == len(DAYS) or DAYS[index + 1][0] != day:
                ends.append(dict(engine.balance_core.ledger.balances("alice")))
        assert writer.flush(WAIT)
    finally:
        engine.stop()
        writer.close()
    yield history_url, ends


def run_statement(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "run.py", "statement", *args], cwd=ROOT, capture_output=True, text=True, timeout=120
    )


def test_a_days_statement_opens_and_closes_with_the_engines_balances_and_reconciles_exactly(
    three_days: tuple[str, list[dict[str, tuple[int, int]]]],
) -> None:
    url, ends = three_days

    result = run_statement("--db", url, "--user", "alice", "--from", "2024-01-02", "--to", "2024-01-02")

    assert result.returncode == 0, result.stderr
    statement = json.loads(result.stdout)
    assert statement["reconciled"] is True
    for asset in ("INR", "TATA"):
        balance = statement["balances"][asset]
        assert (units(balance["opening"]["available"]), units(balance["opening"]["locked"])) == ends[0][asset]
        assert (units(balance["closing"]["available"]), units(balance["closing"]["locked"])) == ends[1][asset]
        assert balance["openingPlusChanges"] == balance["closing"]["total"]
        assert balance["reconciled"] is True
    assert [d["txnId"] for d in statement["deposits"]] == ["a-2"]
    assert statement["deposits"][0]["amount"] == "123.45"
    # a2 took 3 lots at 101.00 (taker: 20 bp of the 3.00 TATA received), a3 took 1 lot at 99.00
    assert [(t["orderId"] != "", t["role"], t["price"], t["quantity"]) for t in statement["trades"]] == [
        (True, "taker", "101.00", "3"),
        (True, "taker", "99.00", "1"),
    ]
    first = statement["trades"][0]
    assert (first["paid"], first["paidAsset"], first["received"], first["fee"], first["feeAsset"]) == (
        "303.00",
        "INR",
        "3.00",
        "0.00",  # 20 bp of 300 minor units rounds down to 0
        "TATA",
    )
    inr = statement["balances"]["INR"]
    assert inr["paid"] == "402.00" and inr["deposits"] == "123.45"
    statuses = {o["clientOrderId"]: o["status"] for o in statement["orders"]}
    assert statuses == {"a2": "FILLED", "a3": "FILLED", "a4": "NEW"}


def test_fees_are_what_settlement_charged(three_days: tuple[str, list[dict[str, tuple[int, int]]]]) -> None:
    url, _ = three_days

    result = run_statement("--db", url, "--user", "bob", "--from", "2024-01-01", "--to", "2024-01-03")

    assert result.returncode == 0, result.stderr
    statement = json.loads(result.stdout)
    assert statement["reconciled"] is True
    # bob's sale of 4 lots at 100.00 as taker: 20 bp of 400.00 INR = 0.80; his maker sales pay 10 bp
    fees = [(t["role"], t["received"], t["fee"]) for t in statement["trades"]]
    assert fees[0] == ("taker", "400.00", "0.80")
    assert ("maker", "303.00", "0.30") in fees
    assert Decimal(statement["balances"]["INR"]["fees"]) == sum(Decimal(t["fee"]) for t in statement["trades"])


def test_a_market_buy_shows_its_quote_budget_and_what_it_bought(
    three_days: tuple[str, list[dict[str, tuple[int, int]]]],
) -> None:
    url, ends = three_days

    result = run_statement("--db", url, "--user", "alice", "--from", "2024-01-03", "--to", "2024-01-03")

    assert result.returncode == 0, result.stderr
    statement = json.loads(result.stdout)
    (bought,) = [o for o in statement["orders"] if o["clientOrderId"] == "a5"]
    assert (bought["type"], bought["quoteQuantity"], bought["filled"]) == ("market", "150.00", "1")
    assert [(t["price"], t["paid"]) for t in statement["trades"] if t["orderId"] == bought["orderId"]] == [
        ("101.00", "101.00")
    ]
    assert statement["reconciled"] is True
    assert {a: (units(b["closing"]["available"]), units(b["closing"]["locked"])) for a, b in statement["balances"].items()} == ends[2]


def test_the_csv_changes_of_each_asset_add_up_to_its_closing_balance(
    three_days: tuple[str, list[dict[str, tuple[int, int]]]],
) -> None:
    url, ends = three_days

    result = run_statement(
        "--db", url, "--user", "alice", "--from", "2024-01-02T00:00:00Z", "--to", "2024-01-03T00:00:00Z", "--format", "csv"
    )

    assert result.returncode == 0, result.stderr
    rows = list(csv.DictReader(io.StringIO(result.stdout)))
    for asset in ("INR", "TATA"):
        changes = sum(
            Decimal(r["amount"]) for r in rows if r["asset"] == asset and r["section"] in ("opening", "deposit", "trade", "fee")
        )
        (closing,) = [Decimal(r["amount"]) for r in rows if r["asset"] == asset and r["section"] == "closing"]
        assert changes == closing == Decimal(sum(ends[1][asset])) / 100
    assert [r["status"] for r in rows if r["section"] == "order"] == ["FILLED", "FILLED", "NEW"]


def test_a_balance_change_is_cut_at_each_change_of_command_time_so_midnight_splits_it() -> None:
    core = BalanceCore()
    just_before, midnight = DAY1 - 1, DAY1
    batch = CommandBatch(
        (
            Deposit(seq=1, ts=just_before, user_id="alice", asset="INR", amount=100, txn_id="x"),
            Deposit(seq=2, ts=midnight, user_id="alice", asset="INR", amount=50, txn_id="y"),
        )
    )
    from openbell.core.commands import AddMarket

    core.handle_commands(CommandBatch((AddMarket(seq=0, ts=0, spec=tata_inr()),)))

    events = core.handle_commands(batch).events

    changes = [(e.ts, e.available) for e in events if isinstance(e, BalanceChanged)]
    assert changes == [(just_before, 100), (midnight, 150)]


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["--from", "2024-13-01", "--to", "2024-01-02"], "is not a date"),
        (["--from", "2024-01-02T00:00:00", "--to", "2024-01-02"], "has no UTC offset"),
        (["--from", "2024-01-03", "--to", "2024-01-01"], "the period is empty"),
    ],
)
def test_a_statement_that_cannot_be_made_is_refused_in_one_line_with_exit_status_2(
    tmp_path: pathlib.Path, args: list[str], message: str
) -> None:
    HistoryStore(f"sqlite:///{tmp_path / 'h.sqlite3'}").close()

    result = run_statement("--db", f"sqlite:///{tmp_path / 'h.sqlite3'}", "--user", "alice", *args)

    assert result.returncode == 2
    assert message in result.stderr and len(result.stderr.strip().splitlines()) == 1, result.stderr


def test_a_missing_history_database_is_refused_in_one_line(tmp_path: pathlib.Path) -> None:
    result = run_statement("--data-dir", str(tmp_path), "--user", "alice", "--from", "2024-01-01", "--to", "2024-01-01")

    assert result.returncode == 2
    assert result.stderr.strip() == f"openbell statement: no history database at {tmp_path / 'history.sqlite3'}: give --data-dir or --db"
