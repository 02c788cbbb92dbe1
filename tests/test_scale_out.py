"""Several Glimpse processes, one Redis: dedup, memory, leases and rate limits are shared."""

from __future__ import annotations

import asyncio
import json
import os
import signal
import sys
import uuid
from collections.abc import AsyncIterator, Awaitable, Callable
from itertools import pairwise
from pathlib import Path
from typing import Any

import pytest
import redis.asyncio
from pydantic import SecretStr

from bot.app import build_conversations
from bot.config import Secrets, Settings
from bot.leases import LocalLeases, RedisLeases
from bot.messages import ConversationKey
from bot.ratelimit import RedisRateLimiter, SlidingWindowLimiter
from bot.store.redis import RedisStore
from tests.fakes.openrouter import FAKE_API_KEY, FakeOpenRouter
from tests.redis_support import REDIS_URL, delete_prefix, require_redis, store_url, unique_prefix

REPO = Path(__file__).resolve().parents[1]
UNREACHABLE = "redis://:hunter2@127.0.0.1:1/0"

# One Glimpse process: the real core from build_conversations (Redis store, limiter, leases),
# fed JSON lines on stdin ({"id", "thread", "text", "user"}), answering each concurrently and
# printing {"id", "status"} when done; {"ready": true} once started.
WORKER = """
import asyncio, json, sys
from bot.app import build_conversations
from bot.config import load_secrets, load_settings
from bot.messages import ConversationKey, IncomingMessage

class Sink:
    async def start(self): pass
    async def update(self, text): pass
    async def finish(self, text): pass
    async def fail(self, text): pass
    async def notice(self, text): pass

async def answer(conversations, request):
    message = IncomingMessage(
        key=ConversationKey("test", "w1", "c1", request["thread"]),
        message_id=request["id"], author_id=request["user"], text=request["text"],
    )
    outcome = await conversations.handle(message, Sink())
    print(json.dumps({"id": request["id"], "status": outcome.status.value}), flush=True)

async def main():
    conversations = build_conversations(load_settings(), load_secrets())
    await conversations.start()
    print(json.dumps({"ready": True}), flush=True)
    tasks = set()
    while line := await asyncio.to_thread(sys.stdin.readline):
        tasks.add(asyncio.create_task(answer(conversations, json.loads(line))))
    await asyncio.gather(*tasks)
    await conversations.close()

asyncio.run(main())
"""

# Holds one conversation's lease (renewing it) until killed.
HOLDER = """
import asyncio, sys
from bot.leases import RedisLeases
from bot.messages import ConversationKey

async def main():
    leases = RedisLeases(sys.argv[1], ttl_seconds=float(sys.argv[2]))
    async with leases.hold(ConversationKey("test", "w1", "c1", sys.argv[3])):
        print("held", flush=True)
        await asyncio.sleep(3600)

asyncio.run(main())
"""


class Worker:
    """One Glimpse process; `ask` sends it a message and returns the outcome's status."""

    def __init__(self, process: asyncio.subprocess.Process) -> None:
        self.process = process
        self._results: dict[str, asyncio.Future[str]] = {}
        self._ready: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        self._reader = asyncio.create_task(self._read())

    @property
    def started(self) -> bool:
        return self._ready.done() and self._ready.exception() is None

    async def ready(self) -> None:
        """Wait for start-up; if the process died instead, fail with what it printed."""
        try:
            await asyncio.wait_for(asyncio.shield(self._ready), timeout=30)
        except RuntimeError:
            errors = await self.stop()
            pytest.fail(f"a Glimpse process did not start:\n{errors[-3000:]}", pytrace=False)

    async def ask(self, text: str, *, thread: str, user: str = "u1", id: str = "") -> str:
        message_id = id or uuid.uuid4().hex
        result = self._results.setdefault(message_id, asyncio.get_running_loop().create_future())
        request = {"id": message_id, "thread": thread, "text": text, "user": user}
        assert self.process.stdin is not None
        self.process.stdin.write(json.dumps(request).encode() + b"\n")
        await self.process.stdin.drain()
        return await asyncio.wait_for(result, timeout=20)

    async def stop(self) -> str:
        """Close stdin, wait for the exit; the process's stderr ("" if already stopped)."""
        assert self.process.stdin is not None and self.process.stderr is not None
        if self.process.stdin.is_closing():
            return ""
        self.process.stdin.close()
        try:
            await asyncio.wait_for(self.process.wait(), timeout=10)
        except TimeoutError:
            self.process.kill()
            await self.process.wait()
        await self._reader
        return (await self.process.stderr.read()).decode()

    async def _read(self) -> None:
        assert self.process.stdout is not None
        while line := await self.process.stdout.readline():
            event = json.loads(line)
            if event.get("ready"):
                self._ready.set_result(None)
                continue
            future = self._results.setdefault(
                event["id"], asyncio.get_running_loop().create_future()
            )
            future.set_result(event["status"])
        if not self._ready.done():
            self._ready.set_exception(RuntimeError("the worker exited before it was ready"))


def _env(fake: FakeOpenRouter, url: str, tmp_path: Path, **extra: str) -> dict[str, str]:
    env = {
        k: v
        for k, v in os.environ.items()
        if not k.startswith(("GLIMPSE_", "OPENROUTER_", "DISCORD_", "SLACK_"))
    }
    env.update(
        PYTHONPATH=str(REPO),
        OPENROUTER_API_KEY=FAKE_API_KEY,
        OPENROUTER_BASE_URL=fake.base_url,
        GLIMPSE_STORE_URL=url,
        GLIMPSE_DATA_DIR=str(tmp_path),
        GLIMPSE_MAX_RETRIES="1",
        GLIMPSE_USER_MESSAGES_PER_MINUTE="0",
    )
    env.update(extra)
    return env


@pytest.fixture
async def prefix() -> AsyncIterator[str]:
    require_redis()
    name = unique_prefix()
    yield name
    await delete_prefix(name)


@pytest.fixture
async def fake() -> AsyncIterator[FakeOpenRouter]:
    async with FakeOpenRouter() as server:
        server.responder = lambda body: f"You said: {body['messages'][-1]['content']}"
        yield server


Spawn = Callable[..., Awaitable[list[Worker]]]


@pytest.fixture
async def spawn(fake: FakeOpenRouter, prefix: str, tmp_path: Path) -> AsyncIterator[Spawn]:
    """Start Glimpse processes on one Redis prefix and the fake; all are stopped after the test."""
    workers: list[Worker] = []

    async def start(count: int, **env: str) -> list[Worker]:
        started = [
            Worker(
                await asyncio.create_subprocess_exec(
                    sys.executable,
                    "-c",
                    WORKER,
                    stdin=asyncio.subprocess.PIPE,
                    stdout=asyncio.subprocess.PIPE,
                    stderr=asyncio.subprocess.PIPE,
                    env=_env(fake, store_url(prefix), tmp_path, **env),
                    cwd=tmp_path,
                )
            )
            for _ in range(count)
        ]
        workers.extend(started)
        for worker in started:  # one at a time: a failed start is reported with its stderr
            await worker.ready()
        return started

    yield start
    for worker in workers:
        started = worker.started
        errors = await worker.stop()
        assert not started or "Traceback" not in errors, errors


def _conversation(body: dict[str, Any]) -> list[str]:
    return [m["content"] for m in body["messages"][1:]]


# --- two processes, one Redis ---


async def test_the_same_message_delivered_to_both_processes_is_answered_once(
    spawn: Spawn, fake: FakeOpenRouter
) -> None:
    a, b = await spawn(2)
    statuses = await asyncio.gather(
        a.ask("hello", thread="t1", id="event-1"), b.ask("hello", thread="t1", id="event-1")
    )
    assert sorted(statuses) == ["answered", "duplicate"]
    assert len(fake.chat_requests) == 1


async def test_a_turn_written_by_one_process_is_in_the_others_next_request(
    spawn: Spawn, fake: FakeOpenRouter
) -> None:
    a, b = await spawn(2)
    assert await a.ask("my name is Ada", thread="t1") == "answered"
    assert await b.ask("what is my name?", thread="t1") == "answered"
    assert _conversation(fake.chat_requests[-1].body) == [
        "my name is Ada",
        "You said: my name is Ada",
        "what is my name?",
    ]
    assert await b.ask("other thread", thread="t2") == "answered"
    assert _conversation(fake.chat_requests[-1].body) == ["other thread"]


async def test_two_processes_answering_one_thread_take_turns(
    spawn: Spawn, fake: FakeOpenRouter
) -> None:
    a, b = await spawn(2)
    fake.first_token_latency_seconds = 0.4  # both messages arrive while the first is answered
    statuses = await asyncio.gather(a.ask("from a", thread="t1"), b.ask("from b", thread="t1"))
    assert statuses == ["answered", "answered"]
    first, second = (_conversation(r.body) for r in fake.chat_requests)
    assert len(first) == 1  # the first answer had no history yet ...
    assert second == [first[0], f"You said: {first[0]}", second[-1]]  # ... the second saw it all
    assert {first[0], second[-1]} == {"from a", "from b"}


async def test_a_crashed_lease_holder_does_not_block_the_thread(
    spawn: Spawn, fake: FakeOpenRouter, prefix: str, tmp_path: Path
) -> None:
    (worker,) = await spawn(1)
    ttl = 0.6
    holder = await asyncio.create_subprocess_exec(
        sys.executable,
        "-c",
        HOLDER,
        store_url(prefix),
        str(ttl),
        "t1",
        stdout=asyncio.subprocess.PIPE,
        env={**os.environ, "PYTHONPATH": str(REPO)},
        cwd=tmp_path,
    )
    try:
        assert holder.stdout is not None
        assert await asyncio.wait_for(holder.stdout.readline(), timeout=20) == b"held\n"
        answer = asyncio.create_task(worker.ask("anyone there?", thread="t1"))
        await asyncio.sleep(3 * ttl)  # the live holder keeps renewing: the thread waits
        assert not answer.done() and fake.chat_requests == []

        holder.send_signal(signal.SIGKILL)
        killed_at = asyncio.get_running_loop().time()
        assert await answer == "answered"
        assert asyncio.get_running_loop().time() - killed_at < ttl + 2.0
    finally:
        if holder.returncode is None:
            holder.kill()
        await holder.wait()


async def test_the_rate_limit_is_shared_by_both_processes(
    spawn: Spawn, fake: FakeOpenRouter
) -> None:
    a, b = await spawn(2, GLIMPSE_USER_MESSAGES_PER_MINUTE="2")
    assert await a.ask("one", thread="t1", user="eve") == "answered"
    assert await b.ask("two", thread="t2", user="eve") == "answered"
    assert await a.ask("three", thread="t3", user="eve") == "rate_limited"
    assert await b.ask("four", thread="t4", user="eve") == "rate_limited"
    assert await b.ask("someone else", thread="t5", user="bob") == "answered"
    assert len(fake.chat_requests) == 3


# --- the pieces, in one process ---


async def test_build_conversations_wires_redis_on_one_pool(
    fake: FakeOpenRouter, prefix: str
) -> None:
    settings = Settings(base_url=fake.base_url, store_url=store_url(prefix), retention_days=7)
    conversations = build_conversations(
        settings, Secrets(openrouter_api_key=SecretStr(FAKE_API_KEY))
    )
    store, limiter, leases = conversations._store, conversations._limiter, conversations._leases
    assert isinstance(store, RedisStore) and store.target.prefix == prefix
    assert isinstance(limiter, RedisRateLimiter) and isinstance(leases, RedisLeases)
    assert limiter._client is store.client and leases._client is store.client
    assert store._retention_ms == 7 * 86400 * 1000
    await conversations.close()


async def test_build_conversations_keeps_sqlite_limits_in_process(
    fake: FakeOpenRouter, tmp_path: Path
) -> None:
    settings = Settings(base_url=fake.base_url, store_url=f"sqlite:///{tmp_path / 'g.db'}")
    conversations = build_conversations(
        settings, Secrets(openrouter_api_key=SecretStr(FAKE_API_KEY))
    )
    assert isinstance(conversations._limiter, SlidingWindowLimiter)
    assert isinstance(conversations._leases, LocalLeases)
    await conversations.close()


async def test_local_leases_keep_arrival_order_and_forget_idle_keys() -> None:
    leases = LocalLeases()
    key = ConversationKey("test", "w", "c", "t")
    order: list[int] = []

    async def enter(i: int) -> None:
        async with leases.hold(key):
            await asyncio.sleep(0.001 * (5 - i))  # later arrivals would finish first if not queued
            order.append(i)

    await asyncio.gather(*(enter(i) for i in range(5)))
    assert order == [0, 1, 2, 3, 4]
    assert len(leases) == 0


async def _spans(leases: list[RedisLeases], key: ConversationKey) -> list[tuple[float, float]]:
    loop = asyncio.get_running_loop()

    async def hold(lease: RedisLeases) -> tuple[float, float]:
        async with lease.hold(key):
            start = loop.time()
            await asyncio.sleep(0.1)
            return start, loop.time()

    return sorted(await asyncio.gather(*(hold(lease) for lease in leases)))


@pytest.fixture
async def leases(prefix: str) -> AsyncIterator[Callable[..., RedisLeases]]:
    made: list[RedisLeases] = []

    def make(**options: Any) -> RedisLeases:
        made.append(RedisLeases(store_url(prefix), **options))
        return made[-1]

    yield make
    for lease in made:
        await lease.aclose()


async def test_redis_leases_of_separate_pools_never_overlap(
    leases: Callable[..., RedisLeases],
) -> None:
    key = ConversationKey("test", "w", "c", "t:1")
    spans = await _spans([leases(), leases(), leases()], key)
    assert all(end <= next_start for (_, end), (next_start, _) in pairwise(spans))
    other = await _spans([leases(), leases()], ConversationKey("test", "w", "c", "t:2"))
    assert len(other) == 2


async def test_a_renewal_that_ignores_its_cancellation_does_not_keep_the_lease(
    leases: Callable[..., RedisLeases], monkeypatch: pytest.MonkeyPatch, prefix: str
) -> None:
    """A Redis call that swallows CancelledError must not hold the conversation forever."""
    key = ConversationKey("test", "w", "c", "t:stubborn")
    lease = leases(ttl_seconds=0.3)
    done = asyncio.Event()

    async def stubborn_keep(name: str, token: str) -> None:
        while not done.is_set():
            try:
                await done.wait()
            except asyncio.CancelledError:
                pass  # as a call stuck in a connection would

    monkeypatch.setattr(lease, "_keep", stubborn_keep)
    try:
        async with asyncio.timeout(10):
            async with lease.hold(key):
                await asyncio.sleep(0.05)  # the renewal task is running when it is cancelled
            async with leases(ttl_seconds=0.3).hold(key):  # the conversation goes on
                pass
    finally:
        done.set()
    client = redis.asyncio.Redis.from_url(REDIS_URL)
    try:
        assert await client.keys(f"{prefix}:lease:*") == []
    finally:
        await client.aclose()


async def test_a_held_lease_is_renewed_past_its_ttl(
    leases: Callable[..., RedisLeases],
) -> None:
    key = ConversationKey("test", "w", "c", "t")
    first, second = leases(ttl_seconds=0.2), leases(ttl_seconds=0.2)
    loop = asyncio.get_running_loop()
    entered = asyncio.Event()

    async def long_holder() -> float:
        async with first.hold(key):
            entered.set()
            await asyncio.sleep(0.7)
            return loop.time()

    holding = asyncio.create_task(long_holder())
    await entered.wait()
    async with second.hold(key):
        got_it = loop.time()
    assert got_it >= await holding


async def test_an_abandoned_lease_expires(leases: Callable[..., RedisLeases], prefix: str) -> None:
    raw = redis.asyncio.Redis.from_url(require_redis())
    try:
        await raw.set(f"{prefix}:lease:test:w:c:t", b"someone-who-crashed", px=300)
    finally:
        await raw.aclose()
    loop = asyncio.get_running_loop()
    started = loop.time()
    async with leases().hold(ConversationKey("test", "w", "c", "t")):
        waited = loop.time() - started
    assert 0.2 < waited < 1.5


async def test_a_lease_is_released_only_by_its_holder(
    leases: Callable[..., RedisLeases], prefix: str
) -> None:
    lease = leases()
    name = f"{prefix}:lease:test:w:c:t"
    raw = redis.asyncio.Redis.from_url(require_redis())
    try:
        async with lease.hold(ConversationKey("test", "w", "c", "t")):
            token = await raw.get(name)
            await raw.set(name, b"a-new-holder", px=5000)  # as if ours had expired meanwhile
        assert token is not None and await raw.get(name) == b"a-new-holder"
        await raw.delete(name)
        async with lease.hold(ConversationKey("test", "w", "c", "t")):
            pass
        assert await raw.exists(name) == 0
    finally:
        await raw.aclose()


async def test_leases_go_ahead_when_redis_is_unreachable(
    caplog: pytest.LogCaptureFixture,
) -> None:
    lease = RedisLeases(UNREACHABLE)
    async with asyncio.timeout(5):
        async with lease.hold(ConversationKey("test", "w", "c", "t")):
            pass
    assert "without cross-process order" in caplog.text and "hunter2" not in caplog.text
    await lease.aclose()


async def test_the_redis_rate_limit_is_shared_and_slides(prefix: str) -> None:
    url = store_url(prefix)
    a = RedisRateLimiter(url, 2, window_seconds=0.5)
    b = RedisRateLimiter(url, 2, window_seconds=0.5)
    try:
        assert await a.hit("slack:U1") is None
        assert await b.hit("slack:U1") is None
        wait = await a.hit("slack:U1")
        assert wait is not None and 0 < wait <= 0.5
        assert await b.hit("slack:U2") is None  # another user has their own window
        await asyncio.sleep(wait + 0.05)
        assert await b.hit("slack:U1") is None
    finally:
        await a.aclose()
        await b.aclose()


async def test_the_redis_rate_limit_waits_a_minute_by_default(prefix: str) -> None:
    limiter = RedisRateLimiter(store_url(prefix), 1)
    try:
        assert await limiter.hit("u") is None
        wait = await limiter.hit("u")
        assert wait is not None and 59 < wait <= 60
        assert await RedisRateLimiter(store_url(prefix), 0).hit("u") is None  # 0: no limit
    finally:
        await limiter.aclose()


async def test_the_rate_limit_falls_back_to_this_process_without_redis(
    caplog: pytest.LogCaptureFixture,
) -> None:
    limiter = RedisRateLimiter(UNREACHABLE, 1)
    assert await limiter.hit("u") is None
    assert await limiter.hit("u") is not None
    assert caplog.text.count("shared rate limit unavailable") == 1  # once, not per message
    assert "hunter2" not in caplog.text
    await limiter.aclose()
