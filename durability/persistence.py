"""Persistence of a process's state: its journal, snapshot policy and recovery, in one object per role.

`PersistenceBase` is what every role shares: the data directory (one process per directory, an `flock`ed
`LOCK` file; a `ROLE` file says which kind of process wrote it, so another kind refuses it), the snapshot
policy (`snapshot_due`) and writer, and opening the journal after recovery. On top of it:
- `Persistence`, the engine's (embedded or `run.py engine`): every stage in one journal
  (`openbell.durability.records`). `recover()` loads the newest complete snapshot, replays the journal
  after it, and opens the journal for appending. The actors then call `journal.*` for each input they
  process; the balance actor asks `snapshot_due()` and, once `can_snapshot(...)` (nothing in flight),
  `snapshot(...)`;
- the balance process's and a market shard's (`openbell.durability.split`).

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
from openbell.durability.records import EngineJournal, Replayed, StageJournal, replay

log = logging.getLogger(__name__)

ROLE_FILE = "ROLE"
"""A data directory's first line says which kind of process keeps it: `engine`, `balance` or `markets K`."""


class HistoryFeed(Protocol):
    """The history writer as recovery and snapshots see it (`openbell.history.writer.HistoryWriter`)."""

    def on_events(self, events: Sequence[Event]) -> None: ...

    def flush(self, timeout: float = 30.0) -> bool: ...


class DataDirLocked(RuntimeError):
    """Another engine holds this data directory."""


class RecoveryError(RuntimeError):
    """The data directory cannot be recovered as it is (the message says why and what to do)."""


class PersistenceBase:
    """What every role's persistence shares; a subclass recovers its own state and says what a snapshot holds."""

    role = "engine"
    """What the `ROLE` file of this kind of process says."""

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
        self._last_snapshot_time = time.monotonic()
        self._writer: threading.Thread | None = None
        self.history: HistoryFeed | None = None
        """A HistoryWriter, or None: replayed events go to it, and a snapshot waits until it has stored
        everything up to the snapshot (so the journal it might need is never pruned first)."""

    @property
    def stage_journal(self) -> StageJournal | None:
        """The journal as this role appends to it (None until recovered)."""
        raise NotImplementedError

    # ----------------------------------------------------------------- recovery
    def _prepare(self) -> dict[str, Any] | None:
        """Create and lock the data directory, check its role; the newest complete snapshot, if any."""
        self.journal_dir.mkdir(parents=True, exist_ok=True)
        self.snapshot_dir.mkdir(parents=True, exist_ok=True)
        self._lock_data_dir()
        self._check_role()
        return snapshots.load_newest(self.snapshot_dir)

    def _check_role(self) -> None:
        path = self.data_dir / ROLE_FILE
        if path.exists():
            found = path.read_text().strip()
        elif segments(self.journal_dir) or snapshots.snapshot_files(self.snapshot_dir):
            found = "engine"  # written before data directories said their role
        else:
            path.write_text(self.role + "\n")
            return
        if found != self.role:
            raise RecoveryError(
                f"{self.data_dir} holds the state of a {found!r} process, not of a {self.role!r} one: "
                "give this process its own --data-dir"
            )

    def _check_journal_start(self, snapshot: dict[str, Any] | None) -> None:
        found = segments(self.journal_dir)
        if snapshot is None and found and found[0][0] > 1:
            raise RecoveryError(
                f"{self.journal_dir} starts at record {found[0][0]} but there is no snapshot to start from: "
                "restore the snapshots directory from a backup"
            )

    def _open_journal(self, start_lsn: int, last_replayed: int, records: int) -> Journal:
        """The journal opened for appending after replay read `records` records up to `last_replayed`."""
        journal_end = max(last_replayed, start_lsn)
        # Replay read to the end of the journal; only if it found nothing after the snapshot must the last
        # record on disk be looked up (it may be before the snapshot).
        last_on_disk = last_replayed if records else _last_lsn_on_disk(self.journal_dir)
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
        return journal

    # ----------------------------------------------------------------- snapshots
    def snapshot_due(self) -> bool:
        journal = self.stage_journal
        if journal is None:
            return False
        if journal.commands_since_snapshot >= self.snapshot_every_commands:
            return True
        return (
            journal.commands_since_snapshot > 0
            and time.monotonic() - self._last_snapshot_time >= self.snapshot_every_seconds
        )

    def write_state(self, state: dict[str, Any], *, wait: bool = False) -> None:
        """Write `state`, captured just now (it holds every journal record appended so far and nothing
        after), as a snapshot once the journal is durable up to it."""
        stage = self.stage_journal
        assert stage is not None
        journal = stage.journal
        lsn = journal.next_lsn - 1
        stage.commands_since_snapshot = 0
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
        stage = self.stage_journal
        assert stage is not None
        journal = stage.journal
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
        stage = self.stage_journal
        if stage is not None:
            stage.journal.close()
        handle = getattr(self, "_lock_handle", None)
        if handle is not None:
            handle.close()
            self._lock_handle = None


class Persistence(PersistenceBase):
    """The engine's: every stage in one journal (`CommandBatch`, `Matched`, `Settled`), all cores in a snapshot."""

    role = "engine"

    def __init__(self, data_dir: pathlib.Path, **options: Any) -> None:
        super().__init__(data_dir, **options)
        self.journal: EngineJournal | None = None
        self.market_cores: dict[str, MarketCore] = {}
        """The engine's market cores (the same dict), read when a snapshot is taken."""

    @property
    def stage_journal(self) -> EngineJournal | None:
        return self.journal

    def recover(self, max_open_orders_per_user: int) -> Replayed:
        """Rebuild the cores from the newest snapshot and the journal after it, and open the journal."""
        started = time.perf_counter()
        snapshot = self._prepare()
        if snapshot is not None:
            balance = BalanceCore.from_state(snapshot["balance"])
            markets = {symbol: MarketCore.from_state(state) for symbol, state in snapshot["markets"].items()}
            start_lsn = int(snapshot["lsn"])
        else:
            balance = BalanceCore(max_open_orders_per_user)
            markets = {}
            start_lsn = 0
        balance.max_open_orders_per_user = max_open_orders_per_user
        self._check_journal_start(snapshot)
        sink = self.history.on_events if self.history is not None else None
        replayed = replay(balance, markets, read_records(self.journal_dir, after_lsn=start_lsn), start_lsn, sink)
        self.journal = EngineJournal(self._open_journal(start_lsn, replayed.last_lsn, replayed.records))
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

    def can_snapshot(self, balance: BalanceCore) -> bool:
        """One snapshot holds every stage, so it is taken only when nothing is in flight between them."""
        return not balance.pending

    def snapshot(self, balance: BalanceCore, *, wait: bool = False) -> None:
        """Capture every core's state now (nothing may be in flight) and write it once the journal is durable."""
        state: dict[str, Any] = {
            "balance": balance.to_state(),
            "markets": {symbol: core.to_state() for symbol, core in list(self.market_cores.items())},
        }
        self.write_state(state, wait=wait)


def _last_lsn_on_disk(directory: pathlib.Path) -> int:
    """The LSN of the last whole record, reading only the newest segment."""
    found = segments(directory)
    if not found:
        return 0
    last = found[-1][0] - 1
    for lsn, _ in read_records(directory, after_lsn=found[-1][0] - 1, repair=False):
        last = lsn
    return last
