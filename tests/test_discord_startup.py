"""Starting the Discord adapter: refused intents, bad tokens, global command sync, DMs off, silent refusals."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import AsyncIterator
from typing import Any

import discord
import pytest
import pytest_asyncio
from discord.gateway import DiscordWebSocket

from adapters.discord import create_client, run_discord
from bot.app import build_conversations
from bot.config import ConfigError, Secrets, Settings
from bot.conversations import Conversations
from tests.fakes.discord import APP_ID, DM_CHANNEL_ID, TEXT_CHANNEL_ID, FakeDiscord, make_user
from tests.fakes.openrouter import FAKE_API_KEY, FakeOpenRouter

MALLORY = make_user("mallory")


@pytest.fixture(autouse=True)
def _restore_discord_urls() -> Any:
    saved = (discord.http.Route.BASE, DiscordWebSocket.DEFAULT_GATEWAY)
    yield
    discord.http.Route.BASE, DiscordWebSocket.DEFAULT_GATEWAY = saved


@pytest_asyncio.fixture
async def router() -> AsyncIterator[FakeOpenRouter]:
    async with FakeOpenRouter() as fake:
        yield fake


def secrets_for(fake: FakeDiscord, *, token: str | None = None) -> Secrets:
    return Secrets(
        openrouter_api_key=FAKE_API_KEY,
        discord_token=token or fake.token,
        discord_api_base=fake.api_base,
        discord_gateway_url=fake.gateway_url,
    )


async def started(settings: Settings, secrets: Secrets) -> Conversations:
    conversations = build_conversations(settings, secrets)
    await conversations.start()
    return conversations


async def test_refused_message_content_intent_names_the_portal_switch(
    router: FakeOpenRouter, caplog: pytest.LogCaptureFixture
) -> None:
    async with FakeDiscord(refuse_intents=True) as fake:
        settings = Settings(store_url="memory://", base_url=router.base_url)
        secrets = secrets_for(fake)
        conversations = await started(settings, secrets)
        try:
            with (
                caplog.at_level(logging.ERROR, "glimpse.discord"),
                pytest.raises(ConfigError) as raised,
            ):
                await asyncio.wait_for(run_discord(conversations, settings, secrets), timeout=10)
        finally:
            await conversations.close()

    assert "MESSAGE CONTENT INTENT" in str(raised.value)
    assert f"https://discord.com/developers/applications/{APP_ID}/bot" in str(raised.value)
    assert any("Privileged Gateway Intents" in r.getMessage() for r in caplog.records)


async def test_a_rejected_token_is_a_clear_config_error(router: FakeOpenRouter) -> None:
    async with FakeDiscord() as fake:
        settings = Settings(store_url="memory://", base_url=router.base_url)
        secrets = secrets_for(fake, token="not-the-token")
        conversations = await started(settings, secrets)
        try:
            with pytest.raises(ConfigError, match="DISCORD_TOKEN") as raised:
                await asyncio.wait_for(run_discord(conversations, settings, secrets), timeout=10)
        finally:
            await conversations.close()
    assert "not-the-token" not in str(raised.value)


async def test_without_guild_ids_commands_sync_globally_dms_off_and_refusals_silent(
    router: FakeOpenRouter,
) -> None:
    async with FakeDiscord() as fake:
        settings = Settings(
            store_url="memory://",
            base_url=router.base_url,
            block_users=[MALLORY["id"]],
            silent_refusals=True,
            discord={"allow_dms": False},
        )
        secrets = secrets_for(fake)
        conversations = await started(settings, secrets)
        client = create_client(conversations, settings, secrets, guild_ready_timeout=0.05)
        runner = asyncio.create_task(client.start(fake.token))
        try:
            await asyncio.wait_for(client.wait_until_ready(), timeout=10)
            blocked = await fake.user_message(
                TEXT_CHANNEL_ID, "let me in", author=MALLORY, mention_bot=True
            )
            await fake.user_message(DM_CHANNEL_ID, "hello in private")
            allowed = await fake.user_message(TEXT_CHANNEL_ID, "am I allowed?", mention_bot=True)
            await fake.wait_for(lambda: fake.bot_messages(int(allowed["id"])))
        finally:
            await client.close()
            await asyncio.wait_for(runner, timeout=5)
            await conversations.close()

    assert {c["name"] for c in fake.commands["global"]} == {"ask", "reset"}
    assert fake.bot_messages(DM_CHANNEL_ID) == []
    assert fake.bot_messages(TEXT_CHANNEL_ID) == []  # no refusal note: silent
    assert fake.calls_to("POST", f"/messages/{blocked['id']}/threads") == []
    assert len(router.chat_requests) == 1
