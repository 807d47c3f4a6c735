"""The event bus: how the engine's actors publish events to whoever listens.

`publish` is called from actor threads with a batch of events; subscribers are called in that thread
and must return quickly (hand the batch to their own loop or queue). A subscriber that raises is
logged and kept; it never breaks the publishing actor.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable, Sequence
from typing import Protocol

from openbell.core.events import Event

log = logging.getLogger(__name__)

Subscriber = Callable[[Sequence[Event]], None]


class EventBus(Protocol):
    def publish(self, events: Sequence[Event]) -> None: ...


class InProcessEventBus:
    def __init__(self) -> None:
        self._subscribers: tuple[Subscriber, ...] = ()
        self._lock = threading.Lock()

    def subscribe(self, subscriber: Subscriber) -> Callable[[], None]:
        """Add a subscriber; returns the function that removes it."""
        with self._lock:
            self._subscribers = (*self._subscribers, subscriber)

        def unsubscribe() -> None:
            with self._lock:
                self._subscribers = tuple(s for s in self._subscribers if s is not subscriber)

        return unsubscribe

    def on_interrupted(self, listener: Callable[[str], None]) -> Callable[[], None]:
        """In one process no event is ever lost between the engine and its subscribers: nothing to report."""
        return lambda: None

    def publish(self, events: Sequence[Event]) -> None:
        if not events:
            return
        for subscriber in self._subscribers:
            try:
                subscriber(events)
            except Exception:
                log.exception("event subscriber %r failed", subscriber)
