"""Real discord.py connected to FakeDiscord and the real core, for tests that drive Discord."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass

import discord
from discord.gateway import DiscordWebSocket
from pydantic import SecretStr

from adapters.discord import GlimpseDiscord, create_client
from bot.app import build_conversations
from bot.config import Secrets, Settings
from bot.conversations import Conversations
from tests.fakes.discord import FakeDiscord
from tests.fakes.openrouter import FAKE_API_KEY, FakeOpenRouter

__all__ = ["DiscordEnv", "connected_discord"]

READY_TIMEOUT_SECONDS = 10
STOP_TIMEOUT_SECONDS = 5


@dataclass
class DiscordEnv:
    """Real discord.py against FakeDiscord, wired to the real core and FakeOpenRouter."""

    fake: FakeDiscord
    router: FakeOpenRouter
    client: GlimpseDiscord
    conversations: Conversations


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
        runner = asyncio.create_task(client.start(fake.token))
        try:
            await asyncio.wait_for(client.wait_until_ready(), timeout=READY_TIMEOUT_SECONDS)
            yield DiscordEnv(fake, router, client, conversations)
        finally:
            await client.close()
            await asyncio.wait_for(runner, timeout=STOP_TIMEOUT_SECONDS)
            await conversations.close()
            discord.http.Route.BASE, DiscordWebSocket.DEFAULT_GATEWAY = saved
