"""Listen keys: a user's name for their private streams, valid `LISTEN_KEY_SECONDS` after it was made or last
extended.

`POST /api/v1/listenKey` (signed) makes one, `PUT` extends it, `DELETE` ends it; `/ws?listenKey=<key>` makes the
connection that user's. `ListenKeys` is the store the REST API and the WebSocket server share: `MemoryListenKeys`
in one process, `openbell.cluster.listen_keys.RedisListenKeys` across processes (a Redis key per listen key,
expiring by itself). A key is a random 64-character hex string; a user holds at most `MAX_PER_USER` at once
(making one more forgets the oldest).
"""

from __future__ import annotations

import re
import secrets
import time
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
    """Listen keys of one process (the embedded server). `clock`: seconds, monotonic."""

    def __init__(self, clock: Callable[[], float] = time.monotonic, max_keys: int = 1_000_000) -> None:
        self._clock = clock
        self.max_keys = max_keys
        self._keys: dict[str, tuple[str, float]] = {}
        """listen key -> (user, expires at)."""

    def __len__(self) -> int:
        return len(self._keys)

    async def create(self, user_id: str) -> str:
        self._forget_expired()
        owned = [key for key, (user, _) in self._keys.items() if user == user_id]
        for key in owned[: max(0, len(owned) - MAX_PER_USER + 1)]:
            del self._keys[key]
        if len(self._keys) >= self.max_keys:
            del self._keys[next(iter(self._keys))]
        key = new_listen_key()
        self._keys[key] = (user_id, self._clock() + LISTEN_KEY_SECONDS)
        return key

    async def extend(self, listen_key: str, user_id: str) -> bool:
        if await self.user_of(listen_key) != user_id:
            return False
        self._keys[listen_key] = (user_id, self._clock() + LISTEN_KEY_SECONDS)
        return True

    async def delete(self, listen_key: str, user_id: str) -> bool:
        if await self.user_of(listen_key) != user_id:
            return False
        del self._keys[listen_key]
        return True

    async def user_of(self, listen_key: str) -> str | None:
        found = self._keys.get(listen_key)
        if found is None:
            return None
        if found[1] <= self._clock():
            del self._keys[listen_key]
            return None
        return found[0]

    def _forget_expired(self) -> None:
        now = self._clock()
        for key in [key for key, (_, expires) in self._keys.items() if expires <= now][:1000]:
            del self._keys[key]
