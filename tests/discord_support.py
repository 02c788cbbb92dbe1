"""Real discord.py connected to FakeDiscord and the real core, for tests that drive Discord."""

from __future__ import annotations

import asyncio
import io
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from typing import Any

import discord
from discord.gateway import DiscordWebSocket
from PIL import Image
from pydantic import SecretStr

from adapters.discord import GlimpseDiscord, create_client
from adapters.discord_translate import root_key
from bot.app import build_conversations
from bot.config import Secrets, Settings
from bot.conversations import Conversations
from bot.messages import IncomingMessage
from tests.core_support import record_handed_over
from tests.fakes.discord import DM_CHANNEL_ID, GUILD_ID, TEXT_CHANNEL_ID, FakeDiscord
from tests.fakes.openrouter import FAKE_API_KEY, FakeOpenRouter

__all__ = [
    "DiscordEnv",
    "connected_discord",
    "content_text",
    "open_thread",
    "png",
    "received",
    "remembered",
    "requests_mentioning",
    "settle",
    "texts_in",
]

READY_TIMEOUT_SECONDS = 10
STOP_TIMEOUT_SECONDS = 5


@dataclass
class DiscordEnv:
    """Real discord.py against FakeDiscord, wired to the real core and FakeOpenRouter."""

    fake: FakeDiscord
    router: FakeOpenRouter
    client: GlimpseDiscord
    conversations: Conversations
    # Every IncomingMessage the adapter handed the core, in order.
    incoming: list[IncomingMessage] = field(default_factory=list)


@asynccontextmanager
async def connected_discord(
    router: FakeOpenRouter, settings: Settings
) -> AsyncIterator[DiscordEnv]:
    """A client that is ready on a fresh FakeDiscord; restores discord.py's global URLs after."""
    saved = (discord.http.Route.BASE, DiscordWebSocket.DEFAULT_GATEWAY)
    async with FakeDiscord() as fake:
        secrets = Secrets(
            openrouter_api_key=SecretStr(FAKE_API_KEY),
            discord_token=SecretStr(fake.token),
            discord_api_base=fake.api_base,
            discord_gateway_url=fake.gateway_url,
        )
        conversations = build_conversations(settings, secrets)
        await conversations.start()
        client = create_client(conversations, settings, secrets, guild_ready_timeout=0.05)
        env = DiscordEnv(fake, router, client, conversations)
        record_handed_over(env.conversations, env.incoming)
        runner = asyncio.create_task(client.start(fake.token))
        try:
            await asyncio.wait_for(client.wait_until_ready(), timeout=READY_TIMEOUT_SECONDS)
            yield env
        finally:
            await client.close()
            await asyncio.wait_for(runner, timeout=STOP_TIMEOUT_SECONDS)
            await conversations.close()
            discord.http.Route.BASE, DiscordWebSocket.DEFAULT_GATEWAY = saved


# --- helpers for tests that drive Discord ---


def png(color: str = "red") -> bytes:
    """A small PNG in one colour."""
    buffer = io.BytesIO()
    Image.new("RGB", (64, 48), color).save(buffer, format="PNG")
    return buffer.getvalue()


def content_text(message: dict[str, Any]) -> str:
    """A chat message's text: its string content, or its text parts joined."""
    content = message["content"]
    if isinstance(content, str):
        return content
    return " ".join(part.get("text", "") for part in content if part.get("type") == "text")


def requests_mentioning(env: DiscordEnv, text: str) -> list[dict[str, Any]]:
    """Chat requests whose newest user turn contains `text`."""
    return [
        r.body for r in env.router.chat_requests if text in content_text(r.body["messages"][-1])
    ]


async def received(env: DiscordEnv, message_id: str | int) -> IncomingMessage:
    """Wait until the adapter has handed the core the message with this id; return it."""
    wanted = str(message_id)
    return await env.fake.wait_for(
        lambda: next((m for m in env.incoming if m.message_id == wanted), None)
    )


async def texts_in(env: DiscordEnv, channel_id: int, expected: list[str]) -> list[dict[str, Any]]:
    """Wait until the bot's messages in a channel read exactly `expected`."""

    def done() -> list[dict[str, Any]] | None:
        messages = env.fake.bot_messages(channel_id)
        return messages if [m["content"] for m in messages] == expected else None

    try:
        return await env.fake.wait_for(done)
    except TimeoutError:
        shown = [m["content"][:80] for m in env.fake.bot_messages(channel_id)]
        raise AssertionError(
            f"bot messages in {channel_id}: {shown}, expected {len(expected)}"
        ) from None


async def remembered(env: DiscordEnv, root_id: int) -> None:
    """Wait until the core has stored the conversation (it does so just after the final edit)."""
    for _ in range(1000):
        if await env.conversations.is_active(root_key(GUILD_ID, root_id)):
            return
        await asyncio.sleep(0.01)
    raise AssertionError(f"conversation {root_id} was never stored")


async def open_thread(env: DiscordEnv, question: str) -> int:
    """Mention the bot in #general; return the thread it answered in, once remembered."""
    message = await env.fake.user_message(TEXT_CHANNEL_ID, question, mention_bot=True)
    thread_id = int(message["id"])
    await texts_in(env, thread_id, [env.router.reply])
    await remembered(env, thread_id)
    return thread_id


async def settle(env: DiscordEnv) -> None:
    """Let earlier events be handled: a DM is answered only after everything dispatched before it."""
    await asyncio.sleep(0.1)
    before = len(env.fake.bot_messages(DM_CHANNEL_ID))
    await env.fake.user_message(DM_CHANNEL_ID, "ping")
    await env.fake.wait_for(lambda: len(env.fake.bot_messages(DM_CHANNEL_ID)) > before)
