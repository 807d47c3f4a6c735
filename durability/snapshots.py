"""Snapshots: each actor's state at a journal position, written atomically, pruned by retention.

A snapshot file `snapshot-<lsn:020d>.json` holds `{"lsn", "balance", "markets"}`: the state every actor
had after processing exactly the journal records up to `lsn`, taken while nothing was in flight
between the actors. It is written to a temporary file, fsynced and renamed, so a file with the final
name is complete; one that does not parse is skipped with a warning (the previous one is used).
"""

from __future__ import annotations

import logging
import os
import pathlib
from typing import Any

import ujson

from openbell.durability.journal import numbered_files

log = logging.getLogger(__name__)

PREFIX = "snapshot-"
SUFFIX = ".json"


def snapshot_files(directory: pathlib.Path) -> list[tuple[int, pathlib.Path]]:
    """(LSN, path) of every snapshot, oldest first."""
    return numbered_files(directory, PREFIX, SUFFIX)


def write_snapshot(directory: pathlib.Path, lsn: int, state: dict[str, Any]) -> pathlib.Path:
    directory.mkdir(parents=True, exist_ok=True)
    path = directory / f"{PREFIX}{lsn:020d}{SUFFIX}"
    tmp = path.with_suffix(".tmp")
    with tmp.open("wb") as handle:
        handle.write(ujson.dumps({"lsn": lsn, **state}).encode())
        handle.flush()
        os.fsync(handle.fileno())
    os.replace(tmp, path)
    fd = os.open(directory, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)
    return path


def load_newest(directory: pathlib.Path) -> dict[str, Any] | None:
    """The newest snapshot that parses, or None."""
    for lsn, path in reversed(snapshot_files(directory)):
        try:
            state = ujson.loads(path.read_bytes())
        except (OSError, ValueError) as error:
            log.warning("skipping unreadable snapshot %s: %s", path, error)
            continue
        if not isinstance(state, dict) or state.get("lsn") != lsn or "balance" not in state or "markets" not in state:
            log.warning("skipping incomplete snapshot %s", path)
            continue
        return state
    return None


def prune(directory: pathlib.Path, keep: int) -> int | None:
    """Keep the newest `keep` snapshots; returns the LSN of the oldest one kept (journal before it may go)."""
    files = snapshot_files(directory)
    for path in directory.glob(f"{PREFIX}*.tmp"):
        path.unlink(missing_ok=True)
    if not files:
        return None
    kept = files[-keep:] if keep > 0 else files[-1:]
    for _, path in files[: len(files) - len(kept)]:
        path.unlink(missing_ok=True)
    return kept[0][0]
