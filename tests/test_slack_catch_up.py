"""Slack after downtime: on start, what was sent to Glimpse's conversations while it was away is answered once, in order."""

from __future__ import annotations

import asyncio
import json
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager, suppress
from typing import Any

from slack_sdk.errors import SlackApiError
from slack_sdk.web.async_client import AsyncWebClient

from adapters.slack import run_slack
from bot.app import build_conversations
from bot.config import Secrets, Settings
from bot.conversations import Conversations
from bot.inbox import OFFLINE_NOTICE
from tests.fakes.openrouter import FAKE_API_KEY, FakeOpenRouter
from tests.fakes.slack import APP_TOKEN, BOT_TOKEN, BOT_USER_ID, FakeSlack, event_body
from tests.reliability.checks import ANSWER_PREFIX, echo

CHANNEL = "C0GENERAL1"
DM = "D0ALICE001"
USER = "U0ALICE01"
AN_HOUR = 3600.0
OLD = 20 * 60.0  # older than the default 15 minutes
WAIT_SECONDS = 10.0
POLL_SECONDS = 0.02


async def until(condition: Callable[[], object], what: str) -> None:
    for _ in range(int(WAIT_SECONDS / POLL_SECONDS)):
        if condition():
            return
        await asyncio.sleep(POLL_SECONDS)
    raise AssertionError(f"gave up waiting for {what}")


@asynccontextmanager
async def socket_mode(
    conversations: Conversations, settings: Settings, slack: FakeSlack
) -> AsyncIterator[None]:
    """`run_slack` in Socket Mode until the block ends (then cancelled, as on shutdown)."""
    secrets = Secrets(
        openrouter_api_key=FAKE_API_KEY,
        slack_bot_token=BOT_TOKEN,
        slack_app_token=APP_TOKEN,
        slack_api_url=slack.api_url,
    )
    task = asyncio.create_task(run_slack(conversations, settings, secrets))
    await slack.wait_for_socket()
    try:
        yield
    finally:
        task.cancel()
        with suppress(asyncio.CancelledError):
            await task


def texts(slack: FakeSlack, channel: str, thread_ts: str) -> list[str]:
    return [m.text for m in slack.thread(channel, thread_ts)]


async def deliver(slack: FakeSlack, event: dict[str, Any]) -> None:
    await slack.send_envelope(json.loads(event_body(event)))


async def test_a_restart_answers_missed_thread_replies_and_dms_and_notices_old_ones() -> None:
    async with FakeOpenRouter() as router, FakeSlack() as slack:
        router.responder = echo
        slack.add_user(USER, "ada")
        settings = Settings(
            store_url="memory://", base_url=router.base_url, user_messages_per_minute=0
        )
        conversations = build_conversations(settings, Secrets(openrouter_api_key=FAKE_API_KEY))
        await conversations.start()
        try:
            async with socket_mode(conversations, settings, slack):  # an hour ago:
                mention = slack.add_user_message(
                    CHANNEL, USER, f"<@{BOT_USER_ID}> what is a boat?", ago_seconds=AN_HOUR
                )
                hello = slack.add_user_message(DM, USER, "hello", ago_seconds=AN_HOUR)
                await deliver(slack, mention)
                await deliver(slack, hello)
                root = mention["ts"]
                await until(
                    lambda: (
                        texts(slack, CHANNEL, root) == [f"{ANSWER_PREFIX}ada: what is a boat?"]
                        and texts(slack, DM, hello["ts"]) == [f"{ANSWER_PREFIX}hello"]
                    ),
                    "the first answers",
                )
                await until(lambda: not slack.reactions.get((CHANNEL, root)), "the first to end")

            # While Glimpse is down:
            old = slack.add_user_message(
                CHANNEL, USER, "still there?", thread_ts=root, ago_seconds=OLD
            )
            slack.add_user_message(CHANNEL, USER, "first follow-up", thread_ts=root, ago_seconds=90)
            slack.add_user_message(
                CHANNEL, USER, "second follow-up", thread_ts=root, ago_seconds=60
            )
            slack.add_user_message(CHANNEL, USER, "chatter, not for Glimpse", ago_seconds=50)
            again = slack.add_user_message(DM, USER, "one more question", ago_seconds=30)

            async with socket_mode(conversations, settings, slack):
                await until(
                    lambda: (
                        texts(slack, CHANNEL, root)
                        == [
                            f"{ANSWER_PREFIX}ada: what is a boat?",
                            OFFLINE_NOTICE,
                            f"{ANSWER_PREFIX}ada: first follow-up",
                            f"{ANSWER_PREFIX}ada: second follow-up",
                        ]
                    ),
                    "the thread caught up in order, the old reply noticed",
                )
                await until(
                    lambda: texts(slack, DM, again["ts"]) == [f"{ANSWER_PREFIX}one more question"],
                    "the missed DM answered in its own thread",
                )
        finally:
            await conversations.close()
        asked = [str(r.body["messages"][-1]) for r in router.chat_requests]
        assert len(asked) == 2 + 3
        assert not any("still there?" in body or "chatter" in body for body in asked)
        assert old["ts"] not in {m.thread_ts for m in slack.messages if m.text != OFFLINE_NOTICE}
        replies = slack.calls_to("conversations.replies")
        assert {"channel": CHANNEL, "ts": root, "oldest": root} in [
            {k: c.args[k] for k in ("channel", "ts", "oldest")} for c in replies
        ]


async def test_the_fake_refuses_conversations_arguments_slack_does_not_document() -> None:
    async with FakeSlack() as slack:
        mention = slack.add_user_message(CHANNEL, USER, "hi")
        client = AsyncWebClient(token=BOT_TOKEN, base_url=slack.api_url)
        ok = await client.conversations_replies(channel=CHANNEL, ts=mention["ts"], oldest="0")
        assert [m["ts"] for m in ok["messages"]] == [mention["ts"]]
        try:
            await client.conversations_replies(channel=CHANNEL, ts=mention["ts"], after="0")
        except SlackApiError as exc:
            assert exc.response["error"] == "invalid_arguments"
        else:
            raise AssertionError("an undocumented argument was accepted")
