"""The balance stage: sequence commands, hold funds for orders, settle what the markets did.

`BalanceCore` owns the ledger (every user's `available` and `locked` funds) and is the engine's
sequencer: it takes commands in batches (`CommandBatch`, in entry order), refuses what is malformed or
unfunded at once, holds funds for the rest and forwards them as one `MatchBatch` per market; each market
answers with one `Settlement`, which this stage applies to the ledger before it replies. So a reply to an
order is made only after the order's funds are settled. It is pure: no threads, no I/O, no clock; the
pykka shell around it is `openbell.actors.balance`.

Invariants:
- its state is a function of the batches and settlements it handled, in order (replay rebuilds it);
- every order forwarded to a market is in `pending` until its settlement arrives; a failed settlement
  releases the order's hold, so no funds stay locked without an order;
- a `BalanceChanged` carries the time of every command whose effect it includes: changes are drained whenever
  the command time changes within a batch or a settlement, so a statement cut at any millisecond finds every
  balance row on the same side of the cut as the deposits and trades that made it;
- a market whose status (`MarketSpec.status`, set by `SetMarketStatus`) is not TRADING takes no new order
  (MARKET_HALTED or MARKET_CANCEL_ONLY, before any funds are held); cancels go on as usual;
- a request id (`command.request_id`, set when a command crossed Redis) is applied at most once: a
  command whose request id is among the newest `MAX_REMEMBERED_REQUESTS` is answered DUPLICATE_REQUEST
  with the seq it was applied as, and changes nothing.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from typing import Any

from openbell.core.commands import (
    AddMarket,
    CancelOrder,
    Command,
    CreateApiKey,
    Deposit,
    GetApiKeys,
    GetBalances,
    GetOpenOrders,
    MatchCommand,
    PlaceOrder,
    RevokeApiKey,
    SetMarketStatus,
)
from openbell.core.events import (
    TERMINAL_EVENTS,
    CancelRejected,
    Deposited,
    Event,
    MarketAdded,
    MarketStatusChanged,
    OrderRejected,
)
from openbell.core.grid import MarketSpec
from openbell.core.ledger import Hold, Ledger
from openbell.core.messages import (
    AlreadyApplied,
    ApiKeys,
    ApiKeyView,
    Balances,
    CommandBatch,
    DepositResult,
    MatchBatch,
    OpenOrders,
    Reply,
    Settlement,
)
from openbell.core.orders import validate_order
from openbell.core.summary import OpenOrderView, OrderSummary, OriginalOrder
from openbell.core.types import MarketStatus, OrderStatus, Permission, ResultCode

log = logging.getLogger(__name__)

MAX_REMEMBERED_CLIENT_ORDERS = 100_000
"""How many ended orders' clientOrderIds are remembered (oldest forgotten first)."""
MAX_REMEMBERED_REQUESTS = 100_000
"""How many request ids are remembered for at-most-once (oldest forgotten first)."""
MAX_API_KEYS_PER_USER = 32
"""API keys one user may hold at once."""


class Effects:
    """What handling one input produced, for the shell to send."""

    __slots__ = ("batches", "changed_markets", "events", "new_markets", "replies")

    def __init__(self) -> None:
        self.batches: list[MatchBatch] = []
        """What to send to the markets, one batch per market, numbered per market."""
        self.replies: list[Reply] = []
        self.events: list[Event] = []
        self.new_markets: list[MarketSpec] = []
        self.changed_markets: list[MarketSpec] = []
        """Markets whose status changed, as they are now (for the registry)."""


class BalanceCore:
    def __init__(self, max_open_orders_per_user: int = 1000) -> None:
        self.ledger = Ledger()
        self.max_open_orders_per_user = max_open_orders_per_user
        self.pending: dict[int, MatchCommand] = {}
        """Commands forwarded to a market and not yet settled, by seq."""
        self._client_order_ids: dict[tuple[str, str], int] = {}
        """(user, clientOrderId) -> order id, for open orders."""
        self._client_key_by_order: dict[int, tuple[str, str]] = {}
        self._finished_client_orders: dict[tuple[str, str], tuple[int, str, str, int, int]] = {}
        """(user, clientOrderId) -> (order id, market, final status, filled, remaining) of ended orders, the
        newest MAX_REMEMBERED_CLIENT_ORDERS: a retry of an order that already ended gets its outcome back
        instead of becoming a second order."""
        self.requests: dict[str, int] = {}
        """Request id -> the seq it was applied as, the newest MAX_REMEMBERED_REQUESTS."""
        self.batches_sent: dict[str, int] = {}
        """Per market, the number of the last MatchBatch sent."""
        self.last_seq = 0
        """The highest command seq handled (the engine resumes numbering after it)."""
        self.api_keys: dict[str, ApiKeyView] = {}
        """API keys by name, oldest first; revoked keys are removed. No secrets (see CreateApiKey)."""

    # ----------------------------------------------------------------- state
    def to_state(self, *, without_pending: bool = False) -> dict[str, object]:
        """The core's state for a snapshot. Only taken when nothing is pending at any market, unless
        `without_pending`: then the caller keeps the forwarded commands itself (the balance process keeps the
        batches in flight in its snapshot) and sets `pending` again from them after `from_state`."""
        if self.pending and not without_pending:
            raise RuntimeError("a balance snapshot needs every forwarded command settled first")
        return {
            "ledger": self.ledger.to_state(),
            "max_open_orders_per_user": self.max_open_orders_per_user,
            "client_order_ids": [[user, coid, order_id] for (user, coid), order_id in self._client_order_ids.items()],
            "finished_client_orders": [
                [user, coid, *final] for (user, coid), final in self._finished_client_orders.items()
            ],
            "requests": [[request_id, seq] for request_id, seq in self.requests.items()],
            "batches_sent": dict(self.batches_sent),
            "last_seq": self.last_seq,
            "api_keys": [
                [k.api_key, k.user_id, [str(p) for p in k.permissions], k.created_ms] for k in self.api_keys.values()
            ],
        }

    @classmethod
    def from_state(cls, state: dict[str, Any]) -> BalanceCore:
        core = cls(state["max_open_orders_per_user"])
        core.ledger = Ledger.from_state(state["ledger"])
        for user, coid, order_id in state["client_order_ids"]:
            core._client_order_ids[(user, coid)] = order_id
            core._client_key_by_order[order_id] = (user, coid)
        for user, coid, order_id, market, status, filled, remaining in state["finished_client_orders"]:
            core._finished_client_orders[(user, coid)] = (order_id, market, status, filled, remaining)
        for request_id, seq in state["requests"]:
            core.requests[request_id] = seq
        core.batches_sent = dict(state["batches_sent"])
        core.last_seq = state["last_seq"]
        for api_key, user_id, permissions, created_ms in state.get("api_keys", ()):
            core.api_keys[api_key] = ApiKeyView(api_key, user_id, tuple(Permission(p) for p in permissions), created_ms)
        return core

    # ----------------------------------------------------------------- inputs
    def handle_commands(self, batch: CommandBatch) -> Effects:
        effects = Effects()
        to_markets: dict[str, list[MatchCommand]] = {}
        ledger = self.ledger
        requests = self.requests
        current_ts = -1
        for command in batch.commands:
            if command.ts != current_ts:
                if current_ts >= 0:
                    effects.events.extend(ledger.drain_changes(current_ts))
                current_ts = command.ts
            request_id = getattr(command, "request_id", "")
            if request_id:
                applied_as = requests.get(request_id)
                if applied_as is not None:
                    effects.replies.append(
                        Reply(
                            command.seq,
                            ResultCode.DUPLICATE_REQUEST,
                            f"request {request_id} was applied before, as command {applied_as}",
                            data=AlreadyApplied(applied_as),
                        )
                    )
                    continue
                requests[request_id] = command.seq
                if len(requests) > MAX_REMEMBERED_REQUESTS:
                    del requests[next(iter(requests))]
            try:
                self._handle(command, effects, to_markets)
            except Exception:
                log.exception("balance stage failed on %r", command)
                seq = command.seq
                if seq in ledger.holds and seq not in self.pending:
                    ledger.release(seq)
                effects.replies.append(Reply(seq, ResultCode.ENGINE_ERROR, "internal error"))
        if batch.commands:
            effects.events.extend(ledger.drain_changes(current_ts))
            self.last_seq = max(self.last_seq, max(command.seq for command in batch.commands))
        for market, commands in to_markets.items():
            number = self.batches_sent.get(market, 0) + 1
            self.batches_sent[market] = number
            effects.batches.append(MatchBatch(market, tuple(commands), number))
        return effects

    def _handle(self, command: Command, effects: Effects, to_markets: dict[str, list[MatchCommand]]) -> None:
        ledger = self.ledger
        if isinstance(command, PlaceOrder):
            self._place(command, effects, to_markets)
        elif isinstance(command, CancelOrder):
            hold = ledger.holds.get(command.order_id)
            if (
                hold is None
                or hold.user_id != command.user_id
                or hold.market != command.market
                or command.order_id in self.pending
            ):
                rejected = CancelRejected(
                    command.market,
                    command.order_id,
                    command.user_id,
                    ResultCode.UNKNOWN_ORDER,
                    "unknown order",
                    command.ts,
                )
                effects.replies.append(Reply(command.seq, ResultCode.UNKNOWN_ORDER, "unknown order", (rejected,)))
                return
            self._forward(command, to_markets)
        elif isinstance(command, Deposit):
            code, credited = ledger.deposit(command.user_id, command.asset, command.amount, command.txn_id)
            if credited:
                effects.events.append(
                    Deposited(command.user_id, command.asset, command.amount, command.txn_id, command.ts)
                )
            message = "" if code is ResultCode.OK else _DEPOSIT_MESSAGES.get(code, code.name)
            effects.replies.append(Reply(command.seq, code, message, data=DepositResult(credited)))
        elif isinstance(command, GetBalances):
            effects.replies.append(Reply(command.seq, ResultCode.OK, data=Balances(ledger.balances(command.user_id))))
        elif isinstance(command, GetOpenOrders):
            effects.replies.append(Reply(command.seq, ResultCode.OK, data=OpenOrders(self._open_orders(command))))
        elif isinstance(command, AddMarket):
            self._add_market(command, effects)
        elif isinstance(command, (CreateApiKey, RevokeApiKey, GetApiKeys)):
            effects.replies.append(self._api_keys(command))
        elif isinstance(command, SetMarketStatus):
            self._set_market_status(command, effects)
        else:
            kind = type(command).__name__
            effects.replies.append(
                Reply(command.seq, ResultCode.INVALID_REQUEST, f"the balance stage cannot do {kind}")
            )

    def handle_settlement(self, settlement: Settlement) -> Effects:
        effects = Effects()
        ledger = self.ledger
        last_ts = 0
        failed = settlement.failed
        for outcome in settlement.outcomes:
            seq, events = outcome.seq, outcome.events
            command = self.pending.get(seq) if seq in failed else self.pending.pop(seq, None)
            if command is not None and command.ts != last_ts:
                if last_ts:
                    effects.events.extend(ledger.drain_changes(last_ts))
                last_ts = command.ts
            canceled = self._view_of(command.order_id) if type(command) is CancelOrder else None
            try:
                ledger.settle(events)
                if self._client_key_by_order:
                    self._forget_client_ids(events)
            except Exception:
                log.exception("balance stage failed to settle %r", events)
                effects.replies.append(Reply(seq, ResultCode.ENGINE_ERROR, "internal error while settling"))
                continue
            first = events[0] if events else None
            if seq in failed:
                pass  # answered below, once its hold is released
            elif isinstance(first, (OrderRejected, CancelRejected)):
                effects.replies.append(Reply(seq, first.code, first.reason, events))
            else:
                # A cancel's reply carries the order as it was (its price, side, clientOrderId...): what a
                # client is told about the order it canceled, without asking for it first.
                effects.replies.append(Reply(seq, ResultCode.OK, "", events, canceled))
        for seq in failed:
            command = self.pending.pop(seq, None)
            if isinstance(command, PlaceOrder):
                self._release(seq)
            effects.replies.append(Reply(seq, ResultCode.ENGINE_ERROR, "internal error while matching"))
        effects.events.extend(ledger.drain_changes(last_ts))
        return effects

    # ----------------------------------------------------------------- helpers
    def _place(self, command: PlaceOrder, effects: Effects, to_markets: dict[str, list[MatchCommand]]) -> None:
        ledger = self.ledger
        spec = ledger.markets.get(command.market)
        if spec is None:
            self._reject(command, ResultCode.UNKNOWN_MARKET, f"unknown market {command.market}", effects)
            return
        if spec.status is not TRADING:
            code = _STATUS_CODES[spec.status]
            self._reject(command, code, f"market {spec.symbol} is {spec.status.value}: it takes cancels only", effects)
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
        self._forward(to_match, to_markets)

    def _forward(self, command: MatchCommand, to_markets: dict[str, list[MatchCommand]]) -> None:
        self.pending[command.seq] = command
        batch = to_markets.get(command.market)
        if batch is None:
            to_markets[command.market] = [command]
        else:
            batch.append(command)

    def _reject(
        self,
        command: PlaceOrder,
        code: ResultCode,
        reason: str,
        effects: Effects,
        original: OriginalOrder | None = None,
    ) -> None:
        event = OrderRejected(
            command.market, command.seq, command.user_id, code, reason, command.ts, command.client_order_id
        )
        effects.replies.append(Reply(command.seq, code, reason, (event,), original))
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

    def _forget_client_ids(self, events: Sequence[Event]) -> None:
        for event in events:
            if not isinstance(event, TERMINAL_EVENTS):
                continue
            key = self._client_key_by_order.pop(event.order_id, None)
            if key is None:
                continue
            self._client_order_ids.pop(key, None)
            finished = self._finished_client_orders
            if isinstance(event, OrderRejected):
                filled = remaining = 0
            else:
                filled, remaining = event.filled_quantity, event.remaining_quantity
            finished[key] = (event.order_id, event.market, event.status.value, filled, remaining)
            if len(finished) > MAX_REMEMBERED_CLIENT_ORDERS:
                del finished[next(iter(finished))]

    def _view_of(self, order_id: int) -> OpenOrders | None:
        """The open order `order_id` as a one-order `OpenOrders`, or None if the ledger holds nothing for it."""
        h = self.ledger.holds.get(order_id)
        return OpenOrders((_view(h),)) if h is not None else None

    def _open_orders(self, query: GetOpenOrders) -> tuple[OpenOrderView, ...]:
        return tuple(
            _view(h)
            for h in self.ledger.open_orders(query.user_id)
            if (query.market is None or h.market == query.market) and h.order_id not in self.pending
        )

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
        effects.events.append(MarketAdded(spec, command.ts))
        effects.replies.append(Reply(command.seq, ResultCode.OK, data=spec))

    def _api_keys(self, command: CreateApiKey | RevokeApiKey | GetApiKeys) -> Reply:
        keys = self.api_keys
        if isinstance(command, GetApiKeys):
            if command.api_key is not None:
                found = keys.get(command.api_key)
                return Reply(command.seq, ResultCode.OK, data=ApiKeys((found,) if found is not None else ()))
            return Reply(
                command.seq,
                ResultCode.OK,
                data=ApiKeys(tuple(k for k in keys.values() if k.user_id == command.user_id)),
            )
        if isinstance(command, RevokeApiKey):
            if keys.pop(command.api_key, None) is None:
                return Reply(command.seq, ResultCode.UNKNOWN_API_KEY_TO_REVOKE, "no such API key")
            return Reply(command.seq, ResultCode.OK)
        if command.api_key in keys:
            return Reply(command.seq, ResultCode.INVALID_REQUEST, "that API key exists")
        if sum(1 for k in keys.values() if k.user_id == command.user_id) >= MAX_API_KEYS_PER_USER:
            return Reply(
                command.seq, ResultCode.INVALID_REQUEST, f"a user may hold at most {MAX_API_KEYS_PER_USER} keys"
            )
        view = ApiKeyView(command.api_key, command.user_id, command.permissions, command.ts)
        keys[command.api_key] = view
        return Reply(command.seq, ResultCode.OK, data=view)

    def _set_market_status(self, command: SetMarketStatus, effects: Effects) -> None:
        ledger = self.ledger
        spec = ledger.markets.get(command.market)
        if spec is None:
            effects.replies.append(Reply(command.seq, ResultCode.UNKNOWN_MARKET, f"unknown market {command.market}"))
            return
        if spec.status is not command.status:
            spec = ledger.markets[spec.symbol] = spec.with_status(command.status)
            effects.changed_markets.append(spec)
            effects.events.append(MarketStatusChanged(spec.symbol, spec.status, command.ts))
        effects.replies.append(Reply(command.seq, ResultCode.OK, data=spec))


TRADING = MarketStatus.TRADING
_STATUS_CODES = {MarketStatus.HALTED: ResultCode.MARKET_HALTED, MarketStatus.CANCEL_ONLY: ResultCode.MARKET_CANCEL_ONLY}

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


def _view(h: Hold) -> OpenOrderView:
    """An open order as the ledger's hold for it knows it."""
    return OpenOrderView(
        h.order_id,
        h.market,
        h.side,
        h.order_type,
        h.price,
        h.quantity,
        h.filled,
        h.ts,
        h.client_order_id,
        h.stop_price,
        h.triggered,
    )
