"""A Redis for tests: REDIS_URL (default db 15 on 127.0.0.1), skipped if absent, a failure if CI=true."""

from __future__ import annotations

import asyncio
import functools
import os
import uuid
from urllib.parse import urlencode

import pytest
import redis
import redis.asyncio

__all__ = [
    "REDIS_URL",
    "RedisRelay",
    "delete_prefix",
    "require_redis",
    "store_url",
    "unique_prefix",
]

REDIS_URL = os.environ.get("REDIS_URL", "redis://127.0.0.1:6379/15")
PROBE_TIMEOUT_SECONDS = 1.0


@functools.cache
def _unreachable_reason() -> str | None:
    """None if Redis answers PING at REDIS_URL; else why not (checked once per test run)."""
    try:
        client = redis.Redis.from_url(
            REDIS_URL,
            socket_connect_timeout=PROBE_TIMEOUT_SECONDS,
            socket_timeout=PROBE_TIMEOUT_SECONDS,
        )
        try:
            client.ping()
        finally:
            client.close()
    except redis.RedisError as exc:
        return f"{type(exc).__name__}: {exc}"
    return None


def require_redis() -> str:
    """REDIS_URL if Redis is up; skip the test if not, or fail it when CI=true (CI has Redis)."""
    reason = _unreachable_reason()
    if reason is None:
        return REDIS_URL
    message = f"no Redis at REDIS_URL={REDIS_URL} ({reason})"
    if os.environ.get("CI", "").lower() == "true":
        pytest.fail(f"{message}; CI=true requires Redis", pytrace=False)
    pytest.skip(f"{message}; start one or set REDIS_URL")


def unique_prefix() -> str:
    """A key prefix no other test (or test process sharing the database) uses."""
    return f"glimpse-test-{uuid.uuid4().hex[:12]}"


def store_url(prefix: str) -> str:
    """REDIS_URL with Glimpse's `prefix` parameter, as GLIMPSE_STORE_URL takes it."""
    separator = "&" if "?" in REDIS_URL else "?"
    return f"{REDIS_URL}{separator}{urlencode({'prefix': prefix})}"


async def delete_prefix(prefix: str) -> int:
    """Delete every key under `prefix:`; how many there were."""
    client = redis.asyncio.Redis.from_url(REDIS_URL)
    try:
        names = [name async for name in client.scan_iter(match=f"{prefix}:*", count=1000)]
        if names:
            await client.delete(*names)
        return len(names)
    finally:
        await client.aclose()


class RedisRelay:
    """A TCP relay to Redis: `stop()` drops every connection and refuses new ones; `start()` is back."""

    def __init__(self, host: str, port: int) -> None:
        self._target = (host, port)
        self._server: asyncio.Server | None = None
        self._writers: set[asyncio.StreamWriter] = set()
        self.port = 0

    async def start(self) -> None:
        self._server = await asyncio.start_server(self._relay, "127.0.0.1", self.port)
        self.port = self._server.sockets[0].getsockname()[1]

    async def stop(self) -> None:
        assert self._server is not None
        self._server.close()
        for writer in list(self._writers):
            writer.transport.abort()
        self._writers.clear()
        await self._server.wait_closed()

    async def _relay(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        up_reader, up_writer = await asyncio.open_connection(*self._target)
        self._writers.update((writer, up_writer))
        await asyncio.gather(
            _pipe(reader, up_writer), _pipe(up_reader, writer), return_exceptions=True
        )


async def _pipe(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
    try:
        while data := await reader.read(65536):
            writer.write(data)
            await writer.drain()
    except OSError:
        pass
    finally:
        writer.transport.abort()
