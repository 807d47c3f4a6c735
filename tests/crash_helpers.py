"""Abandoning an in-process engine the way a killed process leaves its data directory."""

from __future__ import annotations

import pykka

from openbell.actors.engine import Engine

WAIT = 20.0


def abandon(engine: Engine) -> None:
    """Abandon `engine` as a killed process would, once its journal is on disk: no stop(), no snapshot.

    The actors are stopped first (they run no code of ours when stopped); a snapshot they already
    began is let finish, as if the kill came just after it. Then the journal is flushed and its file
    closed, and the data directory's lock let go, as the kernel does for a dead process.
    """
    persistence = engine.persistence
    assert persistence is not None and persistence.journal is not None
    refs: list[pykka.ActorRef] = [engine._balance_ref, *engine._market_refs.values()]  # type: ignore[list-item]
    for ref in refs:
        try:
            ref.stop(block=True, timeout=WAIT)
        except pykka.ActorDeadError:
            pass
    writer = persistence._writer
    if writer is not None:
        writer.join(WAIT)
        assert not writer.is_alive()
    journal = persistence.journal.journal
    assert journal.flush(WAIT)
    journal.close(WAIT)
    lock = getattr(persistence, "_lock_handle", None)
    if lock is not None:
        lock.close()
