"""A write-ahead journal: length-prefixed, checksummed records in numbered segment files, group-committed.

Record framing: 4-byte little-endian payload length, 4-byte CRC32 of the payload, the payload (UTF-8
JSON). Records are numbered from 1 in append order (the log sequence number, LSN); a segment file is
named after the LSN of its first record, `journal-<lsn:020d>.log`.

A writer thread takes everything appended since its last write, writes it in one go, fsyncs once,
and only then runs the records' `on_durable` callbacks, in order (group commit). So a caller that
replies from `on_durable` never tells a client about something that a crash could take back.

Reading checks every record. A record cut short at the very end of the newest segment (a torn write
at the moment of a crash) is dropped and the file truncated to the last whole record. Any other bad
record stops recovery with `JournalCorrupt`, naming the file and the byte offset.
"""

from __future__ import annotations

import logging
import os
import pathlib
import struct
import threading
import zlib
from collections import deque
from collections.abc import Callable, Iterator

log = logging.getLogger(__name__)

HEADER = struct.Struct("<II")
MAX_RECORD_BYTES = 64 * 1024 * 1024
SEGMENT_PREFIX = "journal-"
SEGMENT_SUFFIX = ".log"

Callback = Callable[[], None]


class JournalCorrupt(Exception):
    def __init__(self, path: pathlib.Path, offset: int, reason: str) -> None:
        super().__init__(f"journal {path} is corrupt at byte {offset}: {reason}")
        self.path = path
        self.offset = offset


def segment_name(first_lsn: int) -> str:
    return f"{SEGMENT_PREFIX}{first_lsn:020d}{SEGMENT_SUFFIX}"


def numbered_files(directory: pathlib.Path, prefix: str, suffix: str) -> list[tuple[int, pathlib.Path]]:
    """(number, path) of every `<prefix><digits><suffix>` file in `directory`, lowest number first."""
    out = []
    for path in directory.glob(f"{prefix}*{suffix}"):
        digits = path.name[len(prefix) : -len(suffix)]
        if digits.isdigit():
            out.append((int(digits), path))
    return sorted(out)


def segments(directory: pathlib.Path) -> list[tuple[int, pathlib.Path]]:
    """(first LSN, path) of every segment, oldest first."""
    return numbered_files(directory, SEGMENT_PREFIX, SEGMENT_SUFFIX)


def read_records(directory: pathlib.Path, after_lsn: int = 0, repair: bool = True) -> Iterator[tuple[int, bytes]]:
    """Yield (lsn, payload) for every record with lsn > after_lsn, checking each one.

    With `repair`, a torn record at the end of the newest segment is cut off the file.
    """
    found = segments(directory)
    for index, (first_lsn, path) in enumerate(found):
        newest = index == len(found) - 1
        if index + 1 < len(found) and found[index + 1][0] <= after_lsn + 1:
            continue  # every record of this segment is at or before after_lsn
        data = path.read_bytes()
        offset = 0
        lsn = first_lsn
        while offset < len(data):
            if offset + HEADER.size > len(data):
                if newest:
                    _truncate(path, offset, repair, "a torn record header")
                    return
                raise JournalCorrupt(path, offset, "record header cut short")
            length, checksum = HEADER.unpack_from(data, offset)
            end = offset + HEADER.size + length
            if length > MAX_RECORD_BYTES or end > len(data):
                if newest:
                    _truncate(path, offset, repair, "a torn record")
                    return
                raise JournalCorrupt(path, offset, f"record length {length} runs past the end of the file")
            payload = data[offset + HEADER.size : end]
            if zlib.crc32(payload) != checksum:
                if newest and end == len(data):
                    _truncate(path, offset, repair, "a torn last record (checksum mismatch)")
                    return
                raise JournalCorrupt(path, offset, "checksum mismatch")
            if lsn > after_lsn:
                yield lsn, payload
            lsn += 1
            offset = end


def _truncate(path: pathlib.Path, offset: int, repair: bool, what: str) -> None:
    log.warning("journal %s ends with %s at byte %d; dropping it", path, what, offset)
    if repair:
        with path.open("r+b") as handle:
            handle.truncate(offset)
            handle.flush()
            os.fsync(handle.fileno())


def last_lsn(directory: pathlib.Path) -> int:
    """The LSN of the last whole record (0 for an empty journal); repairs a torn tail."""
    last = 0
    for record_lsn, _ in read_records(directory, repair=True):
        last = record_lsn
    return last


class Journal:
    """The appending side. `append` is thread-safe and never blocks on I/O."""

    def __init__(
        self,
        directory: pathlib.Path,
        *,
        next_lsn: int,
        fsync: bool = True,
        segment_bytes: int = 64 * 1024 * 1024,
    ) -> None:
        self.directory = directory
        directory.mkdir(parents=True, exist_ok=True)
        self.fsync = fsync
        self.segment_bytes = segment_bytes
        self._next_lsn = next_lsn
        """LSN the next appended record gets."""
        self.durable_lsn = next_lsn - 1
        """Every record up to this one is on disk."""
        self._pending: deque[tuple[bytes, Callback | None]] = deque()
        self._cond = threading.Condition()
        self._closing = False
        self._failed: BaseException | None = None
        self._open_segment(next_lsn, reuse_last=True)
        self._thread = threading.Thread(target=self._run, name="journal-writer", daemon=True)
        self._thread.start()

    @property
    def next_lsn(self) -> int:
        return self._next_lsn

    def _open_segment(self, first_lsn: int, reuse_last: bool = False) -> None:
        existing = segments(self.directory)
        if reuse_last and existing:
            path = existing[-1][1]
        else:
            path = self.directory / segment_name(first_lsn)
        self._file = path.open("ab")
        self._segment_path = path
        self._segment_size = self._file.tell()

    def start_new_segment(self, first_lsn: int) -> None:
        """Continue in a fresh segment starting at `first_lsn` (after a snapshot newer than the journal)."""
        with self._cond:
            self._file.close()
            self._open_segment(first_lsn)

    def append(self, payload: bytes, on_durable: Callback | None = None) -> int:
        """Queue one record; returns its LSN. `on_durable` runs on the writer thread once it is on disk."""
        if self._failed is not None:
            raise RuntimeError(f"journal writer failed: {self._failed}")
        with self._cond:
            lsn = self._next_lsn
            self._next_lsn = lsn + 1
            self._pending.append((payload, on_durable))
            self._cond.notify()
        return lsn

    def after_durable(self, callback: Callback) -> None:
        """Run `callback` once everything appended so far is on disk."""
        with self._cond:
            self._pending.append((b"", callback))
            self._cond.notify()

    def _run(self) -> None:
        while True:
            with self._cond:
                while not self._pending and not self._closing:
                    self._cond.wait()
                if not self._pending and self._closing:
                    return
                batch = list(self._pending)
                self._pending.clear()
            try:
                self._write(batch)
            except BaseException as error:  # a disk that fails is fatal: nothing more may be acknowledged
                log.exception("journal write failed; no further commands will be acknowledged")
                self._failed = error
                return
            for _, callback in batch:
                if callback is not None:
                    try:
                        callback()
                    except Exception:
                        log.exception("journal callback failed")

    def _write(self, batch: list[tuple[bytes, Callback | None]]) -> None:
        chunks = []
        records = 0
        for payload, _ in batch:
            if payload:
                chunks.append(HEADER.pack(len(payload), zlib.crc32(payload)))
                chunks.append(payload)
                records += 1
        if not records:
            return
        data = b"".join(chunks)
        self._file.write(data)
        self._file.flush()
        if self.fsync:
            os.fsync(self._file.fileno())
        self._segment_size += len(data)
        self.durable_lsn += records
        if self._segment_size >= self.segment_bytes:
            self._file.close()
            self._open_segment(self.durable_lsn + 1)

    def flush(self, timeout: float = 30.0) -> bool:
        """Block until everything appended so far is durable."""
        done = threading.Event()
        self.after_durable(done.set)
        return done.wait(timeout)

    def close(self, timeout: float = 30.0) -> None:
        with self._cond:
            self._closing = True
            self._cond.notify()
        self._thread.join(timeout)
        try:
            self._file.close()
        except Exception:
            log.exception("could not close the journal segment")

    def prune(self, before_lsn: int) -> int:
        """Delete whole segments whose every record is before `before_lsn`. Returns how many."""
        found = segments(self.directory)
        removed = 0
        for index, (_, path) in enumerate(found[:-1]):
            next_first = found[index + 1][0]
            if next_first <= before_lsn and path != self._segment_path:
                path.unlink(missing_ok=True)
                removed += 1
        return removed
