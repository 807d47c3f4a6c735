"""One client connection: its subscriptions and its bounded send queue, drained by its own sender task.

Messages arrive as finished WebSocket frames (built once per message for all subscribers, see
`text_frame`); the sender hands everything queued to the transport in one write when the transport
can take more. A client that does not keep up lets its queue grow; past `limit` waiting messages
(while its transport is backed up; see `BURST_FACTOR`) the connection is failed with 1008 and told to
resync from REST, so that it never slows anyone else.

Invariants: frames are written whole and in the order they were queued; nothing is written after the
connection left the OPEN state; a closed connection accepts nothing more.
"""

from __future__ import annotations

import asyncio
import logging
from collections import deque
from collections.abc import Callable
from typing import Any

from websockets.protocol import State

log = logging.getLogger(__name__)

OVERFLOW_CODE = 1008
OVERFLOW_REASON = "send queue overflow: resync from REST"
BURST_FACTOR = 4
"""A queue past its limit overflows once the client's transport holds unsent data (the client is
behind), or at this many times the limit in any case. So one large engine batch, queued before the
sender could run, does not cut off a client that reads everything."""


def text_frame(payload: bytes) -> bytes:
    """An unmasked, unfragmented server-to-client text frame (RFC 6455 5.2) carrying `payload`."""
    length = len(payload)
    if length < 126:
        return bytes((0x81, length)) + payload
    if length < 65536:
        return bytes((0x81, 126)) + length.to_bytes(2, "big") + payload
    return bytes((0x81, 127)) + length.to_bytes(8, "big") + payload


class Connection:
    def __init__(self, ws: Any, user: str | None, limit: int, on_overflow: Callable[[Connection], None]) -> None:
        self.ws = ws
        """Sanic's WebsocketImplProtocol; frames go straight to its transport."""
        self.user = user
        """Who the upgrade request said the client is; None if it did not say."""
        self.limit = limit
        self.streams: set[str] = set()
        self.closed = False
        self.queued = 0
        """Messages ever queued (for statistics)."""
        self._queue: deque[bytes] = deque()
        self._wakeup = asyncio.Event()
        self._on_overflow = on_overflow

    def push(self, frame: bytes) -> None:
        """Queue one frame; on overflow fail the connection instead. Never blocks."""
        if self.closed:
            return
        queue = self._queue
        if len(queue) >= self.limit and (len(queue) >= BURST_FACTOR * self.limit or self._stalled()):
            self.fail(OVERFLOW_CODE, OVERFLOW_REASON)
            self._on_overflow(self)
            return
        queue.append(frame)
        self.queued += 1
        if len(queue) == 1:
            self._wakeup.set()

    def _stalled(self) -> bool:
        """Whether the client is behind: its socket took no more and the transport holds unsent data."""
        io = self.ws.io_proto
        transport = io.transport if io is not None else None
        return transport is None or transport.get_write_buffer_size() > 0

    def fail(self, code: int, reason: str) -> None:
        """Close now with `code` (the close frame goes after what the transport already holds)."""
        if self.closed:
            return
        self.closed = True
        self._queue.clear()
        self._wakeup.set()
        try:
            self.ws.fail_connection(code, reason)
        except Exception:
            log.exception("could not fail a websocket connection")

    async def run_sender(self) -> None:
        """Write queued frames until the connection closes."""
        queue = self._queue
        wakeup = self._wakeup
        ws = self.ws
        while not self.closed:
            await wakeup.wait()
            io = ws.io_proto
            if io is None or io.transport is None:
                break
            # Wait until the transport takes more (Sanic's flow control); raises once it is closing.
            await io.send(b"")
            if self.closed or ws.ws_proto.state is not State.OPEN:
                break
            wakeup.clear()
            if not queue:
                continue
            data = queue[0] if len(queue) == 1 else b"".join(queue)
            queue.clear()
            io.transport.write(data)
