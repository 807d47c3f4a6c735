"""The connection protocol of every openbell server: Sanic's, with a bound on the time a request head may take.

Sanic's request timeout restarts with every byte received, so a client trickling one header byte every few
seconds holds a connection (and its memory) for as long as it likes: a slowloris. `BoundedProtocol` counts
from the first byte of each request instead, and answers 408 and closes once `HEAD_SECONDS` (the app's
`OPENBELL_HEAD_SECONDS`) have passed without a whole head. The body has its own bound
(`openbell.http.app.BODY_SECONDS`). Based on `WebSocketProtocol`, so WebSocket upgrades work as before.
"""

from __future__ import annotations

import sys
from time import monotonic
from typing import Any

from sanic.exceptions import RequestTimeout
from sanic.http import Stage
from sanic.server.protocols.websocket_protocol import WebSocketProtocol

HEAD_SECONDS = 10.0


def configure(
    app: Any, head_seconds: float = HEAD_SECONDS, *, proxies: int = 0, real_ip_header: str | None = None
) -> None:
    """Bound request heads of `app` to `head_seconds` (Sanic checks timeouts every half of its smallest one), and
    say which client address to believe: with `proxies` (how many proxies append to X-Forwarded-For in front of
    the server) or `real_ip_header`, the one they report (`openbell.edge.auth.client_address`)."""
    app.config.OPENBELL_HEAD_SECONDS = head_seconds
    app.config.REQUEST_TIMEOUT = head_seconds
    app.config.PROXIES_COUNT = proxies
    app.config.REAL_IP_HEADER = real_ip_header
    app.ctx.behind_proxies = bool(proxies or real_ip_header)


class BoundedProtocol(WebSocketProtocol):
    __slots__ = ("_head_started",)

    def data_received(self, data: bytes) -> None:
        http = getattr(self, "_http", None)
        if getattr(self, "_head_started", None) is None or (http is not None and http.stage is Stage.IDLE):
            self._head_started = monotonic()
        super().data_received(data)

    def check_timeouts(self) -> None:
        http = getattr(self, "_http", None)
        started = getattr(self, "_head_started", None)
        if self._task and http is not None and http.stage is Stage.REQUEST and started is not None:
            limit = float(self.app.config.get("OPENBELL_HEAD_SECONDS", HEAD_SECONDS))
            if monotonic() - started > limit:
                http.exception = RequestTimeout(f"the request head did not arrive within {limit:g} s")
                if sys.version_info < (3, 14):
                    self._task.cancel("request head timeout")
                else:
                    self._task.cancel()
                return
        super().check_timeouts()
