"""What the engine journals, and how recovery replays it.

Three kinds of record, appended by the actors as they process each input, in one journal:
- `["B", [command, ...]]`: a CommandBatch the balance actor handled (state-changing commands only,
  compactly encoded; queries change nothing and are left out);
- `["M", market, batch_no]`: market `market` matched its batch `batch_no`;
- `["S", market, batch_no]`: the balance actor applied that batch's settlement.

Only commands are stored in full: replaying the B records through a fresh `BalanceCore` regenerates
exactly the MatchBatches it sent, replaying those through the `MarketCore`s regenerates the
settlements, and the M and S records say in which order each actor processed them. Replay therefore
rebuilds every actor's state as it was, and also finds what was in flight at the crash: batches sent
but not matched, and settlements made but not applied. The engine finishes those when it restarts.
"""

from __future__ import annotations

import logging
from collections import deque
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from typing import Any

import ujson

from openbell.actors.balance import BalanceCore
from openbell.actors.market import MarketCore
from openbell.actors.messages import CommandBatch, MatchBatch, Settlement
from openbell.core.codec import from_wire, to_wire
from openbell.core.commands import AddMarket, CancelOrder, Deposit, PlaceOrder
from openbell.core.types import OrderType, SelfTradePrevention, Side, TimeInForce
from openbell.durability.journal import Journal

log = logging.getLogger(__name__)

Callback = Callable[[], None]
PROGRESS_EVERY = 50_000
"""Recovery logs its progress every this many journal records."""

_SIDES = {s.value: s for s in Side}
_TYPES = {t.value: t for t in OrderType}
_TIFS = {t.value: t for t in TimeInForce}
_STPS = {s.value: s for s in SelfTradePrevention}


def encode_command(command: Any) -> list[Any] | None:
    """A compact list for a state-changing command; None for a query."""
    kind = type(command)
    if kind is PlaceOrder:
        c = command
        return [
            "P",
            c.seq,
            c.ts,
            c.user_id,
            c.market,
            c.side.value,
            c.order_type.value,
            c.time_in_force.value,
            c.price,
            c.quantity,
            c.quote_quantity,
            c.post_only,
            c.client_order_id,
            c.stp.value,
        ]
    if kind is CancelOrder:
        return ["C", command.seq, command.ts, command.user_id, command.market, command.order_id]
    if kind is Deposit:
        return ["D", command.seq, command.ts, command.user_id, command.asset, command.amount, command.txn_id]
    if kind is AddMarket:
        return ["A", command.seq, command.ts, to_wire(command.spec)]
    return None


def decode_command(row: list[Any]) -> Any:
    tag = row[0]
    if tag == "P":
        _, seq, ts, user, market, side, otype, tif, price, qty, quote, post_only, coid, stp = row
        return PlaceOrder(
            seq,
            ts,
            user,
            market,
            _SIDES[side],
            _TYPES[otype],
            _TIFS[tif],
            price,
            qty,
            quote,
            post_only,
            coid,
            _STPS[stp],
        )
    if tag == "C":
        return CancelOrder(*row[1:])
    if tag == "D":
        return Deposit(*row[1:])
    if tag == "A":
        return AddMarket(row[1], row[2], from_wire(row[3]))
    raise ValueError(f"unknown command tag {tag!r}")


class EngineJournal:
    """The actors' side: append a record, then run `then` once it is durable."""

    def __init__(self, journal: Journal) -> None:
        self.journal = journal
        self.commands_since_snapshot = 0

    def commands(self, batch: CommandBatch, then: Callback) -> None:
        rows = [row for row in map(encode_command, batch.commands) if row is not None]
        if rows:
            self.commands_since_snapshot += len(rows)
            self.journal.append(ujson.dumps(["B", rows]).encode(), then)
        else:
            self.journal.after_durable(then)

    def matched(self, market: str, batch_no: int, then: Callback) -> None:
        self.journal.append(ujson.dumps(["M", market, batch_no]).encode(), then)

    def settled(self, market: str, batch_no: int, then: Callback) -> None:
        self.journal.append(ujson.dumps(["S", market, batch_no]).encode(), then)


@dataclass
class Replayed:
    balance: BalanceCore
    markets: dict[str, MarketCore]
    unmatched: dict[str, deque[MatchBatch]] = field(default_factory=dict)
    """Batches the balance actor sent that their market had not matched."""
    unsettled: dict[str, deque[Settlement]] = field(default_factory=dict)
    """Settlements a market made that the balance actor had not applied."""
    last_lsn: int = 0
    records: int = 0


def replay(
    balance: BalanceCore,
    markets: dict[str, MarketCore],
    records: Iterable[tuple[int, bytes]],
    start_lsn: int,
    events: Callable[[list[object]], None] | None = None,
) -> Replayed:
    """Feed journal records (after a snapshot at `start_lsn`) through the cores, in journal order.

    `events`, if given, receives the events the replayed inputs produce (for the history writer).
    """
    state = Replayed(balance, markets, last_lsn=start_lsn)
    unmatched = state.unmatched
    unsettled = state.unsettled
    for lsn, payload in records:
        record = ujson.loads(payload)
        tag = record[0]
        if tag == "B":
            batch = CommandBatch(tuple(decode_command(row) for row in record[1]))
            effects = balance.handle_commands(batch)
            if events is not None and effects.events:
                events(effects.events)
            for spec in effects.new_markets:
                markets[spec.symbol] = MarketCore(spec)
            for match in effects.batches:
                unmatched.setdefault(match.market, deque()).append(match)
        elif tag == "M":
            market, batch_no = record[1], record[2]
            queue = unmatched.get(market)
            if not queue or queue[0].batch_no != batch_no:
                raise ValueError(f"journal record {lsn}: market {market} matched batch {batch_no} that was never sent")
            settlement, published = markets[market].handle_batch(queue.popleft())
            if events is not None and published:
                events(published)
            unsettled.setdefault(market, deque()).append(settlement)
        elif tag == "S":
            market, batch_no = record[1], record[2]
            queue = unsettled.get(market)
            if not queue or queue[0].batch_no != batch_no:
                raise ValueError(f"journal record {lsn}: settlement of {market} batch {batch_no} was never made")
            effects = balance.handle_settlement(queue.popleft())
            if events is not None and effects.events:
                events(effects.events)
        else:
            raise ValueError(f"journal record {lsn}: unknown kind {tag!r}")
        state.last_lsn = lsn
        state.records += 1
        if state.records % PROGRESS_EVERY == 0:
            log.info("recovery: %d journal records replayed (at record %d)", state.records, lsn)
    return state
