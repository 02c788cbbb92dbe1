"""The Redis store: the store contract, plus expiry, key layout, outages, reconnection and secrets."""

from __future__ import annotations

import asyncio
import json
from collections.abc import AsyncIterator, Awaitable, Callable
from typing import cast
from urllib.parse import urlencode

import pytest
import redis.asyncio

from bot.messages import ConversationKey
from bot.store import StoreError, open_store
from bot.store import codec as store_codec
from bot.store.redis import RedisStore, decode_turn, redis_target
from bot.store.redis_inbox import DEFAULT_INBOX_TTL_SECONDS
from bot.turns import PreparedImage, Summary, Turn, Usage
from tests.redis_support import (
    RedisRelay,
    delete_prefix,
    require_redis,
    store_url,
    unique_prefix,
)
from tests.store_contract import KEY, OTHER, StoreContract, numbered, texts, turn
from tests.store_contract import entry as inbox_entry

DAY_MS = 86400 * 1000


class TestRedisStoreContract(StoreContract):
    @pytest.fixture
    async def store(self) -> AsyncIterator[RedisStore]:
        url, prefix = require_redis(), unique_prefix()
        store = RedisStore(url, prefix=prefix)
        await store.open()
        yield store
        await store.close()
        await delete_prefix(prefix)


@pytest.fixture
async def prefix() -> AsyncIterator[str]:
    require_redis()
    name = unique_prefix()
    yield name
    await delete_prefix(name)


@pytest.fixture
async def raw() -> AsyncIterator[redis.asyncio.Redis]:
    """A plain client on the test database, to look at what the store wrote."""
    client = redis.asyncio.Redis.from_url(require_redis())
    yield client
    await client.aclose()


@pytest.fixture
async def opened() -> AsyncIterator[Callable[..., Awaitable[RedisStore]]]:
    """Open RedisStores for a test; all are closed after it."""
    stores: list[RedisStore] = []

    async def make(url: str, **options: object) -> RedisStore:
        store = RedisStore(url, **options)  # type: ignore[arg-type]
        await store.open()
        stores.append(store)
        return store

    yield make
    for store in stores:
        await store.close()


def conv_key(prefix: str, key: ConversationKey = KEY, kind: str = "conv") -> str:
    parts = [key.platform, key.workspace, key.channel, key.thread]
    return f"{prefix}:{kind}:" + ":".join(p.replace("%", "%25").replace(":", "%3A") for p in parts)


def summary_key(prefix: str, key: ConversationKey = KEY) -> str:
    return conv_key(prefix, key, "summary")


SUMMARY = Summary("They talked about cats.", 6, 1_718_000_010.0, 1_718_000_020.0)


async def raw_items(raw: redis.asyncio.Redis, name: str) -> list[bytes]:
    return cast(list[bytes], await raw.lrange(name, 0, -1))


# --- expiry ---


async def test_turns_expire_after_the_retention_and_appends_refresh_it(
    prefix: str, raw: redis.asyncio.Redis, opened: Callable[..., Awaitable[RedisStore]]
) -> None:
    store = await opened(require_redis(), prefix=prefix, retention_seconds=3600)
    await store.append(KEY, [turn("hi", author_id="U1")])
    ttl = await raw.pttl(conv_key(prefix))
    assert 3_590_000 < ttl <= 3_600_000
    index_ttl = await raw.pttl(f"{prefix}:author:U1")
    assert index_ttl > ttl  # forget_user still finds turns until they expire

    await raw.pexpire(conv_key(prefix), 5000)
    await store.append(KEY, [turn("again")])
    assert await raw.pttl(conv_key(prefix)) > 3_590_000


async def test_inbox_entries_expire_by_themselves(
    prefix: str, raw: redis.asyncio.Redis, opened: Callable[..., Awaitable[RedisStore]]
) -> None:
    store = await opened(require_redis(), prefix=prefix)
    await store.inbox_record(inbox_entry("m/1"))
    ttl = await raw.pttl(f"{prefix}:inbox:discord%3Aguild-1%3Am%2F1")
    assert 0 < ttl <= DEFAULT_INBOX_TTL_SECONDS * 1000


async def test_retention_zero_keeps_turns_forever(
    prefix: str, raw: redis.asyncio.Redis, opened: Callable[..., Awaitable[RedisStore]]
) -> None:
    store = await opened(require_redis(), prefix=prefix, retention_seconds=0)
    await store.append(KEY, [turn("hi", author_id="U1")])
    assert await raw.pttl(conv_key(prefix)) == -1
    assert await raw.pttl(f"{prefix}:author:U1") == -1


async def test_open_store_takes_the_retention_in_days_and_the_prefix_from_the_url(
    prefix: str, raw: redis.asyncio.Redis
) -> None:
    store = open_store(store_url(prefix), retention_days=2)
    assert isinstance(store, RedisStore) and store.target.prefix == prefix
    await store.open()
    try:
        await store.append(KEY, [turn("hi")])
    finally:
        await store.close()
    assert 2 * DAY_MS - 10_000 < await raw.pttl(conv_key(prefix)) <= 2 * DAY_MS


async def test_open_store_defaults_to_thirty_days(prefix: str, raw: redis.asyncio.Redis) -> None:
    store = open_store(store_url(prefix))
    await store.open()
    try:
        await store.append(KEY, [turn("hi")])
    finally:
        await store.close()
    assert 30 * DAY_MS - 10_000 < await raw.pttl(conv_key(prefix)) <= 30 * DAY_MS


async def test_a_summary_expires_with_its_turns(
    prefix: str, raw: redis.asyncio.Redis, opened: Callable[..., Awaitable[RedisStore]]
) -> None:
    store = await opened(require_redis(), prefix=prefix, retention_seconds=3600)
    assert await store.save_summary(KEY, SUMMARY, replacing=None)
    assert 3_590_000 < await raw.pttl(summary_key(prefix)) <= 3_600_000

    await raw.pexpire(summary_key(prefix), 5000)
    await store.append(KEY, [turn("again")])  # a live conversation keeps its summary
    assert await raw.pttl(summary_key(prefix)) > 3_590_000
    await raw.pexpire(summary_key(prefix), 5000)
    assert await store.save_summary(KEY, SUMMARY, replacing=SUMMARY.through)
    assert await raw.pttl(summary_key(prefix)) > 3_590_000


async def test_retention_zero_keeps_summaries_forever(
    prefix: str, raw: redis.asyncio.Redis, opened: Callable[..., Awaitable[RedisStore]]
) -> None:
    store = await opened(require_redis(), prefix=prefix, retention_seconds=0)
    await store.append(KEY, [turn("hi")])
    assert await store.save_summary(KEY, SUMMARY, replacing=None)
    assert await raw.pttl(summary_key(prefix)) == -1


async def test_a_claim_is_set_nx_with_its_ttl(
    prefix: str, raw: redis.asyncio.Redis, opened: Callable[..., Awaitable[RedisStore]]
) -> None:
    store = await opened(require_redis(), prefix=prefix)
    assert await store.claim("slack:T1:Ev:1", 0.5) is True
    ttl = await raw.pttl(f"{prefix}:claim:slack%3AT1%3AEv%3A1")
    assert 0 < ttl <= 500


async def test_max_turns_keeps_the_newest(
    prefix: str, raw: redis.asyncio.Redis, opened: Callable[..., Awaitable[RedisStore]]
) -> None:
    store = await opened(require_redis(), prefix=prefix, max_turns=4)
    await store.append(KEY, numbered(3))
    await store.append(KEY, numbered(3, start=3))
    assert texts(await store.load(KEY, 100)) == ["turn 2", "turn 3", "turn 4", "turn 5"]
    assert await raw.llen(conv_key(prefix)) == 4


# --- key layout ---


async def test_key_parts_with_colons_and_percents_never_collide(
    prefix: str, raw: redis.asyncio.Redis, opened: Callable[..., Awaitable[RedisStore]]
) -> None:
    store = await opened(require_redis(), prefix=prefix)
    a = ConversationKey("slack", "T1:C1", "x", "1")
    b = ConversationKey("slack", "T1", "C1:x", "1")
    c = ConversationKey("slack", "T1%3AC1", "x", "1")
    for key, text in ((a, "a"), (b, "b"), (c, "c")):
        await store.append(key, [turn(text, author_id="U:1")])
    assert [texts(await store.load(key, 10)) for key in (a, b, c)] == [["a"], ["b"], ["c"]]
    names = sorted([name.decode() async for name in raw.scan_iter(match=f"{prefix}:*")])
    assert names == sorted(
        [conv_key(prefix, a), conv_key(prefix, b), conv_key(prefix, c), f"{prefix}:author:U%3A1"]
    )


async def test_stores_with_different_prefixes_share_nothing(
    prefix: str, opened: Callable[..., Awaitable[RedisStore]]
) -> None:
    other_prefix = unique_prefix()
    try:
        mine = await opened(require_redis(), prefix=prefix)
        theirs = await opened(require_redis(), prefix=other_prefix)
        await mine.append(KEY, [turn("mine", created_at=1000, author_id="U1")])
        await theirs.append(KEY, [turn("theirs", created_at=1000, author_id="U1")])
        assert await theirs.claim("ev", 60) is True
        assert await mine.claim("ev", 60) is True
        assert await mine.prune(2000) == 1
        assert await mine.forget_user("U1") == 0
        assert texts(await theirs.load(KEY, 10)) == ["theirs"]
    finally:
        await delete_prefix(other_prefix)


async def test_turns_are_stored_with_the_image_as_raw_bytes(
    prefix: str, raw: redis.asyncio.Redis, opened: Callable[..., Awaitable[RedisStore]]
) -> None:
    store = await opened(require_redis(), prefix=prefix)
    image = PreparedImage(b"\n\x00\xff" * 1000, "image/jpeg", 10, 20, "cat.jpg")
    await store.append(KEY, [turn("look")])
    await store.append(KEY, [Turn("user", "img", 3, 1.0, image=image)])
    items = await raw_items(raw, conv_key(prefix))
    header, body, data = items[1].split(b"\n", 2)
    assert json.loads(header) == {"v": 1, "created_at": 1.0, "author_id": ""}
    assert json.loads(body)["image_label"] == "cat.jpg"
    assert data == image.data  # no base64: an image costs its own size in Redis
    assert (await store.load(KEY, 1))[0].image == image


async def test_a_turn_in_a_newer_format_is_a_store_error(
    prefix: str, raw: redis.asyncio.Redis, opened: Callable[..., Awaitable[RedisStore]]
) -> None:
    store = await opened(require_redis(), prefix=prefix)
    await store.append(KEY, [turn("hi")])
    item = (await raw_items(raw, conv_key(prefix)))[0]
    await raw.rpush(conv_key(prefix), item.replace(b'{"v":1,', b'{"v":99,', 1))
    with pytest.raises(StoreError, match="format 99"):
        await store.load(KEY, 10)


# A turn as the version before speakers and captions stored it: same format version, shorter body.
OLD_ITEM = (
    b'{"v":1,"created_at":1000.5,"author_id":"U1"}\n'
    b'{"role":"user","text":"look","tokens":7,"message_id":"m1","image_mime":"image/jpeg",'
    b'"image_width":4,"image_height":3,"image_label":"cat.jpg","usage_model":null,'
    b'"usage_prompt_tokens":null,"usage_completion_tokens":null,"usage_cost":null}\n'
    b"\xff\xd8\n"
)
OLD_TURN = Turn(
    "user",
    "look",
    7,
    1000.5,
    "U1",
    "m1",
    image=PreparedImage(b"\xff\xd8\n", "image/jpeg", 4, 3, "cat.jpg", caption=""),
    speaker="",
)


def test_a_turn_stored_before_speakers_and_captions_decodes_with_empty_ones() -> None:
    assert decode_turn(OLD_ITEM) == OLD_TURN
    without_image = (
        b'{"v":1,"created_at":1.0,"author_id":""}\n'
        + json.dumps(
            {"role": "assistant", "text": "hi", "tokens": 2, "message_id": ""}
            | {"image_mime": None, "image_width": None, "image_height": None, "image_label": None}
            | {"usage_model": "m", "usage_prompt_tokens": 3, "usage_completion_tokens": 4}
            | {"usage_cost": 0.5}
        ).encode()
        + b"\n"
    )
    assert decode_turn(without_image) == Turn(
        "assistant", "hi", 2, 1.0, usage=Usage("m", 3, 4, 0.5)
    )


async def test_old_and_new_turns_load_side_by_side(
    prefix: str, raw: redis.asyncio.Redis, opened: Callable[..., Awaitable[RedisStore]]
) -> None:
    store = await opened(require_redis(), prefix=prefix)
    await raw.rpush(conv_key(prefix), OLD_ITEM)
    image = PreparedImage(b"\x00", "image/png", 1, 1, "dot.png", caption="A dot.")
    new = Turn("user", "and now", 3, 1001.0, "U2", image=image, speaker="Zoë")
    await store.append(KEY, [new])
    body = json.loads((await raw_items(raw, conv_key(prefix)))[1].split(b"\n", 2)[1])
    assert (body["speaker"], body["image_caption"]) == ("Zoë", "A dot.")
    assert await store.load(KEY, 10) == [OLD_TURN, new]


async def test_summaries_are_hashes_next_to_their_conversation_lists(
    prefix: str, raw: redis.asyncio.Redis, opened: Callable[..., Awaitable[RedisStore]]
) -> None:
    store = await opened(require_redis(), prefix=prefix)
    colons = ConversationKey("slack", "T1:C1", "x%y", "1")
    assert await store.save_summary(colons, SUMMARY, replacing=None)
    assert await raw.hgetall(summary_key(prefix, colons)) == {
        b"v": b"1",
        b"text": b"They talked about cats.",
        b"tokens": b"6",
        b"through": b"1718000010.0",
        b"updated_at": b"1718000020.0",
    }
    assert summary_key(prefix, colons) == f"{prefix}:summary:slack:T1%3AC1:x%25y:1"


async def test_a_summary_in_a_newer_format_is_a_store_error(
    prefix: str, raw: redis.asyncio.Redis, opened: Callable[..., Awaitable[RedisStore]]
) -> None:
    store = await opened(require_redis(), prefix=prefix)
    await store.save_summary(KEY, SUMMARY, replacing=None)
    await raw.hset(summary_key(prefix), "v", "99")
    with pytest.raises(StoreError, match="format b'99'"):
        await store.load_summary(KEY)


async def test_forget_user_finds_summaries_through_its_index(
    prefix: str, raw: redis.asyncio.Redis, opened: Callable[..., Awaitable[RedisStore]]
) -> None:
    store = await opened(require_redis(), prefix=prefix)
    colons = ConversationKey("slack", "T1:C1", "x%y", "1")
    for key in (KEY, colons, OTHER):
        await store.append(key, [turn("hi", author_id="U1" if key != OTHER else "U2")])
        await store.save_summary(key, SUMMARY, replacing=None)
    await raw.delete(conv_key(prefix))  # its turns expired, the index still names the list
    assert await store.forget_user("U1") == 1
    assert await raw.exists(summary_key(prefix), summary_key(prefix, colons)) == 0
    assert await store.load_summary(OTHER) == SUMMARY


async def test_a_codec_failure_on_the_second_turn_stores_nothing(
    prefix: str, opened: Callable[..., Awaitable[RedisStore]], monkeypatch: pytest.MonkeyPatch
) -> None:
    store = await opened(require_redis(), prefix=prefix)
    real = store_codec.turn_to_row
    calls = []

    def flaky(key, t):  # type: ignore[no-untyped-def]
        calls.append(t)
        if len(calls) == 2:
            raise ValueError("cannot encode")
        return real(key, t)

    monkeypatch.setattr("bot.store.redis.turn_to_row", flaky)
    with pytest.raises(ValueError, match="cannot encode"):
        await store.append(KEY, [turn("first", author_id="U1"), turn("second")])
    monkeypatch.undo()
    assert await store.load(KEY, 10) == []
    assert await store.forget_user("U1") == 0


async def test_forget_user_empties_its_index(
    prefix: str, raw: redis.asyncio.Redis, opened: Callable[..., Awaitable[RedisStore]]
) -> None:
    store = await opened(require_redis(), prefix=prefix)
    await store.append(KEY, [turn("a", author_id="U1")])
    await store.append(OTHER, [turn("b", author_id="U1")])
    assert await raw.scard(f"{prefix}:author:U1") == 2
    await store.reset(OTHER)
    assert await store.forget_user("U1") == 1
    assert await raw.exists(f"{prefix}:author:U1") == 0


# --- outages, reconnection, secrets ---


async def test_reconnects_after_its_connections_are_killed(
    prefix: str, raw: redis.asyncio.Redis, opened: Callable[..., Awaitable[RedisStore]]
) -> None:
    store = await opened(require_redis(), prefix=prefix)
    await asyncio.gather(*(store.append(KEY, [turn(f"t{i}")]) for i in range(5)))
    clients = await raw.client_list()
    ours = [c["id"] for c in clients if c.get("name") == prefix]
    assert ours, "the store's connections carry its prefix as their client name"
    for client_id in ours:
        await raw.client_kill_filter(_id=client_id)

    assert len(await store.load(KEY, 10)) == 5  # a fresh connection, without an error
    await store.append(KEY, [turn("after")])
    await store.ping()


async def test_an_outage_is_a_store_error_and_the_store_recovers_by_itself(
    prefix: str, opened: Callable[..., Awaitable[RedisStore]]
) -> None:
    target = redis_target(require_redis())
    host, _, port = target.where.partition("/")[0].rpartition(":")
    proxy = RedisRelay(host, int(port))
    await proxy.start()
    db = target.where.partition("/")[2]
    store = await opened(f"redis://127.0.0.1:{proxy.port}/{db}", prefix=prefix)
    await store.append(KEY, [turn("before")])

    await proxy.stop()
    with pytest.raises(StoreError, match=f"127.0.0.1:{proxy.port}"):
        await store.load(KEY, 10)
    with pytest.raises(StoreError):
        await store.claim("ev", 60)

    await proxy.start()  # Redis is back, on the same address
    try:
        assert texts(await store.load(KEY, 10)) == ["before"]
        assert await store.claim("ev", 60) is True
    finally:
        await proxy.stop()


async def test_an_unreachable_redis_is_a_store_error_without_the_password() -> None:
    store = RedisStore("redis://:hunter2@127.0.0.1:1/0")
    with pytest.raises(StoreError) as caught:
        await store.open()
    message = str(caught.value)
    assert "127.0.0.1:1" in message and "could not connect" in message
    assert "hunter2" not in message and "hunter2" not in repr(store)
    with pytest.raises(StoreError, match="closed"):
        await store.load(KEY, 10)


async def test_a_wrong_password_is_a_store_error_without_the_password(prefix: str) -> None:
    # A user that does not exist: the test server's default user takes any password.
    url = require_redis().replace("redis://", "redis://glimpse-nobody:s3cr%2Ft-pw@", 1)
    store = RedisStore(url, prefix=prefix)
    with pytest.raises(StoreError, match="invalid username-password pair") as caught:
        await store.open()
    assert "s3cr" not in str(caught.value) and "glimpse-nobody" not in str(caught.value)


# --- URLs ---


@pytest.mark.parametrize(
    ("url", "prefix", "where"),
    [
        ("redis://localhost:6379/0", "glimpse", "localhost:6379/0"),
        ("redis://localhost", "glimpse", "localhost/0"),
        ("rediss://:pw@cache.example:6380/2?prefix=team-a", "team-a", "cache.example:6380/2"),
        ("redis://user:pw@h:1/3?prefix=a:b&socket_timeout=3", "a:b", "h:1/3"),
    ],
)
def test_redis_urls(url: str, prefix: str, where: str) -> None:
    target = redis_target(url)
    assert (target.prefix, target.where) == (prefix, where)
    assert "prefix=" not in target.url and "pw" not in target.where
    if "socket_timeout" in url:
        assert target.url.endswith("?socket_timeout=3")


@pytest.mark.parametrize("prefix", ["", "has space", "star*", "x" * 101, "ключ"])
def test_a_bad_prefix_is_refused(prefix: str) -> None:
    with pytest.raises(ValueError, match="prefix"):
        redis_target(f"redis://localhost/0?{urlencode({'prefix': prefix})}")
    if prefix:
        with pytest.raises(ValueError, match="prefix"):
            redis_target("redis://localhost/0", prefix)
