"""Where the bot process's time goes during a round of concurrent answers (pyinstrument, grouped by layer)."""

from __future__ import annotations

import asyncio
import gc
import sysconfig
from collections import defaultdict
from dataclasses import dataclass
from typing import Any

from benchmarks.overhead import Side

__all__ = ["LAYERS", "ProfileResult", "profile_round"]

SAMPLE_INTERVAL_SECONDS = 0.001
# (label, path fragments): the first layer whose fragment is in a frame's file path owns its time.
LAYERS = (
    (
        "openai SDK: building a pydantic model per chunk",
        (
            "/openai/_models.py",
            "/openai/_compat.py",
            "/openai/_utils/",
            "/pydantic/",
            "/typing_extensions.py",
        ),
    ),
    (
        "HTTP client (aiohttp, httpx2, anyio)",
        (
            "/openai/_vendor/",  # the SDK's httpx2-to-aiohttp transport
            "/aiohttp/",
            "/aiohappyeyeballs/",
            "/multidict/",
            "/yarl/",
            "/httpx2/",
            "/httpcore2/",
            "/h11/",
            "/anyio/",
            "/httpx/",
            "/httpcore/",
        ),
    ),
    ("openai SDK: request building and stream plumbing", ("/openai/",)),
    ("asyncio event loop and sockets", ("/asyncio/", "/selectors.py", "/socket.py", "/ssl.py")),
    ("JSON decoding", ("/json/",)),
    ("Glimpse core (bot/)", ("/bot/",)),
    ("Glimpse adapters (sink)", ("/adapters/",)),
    ("benchmark harness", ("/benchmarks/",)),
)
STDLIB = sysconfig.get_paths()["stdlib"]


@dataclass(frozen=True, slots=True)
class ProfileResult:
    """Seconds of sampled time per layer, for `answers` concurrent answers."""

    answers: int
    seconds: dict[str, float]

    @property
    def total(self) -> float:
        return sum(self.seconds.values())


def _layer(path: str | None, inherited: str) -> str:
    if not path or path.startswith("<"):
        return inherited  # built-ins count for whoever called them
    for label, fragments in LAYERS:
        if any(fragment in path for fragment in fragments):
            return label
    if path.startswith(STDLIB):
        return inherited if inherited != "other" else "other (stdlib)"
    return "other"


def _walk(frame: Any, inherited: str, totals: dict[str, float]) -> None:
    layer = _layer(frame.file_path, inherited)
    totals[layer] += frame.total_self_time
    for child in frame.children:
        if not child.is_synthetic:
            _walk(child, layer, totals)


async def profile_round(side: Side, answers: int) -> ProfileResult | None:
    """One round of `answers` concurrent Glimpse answers under pyinstrument; None without it."""
    try:
        from pyinstrument import Profiler
    except ImportError:
        return None
    gc.collect()
    profiler = Profiler(interval=SAMPLE_INTERVAL_SECONDS, async_mode="disabled")
    profiler.start()
    await asyncio.gather(*(side.glimpse_answer() for _ in range(answers)))
    profiler.stop()
    totals: dict[str, float] = defaultdict(float)
    root = profiler.last_session.root_frame() if profiler.last_session else None
    if root is not None:
        _walk(root, "other", totals)
    return ProfileResult(answers, dict(sorted(totals.items(), key=lambda item: -item[1])))
