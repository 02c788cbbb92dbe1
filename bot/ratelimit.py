"""Per-user rate limits: a sliding window of recent messages, in this process or shared in Redis."""

from __future__ import annotations

import logging
import secrets
import time
from collections import deque
from collections.abc import Callable
from urllib.parse import quote

from redis.asyncio import Redis
from redis.exceptions import RedisError

from bot.store.redis import redis_client, redis_target

__all__ = ["RateLimiter", "RedisRateLimiter", "SlidingWindowLimiter"]

log = logging.getLogger("glimpse.ratelimit")

WINDOW_SECONDS = 60.0
OUTAGE_LOG_INTERVAL_SECONDS = 60.0

# KEYS[1]: the user's sorted set of hit times (µs, Redis's clock, so every process agrees).
# ARGV: window in µs, the limit, a unique member for this hit. Returns {1, 0} when the hit is
# recorded, {0, µs to wait} when over the limit (the refused hit is not recorded).
_SLIDING_WINDOW_LUA = """
local now_parts = redis.call('TIME')
local now = tonumber(now_parts[1]) * 1000000 + tonumber(now_parts[2])
local window = tonumber(ARGV[1])
local limit = tonumber(ARGV[2])
redis.call('ZREMRANGEBYSCORE', KEYS[1], '-inf', now - window)
if redis.call('ZCARD', KEYS[1]) >= limit then
  local oldest = redis.call('ZRANGE', KEYS[1], 0, 0, 'WITHSCORES')
  return {0, tonumber(oldest[2]) + window - now}
end
redis.call('ZADD', KEYS[1], now, ARGV[3])
redis.call('PEXPIRE', KEYS[1], math.ceil(window / 1000))
return {1, 0}
"""


class RateLimiter:
    """The interface: `hit` records a message and says how long to wait if over the limit."""

    async def hit(self, user_key: str) -> float | None:  # pragma: no cover - interface
        raise NotImplementedError


class SlidingWindowLimiter(RateLimiter):
    """At most `per_minute` messages per user in any 60-second window; 0 disables the limit."""

    def __init__(
        self,
        per_minute: int,
        *,
        clock: Callable[[], float] = time.monotonic,
        window_seconds: float = WINDOW_SECONDS,
    ) -> None:
        self._per_minute = per_minute
        self._clock = clock
        self._window = window_seconds
        self._hits: dict[str, deque[float]] = {}

    async def hit(self, user_key: str) -> float | None:
        if self._per_minute <= 0:
            return None
        now = self._clock()
        hits = self._hits.setdefault(user_key, deque())
        while hits and now - hits[0] >= self._window:
            hits.popleft()
        if len(hits) >= self._per_minute:
            return self._window - (now - hits[0])
        hits.append(now)
        if len(self._hits) > 10_000:
            self._forget_idle(now)
        return None

    def _forget_idle(self, now: float) -> None:
        idle = [
            user for user, hits in self._hits.items() if not hits or now - hits[-1] >= self._window
        ]
        for user in idle:
            del self._hits[user]


class RedisRateLimiter(RateLimiter):
    """The same sliding window, kept in Redis (one Lua script per hit), so every process shares it.

    Keys: `P:rate:{user key}`, a sorted set that expires one window after the user's last hit.
    If Redis cannot be reached, this process falls back to its own SlidingWindowLimiter.
    """

    def __init__(
        self,
        redis_url: str,
        per_minute: int,
        *,
        client: Redis | None = None,
        window_seconds: float = WINDOW_SECONDS,
    ) -> None:
        self._target = redis_target(redis_url)
        self._owns_client = client is None
        self._client = client if client is not None else redis_client(self._target)
        self._per_minute = per_minute
        self._window_us = max(1, int(window_seconds * 1_000_000))
        self._script = self._client.register_script(_SLIDING_WINDOW_LUA)
        self._fallback = SlidingWindowLimiter(per_minute, window_seconds=window_seconds)
        self._last_outage_log = -OUTAGE_LOG_INTERVAL_SECONDS

    async def aclose(self) -> None:
        """Close the connection pool, if this object made it (not one shared with the store)."""
        if self._owns_client:
            await self._client.aclose()

    async def hit(self, user_key: str) -> float | None:
        if self._per_minute <= 0:
            return None
        name = f"{self._target.prefix}:rate:{quote(user_key, safe='')}"
        try:
            recorded, wait_us = await self._script(
                keys=[name], args=[self._window_us, self._per_minute, secrets.token_hex(8)]
            )
        except RedisError as exc:
            self._log_outage(exc)
            return await self._fallback.hit(user_key)
        return None if int(recorded) else max(0.0, int(wait_us) / 1_000_000)

    def _log_outage(self, exc: RedisError) -> None:
        now = time.monotonic()
        if now - self._last_outage_log >= OUTAGE_LOG_INTERVAL_SECONDS:
            self._last_outage_log = now
            log.warning(
                "shared rate limit unavailable (%s); limiting per process until Redis is back",
                self._target.scrub(str(exc)),
            )
