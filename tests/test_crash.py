"""Crash safety end to end: the real server (`python run.py`) killed with SIGKILL under load, and restarted.

What a client was told must survive a kill -9: an acknowledged deposit is credited exactly once (and
its txnId stays idempotent), an acknowledged order is on the book exactly once until something the
client saw (a fill, a cancel) takes it off, and funds are conserved per asset. A request that got no
answer before the kill may or may not have happened; re-sending an unanswered deposit's txnId makes
the books exact again. The markets have no fees (the default), so the accounts hold exactly what
was deposited.

Orders are placed in two price bands: "near" orders (99.00-101.00, both sides) trade with each other;
"far" orders (buys at 50.xx, sells at 200.xx) can never be crossed, so every acknowledged far order
that was never asked to be canceled must still be open, untouched, after every restart.

Every wait has a timeout, every loop is bounded, and the server binds 127.0.0.1 only.
"""

from __future__ import annotations

import pathlib
import random
import signal
import subprocess
import sys
import threading
import time
from collections import Counter, defaultdict
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from decimal import Decimal
from typing import Any

import httpx
import pytest
from conftest import ROOT, AsNamedUser, RunningServer, run_inspect, start_server

from openbell.durability.snapshots import load_newest

MARKET = "TATA_INR"
USERS = [f"crash-user-{n}" for n in range(8)]
WORKERS = 4
ROUNDS = 5
ROUNDS_TIME_BUDGET = 60.0
"""Seconds after which no further kill round starts (at least two always run)."""
OPS_PER_WORKER = 5_000
"""A bound only: the kill ends each round's load long before it."""
REQUEST_TIMEOUT = 15.0
SERVER_ARGS = ("--snapshot-every", "150", "--keep-snapshots", "2")
"""Snapshots (and journal pruning) happen during the load too, so kills land around them as well."""
TERMINAL = {"FILLED", "CANCELED", "EXPIRED", "REJECTED"}


def minor(text: str) -> int:
    """An amount with two decimals (both INR and TATA) in minor units."""
    return int(Decimal(text).scaleb(2))


def start(tmp_path: pathlib.Path, data_dir: pathlib.Path) -> RunningServer:
    return start_server(tmp_path, "--data-dir", str(data_dir), *SERVER_ARGS, ready_timeout=60.0)


def kill_9(server: RunningServer) -> None:
    server.process.send_signal(signal.SIGKILL)
    server.process.wait(30)


@pytest.fixture
def servers() -> Iterator[list[RunningServer]]:
    """Servers a test started: any still running in teardown is stopped."""
    started: list[RunningServer] = []
    yield started
    for server in started:
        if server.process.poll() is None:
            server.stop()


# --------------------------------------------------------------------------------------------- bookkeeping
@dataclass
class SentOrder:
    client_order_id: str
    user_id: str
    side: str
    price: str
    quantity: str
    far: bool
    order_id: str | None = None
    """Set when the order was acknowledged."""
    status: str | None = None
    """The status in the acknowledgement."""


@dataclass
class Record:
    """What the load sent and what it was told. Each worker has its own; they are merged after a round."""

    acked_deposits: dict[str, tuple[str, str, int]] = field(default_factory=dict)
    """txnId -> (user, asset, minor units), for deposits answered 2xx."""
    unanswered_deposits: dict[str, tuple[str, str, int]] = field(default_factory=dict)
    """Deposits that got no 2xx answer: applied or not, nobody knows yet."""
    acked_orders: dict[str, SentOrder] = field(default_factory=dict)
    """orderId -> the order, for orders answered 2xx."""
    unanswered_orders: set[str] = field(default_factory=set)
    """clientOrderIds of orders that got no answer (a transport error or a 5xx)."""
    rejected_orders: set[str] = field(default_factory=set)
    """clientOrderIds of orders answered 4xx: they must never show up."""
    cancel_sent: set[str] = field(default_factory=set)
    """orderIds a cancel was sent for, answered or not."""
    canceled: set[str] = field(default_factory=set)
    """orderIds whose cancel was acknowledged."""
    far_cancel_unknown: list[str] = field(default_factory=list)
    """Far orders, never canceled before, that a cancel called unknown: they were lost."""

    def merge(self, other: Record) -> None:
        self.acked_deposits.update(other.acked_deposits)
        self.unanswered_deposits.update(other.unanswered_deposits)
        self.acked_orders.update(other.acked_orders)
        self.unanswered_orders |= other.unanswered_orders
        self.rejected_orders |= other.rejected_orders
        self.cancel_sent |= other.cancel_sent
        self.canceled |= other.canceled
        self.far_cancel_unknown += other.far_cancel_unknown


def deposit(client: httpx.Client, record: Record, user: str, asset: str, amount: str, txn_id: str) -> None:
    entry = (user, asset, minor(amount))
    try:
        response = client.post("/onramp", json={"user_id": user, "asset": asset, "amount": amount, "txnId": txn_id})
    except httpx.HTTPError:
        record.unanswered_deposits[txn_id] = entry
        return
    if response.is_success:
        record.acked_deposits[txn_id] = entry
    else:
        record.unanswered_deposits[txn_id] = entry  # a 5xx; a 4xx would be a bug, caught on re-send


def place(client: httpx.Client, record: Record, order: SentOrder, time_in_force: str = "GTC") -> None:
    body = {
        "market": MARKET,
        "user_id": order.user_id,
        "side": order.side,
        "price": order.price,
        "quantity": order.quantity,
        "clientOrderId": order.client_order_id,
        "timeInForce": time_in_force,
    }
    try:
        response = client.post("/order", json=body)
    except httpx.HTTPError:
        record.unanswered_orders.add(order.client_order_id)
        return
    if response.is_success:
        answer = response.json()
        order.order_id, order.status = answer["orderId"], answer["status"]
        record.acked_orders[order.order_id] = order
    elif response.status_code >= 500:
        record.unanswered_orders.add(order.client_order_id)
    else:
        record.rejected_orders.add(order.client_order_id)


def cancel(client: httpx.Client, record: Record, order: SentOrder) -> None:
    assert order.order_id is not None
    record.cancel_sent.add(order.order_id)
    body = {"orderId": order.order_id, "market": MARKET, "user_id": order.user_id}
    try:
        response = client.request("DELETE", "/order", json=body)
    except httpx.HTTPError:
        return
    if response.is_success:
        record.canceled.add(order.order_id)
    elif response.status_code == 404 and order.far:
        record.far_cancel_unknown.append(order.order_id)


def run_load(api: str, round_no: int, worker: int, stop: threading.Event, seed: int) -> Record:
    """One worker's mixed load: orders in both bands, cancels of its own resting orders, deposits."""
    rng = random.Random(seed * 1000 + worker)
    record = Record()
    resting: list[SentOrder] = []
    with httpx.Client(base_url=api, timeout=REQUEST_TIMEOUT, auth=AsNamedUser(api)) as client:
        for number in range(OPS_PER_WORKER):
            if stop.is_set():
                break
            roll = rng.random()
            user = rng.choice(USERS)
            tag = f"r{round_no}-w{worker}-{number}"
            if roll < 0.1:
                asset, amount = rng.choice([("INR", f"{rng.randint(1, 500)}.25"), ("TATA", f"{rng.randint(1, 9)}")])
                deposit(client, record, user, asset, amount, f"txn-{tag}")
            elif roll < 0.75:
                far = roll >= 0.45
                side = rng.choice(["buy", "sell"])
                if far:
                    price = f"{50 if side == 'buy' else 200}.{rng.randint(0, 99):02d}"
                else:
                    price = f"{rng.choice([99, 100, 101])}.{rng.choice(['00', '50'])}"
                order = SentOrder(f"coid-{tag}", user, side, price, str(rng.randint(1, 3)), far)
                place(client, record, order, "IOC" if not far and rng.random() < 0.2 else "GTC")
                if order.status in ("NEW", "PARTIALLY_FILLED"):
                    resting.append(order)
            elif resting:
                cancel(client, record, resting.pop(rng.randrange(len(resting))))
    return record


# --------------------------------------------------------------------------------------------- checks
def balances_of(client: httpx.Client) -> dict[str, dict[str, tuple[int, int]]]:
    out = {}
    for user in USERS:
        response = client.get("/balance", params={"user_id": user})
        assert response.status_code == 200, response.text
        out[user] = {asset: (minor(v["available"]), minor(v["locked"])) for asset, v in response.json().items()}
    return out


def open_orders_of(client: httpx.Client) -> list[dict[str, Any]]:
    out = []
    for user in USERS:
        response = client.get("/order/open", params={"user_id": user})
        assert response.status_code == 200, response.text
        out += [{**order, "user_id": user} for order in response.json()]
    return out


def check_after_restart(client: httpx.Client, everything: Record, context: str) -> None:
    """Every invariant a client can check from outside after a kill -9 and a restart."""
    # Deposits that got no answer: re-sent with the same txnId, they are credited now if they were not.
    for txn_id, (user, asset, amount) in sorted(everything.unanswered_deposits.items()):
        response = client.post(
            "/onramp",
            json={"user_id": user, "asset": asset, "amount": f"{Decimal(amount).scaleb(-2):f}", "txnId": txn_id},
        )
        assert response.status_code == 200, f"{context}: re-sent deposit {txn_id}: {response.text}"
    everything.acked_deposits.update(everything.unanswered_deposits)
    everything.unanswered_deposits.clear()

    balances = balances_of(client)
    orders = open_orders_of(client)

    # Funds are conserved per asset, and nothing is negative.
    deposited: Counter[str] = Counter()
    for _, asset, amount in everything.acked_deposits.values():
        deposited[asset] += amount
    held: Counter[str] = Counter()
    for user, assets in balances.items():
        for asset, (available, locked_now) in assets.items():
            assert available >= 0 and locked_now >= 0, f"{context}: {user} has {asset} {available}/{locked_now}"
            held[asset] += available + locked_now
    assert +held == +deposited, f"{context}: accounts hold {dict(held)}, deposits were {dict(deposited)}"

    # Each order is open at most once, and only if the client could not have been told otherwise.
    ids = Counter(order["orderId"] for order in orders)
    assert not [i for i, n in ids.items() if n > 1], f"{context}: orders open twice: {ids.most_common(3)}"
    coids = Counter(order["clientOrderId"] for order in orders)
    assert not [c for c, n in coids.items() if n > 1], f"{context}: clientOrderIds open twice"
    known_coids = {order.client_order_id for order in everything.acked_orders.values()} | everything.unanswered_orders
    open_by_id = {order["orderId"]: order for order in orders}
    for order in orders:
        assert order["clientOrderId"] in known_coids, f"{context}: an order nobody placed is open: {order}"
        assert order["clientOrderId"] not in everything.rejected_orders, f"{context}: a rejected order is open"
    for order_id, sent in everything.acked_orders.items():
        seen = open_by_id.get(order_id)
        if sent.status in TERMINAL or order_id in everything.canceled:
            assert seen is None, (
                f"{context}: order {order_id} ({sent.status}, canceled: {order_id in everything.canceled}) "
                f"is open again: {seen}"
            )
        if seen is not None:
            assert (seen["clientOrderId"], seen["side"], seen["user_id"]) == (
                sent.client_order_id,
                sent.side,
                sent.user_id,
            ), f"{context}: order {order_id} came back different: {seen} vs {sent}"
            assert Decimal(seen["price"]) == Decimal(sent.price) and Decimal(seen["quantity"]) == Decimal(sent.quantity)
        if sent.far and order_id not in everything.cancel_sent:
            assert seen is not None, f"{context}: acknowledged far order {order_id} ({sent}) is gone"
            assert Decimal(seen["filled"]) == 0, f"{context}: far order {order_id} was traded: {seen}"
    assert not everything.far_cancel_unknown, (
        f"{context}: far orders unknown to a cancel: {everything.far_cancel_unknown}"
    )

    # What is locked is exactly what the open orders hold (limit orders: price x remaining lots).
    locked: dict[tuple[str, str], int] = defaultdict(int)
    for order in orders:
        remaining = minor(order["quantity"]) - minor(order["filled"])
        if order["side"] == "buy":
            locked[(order["user_id"], "INR")] += minor(order["price"]) * remaining // 100
        else:
            locked[(order["user_id"], "TATA")] += remaining
    for user, assets in balances.items():
        for asset, (_, locked_now) in assets.items():
            assert locked_now == locked[(user, asset)], (
                f"{context}: {user} locks {locked_now} {asset}, its open orders hold {locked[(user, asset)]}"
            )

    # The book shows exactly the open orders, level by level.
    response = client.get("/depth", params={"symbol": MARKET, "limit": 5000})
    assert response.status_code == 200, response.text
    depth = response.json()
    levels: dict[tuple[str, Decimal], Decimal] = defaultdict(Decimal)
    for order in orders:
        key = ("bids" if order["side"] == "buy" else "asks", Decimal(order["price"]))
        levels[key] += Decimal(order["quantity"]) - Decimal(order["filled"])
    shown = {(side, Decimal(price)): Decimal(quantity) for side in ("bids", "asks") for price, quantity in depth[side]}
    assert shown == dict(levels), f"{context}: the depth disagrees with the open orders"

    # Every acknowledged deposit is credited once: sending its txnId again succeeds and credits nothing.
    rng = random.Random(len(everything.acked_deposits))
    sample = rng.sample(sorted(everything.acked_deposits), min(15, len(everything.acked_deposits)))
    for txn_id in sample:
        user, asset, amount = everything.acked_deposits[txn_id]
        body = {"user_id": user, "asset": asset, "amount": f"{Decimal(amount).scaleb(-2):f}", "txnId": txn_id}
        response = client.post("/onramp", json=body)
        assert response.status_code == 200, f"{context}: repeated deposit {txn_id}: {response.text}"
    assert balances_of(client) == balances, f"{context}: a repeated txnId credited something"


# --------------------------------------------------------------------------------------------- tests
def test_kill_9_under_load_loses_nothing_acknowledged_and_conserves_funds(
    tmp_path: pathlib.Path, servers: list[RunningServer]
) -> None:
    data_dir = tmp_path / "data"
    everything = Record()
    began = time.monotonic()
    server = start(tmp_path, data_dir)
    servers.append(server)
    with httpx.Client(base_url=server.api, timeout=REQUEST_TIMEOUT, auth=server.auth) as client:
        for user in USERS:
            deposit(client, everything, user, "INR", "1000000.00", f"seed-inr-{user}")
            deposit(client, everything, user, "TATA", "100000", f"seed-tata-{user}")
    assert not everything.unanswered_deposits

    rounds = 0
    for round_no in range(ROUNDS):
        if round_no >= 2 and time.monotonic() - began > ROUNDS_TIME_BUDGET:
            break
        seed = random.randrange(1 << 30)
        context = f"round {round_no} (seed {seed})"
        stop = threading.Event()
        with ThreadPoolExecutor(WORKERS) as pool:
            futures = [pool.submit(run_load, server.api, round_no, w, stop, seed) for w in range(WORKERS)]
            time.sleep(random.Random(seed).uniform(0.2, 1.0))
            kill_9(server)
            stop.set()
            for future in futures:
                everything.merge(future.result(timeout=REQUEST_TIMEOUT * 3))
        rounds += 1

        server = start(tmp_path, data_dir)
        servers.append(server)
        with httpx.Client(base_url=server.api, timeout=REQUEST_TIMEOUT, auth=server.auth) as client:
            check_after_restart(client, everything, context)

    assert rounds >= 2
    assert len(everything.acked_orders) > 50, "the load hardly ran: the kills proved little"
    assert server.stop() == 0, server.log()
    result = run_inspect(data_dir)
    assert result.returncode == 0, result.stdout + result.stderr
    assert result.stdout.strip().splitlines()[-1].endswith(": OK"), result.stdout


# The same requests, one at a time. "cancel" names the clientOrderId of an earlier order.
SEQUENCE: list[tuple[str, dict[str, Any]]] = [
    ("onramp", {"user_id": "seq-a", "asset": "INR", "amount": "50000.00", "txnId": "seq-1"}),
    ("onramp", {"user_id": "seq-b", "asset": "TATA", "amount": "500", "txnId": "seq-2"}),
    ("onramp", {"user_id": "seq-c", "asset": "INR", "amount": "20000.00", "txnId": "seq-3"}),
    ("onramp", {"user_id": "seq-c", "asset": "TATA", "amount": "100", "txnId": "seq-4"}),
    ("order", {"user_id": "seq-a", "side": "buy", "price": "100.00", "quantity": "10", "clientOrderId": "a1"}),
    ("order", {"user_id": "seq-a", "side": "buy", "price": "99.50", "quantity": "5", "clientOrderId": "a2"}),
    ("order", {"user_id": "seq-b", "side": "sell", "price": "101.00", "quantity": "8", "clientOrderId": "b1"}),
    ("order", {"user_id": "seq-b", "side": "sell", "price": "100.00", "quantity": "4", "clientOrderId": "b2"}),
    ("order", {"user_id": "seq-c", "side": "buy", "price": "101.50", "quantity": "3", "clientOrderId": "c1"}),
    ("cancel", {"user_id": "seq-a", "clientOrderId": "a2"}),
    ("onramp", {"user_id": "seq-a", "asset": "INR", "amount": "50000.00", "txnId": "seq-1"}),
    ("order", {"user_id": "seq-c", "side": "sell", "price": "99.00", "quantity": "7", "clientOrderId": "c2"}),
    ("order", {"user_id": "seq-b", "side": "sell", "price": "102.00", "quantity": "5", "clientOrderId": "b3"}),
    ("order", {"user_id": "seq-a", "side": "buy", "price": "98.00", "quantity": "6", "clientOrderId": "a3"}),
    ("order", {"user_id": "seq-c", "side": "buy", "price": "101.00", "quantity": "2", "clientOrderId": "c3"}),
    ("onramp", {"user_id": "seq-b", "asset": "INR", "amount": "1000.00", "txnId": "seq-5"}),
    ("order", {"user_id": "seq-b", "side": "buy", "price": "99.00", "quantity": "3", "clientOrderId": "b4"}),
    ("cancel", {"user_id": "seq-b", "clientOrderId": "b3"}),
    ("order", {"user_id": "seq-c", "side": "sell", "price": "98.00", "quantity": "4", "timeInForce": "IOC"}),
    ("order", {"user_id": "seq-a", "side": "buy", "price": "101.00", "quantity": "9", "clientOrderId": "a4"}),
    ("order", {"user_id": "seq-b", "side": "sell", "price": "100.50", "quantity": "2", "clientOrderId": "b5"}),
    ("order", {"user_id": "seq-b", "side": "sell", "price": "105.00", "quantity": "5", "clientOrderId": "b6"}),
]
SEQUENCE_USERS = ["seq-a", "seq-b", "seq-c"]


def run_sequence(client: httpx.Client, steps: list[tuple[str, dict[str, Any]]], order_ids: dict[str, str]) -> list[int]:
    """Send the steps one at a time; returns each answer's status. Remembers orderIds by clientOrderId."""
    statuses = []
    for kind, body in steps:
        if kind == "onramp":
            response = client.post("/onramp", json=body)
        elif kind == "order":
            response = client.post("/order", json={"market": MARKET, **body})
            if response.is_success and "clientOrderId" in body:
                order_ids[body["clientOrderId"]] = response.json()["orderId"]
        else:
            order_id = order_ids[body["clientOrderId"]]
            response = client.request(
                "DELETE", "/order", json={"market": MARKET, "user_id": body["user_id"], "orderId": order_id}
            )
        statuses.append(response.status_code)
    return statuses


def observable_state(client: httpx.Client) -> dict[str, Any]:
    balances = {}
    open_orders = {}
    for user in SEQUENCE_USERS:
        response = client.get("/balance", params={"user_id": user})
        assert response.status_code == 200, response.text
        balances[user] = response.json()
        response = client.get("/order/open", params={"user_id": user})
        assert response.status_code == 200, response.text
        open_orders[user] = sorted(
            (o["clientOrderId"], o["side"], o["price"], o["quantity"], o["filled"], o["status"])
            for o in response.json()
        )
    response = client.get("/depth", params={"symbol": MARKET})
    assert response.status_code == 200, response.text
    return {"balances": balances, "open_orders": open_orders, "depth": response.json()}


def test_the_same_requests_with_and_without_a_kill_9_between_two_of_them_end_the_same(
    tmp_path: pathlib.Path, servers: list[RunningServer]
) -> None:
    half = 11
    straight = start(tmp_path, tmp_path / "straight")
    servers.append(straight)
    with httpx.Client(base_url=straight.api, timeout=REQUEST_TIMEOUT, auth=straight.auth) as client:
        expected_statuses = run_sequence(client, SEQUENCE, {})
        expected = observable_state(client)
    assert straight.stop() == 0, straight.log()

    interrupted = start(tmp_path, tmp_path / "interrupted")
    servers.append(interrupted)
    order_ids: dict[str, str] = {}
    with httpx.Client(base_url=interrupted.api, timeout=REQUEST_TIMEOUT, auth=interrupted.auth) as client:
        statuses = run_sequence(client, SEQUENCE[:half], order_ids)
    kill_9(interrupted)
    restarted = start(tmp_path, tmp_path / "interrupted")
    servers.append(restarted)
    with httpx.Client(base_url=restarted.api, timeout=REQUEST_TIMEOUT, auth=restarted.auth) as client:
        statuses += run_sequence(client, SEQUENCE[half:], order_ids)
        state = observable_state(client)
    assert restarted.stop() == 0, restarted.log()

    assert statuses == expected_statuses
    assert statuses.count(200) == len(SEQUENCE), statuses
    assert state == expected
    assert state["open_orders"]["seq-a"] and state["depth"]["bids"] and state["depth"]["asks"]
    before_kill = [int(order_ids[c]) for c in ("a1", "a2", "b1", "b2", "c1")]
    after_kill = [int(order_ids[c]) for c in ("c2", "b3", "a3", "c3", "b4", "a4", "b5", "b6")]
    assert min(after_kill) > max(before_kill), "order ids after the restart must continue above the earlier ones"
    assert run_inspect(tmp_path / "interrupted").returncode == 0


def test_a_flipped_bit_in_a_middle_record_after_a_kill_9_stops_the_restart_and_inspect_naming_file_and_offset(
    tmp_path: pathlib.Path, servers: list[RunningServer]
) -> None:
    """The reported reproduction: 40 acknowledged buys, kill -9, one bit of a middle record's length flipped."""
    from openbell.durability.journal import FILE_HEADER, HEADER, segments

    data_dir = tmp_path / "data"
    server = start_server(tmp_path, "--data-dir", str(data_dir))
    servers.append(server)
    with httpx.Client(base_url=server.api, timeout=REQUEST_TIMEOUT, auth=server.auth) as client:
        body = {"user_id": "buyer", "asset": "INR", "amount": "100000", "txnId": "flip-1"}
        assert client.post("/onramp", json=body).status_code == 200
        for number in range(40):
            order = {"user_id": "buyer", "market": MARKET, "side": "buy", "price": f"{50 + number}", "quantity": "1"}
            assert client.post("/order", json=order).status_code == 200
    kill_9(server)
    segment = segments(data_dir / "journal")[-1][1]
    data = bytearray(segment.read_bytes())
    offsets = []
    offset = len(FILE_HEADER)
    while offset < len(data):
        offsets.append(offset)
        offset += HEADER.size + HEADER.unpack_from(data, offset)[1]
    middle = offsets[len(offsets) // 2]
    data[middle + 5] ^= 0x40  # a bit of the middle record's length: it now runs past the end of the file
    segment.write_bytes(bytes(data))
    size = segment.stat().st_size

    # Act
    restarted = subprocess.run(
        [sys.executable, "run.py", "--port", "0", "--data-dir", str(data_dir), "--log-level", "warning"],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=60,
    )
    inspected = run_inspect(data_dir)

    # Assert: neither serves an older state; both name the file and the offset; nothing was cut
    assert restarted.returncode == 2, restarted.stdout + restarted.stderr
    lines = [line for line in restarted.stderr.splitlines() if line.startswith("openbell:")]
    assert len(lines) == 1 and f"{segment} is corrupt at byte {middle}" in lines[0], restarted.stderr
    assert "Traceback" not in restarted.stderr
    assert inspected.returncode == 1
    assert f"{segment} is corrupt at byte {middle}" in inspected.stdout + inspected.stderr
    assert segment.stat().st_size == size


def test_a_start_that_cannot_bind_its_port_says_so_in_one_line(
    tmp_path: pathlib.Path, servers: list[RunningServer]
) -> None:
    server = start_server(tmp_path)
    servers.append(server)

    second = subprocess.run(
        [sys.executable, "run.py", "--port", str(server.port), "--in-memory"],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=60,
    )

    assert second.returncode == 2
    assert "Traceback" not in second.stderr
    (line,) = [line for line in second.stderr.splitlines() if line.strip()]
    assert line.startswith("openbell: cannot start: cannot listen on 127.0.0.1:") and "--port" in line, line


def test_waiting_stops_survive_a_kill_9_in_the_snapshot_and_the_journal_and_trigger_after_the_restart(
    tmp_path: pathlib.Path, servers: list[RunningServer]
) -> None:
    data_dir = tmp_path / "stops"
    args = ("--data-dir", str(data_dir), "--snapshot-every", "6", "--keep-snapshots", "2")
    first = start_server(tmp_path, *args, ready_timeout=60.0)
    servers.append(first)
    with httpx.Client(base_url=first.api, timeout=REQUEST_TIMEOUT, auth=first.auth) as client:
        for user, asset, amount in (("s-alice", "TATA", "10"), ("s-bob", "INR", "10000"), ("s-carol", "TATA", "10")):
            deposit = {"user_id": user, "asset": asset, "amount": amount, "txnId": f"fund-{user}"}
            assert client.post("/onramp", json=deposit).status_code == 200
        deposit = {"user_id": "s-dave", "asset": "INR", "amount": "10000", "txnId": "fund-s-dave"}
        assert client.post("/onramp", json=deposit).status_code == 200
        for side, user in (("sell", "s-carol"), ("buy", "s-dave")):  # the last price: 100.00
            order = {"market": MARKET, "side": side, "price": "100", "quantity": "1", "user_id": user}
            assert client.post("/order", json=order).status_code == 200
        early = {"market": MARKET, "side": "sell", "type": "stop_loss", "stopPrice": "95", "quantity": "2"}
        response = client.post("/order", json={**early, "user_id": "s-alice"})
        assert response.status_code == 200, response.text
        bid = {"market": MARKET, "side": "buy", "price": "94", "quantity": "5", "user_id": "s-bob"}
        assert client.post("/order", json=bid).status_code == 200
        deadline = time.monotonic() + 10
        for n in range(200):  # more commands until a snapshot holds the first stop
            newest = load_newest(data_dir / "snapshots")
            if (newest is not None and "stop_loss" in str(newest)) or time.monotonic() > deadline:
                break
            deposit = {"user_id": "s-erin", "asset": "INR", "amount": "1", "txnId": f"more-{n}"}
            assert client.post("/onramp", json=deposit).status_code == 200
            time.sleep(0.05)
        assert newest is not None and "stop_loss" in str(newest), "a snapshot should hold the first stop"
        late = {"market": MARKET, "side": "sell", "type": "stop_loss_limit", "stopPrice": "95", "price": "94"}
        response = client.post("/order", json={**late, "quantity": "1", "user_id": "s-alice"})
        assert response.status_code == 200, response.text
        before = client.get("/order/open", params={"user_id": "s-alice"}).json()
    kill_9(first)

    second = start_server(tmp_path, *args, ready_timeout=60.0)
    servers.append(second)
    with httpx.Client(base_url=second.api, timeout=REQUEST_TIMEOUT, auth=second.auth) as client:
        after = client.get("/order/open", params={"user_id": "s-alice"}).json()
        for side, user in (("sell", "s-carol"), ("buy", "s-dave")):  # a trade at 95.00 triggers both
            order = {"market": MARKET, "side": side, "price": "95", "quantity": "1", "user_id": user}
            assert client.post("/order", json=order).status_code == 200
        left = client.get("/order/open", params={"user_id": "s-alice"}).json()
        alice = client.get("/balance", params={"user_id": "s-alice"}).json()
        bob = client.get("/order/open", params={"user_id": "s-bob"}).json()
    assert second.stop() == 0, second.log()

    assert after == before
    assert [(o["type"], o["stopPrice"], o["status"]) for o in after] == [
        ("stop_loss", "95.00", "NEW"),
        ("stop_loss_limit", "95.00", "NEW"),
    ]
    assert left == []
    assert alice == {"TATA": {"available": "7.00", "locked": "0.00"}, "INR": {"available": "282.00", "locked": "0.00"}}
    assert [o["filled"] for o in bob] == ["3"]
    assert run_inspect(data_dir).returncode == 0
