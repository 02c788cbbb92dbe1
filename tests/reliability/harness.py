"""Rigs the reliability tests share: the core with a recording sink, the Slack app over HTTP, glimpse processes."""

from __future__ import annotations

import asyncio
import itertools
import signal
import socket
import sys
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import aiohttp
from pydantic import SecretStr

from adapters.slack import SlackAdapter
from bot.app import build_conversations
from bot.config import Secrets, Settings, SlackSettings
from bot.conversations import Conversations
from bot.messages import ConversationKey, ImageRef, IncomingMessage
from tests import cli_support
from tests.cli_support import Run, run_glimpse
from tests.discord_support import DiscordEnv, connected_discord
from tests.fakes.discord import GUILD_ID
from tests.fakes.openrouter import FAKE_API_KEY, FakeOpenRouter
from tests.fakes.sink import RecordingSink
from tests.fakes.slack import (
    BOT_TOKEN,
    BOT_USER_ID,
    SIGNING_SECRET,
    TEAM_ID,
    FakeSlack,
    Posted,
    event_body,
    sign,
)
from tests.reliability.secrets_watch import WATCH

__all__ = [
    "CHANNEL",
    "ROOT",
    "USER",
    "DiscordEnv",
    "GlimpseServer",
    "RecordingSink",
    "Run",
    "SlackRig",
    "core_settings",
    "discord_env",
    "eventually",
    "free_port",
    "glimpse",
    "glimpse_env",
    "glimpse_slack_server",
    "incoming",
    "running_core",
    "slack_mention",
    "slack_reply",
    "slack_rig",
    "slack_ts",
    "until",
]

ROOT = Path(__file__).resolve().parents[2]
CHANNEL = "C0GENERAL1"
USER = "U0ALICE01"
WAIT_SECONDS = 15.0
POLL_SECONDS = 0.01
PROCESS_TIMEOUT_SECONDS = 60.0
STOP_TIMEOUT_SECONDS = 15.0


# --- the core ---


def core_settings(router: FakeOpenRouter, **overrides: Any) -> Settings:
    """Settings for the core against the fake: quick retries and timeouts, no per-user limit."""
    values: dict[str, Any] = {
        "base_url": router.base_url,
        "store_url": "memory://",
        "max_retries": 1,
        "request_timeout_seconds": 5,
        "user_messages_per_minute": 0,
        "retention_days": 0,
        **overrides,
    }
    return Settings(**values)


@asynccontextmanager
async def running_core(settings: Settings) -> AsyncIterator[Conversations]:
    conversations = build_conversations(
        settings, Secrets(openrouter_api_key=SecretStr(FAKE_API_KEY))
    )
    await conversations.start()
    try:
        yield conversations
    finally:
        await conversations.close()


_message_ids = itertools.count(1)


def incoming(
    text: str,
    *,
    thread: str = "t1",
    channel: str = "c1",
    user: str = "u1",
    images: tuple[ImageRef, ...] = (),
    files: tuple[ImageRef, ...] = (),
    other_files: tuple[str, ...] = (),
    message_id: str | None = None,
) -> IncomingMessage:
    return IncomingMessage(
        key=ConversationKey("test", "w1", channel, thread),
        message_id=message_id or f"m{next(_message_ids)}",
        author_id=user,
        text=text,
        images=images,
        files=files,
        other_files=other_files,
    )


async def until(condition: Callable[[], object], what: str, within: float = WAIT_SECONDS) -> None:
    """Poll until `condition()` is truthy; fail naming `what` after `within` seconds."""
    deadline = time.monotonic() + within
    while not condition():
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {within:g} s waiting for {what}")
        await asyncio.sleep(POLL_SECONDS)


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


# --- Slack over HTTP, in this process ---

_slack_ts = itertools.count(700_000)


def slack_ts() -> str:
    """A fresh message ts (the fake Slack numbers its own messages from 1)."""
    return f"{int(time.time())}.{next(_slack_ts):06d}"


def slack_mention(
    text: str,
    *,
    channel: str = CHANNEL,
    user: str = USER,
    files: list[dict[str, Any]] | None = None,
    thread_ts: str | None = None,
) -> dict[str, Any]:
    event: dict[str, Any] = {
        "type": "app_mention",
        "user": user,
        "text": f"<@{BOT_USER_ID}> {text}",
        "ts": slack_ts(),
        "channel": channel,
        "team": TEAM_ID,
    }
    if files is not None:
        event["files"] = files
    if thread_ts:
        event["thread_ts"] = thread_ts
    return event


def slack_reply(
    text: str, thread_ts: str, *, channel: str = CHANNEL, user: str = USER
) -> dict[str, Any]:
    """A follow-up in a thread, without a mention."""
    return {
        "type": "message",
        "user": user,
        "text": text,
        "ts": slack_ts(),
        "thread_ts": thread_ts,
        "channel": channel,
        "channel_type": "channel",
        "team": TEAM_ID,
    }


@dataclass
class SlackRig:
    """The Slack adapter served over real HTTP on 127.0.0.1, wired to the real core and both fakes."""

    slack: FakeSlack
    router: FakeOpenRouter
    adapter: SlackAdapter
    conversations: Conversations
    url: str
    http: aiohttp.ClientSession

    async def post(
        self, body: str | bytes, headers: dict[str, str], content_type: str = "application/json"
    ) -> int:
        async with self.http.post(
            self.url, data=body, headers={**headers, "Content-Type": content_type}
        ) as response:
            await response.read()
            return response.status

    async def event(self, event: dict[str, Any], *, event_id: str | None = None) -> int:
        body = event_body(event, event_id=event_id)
        return await self.post(body, sign(body))

    async def settle(self, within: float = WAIT_SECONDS) -> None:
        await asyncio.wait_for(self.adapter.drain(), timeout=within)

    def thread(self, ts: str, channel: str = CHANNEL) -> list[str]:
        """The texts of the bot's messages in a thread, oldest first."""
        return [posted.text for posted in self.slack.thread(channel, ts)]

    def everything_posted(self) -> list[Posted]:
        return [posted for posted in self.slack.messages if not posted.deleted]


@asynccontextmanager
async def slack_rig(
    *, slack_options: dict[str, Any] | None = None, **overrides: Any
) -> AsyncIterator[SlackRig]:
    """A SlackRig with settings `overrides` (memory store, no per-user limit unless given)."""
    async with FakeOpenRouter() as router, FakeSlack() as slack:
        options = {"update_interval_seconds": 0.05, **(slack_options or {})}
        settings = core_settings(router, slack=SlackSettings(**options), **overrides)
        secrets = Secrets(
            openrouter_api_key=SecretStr(FAKE_API_KEY),
            slack_bot_token=SecretStr(BOT_TOKEN),
            slack_signing_secret=SecretStr(SIGNING_SECRET),
            slack_api_url=slack.api_url,
        )
        conversations = build_conversations(settings, secrets)
        await conversations.start()
        adapter = SlackAdapter(conversations, settings, secrets, http=True)
        await adapter.check_auth()
        port = await adapter.serve_http("127.0.0.1", 0)
        try:
            async with aiohttp.ClientSession() as http:
                url = f"http://127.0.0.1:{port}/slack/events"
                yield SlackRig(slack, router, adapter, conversations, url, http)
        finally:
            await adapter.close()
            await conversations.close()


# --- Discord through the gateway fake, in this process ---


@asynccontextmanager
async def discord_env(router: FakeOpenRouter, **overrides: Any) -> AsyncIterator[DiscordEnv]:
    """A connected client (commands synced to the fake's guild) on the reliability settings."""
    settings = core_settings(router, discord={"guild_ids": [str(GUILD_ID)]}, **overrides)
    async with connected_discord(router, settings) as env:
        yield env


async def eventually(check: Callable[[], Awaitable[bool]], what: str) -> None:
    """Await `check()` until it is true; fail naming `what` after WAIT_SECONDS."""
    deadline = time.monotonic() + WAIT_SECONDS
    while not await check():
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {WAIT_SECONDS:g} s waiting for {what}")
        await asyncio.sleep(POLL_SECONDS)


# --- glimpse as a process ---


def glimpse_env(router: FakeOpenRouter, *, store_url: str, **extra: str) -> dict[str, str]:
    """A clean environment for `python -m bot.cli` against the fake OpenRouter, no retention pruning."""
    return cli_support.glimpse_env(
        router, store_url=store_url, **{"GLIMPSE_RETENTION_DAYS": "0", **extra}
    )


async def glimpse(*args: str | bytes, env: dict[str, str], stdin: str = "") -> Run:
    """Run `python -m bot.cli COMMAND --log-level DEBUG ARGS` to the end; its output is checked for secrets."""
    command, *rest = args
    run = await run_glimpse(
        command,
        "--log-level",
        "DEBUG",
        *rest,
        env=env,
        stdin=stdin,
        seconds=PROCESS_TIMEOUT_SECONDS,
    )
    WATCH.scan("glimpse stdout", run.out)
    WATCH.scan("glimpse stderr", run.err)
    return run


@dataclass
class GlimpseServer:
    """`glimpse run --platform slack --http` as a process, its log in a file."""

    process: asyncio.subprocess.Process
    port: int
    log_path: Path
    stopped: bool = field(default=False)

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}/slack/events"

    def log(self) -> str:
        return self.log_path.read_text(errors="replace")

    def kill(self) -> None:
        """kill -9: no drain, no cleanup."""
        self.process.send_signal(signal.SIGKILL)

    async def stop(self) -> int:
        """SIGTERM (drain, then exit); SIGKILL if it will not go. The exit code."""
        if self.process.returncode is None:
            self.process.send_signal(signal.SIGTERM)
            try:
                await asyncio.wait_for(self.process.wait(), STOP_TIMEOUT_SECONDS)
            except TimeoutError:
                self.process.kill()
                await self.process.wait()
        if not self.stopped:
            self.stopped = True
            WATCH.scan("glimpse run log", self.log())
        assert self.process.returncode is not None
        return self.process.returncode


@asynccontextmanager
async def glimpse_slack_server(
    env: dict[str, str], log_path: Path, *, log_level: str = "DEBUG"
) -> AsyncIterator[GlimpseServer]:
    """Start the Slack HTTP app in its own process and wait until it accepts connections."""
    port = free_port()
    with log_path.open("wb") as log:
        process = await asyncio.create_subprocess_exec(
            sys.executable,
            "-m",
            "bot.cli",
            "run",
            "--platform",
            "slack",
            "--http",
            "--port",
            str(port),
            "--health-port",
            "0",
            "--log-level",
            log_level,
            stdin=asyncio.subprocess.DEVNULL,
            stdout=log,
            stderr=log,
            env=env,
            cwd=ROOT,
        )
    server = GlimpseServer(process, port, log_path)
    try:
        await _wait_until_listening(server)
        yield server
    finally:
        await server.stop()


async def _wait_until_listening(server: GlimpseServer) -> None:
    deadline = time.monotonic() + PROCESS_TIMEOUT_SECONDS
    while time.monotonic() < deadline:
        if server.process.returncode is not None:
            raise AssertionError(f"glimpse run exited early:\n{server.log()}")
        try:
            _, writer = await asyncio.open_connection("127.0.0.1", server.port)
        except OSError:
            await asyncio.sleep(0.05)
            continue
        writer.close()
        await writer.wait_closed()
        return
    raise AssertionError(f"glimpse run never listened on {server.port}:\n{server.log()}")
