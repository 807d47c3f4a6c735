"""One client connection: its subscriptions, and delivery of finished frames to its socket.

Delivery is a write. The hub hands a connection the bytes of every frame it gets from one flush (the
engine batches since the previous one, see `openbell.ws.hub`) in one `deliver`; when the connection has
no backlog and its transport holds at most `high_water` unsent bytes, they go straight to the transport
in one write: no queue, no task, no wake-up. A connection whose transport holds more is behind: it gets
a backlog and a drain task. Everything delivered meanwhile joins the backlog, and the task writes the
whole backlog in one write each time the transport has drained to its low-water mark (a quarter of
`high_water`: the transport pauses and resumes Sanic's protocol at these marks, set here). Once the
backlog is empty and the transport below the mark again, the task ends and writes go direct again. A
backlog of more than `limit` frames fails the connection with 1008 "resync from REST": a client that
does not keep up is cut off alone and never slows the others.

Invariants: bytes are written whole (every `deliver` carries whole frames) and in the order they were
delivered; while a backlog exists nothing bypasses it; nothing is written once the WebSocket left the
OPEN state or the connection is `closed`. Memory per connection is bounded: the transport's
`high_water` plus one flush, plus at most `limit` frames of backlog.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable
from typing import Any

from websockets.protocol import State

log = logging.getLogger(__name__)

OVERFLOW_CODE = 1008
OVERFLOW_REASON = "send queue overflow: resync from REST"
OPEN = State.OPEN


def text_frame(payload: bytes) -> bytes:
    """An unmasked, unfragmented server-to-client text frame (RFC 6455 5.2) carrying `payload`."""
    length = len(payload)
    if length < 126:
        return bytes((0x81, length)) + payload
    if length < 65536:
        return bytes((0x81, 126)) + length.to_bytes(2, "big") + payload
    return bytes((0x81, 127)) + length.to_bytes(8, "big") + payload


class Connection:
    __slots__ = (
        "_backlog",
        "_backlog_frames",
        "_buffered",
        "_drainer",
        "_high_water",
        "_io",
        "_on_overflow",
        "_protocol",
        "_transport",
        "_write",
        "audience",
        "closed",
        "limit",
        "streams",
        "user",
        "ws",
    )

    def __init__(
        self, ws: Any, user: str | None, limit: int, high_water: int, on_overflow: Callable[[Connection], None]
    ) -> None:
        self.ws = ws
        """Sanic's WebsocketImplProtocol; frames go straight to its transport."""
        self.user = user
        """Who the upgrade request said the client is; None if it did not say."""
        self.limit = limit
        """Frames the backlog may hold; one more fails the connection (1008)."""
        self.streams: frozenset[str] = frozenset()
        """What the connection is subscribed to (the hub keeps it)."""
        self.audience: Any = None
        """The hub's group of connections with exactly these streams (None without streams)."""
        self.closed = False
        self._io = ws.io_proto
        self._transport = self._io.transport
        self._protocol = ws.ws_proto
        self._high_water = high_water
        self._transport.set_write_buffer_limits(high=high_water)
        self._write = self._transport.write
        self._buffered = self._transport.get_write_buffer_size
        self._backlog: list[bytes] | None = None
        """None while the connection keeps up; the frames waiting for its transport while it is behind."""
        self._backlog_frames = 0
        self._drainer: asyncio.Task[None] | None = None
        self._on_overflow = on_overflow

    def deliver(self, data: bytes, frames: int) -> None:
        """Send `data` (`frames` whole frames) now if the connection keeps up, else add it to the backlog;
        on backlog overflow fail the connection instead. Never blocks."""
        if self.closed:
            return
        backlog = self._backlog
        if backlog is None:
            if self._protocol.state is not OPEN:
                self.closed = True
                return
            try:
                if self._buffered() <= self._high_water:
                    self._write(data)
                    return
            except RuntimeError:  # uvloop: the transport closed before Sanic saw the connection lost
                self.close()
                return
            self._backlog = backlog = []
            self._backlog_frames = 0
            self._drainer = asyncio.get_running_loop().create_task(self._drain())
        self._backlog_frames += frames
        if self._backlog_frames > self.limit:
            self.fail(OVERFLOW_CODE, OVERFLOW_REASON)
            self._on_overflow(self)
            return
        backlog.append(data)

    async def _drain(self) -> None:
        """Write the backlog whenever the transport can take more, until the connection keeps up again."""
        io, transport = self._io, self._transport
        try:
            while not self.closed:
                # Returns once the transport is below its low-water mark (Sanic's flow control);
                # raises once the transport is closing.
                await io.send(b"")
                backlog = self._backlog
                if self.closed or backlog is None or self._protocol.state is not OPEN:
                    return
                if backlog:
                    self._backlog = []
                    self._backlog_frames = 0
                    transport.write(backlog[0] if len(backlog) == 1 else b"".join(backlog))
                elif transport.get_write_buffer_size() <= self._high_water:
                    self._backlog = None
                    return
        except Exception as error:  # the transport closed under us: the handler cleans up
            log.debug("websocket drain ended: %r", error)
        finally:
            self._drainer = None

    def fail(self, code: int, reason: str) -> None:
        """Close now with `code` (the close frame goes after what the transport already holds)."""
        if self.closed:
            return
        self.close()
        try:
            self.ws.fail_connection(code, reason)
        except Exception:
            log.exception("could not fail a websocket connection")

    def close(self) -> None:
        """Accept nothing more and drop the backlog (the handler calls it when the client has gone)."""
        self.closed = True
        self._backlog = None
        drainer = self._drainer
        if drainer is not None and drainer is not asyncio.current_task():
            drainer.cancel()
