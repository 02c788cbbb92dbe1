"""The crash run: 200 Slack messages to two processes on Redis while 5 random kill -9s hit them.

Opt-in (about a minute): `GLIMPSE_CRASH_RUN=1 python -m pytest tests/reliability -k crash_run -s`.
It prints the figures tests/RELIABILITY.md records: sent, crashes, complete answers, notices,
duplicates, lost, out of order.
"""

from __future__ import annotations

import asyncio
import os
import random
import time
from contextlib import AsyncExitStack
from dataclasses import dataclass, field
from pathlib import Path

import aiohttp
import pytest

from bot.inbox import GIVE_UP_NOTICE
from bot.store.redis import RedisStore
from tests.fakes.openrouter import FakeOpenRouter
from tests.fakes.slack import TEAM_ID, FakeSlack, Posted, event_body, sign
from tests.redis_support import delete_prefix, require_redis, store_url, unique_prefix
from tests.reliability.checks import echo
from tests.reliability.harness import (
    CHANNEL,
    USER,
    GlimpseServer,
    glimpse_slack_server,
    slack_mention,
    slack_reply,
    until,
)
from tests.reliability.test_crash import slack_env

THREADS = 40
PER_THREAD = 5  # a mention, then four follow-ups: 200 messages
SEND_SECONDS = 40.0
KILLS = 5
CHUNKS, CHUNK_SECONDS = 20, 0.05  # a one-second answer: kills land mid-stream
SETTINGS = {
    "GLIMPSE_INBOX__RESUME_AFTER_SECONDS": "2",
    "GLIMPSE_INBOX__CHECK_INTERVAL_SECONDS": "0.5",
    "GLIMPSE_LEASE_TTL_SECONDS": "2",
    "GLIMPSE_LOG_LEVEL": "INFO",
}


@dataclass
class Fleet:
    """Two glimpse processes behind one address each; a killed one is started again."""

    env: dict[str, str]
    logs: Path
    stack: AsyncExitStack
    servers: list[GlimpseServer] = field(default_factory=list)
    starts: int = 0
    kills: int = 0

    async def start(self, index: int) -> None:
        self.starts += 1
        log = self.logs / f"p{index}-{self.starts}.log"
        server = await self.stack.enter_async_context(
            glimpse_slack_server(self.env, log, log_level="INFO")
        )
        self.servers[index] = server

    async def kill_one(self, rng: random.Random) -> None:
        index = rng.randrange(len(self.servers))
        self.servers[index].kill()
        await self.servers[index].process.wait()
        self.kills += 1
        await self.start(index)


async def deliver(http: aiohttp.ClientSession, fleet: Fleet, body: str, first: int) -> None:
    """POST like Slack: to one process; if it does not answer, again to the other (a retry)."""
    for attempt in range(20):
        server = fleet.servers[(first + attempt) % len(fleet.servers)]
        try:
            headers = {**sign(body), "Content-Type": "application/json"}
            async with http.post(server.url, data=body, headers=headers) as response:
                if response.status == 200:
                    return
        except aiohttp.ClientError:
            pass
        await asyncio.sleep(0.2)
    raise AssertionError("no process took the event")


@pytest.mark.skipif(
    os.environ.get("GLIMPSE_CRASH_RUN") != "1",
    reason="the crash run (200 messages, 5 kill -9s): GLIMPSE_CRASH_RUN=1",
)
async def test_crash_run_200_messages_5_kills_over_two_processes(tmp_path: Path) -> None:
    require_redis()
    prefix = unique_prefix()
    rng = random.Random(int(os.environ.get("GLIMPSE_CRASH_SEED", "21")))
    async with FakeOpenRouter() as router, FakeSlack() as slack, AsyncExitStack() as stack:
        router.responder = echo
        router.chunks, router.chunk_delay_seconds = CHUNKS, CHUNK_SECONDS
        slack.add_user(USER, "ada")
        env = slack_env(router, slack, store_url(prefix), **SETTINGS)
        fleet = Fleet(env, tmp_path, stack, servers=[None, None])  # type: ignore[list-item]
        await asyncio.gather(fleet.start(0), fleet.start(1))
        roots = [slack_mention(f"t{t:02d}m0 question end") for t in range(THREADS)]
        plan = [(t, 0) for t in range(THREADS)] + [
            (t, m) for m in range(1, PER_THREAD) for t in range(THREADS)
        ]
        asked: dict[str, str] = {}  # marker -> thread ts
        sent: dict[str, str] = {}  # marker -> the message's own ts
        started = time.monotonic()
        kill_at = sorted(rng.uniform(3, SEND_SECONDS - 3) for _ in range(KILLS))

        async def killer() -> None:
            for moment in kill_at:
                await asyncio.sleep(max(0.0, moment - (time.monotonic() - started)))
                await fleet.kill_one(rng)

        try:
            async with aiohttp.ClientSession() as http:
                killing = asyncio.create_task(killer())
                for n, (t, m) in enumerate(plan):
                    marker = f"t{t:02d}m{m}"
                    event = (
                        roots[t]
                        if m == 0
                        else slack_reply(f"{marker} question end", roots[t]["ts"])
                    )
                    asked[marker] = roots[t]["ts"]
                    sent[marker] = event["ts"]
                    await deliver(http, fleet, event_body(event), n)
                    await asyncio.sleep(
                        max(0.0, (n + 1) * SEND_SECONDS / len(plan) - (time.monotonic() - started))
                    )
                await killing

                def settled() -> bool:
                    return all(
                        _answers(slack, ts, marker) or _gave_up(slack, ts)
                        for marker, ts in asked.items()
                    )

                try:
                    await until(settled, "every message to be answered", within=60)
                except AssertionError:
                    pass
            await _show_unanswered(asked, sent, slack, store_url(prefix))
        finally:
            await delete_prefix(prefix)

    complete = duplicates = lost = 0
    for marker, ts in asked.items():
        found = _answers(slack, ts, marker)
        done = [m for m in found if m.text.endswith(f"{marker} question end")]
        complete += bool(done)
        duplicates += max(0, len(found) - 1)
        lost += not found
    notices = sum(1 for m in slack.messages if GIVE_UP_NOTICE in m.text)
    out_of_order = sum(_out_of_order(slack, root["ts"]) for root in roots)
    marked = sum(1 for m in slack.messages if m.text.startswith("_(I was interrupted"))
    figures = (
        f"crash run: {len(asked)} messages sent, {fleet.kills} kill -9s over 2 processes, "
        f"{complete} complete answers ({marked} of them answered again after a crash), "
        f"{notices} give-up notices, {duplicates} duplicate answers, {lost} messages without an "
        f"answer, {out_of_order} threads with answers out of order; "
        f"{len(router.chat_requests)} model calls"
    )
    print(figures)
    assert fleet.kills == KILLS
    assert duplicates == 0 and lost == 0


async def _show_unanswered(
    asked: dict[str, str], sent: dict[str, str], slack: FakeSlack, url: str
) -> None:
    """For the record: each message without an answer, and what the inbox says of it."""
    store = RedisStore(url)
    await store.open()
    try:
        for marker, ts in asked.items():
            if not _answers(slack, ts, marker):
                entry = await store.inbox_get(f"slack:{TEAM_ID}:{CHANNEL}:{sent[marker]}")
                print(f"unanswered: {marker}, inbox entry: {entry}")
    finally:
        await store.close()


def _answers(slack: FakeSlack, thread_ts: str, marker: str) -> list[Posted]:
    return [m for m in slack.thread(CHANNEL, thread_ts) if f"You asked: ada: {marker} " in m.text]


def _gave_up(slack: FakeSlack, thread_ts: str) -> bool:
    return any(GIVE_UP_NOTICE in m.text for m in slack.thread(CHANNEL, thread_ts))


def _out_of_order(slack: FakeSlack, thread_ts: str) -> bool:
    order = [
        int(m.text.split("You asked: ada: t")[1][3])
        for m in slack.thread(CHANNEL, thread_ts)
        if "You asked: ada: t" in m.text
    ]
    return order != sorted(order)
