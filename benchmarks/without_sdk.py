"""A what-if for P1: Glimpse with its chat request sent by raw aiohttp instead of the openai SDK,
beside a client that only reads and decodes the stream (the least any bot must do)."""

from __future__ import annotations

import asyncio
import contextlib
import functools
import json
import time
from collections.abc import AsyncIterator, Callable, Iterator
from dataclasses import dataclass
from typing import Any

import aiohttp

from benchmarks.overhead import Level, Sample, Side, request_body, run_level
from benchmarks.steady import SteadyResult, run_steady
from bot import openrouter
from bot.chunks import decode_chunk
from bot.sse import EventDecoder
from bot.transport import CONNECTION_LIMIT, KEEPALIVE_SECONDS
from tests.fakes.openrouter import FAKE_API_KEY

__all__ = ["WhatIf", "compare", "read_answer"]


class _Stream:
    """What `OpenRouterClient.stream` uses of the SDK's stream: the body's reads and close."""

    def __init__(self, response: aiohttp.ClientResponse) -> None:
        self._response = response
        self.response = self  # `stream` reads `.response.request` for its error chunks
        self.request = None

    def blocks(self) -> AsyncIterator[bytes]:
        return self._response.content.iter_any()

    async def close(self) -> None:
        self._response.release()


@dataclass
class WhatIf:
    """The same loads with and without the SDK's request path, and the reading client, their
    rounds interleaved, so the machine's drift over a run falls on all of them alike."""

    with_sdk: Level
    without_sdk: Level
    with_sdk_steady: SteadyResult
    without_sdk_steady: SteadyResult
    # all at once, the "glimpse" samples from a client that only reads and decodes the stream
    reader: Level


@contextlib.contextmanager
def _installed(session: aiohttp.ClientSession) -> Iterator[None]:
    """While inside, every chat request goes out as one aiohttp POST: no SDK options, no httpx2.

    Benchmark only, and only for the happy path the benchmark takes: no retries, no error
    mapping. Everything else (the core, decoding the stream, the sink) runs as in production, so
    the difference from Glimpse's own rounds is what the SDK's request path costs.
    """
    original = openrouter.OpenRouterClient._open_stream

    async def open_stream(
        client: openrouter.OpenRouterClient,
        messages: list[dict[str, Any]],
        max_tokens: int,
        model: str,
    ) -> Any:
        response = await session.post(
            client._chat_url,
            data=json.dumps(client._chat_body(messages, max_tokens, model)),
            headers={
                "Authorization": f"Bearer {client._api_key}",
                "Content-Type": "application/json",
            },
        )
        return _Stream(response)

    openrouter.OpenRouterClient._open_stream = open_stream  # type: ignore[assignment,method-assign]
    try:
        yield
    finally:
        openrouter.OpenRouterClient._open_stream = original  # type: ignore[method-assign]


async def read_answer(side: Side) -> Sample:
    """The least any bot must do: one raw POST, every event split and decoded, the text joined.

    It uses Glimpse's own decoders (`bot.sse`, `bot.chunks`), so what Glimpse costs beyond it
    is its own steps and the SDK's request path, not the reading every answer needs.
    """
    started = time.perf_counter()
    decoder, parts = EventDecoder(), []
    headers = {"Authorization": f"Bearer {FAKE_API_KEY}"}
    url = f"{side.base_url}/chat/completions"
    async with side.http.post(url, json=request_body(), headers=headers) as response:
        async for block in response.content.iter_any():
            for data in decoder.feed(block):
                for choice in decode_chunk(data).choices or ():
                    if choice.delta is not None and choice.delta.content:
                        parts.append(choice.delta.content)
    if not "".join(parts):
        raise RuntimeError("the reading client got no text")
    return Sample(time.perf_counter() - started)


@contextlib.contextmanager
def _reading_instead(side: Side) -> Iterator[None]:
    """While inside, the side's "glimpse" rounds are `read_answer` (benchmark only)."""
    side.glimpse_answer = functools.partial(read_answer, side)  # type: ignore[method-assign]
    try:
        yield
    finally:
        del side.glimpse_answer  # the method again


async def compare(
    side: Side, concurrency: int, rounds: int, steady_concurrency: int, model_seconds: float
) -> WhatIf:
    """`rounds` all-at-once rounds each way (with the SDK, without it, and the reading client,
    their order rotated), then one steady round with and one without the SDK.

    Each round is the bare client and the variant one after the other; the what-if keeps its
    own connections open throughout, warmed first, as Glimpse's transport keeps its own.
    """
    connector = aiohttp.TCPConnector(limit=CONNECTION_LIMIT, keepalive_timeout=KEEPALIVE_SECONDS)
    async with aiohttp.ClientSession(connector=connector) as session:
        with _installed(session):
            await asyncio.gather(*(side.glimpse_answer() for _ in range(concurrency)))
        result = WhatIf(
            Level(concurrency),
            Level(concurrency),
            SteadyResult(steady_concurrency),
            SteadyResult(steady_concurrency),
            Level(concurrency),
        )
        variants: list[tuple[Level, Callable[[], contextlib.AbstractContextManager[None]]]] = [
            (result.without_sdk, lambda: _installed(session)),
            (result.with_sdk, contextlib.nullcontext),
            (result.reader, lambda: _reading_instead(side)),
        ]
        for index in range(rounds):
            shift = index % len(variants)
            for level, arranged in variants[shift:] + variants[:shift]:
                with arranged():
                    await run_level(side, concurrency, 0, 1, level)
        for patched in (True, False):
            with _installed(session) if patched else contextlib.nullcontext():
                steady = result.without_sdk_steady if patched else result.with_sdk_steady
                await run_steady(side, steady_concurrency, 1, model_seconds, steady)
        return result
