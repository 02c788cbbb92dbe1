"""Discord shards in separate `glimpse run` processes on one Redis: each its guilds, memory shared, re-shards."""

from __future__ import annotations

import asyncio
import os
import signal
import sys
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass
from pathlib import Path

import aiohttp
import pytest
from prometheus_client.parser import text_string_to_metric_families

from tests.discord_support import content_text
from tests.fakes.discord import FakeDiscord
from tests.fakes.openrouter import FAKE_API_KEY, FakeOpenRouter
from tests.redis_support import delete_prefix, require_redis, store_url, unique_prefix
from tests.reliability.harness import free_port

REPO = Path(__file__).resolve().parents[1]
WINDOW_SECONDS = (
    "0.5"  # the identify window of the fake and of Glimpse, shortened from Discord's 5 s
)
START_SECONDS = 30.0


@dataclass
class Shards:
    """One `glimpse run --platform discord` process, its log, and its health port."""

    process: asyncio.subprocess.Process
    health_port: int
    log_path: Path

    def log(self) -> str:
        return self.log_path.read_text(errors="replace")

    async def get(self, path: str) -> tuple[int, str]:
        async with (
            aiohttp.ClientSession() as http,
            http.get(f"http://127.0.0.1:{self.health_port}{path}") as response,
        ):
            return response.status, await response.text()

    async def ready(self) -> None:
        """Wait until /readyz answers 200 (every shard connected); fail with the log if it exits."""
        async with asyncio.timeout(START_SECONDS):
            while True:
                if self.process.returncode is not None:
                    pytest.fail(f"glimpse run exited:\n{self.log()[-3000:]}", pytrace=False)
                try:
                    if (await self.get("/readyz"))[0] == 200:
                        return
                except aiohttp.ClientError:
                    pass
                await asyncio.sleep(0.05)

    async def answered(self) -> float:
        """`glimpse_messages_total{platform="discord", status="answered"}` of this process."""
        _, text = await self.get("/metrics")
        return sum(
            sample.value
            for family in text_string_to_metric_families(text)
            for sample in family.samples
            if sample.name == "glimpse_messages_total"
            and sample.labels == {"platform": "discord", "status": "answered"}
        )

    async def stop(self) -> None:
        if self.process.returncode is None:
            self.process.send_signal(signal.SIGTERM)
            try:
                await asyncio.wait_for(self.process.wait(), 10)
            except TimeoutError:
                self.process.kill()
                await self.process.wait()


Start = Callable[..., Awaitable[Shards]]


@pytest.fixture
async def prefix() -> AsyncIterator[str]:
    require_redis()
    name = unique_prefix()
    yield name
    await delete_prefix(name)


@pytest.fixture
async def router() -> AsyncIterator[FakeOpenRouter]:
    async with FakeOpenRouter() as fake:
        fake.responder = lambda body: f"You said: {content_text(body['messages'][-1])}"
        yield fake


@pytest.fixture
async def discord_fake() -> AsyncIterator[FakeDiscord]:
    async with FakeDiscord(shard_count=2, identify_window_seconds=float(WINDOW_SECONDS)) as fake:
        yield fake


@pytest.fixture
async def start(
    router: FakeOpenRouter, discord_fake: FakeDiscord, prefix: str, tmp_path: Path
) -> AsyncIterator[Start]:
    """Start `glimpse run --platform discord` on some shards; every process is stopped after the test."""
    started: list[Shards] = []

    async def launch(name: str, **discord: str) -> Shards:
        env = {
            k: v
            for k, v in os.environ.items()
            if not k.startswith(("GLIMPSE_", "OPENROUTER_", "DISCORD_", "SLACK_"))
        }
        env.update(
            PYTHONPATH=str(REPO),
            OPENROUTER_API_KEY=FAKE_API_KEY,
            OPENROUTER_BASE_URL=router.base_url,
            DISCORD_TOKEN=discord_fake.token,
            DISCORD_API_BASE=discord_fake.api_base,
            DISCORD_GATEWAY_URL=discord_fake.gateway_url,
            GLIMPSE_STORE_URL=store_url(prefix),
            GLIMPSE_MAX_RETRIES="1",
            GLIMPSE_USER_MESSAGES_PER_MINUTE="0",
            GLIMPSE_DISCORD__IDENTIFY_WINDOW_SECONDS=WINDOW_SECONDS,
        )
        env.update({f"GLIMPSE_DISCORD__{key.upper()}": value for key, value in discord.items()})
        port = free_port()
        log_path = tmp_path / f"{name}.log"
        with log_path.open("wb") as log:
            process = await asyncio.create_subprocess_exec(
                sys.executable, "-m", "bot.cli", "run", "--platform", "discord",
                "--health-port", str(port), "--log-level", "INFO",
                stdin=asyncio.subprocess.DEVNULL, stdout=log, stderr=log, env=env, cwd=tmp_path,
            )  # fmt: skip
        started.append(Shards(process, port, log_path))
        return started[-1]

    yield launch
    for shards in started:
        await shards.stop()
        assert "Traceback" not in shards.log(), shards.log()


async def ask(fake: FakeDiscord, channel: int, text: str, *, thread: int | None = None) -> int:
    """Mention the bot in `channel` (or write in its `thread`); wait for one more answer there. The thread id."""
    if thread is None:
        message = await fake.user_message(channel, text, mention_bot=True)
        thread = int(message["id"])
    else:
        await fake.user_message(thread, text)
    before = len(fake.bot_messages(thread))
    await fake.wait_for(lambda: len(fake.bot_messages(thread)) > before, within=20)
    return thread


async def settled(shards: Shards, answers: int) -> None:
    """Wait until the process has answered (and stored) `answers` messages in all."""
    async with asyncio.timeout(20):
        while await shards.answered() < answers:  # noqa: ASYNC110 - another process's state: polled
            await asyncio.sleep(0.05)


def said_before(router: FakeOpenRouter) -> list[str]:
    """What the last chat request carried before its new message (the memory it was given)."""
    return [content_text(m) for m in router.chat_requests[-1].body["messages"][1:-1]]


async def test_two_shard_processes_answer_their_own_guilds_share_memory_and_survive_a_kill(
    start: Start, discord_fake: FakeDiscord, router: FakeOpenRouter
) -> None:
    fake = discord_fake
    _, zero = fake.add_guild("zero", shard=(0, 2))
    _, one = fake.add_guild("one", shard=(1, 2))
    first, second = await asyncio.gather(  # started at once: IDENTIFY must still take turns
        start("shard-0", shard_count="2", shard_ids="0"),
        start("shard-1", shard_count="2", shard_ids="1"),
    )
    await asyncio.gather(first.ready(), second.ready())

    # Each answers only the guilds of its shard.
    ada = await ask(fake, zero, "my name is Ada")
    await settled(first, 1)
    bob = await ask(fake, one, "my name is Bob")
    await settled(second, 1)
    assert (await first.answered(), await second.answered()) == (1, 1)

    # One killed: the other keeps answering its guilds.
    first.process.send_signal(signal.SIGKILL)
    await first.process.wait()
    await ask(fake, one, "what is my name?", thread=bob)
    await settled(second, 2)
    assert "my name is Bob" in " ".join(said_before(router))

    # Re-shard: one process for every shard; both threads continue with their memory.
    await second.stop()
    everything = await start("all", shard_count="1")
    await everything.ready()
    await ask(fake, zero, "what is my name?", thread=ada)
    assert "my name is Ada" in " ".join(said_before(router))
    await ask(fake, one, "and who answered before?", thread=bob)
    assert (
        said_before(router)[-1] == "You said: Alice: what is my name?"
    )  # the answer before the kill
    await settled(everything, 2)

    assert [len(fake.bot_messages(thread)) for thread in (ada, bob)] == [2, 3]  # no duplicates
    identified = [c.shard for c in fake.connections if c.hello_op == 2]
    assert sorted(identified) == [(0, 1), (0, 2), (1, 2)]
    assert fake.identify_violations == []
    assert len(fake.calls_to("PUT", "/commands")) == 1  # once for the fleet, not per process
    assert "direct messages arrive on shard 0 only" in second.log()
    assert "direct messages arrive" not in first.log()
