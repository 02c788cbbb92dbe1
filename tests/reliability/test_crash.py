"""kill -9 while an answer streams: no half turn is remembered, and a restart answers it again in its own message."""

from __future__ import annotations

import asyncio
import signal
import sqlite3
import sys
from contextlib import closing
from pathlib import Path

import aiohttp

from tests.fakes.openrouter import FakeOpenRouter
from tests.fakes.slack import BOT_TOKEN, SIGNING_SECRET, FakeSlack, Posted, event_body, sign
from tests.reliability.checks import echo
from tests.reliability.harness import (
    CHANNEL,
    ROOT,
    USER,
    glimpse,
    glimpse_env,
    glimpse_slack_server,
    slack_mention,
    slack_reply,
    until,
)
from tests.reliability.secrets_watch import WATCH

SLOW_CHUNKS = 40
SLOW_CHUNK_SECONDS = 0.1  # a 4-second answer: plenty of time to kill it halfway
STORY = "You asked: ada: tell me a long story"


def turns(db: Path) -> list[tuple[str, str]]:
    """(role, text) of every stored turn, oldest first, read with plain sqlite3."""
    with closing(sqlite3.connect(db)) as raw:
        assert raw.execute("PRAGMA integrity_check").fetchone() == ("ok",)
        return list(raw.execute("SELECT role, text FROM turns ORDER BY id"))


def said(fake: FakeOpenRouter) -> list[str]:
    return [str(m["content"]) for m in fake.chat_requests[-1].body["messages"][1:]]


async def test_kill_9_during_glimpse_chat_leaves_no_half_turn_and_the_next_chat_works(
    fake_openrouter: FakeOpenRouter, tmp_path: Path
) -> None:
    fake_openrouter.responder = echo
    db = tmp_path / "glimpse.db"
    env = glimpse_env(fake_openrouter, store_url=f"sqlite:///{db}")
    assert (await glimpse("chat", "-m", "my name is Ada", env=env)).code == 0

    fake_openrouter.chunks, fake_openrouter.chunk_delay_seconds = SLOW_CHUNKS, SLOW_CHUNK_SECONDS
    process = await asyncio.create_subprocess_exec(
        sys.executable, "-m", "bot.cli", "chat", "-m", "tell me a long story",
        stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE, env=env, cwd=ROOT,
    )  # fmt: skip
    assert process.stdout is not None
    streamed = await asyncio.wait_for(process.stdout.read(8), 30)  # the answer is on screen…
    process.send_signal(signal.SIGKILL)  # …and the process dies mid-sentence
    await process.wait()
    assert streamed and process.returncode == -signal.SIGKILL

    assert turns(db) == [("user", "my name is Ada"), ("assistant", "You asked: my name is Ada")]
    fake_openrouter.chunks, fake_openrouter.chunk_delay_seconds = 8, 0.0
    after = await glimpse("chat", "-m", "what is my name?", env=env)
    assert after.code == 0 and after.out.startswith("You asked: ")
    assert said(fake_openrouter) == [
        "my name is Ada",
        "You asked: my name is Ada",
        "what is my name?",
    ]
    assert len(turns(db)) == 4


async def test_kill_9_of_the_slack_http_process_mid_answer_then_a_restart_finishes_it_in_place(
    fake_openrouter: FakeOpenRouter, tmp_path: Path
) -> None:
    fake_openrouter.responder = echo
    db = tmp_path / "glimpse.db"
    async with FakeSlack() as slack:
        slack.add_user(USER, "ada")  # channel messages reach the model under the asker's name
        env = slack_env(fake_openrouter, slack, f"sqlite:///{db}")
        first = slack_mention("my name is Ada")
        async with glimpse_slack_server(env, tmp_path / "run-1.log") as server:
            await _post(server.url, event_body(first))
            await until(lambda: len(turns_or_none(db)) == 2, "the first exchange to be stored")

            fake_openrouter.chunks = SLOW_CHUNKS
            fake_openrouter.chunk_delay_seconds = SLOW_CHUNK_SECONDS
            await _post(server.url, event_body(slack_reply("tell me a long story", first["ts"])))
            await until(lambda: _edits_in_thread(slack, first["ts"]) >= 1, "the story to stream")
            server.kill()
            await server.process.wait()
        assert server.process.returncode == -signal.SIGKILL

        assert [role for role, _ in turns(db)] == ["user", "assistant"]  # no half turn
        [partial] = _story(slack, first["ts"])
        assert partial.text != STORY
        fake_openrouter.chunks, fake_openrouter.chunk_delay_seconds = 8, 0.0
        async with glimpse_slack_server(env, tmp_path / "run-2.log") as server:
            # On start, the answer the crash cut short is given again, in the same message.
            await until(lambda: len(turns_or_none(db)) == 4, "the story to be answered again")
            await _post(server.url, event_body(slack_reply("what is my name?", first["ts"])))
            await until(lambda: len(turns_or_none(db)) == 6, "the follow-up to be answered")
        assert _story(slack, first["ts"]) == [partial]  # one message, now marked and complete
        assert partial.text.startswith("_(I was interrupted") and partial.text.endswith(STORY)
        assert said(fake_openrouter) == [
            "ada: my name is Ada",
            "You asked: ada: my name is Ada",
            "ada: tell me a long story",
            STORY,
            "ada: what is my name?",
        ]
        WATCH.scan("slack thread", "\n".join(m.text for m in slack.messages))


def slack_env(
    router: FakeOpenRouter, slack: FakeSlack, store_url: str, **extra: str
) -> dict[str, str]:
    return glimpse_env(
        router,
        store_url=store_url,
        SLACK_BOT_TOKEN=BOT_TOKEN,
        SLACK_SIGNING_SECRET=SIGNING_SECRET,
        SLACK_API_URL=slack.api_url,
        GLIMPSE_USER_MESSAGES_PER_MINUTE="0",
        GLIMPSE_SLACK__UPDATE_INTERVAL_SECONDS="0.2",
        **extra,
    )


def turns_or_none(db: Path) -> list[tuple[str, str]]:
    """Stored turns, or [] while the file or its table does not exist yet."""
    try:
        return turns(db) if db.exists() else []
    except sqlite3.OperationalError:
        return []


def _story(slack: FakeSlack, thread_ts: str) -> list[Posted]:
    return [m for m in slack.thread(CHANNEL, thread_ts) if "You asked: ada: tell" in m.text]


def _edits_in_thread(slack: FakeSlack, thread_ts: str) -> int:
    return sum(m.edits for m in _story(slack, thread_ts))


async def _post(url: str, body: str) -> None:
    headers = {**sign(body), "Content-Type": "application/json"}
    async with aiohttp.ClientSession() as http, http.post(url, data=body, headers=headers) as resp:
        assert resp.status == 200
