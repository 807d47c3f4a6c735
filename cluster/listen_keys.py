"""Listen keys in Redis, so a key made through any API worker opens private streams on any WebSocket worker.

One Redis string per listen key, `openbell:listen:<key>` = user id, expiring by itself after
`LISTEN_KEY_SECONDS` (extended by `PUT`). Extending and ending compare the owner inside Redis (a Lua script),
so a user can neither extend nor end another user's key. Redis unreachable: `ListenKeyStoreUnavailable` (503).
"""

from __future__ import annotations

from typing import Any

import redis.asyncio as aioredis
from redis.exceptions import RedisError

from openbell.edge.client import EngineUnavailable
from openbell.edge.listen_keys import LISTEN_KEY_SECONDS, new_listen_key

PREFIX = "openbell:listen:"
_IF_OWNER_EXPIRE = (
    "if redis.call('GET', KEYS[1]) == ARGV[1] then return redis.call('EXPIRE', KEYS[1], ARGV[2]) end return 0"
)
_IF_OWNER_DELETE = "if redis.call('GET', KEYS[1]) == ARGV[1] then return redis.call('DEL', KEYS[1]) end return 0"


class RedisListenKeys:
    def __init__(self, redis_url: str, timeout: float = 2.0) -> None:
        self.redis_url = redis_url
        self.timeout = timeout
        self._client: aioredis.Redis | None = None

    def _redis(self) -> aioredis.Redis:
        if self._client is None:
            self._client = aioredis.Redis.from_url(
                self.redis_url, socket_timeout=self.timeout, socket_connect_timeout=self.timeout
            )
        return self._client

    async def _call(self, method: str, *args: Any) -> Any:
        try:
            return await getattr(self._redis(), method)(*args)
        except (RedisError, OSError):
            raise EngineUnavailable("redis is not reachable (listen keys)") from None

    async def create(self, user_id: str) -> str:
        key = new_listen_key()
        await self._call("set", PREFIX + key, user_id, LISTEN_KEY_SECONDS)
        return key

    async def extend(self, listen_key: str, user_id: str) -> bool:
        done = await self._call("eval", _IF_OWNER_EXPIRE, 1, PREFIX + listen_key, user_id, LISTEN_KEY_SECONDS)
        return bool(done)

    async def delete(self, listen_key: str, user_id: str) -> bool:
        return bool(await self._call("eval", _IF_OWNER_DELETE, 1, PREFIX + listen_key, user_id))

    async def user_of(self, listen_key: str) -> str | None:
        value = await self._call("get", PREFIX + listen_key)
        return value.decode() if isinstance(value, bytes) else value

    async def close(self) -> None:
        if self._client is not None:
            await self._client.aclose()
            self._client = None
