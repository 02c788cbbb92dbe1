"""Store faults: SQLite locked or full, Redis down and back. The bot says so, answers, and recovers in place."""

from __future__ import annotations

import asyncio
import resource
import sqlite3
import sys
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager, closing
from pathlib import Path

import pytest
import redis.asyncio

from bot.conversations import MEMORY_DOWN_NOTE, NOT_SAVED_NOTE, Conversations, Status
from bot.images import ImagePipeline
from bot.openrouter import OpenRouterClient
from bot.store import SQLiteStore, StoreError
from bot.store.redis import redis_target
from tests.fakes.openrouter import DEFAULT_REPLY, FAKE_API_KEY, FakeOpenRouter
from tests.redis_support import (
    RedisRelay,
    delete_prefix,
    require_redis,
    store_url,
    unique_prefix,
)
from tests.reliability.checks import echo
from tests.reliability.harness import (
    ROOT,
    USER,
    RecordingSink,
    core_settings,
    glimpse_env,
    incoming,
    running_core,
    slack_mention,
    slack_reply,
    slack_rig,
)
from tests.reliability.secrets_watch import WATCH

BUSY_TIMEOUT_SECONDS = 0.2  # how long a write waits for another connection's lock
PROMPT = b"you> "


def said(fake: FakeOpenRouter, index: int = -1) -> list[str]:
    """The texts of every message of one chat request (history, then the new question)."""
    return [str(m["content"]) for m in fake.chat_requests[index].body["messages"][1:]]


async def ask(conversations: Conversations, text: str) -> RecordingSink:
    sink = RecordingSink()
    outcome = await conversations.handle(incoming(text), sink)
    assert outcome.status is Status.ANSWERED, sink.seen  # answered, whatever the store does
    return sink


# --- SQLite, in this process ---


@asynccontextmanager
async def sqlite_core(fake: FakeOpenRouter, path: Path) -> AsyncIterator[Conversations]:
    """The core on a SQLite store whose writes give up on a lock after BUSY_TIMEOUT_SECONDS."""
    settings = core_settings(fake, store_url=f"sqlite:///{path}")
    conversations = Conversations(
        settings,
        store=SQLiteStore(path, busy_timeout=BUSY_TIMEOUT_SECONDS),
        client=OpenRouterClient(settings, FAKE_API_KEY),
        images=ImagePipeline(settings),
    )
    await conversations.start()
    try:
        yield conversations
    finally:
        await conversations.close()


async def test_a_locked_sqlite_file_still_answers_says_it_could_not_save_and_recovers(
    fake_openrouter: FakeOpenRouter, tmp_path: Path
) -> None:
    fake_openrouter.responder = echo
    path = tmp_path / "glimpse.db"
    async with sqlite_core(fake_openrouter, path) as conversations:
        assert (await ask(conversations, "my name is Ada")).notices == []
        with closing(sqlite3.connect(path, isolation_level=None)) as other:
            other.execute("BEGIN IMMEDIATE")  # another process holds the write lock
            locked = await ask(conversations, "what is my name?")
            assert locked.notices == [NOT_SAVED_NOTE]  # read fine (WAL), could not write
            assert "my name is Ada" in said(fake_openrouter)
            other.execute("ROLLBACK")
        assert (await ask(conversations, "and now?")).notices == []
        assert said(fake_openrouter)[0] == "my name is Ada"
        assert "what is my name?" not in said(fake_openrouter)  # the unsaved exchange is gone


async def test_a_full_sqlite_disk_still_answers_says_it_could_not_save_and_recovers(
    fake_openrouter: FakeOpenRouter, tmp_path: Path
) -> None:
    fake_openrouter.responder = echo
    async with sqlite_core(fake_openrouter, tmp_path / "glimpse.db") as conversations:
        await ask(conversations, "my name is Ada")
        await _cap_pages(conversations, None)  # the disk is full: the file cannot grow
        full = await ask(conversations, "a long question " * 2_000)
        assert NOT_SAVED_NOTE in full.notices
        await _cap_pages(conversations, 1_073_741_823)  # space was freed
        assert (await ask(conversations, "and now?")).notices == []
        await ask(conversations, "one more")
        assert said(fake_openrouter)[:3] == [
            "my name is Ada",
            "You asked: my name is Ada",
            "and now?",
        ]


async def _cap_pages(conversations: Conversations, pages: int | None) -> None:
    """PRAGMA max_page_count on the store's own connection (the setting is per connection)."""
    store = conversations._store
    assert isinstance(store, SQLiteStore) and store._db is not None
    if pages is None:
        rows = list(await store._db.execute_fetchall("PRAGMA page_count"))
        pages = int(rows[0][0])
    await store._db.execute(f"PRAGMA max_page_count = {pages}")


# --- SQLite disk full for a real process: the OS refuses to grow the file ---


@pytest.mark.skipif(not hasattr(resource, "prlimit"), reason="prlimit(2) is Linux-only")
async def test_glimpse_chat_survives_a_disk_full_write_and_recovers_without_restart(
    fake_openrouter: FakeOpenRouter, tmp_path: Path
) -> None:
    fake_openrouter.responder = echo
    env = glimpse_env(fake_openrouter, store_url=f"sqlite:///{tmp_path / 'glimpse.db'}")
    process = await asyncio.create_subprocess_exec(
        sys.executable, "-m", "bot.cli", "chat",
        stdin=asyncio.subprocess.PIPE, stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE, env=env, cwd=ROOT,
    )  # fmt: skip
    try:
        assert process.stdout is not None
        await asyncio.wait_for(process.stdout.readuntil(PROMPT), 30)
        await _turn(process, "my name is Ada")
        wal = tmp_path / "glimpse.db-wal"
        limit = wal.stat().st_size + 1024  # the write-ahead log cannot grow past this
        resource.prlimit(process.pid, resource.RLIMIT_FSIZE, (limit, resource.RLIM_INFINITY))
        assert (await _turn(process, "what is my name? " + "x" * 20_000)).startswith("You asked")
        resource.prlimit(process.pid, resource.RLIMIT_FSIZE, (-1, -1))  # space again
        assert (await _turn(process, "and now?")).startswith("You asked")
        await _turn(process, "last one")
    finally:
        _, err_bytes = await _quit(process)
    err = err_bytes.decode(errors="replace")
    WATCH.scan("glimpse chat stderr", err)
    assert err.count(f"glimpse: {NOT_SAVED_NOTE}") == 1 and "disk" in err
    assert said(fake_openrouter)[:3] == ["my name is Ada", "You asked: my name is Ada", "and now?"]


async def _turn(process: asyncio.subprocess.Process, text: str) -> str:
    """Send one line; its answer, read once the bot is back at its prompt (the exchange is stored)."""
    assert process.stdin is not None and process.stdout is not None
    process.stdin.write(text.encode() + b"\n")
    await process.stdin.drain()
    answer = await asyncio.wait_for(process.stdout.readline(), 30)
    await asyncio.wait_for(process.stdout.readuntil(PROMPT), 30)
    return answer.decode()


async def _quit(process: asyncio.subprocess.Process) -> tuple[bytes, bytes]:
    assert process.stdin is not None
    process.stdin.write(b"/quit\n")
    await process.stdin.drain()
    return await asyncio.wait_for(process.communicate(), 30)


# --- Redis, through a relay that can go down and come back on the same address ---


@pytest.fixture
async def relay() -> AsyncIterator[tuple[RedisRelay, str]]:
    """A relay to the test Redis and a store URL through it (own key prefix, deleted after)."""
    target = redis_target(require_redis())
    host, _, port = target.where.partition("/")[0].rpartition(":")
    relay = RedisRelay(host, int(port))
    await relay.start()
    prefix = unique_prefix()
    url = store_url(prefix).replace(target.where.partition("/")[0], f"127.0.0.1:{relay.port}")
    try:
        yield relay, url
    finally:
        await relay.stop()
        await delete_prefix(prefix)


async def test_redis_down_and_back_the_bot_answers_without_memory_and_recovers(
    fake_openrouter: FakeOpenRouter, relay: tuple[RedisRelay, str]
) -> None:
    proxy, url = relay
    fake_openrouter.responder = echo
    async with running_core(core_settings(fake_openrouter, store_url=url)) as conversations:
        assert (await ask(conversations, "my name is Ada")).notices == []
        await proxy.stop()
        down = await ask(conversations, "what is my name?")
        assert down.notices == [MEMORY_DOWN_NOTE, NOT_SAVED_NOTE]
        assert said(fake_openrouter) == ["what is my name?"]
        with pytest.raises(StoreError):
            await conversations.ping_store()  # /readyz would say so
        await proxy.start()  # Redis is back on the same address
        back = await ask(conversations, "and now?")
        assert back.notices == []
        assert said(fake_openrouter) == ["my name is Ada", "You asked: my name is Ada", "and now?"]
        await conversations.ping_store()


async def test_killed_redis_connections_are_replaced_without_the_user_noticing(
    fake_openrouter: FakeOpenRouter, relay: tuple[RedisRelay, str]
) -> None:
    _, url = relay
    fake_openrouter.responder = echo
    async with running_core(core_settings(fake_openrouter, store_url=url)) as conversations:
        await ask(conversations, "my name is Ada")
        killed = await _kill_clients(redis_target(url).prefix)
        assert killed >= 1
        assert (await ask(conversations, "what is my name?")).notices == []
        assert said(fake_openrouter)[0] == "my name is Ada"


async def _kill_clients(name: str) -> int:
    """CLIENT KILL every connection named `name` (the store names its connections by prefix)."""
    raw = redis.asyncio.Redis.from_url(require_redis())
    try:
        clients = await raw.client_list()
        ids = [client["id"] for client in clients if client.get("name") == name]
        for client_id in ids:
            await raw.client_kill_filter(_id=client_id)
        return len(ids)
    finally:
        await raw.aclose()


async def test_during_a_redis_outage_slack_mentions_are_answered_and_follow_ups_resume_after(
    relay: tuple[RedisRelay, str],
) -> None:
    proxy, url = relay
    async with slack_rig(store_url=url) as rig:
        rig.router.responder = echo
        first = slack_mention("my name is Ada")
        await rig.event(first)
        await rig.settle()
        await proxy.stop()
        await rig.event(slack_mention("what is my name?", thread_ts=first["ts"]))
        await rig.event(slack_reply("hello?", first["ts"]))
        await rig.settle()
        during = rig.thread(first["ts"])
        assert during[1] == _mrkdwn(f"{MEMORY_DOWN_NOTE}")
        # A channel conversation: the model reads the asker's name (the rig's users.info does not
        # know her, so her user id stands in).
        assert during[2:] == [f"You asked: {USER}: what is my name?", _mrkdwn(NOT_SAVED_NOTE)]
        # Known limit: without the store, a reply that does not mention the bot is not known to be
        # in one of its threads, so it goes unanswered (mentions and DMs always are answered).
        assert not any("hello?" in text for text in during)
        await proxy.start()
        await rig.event(slack_reply("and now?", first["ts"]))
        await rig.settle()
        assert rig.thread(first["ts"])[-1] == f"You asked: {USER}: and now?"
        assert "my name is Ada" in str(rig.router.chat_requests[-1].body["messages"])


def _mrkdwn(text: str) -> str:
    return text.replace("&", "&amp;").replace("<", "&lt;").replace(">", "&gt;")


async def test_during_a_redis_outage_a_mention_delivered_twice_is_still_answered_once(
    relay: tuple[RedisRelay, str],
) -> None:
    proxy, url = relay
    async with slack_rig(store_url=url) as rig:
        await proxy.stop()
        mention = slack_mention("are you there?")
        # Slack sends a mention twice: as app_mention and as a message event, and may retry both.
        as_message = {**mention, "type": "message", "channel_type": "channel"}
        for event in (mention, as_message, mention):
            await rig.event(event)
        await rig.settle()
        answers = [text for text in rig.thread(mention["ts"]) if text == DEFAULT_REPLY]
        assert answers == [DEFAULT_REPLY] and len(rig.router.chat_requests) == 1
