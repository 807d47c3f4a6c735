"""Messages between the pipeline's stages, and the reply to a command: `Record`s, the same ones that the
journal keeps and that cross Redis.

The balance stage (`openbell.core.risk`) takes `CommandBatch`es (commands in entry order) and
`Settlement`s; a market stage (`openbell.core.matching`) takes `MatchBatch`es and market queries. Each
stage's state is a function of these inputs in the order it processed them.

A `Reply` answers one command by its `seq`: a place or cancel carries the events the command caused in
`events`; a query or a command with a result carries it in `data`, one of the `ReplyData` records.
"""

from __future__ import annotations

from typing import TypeAlias, TypeVar

from openbell.core.commands import Command, MatchCommand
from openbell.core.events import Event, KlineSnapshot, Ticker, TradeExecuted
from openbell.core.grid import MarketSpec
from openbell.core.summary import OpenOrderView, OriginalOrder
from openbell.core.types import Permission, Record, ResultCode

T = TypeVar("T")


class CommandBatch(Record, frozen=True):
    commands: tuple[Command, ...]
    """Commands and account queries, in the order they entered the engine's intake."""


class MatchBatch(Record, frozen=True):
    """Orders whose funds are held, and cancels of orders the balance stage knows, for one market."""

    market: str
    commands: tuple[MatchCommand, ...]
    batch_no: int
    """Per market, counts from 1 in the order the balance stage sent the batches."""


class Outcome(Record, frozen=True):
    """What matching one command did."""

    seq: int
    events: tuple[Event, ...]
    """The book's events for the command, in order."""


class Settlement(Record, frozen=True):
    """What matching one `MatchBatch` did."""

    market: str
    outcomes: tuple[Outcome, ...]
    failed: tuple[int, ...]
    """Seqs of commands whose matching raised: their holds are released and their callers told."""
    batch_no: int
    """The `MatchBatch.batch_no` this settles."""


# --------------------------------------------------------------------------------------------- reply data
class DepositResult(Record, frozen=True):
    credited: bool
    """False when the txnId was already used for this very deposit (nothing credited again)."""


class Balances(Record, frozen=True):
    assets: dict[str, tuple[int, int]]
    """Asset -> (available, locked) in minor units."""


class OpenOrders(Record, frozen=True):
    orders: tuple[OpenOrderView, ...]
    """Oldest first."""


class Depth(Record, frozen=True):
    bids: tuple[tuple[int, int], ...]
    """(price ticks, total lots), best first."""
    asks: tuple[tuple[int, int], ...]
    update_id: int
    """The book's update id these levels are as of: depth diffs continue from it."""


class RecentTrades(Record, frozen=True):
    trades: tuple[TradeExecuted, ...]
    """Newest first."""


class Klines(Record, frozen=True):
    candles: tuple[KlineSnapshot, ...]
    """Oldest first."""


class AlreadyApplied(Record, frozen=True):
    """The request was applied before (found by its request id): here is what it became."""

    seq: int
    """The seq it was applied as (for an order, its id)."""


class ApiKeyView(Record, frozen=True):
    """An API key as the engine keeps it: no secret (see `openbell.core.commands.CreateApiKey`)."""

    api_key: str
    user_id: str
    permissions: tuple[Permission, ...]
    created_ms: int
    """When it was created, ms since the epoch (the command's entry time)."""


class ApiKeys(Record, frozen=True):
    keys: tuple[ApiKeyView, ...]
    """Oldest first."""


ReplyData: TypeAlias = (
    DepositResult
    | Balances
    | OpenOrders
    | Depth
    | RecentTrades
    | Klines
    | Ticker
    | MarketSpec
    | OriginalOrder
    | AlreadyApplied
    | ApiKeyView
    | ApiKeys
)


class Reply(Record, frozen=True):
    """The answer to one command or query, matched to its caller by `seq`."""

    seq: int
    code: ResultCode
    message: str = ""
    events: tuple[Event, ...] = ()
    """A place or cancel: the events the command caused, in order."""
    data: ReplyData | None = None
    """A query's result, or what a command's result carries."""

    @property
    def ok(self) -> bool:
        return self.code is ResultCode.OK

    def expect(self, kind: type[T]) -> T:
        """`data` as the record a caller knows this kind of command answers with."""
        data = self.data
        if not isinstance(data, kind):
            raise TypeError(f"reply {self.seq} carries {type(data).__name__}, not {kind.__name__}")
        return data
