"""The fan-out hub: which connection listens to which stream, and delivery of engine events to them.

Runs on the server's event loop only; the bus callback hands each batch over with one
`call_soon_threadsafe`. Each message is rendered, JSON-encoded and framed once, and the same bytes are
queued to every subscriber, so the cost of a message is one encoding plus one append per subscriber.

Invariants: `subscribers[s]` holds exactly the open connections whose `streams` contain `s`, and no
stream maps to an empty set (the renderer skips work for streams nobody wants).
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Iterable, Sequence
from typing import Any

import ujson

from openbell.edge.client import EngineClient
from openbell.ws.connection import Connection, text_frame
from openbell.ws.render import Renderer

log = logging.getLogger(__name__)


def encode(message: dict[str, Any]) -> bytes:
    """One text frame carrying `message` as JSON."""
    return text_frame(ujson.dumps(message, ensure_ascii=False).encode())


class Hub:
    def __init__(self, engine: EngineClient) -> None:
        self.engine = engine
        self.renderer = Renderer(lambda: engine.markets, lambda: engine.assets)
        self.subscribers: dict[str, set[Connection]] = {}
        self.connections: set[Connection] = set()
        self.messages_encoded = 0
        self.overflows = 0

    # ----------------------------------------------------------------- connections
    def add(self, connection: Connection) -> None:
        self.connections.add(connection)

    def remove(self, connection: Connection) -> None:
        self.connections.discard(connection)
        self.unsubscribe(connection, list(connection.streams))

    def on_overflow(self, connection: Connection) -> None:
        """Called while fanning out: the connection is failed; forget it once the loop is free."""
        self.overflows += 1
        log.info("websocket send queue overflow: closed a connection of user %s", connection.user)
        asyncio.get_running_loop().call_soon(self.remove, connection)

    def subscribe(self, connection: Connection, streams: Iterable[str]) -> None:
        for stream in streams:
            if stream not in connection.streams:
                connection.streams.add(stream)
                self.subscribers.setdefault(stream, set()).add(connection)

    def unsubscribe(self, connection: Connection, streams: Iterable[str]) -> None:
        for stream in streams:
            connection.streams.discard(stream)
            listeners = self.subscribers.get(stream)
            if listeners is not None:
                listeners.discard(connection)
                if not listeners:
                    del self.subscribers[stream]

    def close_all(self, reason: str) -> None:
        """Close every connection (1011): the events feeding it stopped, so streams would have a gap."""
        for connection in list(self.connections):
            connection.fail(1011, reason[:120])
            self.remove(connection)

    # ----------------------------------------------------------------- fan-out
    def publish(self, events: Sequence[object]) -> None:
        """Deliver one batch of engine events (on the loop)."""
        subscribers = self.subscribers
        render = self.renderer.render
        for event in events:
            try:
                messages = render(event, subscribers)
            except Exception:
                log.exception("could not render %r", event)
                continue
            for stream, data in messages:
                listeners = subscribers.get(stream)
                if not listeners:
                    continue
                frame = encode({"stream": stream, "data": data})
                self.messages_encoded += 1
                for connection in listeners:  # overflowing ones leave later (on_overflow), not during this loop
                    connection.push(frame)
