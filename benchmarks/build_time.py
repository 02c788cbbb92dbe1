"""P4: time to build one request against the length of the conversation's memory."""

from __future__ import annotations

import functools
import random
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

from llama_models.llama3.tokenizer import Tokenizer

from benchmarks.common import Summary, summarise
from benchmarks.corpus import _english
from bot.config import DEFAULT_SYSTEM_PROMPT, Settings
from bot.context import Budget, ContextBuilder
from bot.messages import ConversationKey
from bot.store import MemoryStore, SQLiteStore, Store
from bot.tokens import TokenCounter
from bot.turns import Turn

__all__ = ["BuildResult", "measure_build_time"]

KEY = ConversationKey("bench", "w1", "c1", "long-thread")
BASELINE_MAX_SECONDS = 3.0  # the recount-everything baseline stops repeating after this long


@dataclass(frozen=True, slots=True)
class BuildResult:
    """Milliseconds to build one request from a memory of `turns` turns."""

    turns: int
    glimpse: Summary  # memory store: load the newest turns, then the budgeted build
    glimpse_sqlite: Summary  # the same from the default SQLite store
    recount: Summary  # baseline: load everything and count every turn's tokens again


def _turns(count: int, counter: TokenCounter) -> list[Turn]:
    rng = random.Random(count)
    turns = []
    for index in range(count):
        role = "user" if index % 2 == 0 else "assistant"
        text = _english(rng, rng.randint(8, 60) if role == "user" else rng.randint(40, 200))
        turns.append(
            Turn(role=role, text=text, tokens=counter.message(role, text), created_at=float(index))
        )
    return turns


def _new_turn(counter: TokenCounter, number: int) -> Turn:
    text = f"And what about the second photo, number {number}? Is the boat the same colour?"
    return Turn(role="user", text=text, tokens=counter.message("user", text), created_at=0.0)


async def _time_glimpse(
    store: Store, builder: ContextBuilder, counter: TokenCounter, reps: int
) -> Summary:
    limit = Settings().history_turns
    times = []
    for number in range(reps):
        started = time.perf_counter()
        history = await store.load(KEY, limit)
        builder.build(DEFAULT_SYSTEM_PROMPT, history, _new_turn(counter, number))
        times.append(1000 * (time.perf_counter() - started))
    return summarise(times)


def _recount_build(turns: list[Turn], tokenizer: Tokenizer, budget: int, number: int) -> int:
    """The naive exact way: count every stored turn again on every request, then keep the newest."""

    def count(text: str) -> int:
        return len(tokenizer.encode(text, bos=False, eos=False)) + 5

    used = count(DEFAULT_SYSTEM_PROMPT) + count(f"new question {number}")
    counts = [count(turn.text) for turn in turns]
    kept = 0
    for tokens in reversed(counts):
        if used + tokens > budget:
            break
        used += tokens
        kept += 1
    return kept


async def _time_recount(store: Store, count: int, budget: int, reps: int) -> Summary:
    tokenizer = Tokenizer.get_instance()
    times: list[float] = []
    deadline = time.perf_counter() + BASELINE_MAX_SECONDS
    for number in range(reps):
        started = time.perf_counter()
        turns = await store.load(KEY, count)
        _recount_build(turns, tokenizer, budget, number)
        times.append(1000 * (time.perf_counter() - started))
        if time.perf_counter() > deadline and len(times) >= 3:
            break
    return summarise(times)


async def _filled(store: Store, turns: list[Turn]) -> Store:
    await store.open()
    await store.append(KEY, turns)
    return store


async def measure_build_time(lengths: list[int], reps: int) -> list[BuildResult]:
    """For each memory length: Glimpse's build (memory and SQLite stores) and the recount baseline."""
    settings = Settings()
    counter = TokenCounter()
    budget = Budget(4096, settings.max_output_tokens, settings.safety_margin_tokens)
    builder = ContextBuilder(counter, budget, image_tokens=settings.image_prompt_tokens)
    results = []
    with tempfile.TemporaryDirectory(prefix="glimpse-bench-") as folder:
        for count in lengths:
            turns = _turns(count, counter)
            memory = await _filled(MemoryStore(), turns)
            sqlite = await _filled(SQLiteStore(str(Path(folder) / f"{count}.db")), turns)
            measure = functools.partial(_time_glimpse, builder=builder, counter=counter, reps=reps)
            await measure(memory)  # warm caches: the system prompt's count, the store's pages
            results.append(
                BuildResult(
                    count,
                    await measure(memory),
                    await measure(sqlite),
                    await _time_recount(memory, count, budget.prompt_tokens, reps),
                )
            )
            await memory.close()
            await sqlite.close()
    return results
