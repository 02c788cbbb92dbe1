"""A what-if for P1: Glimpse with its chat request sent by raw aiohttp instead of the openai SDK."""

from __future__ import annotations

import asyncio
import contextlib
import json
from collections.abc import AsyncIterator, Iterator
from dataclasses import dataclass
from typing import Any

import aiohttp

from benchmarks.overhead import Level, Side, run_level
from benchmarks.steady import SteadyResult, run_steady
from bot import openrouter
from bot.transport import CONNECTION_LIMIT, KEEPALIVE_SECONDS

__all__ = ["WhatIf", "compare"]


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
    """The same loads with and without the SDK's request path, their rounds alternating, so both
    run on the same process state (what earlier phases left in memory, the connections open)."""

    with_sdk: Level
    without_sdk: Level
    with_sdk_steady: SteadyResult
    without_sdk_steady: SteadyResult


@contextlib.contextmanager
def _installed(session: aiohttp.ClientSession) -> Iterator[None]:
    """While inside, every chat request goes out as one aiohttp POST: no SDK options, no httpx2.

    Benchmark only, and only for the happy path the benchmark takes: no retries, no error
    mapping. Everything else (the core, decoding the stream, the sink) runs as in production, so
    the difference from Glimpse's own rounds is what the SDK's request path costs.
    """
    original = openrouter.OpenRouterClient._open_stream

    async def open_stream(
        client: openrouter.OpenRouterClient, messages: list[dict[str, Any]], max_tokens: int
    ) -> Any:
        response = await session.post(
            client._chat_url,
            data=json.dumps(client._chat_body(messages, max_tokens)),
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


async def compare(
    side: Side, concurrency: int, rounds: int, steady_concurrency: int, model_seconds: float
) -> WhatIf:
    """`rounds` all-at-once rounds and one steady round each way, with and without the SDK.

    Each round is the bare client and Glimpse one after the other; the what-if keeps its own
    connections open throughout, warmed first, as Glimpse's transport keeps its own.
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
        )
        for index in range(rounds):
            for patched in (True, False) if index % 2 == 0 else (False, True):
                installed = _installed(session) if patched else contextlib.nullcontext()
                with installed:
                    level = result.without_sdk if patched else result.with_sdk
                    await run_level(side, concurrency, 0, 1, level)
        for patched in (True, False):
            with _installed(session) if patched else contextlib.nullcontext():
                steady = result.without_sdk_steady if patched else result.with_sdk_steady
                await run_steady(side, steady_concurrency, 1, model_seconds, steady)
        return result
