"""What the processes of one fleet do once (a claim) or one at a time (a paced slot): in Redis, or in this process."""

from __future__ import annotations

import asyncio
import logging
import secrets
from typing import Protocol

from redis.asyncio import Redis
from redis.exceptions import RedisError

from bot.store.redis import RedisTarget, is_redis_url, redis_client, redis_target

__all__ = ["Fleet", "LocalFleet", "RedisFleet", "open_fleet"]

log = logging.getLogger("glimpse.fleet")

MIN_POLL_SECONDS = 0.01  # a paced slot taken by another process is polled at least this far apart


class Fleet(Protocol):
    """Coordination between the processes that share one store (a single process is a fleet of one)."""

    async def claim(self, name: str, ttl_seconds: float) -> bool:
        """True for the one process that claims `name` first within `ttl_seconds`."""
        ...

    async def release(self, name: str) -> None:
        """Give a claim back (the work failed), so another process may claim it."""
        ...

    async def pace(self, slot: str, interval_seconds: float) -> None:
        """Wait until `slot` was last taken at least `interval_seconds` ago, by anyone; then take it."""
        ...

    async def aclose(self) -> None: ...


class LocalFleet:
    """A fleet of one process: every claim is granted, slots are paced in this process."""

    def __init__(self) -> None:
        self._taken: dict[str, float] = {}  # slot -> loop time it was last taken
        self._locks: dict[str, asyncio.Lock] = {}

    async def claim(self, name: str, ttl_seconds: float) -> bool:
        return True

    async def release(self, name: str) -> None:
        return None

    async def pace(self, slot: str, interval_seconds: float) -> None:
        loop = asyncio.get_running_loop()
        async with self._locks.setdefault(slot, asyncio.Lock()):
            last = self._taken.get(slot)
            if last is not None:
                await asyncio.sleep(max(0.0, last + interval_seconds - loop.time()))
            self._taken[slot] = loop.time()

    async def aclose(self) -> None:
        return None


class RedisFleet:
    """Claims and slots as `SET P:fleet:{name} token NX PX ttl` on the store's Redis.

    A slot's key lives `interval_seconds` from when it was taken, so the next process takes it
    no sooner, whichever process it is. If Redis cannot be reached, claims are granted (the work
    is done again rather than never) and slots are paced in this process, with a warning.
    """

    def __init__(self, redis_url: str, *, client: Redis | None = None) -> None:
        self._target: RedisTarget = redis_target(redis_url)
        self._owns_client = client is None
        self._client = client if client is not None else redis_client(self._target)
        self._local = LocalFleet()

    def _key(self, name: str) -> str:
        return f"{self._target.prefix}:fleet:{name}"

    async def claim(self, name: str, ttl_seconds: float) -> bool:
        try:
            return bool(
                await self._client.set(
                    self._key(name), secrets.token_hex(8), nx=True, px=_ms(ttl_seconds)
                )
            )
        except RedisError as exc:
            log.warning(
                "fleet claim %s unavailable (%s); doing it in this process",
                name,
                self._target.scrub(str(exc)),
            )
            return True

    async def release(self, name: str) -> None:
        try:
            await self._client.delete(self._key(name))
        except RedisError as exc:  # it expires by itself
            log.warning("could not release %s: %s", name, self._target.scrub(str(exc)))

    async def pace(self, slot: str, interval_seconds: float) -> None:
        key, token, ttl = self._key(slot), secrets.token_hex(8), _ms(interval_seconds)
        while True:
            try:
                if await self._client.set(key, token, nx=True, px=ttl):
                    return
                left_ms = await self._client.pttl(key)
            except RedisError as exc:
                log.warning(
                    "fleet slot %s unavailable (%s); pacing in this process only",
                    slot,
                    self._target.scrub(str(exc)),
                )
                await self._local.pace(slot, interval_seconds)
                return
            await asyncio.sleep(max(MIN_POLL_SECONDS, left_ms / 1000))

    async def aclose(self) -> None:
        if self._owns_client:
            await self._client.aclose()


def open_fleet(store_url: str) -> Fleet:
    """A RedisFleet for a `redis://` or `rediss://` store (the same prefix), else a LocalFleet."""
    if is_redis_url(store_url):
        return RedisFleet(store_url)
    return LocalFleet()


def _ms(seconds: float) -> int:
    return max(1, round(seconds * 1000))
