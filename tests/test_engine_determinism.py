"""Each actor's state is a function of the messages it handled, in order: replaying them gives the same state.

The engine runs a concurrent load with a recorder that keeps every actor's inputs. After it stops, a
fresh `BalanceCore` is fed the balance actor's recorded `CommandBatch`es and `Settlement`s, and a fresh
`MarketCore` per market (made when its `AddMarket` comes up in a batch) is fed that market's recorded
`MatchBatch`es. The replayed ledger and books must equal the engine's, and what the replay produced
(the batches sent to markets, the settlements, the replies) must equal what the engine sent.
"""

from __future__ import annotations

import threading
from collections import defaultdict
from collections.abc import Iterator
from typing import Any

import pytest
from test_engine_concurrency import WAIT, Load, assert_engine_consistent, btc_usdt, infy_inr, tata_inr

from openbell.actors.engine import Engine
from openbell.core.book import OrderBook
from openbell.core.commands import AddMarket
from openbell.core.ledger import Ledger
from openbell.core.matching import MarketCore
from openbell.core.messages import CommandBatch, MatchBatch, Reply, Settlement
from openbell.core.risk import BalanceCore


class Recording:
    """The engine's recorder: every message each actor handled, in its order, per actor name."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self.by_actor: dict[str, list[object]] = defaultdict(list)

    def __call__(self, actor_name: str, message: object) -> None:
        with self._lock:
            self.by_actor[actor_name].append(message)


@pytest.fixture
def recording() -> Recording:
    return Recording()


@pytest.fixture
def engine(recording: Recording) -> Iterator[Engine]:
    engine = Engine(recorder=recording, reply_timeout=WAIT).start([tata_inr(), infy_inr()])
    yield engine
    engine.stop()


class Replay:
    """Fresh cores fed the recorded inputs, and everything they produced."""

    def __init__(self, recording: Recording, max_open_orders_per_user: int) -> None:
        self.balance = BalanceCore(max_open_orders_per_user)
        self.markets: dict[str, MarketCore] = {}
        self.replies: dict[int, Reply] = {}
        self.sent_batches: dict[str, list[MatchBatch]] = defaultdict(list)
        self.settlements: dict[str, list[Settlement]] = defaultdict(list)
        for message in recording.by_actor["balance"]:
            if isinstance(message, CommandBatch):
                effects = self.balance.handle_commands(message)
                for spec in effects.new_markets:
                    self.markets[spec.symbol] = MarketCore(spec)
                for batch in effects.batches:
                    self.sent_batches[batch.market].append(batch)
            else:
                assert isinstance(message, Settlement), message
                effects = self.balance.handle_settlement(message)
            for reply in effects.replies:
                self.replies[reply.seq] = reply
        for symbol, core in self.markets.items():
            for batch in recording.by_actor[f"market:{symbol}"]:
                assert isinstance(batch, MatchBatch), batch
                settlement, _ = core.handle_batch(batch)
                self.settlements[symbol].append(settlement)


def ledger_state(ledger: Ledger) -> tuple[Any, ...]:
    accounts = {user: ledger.balances(user) for user in ledger.users()}
    holds = {
        order_id: (hold.user_id, hold.market, hold.side, hold.price, hold.asset, hold.amount, hold.filled)
        for order_id, hold in ledger.holds.items()
    }
    return accounts, holds, ledger.deposited(), sorted(ledger.markets)


def book_state(book: OrderBook) -> tuple[Any, ...]:
    orders = {
        order.order_id: (order.user_id, order.side, order.price, order.quantity, order.remaining, order.filled)
        for order in book.orders()
    }
    return orders, book.depth(10**6), book.update_id, book.next_trade_id


@pytest.mark.parametrize("seed", [11, 12])
def test_replaying_each_actors_recorded_inputs_rebuilds_the_same_ledger_and_books(
    engine: Engine, recording: Recording, seed: int
) -> None:
    # Arrange: funds on the two starting markets; a third market is added while the load runs.
    new_market = btc_usdt()
    load = Load(engine, [tata_inr(), infy_inr(), new_market], seed=seed)
    for spec in engine.markets.values():
        load.fund(spec)
    added: list[Reply] = []

    def add_market_and_fund_it() -> None:
        added.append(engine.call(engine.new(AddMarket, spec=new_market)))
        load.fund(new_market)

    # Act: four producers (orders for BTC_USDT are refused until it exists), then replay.
    load.run(producers=4, commands_each=700, extra=add_market_and_fund_it)
    assert_engine_consistent(engine, load.commands, load.replies)  # stops the engine
    replay = Replay(recording, engine.balance_core.max_open_orders_per_user)

    # Assert: the interleaving was not trivial, and the replay rebuilt the same state.
    assert added and added[0].ok
    batches = [m for m in recording.by_actor["balance"] if isinstance(m, CommandBatch)]
    assert max(len(batch.commands) for batch in batches) > 1
    assert any(isinstance(m, Settlement) for m in recording.by_actor["balance"])
    assert set(replay.markets) == set(engine.market_cores) == {"TATA_INR", "INFY_INR", "BTC_USDT"}
    assert ledger_state(replay.balance.ledger) == ledger_state(engine.balance_core.ledger)
    assert replay.balance.pending == engine.balance_core.pending == {}
    for symbol, core in engine.market_cores.items():
        assert book_state(replay.markets[symbol].book) == book_state(core.book), symbol
        assert replay.sent_batches[symbol] == recording.by_actor[f"market:{symbol}"], symbol
        recorded_settlements = [
            m for m in recording.by_actor["balance"] if isinstance(m, Settlement) and m.market == symbol
        ]
        assert replay.settlements[symbol] == recorded_settlements, symbol
    for seq, reply in load.replies.items():
        assert replay.replies[seq] == reply
