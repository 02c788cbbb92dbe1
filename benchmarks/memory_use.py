"""P5: resident memory of a Glimpse process holding many live conversations (measured in a child process)."""

from __future__ import annotations

import asyncio
import gc
import multiprocessing
import os
import random
import time
from dataclasses import dataclass
from multiprocessing.connection import Connection

from benchmarks.baseline import UsualBot
from benchmarks.common import MemorySink, core_settings
from benchmarks.corpus import _english
from bot.config import DEFAULT_SYSTEM_PROMPT
from bot.conversations import Conversations, Status
from bot.images import ImagePipeline
from bot.messages import ConversationKey, IncomingMessage
from bot.openrouter import OpenRouterClient
from bot.store import MemoryStore
from bot.tokens import TokenCounter
from bot.turns import Turn, Usage
from tests.fakes.openrouter import FAKE_API_KEY, LLAMA_VISION_MODEL

__all__ = ["MemoryResult", "measure_memory"]

CONCURRENT_ANSWERS = 50
CHILD_TIMEOUT_SECONDS = 300.0


@dataclass(frozen=True, slots=True)
class MemoryResult:
    """Resident set size of a bot process before and after it holds `conversations` conversations."""

    kind: str
    conversations: int
    turns_each: int
    empty_mb: float
    full_mb: float

    @property
    def per_conversation_kb(self) -> float:
        return 1024 * (self.full_mb - self.empty_mb) / max(self.conversations, 1)


def rss_mb() -> float:
    """This process's resident set size in MiB (Linux /proc; psutil elsewhere)."""
    try:
        with open("/proc/self/statm", encoding="ascii") as statm:
            pages = int(statm.read().split()[1])
        return pages * os.sysconf("SC_PAGE_SIZE") / 2**20
    except OSError:
        import psutil

        return float(psutil.Process().memory_info().rss) / 2**20


def _settled_rss() -> float:
    gc.collect()
    return rss_mb()


def _seed_turns(counter: TokenCounter, rng: random.Random, count: int, key: str) -> list[Turn]:
    """Earlier exchanges as Glimpse stores them: text, counted tokens, ids, usage on answers."""
    turns = []
    for index in range(count):
        role = "user" if index % 2 == 0 else "assistant"
        text = _english(rng, rng.randint(8, 60) if role == "user" else rng.randint(40, 200))
        usage = Usage(LLAMA_VISION_MODEL, 900, 150, 0.001) if role == "assistant" else None
        turns.append(
            Turn(
                role=role,
                text=text,
                tokens=counter.message(role, text),
                created_at=time.time(),
                author_id="U1" if role == "user" else "",
                message_id=f"{key}:{index}",
                usage=usage,
            )  # fmt: skip
        )
    return turns


async def _glimpse_rss(base_url: str, conversations: int, turns_each: int) -> MemoryResult:
    settings = core_settings(base_url)
    store = MemoryStore()
    service = Conversations(
        settings,
        store=store,
        client=OpenRouterClient(settings, FAKE_API_KEY),
        images=ImagePipeline(settings),
    )
    await service.start()
    counter, rng = TokenCounter(), random.Random(5)
    keys = [ConversationKey("bench", "w1", "c1", f"t{i}") for i in range(conversations)]
    await _answer(service, ConversationKey("bench", "w1", "c1", "warm-up"))
    empty = _settled_rss()
    for key in keys:
        await store.append(key, _seed_turns(counter, rng, turns_each - 2, str(key)))
    for start in range(0, conversations, CONCURRENT_ANSWERS):
        await asyncio.gather(
            *(_answer(service, key) for key in keys[start : start + CONCURRENT_ANSWERS])
        )
    full = _settled_rss()
    await service.close()
    return MemoryResult("glimpse", conversations, turns_each, empty, full)


async def _answer(service: Conversations, key: ConversationKey) -> None:
    message = IncomingMessage(key=key, message_id=f"{key}:new", author_id="U1", text="And now?")
    outcome = await service.handle(message, MemorySink())
    if outcome.status is not Status.ANSWERED:
        raise RuntimeError(f"not answered: {outcome.status} {outcome.text}")


async def _usual_rss(base_url: str, conversations: int, turns_each: int) -> MemoryResult:
    bot = UsualBot(base_url, FAKE_API_KEY, LLAMA_VISION_MODEL, DEFAULT_SYSTEM_PROMPT)
    await bot.handle("warm-up", "hello")
    empty = _settled_rss()
    rng = random.Random(5)
    for index in range(conversations):
        history = bot.history.setdefault(f"t{index}", [])
        for turn in range(turns_each):
            role = "user" if turn % 2 == 0 else "assistant"
            text = _english(rng, rng.randint(8, 60) if role == "user" else rng.randint(40, 200))
            history.append({"role": role, "content": text})
    return MemoryResult("usual", conversations, turns_each, empty, _settled_rss())


def _child(conn: Connection, kind: str, base_url: str, conversations: int, turns_each: int) -> None:
    measure = _glimpse_rss if kind == "glimpse" else _usual_rss
    conn.send(asyncio.run(measure(base_url, conversations, turns_each)))


def measure_memory(kind: str, base_url: str, conversations: int, turns_each: int) -> MemoryResult:
    """RSS of a fresh child process ('glimpse' or 'usual') holding the conversations."""
    context = multiprocessing.get_context("spawn")
    parent, child = context.Pipe()
    process = context.Process(
        target=_child, args=(child, kind, base_url, conversations, turns_each)
    )
    process.start()
    try:
        if not parent.poll(CHILD_TIMEOUT_SECONDS):
            raise RuntimeError(f"the {kind} memory child did not finish")
        result: MemoryResult = parent.recv()
        return result
    finally:
        process.join(10)
        if process.is_alive():
            process.terminate()
