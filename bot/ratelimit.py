"""Per-user rate limits: a sliding window of recent messages in this process."""

from __future__ import annotations

import time
from collections import deque
from collections.abc import Callable

__all__ = ["RateLimiter", "SlidingWindowLimiter"]

WINDOW_SECONDS = 60.0


class RateLimiter:
    """The interface: `hit` records a message and says how long to wait if over the limit."""

    async def hit(self, user_key: str) -> float | None:  # pragma: no cover - interface
        raise NotImplementedError


class SlidingWindowLimiter(RateLimiter):
    """At most `per_minute` messages per user in any 60-second window; 0 disables the limit."""

    def __init__(self, per_minute: int, *, clock: Callable[[], float] = time.monotonic) -> None:
        self._per_minute = per_minute
        self._clock = clock
        self._hits: dict[str, deque[float]] = {}

    async def hit(self, user_key: str) -> float | None:
        if self._per_minute <= 0:
            return None
        now = self._clock()
        hits = self._hits.setdefault(user_key, deque())
        while hits and now - hits[0] >= WINDOW_SECONDS:
            hits.popleft()
        if len(hits) >= self._per_minute:
            return WINDOW_SECONDS - (now - hits[0])
        hits.append(now)
        if len(self._hits) > 10_000:
            self._forget_idle(now)
        return None

    def _forget_idle(self, now: float) -> None:
        idle = [
            user
            for user, hits in self._hits.items()
            if not hits or now - hits[-1] >= WINDOW_SECONDS
        ]
        for user in idle:
            del self._hits[user]
