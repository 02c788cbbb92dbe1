"""The P6 benchmark's counting Redis proxy counts commands and round trips as Redis sees them."""

from __future__ import annotations

from collections import Counter
from collections.abc import AsyncIterator
from urllib.parse import urlsplit

import pytest
import redis.asyncio

from benchmarks.discord_shards import RedisCounter, ShardRow, ShardScaling, _RespCounter
from tests.redis_support import delete_prefix, require_redis, unique_prefix


def test_commands_are_counted_however_the_stream_is_cut() -> None:
    stream = (
        b"*3\r\n$3\r\nSET\r\n$1\r\nk\r\n$5\r\nv\r\nxy\r\n"  # a value holding CRLF
        b"*2\r\n$3\r\nGET\r\n$1\r\nk\r\n"
        b"PING\r\n"  # inline
    )
    for cut in range(1, len(stream)):
        names: Counter[str] = Counter()
        counter = _RespCounter(names)
        assert counter.feed(stream[:cut]) + counter.feed(stream[cut:]) == 3
        assert names == {"SET": 1, "GET": 1, "PING": 1}


@pytest.fixture
async def prefix() -> AsyncIterator[str]:
    require_redis()
    name = unique_prefix()
    yield name
    await delete_prefix(name)


async def test_the_proxy_counts_a_pipeline_as_one_round_trip(prefix: str) -> None:
    target = urlsplit(require_redis())
    proxy = RedisCounter(target.hostname or "127.0.0.1", target.port or 6379)
    port = await proxy.start()
    client = redis.asyncio.Redis.from_url(f"redis://127.0.0.1:{port}{target.path}")
    try:
        await client.ping()
        before = (proxy.commands, proxy.round_trips)
        await client.set(f"{prefix}:a", b"1")
        async with client.pipeline(transaction=True) as pipe:
            pipe.incr(f"{prefix}:a").get(f"{prefix}:a")
            assert await pipe.execute() == [2, b"2"]
    finally:
        await client.aclose()
        await proxy.close()
    assert (proxy.commands - before[0], proxy.round_trips - before[1]) == (5, 2)  # MULTI … EXEC
    assert proxy.names["MULTI"] == proxy.names["EXEC"] == proxy.names["INCRBY"] == 1


def test_linear_share_is_each_rate_against_one_process_times_processes() -> None:
    one, two = ShardRow(1, rates=[10.0, 12.0, 11.0]), ShardRow(2, rates=[16.5])
    scaling = ShardScaling(mentions=10, rounds=3, rows=[one, two])
    assert scaling.linear_share(one) == 1.0 and scaling.linear_share(two) == 0.75
