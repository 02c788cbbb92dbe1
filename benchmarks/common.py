"""Shared pieces of the harness: the fake model's shape, core settings, an in-memory sink, statistics."""

from __future__ import annotations

import math
import statistics
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from adapters.streaming import StreamingSink
from bot.config import Settings

ROOT = Path(__file__).resolve().parent.parent
BENCH_DIR = ROOT / "benchmarks"
PLOTS_DIR = BENCH_DIR / "plots"
# Replies are streamed as this many content deltas ("tokens") by the fake OpenRouter.
REPLY_WORDS = (
    "The photo shows a small red fishing boat moored at a wooden jetty on a calm lake, "
    "with pine trees and low hills behind it and a pale evening sky above."
).split()
SINK_EDIT_INTERVAL_SECONDS = 1.0  # what the Slack and Discord sinks use
SINK_MESSAGE_LIMIT = 4_000
# P1 measures what streaming this many answers at once costs, so the process admits them all
# (the default bound, 64 model calls at once, would queue the rest by design).
MAX_CONCURRENT_ANSWERS = 1_000


@dataclass(frozen=True, slots=True)
class ModelShape:
    """How the fake model answers: `tokens` deltas over `seconds`, the first after `first_token_seconds`."""

    tokens: int
    seconds: float
    first_token_seconds: float

    @property
    def chunk_delay_seconds(self) -> float:
        return (self.seconds - self.first_token_seconds) / max(self.tokens - 1, 1)

    def reply(self) -> str:
        words = [REPLY_WORDS[i % len(REPLY_WORDS)] for i in range(self.tokens)]
        return " ".join(words) + " END."


def core_settings(base_url: str, **overrides: Any) -> Settings:
    """Settings of a Glimpse process talking to the fake: in-memory store, no per-user limit."""
    values: dict[str, Any] = {
        "base_url": base_url,
        "store_url": "memory://",
        "user_messages_per_minute": 0,
        "retention_days": 0,
        "request_timeout_seconds": 120,
        "max_retries": 0,
    }
    if "max_concurrent_answers" in Settings.model_fields:
        values["max_concurrent_answers"] = MAX_CONCURRENT_ANSWERS
    values.update(overrides)
    return Settings(**values)


class MemorySink(StreamingSink):
    """The adapters' streaming sink (per-answer edit throttle, splitting) over an in-memory 'platform'."""

    def __init__(self) -> None:
        super().__init__(limit=SINK_MESSAGE_LIMIT, interval_seconds=SINK_EDIT_INTERVAL_SECONDS)
        self.messages: list[str] = []
        self.edits = 0
        self.notices: list[str] = []

    async def _post(self, text: str) -> int:
        self.messages.append(text)
        return len(self.messages) - 1

    async def _edit(self, handle: Any, text: str) -> None:
        self.messages[handle] = text
        self.edits += 1

    async def notice(self, text: str) -> None:
        self.notices.append(text)


@dataclass(frozen=True, slots=True)
class Summary:
    """Percentiles of a sample, in the sample's unit."""

    n: int
    p50: float
    p90: float
    p99: float
    mean: float
    max: float


def percentile(values: Sequence[float], q: float) -> float:
    """The q-th percentile (0-100) by linear interpolation; nan for an empty sample."""
    if not values:
        return math.nan
    ordered = sorted(values)
    rank = (len(ordered) - 1) * q / 100
    low, high = math.floor(rank), math.ceil(rank)
    return ordered[low] + (ordered[high] - ordered[low]) * (rank - low)


def summarise(values: Sequence[float]) -> Summary:
    if not values:
        return Summary(0, math.nan, math.nan, math.nan, math.nan, math.nan)
    return Summary(
        n=len(values),
        p50=percentile(values, 50),
        p90=percentile(values, 90),
        p99=percentile(values, 99),
        mean=statistics.fmean(values),
        max=max(values),
    )


@dataclass(frozen=True, slots=True)
class Plan:
    """The sizes of one run: the full run, or the tiny `--quick` one."""

    quick: bool
    shape: ModelShape
    levels: tuple[tuple[int, int], ...]  # (concurrent conversations, rounds)
    ratio_rounds: int  # more rounds per level of only the bare client and Glimpse
    steady: tuple[int, int]  # (concurrent conversations, rounds) asking again once answered
    without_sdk_rounds: int  # rounds of each what-if (no SDK): all at once, then steady
    slack: tuple[int, int]  # (concurrent mentions, rounds)
    profile_answers: int  # answers in the profiled round (0: no profile)
    request_cost_reps: int  # chat requests through the SDK alone, to time one
    image_scale: float  # 1.0: a 12 MP photo and a 4K screenshot
    image_runs: int
    corpus_size: int
    recall_size: int  # of the corpus's conversations, replayed end to end for P3's memory columns
    lengths: tuple[int, ...]  # memory lengths for the build time
    build_reps: int
    memory: tuple[int, int]  # (live conversations, turns each)
    # P6: (mentions at once per round, measured rounds, fleet sizes in processes)
    shards: tuple[int, int, tuple[int, ...]] = (300, 3, (1, 2, 4))


FULL_PLAN = Plan(
    quick=False,
    shape=ModelShape(tokens=200, seconds=2.0, first_token_seconds=0.4),
    levels=((1, 10), (100, 2), (1000, 2)),
    ratio_rounds=4,
    steady=(1000, 4),
    without_sdk_rounds=2,
    slack=(100, 2),
    profile_answers=300,
    request_cost_reps=2000,
    image_scale=1.0,
    image_runs=15,
    corpus_size=240,
    recall_size=240,
    lengths=(10, 100, 1000, 10_000),
    build_reps=200,
    memory=(1000, 20),
)
QUICK_PLAN = Plan(
    quick=True,
    shape=ModelShape(tokens=20, seconds=0.2, first_token_seconds=0.05),
    levels=((1, 1), (10, 1)),
    ratio_rounds=1,
    steady=(10, 1),
    without_sdk_rounds=1,
    slack=(5, 1),
    profile_answers=0,
    request_cost_reps=50,
    image_scale=0.25,
    image_runs=2,
    corpus_size=24,
    recall_size=12,
    lengths=(10, 100),
    build_reps=20,
    memory=(50, 20),
    shards=(8, 1, (1, 2)),
)
