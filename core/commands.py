"""Commands: what a client asks the engine to do, and queries: what it asks to know. All are `Record`s.

Every command carries `seq`, a number unique per engine assigned where the command enters it, and
`ts`, the entry time in milliseconds since the epoch. Both are inputs, not read from a clock inside an
actor, so that processing the same commands in the same order always gives the same state. A placed
order's id is its `seq`. Amounts are integers on the market's grid (see `openbell.core.grid`).

A command that changes state also carries `request_id`: the name of the client request it came from
when it crossed Redis (empty in one process). The balance stage applies a request id at most once
(`openbell.core.risk`), so a request delivered twice is answered, not applied again; the journal keeps
the request id with the command, so this holds across restarts.
"""

from __future__ import annotations

from typing import TypeAlias

import msgspec

from openbell.core.grid import MarketSpec
from openbell.core.types import OrderType, Permission, Record, SelfTradePrevention, Side, TimeInForce


class PlaceOrder(Record, frozen=True):
    seq: int
    """Entry sequence number; also the new order's id."""
    ts: int
    """Entry time, ms since the epoch."""
    user_id: str
    market: str
    side: Side
    order_type: OrderType
    time_in_force: TimeInForce
    price: int | None
    """Limit price in ticks; None for a market order."""
    quantity: int | None
    """Quantity in lots; None only for a market buy sized by `quote_quantity`."""
    quote_quantity: int | None = None
    """Market buys only: the most quote (minor units) to spend."""
    post_only: bool = False
    """Limit only: reject the order rather than let it take liquidity."""
    client_order_id: str | None = None
    stp: SelfTradePrevention = SelfTradePrevention.EXPIRE_MAKER
    """Self-trade prevention: what happens when it would trade with an order of the same user."""
    request_id: str = ""

    @property
    def order_id(self) -> int:
        return self.seq


class CancelOrder(Record, frozen=True):
    seq: int
    ts: int
    user_id: str
    market: str
    order_id: int
    request_id: str = ""


class Deposit(Record, frozen=True):
    seq: int
    ts: int
    user_id: str
    asset: str
    amount: int
    """Minor units of `asset`, positive."""
    txn_id: str
    """Idempotency key: a second deposit with the same id credits nothing."""
    request_id: str = ""


class AddMarket(Record, frozen=True):
    seq: int
    ts: int
    spec: MarketSpec
    request_id: str = ""


class GetBalances(Record, frozen=True):
    seq: int
    ts: int
    user_id: str


class GetOpenOrders(Record, frozen=True):
    seq: int
    ts: int
    user_id: str
    market: str | None = None
    """None: every market."""


class GetDepth(Record, frozen=True):
    seq: int
    ts: int
    market: str
    limit: int
    """Levels per side; the market caps it at `MAX_DEPTH_LEVELS`."""


class GetTrades(Record, frozen=True):
    seq: int
    ts: int
    market: str
    limit: int
    """Newest trades; the market caps it at `MAX_TRADES`."""


class GetTicker(Record, frozen=True):
    seq: int
    ts: int
    market: str


class GetKlines(Record, frozen=True):
    seq: int
    ts: int
    market: str
    interval_seconds: int
    start: int
    """Unix seconds, inclusive."""
    end: int
    """Unix seconds, exclusive."""


class GetTradeHistory(Record, frozen=True):
    """Trades of a time range, from the history database (any age)."""

    seq: int
    ts: int
    market: str
    start_ms: int
    """Inclusive."""
    end_ms: int
    """Exclusive."""
    limit: int


class GetKlineHistory(Record, frozen=True):
    """Candles of a time range, aggregated by the history database (any age)."""

    seq: int
    ts: int
    market: str
    interval_seconds: int
    start: int
    """Unix seconds, inclusive."""
    end: int
    """Unix seconds, exclusive."""
    limit: int


class CreateApiKey(Record, frozen=True):
    """Register an API key for a user. The key's secret is not in it: the API derives it from the key and a
    server secret kept outside the data directory (`openbell.edge.auth`), so the engine never holds one."""

    seq: int
    ts: int
    api_key: str
    """The key's public name (random, chosen where the request entered)."""
    user_id: str
    permissions: tuple[Permission, ...]
    request_id: str = ""


class RevokeApiKey(Record, frozen=True):
    seq: int
    ts: int
    api_key: str
    request_id: str = ""


class GetApiKeys(Record, frozen=True):
    """The keys of one user, or one key by name (both None: nothing)."""

    seq: int
    ts: int
    user_id: str | None = None
    api_key: str | None = None


MAX_DEPTH_LEVELS = 5000
"""Most levels per side a depth query returns."""
MAX_TRADES = 1000
"""Most trades a trades query returns."""

StateChanging: TypeAlias = PlaceOrder | CancelOrder | Deposit | AddMarket | CreateApiKey | RevokeApiKey
MarketQuery: TypeAlias = GetDepth | GetTrades | GetTicker | GetKlines
HistoryQuery: TypeAlias = GetTradeHistory | GetKlineHistory
Query: TypeAlias = GetBalances | GetOpenOrders | GetApiKeys | MarketQuery | HistoryQuery
Command: TypeAlias = StateChanging | Query
"""Everything that enters the engine."""
MatchCommand: TypeAlias = PlaceOrder | CancelOrder
"""What the balance stage forwards to a market."""

STATE_CHANGING = (PlaceOrder, CancelOrder, Deposit, AddMarket, CreateApiKey, RevokeApiKey)
"""Commands that change state: journaled, applied at most once per request id."""
MARKET_QUERIES = (GetDepth, GetTrades, GetTicker, GetKlines)
"""Queries a market's actor answers."""
HISTORY_QUERIES = (GetTradeHistory, GetKlineHistory)
"""Queries the history database answers (off the matching path)."""
QUERIES = (GetBalances, GetOpenOrders, GetApiKeys, *MARKET_QUERIES, *HISTORY_QUERIES)


def restamp(command: Command, seq: int, ts: int) -> Command:
    """The same command with a new `seq` and entry time `ts`."""
    return msgspec.structs.replace(command, seq=seq, ts=ts)
