"""P1 at a steady load: every conversation asks again once answered, their starts spread over the model's time."""

from __future__ import annotations

import asyncio
import gc
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field

from benchmarks.overhead import RATIO_PAIR, Sample, Side

__all__ = ["SteadyResult", "run_steady"]

# Answers are counted from when every conversation is going, for this many model times.
WINDOW_MODEL_TIMES = 2.0


@dataclass
class SteadyResult:
    """Per approach (the bare client and Glimpse): the counted answers' seconds, and CPU."""

    concurrency: int
    seconds: dict[str, list[float]] = field(default_factory=lambda: {a: [] for a in RATIO_PAIR})
    cpu_seconds: dict[str, float] = field(default_factory=lambda: dict.fromkeys(RATIO_PAIR, 0.0))
    answers: dict[str, int] = field(default_factory=lambda: dict.fromkeys(RATIO_PAIR, 0))

    def cpu_ms_per_answer(self, approach: str) -> float:
        """This process's CPU per answer over the whole round, ramp and tail included."""
        return 1000 * self.cpu_seconds[approach] / max(self.answers[approach], 1)


async def run_steady(
    side: Side,
    concurrency: int,
    rounds: int,
    model_seconds: float,
    result: SteadyResult | None = None,
) -> SteadyResult:
    """`rounds` rounds each of the bare client and Glimpse, alternating which goes first; added
    to `result` if given."""
    result = result or SteadyResult(concurrency)
    for index in range(rounds):
        for approach in RATIO_PAIR if index % 2 == 0 else RATIO_PAIR[::-1]:
            gc.collect()
            cpu = time.process_time()
            counted, answers = await _steady_round(
                side.runner(approach), concurrency, model_seconds
            )
            result.cpu_seconds[approach] += time.process_time() - cpu
            result.seconds[approach] += counted
            result.answers[approach] += answers
    return result


async def _steady_round(
    run: Callable[[], Awaitable[Sample]], concurrency: int, model_seconds: float
) -> tuple[list[float], int]:
    """`concurrency` conversations, the k-th starting at k/concurrency of the model's time, each
    asking again as soon as it is answered: once the last has started, `concurrency` answers
    are always streaming. The answers started from then on, for WINDOW_MODEL_TIMES model times,
    are counted (seconds each); the second value is how many answers there were in all."""
    ramp = model_seconds
    stop = ramp + WINDOW_MODEL_TIMES * model_seconds
    started_at = time.perf_counter()
    counted: list[float] = []
    answers = 0

    async def conversation(index: int) -> None:
        nonlocal answers
        await asyncio.sleep(index * ramp / concurrency)
        while (since := time.perf_counter() - started_at) < stop:
            sample = await run()
            answers += 1
            if since >= ramp:
                counted.append(sample.seconds)

    await asyncio.gather(*(conversation(index) for index in range(concurrency)))
    return counted, answers
