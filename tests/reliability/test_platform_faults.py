"""Platform faults: Slack Web API 429/500/msg_too_long/not_in_channel, Discord 429 on edits and 403/500 on posts."""

from __future__ import annotations

import time
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any

import pytest
import pytest_asyncio

from adapters.discord_translate import root_key
from adapters.slack_events import conversation_key
from bot.conversations import INTERNAL_ERROR
from tests.fakes.discord import GUILD_ID, LOCKED_CHANNEL_ID, OTHER_CHANNEL_ID, TEXT_CHANNEL_ID
from tests.fakes.openrouter import DEFAULT_REPLY, FakeOpenRouter
from tests.fakes.slack import TEAM_ID
from tests.reliability.harness import (
    CHANNEL,
    DiscordEnv,
    SlackRig,
    discord_env,
    eventually,
    slack_mention,
    slack_rig,
    until,
)

LONG_ANSWER = "\n\n".join(f"Part {i}. " + "lorem ipsum dolor " * 40 for i in range(8))  # ~5,900


# --- Slack ---


@asynccontextmanager
async def classic_rig(
    *, slack_options: dict[str, Any] | None = None, **overrides: Any
) -> AsyncIterator[SlackRig]:
    """A workspace with neither Slack's streaming nor the markdown block: chat.update and mrkdwn,
    the path these faults hit (native streaming's own faults: tests/test_slack_streaming.py)."""
    options = {"native_streaming": False, **(slack_options or {})}
    async with slack_rig(slack_options=options, **overrides) as rig:
        rig.adapter.listeners.features.refuse(TEAM_ID, "markdown block", "invalid_blocks")
        yield rig


async def _ask_slack(rig: SlackRig, text: str = "hello?", channel: str = CHANNEL) -> list[str]:
    event = slack_mention(text, channel=channel)
    assert await rig.event(event) == 200
    await rig.settle(30)
    return rig.thread(event["ts"], channel)


async def _slack_remembered(rig: SlackRig, ts: str) -> bool:
    return await rig.conversations.is_active(conversation_key(TEAM_ID, CHANNEL, ts))


async def test_a_slack_500_on_the_final_edit_is_retried_and_the_answer_stands() -> None:
    # One edit per 30 s: the only chat.update is the final one, and it meets the 500.
    async with classic_rig(slack_options={"update_interval_seconds": 30}) as rig:
        rig.router.chunks, rig.router.chunk_delay_seconds = 4, 0.05
        rig.slack.fail_next("chat.update", "internal_error", status=500)
        assert await _ask_slack(rig) == [DEFAULT_REPLY]
        assert len(rig.slack.calls_to("chat.update")) == 2


async def test_a_slack_outage_on_the_final_edit_ends_in_one_clear_sentence_and_no_half_turn() -> (
    None
):
    async with classic_rig(slack_options={"update_interval_seconds": 30}) as rig:
        rig.router.chunks, rig.router.chunk_delay_seconds = 4, 0.05
        rig.slack.fail_next("chat.update", "internal_error", status=500, times=3)
        event = slack_mention("hello?")
        await rig.event(event)
        await rig.settle(30)
        partial, sorry = rig.thread(event["ts"])
        assert DEFAULT_REPLY.startswith(partial) and sorry == INTERNAL_ERROR
        assert not await _slack_remembered(rig, event["ts"])
        assert await _ask_slack(rig, "and now?") == [DEFAULT_REPLY]  # Slack is back: so is the bot


async def test_a_slack_500_on_the_first_post_is_retried() -> None:
    async with classic_rig() as rig:
        rig.slack.fail_next("chat.postMessage", "internal_error", status=500)
        assert await _ask_slack(rig) == [DEFAULT_REPLY]


async def test_slack_429s_on_edits_are_waited_out_with_retry_after() -> None:
    async with classic_rig(slack_options={"update_interval_seconds": 30}) as rig:
        rig.router.chunks, rig.router.chunk_delay_seconds = 4, 0.05
        rig.slack.rate_limit_next("chat.update", retry_after=1)
        started = time.monotonic()
        assert await _ask_slack(rig) == [DEFAULT_REPLY]
        assert time.monotonic() - started >= 1.0  # Slack's Retry-After was honoured


async def test_a_storm_of_slack_429s_on_posts_past_the_retries_still_ends_in_the_answer() -> None:
    async with classic_rig() as rig:
        rig.router.chunks, rig.router.chunk_delay_seconds = 8, 0.05
        for _ in range(5):  # the SDK retries 3 times; the sink tries again at its next flush
            rig.slack.rate_limit_next("chat.postMessage", retry_after=0)
        assert await _ask_slack(rig) == [DEFAULT_REPLY]
        assert len(rig.slack.calls_to("chat.postMessage")) >= 6


async def test_msg_too_long_on_an_edit_mid_stream_splits_the_answer() -> None:
    async with classic_rig() as rig:
        rig.router.reply, rig.router.chunks, rig.router.chunk_delay_seconds = LONG_ANSWER, 12, 0.03
        rig.slack.fail_next("chat.update", "msg_too_long")
        posted = await _ask_slack(rig, "a long one")
        assert len(posted) >= 2 and all(len(text) <= 3_900 for text in posted)
        assert "\n\n".join(posted) == LONG_ANSWER


async def test_not_in_channel_mid_answer_stops_that_reply_and_the_bot_serves_others() -> None:
    async with classic_rig() as rig:
        rig.router.chunks, rig.router.chunk_delay_seconds = 8, 0.05
        rig.slack.fail_next("chat.update", "not_in_channel")  # removed from the channel mid-answer
        posted = await _ask_slack(rig)
        assert len(posted) == 1 and DEFAULT_REPLY.startswith(posted[0])  # left as it was, no crash
        assert len(rig.slack.calls_to("chat.update")) == 1  # given up after the first refusal
        assert await _ask_slack(rig, "elsewhere?", channel="C0RANDOM02") == [DEFAULT_REPLY]


# --- Discord ---


@pytest_asyncio.fixture(scope="module", loop_scope="module")
async def discord() -> AsyncIterator[DiscordEnv]:
    async with (
        FakeOpenRouter(chunks=6, chunk_delay_seconds=0.2) as router,
        discord_env(router) as env,
    ):
        yield env


async def _ask_discord(env: DiscordEnv, text: str, channel: int = TEXT_CHANNEL_ID) -> int:
    """Mention the bot; the id of the conversation's root (the thread, or the mention)."""
    message = await env.fake.user_message(channel, text, mention_bot=True)
    root = int(message["id"])
    await eventually(
        lambda: env.conversations.is_active(root_key(GUILD_ID, root)), f"{text!r} answered"
    )
    return root


@pytest.mark.asyncio(loop_scope="module")
async def test_discord_429s_on_edits_are_waited_out_and_the_answer_completes(
    discord: DiscordEnv,
) -> None:
    discord.fake.fail_next("PATCH", "/messages/", 429, times=2, retry_after=0.3)
    started = time.monotonic()
    thread = await _ask_discord(discord, "edits rate limited")
    assert [m["content"] for m in discord.fake.bot_messages(thread)] == [DEFAULT_REPLY]
    patches = [
        c for c in discord.fake.calls_to("PATCH", "/messages/") if c.path.startswith("/channels")
    ]
    assert len(patches) >= 3 and time.monotonic() - started >= 0.6


@pytest.mark.asyncio(loop_scope="module")
async def test_a_discord_500_on_thread_creation_is_retried(discord: DiscordEnv) -> None:
    discord.fake.fail_next("POST", "/threads", 500)
    thread = await _ask_discord(discord, "server error once", channel=OTHER_CHANNEL_ID)
    assert [m["content"] for m in discord.fake.bot_messages(thread)] == [DEFAULT_REPLY]


@pytest.mark.asyncio(loop_scope="module")
async def test_discord_403_on_every_post_is_logged_and_the_bot_serves_others(
    discord: DiscordEnv, caplog: pytest.LogCaptureFixture
) -> None:
    # No threads allowed here (403), and then no permission to post either.
    discord.fake.fail_next("POST", f"/channels/{LOCKED_CHANNEL_ID}/messages", 403, times=10)
    message = await discord.fake.user_message(LOCKED_CHANNEL_ID, "anyone?", mention_bot=True)
    await until(
        lambda: discord.router.active_streams == 0 and discord.router.chat_requests, "answer"
    )
    thread = await _ask_discord(discord, "and here?")
    assert [m["content"] for m in discord.fake.bot_messages(thread)] == [DEFAULT_REPLY]
    # The fake's stream ends before the bot has finished with the locked channel: its last step,
    # the failed notice, can land after the other thread's answer.
    await until(
        lambda: "could not deliver a notice to the user" in caplog.text, "the locked answer's end"
    )
    assert discord.fake.bot_messages(LOCKED_CHANNEL_ID) == []  # nothing could be posted there…
    assert not await discord.conversations.is_active(root_key(GUILD_ID, int(message["id"])))
    assert "403 Forbidden" in caplog.text  # …and the operator can see why
    assert "could not deliver a notice to the user" in caplog.text
