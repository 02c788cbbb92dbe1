"""One answer at a time per conversation: an asyncio lock per key, plus a Redis lease across processes."""

from __future__ import annotations

import asyncio
import logging
import random
import secrets
from collections.abc import AsyncIterator
from contextlib import AbstractAsyncContextManager, asynccontextmanager
from typing import Protocol

from redis.asyncio import Redis
from redis.exceptions import RedisError

from bot.messages import ConversationKey
from bot.store.redis import conversation_part, redis_client, redis_target

__all__ = ["Leases", "LocalLeases", "RedisLeases"]

log = logging.getLogger("glimpse.leases")

LEASE_TTL_SECONDS = 10.0  # how long a crashed holder can block its conversation
LEASE_MAX_WAIT_SECONDS = 120.0  # then go ahead without the lease rather than never answer
POLL_MIN_SECONDS = 0.01
POLL_MAX_SECONDS = 0.1

# Extend / delete the lease only if it is still ours (another process may hold it after expiry).
_RENEW_LUA = """
if redis.call('GET', KEYS[1]) == ARGV[1] then
  return redis.call('PEXPIRE', KEYS[1], ARGV[2])
end
return 0
"""
_RELEASE_LUA = """
if redis.call('GET', KEYS[1]) == ARGV[1] then
  return redis.call('DEL', KEYS[1])
end
return 0
"""


class Leases(Protocol):
    """`async with leases.hold(key):` runs the body while no one else answers in that conversation."""

    def hold(self, key: ConversationKey) -> AbstractAsyncContextManager[None]:
        """Wait for the conversation, in arrival order; must queue the caller before it first awaits."""
        ...


class LocalLeases:
    """One asyncio.Lock per conversation of this process, dropped when no one holds or awaits it."""

    def __init__(self) -> None:
        self._locks: dict[ConversationKey, tuple[asyncio.Lock, int]] = {}

    @asynccontextmanager
    async def hold(self, key: ConversationKey) -> AsyncIterator[None]:
        # Registering and acquiring happen before the first suspension, so callers queue in call order.
        lock, users = self._locks.get(key, (asyncio.Lock(), 0))
        self._locks[key] = (lock, users + 1)
        try:
            async with lock:
                yield
        finally:
            lock, users = self._locks[key]
            if users == 1:
                del self._locks[key]
            else:
                self._locks[key] = (lock, users - 1)

    def __len__(self) -> int:
        """Conversations with a holder or a waiter right now."""
        return len(self._locks)


class RedisLeases:
    """The local lock (FIFO in this process), then a Redis lease (one holder across processes).

    The lease is `SET P:lease:{conversation} token NX PX ttl`, renewed every ttl/3 while held
    and deleted only by its holder; if the holder dies, it expires after `ttl_seconds`.
    If Redis cannot be reached, the answer goes ahead with the local lock alone.
    """

    def __init__(
        self,
        redis_url: str,
        *,
        client: Redis | None = None,
        ttl_seconds: float = LEASE_TTL_SECONDS,
        max_wait_seconds: float = LEASE_MAX_WAIT_SECONDS,
    ) -> None:
        self._target = redis_target(redis_url)
        self._owns_client = client is None
        self._client = client if client is not None else redis_client(self._target)
        self._ttl_ms = max(1, int(ttl_seconds * 1000))
        self._max_wait_seconds = max_wait_seconds
        self._local = LocalLeases()
        self._renew = self._client.register_script(_RENEW_LUA)
        self._release = self._client.register_script(_RELEASE_LUA)

    async def aclose(self) -> None:
        """Close the connection pool, if this object made it (not one shared with the store)."""
        if self._owns_client:
            await self._client.aclose()

    @asynccontextmanager
    async def hold(self, key: ConversationKey) -> AsyncIterator[None]:
        async with self._local.hold(key):
            name = f"{self._target.prefix}:lease:{conversation_part(key)}"
            token = await self._acquire(name)
            if token is None:
                yield
                return
            keeper = asyncio.create_task(self._keep(name, token), name="glimpse-lease")
            try:
                yield
            finally:
                keeper.cancel()
                try:
                    # A renewal in flight ends before the release, unless a Redis call ignores
                    # its cancellation: then go on (the renewal is token-checked, the key gone).
                    _, pending = await asyncio.wait({keeper}, timeout=self._ttl_ms / 1000)
                    if pending:
                        log.warning("the lease %s's renewal did not stop; releasing it", name)
                finally:
                    await asyncio.shield(self._let_go(name, token))

    async def _acquire(self, name: str) -> str | None:
        """Poll for the lease with a growing pause; None: go ahead without one (Redis down, waited too long)."""
        token = secrets.token_hex(16)
        loop = asyncio.get_running_loop()
        deadline = loop.time() + self._max_wait_seconds
        pause = POLL_MIN_SECONDS
        while True:
            try:
                if await self._client.set(name, token, nx=True, px=self._ttl_ms):
                    return token
            except RedisError as exc:
                log.warning(
                    "conversation lease unavailable (%s); answering without cross-process order",
                    self._target.scrub(str(exc)),
                )
                return None
            if loop.time() >= deadline:
                log.warning(
                    "waited %.0f s for the lease %s; answering anyway", self._max_wait_seconds, name
                )
                return None
            await asyncio.sleep(pause * random.uniform(0.5, 1.0))
            pause = min(pause * 2, POLL_MAX_SECONDS)

    async def _keep(self, name: str, token: str) -> None:
        """Renew the lease every ttl/3 until cancelled; stop if it was lost."""
        while True:
            await asyncio.sleep(self._ttl_ms / 3000)
            try:
                kept = await self._renew(keys=[name], args=[token, self._ttl_ms])
            except RedisError as exc:
                log.warning("could not renew the lease %s: %s", name, self._target.scrub(str(exc)))
                continue
            if not kept:
                log.warning("lost the lease %s (it expired); another process may answer", name)
                return

    async def _let_go(self, name: str, token: str) -> None:
        try:
            await self._release(keys=[name], args=[token])
        except RedisError as exc:  # it expires by itself
            log.warning("could not release the lease %s: %s", name, self._target.scrub(str(exc)))
