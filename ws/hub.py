"""The fan-out hub: which connection listens to which stream, and delivery of engine events to them.

Runs on the server's event loop only; the bus callback hands each batch over with one
`call_soon_threadsafe`. `publish` renders each message once (JSON, then a finished frame) into the
pending frames; `flush` then writes them. Connections subscribed to exactly the same streams form one
`Audience` and receive the same bytes: per flush, the frames an audience wants are joined once, in the
order they were published, and each member gets them in one `Connection.deliver` (one write to its
socket while it keeps up). So a delivered message costs a share of one write, not an append, a task
wake-up and a write of its own.

When frames are written: a flush runs on the next loop pass after a batch is published, so batches that
arrive together go out together; with `flush_interval` > 0, a flush within that many seconds of the
previous one waits until the interval has passed (a batch after a quiet interval goes out at once).
Every change of subscriptions, and every reply to a client, flushes first: a connection sees exactly
the messages published while it was subscribed, in order, and replies after the messages before them.
A flush with nothing pending costs nothing, so however many requests clients send there is at most one
flush per batch published.

Throttled depth streams (`depth@M@100ms`): while anyone listens to one, the depth diffs of its market
are merged (`openbell.ws.throttle.DepthMerge`) and one merged diff per interval is published to it.

Invariants: `listening[s]` holds exactly the audiences whose streams contain `s`, no stream maps to an
empty set and no audience is empty (the renderer skips work for streams nobody wants); a connection
is in exactly the audience of its streams, or in none if it has none.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Iterable, Sequence
from typing import Any

import ujson

from openbell import metrics
from openbell.core.events import DepthUpdated
from openbell.edge.client import EngineClient
from openbell.ws.connection import Connection, text_frame
from openbell.ws.render import Renderer
from openbell.ws.streams import throttled_depth
from openbell.ws.throttle import DepthMerge

log = logging.getLogger(__name__)


def encode(message: dict[str, Any]) -> bytes:
    """One text frame carrying `message` as JSON."""
    return text_frame(ujson.dumps(message, ensure_ascii=False).encode())


class Audience:
    """The connections subscribed to exactly `streams`: they receive the same bytes."""

    __slots__ = ("members", "streams")

    def __init__(self, streams: frozenset[str]) -> None:
        self.streams = streams
        self.members: dict[Connection, None] = {}
        """In the order they joined."""


class ThrottledStream:
    """One throttled depth stream that someone listens to: its merge and its interval."""

    __slots__ = ("interval", "merge", "stream")

    def __init__(self, stream: str, market: str, interval: float) -> None:
        self.stream = stream
        self.merge = DepthMerge(market)
        self.interval = interval


class Hub:
    def __init__(self, engine: EngineClient, flush_interval: float = 0.0) -> None:
        self.engine = engine
        self.renderer = Renderer(lambda: engine.markets, lambda: engine.assets)
        self.flush_interval = flush_interval
        self.connections: set[Connection] = set()
        self.audiences: dict[frozenset[str], Audience] = {}
        self.listening: dict[str, set[Audience]] = {}
        """Stream name -> the audiences that want it; its keys are the streams anyone wants."""
        self.throttled: dict[str, list[ThrottledStream]] = {}
        """Market -> its throttled depth streams that someone listens to."""
        self.messages_encoded = 0
        self.overflows = 0
        self._pending: list[tuple[str, bytes]] = []
        self._flush_handle: asyncio.Handle | None = None
        self._last_flush = -1e9
        self._ticking: dict[float, asyncio.TimerHandle] = {}
        """Interval -> the timer of its next tick, while a throttled stream of that interval is listened to."""

    # ----------------------------------------------------------------- connections
    def add(self, connection: Connection) -> None:
        if connection not in self.connections:
            self.connections.add(connection)
            metrics.WS_CONNECTIONS.inc()

    def remove(self, connection: Connection) -> None:
        if connection in self.connections:
            self.connections.discard(connection)
            metrics.WS_CONNECTIONS.dec()
        self._move(connection, frozenset())

    def on_overflow(self, connection: Connection) -> None:
        """Called while fanning out: the connection is failed; forget it once the loop is free."""
        self.overflows += 1
        metrics.WS_SLOW_DROPPED.inc()
        log.info("websocket send queue overflow: closed a connection of user %s", connection.user)
        asyncio.get_running_loop().call_soon(self.remove, connection)

    def subscribe(self, connection: Connection, streams: Iterable[str]) -> None:
        self.flush()
        self._move(connection, connection.streams.union(streams))

    def unsubscribe(self, connection: Connection, streams: Iterable[str]) -> None:
        self.flush()
        self._move(connection, connection.streams.difference(streams))

    def reply(self, connection: Connection, message: dict[str, Any]) -> None:
        """Send a reply to a client request, after every message published before it."""
        self.flush()
        connection.deliver(encode(message), 1)

    def close_all(self, reason: str) -> None:
        """Close every connection (1011): the events feeding it stopped, so streams would have a gap."""
        for connection in list(self.connections):
            connection.fail(1011, reason[:120])
            self.remove(connection)

    def _move(self, connection: Connection, streams: frozenset[str]) -> None:
        """Put `connection` in the audience of `streams` (in none if empty)."""
        old = connection.audience
        if old is not None and old.streams == streams:
            return
        if len(streams) != len(connection.streams):
            metrics.WS_SUBSCRIPTIONS.inc(len(streams) - len(connection.streams))
        if old is not None:
            del old.members[connection]
            if not old.members:
                self._drop_audience(old)
        connection.streams = streams
        connection.audience = None
        if streams:
            audience = self.audiences.get(streams)
            if audience is None:
                audience = self.audiences[streams] = Audience(streams)
                for stream in streams:
                    self._listen(stream, audience)
            audience.members[connection] = None
            connection.audience = audience

    def _listen(self, stream: str, audience: Audience) -> None:
        audiences = self.listening.get(stream)
        if audiences is None:
            audiences = self.listening[stream] = set()
            throttled = throttled_depth(stream)
            if throttled is not None:
                market, interval = throttled
                self.throttled.setdefault(market, []).append(ThrottledStream(stream, market, interval))
                self._start_ticking(interval)
        audiences.add(audience)

    def _drop_audience(self, audience: Audience) -> None:
        del self.audiences[audience.streams]
        for stream in audience.streams:
            audiences = self.listening[stream]
            audiences.discard(audience)
            if not audiences:
                del self.listening[stream]
                throttled = throttled_depth(stream)
                if throttled is not None:
                    market = throttled[0]
                    remaining = [t for t in self.throttled[market] if t.stream != stream]
                    if remaining:
                        self.throttled[market] = remaining
                    else:
                        del self.throttled[market]

    # ----------------------------------------------------------------- fan-out
    def publish(self, events: Sequence[object]) -> None:
        """Render one batch of engine events into the pending frames (on the loop)."""
        listening = self.listening
        render = self.renderer.render
        pending = self._pending
        throttled = self.throttled
        before = len(pending)
        for event in events:
            try:
                messages = render(event, listening)
            except Exception:
                log.exception("could not render %r", event)
                continue
            for stream, data in messages:
                pending.append((stream, encode({"stream": stream, "data": data})))
            if throttled and type(event) is DepthUpdated:
                depth: Any = event
                for throttled_stream in throttled.get(depth.market, ()):
                    throttled_stream.merge.add(depth)
        if len(pending) > before:
            self.messages_encoded += len(pending) - before
            self._schedule_flush()

    def _schedule_flush(self) -> None:
        if self._flush_handle is not None:
            return
        loop = asyncio.get_running_loop()
        wait = self._last_flush + self.flush_interval - loop.time()
        if wait > 0:
            self._flush_handle = loop.call_later(wait, self.flush)
        else:
            self._flush_handle = loop.call_soon(self.flush)

    def flush(self) -> None:
        """Write every pending frame to the connections that listen to its stream."""
        handle = self._flush_handle
        if handle is not None:
            handle.cancel()
            self._flush_handle = None
        pending = self._pending
        if not pending:
            return
        self._pending = []
        self._last_flush = asyncio.get_running_loop().time()
        listening = self.listening
        streams = {stream for stream, _ in pending}
        if len(streams) == 1:  # one stream: every audience listening to it gets everything
            audiences: Iterable[Audience] = listening.get(next(iter(streams)), ())
            data = pending[0][1] if len(pending) == 1 else b"".join([frame for _, frame in pending])
            count = len(pending)
            for audience in audiences:
                for connection in audience.members:  # overflowing ones leave later (on_overflow)
                    connection.deliver(data, count)
            return
        touched: set[Audience] = set()
        for stream in streams:
            touched.update(listening.get(stream, ()))
        joined: dict[frozenset[str], tuple[bytes, int]] = {}
        for audience in touched:
            wanted = audience.streams.intersection(streams)
            payload = joined.get(wanted)
            if payload is None:
                frames = [frame for stream, frame in pending if stream in wanted]
                payload = joined[wanted] = (b"".join(frames), len(frames))
            data, count = payload
            for connection in audience.members:
                connection.deliver(data, count)

    # ----------------------------------------------------------------- throttled depth
    def _start_ticking(self, interval: float) -> None:
        if interval not in self._ticking:
            self._ticking[interval] = asyncio.get_running_loop().call_later(interval, self._tick, interval)

    def _tick(self, interval: float) -> None:
        """Publish one merged diff per throttled depth stream of `interval` that had diffs since its last."""
        del self._ticking[interval]
        pending = self._pending
        before = len(pending)
        listened = False
        for streams in self.throttled.values():
            for throttled in streams:
                if throttled.interval != interval:
                    continue
                listened = True
                merged = throttled.merge.take()
                data = self.renderer.depth_data(merged) if merged is not None else None
                if data is not None:
                    pending.append((throttled.stream, encode({"stream": throttled.stream, "data": data})))
        if len(pending) > before:
            self.messages_encoded += len(pending) - before
            self._schedule_flush()
        if listened:
            self._start_ticking(interval)
