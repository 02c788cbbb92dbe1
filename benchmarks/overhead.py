"""P1: time per answer against the fake model's own time, Glimpse beside a bare client and the usual bot."""

from __future__ import annotations

import asyncio
import contextlib
import gc
import itertools
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field

import aiohttp
import openai
from pydantic import SecretStr

from benchmarks import departures, probe
from benchmarks.baseline import UsualBot
from benchmarks.common import MemorySink, core_settings
from benchmarks.machine import process_cpu_seconds
from benchmarks.probe import start_probe
from bot.app import build_conversations
from bot.config import DEFAULT_SYSTEM_PROMPT, Secrets
from bot.conversations import Conversations, Status
from bot.heap import settle_heap
from bot.messages import ConversationKey, IncomingMessage
from bot.transport import KEEPALIVE_SECONDS
from tests.fakes.openrouter import FAKE_API_KEY, LLAMA_VISION_MODEL

__all__ = [
    "APPROACHES",
    "PROBED",
    "RATIO_PAIR",
    "Level",
    "Sample",
    "Side",
    "request_body",
    "run_level",
    "started_sides",
]

QUESTION = "What is in this photo of the lake? Answer in a few sentences, please."
APPROACHES = ("bare", "sdk", "glimpse", "probed", "usual")
# the two behind the headline ratio: extra rounds of them alone make it steadier on a busy machine
RATIO_PAIR = ("bare", "glimpse")
# Rounds run under benchmarks/probe.py, whose wrappers cost CPU per network read: only these
# samples carry a breakdown ("probed" is Glimpse again, for its own; "usual" for its core).
PROBED = frozenset({"probed", "usual"})
_ids = itertools.count()


@dataclass(frozen=True, slots=True)
class Sample:
    """One answer: wall seconds, and under the probe seconds of the bot's own steps and of decoding."""

    seconds: float
    core_seconds: float = 0.0
    build_seconds: float = 0.0
    decode_seconds: float = 0.0


@dataclass
class Level:
    """Every sample of one concurrency level, per approach."""

    concurrency: int
    samples: dict[str, list[Sample]] = field(default_factory=lambda: {a: [] for a in APPROACHES})
    cpu_seconds: dict[str, float] = field(default_factory=lambda: dict.fromkeys(APPROACHES, 0.0))
    gc_pauses_ms: dict[str, list[float]] = field(
        default_factory=lambda: {a: [] for a in APPROACHES}
    )
    # seconds after its round's start at which each request left (aiohttp clients only)
    departures: dict[str, list[float]] = field(default_factory=lambda: {a: [] for a in APPROACHES})
    # CPU seconds the fake model's process used during each approach's rounds (None: unknown)
    fake_cpu_seconds: dict[str, float | None] = field(
        default_factory=lambda: dict.fromkeys(APPROACHES, 0.0)
    )

    def cpu_ms_per_answer(self, approach: str) -> float:
        """This process's CPU time per answer (user + system), whatever the machine's noise."""
        return 1000 * self.cpu_seconds[approach] / max(len(self.samples[approach]), 1)

    def fake_cpu_per_round(self, approach: str) -> float | None:
        """CPU seconds the fake model's process used per round of `approach`, if known."""
        total = self.fake_cpu_seconds[approach]
        rounds = len(self.samples[approach]) / self.concurrency
        return None if total is None or not rounds else total / rounds


def request_body() -> dict[str, object]:
    return {
        "model": LLAMA_VISION_MODEL,
        "messages": [
            {"role": "system", "content": DEFAULT_SYSTEM_PROMPT},
            {"role": "user", "content": QUESTION},
        ],
        "stream": True,
        "max_tokens": 1024,
        "stream_options": {"include_usage": True},
    }


class Side:
    """The five ways of getting an answer from the same fake, each ready to run a round."""

    def __init__(self, base_url: str, fake_pid: int | None = None) -> None:
        self.base_url = base_url
        self.fake_pid = fake_pid  # the fake model's process, whose CPU each round records
        # The bare client keeps idle connections as long as Glimpse's transport does, so a round
        # that starts after a long pause costs both the same new connections.
        connector = aiohttp.TCPConnector(limit=0, keepalive_timeout=KEEPALIVE_SECONDS)
        self.http = aiohttp.ClientSession(connector=connector)
        self.sdk = openai.AsyncOpenAI(base_url=base_url, api_key=FAKE_API_KEY, max_retries=0)
        self.conversations: Conversations = build_conversations(
            core_settings(base_url), Secrets(openrouter_api_key=SecretStr(FAKE_API_KEY))
        )
        self.usual = UsualBot(base_url, FAKE_API_KEY, LLAMA_VISION_MODEL, DEFAULT_SYSTEM_PROMPT)

    async def start(self) -> None:
        await self.conversations.start()

    async def close(self) -> None:
        await self.conversations.close()
        await self.sdk.close()
        await self.http.close()

    def runner(self, approach: str) -> Callable[[], Awaitable[Sample]]:
        return {
            "bare": self.bare_answer,
            "sdk": self.sdk_answer,
            "glimpse": self.glimpse_answer,
            "probed": self.probed_answer,
            "usual": self.usual_answer,
        }[approach]

    async def bare_answer(self) -> Sample:
        """The fake model's own time: raw HTTP, the body read as it arrives, nothing parsed."""
        started = time.perf_counter()
        url = f"{self.base_url}/chat/completions"
        headers = {"Authorization": f"Bearer {FAKE_API_KEY}"}
        async with self.http.post(url, json=request_body(), headers=headers) as response:
            async for _ in response.content.iter_any():  # the body ends just after [DONE]
                pass
        return Sample(time.perf_counter() - started)

    async def sdk_answer(self) -> Sample:
        """The openai SDK alone (one shared client), every chunk parsed, nothing done with it."""
        started = time.perf_counter()
        body = request_body()
        stream = await self.sdk.chat.completions.create(
            model=LLAMA_VISION_MODEL,
            messages=body["messages"],  # type: ignore[call-overload]
            stream=True,
            max_tokens=1024,
            stream_options={"include_usage": True},
        )
        async for _chunk in stream:
            pass
        return Sample(time.perf_counter() - started)

    async def glimpse_answer(self) -> Sample:
        """Glimpse as it runs in production, through `Conversations.handle`: wall seconds only."""
        message = _message()
        started = time.perf_counter()
        await self._answer(message)
        return Sample(time.perf_counter() - started)

    async def probed_answer(self) -> Sample:
        """The same answer in a round under the probe: wall seconds and their breakdown."""
        message = _message()
        clock = start_probe()
        await self._answer(message)
        ended = time.perf_counter()
        return Sample(
            ended - clock.started,
            clock.core_seconds(ended),
            clock.build_seconds(),
            clock.decode_seconds,
        )

    async def _answer(self, message: IncomingMessage) -> None:
        outcome = await self.conversations.handle(message, MemorySink())
        if outcome.status is not Status.ANSWERED:
            raise RuntimeError(f"Glimpse did not answer: {outcome.status} {outcome.text}")

    async def usual_answer(self) -> Sample:
        _, seconds, core = await self.usual.handle(f"t{next(_ids)}", QUESTION)
        return Sample(seconds, core)


def _message() -> IncomingMessage:
    """The question, in a new conversation of its own."""
    number = next(_ids)
    return IncomingMessage(
        key=ConversationKey("bench", "w1", "c1", f"t{number}"),
        message_id=f"m{number}",
        author_id=f"u{number % 500}",
        text=f"{QUESTION} ({number})",  # no two alike, as people's are: counted, not cached
    )


def _probe_for(approach: str) -> contextlib.AbstractContextManager[None]:
    """The probe installed for a round of `approach` if it is one of PROBED, else nothing."""
    return probe.installed() if approach in PROBED else contextlib.nullcontext()


async def started_sides(base_url: str, fake_pid: int | None = None) -> Side:
    """A started Side, every approach run once (clients first used without the probe)."""
    side = Side(base_url, fake_pid)
    await side.start()
    for approach in APPROACHES:  # warm up: imports, tokenizer caches, first connections
        with _probe_for(approach):
            await side.runner(approach)()
    settle_heap()  # as `glimpse run` does once started (it applies to the whole process)
    return side


class _GcWatch:
    """Records how long each garbage collection takes while installed (they stall every task)."""

    def __init__(self) -> None:
        self.pauses_ms: list[float] = []
        self._started = 0.0

    def __call__(self, phase: str, info: dict[str, int]) -> None:
        if phase == "start":
            self._started = time.perf_counter()
        else:
            self.pauses_ms.append(1000 * (time.perf_counter() - self._started))

    def __enter__(self) -> _GcWatch:
        gc.callbacks.append(self)
        return self

    def __exit__(self, *exc: object) -> None:
        gc.callbacks.remove(self)


@dataclass(frozen=True, slots=True)
class _RoundResult:
    samples: list[Sample]
    cpu_seconds: float  # this process
    fake_cpu_seconds: float | None  # the fake model's process, if it could be read
    gc_pauses_ms: list[float]
    departures: list[float]  # seconds after the start at which each request left


def _fake_cpu(side: Side) -> float | None:
    return None if side.fake_pid is None else process_cpu_seconds(side.fake_pid)


async def _round(side: Side, approach: str, concurrency: int) -> _RoundResult:
    """One round of `concurrency` answers at once: CPU both processes used, GC pauses, departures.

    Every answer has ended when `gather` returns, so the probe goes in and out with no stream open.
    """
    run = side.runner(approach)
    gc.collect()
    with _probe_for(approach):
        cpu, fake_cpu = time.process_time(), _fake_cpu(side)
        with _GcWatch() as watch, departures.recorded() as left:
            samples = list(await asyncio.gather(*(run() for _ in range(concurrency))))
        cpu_seconds, fake_after = time.process_time() - cpu, _fake_cpu(side)
    fake_seconds = None if fake_cpu is None or fake_after is None else fake_after - fake_cpu
    return _RoundResult(samples, cpu_seconds, fake_seconds, watch.pauses_ms, left.seconds)


async def run_level(
    side: Side, concurrency: int, rounds: int, ratio_rounds: int = 0, level: Level | None = None
) -> Level:
    """`rounds` rounds of every approach at `concurrency`, the order rotated each round, and
    `ratio_rounds` more of just the bare client and Glimpse, one after the other, interleaved;
    added to `level` if given."""
    level = level or Level(concurrency)
    for index in range(max(rounds, ratio_rounds)):
        order: tuple[str, ...] = ()
        if index < rounds:
            shift = index % len(APPROACHES)
            order += APPROACHES[shift:] + APPROACHES[:shift]
        if index < ratio_rounds:
            order += RATIO_PAIR if index % 2 else RATIO_PAIR[::-1]
        for approach in order:
            result = await _round(side, approach, concurrency)
            level.samples[approach] += result.samples
            level.cpu_seconds[approach] += result.cpu_seconds
            level.gc_pauses_ms[approach] += result.gc_pauses_ms
            level.departures[approach] += result.departures
            known = level.fake_cpu_seconds[approach]
            level.fake_cpu_seconds[approach] = (
                None
                if known is None or result.fake_cpu_seconds is None
                else known + result.fake_cpu_seconds
            )
    return level
