"""Starting the Discord adapter: refused intents, bad tokens, no connection, global command sync, DMs off, silent refusals."""

from __future__ import annotations

import asyncio
import logging
import socket
import time
from collections.abc import AsyncIterator
from dataclasses import dataclass
from typing import Any

import discord
import pytest
import pytest_asyncio
from aiohttp import web
from discord.gateway import DiscordWebSocket

from adapters.discord import create_client, run_discord
from adapters.discord_menus import ASK_ABOUT, DESCRIBE
from bot.app import build_conversations
from bot.config import ConfigError, Secrets, Settings, StartupError
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

    assert {c["name"] for c in fake.commands["global"]} == {
        "ask",
        "reset",
        "model",
        DESCRIBE,
        ASK_ABOUT,
    }
    assert fake.bot_messages(DM_CHANNEL_ID) == []
    assert fake.bot_messages(TEXT_CHANNEL_ID) == []  # no refusal note: silent
    assert fake.calls_to("POST", f"/messages/{blocked['id']}/threads") == []
    assert len(router.chat_requests) == 1


def closed_port() -> int:
    """A loopback port nothing listens on (bound, then released)."""
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


async def start_up_error(secrets: Secrets, router: FakeOpenRouter) -> tuple[StartupError, float]:
    """Run Discord until it gives up; the StartupError and how long that took."""
    settings = Settings(store_url="memory://", base_url=router.base_url)
    conversations = await started(settings, secrets)
    began = time.monotonic()
    try:
        with pytest.raises(StartupError) as raised:
            await asyncio.wait_for(run_discord(conversations, settings, secrets), timeout=20)
    finally:
        await conversations.close()
    return raised.value, time.monotonic() - began


async def test_an_unreachable_api_is_one_start_up_error_naming_discord_api_base(
    router: FakeOpenRouter,
) -> None:
    port = closed_port()
    secrets = Secrets(
        openrouter_api_key=FAKE_API_KEY,
        discord_token="dummy-token",
        discord_api_base=f"http://127.0.0.1:{port}/api/v10",
        discord_gateway_url=f"ws://127.0.0.1:{port}/",
    )
    error, took = await start_up_error(secrets, router)
    assert "DISCORD_API_BASE" in str(error) and f"127.0.0.1:{port}" in str(error)
    assert "\n" not in str(error) and "dummy-token" not in str(error)
    assert took < 10


async def test_an_unreachable_gateway_stops_start_up_instead_of_retrying(
    router: FakeOpenRouter, caplog: pytest.LogCaptureFixture
) -> None:
    async with FakeDiscord() as fake:
        secrets = Secrets(
            openrouter_api_key=FAKE_API_KEY,
            discord_token=fake.token,
            discord_api_base=fake.api_base,
            discord_gateway_url=f"ws://127.0.0.1:{closed_port()}/",
        )
        with caplog.at_level(logging.DEBUG):
            error, took = await start_up_error(secrets, router)
    assert "DISCORD_GATEWAY_URL" in str(error) and "\n" not in str(error)
    assert took < 10
    assert not [r for r in caplog.records if r.exc_info], "a traceback reached the log"


@dataclass
class FlakyGateway(FakeDiscord):
    """Discord whose gateway refuses the websocket upgrade (503) while `refusing` is set."""

    refusing: bool = False
    refused: int = 0

    async def _gateway(self, request: web.Request) -> web.WebSocketResponse:
        if self.refusing:
            self.refused += 1
            raise web.HTTPServiceUnavailable()
        return await super()._gateway(request)


async def test_after_the_first_ready_a_lost_gateway_is_retried_until_it_is_back(
    router: FakeOpenRouter,
) -> None:
    async with FlakyGateway() as fake:
        settings = Settings(store_url="memory://", base_url=router.base_url)
        secrets = secrets_for(fake)
        conversations = await started(settings, secrets)
        runner = asyncio.create_task(run_discord(conversations, settings, secrets))
        try:
            await fake.wait_for(lambda: conversations.readiness.snapshot().get("discord"))
            fake.refusing = True
            await fake._sockets[-1].close(code=4000)  # dropped: discord.py reconnects
            await fake.wait_for(lambda: fake.refused, within=15)
            fake.refusing = False
            await fake.wait_for(lambda: fake.connections[-1].hello_op == 6, within=15)
            assert not runner.done()
        finally:
            runner.cancel()
            await asyncio.gather(runner, return_exceptions=True)
            await conversations.close()
