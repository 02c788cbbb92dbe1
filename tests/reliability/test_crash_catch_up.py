"""kill -9 of a Discord process, messages sent while it is down: the restart answers the recent ones once, in order."""

from __future__ import annotations

import asyncio
import signal
import sqlite3
import sys
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager, closing
from pathlib import Path

from bot.inbox import OFFLINE_NOTICE
from tests.fakes.discord import DM_CHANNEL_ID, GUILD_ID, TEXT_CHANNEL_ID, FakeDiscord
from tests.fakes.openrouter import FakeOpenRouter
from tests.reliability.checks import ANSWER_PREFIX, echo
from tests.reliability.harness import ROOT, GlimpseServer, glimpse_env, until

AN_HOUR = 3600.0
OLD = 20 * 60.0  # older than the default 15 minutes


def answer(text: str, *, shared: bool = True) -> str:
    return f"{ANSWER_PREFIX}{'Alice: ' if shared else ''}{text}"


def texts(fake: FakeDiscord, channel_id: int) -> list[str]:
    return [m["content"] for m in fake.bot_messages(channel_id)]


def stored_turns(db: Path) -> int:
    """How many turns the SQLite store holds (0 before it exists)."""
    try:
        with closing(sqlite3.connect(db)) as raw:
            return int(raw.execute("SELECT count(*) FROM turns").fetchone()[0])
    except sqlite3.OperationalError:
        return 0


@asynccontextmanager
async def glimpse_discord(
    env: dict[str, str], fake: FakeDiscord, log_path: Path
) -> AsyncIterator[GlimpseServer]:
    """`glimpse run --platform discord` as a process, once it has IDENTIFYed and got its guild."""
    sessions = len(fake.connections)
    with log_path.open("wb") as log:
        process = await asyncio.create_subprocess_exec(
            sys.executable, "-m", "bot.cli", "run", "--platform", "discord",
            "--health-port", "0", "--log-level", "DEBUG",
            stdin=asyncio.subprocess.DEVNULL, stdout=log, stderr=log, env=env, cwd=ROOT,
        )  # fmt: skip
    server = GlimpseServer(process, 0, log_path)
    try:
        await until(
            lambda: (
                process.returncode is not None
                or (len(fake.connections) > sessions and fake.connections[-1].ready)
            ),
            "glimpse to connect to the fake Discord",
        )
        assert process.returncode is None, server.log()
        yield server
    finally:
        await server.stop()


async def test_discord_messages_sent_while_the_process_was_killed_are_answered_after_restart(
    fake_openrouter: FakeOpenRouter, tmp_path: Path
) -> None:
    fake_openrouter.responder = echo
    db = tmp_path / "glimpse.db"
    # The restart IDENTIFYs within Discord's 5 s identify window of the first run: allowed here.
    async with FakeDiscord(identify_window_seconds=0.0) as fake:
        env = glimpse_env(
            fake_openrouter,
            store_url=f"sqlite:///{db}",
            DISCORD_TOKEN=fake.token,
            DISCORD_API_BASE=fake.api_base,
            DISCORD_GATEWAY_URL=fake.gateway_url,
            GLIMPSE_DISCORD__GUILD_IDS=str(GUILD_ID),
            GLIMPSE_USER_MESSAGES_PER_MINUTE="0",
        )
        fake.clock_offset_seconds = -AN_HOUR  # the first exchange happened an hour ago
        async with glimpse_discord(env, fake, tmp_path / "run-1.log") as first:
            mention = await fake.user_message(TEXT_CHANNEL_ID, "what is a boat?", mention_bot=True)
            thread = int(mention["id"])
            await fake.user_message(DM_CHANNEL_ID, "hello")
            await until(
                lambda: (
                    texts(fake, thread) == [answer("what is a boat?")]
                    and texts(fake, DM_CHANNEL_ID) == [answer("hello", shared=False)]
                ),
                "the first answers",
            )
            await until(lambda: stored_turns(db) == 4, "the first answers to be remembered")
            first.kill()
            await first.process.wait()
        assert first.process.returncode == -signal.SIGKILL

        fake.clock_offset_seconds = 0.0  # while it is down:
        old = fake.posted_while_down(thread, "still there?", ago_seconds=OLD)
        fake.posted_while_down(thread, "first follow-up", ago_seconds=120)
        fake.posted_while_down(thread, "second follow-up", ago_seconds=60)
        fake.posted_while_down(DM_CHANNEL_ID, "one in private", ago_seconds=30)
        both_ways = fake.posted_while_down(DM_CHANNEL_ID, "two in private", ago_seconds=20)

        async with glimpse_discord(env, fake, tmp_path / "run-2.log") as second:
            # The gateway delivers one of them too, as soon as the new session is up.
            await fake.replay(both_ways)
            await until(
                lambda: (
                    texts(fake, thread)
                    == [
                        answer("what is a boat?"),
                        OFFLINE_NOTICE,
                        answer("first follow-up"),
                        answer("second follow-up"),
                    ]
                ),
                "the thread's missed messages answered in order, the old one noticed",
            )
            await until(
                lambda: (
                    sorted(texts(fake, DM_CHANNEL_ID))
                    == sorted(
                        answer(text, shared=False)
                        for text in ("hello", "one in private", "two in private")
                    )
                ),
                "the DM's missed messages answered",
            )
            await until(lambda: "catch-up on discord:" in second.log(), "the catch-up's summary")
        notice = next(m for m in fake.bot_messages(thread) if m["content"] == OFFLINE_NOTICE)
        assert notice["message_reference"]["message_id"] == old["id"]
        # The newest user turn of each model request: what it was asked to answer.
        asked = [str(request.body["messages"][-1]) for request in fake_openrouter.chat_requests]
        assert sum("two in private" in body for body in asked) == 1
        assert not any("still there?" in body for body in asked)
        assert len(asked) == 2 + 4  # the first two, then the four missed ones younger than 15 min
        summary = next(line for line in second.log().splitlines() if "catch-up on discord:" in line)
        assert "2 conversations checked" in summary and "(1 offline notices)" in summary
        assert "duplicate message " + both_ways["id"] in second.log()  # live first, then dropped
