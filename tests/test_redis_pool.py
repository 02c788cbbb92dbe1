"""A burst of Redis commands larger than the connection pool waits for connections; none fails."""

from __future__ import annotations

import asyncio

from bot.store.redis import MAX_CONNECTIONS, redis_client, redis_target
from tests.redis_support import require_redis, unique_prefix

HELD_SECONDS = 0.2


async def test_more_commands_at_once_than_connections_all_succeed() -> None:
    prefix = unique_prefix()
    client = redis_client(redis_target(require_redis(), prefix))
    try:
        # Each BLPOP holds its connection until it times out: 50 more than the pool has.
        results = await asyncio.gather(
            *(
                client.blpop([f"{prefix}:nothing:{i}"], timeout=HELD_SECONDS)
                for i in range(MAX_CONNECTIONS + 50)
            )
        )
    finally:
        await client.aclose()
    assert results == [None] * (MAX_CONNECTIONS + 50)
