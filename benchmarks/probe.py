"""While installed, splits each answer's wall time: in the openai SDK, decoding the model's stream, the rest."""

from __future__ import annotations

import time
from collections.abc import AsyncIterator, Awaitable, Callable, Iterator
from contextlib import contextmanager
from contextvars import ContextVar
from dataclasses import dataclass
from typing import Any

import openai

from bot import openrouter

__all__ = ["Probe", "installed", "start_probe"]


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


def _timed_aiter(function: Callable[[Any], Any]) -> Callable[[Any], Any]:
    """`function` (a stream's way to its iterator) whose iterator, under a probe, charges every wait to it."""

    def timed(self: Any) -> Any:
        probe = _current.get()
        iterator = function(self)
        return iterator if probe is None else _TimedIterator(iterator, probe)

    return timed


def _wrappers() -> list[tuple[Any, str, Callable[..., Any]]]:
    """(owner, attribute, timed replacement) for each function the probe times."""
    completions = openai.resources.chat.AsyncCompletions
    return [
        (completions, "create", _timed(completions.create)),
        (openai.AsyncOpenAI, "post", _timed(openai.AsyncOpenAI.post)),
        (openai.AsyncStream, "__aiter__", _timed_aiter(openai.AsyncStream.__aiter__)),
        # Glimpse reads the body of the SDK's stream itself, a network read per step
        (openrouter._BodyStream, "blocks", _timed_aiter(openrouter._BodyStream.blocks)),
        (openai.AsyncStream, "close", _timed(openai.AsyncStream.close)),
        (openrouter, "_take", _timed_decoding(openrouter._take)),
    ]


_INHERITED = object()  # an owner that held no attribute of its own under that name


class _Patches:
    """The wrappers in place and what they replaced, for as long as any `installed()` block runs."""

    def __init__(self) -> None:
        self.depth = 0
        self.originals: list[tuple[Any, str, Any]] = []

    def enter(self) -> None:
        if not self.depth:
            for owner, name, wrapper in _wrappers():
                self.originals.append((owner, name, vars(owner).get(name, _INHERITED)))
                setattr(owner, name, wrapper)
        self.depth += 1

    def leave(self) -> None:
        self.depth -= 1
        if self.depth:
            return
        for owner, name, original in reversed(self.originals):
            if original is _INHERITED:  # the wrapper shadowed a base class's: uncover it
                delattr(owner, name)
            else:
                setattr(owner, name, original)
        self.originals.clear()


_patches = _Patches()


@contextmanager
def installed() -> Iterator[None]:
    """Charge every SDK request, stream step and stream close made under a probe to that probe.

    Patched on the classes (`chat.completions.create`, with its request preparation, and
    `AsyncOpenAI.post`, which every resource method calls, and `AsyncStream`), so it holds
    however the bot calls the SDK. Glimpse reads the body of the SDK's stream itself, through
    its own transport (`bot.openrouter._BodyStream.blocks`): each wait there counts as SDK time,
    as the HTTP stack's reads always did. It decodes the events itself too (bot/sse.py and
    bot/chunks.py, through `bot.openrouter._take` once per network read): that is timed apart,
    as decoding. Leaving the outermost block puts the originals back, so what runs outside pays
    no wrapper; enter and leave with no stream in flight. An SDK resource
    (`client.chat.completions`) keeps the `post` it first saw: first use long-lived clients outside.
    """
    _patches.enter()
    try:
        yield
    finally:
        _patches.leave()
