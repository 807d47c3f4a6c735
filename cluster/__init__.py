"""The Redis-fed deployment: one engine process, API and WebSocket processes, Redis between them.

What crosses Redis, all encoded with `openbell.core.codec` (versioned; a message that does not decode
is logged, skipped and, on a stream, acknowledged):
- `COMMANDS` (a stream, consumer group `GROUP`): one `RoutedCommand` per request from an API process;
  the engine's relay reads them in batches and acknowledges each only after its reply is produced.
- `reply_channel(api_id)` (pub/sub): one `RoutedReply` per command, to the API process that asked.
- `APPLIED` (a hash, request id -> engine seq): written before a state-changing command enters the
  engine and deleted when its entry is acknowledged, so that a restarted engine can tell which
  delivered-but-unacknowledged commands its own journal already holds (see `openbell.cluster.relay`).
- `MARKETS` (a hash, symbol -> `MarketSpec`) and `REGISTRY` (pub/sub, `MarketListed` notices): the
  markets the engine runs, for API and WebSocket processes.
- Event channels named after the WebSocket streams (`depth@TATA_INR`, `trade@...`, `ticker@...`,
  `kline_1m@...`, `orders@<user>`, `balance@<user>`): one message per channel per batch of events,
  holding the tuple of event objects in the order the engine published them. A trade is also sent
  on its maker's and taker's `orders@` channels; `RedisEventBus` delivers it once.

Invariant: a request id names one client request for its whole life; the relay applies a request id
at most once, however often its command is delivered.
"""

from __future__ import annotations

from dataclasses import dataclass

from openbell.actors.messages import Reply
from openbell.core import codec
from openbell.core.events import (
    BalanceChanged,
    DepthUpdated,
    OrderAccepted,
    OrderCanceled,
    OrderExpired,
    OrderFilled,
    OrderPartiallyFilled,
    OrderRejected,
    TradeExecuted,
)
from openbell.core.grid import MarketSpec
from openbell.core.marketdata import KlineSnapshot, Ticker

COMMANDS = "openbell:commands"
APPLIED = "openbell:applied"
MARKETS = "openbell:markets"
REGISTRY = "openbell:registry"
GROUP = "engine"
REPLY_PREFIX = "openbell:reply:"
EVENT_PATTERN = "*@*"
"""Matches every event channel (and nothing else the cluster publishes)."""


def reply_channel(api_id: str) -> str:
    return f"{REPLY_PREFIX}{api_id}"


@dataclass(frozen=True, slots=True)
class RoutedCommand:
    """A command on its way from an API process to the engine."""

    request_id: str
    """Unique per request: `<api id>:<counter>`. The relay applies one request id at most once."""
    reply_to: str
    """The pub/sub channel of the API process that waits for the reply."""
    deadline_ms: int
    """When the caller stops waiting (ms since the epoch). A query read after it is dropped; a command
    that changes state is still applied (its caller was told the outcome is unknown)."""
    command: object
    """A command or query of `openbell.core.commands`; its seq and ts are placeholders that the relay
    replaces with the engine's own."""


@dataclass(frozen=True, slots=True)
class RoutedReply:
    request_id: str
    reply: Reply
    """The engine's reply; its seq is the engine's (for a placed order, the order id)."""


@dataclass(frozen=True, slots=True)
class MarketListed:
    """A registry notice: the engine runs this market (also written to the `MARKETS` hash)."""

    spec: MarketSpec


codec.register(RoutedCommand, RoutedReply, MarketListed)

_ORDER_EVENTS = (OrderAccepted, OrderRejected, OrderPartiallyFilled, OrderFilled, OrderCanceled, OrderExpired)


def channels_of(event: object) -> tuple[str, ...]:
    """The event channels an event is published on (none for an event no stream carries)."""
    kind = type(event)
    if kind is DepthUpdated:
        return (f"depth@{event.market}",)  # type: ignore[attr-defined]
    if kind is TradeExecuted:
        trade: TradeExecuted = event  # type: ignore[assignment]
        users = dict.fromkeys((trade.maker_user_id, trade.taker_user_id))
        return (f"trade@{trade.market}", *(f"orders@{user}" for user in users))
    if kind in _ORDER_EVENTS:
        return (f"orders@{event.user_id}",)  # type: ignore[attr-defined]
    if kind is BalanceChanged:
        return (f"balance@{event.user_id}",)  # type: ignore[attr-defined]
    if kind is Ticker:
        return (f"ticker@{event.market}",)  # type: ignore[attr-defined]
    if kind is KlineSnapshot:
        return (f"kline_{event.interval}@{event.market}",)  # type: ignore[attr-defined]
    return ()
