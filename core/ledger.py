"""The funds ledger: every user's `available` and `locked` balance per asset, and the hold per open order.

Two-phase funds, as in exchange-core: placing an order first holds what it may spend (`hold_for`),
then the ledger settles from the book's events (`settle`): trades move held funds between buyer and
seller, a buy that fills below its limit gets the difference back to available at once, and an order
that ends (filled, canceled, expired, rejected) releases exactly what is still held for it.

Invariants (`check_invariants` verifies them):
- no `available` or `locked` amount is ever negative;
- each user's `locked` in an asset equals the sum of the holds of that user's open orders in it;
- a resting limit buy holds exactly price x remaining, a resting sell exactly its remaining base;
- per asset, the sum over all accounts (the fee account included) of available + locked changes only
  by deposits: trades and fees only move funds between accounts.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

import msgspec

from openbell.core.commands import PlaceOrder
from openbell.core.events import (
    BalanceChanged,
    Event,
    OrderCanceled,
    OrderExpired,
    OrderFilled,
    OrderRejected,
    TradeExecuted,
)
from openbell.core.grid import Asset, MarketSpec
from openbell.core.types import OrderType, ResultCode, Side, require

FEE_ACCOUNT = "#fees"
"""The account fees are paid into. No user id can look like it (user ids have no '#')."""

BUY = Side.BUY
LIMIT = OrderType.LIMIT
OK = ResultCode.OK
_ENDING = frozenset({OrderFilled, OrderExpired, OrderCanceled, OrderRejected})
"""Events after which an order holds nothing."""


def trade_amounts(spec: MarketSpec, trade: TradeExecuted) -> tuple[int, int, int, int]:
    """What a trade moves, in minor units: (quote the buyer pays, base the seller gives, the buyer's fee in base,
    the seller's fee in quote). The buyer receives base - its fee, the seller quote - its fee; fees are basis
    points of what each side receives, rounded down, maker or taker as the side was. Settlement and statements
    both use this, so they cannot disagree."""
    quantity = trade.quantity
    quote = trade.price * quantity * spec.quote_units_per_tick_lot
    base = quantity * spec.base_units_per_lot
    if trade.taker_side is BUY:
        buyer_bps, seller_bps = spec.taker_fee_bps, spec.maker_fee_bps
    else:
        buyer_bps, seller_bps = spec.maker_fee_bps, spec.taker_fee_bps
    buyer_fee = base * buyer_bps // 10_000 if buyer_bps else 0
    seller_fee = quote * seller_bps // 10_000 if seller_bps else 0
    return quote, base, buyer_fee, seller_fee


class Balance:
    """One user's funds in one asset. Hashes by identity, so a set of them tracks what changed."""

    __slots__ = ("asset", "available", "locked", "user_id")

    def __init__(self, user_id: str, asset: str) -> None:
        self.user_id = user_id
        self.asset = asset
        self.available = 0
        self.locked = 0


class Hold:
    """Funds held for one open order, and what the ledger knows of that order."""

    __slots__ = (
        "amount",
        "asset",
        "balance",
        "client_order_id",
        "filled",
        "market",
        "order_id",
        "order_type",
        "price",
        "quantity",
        "receive",
        "side",
        "ts",
        "user_id",
    )

    def __init__(
        self,
        order_id: int,
        user_id: str,
        market: str,
        side: Side,
        order_type: OrderType,
        price: int | None,
        quantity: int | None,
        filled: int,
        asset: str,
        amount: int,
        ts: int,
        client_order_id: str | None,
        balance: Balance,
        receive: Balance | None,
    ) -> None:
        self.order_id = order_id
        self.user_id = user_id
        self.market = market
        self.side = side
        self.order_type = order_type
        self.price = price
        """The limit price (ticks); None for a market order."""
        self.quantity = quantity
        self.filled = filled
        """Lots filled so far."""
        self.asset = asset
        self.amount = amount
        """What is still held, in `asset` minor units."""
        self.ts = ts
        self.client_order_id = client_order_id
        self.balance = balance
        """The balance the held funds sit in (`asset`)."""
        self.receive = receive
        """The balance fills pay into (the market's other asset); None until it exists (the first fill opens it)."""


class Ledger:
    def __init__(self) -> None:
        self.assets: dict[str, Asset] = {}
        self.markets: dict[str, MarketSpec] = {}
        self._accounts: dict[str, dict[str, Balance]] = {}
        self.holds: dict[int, Hold] = {}
        """Open orders by id."""
        self._user_holds: dict[str, dict[int, Hold]] = {}
        """Open orders by user, then id."""
        self._deposits: dict[str, tuple[str, str, int]] = {}
        self.change_id = 0
        """The change_id of the last BalanceChanged drained."""
        self._changed: dict[Balance, None] = {}
        """Balances changed since the last drain, in the order they first changed (a dict: deterministic order)."""

    # ----------------------------------------------------------------- set-up
    def add_market(self, spec: MarketSpec) -> None:
        self.markets[spec.symbol] = spec
        self.assets.setdefault(spec.base.symbol, spec.base)
        self.assets.setdefault(spec.quote.symbol, spec.quote)

    def _balance(self, user_id: str, asset: str) -> Balance:
        account = self._accounts.get(user_id)
        if account is None:
            account = self._accounts[user_id] = {}
        balance = account.get(asset)
        if balance is None:
            balance = account[asset] = Balance(user_id, asset)
        return balance

    # ----------------------------------------------------------------- reads
    def balance(self, user_id: str, asset: str) -> tuple[int, int]:
        """(available, locked) in minor units."""
        balance = self._accounts.get(user_id, {}).get(asset)
        return (balance.available, balance.locked) if balance else (0, 0)

    def balances(self, user_id: str) -> dict[str, tuple[int, int]]:
        return {asset: (b.available, b.locked) for asset, b in self._accounts.get(user_id, {}).items()}

    def open_orders(self, user_id: str) -> list[Hold]:
        """The user's open orders, oldest first."""
        return list(self._user_holds.get(user_id, {}).values())

    def open_order_count(self, user_id: str) -> int:
        return len(self._user_holds.get(user_id, ()))

    def users(self) -> list[str]:
        return list(self._accounts)

    def totals(self) -> dict[str, int]:
        """Per asset, available + locked summed over every account."""
        totals: dict[str, int] = {}
        for account in self._accounts.values():
            for asset, balance in account.items():
                totals[asset] = totals.get(asset, 0) + balance.available + balance.locked
        return totals

    def deposited(self) -> dict[str, int]:
        """Per asset, the sum of all deposits credited."""
        totals: dict[str, int] = {}
        for _, asset, amount in self._deposits.values():
            totals[asset] = totals.get(asset, 0) + amount
        return totals

    # ----------------------------------------------------------------- commands
    def deposit(self, user_id: str, asset: str, amount: int, txn_id: str) -> tuple[ResultCode, bool]:
        """Credit `amount` once per `txn_id`. Returns (code, whether this call credited anything)."""
        if asset not in self.assets:
            return ResultCode.UNKNOWN_ASSET, False
        if amount <= 0:
            return ResultCode.INVALID_AMOUNT, False
        previous = self._deposits.get(txn_id)
        if previous is not None:
            if previous == (user_id, asset, amount):
                return ResultCode.OK, False
            return ResultCode.DEPOSIT_CONFLICT, False
        self._deposits[txn_id] = (user_id, asset, amount)
        balance = self._balance(user_id, asset)
        balance.available += amount
        self._changed[balance] = None
        return ResultCode.OK, True

    def hold_for(self, cmd: PlaceOrder) -> tuple[ResultCode, PlaceOrder]:
        """Hold what `cmd` may spend. Returns the result and the order to match.

        A market buy sized only in base gets as budget everything available in quote; the order sent
        on to the book then carries that budget as its `quote_quantity`.
        """
        seq, user_id, market, side = cmd.seq, cmd.user_id, cmd.market, cmd.side
        order_type, price, quantity = cmd.order_type, cmd.price, cmd.quantity
        spec = self.markets.get(market)
        if spec is None:
            return ResultCode.UNKNOWN_MARKET, cmd
        holds = self.holds
        if seq in holds:
            return ResultCode.INVALID_ORDER, cmd
        account = self._accounts.get(user_id) or _NO_ACCOUNT
        # Balance rows are looked up, not created: a refused order must leave no trace.
        if side is BUY:
            asset = spec.quote.symbol
            balance = account.get(asset) or _EMPTY
            if order_type is LIMIT:
                if price is None or quantity is None:
                    return ResultCode.INVALID_ORDER, cmd
                amount = price * quantity * spec.quote_units_per_tick_lot
            elif cmd.quote_quantity is not None:
                amount = cmd.quote_quantity
            else:
                amount = balance.available
                if amount > 0:
                    cmd = msgspec.structs.replace(cmd, quote_quantity=amount)
            receive_asset = spec.base.symbol
        else:
            if quantity is None:
                return ResultCode.INVALID_QUANTITY, cmd
            asset = spec.base.symbol
            balance = account.get(asset) or _EMPTY
            amount = quantity * spec.base_units_per_lot
            receive_asset = spec.quote.symbol
        if amount <= 0 or balance.available < amount:
            return ResultCode.INSUFFICIENT_FUNDS, cmd
        balance.available -= amount
        balance.locked += amount
        self._changed[balance] = None
        hold = holds[seq] = Hold(
            seq,
            user_id,
            market,
            side,
            order_type,
            price,
            quantity,
            0,
            asset,
            amount,
            cmd.ts,
            cmd.client_order_id,
            balance,
            account.get(receive_asset),
        )
        user_holds = self._user_holds.get(user_id)
        if user_holds is None:
            user_holds = self._user_holds[user_id] = {}
        user_holds[seq] = hold
        return OK, cmd

    def release(self, order_id: int) -> None:
        """Give back all that is still held for `order_id` and forget the order."""
        hold = self.holds.pop(order_id, None)
        if hold is None:
            return
        del self._user_holds[hold.user_id][order_id]
        if hold.amount == 0:
            return
        balance = hold.balance
        balance.locked -= hold.amount
        balance.available += hold.amount
        self._changed[balance] = None

    def settle(self, events: Iterable[Event]) -> None:
        """Apply the book's events: move funds for trades, release what ended orders still hold.

        A `CancelRejected` changes nothing: whatever order has that id (maybe another user's) is untouched.
        """
        holds = self.holds
        changed = self._changed
        event: Any
        for event in events:
            kind = type(event)
            if kind is TradeExecuted:
                self._settle_trade(event)
            elif kind in _ENDING:
                order_id = event.order_id
                hold = holds.pop(order_id, None)
                if hold is None:
                    continue
                del self._user_holds[hold.user_id][order_id]
                amount = hold.amount
                if amount:
                    balance = hold.balance
                    balance.locked -= amount
                    balance.available += amount
                    changed[balance] = None

    def _settle_trade(self, trade: TradeExecuted) -> None:
        spec = self.markets[trade.market]
        per_lot = spec.quote_units_per_tick_lot
        quantity = trade.quantity
        quote, base, fee, seller_fee = trade_amounts(spec, trade)
        holds = self.holds
        if trade.taker_side is BUY:
            buyer, seller = holds[trade.taker_order_id], holds[trade.maker_order_id]
        else:
            buyer, seller = holds[trade.maker_order_id], holds[trade.taker_order_id]
        changed = self._changed

        # Buyer pays quote from its hold and receives base less its fee; a limit buy that paid less
        # than its limit gets the difference back at once, so it holds exactly limit x remaining.
        buyer.amount -= quote
        buyer.filled += quantity
        paying = buyer.balance
        paying.locked -= quote
        limit, asked = buyer.price, buyer.quantity
        if limit is not None and asked is not None:  # a limit buy
            excess = buyer.amount - limit * (asked - buyer.filled) * per_lot
            if excess:
                buyer.amount -= excess
                paying.locked -= excess
                paying.available += excess
        receiving = buyer.receive or self._receiving(buyer, spec.base.symbol)
        receiving.available += base - fee
        changed[paying] = None
        changed[receiving] = None

        # Seller gives base from its hold and receives quote less its fee.
        seller.amount -= base
        seller.filled += quantity
        paying = seller.balance
        paying.locked -= base
        receiving = seller.receive or self._receiving(seller, spec.quote.symbol)
        receiving.available += quote - seller_fee
        changed[paying] = None
        changed[receiving] = None

        if fee:
            fees = self._balance(FEE_ACCOUNT, spec.base.symbol)
            fees.available += fee
            changed[fees] = None
        if seller_fee:
            fees = self._balance(FEE_ACCOUNT, spec.quote.symbol)
            fees.available += seller_fee
            changed[fees] = None

    def _receiving(self, hold: Hold, asset: str) -> Balance:
        balance = hold.receive = self._balance(hold.user_id, asset)
        return balance

    def drain_changes(self, ts: int) -> list[BalanceChanged]:
        """One `BalanceChanged` per (user, asset) touched since the last drain, with its values now, in the
        order the balances first changed (so the same inputs give the same events)."""
        if not self._changed:
            return []
        first = self.change_id + 1
        out = [
            BalanceChanged(b.user_id, b.asset, b.available, b.locked, ts, change_id)
            for change_id, b in enumerate(self._changed, first)
        ]
        self.change_id = first + len(out) - 1
        self._changed.clear()
        return out

    # ----------------------------------------------------------------- state
    def to_state(self) -> dict[str, object]:
        """Everything needed to rebuild the ledger, as plain values (msgspec encodes them)."""
        return {
            "markets": [msgspec.to_builtins(spec) for spec in self.markets.values()],
            "assets": [[a.symbol, a.decimals] for a in self.assets.values()],
            "accounts": {
                user: {asset: [b.available, b.locked] for asset, b in account.items()}
                for user, account in self._accounts.items()
            },
            "holds": [
                [
                    h.order_id,
                    h.user_id,
                    h.market,
                    h.side.value,
                    h.order_type.value,
                    h.price,
                    h.quantity,
                    h.filled,
                    h.asset,
                    h.amount,
                    h.ts,
                    h.client_order_id,
                ]
                for h in self.holds.values()
            ],
            "deposits": {txn: list(value) for txn, value in self._deposits.items()},
            "change_id": self.change_id,
        }

    @classmethod
    def from_state(cls, state: dict[str, Any]) -> Ledger:
        ledger = cls()
        for symbol, decimals in state["assets"]:
            ledger.assets[symbol] = Asset(symbol, decimals)
        for wire in state["markets"]:
            spec = msgspec.convert(wire, MarketSpec)
            ledger.markets[spec.symbol] = spec
        for user, account in state["accounts"].items():
            for asset, (available, locked) in account.items():
                balance = ledger._balance(user, asset)
                balance.available, balance.locked = available, locked
        for row in state["holds"]:
            order_id, user_id, market, side, order_type, price, quantity, filled, asset, amount, ts, coid = row
            spec = ledger.markets[market]
            other = spec.base.symbol if asset == spec.quote.symbol else spec.quote.symbol
            hold = ledger.holds[order_id] = Hold(
                order_id,
                user_id,
                market,
                Side(side),
                OrderType(order_type),
                price,
                quantity,
                filled,
                asset,
                amount,
                ts,
                coid,
                ledger._balance(user_id, asset),
                ledger._accounts.get(user_id, {}).get(other),
            )
            ledger._user_holds.setdefault(user_id, {})[order_id] = hold
        for txn, (user, asset, amount) in state["deposits"].items():
            ledger._deposits[txn] = (user, asset, amount)
        ledger.change_id = state.get("change_id", 0)
        return ledger

    # ----------------------------------------------------------------- checks
    def check_invariants(self) -> None:
        held: dict[tuple[str, str], int] = {}
        by_user = {(h.user_id, order_id) for holds in self._user_holds.values() for order_id, h in holds.items()}
        require(by_user == {(h.user_id, order_id) for order_id, h in self.holds.items()}, "per-user index disagrees")
        for hold in self.holds.values():
            require(hold.amount >= 0, f"order {hold.order_id} holds a negative amount")
            key = (hold.user_id, hold.asset)
            held[key] = held.get(key, 0) + hold.amount
        for user_id, account in self._accounts.items():
            for asset, balance in account.items():
                require(balance.available >= 0, f"{user_id} has negative available {asset}")
                require(balance.locked >= 0, f"{user_id} has negative locked {asset}")
                require(
                    balance.locked == held.get((user_id, asset), 0),
                    (f"{user_id} locks {balance.locked} {asset} but its orders hold {held.get((user_id, asset), 0)}"),
                )
        totals = self.totals()
        for asset, amount in self.deposited().items():
            require(
                totals.get(asset, 0) == amount,
                (f"{asset}: accounts hold {totals.get(asset, 0)}, deposits were {amount}"),
            )


_NO_ACCOUNT: dict[str, Balance] = {}
_EMPTY = Balance("", "")
"""Stands in for a balance row that does not exist yet: nothing available, never written to."""
