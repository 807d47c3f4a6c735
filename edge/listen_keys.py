"""Listen keys: a user's name for their private streams, valid `LISTEN_KEY_SECONDS` after it was made or last
extended.

`POST /api/v1/listenKey` (signed) makes one, `PUT` extends it, `DELETE` ends it; `/ws?listenKey=<key>` makes the
connection that user's. `ListenKeys` is the store the REST API and the WebSocket server share: `MemoryListenKeys`
in one process, `openbell.cluster.listen_keys.RedisListenKeys` across processes (a Redis key per listen key,
expiring by itself). A key is a random 64-character hex string; a user holds at most `MAX_PER_USER` at once
(making one more ends the one made or extended longest ago).
"""

from __future__ import annotations

import re
import secrets
import time
from collections import deque
from collections.abc import Callable
from typing import Protocol

LISTEN_KEY_SECONDS = 3600
MAX_PER_USER = 16
LISTEN_KEY = re.compile(r"^[0-9a-f]{64}\Z")


def new_listen_key() -> str:
    return secrets.token_hex(32)


class ListenKeys(Protocol):
    async def create(self, user_id: str) -> str:
        """A new listen key of `user_id`."""
        ...

    async def extend(self, listen_key: str, user_id: str) -> bool:
        """Valid for another LISTEN_KEY_SECONDS from now; False if it is not a live key of `user_id`."""
        ...

    async def delete(self, listen_key: str, user_id: str) -> bool:
        """Ended; False if it was not a live key of `user_id`."""
        ...

    async def user_of(self, listen_key: str) -> str | None:
        """The user of a live listen key, or None."""
        ...


class MemoryListenKeys:
    """Listen keys of one process (the embedded server). `clock`: seconds, monotonic.

    Every operation costs O(1) amortized whatever the number of keys: the keys of each user are indexed (at most
    MAX_PER_USER), and expiries wait in a queue in the order they were set (a key's lifetime is always
    LISTEN_KEY_SECONDS from its last create or extend, so that order is their order in time)."""

    def __init__(self, clock: Callable[[], float] = time.monotonic, max_keys: int = 1_000_000) -> None:
        self._clock = clock
        self.max_keys = max_keys
        self._keys: dict[str, tuple[str, float]] = {}
        """listen key -> (user, expires at); in the order they were made."""
        self._by_user: dict[str, dict[str, None]] = {}
        """user -> that user's keys, oldest first."""
        self._expiries: deque[tuple[float, str]] = deque()
        """(expires at, listen key) as set, oldest first; an entry whose key was extended or ended since is stale."""

    def __len__(self) -> int:
        return len(self._keys)

    async def create(self, user_id: str) -> str:
        self._forget_expired()
        owned = self._by_user.get(user_id)
        while owned and len(owned) >= MAX_PER_USER:
            self._drop(next(iter(owned)))
        while len(self._keys) >= self.max_keys:
            self._drop(next(iter(self._keys)))
        key = new_listen_key()
        self._set(key, user_id)
        return key

    async def extend(self, listen_key: str, user_id: str) -> bool:
        if await self.user_of(listen_key) != user_id:
            return False
        self._set(listen_key, user_id)
        return True

    async def delete(self, listen_key: str, user_id: str) -> bool:
        if await self.user_of(listen_key) != user_id:
            return False
        self._drop(listen_key)
        return True

    async def user_of(self, listen_key: str) -> str | None:
        found = self._keys.get(listen_key)
        if found is None:
            return None
        if found[1] <= self._clock():
            self._drop(listen_key)
            return None
        return found[0]

    def _set(self, key: str, user_id: str) -> None:
        expires = self._clock() + LISTEN_KEY_SECONDS
        self._keys[key] = (user_id, expires)
        owned = self._by_user.setdefault(user_id, {})
        owned.pop(key, None)  # to the end: a user's keys in the order they were made or last extended
        owned[key] = None
        self._expiries.append((expires, key))

    def _drop(self, key: str) -> None:
        user_id, _ = self._keys.pop(key)
        owned = self._by_user[user_id]
        del owned[key]
        if not owned:
            del self._by_user[user_id]

    def _forget_expired(self) -> None:
        now = self._clock()
        expiries = self._expiries
        while expiries and expiries[0][0] <= now:
            expires, key = expiries.popleft()
            found = self._keys.get(key)
            if found is not None and found[1] == expires:  # not extended since: expired
                self._drop(key)
        if len(expiries) > 4 * len(self._keys) + 1024:  # mostly stale entries (extends): rebuild
            self._expiries = deque(sorted((expires, key) for key, (_, expires) in self._keys.items()))
