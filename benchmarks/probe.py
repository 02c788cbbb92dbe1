"""Splits each answer's wall time: inside the openai SDK, decoding the model's stream, and the rest."""

from __future__ import annotations

import time
from collections.abc import AsyncIterator, Awaitable, Callable
from contextvars import ContextVar
from dataclasses import dataclass
from typing import Any

import openai

from bot import openrouter

__all__ = ["Probe", "install", "start_probe"]


@dataclass(slots=True)
class Probe:
    """One answer's clock: seconds awaiting the SDK, decoding its stream, when the request was made."""

    started: float
    sdk_seconds: float = 0.0
    # bot/sse.py and reading the chunks' fields: what the SDK's own decoder did before
    decode_seconds: float = 0.0
    request_at: float | None = None
    depth: int = 0  # SDK calls in progress (create() calls post(): only the outer one is timed)

    def core_seconds(self, ended: float) -> float:
        """Wall time of the answer outside the SDK and the stream decoder: the bot's own steps."""
        return ended - self.started - self.sdk_seconds - self.decode_seconds

    def build_seconds(self) -> float:
        return (self.request_at or self.started) - self.started


_current: ContextVar[Probe | None] = ContextVar("bench_probe", default=None)
_installed: list[bool] = []


def start_probe() -> Probe:
    """A new probe for the answer this task is about to give."""
    probe = Probe(time.perf_counter())
    _current.set(probe)
    return probe


class _TimedIterator:
    """An SDK stream's iterator whose every wait is added to a probe's SDK time."""

    def __init__(self, iterator: AsyncIterator[Any], probe: Probe) -> None:
        self._iterator = iterator
        self._probe = probe

    def __aiter__(self) -> _TimedIterator:
        return self

    async def __anext__(self) -> Any:
        started = time.perf_counter()
        try:
            return await self._iterator.__anext__()
        finally:
            self._probe.sdk_seconds += time.perf_counter() - started


def _timed(function: Callable[..., Awaitable[Any]]) -> Callable[..., Awaitable[Any]]:
    """`function` (an SDK method) with its time charged to the running answer's probe."""

    async def timed(self: Any, *args: Any, **kwargs: Any) -> Any:
        probe = _current.get()
        if probe is None or probe.depth:
            return await function(self, *args, **kwargs)
        started = time.perf_counter()
        probe.request_at = probe.request_at or started
        probe.depth += 1
        try:
            return await function(self, *args, **kwargs)
        finally:
            probe.depth -= 1
            probe.sdk_seconds += time.perf_counter() - started

    return timed


def _timed_decoding(function: Callable[..., Any]) -> Callable[..., Any]:
    """`function` (Glimpse's decoding of one network read) with its time charged as decoding."""

    def timed(*args: Any) -> Any:
        started = time.perf_counter()
        result = function(*args)  # never raises: it returns the failure it found
        probe = _current.get()
        if probe is not None:
            probe.decode_seconds += time.perf_counter() - started
        return result

    return timed


def install() -> None:
    """Charge every SDK request, stream step and stream close made under a probe to that probe.

    Patched on the classes (`chat.completions.create`, with its request preparation, and
    `AsyncOpenAI.post`, which every resource method calls, and `AsyncStream`), so it holds
    however the bot calls the SDK. Glimpse decodes the stream's events itself (bot/sse.py,
    called through `bot.openrouter._take` once per network read): that is timed apart, as
    decoding. Install before creating clients.
    """
    if _installed:
        return
    _installed.append(True)
    completions = openai.resources.chat.AsyncCompletions
    aiter = openai.AsyncStream.__aiter__

    def timed_aiter(self: Any) -> Any:
        probe = _current.get()
        iterator = aiter(self)
        return iterator if probe is None else _TimedIterator(iterator, probe)

    completions.create = _timed(completions.create)  # type: ignore[method-assign]
    openai.AsyncOpenAI.post = _timed(openai.AsyncOpenAI.post)  # type: ignore[method-assign]
    openai.AsyncStream.__aiter__ = timed_aiter  # type: ignore[method-assign]
    openai.AsyncStream.close = _timed(openai.AsyncStream.close)  # type: ignore[method-assign]
    openrouter._take = _timed_decoding(openrouter._take)
