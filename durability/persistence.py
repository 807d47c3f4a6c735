"""The engine's persistence: its journal, snapshot policy and recovery, in one object.

`Persistence.open(data_dir)` recovers: it loads the newest complete snapshot, replays the journal
after it, and opens the journal for appending. The actors then call `journal.*` for each input they
process; the balance actor asks `snapshot_due()` and, once nothing is in flight, `snapshot(...)`.

Invariants: a snapshot is written only after every journal record up to its LSN is durable; journal
segments are deleted only when they are wholly before the oldest snapshot kept.
"""

from __future__ import annotations

import logging
import pathlib
import threading
import time
from collections.abc import Sequence
from typing import Any, Protocol

from openbell.core.events import Event
from openbell.core.matching import MarketCore
from openbell.core.risk import BalanceCore
from openbell.durability import snapshots
from openbell.durability.journal import Journal, read_records, segments
from openbell.durability.records import EngineJournal, Replayed, replay

log = logging.getLogger(__name__)


class HistoryFeed(Protocol):
    """The history writer as recovery and snapshots see it (`openbell.history.writer.HistoryWriter`)."""

    def on_events(self, events: Sequence[Event]) -> None: ...

    def flush(self, timeout: float = 30.0) -> bool: ...


class DataDirLocked(RuntimeError):
    """Another engine holds this data directory."""


class RecoveryError(RuntimeError):
    """The data directory cannot be recovered as it is (the message says why and what to do)."""


class Persistence:
    def __init__(
        self,
        data_dir: pathlib.Path,
        *,
        fsync: bool = True,
        snapshot_every_commands: int = 200_000,
        snapshot_every_seconds: float = 300.0,
        keep_snapshots: int = 2,
        segment_bytes: int = 64 * 1024 * 1024,
    ) -> None:
        self.data_dir = pathlib.Path(data_dir)
        self.journal_dir = self.data_dir / "journal"
        self.snapshot_dir = self.data_dir / "snapshots"
        self.fsync = fsync
        self.snapshot_every_commands = snapshot_every_commands
        self.snapshot_every_seconds = snapshot_every_seconds
        self.keep_snapshots = keep_snapshots
        self.segment_bytes = segment_bytes
        self.journal: EngineJournal | None = None
        self._last_snapshot_time = time.monotonic()
        self._writer: threading.Thread | None = None
        self.market_cores: dict[str, MarketCore] = {}
        """The engine's market cores (the same dict), read when a snapshot is taken."""
        self.history: HistoryFeed | None = None
        """A HistoryWriter, or None: replayed events go to it, and a snapshot waits until it has stored
        everything up to the snapshot (so the journal it might need is never pruned first)."""

    # ----------------------------------------------------------------- recovery
    def recover(self, max_open_orders_per_user: int) -> Replayed:
        """Rebuild the cores from the newest snapshot and the journal after it, and open the journal."""
        self.journal_dir.mkdir(parents=True, exist_ok=True)
        self.snapshot_dir.mkdir(parents=True, exist_ok=True)
        self._lock_data_dir()
        started = time.perf_counter()
        snapshot = snapshots.load_newest(self.snapshot_dir)
        if snapshot is not None:
            balance = BalanceCore.from_state(snapshot["balance"])
            markets = {symbol: MarketCore.from_state(state) for symbol, state in snapshot["markets"].items()}
            start_lsn = int(snapshot["lsn"])
        else:
            balance = BalanceCore(max_open_orders_per_user)
            markets = {}
            start_lsn = 0
        balance.max_open_orders_per_user = max_open_orders_per_user
        found = segments(self.journal_dir)
        if snapshot is None and found and found[0][0] > 1:
            raise RecoveryError(
                f"{self.journal_dir} starts at record {found[0][0]} but there is no snapshot to start from: "
                "restore the snapshots directory from a backup"
            )
        sink = self.history.on_events if self.history is not None else None
        replayed = replay(balance, markets, read_records(self.journal_dir, after_lsn=start_lsn), start_lsn, sink)
        journal_end = max(replayed.last_lsn, start_lsn)
        # Replay read to the end of the journal; only if it found nothing after the snapshot must the last
        # record on disk be looked up (it may be before the snapshot).
        last_on_disk = replayed.last_lsn if replayed.records else _last_lsn_on_disk(self.journal_dir)
        if last_on_disk < start_lsn:
            log.warning(
                "the journal ends at record %d, before the snapshot at %d: continuing from the snapshot",
                last_on_disk,
                start_lsn,
            )
        journal = Journal(
            self.journal_dir, next_lsn=journal_end + 1, fsync=self.fsync, segment_bytes=self.segment_bytes
        )
        if last_on_disk < start_lsn:
            journal.start_new_segment(journal_end + 1)
        self.journal = EngineJournal(journal)
        log.info(
            "recovered from %s: snapshot at record %d, %d journal records replayed in %.2fs; %d markets, %d users",
            self.data_dir,
            start_lsn,
            replayed.records,
            time.perf_counter() - started,
            len(markets),
            len(balance.ledger.users()),
        )
        return replayed

    # ----------------------------------------------------------------- snapshots
    def snapshot_due(self) -> bool:
        journal = self.journal
        if journal is None:
            return False
        if journal.commands_since_snapshot >= self.snapshot_every_commands:
            return True
        return (
            journal.commands_since_snapshot > 0
            and time.monotonic() - self._last_snapshot_time >= self.snapshot_every_seconds
        )

    def snapshot(self, balance: BalanceCore, *, wait: bool = False) -> None:
        """Capture every core's state now (nothing may be in flight) and write it once the journal is durable."""
        assert self.journal is not None
        journal = self.journal.journal
        lsn = journal.next_lsn - 1
        state: dict[str, Any] = {
            "balance": balance.to_state(),
            "markets": {symbol: core.to_state() for symbol, core in list(self.market_cores.items())},
        }
        self.journal.commands_since_snapshot = 0
        self._last_snapshot_time = time.monotonic()
        previous = self._writer
        thread = threading.Thread(target=self._write, args=(lsn, state, previous), name="snapshot-writer", daemon=True)
        self._writer = thread
        thread.start()
        if wait:
            thread.join()

    def _write(self, lsn: int, state: dict[str, Any], previous: threading.Thread | None) -> None:
        if previous is not None:
            previous.join()
        assert self.journal is not None
        journal = self.journal.journal
        try:
            if not journal.flush(timeout=60):
                log.error("snapshot at record %d abandoned: the journal did not become durable", lsn)
                return
            if self.history is not None and not self.history.flush(timeout=60):
                log.warning("snapshot at record %d skipped: the history database is behind; the journal keeps all", lsn)
                return
            started = time.perf_counter()
            path = snapshots.write_snapshot(self.snapshot_dir, lsn, state)
            oldest_kept = snapshots.prune(self.snapshot_dir, self.keep_snapshots)
            removed = journal.prune(oldest_kept + 1) if oldest_kept is not None else 0
            log.info(
                "snapshot %s written in %.2fs; %d journal segments pruned",
                path.name,
                time.perf_counter() - started,
                removed,
            )
        except Exception:
            log.exception("could not write the snapshot at record %d", lsn)

    def _lock_data_dir(self) -> None:
        """One engine per data directory: a second one would interleave two journals into one."""
        import fcntl

        handle = (self.data_dir / "LOCK").open("a+")
        try:
            fcntl.flock(handle.fileno(), fcntl.LOCK_EX | fcntl.LOCK_NB)
        except OSError:
            handle.close()
            raise DataDirLocked(
                f"{self.data_dir} is in use by another openbell engine: stop it, or give this one another --data-dir"
            ) from None
        self._lock_handle: Any = handle

    def close(self) -> None:
        if self._writer is not None:
            self._writer.join(120)
        if self.journal is not None:
            self.journal.journal.close()
        handle = getattr(self, "_lock_handle", None)
        if handle is not None:
            handle.close()
            self._lock_handle = None


def _last_lsn_on_disk(directory: pathlib.Path) -> int:
    """The LSN of the last whole record, reading only the newest segment."""
    found = segments(directory)
    if not found:
        return 0
    last = found[-1][0] - 1
    for lsn, _ in read_records(directory, after_lsn=found[-1][0] - 1, repair=False):
        last = lsn
    return last
