"""Snapshots: each stage's state at a journal position, written atomically, pruned by retention.

A snapshot file `snapshot-<lsn:020d>.bin` starts with `FILE_HEADER` (magic and `FORMAT_VERSION`), then
the JSON (msgspec; integers of any size, exact) of `{"lsn", "balance", "markets"}`: the state every stage had after processing exactly the
journal records up to `lsn`, taken while nothing was in flight between the stages. It is written to a
temporary file, fsynced and renamed, so a file with the final name is complete; one that does not parse
is skipped with a warning (the previous one is used). Snapshots of an older format (`*.json`, or another
version in the header) are refused with `SnapshotFormatError`, never misread.
"""

from __future__ import annotations

import logging
import os
import pathlib
import struct
from typing import Any

import msgspec

from openbell.durability.journal import numbered_files

log = logging.getLogger(__name__)

PREFIX = "snapshot-"
SUFFIX = ".bin"
OLD_SUFFIX = ".json"
FORMAT_VERSION = 2
"""1: `.json` files of ujson. 2: a file header, then msgspec JSON of the stages' state."""
FILE_MAGIC = b"openbell snapshot"
FILE_HEADER = FILE_MAGIC + struct.pack("<I", FORMAT_VERSION)


class SnapshotFormatError(Exception):
    """A snapshot written in a format this version does not read."""

    def __init__(self, path: pathlib.Path, found: str) -> None:
        super().__init__(
            f"snapshot {path} is {found}; this openbell reads snapshot format {FORMAT_VERSION}. An older openbell "
            "wrote this data directory: start this one with a new --data-dir (keep the old directory for the "
            "version that wrote it)"
        )
        self.path = path


def snapshot_files(directory: pathlib.Path) -> list[tuple[int, pathlib.Path]]:
    """(LSN, path) of every snapshot, oldest first. Raises SnapshotFormatError if one is of an older format."""
    old = numbered_files(directory, PREFIX, OLD_SUFFIX)
    if old:
        raise SnapshotFormatError(old[-1][1], "of snapshot format 1 (JSON)")
    return numbered_files(directory, PREFIX, SUFFIX)


def write_snapshot(directory: pathlib.Path, lsn: int, state: dict[str, Any]) -> pathlib.Path:
    directory.mkdir(parents=True, exist_ok=True)
    path = directory / f"{PREFIX}{lsn:020d}{SUFFIX}"
    tmp = path.with_suffix(".tmp")
    with tmp.open("wb") as handle:
        handle.write(FILE_HEADER)
        handle.write(msgspec.json.encode({"lsn": lsn, **state}))
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
        state = load(path, lsn)
        if state is not None:
            return state
    return None


def load(path: pathlib.Path, lsn: int) -> dict[str, Any] | None:
    """The snapshot in `path` (named for record `lsn`), or None (with a warning) if it is unreadable or
    incomplete. Raises SnapshotFormatError if it is of another format."""
    try:
        data = path.read_bytes()
    except OSError as error:
        log.warning("skipping unreadable snapshot %s: %s", path, error)
        return None
    if not data.startswith(FILE_HEADER):
        if data.startswith(FILE_MAGIC) and len(data) >= len(FILE_HEADER):
            (version,) = struct.unpack_from("<I", data, len(FILE_MAGIC))
            raise SnapshotFormatError(path, f"of snapshot format {version}")
        log.warning("skipping snapshot %s: no snapshot header", path)
        return None
    try:
        state = msgspec.json.decode(memoryview(data)[len(FILE_HEADER) :])
    except msgspec.DecodeError as error:
        log.warning("skipping unreadable snapshot %s: %s", path, error)
        return None
    if not isinstance(state, dict) or state.get("lsn") != lsn or "balance" not in state or "markets" not in state:
        log.warning("skipping incomplete snapshot %s", path)
        return None
    return state


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
