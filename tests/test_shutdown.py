"""Graceful shutdown: draining the core in process, the signal path, and `glimpse run` under SIGTERM."""

from __future__ import annotations

import asyncio
import os
import signal
import socket
import sys
from collections.abc import AsyncIterator, Callable
from pathlib import Path

import aiohttp
import pytest

from bot.config import ConfigError, Settings
from bot.conversations import DRAINING_NOTICE, Conversations, Status
from bot.images import ImagePipeline
from bot.messages import ConversationKey, IncomingMessage
from bot.openrouter import OpenRouterClient
from bot.shutdown import serve_until_signalled
from bot.store import MemoryStore
from tests.fakes.openrouter import FAKE_API_KEY, FakeOpenRouter
from tests.test_conversations import RecordingSink

WAIT_SECONDS = 10.0
POLL_SECONDS = 0.01
_ids = iter(range(10**9))


@pytest.fixture
async def fake() -> AsyncIterator[FakeOpenRouter]:
    async with FakeOpenRouter() as server:
        yield server


@pytest.fixture
async def service(fake: FakeOpenRouter) -> AsyncIterator[Conversations]:
    settings = Settings(base_url=fake.base_url, store_url="memory://", user_messages_per_minute=0)
    conversations = Conversations(
        settings,
        store=MemoryStore(),
        client=OpenRouterClient(settings, FAKE_API_KEY),
        images=ImagePipeline(settings),
    )
    await conversations.start()
    yield conversations
    await conversations.close()


def _message(thread: str) -> IncomingMessage:
    return IncomingMessage(
        key=ConversationKey("test", "w1", "c1", thread),
        message_id=f"m{next(_ids)}",
        author_id="u1",
        text="hello",
    )


async def _until(condition: Callable[[], object], what: str) -> None:
    for _ in range(int(WAIT_SECONDS / POLL_SECONDS)):
        if condition():
            return
        await asyncio.sleep(POLL_SECONDS)
    raise AssertionError(f"gave up waiting for {what}")


# --- the core drains ---


async def test_draining_finishes_answers_in_flight_and_refuses_new_ones(
    service: Conversations, fake: FakeOpenRouter
) -> None:
    fake.first_token_latency_seconds = 0.3
    sinks = [RecordingSink() for _ in range(3)]
    answers = [
        asyncio.create_task(service.handle(_message(f"t{i}"), sink)) for i, sink in enumerate(sinks)
    ]
    await _until(lambda: fake.active_streams == 3, "three answers streaming")

    drain = asyncio.create_task(service.drain(timeout_seconds=5))
    await asyncio.sleep(0)
    late_sink = RecordingSink()
    late = await service.handle(_message("late"), late_sink)

    assert service.draining
    assert (late.status, late_sink.notices, late_sink.started) == (
        Status.DRAINING,
        [DRAINING_NOTICE],
        False,
    )
    assert await drain == 0
    assert [(await a).status for a in answers] == [Status.ANSWERED] * 3
    assert all(sink.final for sink in sinks)
    assert len(fake.chat_requests) == 3  # the late message never reached the model


async def test_draining_gives_up_on_answers_after_the_timeout(
    service: Conversations, fake: FakeOpenRouter
) -> None:
    fake.hang_next()
    stuck = asyncio.create_task(service.handle(_message("t1"), RecordingSink()))
    await _until(lambda: fake.chat_requests, "the request to hang")
    loop = asyncio.get_running_loop()
    started = loop.time()

    assert await service.drain(timeout_seconds=0.3) == 1
    assert loop.time() - started < 2
    stuck.cancel()


# --- the signal path ---


async def _wait_forever(events: list[str], name: str) -> None:
    events.append(f"{name} up")
    try:
        await asyncio.Event().wait()
    finally:
        events.append(f"{name} closed")


async def test_sigterm_drains_while_platforms_are_up_then_closes_them() -> None:
    events: list[str] = []

    async def drain() -> None:
        events.append("drain started")
        await asyncio.sleep(0.1)
        events.append("drain finished")

    serving = asyncio.create_task(
        serve_until_signalled(
            [_wait_forever(events, "slack"), _wait_forever(events, "discord")], drain=drain
        )
    )
    await _until(lambda: len(events) == 2, "both platforms up")
    os.kill(os.getpid(), signal.SIGTERM)
    await asyncio.wait_for(serving, WAIT_SECONDS)

    assert events[2:4] == ["drain started", "drain finished"]
    assert sorted(events[4:]) == ["discord closed", "slack closed"]
    assert signal.getsignal(signal.SIGTERM) == signal.SIG_DFL  # our handler is gone


async def test_a_second_signal_stops_waiting_for_the_drain() -> None:
    events: list[str] = []
    drained = asyncio.Event()

    async def drain() -> None:
        drained.set()
        await asyncio.sleep(60)

    serving = asyncio.create_task(
        serve_until_signalled([_wait_forever(events, "slack")], drain=drain)
    )
    await _until(lambda: events, "the platform up")
    os.kill(os.getpid(), signal.SIGINT)
    await asyncio.wait_for(drained.wait(), WAIT_SECONDS)
    os.kill(os.getpid(), signal.SIGINT)
    await asyncio.wait_for(serving, 5)
    assert events == ["slack up", "slack closed"]


async def test_a_failing_platform_stops_the_others_and_is_raised() -> None:
    events: list[str] = []

    async def broken() -> None:
        await asyncio.sleep(0.05)
        raise ConfigError("Slack refused SLACK_BOT_TOKEN")

    async def drain() -> None:
        events.append("drained")

    with pytest.raises(ConfigError, match="refused"):
        await serve_until_signalled([_wait_forever(events, "discord"), broken()], drain=drain)
    assert events == ["discord up", "discord closed"]  # no drain: nothing was signalled


# --- the real process ---


def _free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


async def _get(url: str) -> int:
    async with aiohttp.ClientSession() as http, http.get(url) as response:
        return response.status


async def _post_when_up(url: str, body: str, headers: dict[str, str]) -> int:
    async with aiohttp.ClientSession() as http, asyncio.timeout(WAIT_SECONDS):
        while True:
            try:
                async with http.post(url, data=body, headers=headers) as response:
                    return response.status
            except aiohttp.ClientConnectionError:
                await asyncio.sleep(0.05)


async def test_glimpse_run_finishes_the_answer_in_flight_on_sigterm_and_exits_0(
    fake: FakeOpenRouter, tmp_path: Path
) -> None:
    slack_fakes = pytest.importorskip("tests.fakes.slack")
    fake.reply = "Forty-two."
    fake.first_token_latency_seconds = 1.0
    slack_port, health_port = _free_port(), _free_port()
    async with slack_fakes.FakeSlack() as slack:
        env = {
            **{k: v for k, v in os.environ.items() if not k.startswith(("GLIMPSE_", "SLACK_"))},
            "OPENROUTER_API_KEY": FAKE_API_KEY,
            "OPENROUTER_BASE_URL": fake.base_url,
            "SLACK_BOT_TOKEN": slack_fakes.BOT_TOKEN,
            "SLACK_SIGNING_SECRET": slack_fakes.SIGNING_SECRET,
            "SLACK_API_URL": slack.api_url,
            "GLIMPSE_STORE_URL": f"sqlite:///{tmp_path / 'glimpse.db'}",
            "GLIMPSE_HEALTH_HOST": "127.0.0.1",
        }
        process = await asyncio.create_subprocess_exec(
            sys.executable, "-m", "bot.cli", "run", "--platform", "slack", "--http",
            "--port", str(slack_port), "--health-port", str(health_port),
            stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE, env=env,
        )  # fmt: skip
        try:
            body = slack_fakes.command_body(
                "/ask", "meaning?", channel="C0GENERAL1", user="U0ALICE01",
                response_url=slack.response_url(),
            )  # fmt: skip
            headers = {
                **slack_fakes.sign(body),
                "Content-Type": "application/x-www-form-urlencoded",
            }
            assert (
                await _post_when_up(f"http://127.0.0.1:{slack_port}/slack/events", body, headers)
                == 200
            )
            assert await _get(f"http://127.0.0.1:{health_port}/healthz") == 200
            await _until(lambda: fake.active_streams == 1, "the answer to start streaming")

            process.send_signal(signal.SIGTERM)
            _, err = await asyncio.wait_for(process.communicate(), WAIT_SECONDS)
        finally:
            if process.returncode is None:
                process.kill()
                await process.wait()
        answers = [m.text for m in slack.messages if m.thread_ts is not None]

    assert process.returncode == 0, err.decode()
    assert answers == ["Forty-two."]
    assert "received SIGTERM: draining" in err.decode()
