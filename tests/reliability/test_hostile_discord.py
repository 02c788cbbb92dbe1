"""Hostile input through the Discord gateway fake: a representative subset of the corpus, and pings."""

from __future__ import annotations

from collections.abc import AsyncIterator
from typing import Any

import pytest
import pytest_asyncio

from adapters.discord_translate import root_key
from tests.fakes.discord import (
    BOB,
    GUILD_ID,
    MEMBER_ROLE_ID,
    TEXT_CHANNEL_ID,
    FakeDiscord,
)
from tests.fakes.openrouter import FakeOpenRouter
from tests.reliability.checks import assert_clear_answer, echo
from tests.reliability.corpus import CASES, Case, File
from tests.reliability.harness import DiscordEnv, discord_env, eventually, until

pytestmark = [
    pytest.mark.asyncio(loop_scope="module"),
    pytest.mark.filterwarnings("ignore:Corrupt EXIF data"),
]

NO_MENTIONS: dict[str, list[str]] = {"parse": []}
SUBSET = (
    "truncated-png",
    "corrupt-jpeg",
    "bomb-png",
    "30mb-jpeg",
    "svg-as-png",
    "pdf-as-png",
    "text-as-jpeg",
    "2mb-log",
    "utf16-file",
    "half-text-half-binary",
    "pdf-bomb",
    "scanned-pdf",
    "50-attachments",
    "12-non-image-files",
    "rtl-override-in-name",
    "invalid-utf8-in-name",
    "ping-in-file-name",
    "100kb-text",
    "empty-mention",
    "zero-width-only",
    "lone-surrogate-in-text",
    "rtl-override-in-text",
)
DISCORD_CASES = [case for case in CASES if case.id in SUBSET]


@pytest_asyncio.fixture(scope="module", loop_scope="module")
async def env() -> AsyncIterator[DiscordEnv]:
    async with FakeOpenRouter(responder=echo) as router, discord_env(router) as env:
        yield env


@pytest.mark.parametrize("case", DISCORD_CASES, ids=[case.id for case in DISCORD_CASES])
async def test_discord_answers_each_hostile_message_clearly(env: DiscordEnv, case: Case) -> None:
    before = len(env.router.chat_requests)
    attachments = [_host(env.fake, file, index) for index, file in enumerate(case.files)]
    message = await env.fake.user_message(
        TEXT_CHANNEL_ID, case.text, mention_bot=True, attachments=attachments
    )
    shown = await _everything_shown(env, int(message["id"]), case.asks_model)
    assert_clear_answer(case, shown, [r.body for r in env.router.chat_requests[before:]])


async def test_ping_attempts_never_ping_from_any_bot_message(env: DiscordEnv) -> None:
    pings = f"@everyone @here <@&{MEMBER_ROLE_ID}> <@{BOB['id']}> what is this?"
    message = await env.fake.user_message(TEXT_CHANNEL_ID, pings, mention_bot=True)
    [answer] = await _everything_shown(env, int(message["id"]), True)
    assert "@everyone @here" in answer  # the echo came back, pings and all…
    unguarded = [
        call
        for call in env.fake.calls
        if call.method in ("POST", "PATCH")
        and isinstance(call.body, dict)
        and call.body.get("content")
        and call.body.get("allowed_mentions") != NO_MENTIONS
    ]
    assert unguarded == []  # …and no message of this whole module could notify anyone


def _host(fake: FakeDiscord, file: File, index: int) -> dict[str, Any]:
    """Serve the bytes under a plain URL; the attachment carries the hostile name and size."""
    attachment = fake.attachment(f"upload-{index}-{id(file)}.bin", file.data, file.mime)
    attachment["filename"] = file.name
    if file.declared_size is not None:
        attachment["size"] = file.declared_size
    return attachment


async def _everything_shown(env: DiscordEnv, message_id: int, answered: bool) -> list[str]:
    """The bot's messages about one mention: in its thread, or replies to it when nothing was asked."""
    if answered:
        key = root_key(GUILD_ID, message_id)
        await until(lambda: env.router.active_streams == 0, "the answer to finish")
        await eventually(lambda: env.conversations.is_active(key), "the answer to be stored")
        return [m["content"] for m in env.fake.bot_messages(message_id)]

    def replies() -> list[str]:
        return [
            m["content"]
            for m in env.fake.bot_messages(TEXT_CHANNEL_ID)
            if (m.get("message_reference") or {}).get("message_id") == str(message_id)
        ]

    await until(replies, "a reply to the mention")
    return replies()
