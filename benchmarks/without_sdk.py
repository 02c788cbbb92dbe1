"""A what-if for P1: Glimpse with its chat request sent by raw aiohttp instead of the openai SDK."""

from __future__ import annotations

import json
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any

import aiohttp

from bot import openrouter
from bot.transport import CONNECTION_LIMIT, KEEPALIVE_SECONDS

__all__ = ["installed"]


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


@asynccontextmanager
async def installed() -> AsyncIterator[None]:
    """While inside, every chat request goes out as one aiohttp POST: no SDK options, no httpx2.

    Benchmark only, and only for the happy path the benchmark takes: no retries, no error
    mapping. Everything else (the core, decoding the stream, the sink) runs as in production, so
    the difference from Glimpse's own rounds is what the SDK's request path costs.
    """
    original = openrouter.OpenRouterClient._open_stream
    sessions: list[aiohttp.ClientSession] = []

    async def open_stream(
        client: openrouter.OpenRouterClient, messages: list[dict[str, Any]], max_tokens: int
    ) -> Any:
        if not sessions:
            connector = aiohttp.TCPConnector(
                limit=CONNECTION_LIMIT, keepalive_timeout=KEEPALIVE_SECONDS
            )
            sessions.append(aiohttp.ClientSession(connector=connector))
        response = await sessions[0].post(
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
        for session in sessions:
            await session.close()
