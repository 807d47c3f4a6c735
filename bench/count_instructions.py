"""Workloads for counting instructions with callgrind: repeatable whatever else the machine is doing.

    valgrind --tool=callgrind --callgrind-out-file=/dev/null python -m bench.count_instructions core 20000
    valgrind --tool=callgrind --callgrind-out-file=/dev/null python -m bench.count_instructions core 40000

Instructions per command = (count at 40,000 - count at 20,000) / 20,000: the difference cancels start-up.
Workloads (the seeded stream of `bench/streams.py`, one market):
- `book`, `book+ledger`: one pass of `bench/core_bench.py`'s scenario;
- `pipeline`: the balance and market stages without threads or journal, batches of 256 commands:
  `BalanceCore.handle_commands` -> `MarketCore.handle_batch` -> `BalanceCore.handle_settlement`, i.e. the
  engine's work per order without its thread hand-overs.
"""

from __future__ import annotations

import sys

from bench import core_bench, streams
from openbell.core.commands import AddMarket, CancelOrder, Command, Deposit, PlaceOrder
from openbell.core.matching import MarketCore
from openbell.core.messages import CommandBatch
from openbell.core.risk import BalanceCore


def core(scenario: str, orders: int) -> None:
    spec = streams.market_spec()
    mix = streams.StreamMix()
    commands = [streams.to_command(item, spec.symbol) for item in streams.generate(orders, 1, mix)]
    engine = core_bench.SCENARIOS[scenario](spec, streams.user_ids(mix.users))
    core_bench.time_throughput(engine, commands)


def pipeline(orders: int) -> None:
    spec = streams.market_spec()
    mix = streams.StreamMix()
    balance = BalanceCore(10**9)
    markets: dict[str, MarketCore] = {}

    def run(commands: list[Command]) -> None:
        effects = balance.handle_commands(CommandBatch(tuple(commands)))
        for new in effects.new_markets:
            markets[new.symbol] = MarketCore(new)
        for match in effects.batches:
            settlement, _ = markets[match.market].handle_batch(match)
            balance.handle_settlement(settlement)

    seq = 1
    run([AddMarket(seq, 0, spec)])
    funding: list[Command] = []
    for user in streams.user_ids(mix.users):
        for asset in (spec.base.symbol, spec.quote.symbol):
            seq += 1
            funding.append(Deposit(seq, 0, user, asset, 10**20, f"{user}-{asset}"))
    run(funding)
    ids: dict[int, int] = {}
    commands: list[Command] = []
    for item in streams.generate(orders, 1, mix):
        seq += 1
        if isinstance(item, streams.Cancel):
            commands.append(CancelOrder(seq, item.ts, item.user_id, spec.symbol, ids.get(item.order_id, 0)))
        else:
            ids[item.seq] = seq
            order = streams.to_command(item, spec.symbol)
            commands.append(PlaceOrder(seq, order.ts, order.user_id, order.market, order.side, order.order_type,
                                       order.time_in_force, order.price, order.quantity, order.quote_quantity,
                                       order.post_only, order.client_order_id, order.stp))  # fmt: skip
    for start in range(0, len(commands), 256):
        run(commands[start : start + 256])


if __name__ == "__main__":
    workload, count = sys.argv[1], int(sys.argv[2])
    if workload == "pipeline":
        pipeline(count)
    else:
        core(workload, count)
