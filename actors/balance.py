"""The balance actor: owns the ledger, holds funds for new orders, settles what the markets did.

It is the engine's sequencer. Every command enters through the engine's intake, and this actor takes
them in batches (`CommandBatch`): it rejects what is malformed or unfunded at once, holds funds for
the rest and forwards them, grouped per market, as one `MatchBatch` per market; each market answers
with one `Settlement`, which this actor applies to the ledger before it replies to the callers. So a
reply to an order is sent only after the order's funds are settled.

`BalanceCore` is the deterministic state machine; `BalanceActor` is the pykka shell around it.

Invariants: the core's state is a function of the batches and settlements it handled, in order. Every
order forwarded to a market is in `pending` until its settlement arrives; a failed settlement releases
the order's hold, so no funds stay locked without an order.
"""

from __future__ import annotations

import logging
from collections import deque
from collections.abc import Callable, Sequence
from typing import TYPE_CHECKING, Any, NamedTuple

import pykka

from openbell.actors.bus import EventBus
from openbell.actors.messages import WAKE, CommandBatch, MatchBatch, Reply, Settlement, Wake
from openbell.core.book import validate_order
from openbell.core.commands import AddMarket, CancelOrder, Deposit, GetBalances, GetOpenOrders, PlaceOrder
from openbell.core.events import TERMINAL_EVENTS, OrderRejected
from openbell.core.grid import MarketSpec
from openbell.core.ledger import Ledger
from openbell.core.summary import OpenOrderView, OrderSummary
from openbell.core.types import OrderStatus, ResultCode

if TYPE_CHECKING:
    from openbell.durability.persistence import Persistence

log = logging.getLogger(__name__)

Recorder = Callable[[str, object], None]
ReplySink = Callable[[Sequence[Reply]], None]
MarketSpawner = Callable[[MarketSpec], pykka.ActorRef]

MAX_REMEMBERED_CLIENT_ORDERS = 100_000
"""How many ended orders' clientOrderIds the balance actor remembers (oldest forgotten first)."""

MAX_BATCH = 512
"""Most commands taken from the intake per message, so settlements interleave with new orders."""


class OriginalOrder(NamedTuple):
    """What a duplicate clientOrderId's reply carries: the order that used it first, as it is now."""

    market: str
    summary: OrderSummary


class Effects:
    """What handling one input produced, for the shell to send."""

    __slots__ = ("batches", "events", "new_markets", "replies", "to_markets")

    def __init__(self) -> None:
        self.to_markets: dict[str, list[PlaceOrder | CancelOrder]] = {}
        self.batches: list[MatchBatch] = []
        """What to send to the markets, numbered per market (filled in at the end of a batch)."""
        self.replies: list[Reply] = []
        self.events: list[object] = []
        self.new_markets: list[MarketSpec] = []


class BalanceCore:
    def __init__(self, max_open_orders_per_user: int = 1000) -> None:
        self.ledger = Ledger()
        self.max_open_orders_per_user = max_open_orders_per_user
        self.pending: dict[int, PlaceOrder | CancelOrder] = {}
        """Commands forwarded to a market and not yet settled, by seq."""
        self._client_order_ids: dict[tuple[str, str], int] = {}
        """(user, clientOrderId) -> order id, for open orders."""
        self._client_key_by_order: dict[int, tuple[str, str]] = {}
        self._finished_client_orders: dict[tuple[str, str], tuple[int, str, str, int, int]] = {}
        """(user, clientOrderId) -> (order id, market, final status, filled, remaining) of ended orders, the
        newest MAX_REMEMBERED_CLIENT_ORDERS: a retry of an order that already ended gets its outcome back
        instead of becoming a second order."""
        self.batches_sent: dict[str, int] = {}
        """Per market, the number of the last MatchBatch sent."""
        self.last_seq = 0
        """The highest command seq handled (the engine resumes numbering after it)."""

    # ----------------------------------------------------------------- state
    def to_state(self) -> dict[str, object]:
        """The core's state for a snapshot. Only taken when nothing is pending at any market."""
        if self.pending:
            raise RuntimeError("a balance snapshot needs every forwarded command settled first")
        return {
            "ledger": self.ledger.to_state(),
            "max_open_orders_per_user": self.max_open_orders_per_user,
            "client_order_ids": [[user, coid, order_id] for (user, coid), order_id in self._client_order_ids.items()],
            "finished_client_orders": [
                [user, coid, *final] for (user, coid), final in self._finished_client_orders.items()
            ],
            "batches_sent": dict(self.batches_sent),
            "last_seq": self.last_seq,
        }

    @classmethod
    def from_state(cls, state: dict) -> BalanceCore:  # type: ignore[type-arg]
        core = cls(state["max_open_orders_per_user"])
        core.ledger = Ledger.from_state(state["ledger"])
        for user, coid, order_id in state["client_order_ids"]:
            core._client_order_ids[(user, coid)] = order_id
            core._client_key_by_order[order_id] = (user, coid)
        for user, coid, *final in state.get("finished_client_orders", []):
            core._finished_client_orders[(user, coid)] = tuple(final)  # type: ignore[assignment]
        core.batches_sent = dict(state["batches_sent"])
        core.last_seq = state["last_seq"]
        return core

    # ----------------------------------------------------------------- inputs
    def handle_commands(self, batch: CommandBatch) -> Effects:
        effects = Effects()
        ledger = self.ledger
        for command in batch.commands:
            kind = type(command)
            try:
                if kind is PlaceOrder:
                    self._place(command, effects)  # type: ignore[arg-type]
                elif kind is CancelOrder:
                    hold = ledger.holds.get(command.order_id)  # type: ignore[attr-defined]
                    if (
                        hold is None
                        or hold.user_id != command.user_id  # type: ignore[attr-defined]
                        or hold.market != command.market  # type: ignore[attr-defined]
                        or command.order_id in self.pending  # type: ignore[attr-defined]
                    ):
                        effects.replies.append(Reply(command.seq, ResultCode.UNKNOWN_ORDER, "unknown order"))  # type: ignore[attr-defined]
                        continue
                    self._forward(command, effects)  # type: ignore[arg-type]
                elif kind is Deposit:
                    code, credited = ledger.deposit(
                        command.user_id,
                        command.asset,
                        command.amount,
                        command.txn_id,  # type: ignore[attr-defined]
                    )
                    message = "" if code is ResultCode.OK else _DEPOSIT_MESSAGES.get(code, code.name)
                    effects.replies.append(Reply(command.seq, code, message, credited))  # type: ignore[attr-defined]
                elif kind is GetBalances:
                    effects.replies.append(Reply(command.seq, ResultCode.OK, "", ledger.balances(command.user_id)))  # type: ignore[attr-defined]
                elif kind is GetOpenOrders:
                    effects.replies.append(Reply(command.seq, ResultCode.OK, "", self._open_orders(command)))  # type: ignore[arg-type,attr-defined]
                elif kind is AddMarket:
                    self._add_market(command, effects)  # type: ignore[arg-type]
                else:
                    effects.replies.append(
                        Reply(
                            getattr(command, "seq", 0), ResultCode.INVALID_REQUEST, f"unknown command {kind.__name__}"
                        )
                    )
            except Exception:
                log.exception("balance actor failed on %r", command)
                seq = getattr(command, "seq", 0)
                if seq in ledger.holds and seq not in self.pending:
                    ledger.release(seq)
                effects.replies.append(Reply(seq, ResultCode.ENGINE_ERROR, "internal error"))
        if batch.commands:
            effects.events.extend(ledger.drain_changes(getattr(batch.commands[-1], "ts", 0)))
            self.last_seq = max(self.last_seq, max(getattr(c, "seq", 0) for c in batch.commands))
        for market, commands in effects.to_markets.items():
            number = self.batches_sent.get(market, 0) + 1
            self.batches_sent[market] = number
            effects.batches.append(MatchBatch(market, tuple(commands), number))
        return effects

    def handle_settlement(self, settlement: Settlement) -> Effects:
        effects = Effects()
        ledger = self.ledger
        last_ts = 0
        failed = settlement.failed
        for seq, events in settlement.outcomes:
            command = self.pending.get(seq) if failed and seq in failed else self.pending.pop(seq, None)
            try:
                ledger.settle(events)  # type: ignore[arg-type]
                if self._client_key_by_order:
                    self._forget_client_ids(events)
            except Exception:
                log.exception("balance actor failed to settle %r", events)
                effects.replies.append(Reply(seq, ResultCode.ENGINE_ERROR, "internal error while settling"))
                continue
            first = events[0] if events else None
            if failed and seq in failed:
                pass  # answered below, once its hold is released
            elif isinstance(first, OrderRejected):
                effects.replies.append(Reply(seq, first.code, first.reason, events))
            else:
                effects.replies.append(Reply(seq, ResultCode.OK, "", events))
            if command is not None:
                last_ts = command.ts
        for seq in settlement.failed:
            command = self.pending.pop(seq, None)
            if type(command) is PlaceOrder:
                self._release(seq)
            effects.replies.append(Reply(seq, ResultCode.ENGINE_ERROR, "internal error while matching"))
        effects.events.extend(ledger.drain_changes(last_ts))
        return effects

    # ----------------------------------------------------------------- helpers
    def _place(self, command: PlaceOrder, effects: Effects) -> None:
        ledger = self.ledger
        spec = ledger.markets.get(command.market)
        if spec is None:
            self._reject(command, ResultCode.UNKNOWN_MARKET, f"unknown market {command.market}", effects)
            return
        problem = validate_order(command)
        if problem is not None:
            self._reject(command, problem[0], problem[1], effects)
            return
        if ledger.open_order_count(command.user_id) >= self.max_open_orders_per_user:
            self._reject(command, ResultCode.TOO_MANY_OPEN_ORDERS, "too many open orders", effects)
            return
        key = None
        if command.client_order_id is not None:
            key = (command.user_id, command.client_order_id)
            original = self._original_order(key)
            if original is not None:
                self._reject(
                    command,
                    ResultCode.DUPLICATE_CLIENT_ORDER_ID,
                    f"clientOrderId was already used by order {original.summary.order_id} "
                    f"({original.summary.status.value})",
                    effects,
                    original,
                )
                return
        code, to_match = ledger.hold_for(command)
        if code is not ResultCode.OK:
            self._reject(command, code, _PLACE_MESSAGES.get(code, code.name), effects)
            return
        if key is not None:
            self._client_order_ids[key] = command.seq
            self._client_key_by_order[command.seq] = key
        self._forward(to_match, effects)

    def _forward(self, command: PlaceOrder | CancelOrder, effects: Effects) -> None:
        self.pending[command.seq] = command
        batch = effects.to_markets.get(command.market)
        if batch is None:
            effects.to_markets[command.market] = [command]
        else:
            batch.append(command)

    def _reject(
        self, command: PlaceOrder, code: ResultCode, reason: str, effects: Effects, original: object = None
    ) -> None:
        event = OrderRejected(
            command.market, command.seq, command.user_id, code, reason, command.ts, command.client_order_id
        )
        effects.replies.append(Reply(command.seq, code, reason, original if original is not None else (event,)))
        effects.events.append(event)

    def _original_order(self, key: tuple[str, str]) -> OriginalOrder | None:
        """The state of the order that already used this (user, clientOrderId), if any."""
        order_id = self._client_order_ids.get(key)
        if order_id is not None:
            hold = self.ledger.holds.get(order_id)
            if hold is not None:
                status = OrderStatus.PARTIALLY_FILLED if hold.filled else OrderStatus.NEW
                remaining = (hold.quantity or 0) - hold.filled
                return OriginalOrder(hold.market, OrderSummary(order_id, status, hold.filled, remaining, ()))
        final = self._finished_client_orders.get(key)
        if final is None:
            return None
        order_id, market, status_name, filled, remaining = final
        return OriginalOrder(market, OrderSummary(order_id, OrderStatus(status_name), filled, remaining, ()))

    def _release(self, order_id: int) -> None:
        self.ledger.release(order_id)
        key = self._client_key_by_order.pop(order_id, None)
        if key is not None:
            self._client_order_ids.pop(key, None)

    def _forget_client_ids(self, events: Sequence[object]) -> None:
        for event in events:
            if type(event) in TERMINAL_EVENTS:
                e: Any = event
                key = self._client_key_by_order.pop(e.order_id, None)
                if key is not None:
                    self._client_order_ids.pop(key, None)
                    finished = self._finished_client_orders
                    finished[key] = (
                        e.order_id,
                        e.market,
                        e.status.value,
                        getattr(e, "filled_quantity", 0),
                        e.remaining_quantity if type(e) is not OrderRejected else 0,
                    )
                    if len(finished) > MAX_REMEMBERED_CLIENT_ORDERS:
                        del finished[next(iter(finished))]

    def _open_orders(self, query: GetOpenOrders) -> list[OpenOrderView]:
        return [
            OpenOrderView(
                h.order_id, h.market, h.side, h.order_type, h.price, h.quantity, h.filled, h.ts, h.client_order_id
            )
            for h in self.ledger.open_orders(query.user_id)
            if (query.market is None or h.market == query.market) and h.order_id not in self.pending
        ]

    def _add_market(self, command: AddMarket, effects: Effects) -> None:
        spec = command.spec
        ledger = self.ledger
        if spec.symbol in ledger.markets:
            effects.replies.append(Reply(command.seq, ResultCode.MARKET_EXISTS, f"market {spec.symbol} exists"))
            return
        for asset in (spec.base, spec.quote):
            known = ledger.assets.get(asset.symbol)
            if known is not None and known != asset:
                effects.replies.append(
                    Reply(command.seq, ResultCode.INVALID_MARKET_SPEC, f"{asset.symbol} has {known.decimals} decimals")
                )
                return
        ledger.add_market(spec)
        effects.new_markets.append(spec)
        effects.replies.append(Reply(command.seq, ResultCode.OK, "", spec))


_PLACE_MESSAGES = {
    ResultCode.INSUFFICIENT_FUNDS: "insufficient funds",
    ResultCode.UNKNOWN_MARKET: "unknown market",
    ResultCode.INVALID_ORDER: "invalid order",
}
_DEPOSIT_MESSAGES = {
    ResultCode.UNKNOWN_ASSET: "unknown asset",
    ResultCode.DEPOSIT_CONFLICT: "txnId was already used for a different deposit",
    ResultCode.INVALID_AMOUNT: "amount must be positive",
}


class Intake:
    """Commands waiting for the balance actor, and whether a wake-up is already on its way.

    Producers append and, if no wake-up is scheduled, schedule one; the actor clears the flag before it
    drains, so a command appended at any moment is either drained now or woken for later.
    """

    __slots__ = ("queue", "scheduled")

    def __init__(self) -> None:
        self.queue: deque[object] = deque()
        self.scheduled = False


class BalanceActor(pykka.ThreadingActor):
    use_daemon_thread = True

    def __init__(
        self,
        core: BalanceCore,
        intake: Intake,
        spawn_market: MarketSpawner,
        reply_sink: ReplySink,
        bus: EventBus,
        recorder: Recorder | None = None,
        markets: dict[str, pykka.ActorRef] | None = None,
        persistence: Persistence | None = None,
    ) -> None:
        super().__init__()
        self.core = core
        self._intake = intake
        self._spawn_market = spawn_market
        self._reply_sink = reply_sink
        self._bus = bus
        self._recorder = recorder
        self.markets: dict[str, pykka.ActorRef] = markets if markets is not None else {}
        self._persistence = persistence
        self._journal = persistence.journal if persistence is not None else None
        self._snapshot_wanted = False

    def on_receive(self, message: object) -> None:
        try:
            kind = type(message)
            if kind is Wake:
                if self._snapshot_wanted:
                    self._intake.scheduled = False
                    self._snapshot_if_quiet()
                    if self._snapshot_wanted:
                        return  # new commands wait until the markets have settled what they hold
                batch = self._drain()
                if batch is None:
                    return
                if self._recorder is not None:
                    self._recorder("balance", batch)
                effects = self.core.handle_commands(batch)
                self._start_new_markets(effects)  # before any reply can leave: an added market trades at once
                if self._journal is not None:
                    self._journal.commands(batch, self._after_durable(effects))
            elif kind is Settlement:
                if self._recorder is not None:
                    self._recorder("balance", message)
                effects = self.core.handle_settlement(message)  # type: ignore[arg-type]
                if self._journal is not None:
                    self._journal.settled(message.market, message.batch_no, self._after_durable(effects))  # type: ignore[attr-defined]
            else:
                log.error("balance actor got an unknown message %r", message)
                return
            self._dispatch(effects)
            if self._persistence is not None:
                if not self._snapshot_wanted and self._persistence.snapshot_due():
                    self._snapshot_wanted = True
                if self._snapshot_wanted:
                    self._snapshot_if_quiet()
        except Exception:
            log.exception("balance actor could not handle %r", message)

    def _after_durable(self, effects: Effects) -> Callable[[], None]:
        """Replies and events leave only once the journal holds what caused them."""
        replies, events = effects.replies, effects.events
        effects.replies, effects.events = [], []
        sink, bus = self._reply_sink, self._bus

        def send() -> None:
            if replies:
                sink(replies)
            if events:
                bus.publish(events)

        return send

    def _snapshot_if_quiet(self) -> None:
        """Take the due snapshot once every forwarded command is settled, then let commands in again."""
        if self.core.pending or self._persistence is None:
            return
        self._snapshot_wanted = False
        try:
            self._persistence.snapshot(self.core)
        except Exception:
            log.exception("snapshot failed; matching goes on")
        if self._intake.queue:
            self._intake.scheduled = True
            self.actor_ref.tell(WAKE)

    def _drain(self) -> CommandBatch | None:
        intake = self._intake
        intake.scheduled = False
        queue = intake.queue
        commands = []
        popleft = queue.popleft
        try:
            for _ in range(MAX_BATCH):
                commands.append(popleft())
        except IndexError:
            pass
        else:
            if queue:
                intake.scheduled = True
                self.actor_ref.tell(WAKE)
        return CommandBatch(tuple(commands)) if commands else None

    def _start_new_markets(self, effects: Effects) -> None:
        for spec in effects.new_markets:
            self.markets[spec.symbol] = self._spawn_market(spec)
        effects.new_markets = []

    def _dispatch(self, effects: Effects) -> None:
        self._start_new_markets(effects)
        for batch in effects.batches:
            self.markets[batch.market].tell(batch)
        if effects.replies:
            self._reply_sink(effects.replies)
        if effects.events:
            self._bus.publish(effects.events)

    def on_failure(self, exception_type, exception_value, traceback) -> None:  # type: ignore[no-untyped-def]
        log.error("balance actor stopped by %s: %s", exception_type, exception_value)


def _register() -> None:
    from openbell.core.codec import register

    register(OriginalOrder)


_register()
