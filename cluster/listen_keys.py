"""Listen keys in Redis, so a key made through any API worker opens private streams on any WebSocket worker.

One Redis string per listen key, `openbell:listen:<key>` = user id, expiring by itself after
`LISTEN_KEY_SECONDS` (extended by `PUT`), and per user a sorted set `openbell:listen-user:<user>` of their keys
scored by expiry, so a user holds at most `MAX_PER_USER` (making one more ends the one extended longest ago).
Making, extending and ending run as Lua scripts that compare the owner inside Redis, so a user can neither
extend nor end another user's key. Redis unreachable: `EngineUnavailable` (503).
"""

from __future__ import annotations

import time
from typing import Any

import redis.asyncio as aioredis
from redis.exceptions import RedisError

from openbell.edge.client import EngineUnavailable
from openbell.edge.listen_keys import LISTEN_KEY_SECONDS, MAX_PER_USER, new_listen_key

PREFIX = "openbell:listen:"
USER_PREFIX = "openbell:listen-user:"
# Scores are expiry times in ms, kept strictly increasing in the order keys were made or extended (a key made
# in the same millisecond as the last scores one more), so the lowest score is the key extended longest ago.
_NEXT_SCORE = """
local function next_score(set, expires)
  local top = redis.call('ZRANGE', set, -1, -1, 'WITHSCORES')
  if top[2] and tonumber(top[2]) >= expires then return tonumber(top[2]) + 1 end
  return expires
end
"""
# KEYS: the listen key's string, the user's set. ARGV: user, seconds, now (ms), key, max per user.
_CREATE = _NEXT_SCORE + """
local expires = next_score(KEYS[2], tonumber(ARGV[3]) + tonumber(ARGV[2]) * 1000)
redis.call('ZREMRANGEBYSCORE', KEYS[2], '-inf', ARGV[3])
local extra = redis.call('ZCARD', KEYS[2]) - tonumber(ARGV[5]) + 1
if extra > 0 then
  for _, old in ipairs(redis.call('ZRANGE', KEYS[2], 0, extra - 1)) do
    redis.call('DEL', '""" + PREFIX + """' .. old)
  end
  redis.call('ZREMRANGEBYRANK', KEYS[2], 0, extra - 1)
end
redis.call('SET', KEYS[1], ARGV[1], 'EX', ARGV[2])
redis.call('ZADD', KEYS[2], expires, ARGV[4])
redis.call('EXPIRE', KEYS[2], ARGV[2])
return 1
"""
_IF_OWNER_EXPIRE = _NEXT_SCORE + """
if redis.call('GET', KEYS[1]) ~= ARGV[1] then return 0 end
redis.call('EXPIRE', KEYS[1], ARGV[2])
redis.call('ZADD', KEYS[2], next_score(KEYS[2], tonumber(ARGV[3]) + tonumber(ARGV[2]) * 1000), ARGV[4])
redis.call('EXPIRE', KEYS[2], ARGV[2])
return 1
"""
_IF_OWNER_DELETE = """
if redis.call('GET', KEYS[1]) ~= ARGV[1] then return 0 end
redis.call('DEL', KEYS[1])
redis.call('ZREM', KEYS[2], ARGV[2])
return 1
"""


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
        keys = (PREFIX + key, USER_PREFIX + user_id)
        await self._call("eval", _CREATE, 2, *keys, user_id, LISTEN_KEY_SECONDS, _now_ms(), key, MAX_PER_USER)
        return key

    async def extend(self, listen_key: str, user_id: str) -> bool:
        keys = (PREFIX + listen_key, USER_PREFIX + user_id)
        done = await self._call("eval", _IF_OWNER_EXPIRE, 2, *keys, user_id, LISTEN_KEY_SECONDS, _now_ms(), listen_key)
        return bool(done)

    async def delete(self, listen_key: str, user_id: str) -> bool:
        keys = (PREFIX + listen_key, USER_PREFIX + user_id)
        return bool(await self._call("eval", _IF_OWNER_DELETE, 2, *keys, user_id, listen_key))

    async def user_of(self, listen_key: str) -> str | None:
        value = await self._call("get", PREFIX + listen_key)
        return value.decode() if isinstance(value, bytes) else value

    async def close(self) -> None:
        if self._client is not None:
            await self._client.aclose()
            self._client = None


def _now_ms() -> int:
    return time.time_ns() // 1_000_000
