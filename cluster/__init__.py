"""The Redis-fed deployment: one engine process (or a balance process and market shards), API and WebSocket
processes, Redis between them.

What crosses Redis, every message a `Record` encoded by `openbell.core.wire` (a version byte, then
JSON; a message that does not decode is logged, counted, skipped and, on the stream, acknowledged):
- `COMMANDS` (a stream, consumer group `GROUP`): one `CommandEntry` per write of an API process, holding
  the `RoutedCommand`s of one pass of its event loop. The engine's relay reads entries in batches and
  acknowledges an entry once every command in it has its reply out.
- `reply_channel(api_id)` (pub/sub): one `ReplyBatch` per relay flush per API process that is owed replies.
- `EVENTS` (pub/sub): one `EventBatch` per relay flush, every event the engine published since the last
  one, in order (WebSocket processes render what their clients subscribed to). The engine's relay publishes
  events only while some process reads them; a WebSocket process that starts reading says so on `LISTENERS`
  (pub/sub, a nonce), and each relay that heard it answers with that nonce on `LISTENERS_HEARD` once it
  publishes events again.
- `MARKETS` (a hash, symbol -> `MarketSpec`) and `REGISTRY` (pub/sub, `MarketListed` notices): the
  markets the engine runs, for API and WebSocket processes.

With market shards (`run.py balance` + `run.py markets --shard K`), the balance process reads `COMMANDS` as the
engine does, and besides:
- `shard_stream(K)` (a stream, consumer group `MARKET_GROUP`): `MatchEntry`s from the balance process (its
  `HostMarket`s and `MatchBatch`es for shard K's markets, one entry per shard per relay flush), and
  `CommandEntry`s of market-data queries from API processes (answered on their reply channels);
- `SETTLEMENTS` (a stream, consumer group `BALANCE_GROUP`): `SettlementEntry`s from the shards, one per
  shard flush; each shard also publishes its markets' events on `EVENTS`, in its own order;
- `SHARD_COUNT` (a string: how many shards) and `SHARDS` (a hash, symbol -> shard number): the stable
  assignment of markets to shards, written by the balance process; `MarketListed` notices carry it too.

At most once: a state-changing command carries its request id (`command.request_id`) into the engine,
which applies a request id at most once and journals it with the command (`openbell.core.risk`); so a
restarted engine knows from its own journal which redelivered entries it already applied. No Redis write
per command is needed for that.

May import `openbell.core`, `openbell.edge`, `openbell.actors`, `openbell.durability`, `openbell.history`.
"""

from __future__ import annotations

from openbell.core.commands import Command
from openbell.core.events import Event
from openbell.core.grid import MarketSpec
from openbell.core.messages import Reply, Settlement
from openbell.core.types import Record

COMMANDS = "openbell:commands"
MARKETS = "openbell:markets"
REGISTRY = "openbell:registry"
EVENTS = "openbell:events"
LISTENERS = "openbell:listeners"
LISTENERS_HEARD = "openbell:listeners:heard"
GROUP = "engine"
REPLY_PREFIX = "openbell:reply:"
SETTLEMENTS = "openbell:settlements"
BALANCE_GROUP = "balance"
SHARD_PREFIX = "openbell:shard:"
MARKET_GROUP = "markets"
SHARDS = "openbell:shards"
SHARD_COUNT = "openbell:market-shards"


def reply_channel(api_id: str) -> str:
    return f"{REPLY_PREFIX}{api_id}"


def shard_stream(shard: int) -> str:
    """The stream market shard `shard` reads."""
    return f"{SHARD_PREFIX}{shard}"


class RoutedCommand(Record, frozen=True):
    """A command on its way from an API process to the engine."""

    request_id: str
    """Unique per request: `<api id>:<counter>`. A state-changing command also carries it as its own
    `request_id`, so the engine applies it at most once."""
    reply_to: str
    """The pub/sub channel of the API process that waits for the reply."""
    deadline_ms: int
    """When the caller stops waiting (ms since the epoch). A query read after it is dropped; a command
    that changes state is still applied (its caller was told the outcome is unknown)."""
    command: Command
    """Its seq and ts are placeholders that the relay replaces with the engine's own."""


class CommandEntry(Record, frozen=True):
    """One stream entry: the commands one API process wrote in one go."""

    commands: tuple[RoutedCommand, ...]


class RoutedReply(Record, frozen=True):
    request_id: str
    reply: Reply
    """The engine's reply; its seq is the engine's (for a placed order, the order id)."""


class ReplyBatch(Record, frozen=True):
    """The replies one relay flush owes one API process."""

    replies: tuple[RoutedReply, ...]


class EventBatch(Record, frozen=True):
    """Events, in the order the engine published them."""

    events: tuple[Event, ...]


class MarketListed(Record, frozen=True):
    """A registry notice: the engine runs this market (also written to the `MARKETS` hash)."""

    spec: MarketSpec
    shard: int | None = None
    """The market shard that matches it (also in the `SHARDS` hash); None where one engine runs every market."""


class SettlementEntry(Record, frozen=True):
    """One entry of the settlement stream: what one market shard's flush settled, per market in batch order."""

    settlements: tuple[Settlement, ...]
