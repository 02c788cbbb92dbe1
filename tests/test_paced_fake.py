"""The benchmarks' paced fake OpenRouter: the fake's bytes (each reply numbered), at the same times, one writer."""

from __future__ import annotations

import asyncio
import re
import time
from typing import Any

import aiohttp
import openai
import pytest

from benchmarks.paced import PacedOpenRouter, _Stream
from tests.fakes.openrouter import FAKE_API_KEY, FakeOpenRouter, split_reply

REPLY = "one two three four five six"
BODY = {
    "model": "meta-llama/llama-3.2-90b-vision-instruct",
    "stream": True,
    "messages": [{"role": "user", "content": "What is in the picture?"}],
}
HEADERS = {"Authorization": f"Bearer {FAKE_API_KEY}"}
IDS = re.compile(rb"gen-[0-9a-f]{20}")
CREATED = re.compile(rb'"created":\d+')
NUMBER = re.compile(r" r\d+")  # the paced fake's reply number, in one piece in the middle


def _fake(kind: type[FakeOpenRouter], **settings: Any) -> FakeOpenRouter:
    return kind(**{"reply": REPLY, "chunks": 6, "record_requests": False, **settings})


async def _raw_body(fake: FakeOpenRouter) -> tuple[dict[str, str], bytes]:
    async with aiohttp.ClientSession() as http:
        url = f"{fake.base_url}/chat/completions"
        async with http.post(url, json=BODY, headers=HEADERS) as response:
            return dict(response.headers), await response.read()


def _normalised(body: bytes) -> bytes:
    return NUMBER.sub("", CREATED.sub(b'"created":0', IDS.sub(b"gen-ID", body)).decode()).encode()


async def test_a_paced_stream_carries_the_same_events_as_the_fakes() -> None:
    async with _fake(FakeOpenRouter) as plain, _fake(PacedOpenRouter) as paced:
        plain_headers, plain_body = await _raw_body(plain)
        paced_headers, paced_body = await _raw_body(paced)
    assert _normalised(paced_body) == _normalised(plain_body)
    assert paced_body.count(b"data: ") == 6 + 3  # six pieces, stop, usage, [DONE]
    generation = paced_headers["X-Generation-Id"].encode()
    assert set(IDS.findall(paced_body)) == {generation}  # every chunk names this stream's id
    assert paced_headers["Transfer-Encoding"] == plain_headers["Transfer-Encoding"] == "chunked"


async def test_the_openai_sdk_reads_a_paced_stream_to_its_usage() -> None:
    async with _fake(PacedOpenRouter) as fake:
        client = openai.AsyncOpenAI(base_url=fake.base_url, api_key=FAKE_API_KEY, max_retries=0)
        async with client:
            stream = await client.chat.completions.create(
                model=str(BODY["model"]),
                messages=[{"role": "user", "content": "hi"}],
                stream=True,
                stream_options={"include_usage": True},
            )
            chunks = [chunk async for chunk in stream]
    text = "".join(c.choices[0].delta.content or "" for c in chunks if c.choices)
    assert NUMBER.sub("", text) == REPLY and NUMBER.search(text)
    assert chunks[-1].usage is not None and chunks[-1].usage.completion_tokens == 6


async def test_pieces_arrive_no_sooner_than_the_models_pace() -> None:
    first, gap = 0.15, 0.03
    async with _fake(
        PacedOpenRouter, first_token_latency_seconds=first, chunk_delay_seconds=gap
    ) as fake:
        started = time.perf_counter()
        await _raw_body(fake)
        elapsed = time.perf_counter() - started
    assert elapsed >= first + 5 * gap


async def test_concurrent_streams_each_get_their_own_id_and_every_piece() -> None:
    async with _fake(PacedOpenRouter, chunk_delay_seconds=0.005) as fake:
        bodies = await asyncio.gather(*(_raw_body(fake) for _ in range(40)))
    ids = [headers["X-Generation-Id"] for headers, _ in bodies]
    assert len(set(ids)) == 40
    assert all(body.endswith(b"data: [DONE]\n\n") for _, body in bodies)
    assert {_normalised(body) for _, body in bodies} == {_normalised(bodies[0][1])}


async def test_a_client_that_hangs_up_is_dropped_and_the_next_one_is_served(
    caplog: pytest.LogCaptureFixture,
) -> None:
    async with _fake(PacedOpenRouter, chunks=40, chunk_delay_seconds=0.005) as fake:
        assert isinstance(fake, PacedOpenRouter)
        async with aiohttp.ClientSession() as http:
            url = f"{fake.base_url}/chat/completions"
            async with http.post(url, json=BODY, headers=HEADERS) as response:
                await response.content.readany()  # the processing comment, then hang up
        for _ in range(50):
            if fake.active_streams == 0 and fake.pacer.scheduled == 0:
                break
            await asyncio.sleep(0.02)
        assert fake.active_streams == 0
        assert fake.pacer.scheduled == 0
        _, body = await _raw_body(fake)
    assert body.count(b"data: ") == len(split_reply(REPLY, 40)) + 3
    assert not [r for r in caplog.records if r.name == "asyncio"]  # no writes to a closed socket


@pytest.mark.parametrize("gzip", [False, True])
async def test_scripted_and_gzip_streams_keep_the_fakes_own_writer(gzip: bool) -> None:
    async with _fake(PacedOpenRouter, gzip_streams=gzip) as fake:
        if not gzip:
            fake.error_mid_stream(after_chunks=2)
        headers, body = await _raw_body(fake)
    if gzip:
        assert headers["Content-Encoding"] == "gzip"
        assert body.count(b"data: ") == 9
    else:
        assert b'"finish_reason":"error"' in body
        assert body.count(b"data: ") == 3


class _Recorder:
    """Stands in for a transport: keeps what each write sent."""

    def __init__(self) -> None:
        self.writes: list[bytes] = []

    def write(self, data: bytes) -> None:
        self.writes.append(data)


async def test_a_pacer_that_fell_behind_sends_what_is_due_in_one_write() -> None:
    recorder = _Recorder()
    done: asyncio.Future[None] = asyncio.get_running_loop().create_future()
    stream = _Stream(recorder, [b"a", b"b", b"c", b"d"], 1.0, done)  # type: ignore[arg-type]
    assert stream.write_due(0.0, horizon=0.5) == 1.0  # on time: one frame
    assert stream.write_due(1.0, horizon=3.2) == 4.0  # late: b, c and d were all due
    assert recorder.writes == [b"a", b"bcd"]
    assert stream.sent == 4


async def test_no_two_replies_are_the_same_text() -> None:
    async with _fake(PacedOpenRouter) as fake:
        bodies = [(await _raw_body(fake))[1] for _ in range(3)]
    texts = [NUMBER.findall(body.decode()) for body in bodies]
    assert len({tuple(found) for found in texts}) == 3 and all(len(f) == 1 for f in texts)
