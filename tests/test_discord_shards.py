"""Discord shards in one process, IDENTIFY pacing, fleet claims and command sync once per fleet."""

from __future__ import annotations

import asyncio
import logging
import socket
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from typing import Any

import aiohttp
import discord
import pytest
from discord.gateway import DiscordWebSocket
from prometheus_client.parser import text_string_to_metric_families
from pydantic import SecretStr

from adapters.discord import GlimpseDiscord, ShardedGlimpseDiscord, create_client, run_discord
from adapters.discord_shards import guild_shard
from adapters.discord_sync import command_set_hash
from bot.app import build_conversations
from bot.config import ConfigError, DiscordSettings, Secrets, Settings, StartupError
from bot.conversations import Conversations
from bot.fleet import LocalFleet, RedisFleet
from bot.health import HealthServer
from tests.fakes.discord import DM_CHANNEL_ID, FakeDiscord
from tests.fakes.openrouter import FAKE_API_KEY, FakeOpenRouter
from tests.redis_support import delete_prefix, require_redis, store_url, unique_prefix

WINDOW_SECONDS = 0.3  # the fake's identify window and Glimpse's, in these tests
UNREACHABLE = "redis://:hunter2@127.0.0.1:1/0"


@pytest.fixture(autouse=True)
def _restore_discord_urls() -> Any:
    saved = (discord.http.Route.BASE, DiscordWebSocket.DEFAULT_GATEWAY)
    yield
    discord.http.Route.BASE, DiscordWebSocket.DEFAULT_GATEWAY = saved


@pytest.fixture
async def prefix() -> AsyncIterator[str]:
    require_redis()
    name = unique_prefix()
    yield name
    await delete_prefix(name)


def _settings(router: FakeOpenRouter, store: str = "memory://", **discord: Any) -> Settings:
    return Settings(
        store_url=store,
        base_url=router.base_url,
        user_messages_per_minute=0,
        discord={"identify_window_seconds": WINDOW_SECONDS, **discord},
    )


def _secrets(fake: FakeDiscord) -> Secrets:
    return Secrets(
        openrouter_api_key=SecretStr(FAKE_API_KEY),
        discord_token=SecretStr(fake.token),
        discord_api_base=fake.api_base,
        discord_gateway_url=fake.gateway_url,
    )


@asynccontextmanager
async def running(
    fake: FakeDiscord, settings: Settings
) -> AsyncIterator[tuple[GlimpseDiscord, Conversations]]:
    """A client ready on `fake` (all its shards), wired to a real core."""
    conversations = build_conversations(settings, _secrets(fake))
    await conversations.start()
    client = create_client(conversations, settings, _secrets(fake), guild_ready_timeout=0.05)
    runner = asyncio.create_task(client.start(fake.token))
    try:
        await asyncio.wait_for(client.wait_until_ready(), timeout=10)
        yield client, conversations
    finally:
        await client.close()
        await asyncio.wait_for(runner, timeout=5)
        await conversations.close()


def _samples(text: str, name: str) -> dict[tuple[tuple[str, str], ...], float]:
    return {
        tuple(sorted(sample.labels.items())): sample.value
        for family in text_string_to_metric_families(text)
        for sample in family.samples
        if sample.name == name
    }


# --- settings ---


def test_shard_settings_take_numbers_auto_and_comma_lists() -> None:
    assert DiscordSettings().shard_count is None and DiscordSettings().shard_ids == []
    assert DiscordSettings(shard_count="auto", shard_ids="0, 2").shard_ids == [0, 2]
    assert DiscordSettings(shard_count="4", shard_ids="[1, 3]").shard_count == 4


@pytest.mark.parametrize(
    ("values", "says"),
    [
        ({"shard_ids": "1"}, "shard_ids needs shard_count"),
        ({"shard_count": 2, "shard_ids": "2"}, "not below shard_count 2"),
        ({"shard_count": 2, "shard_ids": "1,1"}, "lists a shard twice"),
        ({"shard_count": "0"}, "1 or more"),
        ({"shard_count": "many"}, "or auto"),
    ],
)
def test_wrong_shard_settings_say_what_is_allowed(values: dict[str, Any], says: str) -> None:
    with pytest.raises(ValueError, match=says):
        DiscordSettings(**values)


def test_shard_settings_come_from_the_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("GLIMPSE_DISCORD__SHARD_COUNT", "4")
    monkeypatch.setenv("GLIMPSE_DISCORD__SHARD_IDS", "2,3")
    assert (Settings().discord.shard_count, Settings().discord.shard_ids) == (4, [2, 3])


# --- one process, several shards ---


async def test_one_process_runs_two_shards_each_with_its_own_guilds(
    fake_openrouter: FakeOpenRouter,
) -> None:
    async with FakeDiscord(shard_count=2, identify_window_seconds=WINDOW_SECONDS) as fake:
        first, first_channel = fake.add_guild("first", shard=(0, 2))
        second, second_channel = fake.add_guild("second", shard=(1, 2))
        settings = _settings(fake_openrouter, shard_count=2)
        async with running(fake, settings) as (client, conversations):
            assert isinstance(client, ShardedGlimpseDiscord)
            assert sorted(c.shard for c in fake.connections) == [(0, 2), (1, 2)]
            assert client.get_guild(first).shard_id == 0  # type: ignore[union-attr]
            assert client.get_guild(second).shard_id == 1  # type: ignore[union-attr]
            for channel in (first_channel, second_channel):
                asked = await fake.user_message(channel, "hello", mention_bot=True)
                await fake.wait_for(lambda a=asked: fake.bot_messages(int(a["id"])))
            await fake.user_message(DM_CHANNEL_ID, "hello in private")
            await fake.wait_for(lambda: fake.bot_messages(DM_CHANNEL_ID))

            health = HealthServer(conversations, host="127.0.0.1", port=0)
            port = await health.start()
            try:
                async with aiohttp.ClientSession() as http:
                    async with http.get(f"http://127.0.0.1:{port}/readyz") as response:
                        status, ready = response.status, await response.json()
                    async with http.get(f"http://127.0.0.1:{port}/metrics") as response:
                        metrics = await response.text()
            finally:
                await health.close()

    assert fake.identify_violations == []
    assert status == 200 and ready["platforms"] == {"discord": "connected"}
    assert set(ready["shards"]["discord"]) == {"0", "1"}
    assert all(shard["ready"] for shard in ready["shards"]["discord"].values())
    assert _samples(metrics, "glimpse_discord_shard_up") == {
        (("shard", "0"),): 1.0,
        (("shard", "1"),): 1.0,
    }
    assert _samples(metrics, "glimpse_discord_messages_received_total") == {
        (("shard", "0"),): 4.0,  # its guild's mention and the DM (DMs come on shard 0), answers too
        (("shard", "1"),): 2.0,
    }
    identified = _samples(metrics, "glimpse_discord_shard_sessions_total")
    assert identified[(("event", "identified"), ("shard", "1"))] == 1.0


async def test_shard_count_auto_runs_the_shards_gateway_bot_recommends(
    fake_openrouter: FakeOpenRouter,
) -> None:
    async with FakeDiscord(
        shard_count=3, max_concurrency=3, identify_window_seconds=WINDOW_SECONDS
    ) as fake:
        async with running(fake, _settings(fake_openrouter, shard_count="auto")) as (client, _):
            assert (client.shard_count, client.shard_ids) == (3, [0, 1, 2])
    assert sorted(c.shard for c in fake.connections) == [(0, 3), (1, 3), (2, 3)]
    assert fake.calls_to("GET", "/gateway/bot")
    assert fake.identify_violations == []


async def test_shard_ids_beyond_the_recommended_count_are_a_config_error(
    fake_openrouter: FakeOpenRouter,
) -> None:
    async with FakeDiscord(shard_count=2) as fake:
        settings = _settings(fake_openrouter, shard_count="auto", shard_ids="0,5")
        conversations = build_conversations(settings, _secrets(fake))
        client = create_client(conversations, settings, _secrets(fake))
        try:
            with pytest.raises(ConfigError, match=r"shard_ids \[5\]"):
                await client.login(fake.token)
        finally:
            await client.close()
            await conversations.close()


async def test_a_process_without_shard_0_says_it_gets_no_direct_messages(
    fake_openrouter: FakeOpenRouter, caplog: pytest.LogCaptureFixture
) -> None:
    async with FakeDiscord(shard_count=2) as fake:
        settings = _settings(fake_openrouter, shard_count=2, shard_ids="1")
        with caplog.at_level(logging.INFO, "glimpse.discord"):
            async with running(fake, settings) as (client, _):
                assert client.shard_ids == [1]
    assert [c.shard for c in fake.connections] == [(1, 2)]
    assert "running shard 1 of 2" in caplog.text
    assert "direct messages arrive on shard 0 only" in caplog.text


async def test_without_shard_settings_the_client_is_unsharded(
    fake_openrouter: FakeOpenRouter,
) -> None:
    async with FakeDiscord() as fake:
        async with running(fake, _settings(fake_openrouter)) as (client, _):
            assert type(client) is GlimpseDiscord
    assert "shard" not in fake.connections[0].payload


# --- the fake enforces what Discord does ---


async def test_the_fake_closes_an_identify_that_comes_too_soon_in_its_bucket() -> None:
    async with FakeDiscord(max_concurrency=2, identify_window_seconds=30) as fake:
        async with aiohttp.ClientSession() as http:

            async def identify(shard: list[int]) -> int | None:
                async with http.ws_connect(fake.gateway_url) as ws:
                    await ws.receive_json()  # HELLO
                    await ws.send_json({"op": 2, "d": {"token": fake.token, "shard": shard}})
                    reply = await ws.receive()
                    return ws.close_code if reply.type == aiohttp.WSMsgType.CLOSE else None

            assert await identify([0, 4]) is None  # bucket 0
            assert await identify([1, 4]) is None  # bucket 1: its own window
            assert await identify([2, 4]) == 4008  # bucket 0 again, too soon
            assert await identify([5, 4]) == 4010  # no such shard
    assert [(v.shard, v.bucket) for v in fake.identify_violations] == [((2, 4), 0)]


def test_add_guild_places_a_guild_on_the_shard_asked_for() -> None:
    fake = FakeDiscord()
    for shard in ((0, 2), (1, 2), (2, 3)):
        guild, channel = fake.add_guild("g", shard=shard)
        assert guild_shard(guild, shard[1]) == shard[0]
        assert fake.guild_of(channel) == guild


# --- fleet: claims and paced slots ---


async def _takes(pace: Callable[[], Any], times: int) -> list[float]:
    loop = asyncio.get_running_loop()

    async def take() -> float:
        await pace()
        return loop.time()

    return sorted(await asyncio.gather(*(take() for _ in range(times))))


async def test_a_fleet_claim_goes_to_one_process_until_given_back(prefix: str) -> None:
    a, b = RedisFleet(store_url(prefix)), RedisFleet(store_url(prefix))
    try:
        assert [await a.claim("job", 60), await b.claim("job", 60)] == [True, False]
        await a.release("job")
        assert [await b.claim("job", 60), await a.claim("job", 60)] == [True, False]
    finally:
        await a.aclose()
        await b.aclose()


async def test_a_paced_slot_is_taken_once_per_interval_across_processes(prefix: str) -> None:
    a, b = RedisFleet(store_url(prefix)), RedisFleet(store_url(prefix))
    try:
        both = await asyncio.gather(
            _takes(lambda: a.pace("s", 0.2), 2), _takes(lambda: b.pace("s", 0.2), 2)
        )
    finally:
        await a.aclose()
        await b.aclose()
    times = sorted(t for takes in both for t in takes)
    gaps = [later - earlier for earlier, later in zip(times, times[1:], strict=False)]
    assert len(gaps) == 3 and all(gap >= 0.19 for gap in gaps), gaps


async def test_local_pacing_spaces_takes_in_this_process() -> None:
    fleet = LocalFleet()
    times = await _takes(lambda: fleet.pace("s", 0.1), 3)
    gaps = [later - earlier for earlier, later in zip(times, times[1:], strict=False)]
    assert all(gap >= 0.09 for gap in gaps), gaps
    assert await fleet.claim("anything", 1) and await fleet.claim("anything", 1)


async def test_without_redis_claims_are_granted_and_pacing_is_local(
    caplog: pytest.LogCaptureFixture,
) -> None:
    fleet = RedisFleet(UNREACHABLE)
    try:
        assert await fleet.claim("job", 60) is True
        times = await _takes(lambda: fleet.pace("s", 0.1), 2)
    finally:
        await fleet.aclose()
    assert times[1] - times[0] >= 0.09
    assert "pacing in this process only" in caplog.text and "hunter2" not in caplog.text


# --- commands sync once per fleet ---


async def test_commands_are_synced_once_by_processes_sharing_redis(
    fake_openrouter: FakeOpenRouter, prefix: str
) -> None:
    async with FakeDiscord(shard_count=2, identify_window_seconds=WINDOW_SECONDS) as fake:
        settings = [
            _settings(fake_openrouter, store_url(prefix), shard_count=2, shard_ids=str(shard))
            for shard in (0, 1)
        ]
        async with (
            running(fake, settings[0]) as (first, _),
            running(fake, settings[1]) as (
                second,
                _,
            ),
        ):
            assert command_set_hash(first.tree, []) == command_set_hash(second.tree, [])
    assert len(fake.calls_to("PUT", "/commands")) == 1
    assert {c["name"] for c in fake.commands["global"]} >= {"ask", "reset", "model"}
    assert fake.identify_violations == []


async def test_a_failed_sync_gives_the_claim_back(
    fake_openrouter: FakeOpenRouter, prefix: str
) -> None:
    async with FakeDiscord(
        identify_window_seconds=0.01
    ) as fake:  # two clients, one after the other
        settings = _settings(fake_openrouter, store_url(prefix))
        fake.fail_next("PUT", "/commands", 403)
        async with running(fake, settings):
            pass
        async with running(fake, settings):
            pass
    assert len(fake.calls_to("PUT", "/commands")) == 2
    assert "ask" in {c["name"] for c in fake.commands["global"]}


async def test_with_sqlite_every_process_syncs_as_before(
    fake_openrouter: FakeOpenRouter, tmp_path: Any
) -> None:
    async with FakeDiscord(
        identify_window_seconds=0.01
    ) as fake:  # two clients, one after the other
        settings = _settings(fake_openrouter, f"sqlite:///{tmp_path / 'g.db'}")
        async with running(fake, settings):
            pass
        async with running(fake, settings):
            pass
    assert len(fake.calls_to("PUT", "/commands")) == 2


async def test_a_sharded_client_that_cannot_reach_the_gateway_stops_start_up(
    fake_openrouter: FakeOpenRouter, caplog: pytest.LogCaptureFixture
) -> None:
    async with FakeDiscord() as fake:
        with socket.socket() as probe:
            probe.bind(("127.0.0.1", 0))
            closed = int(probe.getsockname()[1])
        secrets = _secrets(fake).model_copy(
            update={"discord_gateway_url": f"ws://127.0.0.1:{closed}/"}
        )
        settings = _settings(fake_openrouter, shard_count=2)
        conversations = build_conversations(settings, secrets)
        await conversations.start()
        try:
            with caplog.at_level(logging.DEBUG), pytest.raises(StartupError) as raised:
                await asyncio.wait_for(run_discord(conversations, settings, secrets), timeout=20)
        finally:
            await conversations.close()
    assert "DISCORD_GATEWAY_URL" in str(raised.value)
    assert not [r for r in caplog.records if r.exc_info], "a traceback reached the log"


async def test_auto_without_gateway_bot_stops_start_up_and_a_number_carries_on(
    fake_openrouter: FakeOpenRouter, caplog: pytest.LogCaptureFixture
) -> None:
    async with FakeDiscord(identify_window_seconds=0.01) as fake:
        fake.fail_next("GET", "/gateway/bot", 403)
        settings = _settings(fake_openrouter, shard_count="auto")
        conversations = build_conversations(settings, _secrets(fake))
        client = create_client(conversations, settings, _secrets(fake))
        try:
            with pytest.raises(StartupError, match="shard_count = auto, but GET /gateway/bot"):
                await client.login(fake.token)
        finally:
            await client.close()
            await conversations.close()

        fake.fail_next("GET", "/gateway/bot", 403)
        async with running(fake, _settings(fake_openrouter, shard_count=2)) as (client, _):
            assert client.shard_ids == [0, 1]
    assert "identifying one shard at a time" in caplog.text
