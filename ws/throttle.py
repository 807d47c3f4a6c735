"""Throttled depth (`depth@M@100ms`): the depth diffs of one market over one interval, merged into one.

A diff gives the total quantity of each level it names after its updates (0 removes the level). So
applying diffs `U1..u1`, `U2..u2`, ..., `Uk..uk` (with `U(i+1) = u(i) + 1`) one after the other leaves
the same book as applying one diff `U1..uk` that names every level any of them named, with the total
the last of them gave it. `DepthMerge` keeps that merge for one market from one `take` to the next.

Invariants: after a `take`, the next merged diff starts at the update after the last one taken
(`U = previous u + 1`), so the throttled stream has the same continuity as the full one (a REST
snapshot plus the merged diffs with `u > lastUpdateId` rebuilds the book); a level appears at most
once per side in a merged diff; nothing is kept between two takes when no diff arrived.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any


@dataclass(frozen=True, slots=True)
class MergedDepth:
    """One merged diff: the fields of `DepthUpdated` that the stream renders, by the same names."""

    market: str
    first_update_id: int
    last_update_id: int
    bids: tuple[tuple[int, int], ...]
    """(price ticks, total lots) best first; total 0 removes the level."""
    asks: tuple[tuple[int, int], ...]
    ts: int
    """Engine time of the last diff merged."""


class DepthMerge:
    """The diffs of one market since the last `take`."""

    __slots__ = ("_asks", "_bids", "_first", "_last", "_ts", "market")

    def __init__(self, market: str) -> None:
        self.market = market
        self._first: int | None = None
        self._last = 0
        self._ts = 0
        self._bids: dict[int, int] = {}
        self._asks: dict[int, int] = {}

    def add(self, diff: Any) -> None:
        """Merge one `DepthUpdated` of this market (read by field name)."""
        if self._first is None:
            self._first = diff.first_update_id
        self._last = diff.last_update_id
        self._ts = diff.ts
        bids, asks = self._bids, self._asks
        for price, quantity in diff.bids:
            bids[price] = quantity
        for price, quantity in diff.asks:
            asks[price] = quantity

    def take(self) -> MergedDepth | None:
        """The merged diff since the last take (None if no diff arrived), and start afresh."""
        first = self._first
        if first is None:
            return None
        merged = MergedDepth(
            self.market,
            first,
            self._last,
            tuple(sorted(self._bids.items(), reverse=True)),
            tuple(sorted(self._asks.items())),
            self._ts,
        )
        self._first = None
        self._bids = {}
        self._asks = {}
        return merged
