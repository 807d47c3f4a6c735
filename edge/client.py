"""`EngineClient`: the engine as the REST API and the WebSocket server see it, in one process or across Redis.

`openbell.actors.engine.Engine` (in-process) and `openbell.cluster.remote.RemoteEngine` (through Redis)
both implement it; handlers type against it and never ask which one they have. `request` raises
`EngineUnavailable` when the command was certainly not applied (503) and `EngineTimeout` when its outcome
is unknown (504: retry with the same clientOrderId).
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from typing import Any, Protocol, TypeVar

from openbell.core.commands import Command
from openbell.core.events import Event
from openbell.core.grid import Asset, MarketSpec
from openbell.core.messages import Reply
from openbell.core.types import ResultCode

C = TypeVar("C")
Subscriber = Callable[[Sequence[Event]], None]


class EngineError(Exception):
    code = ResultCode.ENGINE_ERROR


class EngineUnavailable(EngineError):
    """The engine is not reachable; the command was not applied."""

    code = ResultCode.ENGINE_UNAVAILABLE


class EngineTimeout(EngineError):
    """No reply in time; the command may or may not have been applied."""

    code = ResultCode.ENGINE_TIMEOUT


class EventSource(Protocol):
    """Where a WebSocket server gets the engine's events: batches, in the order the engine published them."""

    def subscribe(self, subscriber: Subscriber) -> Callable[[], None]:
        """Add a subscriber (called with each batch); returns the function that removes it."""
        ...

    def on_interrupted(self, listener: Callable[[str], None]) -> Callable[[], None]:
        """`listener(reason)` is called when events may have been lost (clients must resync)."""
        ...


class EngineClient(Protocol):
    @property
    def running(self) -> bool:
        """Whether requests can be answered now."""
        ...

    @property
    def markets(self) -> Mapping[str, MarketSpec]:
        """Running markets by symbol."""
        ...

    @property
    def assets(self) -> Mapping[str, Asset]:
        """Assets of the running markets by symbol."""
        ...

    @property
    def bus(self) -> EventSource | None:
        """The engine's events, where this process streams them; None where it does not."""
        ...

    def shard_of(self, symbol: str) -> int | None:
        """The market shard (process) that matches `symbol`; None where one engine matches every market."""
        ...

    def new(self, command_class: Callable[..., C], **fields: Any) -> C:
        """A command or query with this client's next seq and the entry time (the engine stamps its own)."""
        ...

    async def request(self, command: Command, timeout: float | None = None) -> Reply:
        """Send `command` and await its reply. Raises EngineUnavailable or EngineTimeout."""
        ...
