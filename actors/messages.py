"""Messages between the engine's actors: small immutable records, the same ones a relay carries over Redis.

The balance actor's inputs are `CommandBatch` (commands drained from the engine's intake, in entry
order) and `Settlement` (a market's outcomes). A market actor's inputs are `MatchBatch` and
`MarketQuery`. Each actor's state is a function of these inputs in the order it processed them.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import NamedTuple

from openbell.core.commands import CancelOrder, PlaceOrder
from openbell.core.types import ResultCode


@dataclass(frozen=True, slots=True)
class Wake:
    """The engine's intake has commands for the balance actor."""


WAKE = Wake()


@dataclass(frozen=True, slots=True)
class CommandBatch:
    commands: tuple[object, ...]
    """Commands and account queries, in the order they entered the engine's intake."""


@dataclass(frozen=True, slots=True)
class MatchBatch:
    """Orders whose funds are held, and cancels of orders the balance actor knows, for one market."""

    market: str
    commands: tuple[PlaceOrder | CancelOrder, ...]
    batch_no: int = 0
    """Per market, counts from 1 in the order the balance actor sent the batches."""


@dataclass(frozen=True, slots=True)
class Settlement:
    """What matching one `MatchBatch` did: per command, its seq and the book's events."""

    market: str
    outcomes: tuple[tuple[int, tuple[object, ...]], ...]
    failed: tuple[int, ...] = ()
    """Seqs of commands whose matching raised: their holds are released and their callers told."""
    batch_no: int = 0
    """The `MatchBatch.batch_no` this settles."""


@dataclass(frozen=True, slots=True)
class MarketQuery:
    query: object
    """One of the core.commands Get* market queries."""


class Reply(NamedTuple):
    """The answer to one command or query, matched to its caller by `seq` (a NamedTuple: one per order)."""

    seq: int
    code: ResultCode
    message: str = ""
    data: object = None
    """Place/cancel: the tuple of events the command caused. Queries: the query's result."""

    @property
    def ok(self) -> bool:
        return self.code is ResultCode.OK


def _register() -> None:
    from openbell.core.codec import register

    register(Wake, CommandBatch, MatchBatch, Settlement, MarketQuery, Reply)


_register()
