"""kill -9 of one of two processes, and a message that kills the process every time: answered once, or given up."""

from __future__ import annotations

import asyncio
import signal
from contextlib import AsyncExitStack
from functools import partial
from pathlib import Path

from bot.inbox import GIVE_UP_NOTICE
from tests.fakes.openrouter import FakeOpenRouter
from tests.fakes.slack import FakeSlack, Posted, event_body
from tests.redis_support import delete_prefix, require_redis, store_url, unique_prefix
from tests.reliability.checks import echo
from tests.reliability.harness import CHANNEL, USER, glimpse_slack_server, slack_mention, until
from tests.reliability.secrets_watch import WATCH
from tests.reliability.test_crash import SLOW_CHUNK_SECONDS, SLOW_CHUNKS, _post, slack_env

POISON = "POISON-PILL"
STORY_START = "You asked: ada: tell"
# Short enough for a test: taken for abandoned after 1 s without a heartbeat, looked for 5 times a
# second, the conversation's lease gone 1 s after its holder died.
QUICK_RESUME = {
    "GLIMPSE_INBOX__RESUME_AFTER_SECONDS": "1",
    "GLIMPSE_INBOX__CHECK_INTERVAL_SECONDS": "0.2",
    "GLIMPSE_LEASE_TTL_SECONDS": "1",
}


def asked(router: FakeOpenRouter, text: str) -> int:
    """How many chat requests carried `text` in their newest message."""
    return sum(text in str(r.body["messages"][-1]["content"]) for r in router.chat_requests)


def _asked_times(router: FakeOpenRouter, times: int) -> bool:
    return asked(router, POISON) == times


def answers(slack: FakeSlack, thread_ts: str, text: str) -> list[Posted]:
    return [m for m in slack.thread(CHANNEL, thread_ts) if text in m.text]


async def test_two_processes_on_redis_one_killed_mid_answer_the_other_finishes_it_in_place(
    fake_openrouter: FakeOpenRouter, tmp_path: Path
) -> None:
    require_redis()
    prefix = unique_prefix()
    fake_openrouter.responder = echo
    story = "You asked: ada: tell me a long story"
    try:
        async with FakeSlack() as slack:
            slack.add_user(USER, "ada")
            env = slack_env(fake_openrouter, slack, store_url(prefix), **QUICK_RESUME)
            async with AsyncExitStack() as stack:
                doomed, survivor = await asyncio.gather(  # both start at once
                    stack.enter_async_context(glimpse_slack_server(env, tmp_path / "a.log")),
                    stack.enter_async_context(glimpse_slack_server(env, tmp_path / "b.log")),
                )
                fake_openrouter.chunks = SLOW_CHUNKS
                fake_openrouter.chunk_delay_seconds = SLOW_CHUNK_SECONDS
                question = slack_mention("tell me a long story")
                await _post(doomed.url, event_body(question))
                await until(
                    lambda: any(m.edits for m in answers(slack, question["ts"], STORY_START)),
                    "the story to stream",
                )
                doomed.kill()
                await doomed.process.wait()
                [half] = answers(slack, question["ts"], STORY_START)
                assert half.text != story
                fake_openrouter.chunks, fake_openrouter.chunk_delay_seconds = 8, 0.0
                await until(lambda: half.text.endswith(story), "the survivor to finish it")
                assert survivor.process.returncode is None
            assert doomed.process.returncode == -signal.SIGKILL
            assert answers(slack, question["ts"], STORY_START) == [half]  # the same message
            assert half.text.startswith("_(I was interrupted")
            assert asked(fake_openrouter, "tell me a long story") == 2
            assert "answering" in survivor.log() and "again (attempt 2" in survivor.log()
            WATCH.scan("slack", "\n".join(m.text for m in slack.messages))
    finally:
        await delete_prefix(prefix)


async def test_a_message_that_crashes_the_process_every_time_is_given_up_with_a_notice(
    fake_openrouter: FakeOpenRouter, tmp_path: Path
) -> None:
    fake_openrouter.responder = echo
    fake_openrouter.chunks = SLOW_CHUNKS
    fake_openrouter.chunk_delay_seconds = SLOW_CHUNK_SECONDS
    db = tmp_path / "glimpse.db"
    async with FakeSlack() as slack:
        env = slack_env(fake_openrouter, slack, f"sqlite:///{db}", GLIMPSE_INBOX__MAX_ATTEMPTS="2")
        poison = slack_mention(f"{POISON} what is this?")
        for attempt in (1, 2):  # the message, then its one retry, each kill the process
            async with glimpse_slack_server(env, tmp_path / f"run-{attempt}.log") as server:
                if attempt == 1:
                    await _post(server.url, event_body(poison))
                await until(partial(_asked_times, fake_openrouter, attempt), "the poison")
                server.kill()
                await server.process.wait()
        async with glimpse_slack_server(env, tmp_path / "run-3.log") as server:
            await until(
                lambda: answers(slack, poison["ts"], "couldn't finish"), "the give-up notice"
            )
            after = slack_mention("and this one?")
            await _post(server.url, event_body(after))
            await until(lambda: answers(slack, after["ts"], "and this one?"), "the next answer")
            assert server.process.returncode is None
        assert asked(fake_openrouter, POISON) == 2  # not a third time
        [notice] = answers(slack, poison["ts"], "couldn't finish")
        assert notice.text == GIVE_UP_NOTICE
        assert not answers(slack, poison["ts"], f"You asked: {POISON}")
