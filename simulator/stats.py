"""What the simulator counts: requests by endpoint and status, orders and trades, rejections by result code,
and the latency of every request as the client sees it; the live progress line and the summary."""

from __future__ import annotations

import time
from array import array
from collections import Counter
from dataclasses import dataclass, field

from openbell.core.types import ResultCode

MAX_SAMPLES = 1_000_000
"""Latencies kept for the summary's percentiles."""


def reason(code: int | str | None) -> str:
    """A rejection's name: the result code's (`POST_ONLY_WOULD_TAKE`), or what went wrong on the wire."""
    if isinstance(code, int):
        try:
            return ResultCode(code).name
        except ValueError:
            return str(code)
    return str(code) if code is not None else "unknown"


def percentile(samples: array[float] | list[float], fraction: float) -> float:
    """The `fraction` quantile by nearest rank (0 for no samples)."""
    if not samples:
        return 0.0
    ordered = sorted(samples)
    rank = min(len(ordered) - 1, max(0, round(fraction * len(ordered)) - 1))
    return ordered[rank]


@dataclass
class Stats:
    started: float = field(default_factory=time.monotonic)
    requests: Counter[str] = field(default_factory=Counter)
    """Requests per `METHOD /path`."""
    statuses: Counter[int] = field(default_factory=Counter)
    """Answers per HTTP status (0: no answer)."""
    rejects: Counter[str] = field(default_factory=Counter)
    """Failed requests by reason (a result code name, `timeout`, `connection`)."""
    orders: int = 0
    """Orders sent (`POST /order`)."""
    cancels: int = 0
    trades: int = 0
    """Fills the simulator's takers got (each trade has exactly one taker)."""
    latencies: array[float] = field(default_factory=lambda: array("d"))
    _window: array[float] = field(default_factory=lambda: array("d"))
    _last_line: tuple[float, int, int] = (0.0, 0, 0)

    def record(self, kind: str, seconds: float, status: int, code: int | str | None) -> None:
        self.requests[kind] += 1
        self.statuses[status] += 1
        if kind == "POST /order":
            self.orders += 1
        elif kind == "DELETE /order":
            self.cancels += 1
        if status == 0 or status >= 400:
            self.rejects[reason(code)] += 1
        if len(self.latencies) >= MAX_SAMPLES:  # a run without end keeps the newest half
            del self.latencies[: MAX_SAMPLES // 2]
        self.latencies.append(seconds)
        self._window.append(seconds)

    @property
    def server_errors(self) -> int:
        return sum(count for status, count in self.statuses.items() if status >= 500)

    def progress(self) -> str:
        """One line about the time since the previous line: rates, rejections so far, latency."""
        now = time.monotonic()
        then, orders, trades = self._last_line or (self.started, 0, 0)
        then = then or self.started
        span = max(now - then, 1e-9)
        window, self._window = self._window, array("d")
        self._last_line = (now, self.orders, self.trades)
        return (
            f"{now - self.started:6.1f}s  orders {(self.orders - orders) / span:6.0f}/s  "
            f"trades {(self.trades - trades) / span:6.0f}/s  p50 {percentile(window, 0.5) * 1000:6.1f} ms  "
            f"p99 {percentile(window, 0.99) * 1000:6.1f} ms  rejects {self._rejects_text()}"
        )

    def summary(self) -> list[str]:
        elapsed = max(time.monotonic() - self.started, 1e-9)
        total = sum(self.requests.values())
        return [
            f"{elapsed:.1f} s: {total} requests, {self.orders} orders ({self.orders / elapsed:.0f}/s), "
            f"{self.cancels} cancels, {self.trades} trades ({self.trades / elapsed:.0f}/s)",
            f"latency p50 {percentile(self.latencies, 0.5) * 1000:.1f} ms, p99 "
            f"{percentile(self.latencies, 0.99) * 1000:.1f} ms, max {max(self.latencies, default=0) * 1000:.1f} ms",
            "statuses " + ", ".join(f"{status or 'none'}: {n}" for status, n in sorted(self.statuses.items())),
            f"rejects {self._rejects_text()}",
        ]

    def _rejects_text(self) -> str:
        return " ".join(f"{name}={n}" for name, n in self.rejects.most_common()) or "none"
