"""CPU of one chat request through the openai SDK as Glimpse calls it, to a transport that answers at once."""

from __future__ import annotations

import time

import httpx2
import openai

from bot.openrouter import NO_SDK_TELEMETRY
from tests.fakes.openrouter import FAKE_API_KEY

__all__ = ["sdk_request_microseconds"]

_BASE_URL = "http://127.0.0.1:9/api/v1/"  # never connected to: the transport answers itself


class _Instant(httpx2.AsyncBaseTransport):
    """Answers every request at once with an empty event stream, so only the SDK's work is timed."""

    async def handle_async_request(self, request: httpx2.Request) -> httpx2.Response:
        await request.aread()
        return httpx2.Response(
            200,
            headers=[(b"content-type", b"text/event-stream")],
            stream=httpx2.ByteStream(b"data: [DONE]\n\n"),
            request=request,
        )


async def sdk_request_microseconds(body: dict[str, object], requests: int) -> float:
    """Mean CPU µs per `post` (stream=True), with the options and headers Glimpse sends.

    It is what a request costs before any byte reaches the network: the SDK's options (pydantic),
    its headers and URL (httpx2's models), retries' bookkeeping and the stream object.
    """
    client = openai.AsyncOpenAI(
        api_key=FAKE_API_KEY,
        base_url=_BASE_URL,
        max_retries=0,
        http_client=httpx2.AsyncClient(transport=_Instant()),
    )
    url = f"{client.base_url}chat/completions"

    async def one() -> None:
        stream = await client.post(
            url,
            cast_to=bytes,
            body=body,
            options={"headers": NO_SDK_TELEMETRY},
            stream=True,
            stream_cls=openai.AsyncStream[bytes],
        )
        await stream.close()

    try:
        for _ in range(max(1, requests // 10)):  # warm-up: imports, caches, the platform lookup
            await one()
        started = time.process_time()
        for _ in range(requests):
            await one()
        return 1e6 * (time.process_time() - started) / requests
    finally:
        await client.close()
