"""A write-ahead journal: checksummed records in numbered segment files, group-committed.

File format (`FORMAT_VERSION`): a segment starts with `FILE_HEADER` (16 bytes of magic, then the format
version as 4 bytes little-endian). Then records, each a 16-byte header and a payload:
`RECORD_MAGIC` (4 bytes), payload length (4 bytes LE), CRC32 of the payload (4 bytes LE), CRC32 of the
twelve bytes before it (4 bytes LE), then the payload. Records are numbered from 1 in append order (the
log sequence number, LSN); a segment file is named after the LSN of its first record,
`journal-<lsn:020d>.log`. A segment without the header, or with another version, is refused with
`JournalFormatError` (an older openbell wrote it), never misread.

A writer thread takes everything appended since its last write, writes it in one go, fsyncs once
(group commit), and only then tells each actor that asked (`append(..., notify=ref)` or `barrier(ref)`)
`Durable(lsn)`: every record up to `lsn` is on disk. Actors hold back replies and events until then, so
no client hears of something that a crash could take back. (`on_durable` callbacks, run on the writer
thread, serve tools and tests.)

Reading checks every record: the header's own checksum (so a flipped bit in a length is caught, not
taken for the end of the file), then the payload's. A bad record in the newest segment is a torn write
from a crash only if nothing valid follows it anywhere in the file (`_valid_record_from` scans for the
next record magic): then it is dropped and the file truncated to the last whole record. Any other bad
record, or any bad record in an older segment, stops recovery with `JournalCorrupt`, naming the file and
the byte offset; the file is left untouched.
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
from typing import Any, Protocol

from openbell.core.types import Record
from openbell.metrics import timed_fsync

log = logging.getLogger(__name__)

FORMAT_VERSION = 3
"""1: no file header, 8-byte record headers without their own checksum, JSON payloads. 2: record headers with
their own checksum, JSON payloads. 3: payloads are msgspec-encoded records (`openbell.durability.records`)."""
FILE_MAGIC = b"openbell journal"
FILE_HEADER = FILE_MAGIC + struct.pack("<I", FORMAT_VERSION)
RECORD_MAGIC = b"\xa7OBR"
HEADER = struct.Struct("<4sIII")
"""magic, payload length, payload CRC32, header CRC32 (of the first 12 bytes)."""
MAX_RECORD_BYTES = 64 * 1024 * 1024
SEGMENT_PREFIX = "journal-"
SEGMENT_SUFFIX = ".log"

Callback = Callable[[], None]


class Durable(Record, frozen=True):
    """Journal -> actor: every record up to `lsn` is on disk."""

    lsn: int


class Notified(Protocol):
    """What the journal tells `Durable` to: a pykka ActorRef."""

    def tell(self, message: Any) -> None: ...


class JournalCorrupt(Exception):
    def __init__(self, path: pathlib.Path, offset: int, reason: str) -> None:
        super().__init__(f"journal {path} is corrupt at byte {offset}: {reason}")
        self.path = path
        self.offset = offset


class JournalFormatError(Exception):
    """A segment written in a format this version does not read."""

    def __init__(self, path: pathlib.Path, found: str) -> None:
        super().__init__(
            f"journal {path} is {found}; this openbell reads journal format {FORMAT_VERSION}. "
            "An older openbell wrote this data directory: start this one with a new --data-dir "
            "(keep the old directory for the version that wrote it)"
        )
        self.path = path


def frame(payload: bytes) -> bytes:
    """One record as it is written: its header, then `payload`."""
    head = struct.pack("<4sII", RECORD_MAGIC, len(payload), zlib.crc32(payload))
    return head + struct.pack("<I", zlib.crc32(head)) + payload


def _record_at(data: bytes, offset: int) -> tuple[int, str | None]:
    """(end, None) for a valid record at `offset`, or (end if known else -1, what is wrong)."""
    if offset + HEADER.size > len(data):
        return -1, "record header cut short"
    magic, length, checksum, header_checksum = HEADER.unpack_from(data, offset)
    if magic != RECORD_MAGIC or zlib.crc32(data[offset : offset + 12]) != header_checksum:
        return -1, "record header checksum mismatch"
    end = offset + HEADER.size + length
    if length > MAX_RECORD_BYTES or end > len(data):
        return -1, f"record length {length} runs past the end of the file"
    if zlib.crc32(data[offset + HEADER.size : end]) != checksum:
        return end, "checksum mismatch"
    return end, None


def _valid_record_from(data: bytes, offset: int) -> int | None:
    """The offset of the first valid record at or after `offset`, if any."""
    position = data.find(RECORD_MAGIC, offset)
    while position != -1:
        if _record_at(data, position)[1] is None:
            return position
        position = data.find(RECORD_MAGIC, position + 1)
    return None


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


def check_format(path: pathlib.Path, data: bytes, newest: bool) -> bool:
    """Whether `data` (a whole segment) starts with this format's header. False only for the newest segment
    cut short inside its header (a crash just after creating it: it holds no record). Raises otherwise."""
    if data.startswith(FILE_HEADER):
        return True
    if len(data) < len(FILE_HEADER) and FILE_HEADER.startswith(data):
        if newest:
            return False
        raise JournalCorrupt(path, 0, "file header cut short")
    if data.startswith(FILE_MAGIC) and len(data) >= len(FILE_HEADER):
        (version,) = struct.unpack_from("<I", data, len(FILE_MAGIC))
        raise JournalFormatError(path, f"journal format {version}")
    raise JournalFormatError(path, "of journal format 1 (no file header)")


def read_records(directory: pathlib.Path, after_lsn: int = 0, repair: bool = True) -> Iterator[tuple[int, bytes]]:
    """Yield (lsn, payload) for every record with lsn > after_lsn, checking each one.

    With `repair`, a torn tail of the newest segment is cut off the file.
    """
    found = segments(directory)
    for index, (first_lsn, path) in enumerate(found):
        newest = index == len(found) - 1
        if index + 1 < len(found) and found[index + 1][0] <= after_lsn + 1:
            continue  # every record of this segment is at or before after_lsn
        data = path.read_bytes()
        if not check_format(path, data, newest):
            _truncate(path, 0, repair, "a torn file header")
            return
        offset = len(FILE_HEADER)
        lsn = first_lsn
        while offset < len(data):
            end, problem = _record_at(data, offset)
            if problem is not None:
                if newest and _valid_record_from(data, offset + 1) is None:
                    _truncate(path, offset, repair, f"a torn last record ({problem})")
                    return
                raise JournalCorrupt(path, offset, problem)
            if lsn > after_lsn:
                yield lsn, data[offset + HEADER.size : end]
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
        self._pending: deque[tuple[bytes, Callback | None, Notified | None]] = deque()
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
        if self._file.tell() == 0:
            self._file.write(FILE_HEADER)
            self._file.flush()
        self._segment_path = path
        self._segment_size = self._file.tell()

    def start_new_segment(self, first_lsn: int) -> None:
        """Continue in a fresh segment starting at `first_lsn` (after a snapshot newer than the journal)."""
        with self._cond:
            self._file.close()
            self._open_segment(first_lsn)

    def append(self, payload: bytes, on_durable: Callback | None = None, notify: Notified | None = None) -> int:
        """Queue one record; returns its LSN. Once it is on disk, `notify` is told `Durable` (and `on_durable`
        runs on the writer thread)."""
        if self._failed is not None:
            raise RuntimeError(f"journal writer failed: {self._failed}")
        with self._cond:
            lsn = self._next_lsn
            self._next_lsn = lsn + 1
            self._pending.append((payload, on_durable, notify))
            self._cond.notify()
        return lsn

    def barrier(self, notify: Notified) -> int | None:
        """The LSN of the last record appended, if it is not on disk yet (then `notify` is told `Durable` once
        it is); None when everything appended so far is durable."""
        with self._cond:
            last = self._next_lsn - 1
            if last <= self.durable_lsn and not self._pending:
                return None
            self._pending.append((b"", None, notify))
            self._cond.notify()
        return last

    def after_durable(self, callback: Callback) -> None:
        """Run `callback` once everything appended so far is on disk."""
        with self._cond:
            self._pending.append((b"", callback, None))
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
            durable = Durable(self.durable_lsn)
            told: list[Notified] = []
            for _, callback, notify in batch:
                if notify is not None and not any(notify is other for other in told):
                    told.append(notify)
                    try:
                        notify.tell(durable)
                    except Exception:
                        log.exception("could not tell %r that the journal is durable", notify)
                if callback is not None:
                    try:
                        callback()
                    except Exception:
                        log.exception("journal callback failed")

    def _write(self, batch: list[tuple[bytes, Callback | None, Notified | None]]) -> None:
        chunks = []
        records = 0
        for payload, _, _ in batch:
            if payload:
                chunks.append(frame(payload))
                records += 1
        if not records:
            return
        data = b"".join(chunks)
        self._file.write(data)
        self._file.flush()
        if self.fsync:
            timed_fsync(os.fsync, self._file.fileno())
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
