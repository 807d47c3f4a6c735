"""Limits and delivery settings of the WebSocket server, fixed when it is installed.

`WsSettings.from_environment()` (what `install_websocket` uses when it is given none, so in `python
run.py` and `python run.py ws`) takes each field from `OPENBELL_WS_<FIELD>` when set, e.g.
`OPENBELL_WS_FLUSH_INTERVAL=0.01` or `OPENBELL_WS_PING_INTERVAL=none`.
"""

from __future__ import annotations

import dataclasses
import os
from collections.abc import Mapping
from dataclasses import dataclass


@dataclass(frozen=True, slots=True)
class WsSettings:
    max_subscriptions_per_connection: int = 50
    """Streams one connection may hold at once; a SUBSCRIBE beyond it is refused whole."""
    max_message_bytes: int = 4096
    """Largest client message accepted (the websocket's max_size); a larger one closes with 1009."""
    max_connections: int = 2000
    """Open connections per process; one more is closed at once with 1013 "try again later"."""
    max_connections_per_address: int = 64
    """Open connections from one client address; one more is refused (HTTP 429 at the upgrade). Trading clients
    open one connection per stream (ccxt.pro does), so this allows tens."""
    idle_seconds_before_subscribe: float = 30.0
    """Seconds a connection may stay without a stream before it is closed (1008): an idle slot is freed."""
    send_queue_limit: int = 1000
    """Messages waiting for a connection that is behind (its socket full and its transport holding
    `write_buffer_high` bytes); one more closes it with 1008 (resync from REST)."""
    write_buffer_high: int = 64 * 1024
    """Unsent bytes a connection's transport may hold before the connection counts as behind. Below it
    frames are written straight to the transport; above it they wait in the connection's backlog until
    the transport drains to a quarter of this."""
    flush_interval: float = 0.01
    """Seconds between two writes of the hub under load: frames published sooner after a write wait
    for the next one, so that one write per connection carries them all (fewer system calls per
    message, up to this much more delay). A batch after a quiet interval goes out at once. 0: every
    loop pass that has frames writes them."""
    listen_key_check_seconds: float = 60.0
    """Seconds between checks that a connection's listen key still lives. Once it has expired (not extended
    within its 60 minutes) or was deleted, the connection gets a `listenKeyExpired` message and is closed (1008):
    a user's private streams stop with the key that opened them."""
    ping_interval: float | None = 20.0
    """Seconds between the server's pings; None turns them off."""
    ping_timeout: float | None = 20.0
    """Seconds a pong may take before the connection is dropped as dead."""

    @classmethod
    def from_environment(cls, environ: Mapping[str, str] = os.environ) -> WsSettings:
        """The defaults, each overridden by `OPENBELL_WS_<FIELD NAME IN CAPITALS>` when that is set."""
        values: dict[str, int | float | None] = {}
        for field in dataclasses.fields(cls):
            name = f"OPENBELL_WS_{field.name.upper()}"
            text = environ.get(name)
            if text is None:
                continue
            optional = "None" in str(field.type)
            try:
                if optional and text.strip().lower() in ("", "none"):
                    values[field.name] = None
                elif "float" in str(field.type):
                    values[field.name] = float(text)
                else:
                    values[field.name] = int(text)
            except ValueError:
                raise ValueError(f"{name}={text!r} is not a valid {field.type}") from None
        return cls(**values)  # type: ignore[arg-type]
