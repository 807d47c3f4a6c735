"""The history writer in a child process: the serving process only encodes events and hands them to a pipe.

Storing history costs the process that holds it about 13 us of CPU per order in SQLite (binding and inserting
some four rows), and on one interpreter that is time the engine and the HTTP server do not get. So by default
the history database is written by a child process (`HistoryProcess`), which runs the same `HistoryWriter`
(batching, retries, setting aside what the database refuses) on whatever core is free. The serving process
pays for encoding the events (about 0.7 us per order) and a pipe write per batch, on a sender thread.

Interface, the same as `HistoryWriter`'s where the engine uses it: `on_events` (a bus subscriber: appends,
never blocks), `flush(timeout)` (everything handed over so far is stored; history queries and snapshots wait
for it), `close()`, `store` (a store for reading, in this process), `backlog`, `failures`, `set_aside`.

Faults: if the child dies, the events it held are lost to the database; `flush` then answers False for good,
so no snapshot is taken (the journal keeps everything) until the server restarts and its recovery hands the
replayed events to a new child (stores are idempotent). This is logged as an error.
"""

from __future__ import annotations

import logging
import multiprocessing
import pathlib
import threading
import time
from collections import deque
from collections.abc import Sequence
from multiprocessing.connection import Connection
from typing import Any

from openbell.core.events import Event
from openbell.core.wire import WireError, pack, unpack
from openbell.history.store import HistoryStore

log = logging.getLogger(__name__)

MAX_EVENTS_PER_MESSAGE = 20_000


class HistoryUnavailable(RuntimeError):
    """The history process could not open its database (the message says why)."""


START_SECONDS = 30.0


class HistoryProcess:
    def __init__(self, url: str, rejected_path: pathlib.Path | None = None) -> None:
        self.url = url
        context = multiprocessing.get_context("spawn")
        self._conn, child_end = context.Pipe()
        self._process = context.Process(
            target=_child,
            args=(url, str(rejected_path) if rejected_path is not None else None, child_end),
            name="openbell-history",
            daemon=True,
        )
        self._process.start()
        child_end.close()
        self._buffer: deque[Event] = deque()
        self._cond = threading.Condition()
        self._sent_marker = 0
        self._done_marker = 0
        self._closing = False
        self._dead = False
        self._store: HistoryStore | None = None
        self.failures = 0
        self.set_aside = 0
        self.written = 0
        self._ready = threading.Event()
        self._start_error: str | None = None
        self._receiver = threading.Thread(target=self._receive, name="history-receiver", daemon=True)
        self._receiver.start()
        if not self._ready.wait(START_SECONDS) or self._start_error is not None:
            self._process.kill()
            raise HistoryUnavailable(self._start_error or f"the history process did not start in {START_SECONDS:.0f} s")
        self._sender = threading.Thread(target=self._send, name="history-sender", daemon=True)
        self._sender.start()

    # ----------------------------------------------------------------- the writer's interface
    def on_events(self, events: Sequence[Event]) -> None:
        """A bus subscriber: cheap, never blocks (deque.extend is atomic)."""
        was_empty = not self._buffer
        self._buffer.extend(events)
        if was_empty:
            with self._cond:
                self._cond.notify_all()

    @property
    def backlog(self) -> int:
        return len(self._buffer)

    @property
    def store(self) -> HistoryStore:
        """A store for reading, in this process (the child writes; SQLite in WAL mode lets both in)."""
        if self._store is None:
            self._store = HistoryStore(self.url)
        return self._store

    def flush(self, timeout: float = 30.0) -> bool:
        """Wait until every event handed over so far is stored (or set aside) by the child."""
        deadline = time.monotonic() + timeout
        with self._cond:
            self._sent_marker += 1
            target = self._sent_marker
            self._cond.notify_all()
            while self._done_marker < target:
                remaining = deadline - time.monotonic()
                if self._dead or remaining <= 0:
                    return False
                self._cond.wait(min(remaining, 0.2))
        return True

    def close(self, timeout: float = 10.0) -> None:
        if not self.flush(timeout) and not self._dead:
            log.error("the history process did not store everything within %.0f s; journal replay restores it", timeout)
        with self._cond:
            self._closing = True
            self._cond.notify_all()
        self._sender.join(timeout)
        self._process.join(timeout)
        if self._process.is_alive():
            self._process.kill()
        if self._store is not None:
            self._store.close()

    # ----------------------------------------------------------------- threads
    def _send(self) -> None:
        """Hand the buffered events to the child, encoded, then any flush marker asked for meanwhile."""
        marker_sent = 0
        while True:
            with self._cond:
                while not self._buffer and marker_sent == self._sent_marker and not self._closing:
                    self._cond.wait(1.0)
                closing, marker = self._closing, self._sent_marker
            try:
                while self._buffer:
                    batch: list[Event] = []
                    while self._buffer and len(batch) < MAX_EVENTS_PER_MESSAGE:
                        batch.append(self._buffer.popleft())
                    self._conn.send_bytes(b"E" + pack(tuple(batch)))
                if marker != marker_sent:
                    self._conn.send_bytes(b"F%d" % marker)
                    marker_sent = marker
                if closing and not self._buffer:
                    self._conn.send_bytes(b"C")
                    return
            except (OSError, ValueError) as error:
                self._died(f"could not hand events to the history process: {error}")
                return

    def _receive(self) -> None:
        while True:
            try:
                message = self._conn.recv_bytes()
            except (EOFError, OSError):
                if not self._closing:
                    self._died("the history process ended")
                self._ready.set()
                return
            kind, body = message[:1], message[1:]
            if kind == b"R":
                self._ready.set()
            elif kind == b"X":
                self._start_error = body.decode(errors="replace")
                self._ready.set()
            elif kind == b"F":
                written, failures, set_aside, marker = (int(part) for part in body.split(b","))
                with self._cond:
                    self.written, self.failures, self.set_aside = written, failures, set_aside
                    self._done_marker = max(self._done_marker, marker)
                    self._cond.notify_all()

    def _died(self, why: str) -> None:
        with self._cond:
            if self._dead:
                return
            self._dead = True
            self._cond.notify_all()
        log.error(
            "%s: history writes stop, and no snapshot is taken, until the server restarts (its recovery refills "
            "the history database from the journal)",
            why,
        )


def _child(url: str, rejected_path: str | None, conn: Connection) -> None:
    """The child process: a HistoryWriter fed from the pipe."""
    from openbell.history.writer import HistoryWriter

    logging.basicConfig(
        level=logging.INFO, format="%(asctime)s %(levelname)s [history %(process)d] %(name)s: %(message)s"
    )
    try:
        writer = HistoryWriter(HistoryStore(url), rejected_path=pathlib.Path(rejected_path) if rejected_path else None)
    except Exception as error:
        conn.send_bytes(b"X" + f"the history database cannot be opened: {error}".encode())
        return
    conn.send_bytes(b"R")
    kinds: Any = tuple[Event, ...]
    while True:
        try:
            message = conn.recv_bytes()
        except (EOFError, OSError):
            break  # the serving process is gone: store what is held and end
        kind, body = message[:1], message[1:]
        if kind == b"E":
            try:
                writer.on_events(unpack(body, kinds))
            except WireError as error:
                logging.getLogger(__name__).error("history process: a batch did not decode: %s", error)
        elif kind == b"F":
            writer.flush(timeout=3600.0)
            conn.send_bytes(b"F%d,%d,%d,%d" % (writer.written, writer.failures, writer.set_aside, int(body)))
        elif kind == b"C":
            break
    writer.close()
