"""The write-ahead journal on its own: numbering, group commit, segments, torn tails, corruption, pruning.

Each test writes a journal into its own temporary directory through the real `Journal` (its real writer
thread and real files) and reads it back with `read_records`. Only `os.fsync` is wrapped, to count the
fsyncs and to know how much of the file was on disk when each `on_durable` callback ran.
"""

from __future__ import annotations

import os
import pathlib
import struct
import threading
import time
import zlib
from collections.abc import Iterator

import pytest

from openbell.durability import journal as journal_module
from openbell.durability.journal import (
    FILE_HEADER,
    HEADER,
    Journal,
    JournalCorrupt,
    JournalFormatError,
    frame,
    last_lsn,
    read_records,
    segment_name,
    segments,
)

WAIT = 30.0
"""Seconds any single wait may take (the machine is shared; a healthy run needs far less)."""


def payload(number: int) -> bytes:
    """A record's payload; all the same length, so a segment rolls after a known number of records."""
    return f'["D","user-{number:06d}","INR","txn-{number:06d}"]'.encode()


def record_bytes(data: bytes) -> bytes:
    return frame(data)


def record_offset(number: int) -> int:
    """Where record `number` (1-based, every payload from `payload`) starts in a segment that starts at 1."""
    return len(FILE_HEADER) + sum(len(record_bytes(payload(n))) for n in range(1, number))


@pytest.fixture
def journal_dir(tmp_path: pathlib.Path) -> pathlib.Path:
    return tmp_path / "journal"


@pytest.fixture
def open_journals() -> Iterator[list[Journal]]:
    """Journals a test opened; closed in teardown so no writer thread outlives its test."""
    opened: list[Journal] = []
    yield opened
    for journal in opened:
        journal.close(timeout=WAIT)


def write_records(directory: pathlib.Path, count: int, opened: list[Journal], **options: object) -> Journal:
    journal = Journal(directory, next_lsn=1, **options)  # type: ignore[arg-type]
    opened.append(journal)
    for number in range(1, count + 1):
        journal.append(payload(number))
    assert journal.flush(WAIT)
    return journal


def only_segment(directory: pathlib.Path) -> pathlib.Path:
    found = segments(directory)
    assert len(found) == 1, found
    return found[0][1]


# --------------------------------------------------------------------------------------------- round trip
def test_appended_records_read_back_in_order_with_lsns_from_one(
    journal_dir: pathlib.Path, open_journals: list[Journal]
) -> None:
    journal = Journal(journal_dir, next_lsn=1)
    open_journals.append(journal)

    lsns = [journal.append(payload(number)) for number in range(1, 11)]
    assert journal.flush(WAIT)

    assert lsns == list(range(1, 11))
    assert journal.durable_lsn == 10
    assert journal.next_lsn == 11
    assert list(read_records(journal_dir)) == [(number, payload(number)) for number in range(1, 11)]
    assert list(read_records(journal_dir, after_lsn=7)) == [(number, payload(number)) for number in (8, 9, 10)]
    assert last_lsn(journal_dir) == 10
    assert only_segment(journal_dir).name == segment_name(1)


def test_a_reopened_journal_continues_the_numbering_in_the_same_segment(
    journal_dir: pathlib.Path, open_journals: list[Journal]
) -> None:
    first = write_records(journal_dir, 3, open_journals)
    first.close(WAIT)

    second = Journal(journal_dir, next_lsn=last_lsn(journal_dir) + 1)
    open_journals.append(second)
    lsn = second.append(payload(4))
    assert second.flush(WAIT)

    assert lsn == 4
    assert [number for number, _ in read_records(journal_dir)] == [1, 2, 3, 4]
    assert only_segment(journal_dir).name == segment_name(1)


# --------------------------------------------------------------------------------------------- group commit
def test_group_commit_writes_many_appends_with_few_fsyncs_and_calls_back_in_order_after_the_fsync(
    journal_dir: pathlib.Path, open_journals: list[Journal], monkeypatch: pytest.MonkeyPatch
) -> None:
    real_fsync = os.fsync
    synced_bytes: list[int] = []
    """File size at each fsync, in call order."""

    def slow_counting_fsync(fd: int) -> None:
        time.sleep(0.02)  # a slow disk: appends pile up while the writer waits for it
        real_fsync(fd)
        synced_bytes.append(os.fstat(fd).st_size)

    monkeypatch.setattr(journal_module.os, "fsync", slow_counting_fsync)
    journal = Journal(journal_dir, next_lsn=1, fsync=True)
    open_journals.append(journal)
    count = 300
    record_ends: list[int] = []
    end = len(FILE_HEADER)
    for number in range(1, count + 1):
        end += len(record_bytes(payload(number)))
        record_ends.append(end)
    seen: list[tuple[int, int, int]] = []
    """(record number, durable_lsn, bytes fsynced) as each callback ran."""
    all_done = threading.Event()

    def on_durable(number: int) -> None:
        seen.append((number, journal.durable_lsn, max(synced_bytes, default=0)))
        if number == count:
            all_done.set()

    lsns = [journal.append(payload(n), lambda n=n: on_durable(n)) for n in range(1, count + 1)]  # type: ignore[misc]
    assert all_done.wait(WAIT)

    assert lsns == list(range(1, count + 1))
    assert [number for number, _, _ in seen] == list(range(1, count + 1)), "callbacks ran out of order"
    for number, durable_lsn, fsynced in seen:
        assert durable_lsn >= number, f"callback of record {number} ran before it was durable"
        assert fsynced >= record_ends[number - 1], f"callback of record {number} ran before its fsync"
    assert 1 <= len(synced_bytes) <= count // 10, f"{len(synced_bytes)} fsyncs for {count} appends"
    assert list(read_records(journal_dir)) == [(n, payload(n)) for n in range(1, count + 1)]


def test_durable_lsn_never_runs_ahead_of_what_the_file_holds(
    journal_dir: pathlib.Path, open_journals: list[Journal]
) -> None:
    journal = Journal(journal_dir, next_lsn=1, fsync=False)
    open_journals.append(journal)
    checks: list[tuple[int, int]] = []
    done = threading.Event()
    segment = journal_dir / segment_name(1)

    def check() -> None:
        on_disk = sum(1 for _ in read_records(journal_dir, repair=False))
        checks.append((journal.durable_lsn, on_disk))
        if len(checks) == 20:
            done.set()

    for number in range(1, 201):
        journal.append(payload(number), check if number % 10 == 0 else None)
    assert done.wait(WAIT)

    assert segment.exists()
    assert all(durable <= on_disk for durable, on_disk in checks), checks
    assert [durable for durable, _ in checks] == sorted(durable for durable, _ in checks)


def test_after_durable_runs_once_everything_before_it_is_durable(
    journal_dir: pathlib.Path, open_journals: list[Journal]
) -> None:
    journal = Journal(journal_dir, next_lsn=1, fsync=False)
    open_journals.append(journal)
    order: list[str] = []
    done = threading.Event()

    journal.append(payload(1), lambda: order.append("record 1"))
    journal.after_durable(lambda: order.append(f"barrier at {journal.durable_lsn}"))

    def last() -> None:
        order.append("record 2")
        done.set()

    journal.append(payload(2), last)
    assert done.wait(WAIT)

    assert order[0] == "record 1"
    assert order[1].startswith("barrier at ") and int(order[1].split()[-1]) >= 1
    assert order[2] == "record 2"


# --------------------------------------------------------------------------------------------- segments
def test_small_segments_roll_over_and_read_back_as_one_journal(
    journal_dir: pathlib.Path, open_journals: list[Journal]
) -> None:
    journal = Journal(journal_dir, next_lsn=1, fsync=False, segment_bytes=150)
    open_journals.append(journal)

    for number in range(1, 21):
        journal.append(payload(number))
        assert journal.flush(WAIT)  # one record per write: the segment rolls when it passes 150 bytes

    found = segments(journal_dir)
    assert len(found) >= 5, found
    assert found[0][0] == 1
    assert [path.name for first, path in found] == [segment_name(first) for first, _ in found]
    assert list(read_records(journal_dir)) == [(n, payload(n)) for n in range(1, 21)]
    for after in (0, 1, found[2][0] - 1, found[2][0], 19, 20):
        assert [n for n, _ in read_records(journal_dir, after_lsn=after)] == list(range(after + 1, 21))


def test_a_journal_reopened_after_rollover_appends_to_the_newest_segment(
    journal_dir: pathlib.Path, open_journals: list[Journal]
) -> None:
    journal = Journal(journal_dir, next_lsn=1, fsync=False, segment_bytes=150)
    open_journals.append(journal)
    for number in range(1, 11):
        journal.append(payload(number))
        assert journal.flush(WAIT)
    journal.close(WAIT)
    before = segments(journal_dir)

    reopened = Journal(journal_dir, next_lsn=last_lsn(journal_dir) + 1, fsync=False, segment_bytes=150)
    open_journals.append(reopened)
    assert reopened.append(payload(11)) == 11
    assert reopened.flush(WAIT)

    assert segments(journal_dir)[: len(before)] == before
    assert list(read_records(journal_dir)) == [(n, payload(n)) for n in range(1, 12)]


# --------------------------------------------------------------------------------------------- torn tails
def test_a_last_record_cut_short_is_dropped_and_the_file_repaired(
    journal_dir: pathlib.Path, open_journals: list[Journal]
) -> None:
    write_records(journal_dir, 5, open_journals).close(WAIT)
    path = only_segment(journal_dir)
    whole = path.stat().st_size
    four_records = whole - len(record_bytes(payload(5)))
    with path.open("r+b") as handle:
        handle.truncate(whole - 3)

    assert [n for n, _ in read_records(journal_dir, repair=False)] == [1, 2, 3, 4]
    assert path.stat().st_size == whole - 3, "reading without repair must not touch the file"
    assert list(read_records(journal_dir)) == [(n, payload(n)) for n in range(1, 5)]

    assert path.stat().st_size == four_records
    reopened = Journal(journal_dir, next_lsn=last_lsn(journal_dir) + 1)
    open_journals.append(reopened)
    assert reopened.append(b'"after the repair"') == 5
    assert reopened.flush(WAIT)
    assert list(read_records(journal_dir))[-1] == (5, b'"after the repair"')


@pytest.mark.parametrize(
    "garbage",
    [
        pytest.param(b"\x07\x00", id="half-a-header"),
        pytest.param(b"\xff" * 24, id="absurd-length"),
        pytest.param(frame(b"abcdef")[:-1] + b"g", id="whole-record-bad-checksum"),
        pytest.param(frame(b"a" * 100)[:30], id="length-past-the-end"),
        pytest.param(b"\x00" * 4096, id="zeroed-pages"),
    ],
)
def test_garbage_after_the_last_record_is_dropped_and_the_file_repaired(
    journal_dir: pathlib.Path, open_journals: list[Journal], garbage: bytes
) -> None:
    write_records(journal_dir, 5, open_journals).close(WAIT)
    path = only_segment(journal_dir)
    whole = path.stat().st_size
    with path.open("ab") as handle:
        handle.write(garbage)

    assert last_lsn(journal_dir) == 5

    assert path.stat().st_size == whole
    assert list(read_records(journal_dir)) == [(n, payload(n)) for n in range(1, 6)]


def test_a_torn_record_in_an_older_segment_is_corruption_not_a_tail(
    journal_dir: pathlib.Path, open_journals: list[Journal]
) -> None:
    journal = Journal(journal_dir, next_lsn=1, fsync=False, segment_bytes=150)
    open_journals.append(journal)
    for number in range(1, 11):
        journal.append(payload(number))
        assert journal.flush(WAIT)
    journal.close(WAIT)
    oldest = segments(journal_dir)[0][1]
    size = oldest.stat().st_size
    with oldest.open("r+b") as handle:
        handle.truncate(size - 2)

    with pytest.raises(JournalCorrupt) as caught:
        list(read_records(journal_dir))

    assert str(oldest) in str(caught.value)
    assert oldest.stat().st_size == size - 2, "an older segment must never be cut"


# --------------------------------------------------------------------------------------------- corruption
def test_a_corrupt_record_before_the_last_raises_journal_corrupt_naming_file_and_offset(
    journal_dir: pathlib.Path, open_journals: list[Journal]
) -> None:
    write_records(journal_dir, 5, open_journals).close(WAIT)
    path = only_segment(journal_dir)
    third_record_at = record_offset(3)
    data = bytearray(path.read_bytes())
    flipped = third_record_at + HEADER.size + 5  # a byte inside record 3's payload
    data[flipped] ^= 0x20
    path.write_bytes(bytes(data))
    size = path.stat().st_size

    with pytest.raises(JournalCorrupt) as caught:
        list(read_records(journal_dir))

    message = str(caught.value)
    assert str(path) in message
    assert f"byte {third_record_at}" in message
    assert caught.value.path == path
    assert caught.value.offset == third_record_at
    assert path.stat().st_size == size, "a corrupt journal must not be repaired away"
    with pytest.raises(JournalCorrupt):
        last_lsn(journal_dir)


def test_records_before_a_corrupt_one_are_still_yielded_in_order(
    journal_dir: pathlib.Path, open_journals: list[Journal]
) -> None:
    write_records(journal_dir, 5, open_journals).close(WAIT)
    path = only_segment(journal_dir)
    fourth_record_at = record_offset(4)
    data = bytearray(path.read_bytes())
    data[fourth_record_at + HEADER.size] ^= 0x01
    path.write_bytes(bytes(data))

    read: list[int] = []
    with pytest.raises(JournalCorrupt):
        for number, _ in read_records(journal_dir):
            read.append(number)

    assert read == [1, 2, 3]


@pytest.mark.parametrize("byte", range(HEADER.size))
def test_a_flipped_bit_in_any_header_byte_of_a_middle_record_stops_recovery_naming_file_and_offset(
    journal_dir: pathlib.Path, open_journals: list[Journal], byte: int
) -> None:
    """A length that now runs past the end of the file is not a torn tail when valid records follow it."""
    write_records(journal_dir, 40, open_journals).close(WAIT)
    path = only_segment(journal_dir)
    middle = record_offset(20)
    data = bytearray(path.read_bytes())
    data[middle + byte] ^= 0x40
    path.write_bytes(bytes(data))
    size = path.stat().st_size

    with pytest.raises(JournalCorrupt) as caught:
        list(read_records(journal_dir))

    assert caught.value.path == path
    assert caught.value.offset == middle
    assert f"{path} is corrupt at byte {middle}" in str(caught.value)
    assert path.stat().st_size == size, "a corrupt journal must not be cut"


@pytest.mark.parametrize("kept", [1, 7, HEADER.size - 1, HEADER.size, HEADER.size + 3])
def test_the_last_record_cut_at_any_point_is_a_torn_tail(
    journal_dir: pathlib.Path, open_journals: list[Journal], kept: int
) -> None:
    write_records(journal_dir, 6, open_journals).close(WAIT)
    path = only_segment(journal_dir)
    with path.open("r+b") as handle:
        handle.truncate(record_offset(6) + kept)

    assert [n for n, _ in read_records(journal_dir)] == [1, 2, 3, 4, 5]
    assert path.stat().st_size == record_offset(6)


def test_a_segment_of_the_older_format_is_refused_with_a_message(journal_dir: pathlib.Path) -> None:
    journal_dir.mkdir()
    old = journal_dir / segment_name(1)
    body = b'["B",[]]'
    old.write_bytes(struct.pack("<II", len(body), zlib.crc32(body)) + body)

    with pytest.raises(JournalFormatError, match=r"journal format 1.*new --data-dir"):
        list(read_records(journal_dir))
    assert old.read_bytes().endswith(body), "an old journal must not be touched"


def test_a_newest_segment_cut_inside_its_file_header_holds_no_record(
    journal_dir: pathlib.Path, open_journals: list[Journal]
) -> None:
    journal = Journal(journal_dir, next_lsn=1, fsync=False, segment_bytes=150)
    open_journals.append(journal)
    for number in range(1, 4):
        journal.append(payload(number))
        assert journal.flush(WAIT)
    journal.close(WAIT)
    newest = segments(journal_dir)[-1][1]
    newest.write_bytes(FILE_HEADER[:5])

    records = [n for n, _ in read_records(journal_dir)]

    assert records == list(range(1, newest_first(journal_dir)))
    assert newest.stat().st_size == 0


def newest_first(directory: pathlib.Path) -> int:
    return segments(directory)[-1][0]


# --------------------------------------------------------------------------------------------- prune
def test_prune_removes_only_segments_wholly_before_the_given_lsn(
    journal_dir: pathlib.Path, open_journals: list[Journal]
) -> None:
    three_records = len(FILE_HEADER) + 3 * len(record_bytes(payload(1)))
    journal = Journal(journal_dir, next_lsn=1, fsync=False, segment_bytes=three_records)
    open_journals.append(journal)
    for number in range(1, 13):
        journal.append(payload(number))
        assert journal.flush(WAIT)
    assert [first for first, _ in segments(journal_dir)] == [1, 4, 7, 10, 13]

    assert journal.prune(6) == 1  # segment 4 holds record 6: it stays
    assert [first for first, _ in segments(journal_dir)] == [4, 7, 10, 13]
    assert journal.prune(7) == 1
    assert [first for first, _ in segments(journal_dir)] == [7, 10, 13]
    assert journal.prune(7) == 0
    assert journal.prune(1_000) == 2  # the segment being written is never removed
    assert [first for first, _ in segments(journal_dir)] == [13]

    assert list(read_records(journal_dir, after_lsn=12)) == []
    assert journal.append(payload(13)) == 13
    assert journal.flush(WAIT)
    assert list(read_records(journal_dir, after_lsn=12)) == [(13, payload(13))]
