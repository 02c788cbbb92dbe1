"""The remote side in its own process: fake OpenRouter, fake Slack, and the Slack request driver."""

from __future__ import annotations

import asyncio
import os
import time
from dataclasses import dataclass
from multiprocessing.connection import Connection
from typing import Any

import aiohttp

from benchmarks.child import PipedChild
from benchmarks.common import ModelShape
from benchmarks.paced import PacedOpenRouter
from tests.fakes.openrouter import FakeOpenRouter
from tests.fakes.slack import BOT_USER_ID, TEAM_ID, FakeSlack, event_body, sign

__all__ = ["Servers"]

SLACK_CHANNEL = "C0BENCH01"
SLACK_USER = "U0BENCHER"
START_TIMEOUT_SECONDS = 30.0
FINAL_MARK = "END."  # the last words of every fake reply: its arrival means the answer is complete


@dataclass(frozen=True, slots=True)
class Urls:
    """Where the servers process listens."""

    openrouter: str
    slack_api: str
    pid: int


class BenchSlack(FakeSlack):
    """FakeSlack that notes when each watched thread first shows the complete answer."""

    def __init__(self) -> None:
        super().__init__()
        self.watched: dict[str, asyncio.Future[float]] = {}
        self.add_user(SLACK_USER, "bencher")  # named like a real person (users.info answers)

    def _m_chat_postMessage(self, args: dict[str, Any]) -> dict[str, Any]:
        reply = super()._m_chat_postMessage(args)
        self._check(args.get("thread_ts"), str(args.get("text", "")))
        return reply

    def _m_chat_update(self, args: dict[str, Any]) -> dict[str, Any]:
        reply = super()._m_chat_update(args)
        self._check_message(args)
        return reply

    # Slack's own streaming (Glimpse's default): the streamed message's text as it grows.
    def _m_chat_appendStream(self, args: dict[str, Any]) -> dict[str, Any]:
        reply = super()._m_chat_appendStream(args)
        self._check_message(args)
        return reply

    def _m_chat_stopStream(self, args: dict[str, Any]) -> dict[str, Any]:
        reply = super()._m_chat_stopStream(args)
        self._check_message(args)
        return reply

    def _check_message(self, args: dict[str, Any]) -> None:
        message = self._find(str(args.get("channel", "")), str(args.get("ts")))
        if message is not None:
            self._check(message.thread_ts, message.text)

    def _check(self, thread_ts: object, text: str) -> None:
        future = self.watched.get(str(thread_ts))
        if future is not None and not future.done() and FINAL_MARK in text:
            future.set_result(time.perf_counter())


async def _one_mention(http: aiohttp.ClientSession, slack: BenchSlack, url: str, ts: str) -> float:
    event = {
        "type": "app_mention",
        "user": SLACK_USER,
        "text": f"<@{BOT_USER_ID}> what is in the photo of the lake, in a few sentences?",
        "ts": ts,
        "channel": SLACK_CHANNEL,
        "team": TEAM_ID,
        "event_ts": ts,
    }
    body = event_body(event)
    done = asyncio.get_running_loop().create_future()
    slack.watched[ts] = done
    headers = {**sign(body), "Content-Type": "application/json"}
    started = time.perf_counter()
    async with http.post(url, data=body, headers=headers) as response:
        if response.status != 200:
            raise RuntimeError(f"the Slack adapter answered HTTP {response.status}")
    return await done - started


async def _slack_round(slack: BenchSlack, url: str, count: int, round_id: int) -> list[float]:
    """`count` concurrent signed app_mention events; seconds from each POST to its complete answer."""
    base = 1_700_000_000 + round_id * 10_000
    connector = aiohttp.TCPConnector(limit=0)
    async with aiohttp.ClientSession(connector=connector) as http:
        return list(
            await asyncio.gather(
                *(_one_mention(http, slack, url, f"{base}.{i:06d}") for i in range(count))
            )
        )


def _configure(fake: FakeOpenRouter, shape: ModelShape) -> None:
    fake.reply = shape.reply()
    fake.chunks = shape.tokens
    fake.chunk_delay_seconds = shape.chunk_delay_seconds
    fake.first_token_latency_seconds = shape.first_token_seconds


async def _serve(conn: Connection, shape: ModelShape) -> None:
    fake = PacedOpenRouter(record_requests=False)
    _configure(fake, shape)
    slack = BenchSlack()
    async with fake, slack:
        conn.send(Urls(fake.base_url, slack.api_url, os.getpid()))
        while True:
            op, arg = await asyncio.to_thread(conn.recv)
            if op == "stop":
                return
            if op == "shape":
                _configure(fake, arg)
                conn.send(None)
            elif op == "slack":
                conn.send(await _slack_round(slack, *arg))


def _main(conn: Connection, shape: ModelShape) -> None:
    asyncio.run(_serve(conn, shape))


class Servers:
    """Starts the servers process; `with Servers(shape) as servers:` then use `servers.urls`."""

    def __init__(self, shape: ModelShape) -> None:
        self._shape = shape
        self._child = PipedChild(_main, shape, what="servers")
        self._conn = self._child.conn
        self.urls: Urls | None = None

    def __enter__(self) -> Servers:
        self.urls = self._child.start(START_TIMEOUT_SECONDS)
        return self

    def __exit__(self, *exc: object) -> None:
        self._child.stop()

    @property
    def openrouter(self) -> str:
        assert self.urls is not None
        return self.urls.openrouter

    @property
    def pid(self) -> int:
        assert self.urls is not None
        return self.urls.pid

    @property
    def slack_api(self) -> str:
        assert self.urls is not None
        return self.urls.slack_api

    def set_shape(self, shape: ModelShape) -> None:
        self._conn.send(("shape", shape))
        self._conn.recv()

    async def slack_round(self, url: str, count: int, round_id: int) -> list[float]:
        """Run one round of Slack mentions from the servers process (await while the bot serves)."""
        self._conn.send(("slack", (url, count, round_id)))
        result: list[float] = await asyncio.to_thread(self._conn.recv)
        return result
