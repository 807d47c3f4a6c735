"""Limits of the WebSocket server, fixed when it is installed."""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True, slots=True)
class WsSettings:
    max_subscriptions_per_connection: int = 50
    """Streams one connection may hold at once; a SUBSCRIBE beyond it is refused whole."""
    max_message_bytes: int = 4096
    """Largest client message accepted (the websocket's max_size); a larger one closes with 1009."""
    max_connections: int = 2000
    """Open connections per process; one more is closed at once with 1013 "try again later"."""
    send_queue_limit: int = 1000
    """Messages waiting to be sent to one connection; one more closes it with 1008 (resync from REST)."""
    ping_interval: float | None = 20.0
    """Seconds between the server's pings; None turns them off."""
    ping_timeout: float | None = 20.0
    """Seconds a pong may take before the connection is dropped as dead."""
