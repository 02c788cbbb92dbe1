"""Discord after downtime: a fresh session answers what was sent while Glimpse was away, once, in order."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any

import discord
from discord.gateway import DiscordWebSocket
from pydantic import SecretStr

from adapters.discord import GlimpseDiscord, ShardedGlimpseDiscord, create_client
from adapters.discord_catch_up import on_shard
from adapters.discord_translate import dm_key, root_key
from bot.app import build_conversations
from bot.config import Secrets, Settings
from bot.inbox import OFFLINE_NOTICE, CatchUpReport
from tests.discord_support import DiscordEnv, connected_discord, settle, texts_in
from tests.fakes.discord import DM_CHANNEL_ID, GUILD_ID, OTHER_BOT, TEXT_CHANNEL_ID, FakeDiscord
from tests.fakes.openrouter import FAKE_API_KEY, FakeOpenRouter
from tests.reliability.checks import ANSWER_PREFIX, echo

AN_HOUR = 3600.0
OLD = 20 * 60.0  # older than the default 15 minutes: not answered
SHARD_WINDOW_SECONDS = 0.3  # the fake's identify window and Glimpse's, with shards


def answer(text: str) -> str:
    return f"{ANSWER_PREFIX}Alice: {text}"


async def identify_at_once(shard_id: int | None, *, initial: bool = False) -> None:
    """discord.py waits 5 s before IDENTIFYing again (Discord's identify rate); not on this fake."""


@asynccontextmanager
async def away_an_hour(**settings: Any) -> AsyncIterator[DiscordEnv]:
    """Glimpse answered in a thread and a DM an hour ago (as the fake's clock has it)."""
    async with FakeOpenRouter() as router:
        router.responder = echo
        config = Settings(
            store_url="memory://",
            base_url=router.base_url,
            user_messages_per_minute=0,
            discord={"guild_ids": [str(GUILD_ID)]},
            **settings,
        )
        async with connected_discord(router, config) as env:
            env.client.before_identify_hook = identify_at_once  # type: ignore[method-assign]
            env.fake.identify_window_seconds = 0.0  # …and this fake lets it
            env.fake.clock_offset_seconds = -AN_HOUR
            yield env


async def first_exchange(env: DiscordEnv) -> int:
    """A thread opened by a mention and a DM, both answered; the thread's id."""
    mention = await env.fake.user_message(TEXT_CHANNEL_ID, "what is a boat?", mention_bot=True)
    thread = int(mention["id"])
    await env.fake.user_message(DM_CHANNEL_ID, "hello")
    await texts_in(env, thread, [answer("what is a boat?")])
    await texts_in(env, DM_CHANNEL_ID, [f"{ANSWER_PREFIX}hello"])
    env.fake.clock_offset_seconds = 0.0
    return thread


async def new_session(fake: FakeDiscord, client: GlimpseDiscord) -> CatchUpReport:
    """Invalidate the session; the client IDENTIFYs again; the catch-up after READY, finished."""
    before, client.catch_up.last_report = len(fake.connections), None
    await fake.wait_for(lambda: client.catch_up.last_report is None)
    await fake.fresh_session()
    await fake.wait_for(lambda: len(fake.connections) > before and fake.connections[-1].ready)
    await fake.wait_for(lambda: client.catch_up.last_report is not None)
    await client.catch_up.wait()
    assert client.catch_up.last_report is not None
    return client.catch_up.last_report


async def test_a_fresh_session_answers_recent_missed_messages_in_order_and_notices_old_ones_once() -> (
    None
):
    async with away_an_hour() as env:
        fake = env.fake
        thread = await first_exchange(env)
        old_first = fake.posted_while_down(thread, "old question", ago_seconds=OLD + 60)
        old_last = fake.posted_while_down(thread, "another old one", ago_seconds=OLD)
        fake.posted_while_down(thread, "a bot's line", ago_seconds=90, author=OTHER_BOT)
        fake.posted_while_down(thread, "first recent", ago_seconds=60)
        fake.posted_while_down(thread, "second recent", ago_seconds=30)
        fake.posted_while_down(DM_CHANNEL_ID, "are you there?", ago_seconds=10)
        fake.posted_while_down(TEXT_CHANNEL_ID, "chatter nobody asked Glimpse about")

        report = await new_session(fake, env.client)

        posted = await texts_in(
            env,
            thread,
            [
                answer("what is a boat?"),
                OFFLINE_NOTICE,
                answer("first recent"),
                answer("second recent"),
            ],
        )
        assert posted[1]["message_reference"]["message_id"] == old_last["id"]
        await texts_in(
            env, DM_CHANNEL_ID, [f"{ANSWER_PREFIX}hello", f"{ANSWER_PREFIX}are you there?"]
        )
        assert report == CatchUpReport(checked=2, answered=3, too_old=2, noticed=1)
        assert fake.bot_messages(TEXT_CHANNEL_ID) == []
        # History was read after the newest message each conversation had seen, 50 at a time.
        reads = fake.calls_to("GET", f"/channels/{thread}/messages")
        assert [call.query for call in reads] == [{"limit": "50", "after": str(thread)}]

        # Another fresh session: nothing is answered or noticed twice.
        again = await new_session(fake, env.client)
        assert again == CatchUpReport(checked=2, answered=0, too_old=0, noticed=0)
        await settle(env)
        assert OFFLINE_NOTICE in [m["content"] for m in fake.bot_messages(thread)]
        assert [m["content"] for m in fake.bot_messages(thread)].count(OFFLINE_NOTICE) == 1
        assert not any("old question" in m["content"] for m in fake.bot_messages(thread))
        assert old_first["id"] not in {m.message_id for m in env.incoming}


async def test_with_the_notice_off_old_messages_get_nothing() -> None:
    async with away_an_hour(catch_up={"offline_notice": False}) as env:
        thread = await first_exchange(env)
        env.fake.posted_while_down(thread, "old question", ago_seconds=OLD)
        env.fake.posted_while_down(thread, "recent question", ago_seconds=5)

        report = await new_session(env.fake, env.client)

        await texts_in(env, thread, [answer("what is a boat?"), answer("recent question")])
        assert report == CatchUpReport(checked=2, answered=1, too_old=1, noticed=0)


async def test_a_message_delivered_live_and_found_by_the_catch_up_is_answered_once() -> None:
    async with away_an_hour() as env:
        thread = await first_exchange(env)
        both = env.fake.posted_while_down(thread, "said twice?", ago_seconds=5)
        report = await new_session(env.fake, env.client)
        assert report.answered == 1
        await env.fake.replay(both)  # the gateway delivers it too, late
        await settle(env)
        await texts_in(env, thread, [answer("what is a boat?"), answer("said twice?")])
        assert [m.message_id for m in env.incoming].count(both["id"]) == 2  # both paths tried
        assert len([r for r in env.router.chat_requests if "said twice?" in str(r.body)]) == 1


async def test_a_resumed_session_does_not_catch_up() -> None:
    async with away_an_hour() as env:
        thread = await first_exchange(env)
        env.fake.posted_while_down(thread, "during a short blip", ago_seconds=5)
        await env.fake.reconnect()  # op 7: the client RESUMEs, Discord replays what it missed
        await env.fake.wait_for(lambda: env.fake.connections[-1].hello_op == 6)
        env.client.catch_up.last_report = None
        await settle(env)
        assert env.client.catch_up.last_report is None
        assert env.fake.calls_to("GET", f"/channels/{thread}/messages") == []


async def test_catch_up_off_reads_no_history() -> None:
    async with away_an_hour(catch_up={"enabled": False}) as env:
        thread = await first_exchange(env)
        env.fake.posted_while_down(thread, "anyone?", ago_seconds=5)
        before = len(env.fake.connections)
        await env.fake.fresh_session()
        await env.fake.wait_for(
            lambda: len(env.fake.connections) > before and env.fake.connections[-1].ready
        )
        await settle(env)
        assert env.fake.calls_to("GET", "/messages") == []
        assert [m["content"] for m in env.fake.bot_messages(thread)] == [answer("what is a boat?")]


async def test_each_shard_catches_up_only_its_own_conversations_on_its_ready() -> None:
    async with (
        FakeOpenRouter() as router,
        FakeDiscord(shard_count=2, identify_window_seconds=SHARD_WINDOW_SECONDS) as fake,
    ):
        router.responder = echo
        settings = Settings(
            store_url="memory://",
            base_url=router.base_url,
            user_messages_per_minute=0,
            discord={"shard_count": 2, "identify_window_seconds": SHARD_WINDOW_SECONDS},
        )
        guilds = [fake.add_guild(name, shard=(shard, 2)) for shard, name in enumerate("ab")]
        async with sharded(fake, settings) as client:
            assert isinstance(client, ShardedGlimpseDiscord)
            fake.clock_offset_seconds = -AN_HOUR
            threads = []
            for _, channel in guilds:
                asked = await fake.user_message(channel, "hello", mention_bot=True)
                threads.append(int(asked["id"]))
                await fake.wait_for(lambda a=asked: fake.bot_messages(int(a["id"])))
            fake.clock_offset_seconds = 0.0
            for thread in threads:
                fake.posted_while_down(thread, f"missed in {thread}", ago_seconds=5)

            await fake.fresh_session()  # both shards IDENTIFY again, each gets READY

            for thread in threads:
                await fake.wait_for(
                    lambda t=thread: (
                        len(fake.bot_messages(t)) == 2
                        and fake.bot_messages(t)[-1]["content"] == answer(f"missed in {t}")
                    )
                )
            await client.catch_up.wait()
            assert [len(fake.calls_to("GET", f"/channels/{t}/messages")) for t in threads] == [1, 1]
            asked_model = [str(r.body) for r in router.chat_requests]
            assert [sum(f"missed in {t}" in body for body in asked_model) for t in threads] == [
                1,
                1,
            ]


def test_a_conversation_belongs_to_its_guilds_shard_and_dms_to_shard_0() -> None:
    guild = (5 << 22) | 123  # guild_shard(guild, 3) == 2
    key = root_key(guild, 42)
    assert [on_shard(key, shard_id=s, count=3) for s in range(3)] == [False, False, True]
    assert [on_shard(dm_key(7), shard_id=s, count=3) for s in range(3)] == [True, False, False]


@asynccontextmanager
async def sharded(fake: FakeDiscord, settings: Settings) -> AsyncIterator[GlimpseDiscord]:
    """A sharded client ready on `fake`, on the real core."""
    saved = (discord.http.Route.BASE, DiscordWebSocket.DEFAULT_GATEWAY)
    secrets = Secrets(
        openrouter_api_key=SecretStr(FAKE_API_KEY),
        discord_token=SecretStr(fake.token),
        discord_api_base=fake.api_base,
        discord_gateway_url=fake.gateway_url,
    )
    conversations = build_conversations(settings, secrets)
    await conversations.start()
    client = create_client(conversations, settings, secrets, guild_ready_timeout=0.05)
    runner = asyncio.create_task(client.start(fake.token))
    try:
        await asyncio.wait_for(client.wait_until_ready(), timeout=10)
        yield client
    finally:
        await client.close()
        await asyncio.wait_for(runner, timeout=5)
        await conversations.close()
        discord.http.Route.BASE, DiscordWebSocket.DEFAULT_GATEWAY = saved
