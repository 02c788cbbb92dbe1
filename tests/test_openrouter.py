"""The OpenRouter client, through the real openai SDK, against the loopback FakeOpenRouter."""

from __future__ import annotations

import asyncio
import logging
import socket
import time
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any

import openai
import pytest
from openai.types.chat import ChatCompletionMessageParam

import bot.openrouter as openrouter
from bot.config import Settings
from bot.openrouter import ModelError, ModelInfo, OpenRouterClient, StreamEnd, TextDelta
from tests.fakes.openrouter import (
    FAKE_API_KEY,
    LLAMA_VISION_MODEL,
    TEXT_ONLY_MODEL,
    FakeOpenRouter,
    split_reply,
)

QUESTION = [{"role": "user", "content": "What is in the picture?"}]
FAST_RETRY_SECONDS = 0.01


@pytest.fixture(autouse=True)
def _fast_early_retries(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(openrouter, "EARLY_RETRY_BASE_DELAY_SECONDS", FAST_RETRY_SECONDS)


def make_settings(fake: FakeOpenRouter, **overrides: Any) -> Settings:
    values: dict[str, Any] = {
        "base_url": fake.base_url,
        "max_retries": 2,
        "request_timeout_seconds": 5.0,
    }
    values.update(overrides)
    return Settings(**values)


@pytest.fixture
async def client(fake_openrouter: FakeOpenRouter) -> AsyncIterator[OpenRouterClient]:
    client = OpenRouterClient(make_settings(fake_openrouter), FAKE_API_KEY)
    yield client
    await client.close()


@asynccontextmanager
async def impatient_client(
    fake: FakeOpenRouter, timeout_seconds: float
) -> AsyncIterator[OpenRouterClient]:
    """A client with a short request timeout and no SDK retries, closed afterwards."""
    settings = make_settings(fake, request_timeout_seconds=timeout_seconds, max_retries=0)
    client = OpenRouterClient(settings, FAKE_API_KEY)
    try:
        yield client
    finally:
        await client.close()


async def collect(client: OpenRouterClient, *, max_tokens: int = 256) -> tuple[str, StreamEnd]:
    text, end = [], None
    async for event in client.stream(QUESTION, max_tokens=max_tokens):
        if isinstance(event, TextDelta):
            text.append(event.text)
        else:
            end = event
    assert end is not None
    return "".join(text), end


async def fail(client: OpenRouterClient) -> tuple[list[str], ModelError]:
    """Run a stream that must fail; return the text that arrived first and the error."""
    deltas: list[str] = []
    with pytest.raises(ModelError) as caught:
        async for event in client.stream(QUESTION, max_tokens=256):
            assert isinstance(event, TextDelta), "no StreamEnd after a failure"
            deltas.append(event.text)
    return deltas, caught.value


def first_pieces(fake: FakeOpenRouter, count: int) -> str:
    """The text of the fake's first `count` content chunks (one read may carry several)."""
    return "".join(split_reply(fake.reply, fake.chunks)[:count])


# --- streaming ---


async def test_streams_text_then_usage_and_cost(
    fake_openrouter: FakeOpenRouter, client: OpenRouterClient
) -> None:
    text, end = await collect(client)
    assert text == fake_openrouter.reply
    prompt_tokens = len(QUESTION[0]["content"]) // 4
    completion_tokens = fake_openrouter.chunks
    assert end.usage.model == LLAMA_VISION_MODEL
    assert (end.usage.prompt_tokens, end.usage.completion_tokens) == (
        prompt_tokens,
        completion_tokens,
    )
    assert end.usage.cost == pytest.approx(
        prompt_tokens * 0.0000008 + completion_tokens * 0.0000016
    )
    assert end.finish_reason == "stop"


async def test_consecutive_answers_reuse_one_connection(
    fake_openrouter: FakeOpenRouter, client: OpenRouterClient
) -> None:
    fake_openrouter.done_linger_seconds = 0.02  # the body's end comes in a later read
    for _ in range(3):
        await collect(client)
    peers = {request.peer for request in fake_openrouter.chat_requests}
    assert len(fake_openrouter.chat_requests) == 3 and len(peers) == 1  # the body was drained


async def test_usage_names_the_model_that_answered(
    fake_openrouter: FakeOpenRouter, client: OpenRouterClient
) -> None:
    fake_openrouter.answering_model = TEXT_ONLY_MODEL  # as after a fallback
    _, end = await collect(client)
    assert end.usage.model == TEXT_ONLY_MODEL
    assert end.usage.cost == pytest.approx(
        end.usage.prompt_tokens * 0.00000002 + end.usage.completion_tokens * 0.00000005
    )


async def test_request_carries_attribution_headers_and_openrouter_fields(
    fake_openrouter: FakeOpenRouter,
) -> None:
    settings = make_settings(
        fake_openrouter,
        provider={"order": ["DeepInfra"], "allow_fallbacks": True},
        fallback_models=[TEXT_ONLY_MODEL, LLAMA_VISION_MODEL],
        temperature=0.3,
        http_referer="https://example.org/glimpse",
        app_title="Glimpse Test",
    )
    client = OpenRouterClient(settings, FAKE_API_KEY)
    try:
        await collect(client, max_tokens=321)
    finally:
        await client.close()
    [request] = fake_openrouter.chat_requests
    assert request.headers["HTTP-Referer"] == "https://example.org/glimpse"
    assert request.headers["X-Title"] == "Glimpse Test"
    body = request.body
    assert body["model"] == LLAMA_VISION_MODEL
    assert body["messages"] == QUESTION
    assert (body["stream"], body["max_tokens"], body["temperature"]) == (True, 321, 0.3)
    assert body["stream_options"] == {"include_usage": True}
    assert body["plugins"] == [{"id": "context-compression", "enabled": False}]
    assert "transforms" not in body  # gone from OpenRouter's API schema; the plugin is the switch
    assert body["provider"] == {"order": ["DeepInfra"], "allow_fallbacks": True}
    assert body["models"] == [LLAMA_VISION_MODEL, TEXT_ONLY_MODEL]  # primary first, no duplicate


async def test_no_request_carries_the_sdks_telemetry_headers(
    fake_openrouter: FakeOpenRouter,
) -> None:
    client = OpenRouterClient(make_settings(fake_openrouter), FAKE_API_KEY)
    try:
        await client.model_info()
        await collect(client, max_tokens=16)
        await client.key_info()
    finally:
        await client.close()
    paths = [request.path for request in fake_openrouter.requests]
    assert paths == ["/api/v1/models", "/api/v1/chat/completions", "/api/v1/key"]
    for request in fake_openrouter.requests:
        sent = {name.lower() for name in request.headers}
        assert not {name for name in sent if name.startswith("x-stainless")}, request.path
        assert request.headers["Authorization"] == f"Bearer {FAKE_API_KEY}"
        assert request.headers["User-Agent"].startswith("AsyncOpenAI/Python")


async def test_plain_settings_send_no_provider_or_models_and_no_empty_headers(
    fake_openrouter: FakeOpenRouter,
) -> None:
    client = OpenRouterClient(
        make_settings(fake_openrouter, http_referer="", app_title=""), FAKE_API_KEY
    )
    try:
        await collect(client, max_tokens=16)
    finally:
        await client.close()
    [request] = fake_openrouter.chat_requests
    assert "HTTP-Referer" not in request.headers and "X-Title" not in request.headers
    assert "provider" not in request.body and "models" not in request.body
    assert request.body["max_tokens"] == 16


async def test_image_message_arrives_as_sent(
    fake_openrouter: FakeOpenRouter, client: OpenRouterClient
) -> None:
    fake_openrouter.responder = lambda body: f"echo: {body['messages'][-1]['content'][1]['text']}"
    image_url = "data:image/png;base64,iVBORw0KGgo="
    messages: list[dict[str, Any]] = [
        {"role": "system", "content": "Be brief."},
        {
            "role": "user",
            "content": [
                {"type": "image_url", "image_url": {"url": image_url}},
                {"type": "text", "text": "what?"},
            ],
        },
    ]
    events = [event async for event in client.stream(messages, max_tokens=64)]
    assert "".join(e.text for e in events if isinstance(e, TextDelta)) == "echo: what?"
    assert fake_openrouter.chat_requests[0].body["messages"] == messages
    end = events[-1]
    assert isinstance(end, StreamEnd) and end.usage.cost >= 0.005146  # the image is billed


# --- retries ---


async def test_retries_two_429s_honouring_retry_after(
    fake_openrouter: FakeOpenRouter, client: OpenRouterClient
) -> None:
    fake_openrouter.fail_next(429, times=2, retry_after=0.05)
    started = time.monotonic()
    text, _ = await collect(client)
    elapsed = time.monotonic() - started
    assert text == fake_openrouter.reply
    assert len(fake_openrouter.chat_requests) == 3
    assert 0.1 <= elapsed < 0.6  # two 50 ms waits, not the SDK's 0.5 s default backoff


async def test_retries_a_500_then_succeeds(
    fake_openrouter: FakeOpenRouter, client: OpenRouterClient
) -> None:
    fake_openrouter.fail_next(500, retry_after_ms=20)
    text, _ = await collect(client)
    assert text == fake_openrouter.reply
    assert len(fake_openrouter.chat_requests) == 2


async def test_429_after_all_retries_is_rate_limited(
    fake_openrouter: FakeOpenRouter, client: OpenRouterClient
) -> None:
    fake_openrouter.fail_next(429, times=3, retry_after=0.01)
    _, error = await fail(client)
    assert error.kind == "rate_limited" and error.status == 429
    assert len(fake_openrouter.chat_requests) == 3  # first try + max_retries


async def test_503_after_all_retries_is_unavailable(
    fake_openrouter: FakeOpenRouter, client: OpenRouterClient
) -> None:
    fake_openrouter.fail_next(503, times=3, retry_after=0.01)
    _, error = await fail(client)
    assert error.kind == "unavailable"
    assert error.user_message == openrouter.USER_MESSAGES["unavailable"]


@pytest.mark.parametrize(
    ("status", "kind", "sentence"),
    [
        (401, "auth", "The bot's OpenRouter key is invalid. An operator needs to fix it."),
        (402, "credits", "The bot's OpenRouter account is out of credits."),
        (403, "forbidden", "The request was flagged by the model's moderation."),
        (
            400,
            "bad_request",
            "The model could not accept this request: Invalid request: max_tokens must be a positive integer.",
        ),
    ],
)
async def test_permanent_errors_map_to_a_kind_and_are_not_retried(
    fake_openrouter: FakeOpenRouter, status: int, kind: str, sentence: str
) -> None:
    fake_openrouter.fail_next(status, retry_after=0.01)
    client = OpenRouterClient(make_settings(fake_openrouter, max_retries=3), FAKE_API_KEY)
    try:
        _, error = await fail(client)
    finally:
        await client.close()
    assert (error.kind, error.status, error.user_message) == (kind, status, sentence)
    assert len(fake_openrouter.chat_requests) == 1


async def test_long_or_structured_400_message_is_not_shown_to_users(
    fake_openrouter: FakeOpenRouter, client: OpenRouterClient
) -> None:
    fake_openrouter.fail_next(
        400, message='Provider error: {"error": {"type": "invalid_request_error"}}'
    )
    _, error = await fail(client)
    assert error.kind == "bad_request"
    assert error.user_message == "The model could not accept this request."
    assert "invalid_request_error" in error.detail


async def test_other_secrets_in_error_messages_are_redacted(
    fake_openrouter: FakeOpenRouter, client: OpenRouterClient
) -> None:
    leaked = "sk-or-v1-someone-elses-key-1234567890"
    fake_openrouter.fail_next(400, message=f"Key {leaked} is not allowed")
    _, error = await fail(client)
    assert leaked not in error.detail and leaked not in error.user_message
    assert "[redacted]" in error.detail


async def test_unknown_model_404_names_the_model(
    fake_openrouter: FakeOpenRouter, client: OpenRouterClient
) -> None:
    fake_openrouter.fail_next(404)
    _, error = await fail(client)
    assert error.kind == "bad_request" and error.status == 404
    assert LLAMA_VISION_MODEL in error.user_message


# --- failures inside the stream ---


async def test_error_chunk_mid_stream_after_text(
    fake_openrouter: FakeOpenRouter, client: OpenRouterClient
) -> None:
    fake_openrouter.error_mid_stream(
        after_chunks=3, code=502, message="Provider disconnected unexpectedly"
    )
    deltas, error = await fail(client)
    assert "".join(deltas) == first_pieces(fake_openrouter, 3)
    assert error.kind == "stream_error"
    assert "Provider disconnected unexpectedly" in error.detail
    assert len(fake_openrouter.chat_requests) == 1  # never retried once text was shown


async def test_error_chunk_before_any_text_is_retried(
    fake_openrouter: FakeOpenRouter, client: OpenRouterClient
) -> None:
    fake_openrouter.error_mid_stream(after_chunks=0, code=502)
    text, end = await collect(client)
    assert text == fake_openrouter.reply and end.finish_reason == "stop"
    assert len(fake_openrouter.chat_requests) == 2


async def test_error_chunk_before_text_gives_up_after_the_retry_budget(
    fake_openrouter: FakeOpenRouter, client: OpenRouterClient
) -> None:
    for _ in range(3):
        fake_openrouter.error_mid_stream(after_chunks=0, code="server_error")
    deltas, error = await fail(client)
    assert deltas == [] and error.kind == "stream_error"
    assert len(fake_openrouter.chat_requests) == 3  # 1 + min(max_retries=2, EARLY_STREAM_RETRIES)


async def test_permanent_error_chunk_before_text_is_not_retried(
    fake_openrouter: FakeOpenRouter, client: OpenRouterClient
) -> None:
    fake_openrouter.error_mid_stream(after_chunks=0, code=402, message="Insufficient credits")
    _, error = await fail(client)
    assert error.kind == "credits"
    assert len(fake_openrouter.chat_requests) == 1


async def test_connection_reset_mid_stream(
    fake_openrouter: FakeOpenRouter, client: OpenRouterClient
) -> None:
    fake_openrouter.reset_connection_mid_stream(after_chunks=2)
    deltas, error = await fail(client)
    assert "".join(deltas) == first_pieces(fake_openrouter, 2)
    assert error.kind == "stream_error"
    assert len(fake_openrouter.chat_requests) == 1


async def test_stream_that_ends_before_the_model_finished(
    fake_openrouter: FakeOpenRouter, client: OpenRouterClient
) -> None:
    fake_openrouter.end_stream_early_next(after_chunks=2)
    deltas, error = await fail(client)
    assert "".join(deltas) == first_pieces(fake_openrouter, 2)
    assert error.kind == "stream_error" and "before the model finished" in error.detail


async def test_malformed_chunk_is_a_bad_response(
    fake_openrouter: FakeOpenRouter, client: OpenRouterClient
) -> None:
    fake_openrouter.malformed_chunk_next(after_chunks=1)
    deltas, error = await fail(client)
    assert "".join(deltas) == first_pieces(fake_openrouter, 1)
    assert error.kind == "bad_response"


async def test_hung_server_times_out(fake_openrouter: FakeOpenRouter) -> None:
    fake_openrouter.hang_next()
    started = time.monotonic()
    async with impatient_client(fake_openrouter, 0.3) as client:
        _, error = await fail(client)
    assert error.kind == "timeout"
    assert error.user_message == "The model took too long to answer. Please try again."
    assert time.monotonic() - started < 2.0


async def test_stream_that_stalls_after_text_times_out(fake_openrouter: FakeOpenRouter) -> None:
    fake_openrouter.stall_mid_stream(after_chunks=2)
    started = time.monotonic()
    async with impatient_client(fake_openrouter, 0.3) as client:
        deltas, error = await fail(client)
    assert "".join(deltas) == first_pieces(fake_openrouter, 2)
    assert error.kind == "timeout"
    assert 0.3 <= time.monotonic() - started < 2.0


async def test_a_short_pause_mid_stream_is_not_a_timeout(fake_openrouter: FakeOpenRouter) -> None:
    fake_openrouter.stall_mid_stream(after_chunks=2, seconds=0.2)
    async with impatient_client(fake_openrouter, 0.5) as client:
        text, end = await collect(client)
    assert text == fake_openrouter.reply and end.finish_reason == "stop"


async def test_a_reader_busy_elsewhere_is_not_a_stalled_stream(
    fake_openrouter: FakeOpenRouter,
) -> None:
    """The read timeout measures the server, not how long the bot takes between reads."""
    pieces: list[str] = []
    # A timeout a busy machine's server still meets, and a pause well past it.
    async with impatient_client(fake_openrouter, 1.0) as client:
        async for event in client.stream(QUESTION, max_tokens=256):
            if isinstance(event, TextDelta):
                pieces.append(event.text)
                if len(pieces) == 1:
                    await asyncio.sleep(1.5)  # a slow platform edit, say
    assert "".join(pieces) == fake_openrouter.reply


async def test_a_compressed_stream_is_decoded(
    fake_openrouter: FakeOpenRouter, client: OpenRouterClient
) -> None:
    fake_openrouter.gzip_streams = True
    text, end = await collect(client)
    assert text == fake_openrouter.reply and end.finish_reason == "stop"


async def test_unreachable_server_is_unavailable() -> None:
    settings = Settings(base_url=f"http://127.0.0.1:{_closed_port()}/api/v1", max_retries=0)
    client = OpenRouterClient(settings, FAKE_API_KEY)
    try:
        _, error = await fail(client)
    finally:
        await client.close()
    assert error.kind == "unavailable"


async def test_abandoned_stream_closes_its_connection(
    fake_openrouter: FakeOpenRouter, client: OpenRouterClient
) -> None:
    fake_openrouter.chunk_delay_seconds = 0.2  # still streaming when abandoned
    stream = client.stream(QUESTION, max_tokens=64)
    first = await anext(stream)
    assert isinstance(first, TextDelta)
    await stream.aclose()
    for _ in range(100):  # the connection is closed at once, not when garbage is collected
        if fake_openrouter.active_streams == 0:
            break
        await asyncio.sleep(0.01)
    assert fake_openrouter.active_streams == 0
    text, _ = await collect(client)
    assert text == fake_openrouter.reply


# --- logging and secrets ---


async def test_auth_failure_never_logs_or_shows_the_key(
    fake_openrouter: FakeOpenRouter, caplog: pytest.LogCaptureFixture
) -> None:
    key = FAKE_API_KEY  # the fake accepts it, then answers 401 with a message that echoes it
    fake_openrouter.fail_next(401, message=f"Key {key} was revoked (Authorization: Bearer {key})")
    caplog.set_level(logging.DEBUG)
    client = OpenRouterClient(make_settings(fake_openrouter), key)
    try:
        _, error = await fail(client)
    finally:
        await client.close()
    assert error.kind == "auth"
    assert fake_openrouter.chat_requests[0].headers["Authorization"] == f"Bearer {key}"
    assert key not in caplog.text
    assert key not in error.user_message and key not in error.detail and key not in str(error)
    warnings = [
        r for r in caplog.records if r.name == "glimpse.openrouter" and r.levelno == logging.WARNING
    ]
    assert len(warnings) == 1
    assert "401" in warnings[0].getMessage() and "[redacted]" in warnings[0].getMessage()


async def test_wrong_key_against_the_fake_is_auth(fake_openrouter: FakeOpenRouter) -> None:
    client = OpenRouterClient(make_settings(fake_openrouter), "sk-or-v1-not-the-right-one")
    try:
        _, error = await fail(client)
    finally:
        await client.close()
    assert error.kind == "auth"


# --- models and key ---


async def test_model_info_reads_models_once(
    fake_openrouter: FakeOpenRouter, client: OpenRouterClient
) -> None:
    info = await client.model_info()
    assert info == ModelInfo(
        id=LLAMA_VISION_MODEL,
        context_length=4096,
        prompt_price=0.0000008,
        completion_price=0.0000016,
        image_price=0.005146,
        input_modalities=("text", "image"),
        from_api=True,
    )
    assert await client.model_info() is info
    assert [r.path for r in fake_openrouter.requests] == ["/api/v1/models"]


async def test_model_info_of_a_text_only_model(fake_openrouter: FakeOpenRouter) -> None:
    client = OpenRouterClient(make_settings(fake_openrouter, model=TEXT_ONLY_MODEL), FAKE_API_KEY)
    try:
        info = await client.model_info()
    finally:
        await client.close()
    assert (info.context_length, info.input_modalities, info.image_price) == (
        131072,
        ("text",),
        0.0,
    )


async def test_configured_context_length_wins(fake_openrouter: FakeOpenRouter) -> None:
    client = OpenRouterClient(make_settings(fake_openrouter, context_length=2048), FAKE_API_KEY)
    try:
        info = await client.model_info()
    finally:
        await client.close()
    assert info.context_length == 2048
    assert info.from_api and info.prompt_price == 0.0000008


async def test_unreachable_models_falls_back_to_4096(caplog: pytest.LogCaptureFixture) -> None:
    settings = Settings(base_url=f"http://127.0.0.1:{_closed_port()}/api/v1", max_retries=0)
    client = OpenRouterClient(settings, FAKE_API_KEY)
    try:
        with caplog.at_level(logging.WARNING, logger="glimpse.openrouter"):
            info = await client.model_info()
    finally:
        await client.close()
    assert info.context_length == 4096 and not info.from_api
    assert info.prompt_price == 0.0000008  # the default model's known listing
    assert any("4096" in r.getMessage() for r in caplog.records if r.name == "glimpse.openrouter")


async def test_unlisted_model_falls_back_to_4096(fake_openrouter: FakeOpenRouter) -> None:
    client = OpenRouterClient(
        make_settings(fake_openrouter, model="acme/not-a-model"), FAKE_API_KEY
    )
    try:
        info = await client.model_info()
    finally:
        await client.close()
    assert (info.id, info.context_length, info.from_api) == ("acme/not-a-model", 4096, False)


async def test_failed_model_info_is_cached_then_retried(
    fake_openrouter: FakeOpenRouter, monkeypatch: pytest.MonkeyPatch
) -> None:
    fake_openrouter.fail_next(500, route="models")
    client = OpenRouterClient(make_settings(fake_openrouter, max_retries=0), FAKE_API_KEY)
    try:
        assert not (await client.model_info()).from_api
        assert not (await client.model_info()).from_api  # cached: no second request yet
        assert len(fake_openrouter.requests) == 1
        monkeypatch.setattr(openrouter, "MODEL_INFO_RETRY_SECONDS", 0.0)
        assert (await client.model_info()).from_api
        assert len(fake_openrouter.requests) == 2
    finally:
        await client.close()


async def test_key_info_returns_the_key_data(
    fake_openrouter: FakeOpenRouter, client: OpenRouterClient
) -> None:
    data = await client.key_info()
    assert data["limit_remaining"] == 74.5 and data["label"] == fake_openrouter.key_data["label"]
    assert fake_openrouter.requests[-1].headers["Authorization"] == f"Bearer {FAKE_API_KEY}"


async def test_key_info_with_a_bad_key_raises_auth(fake_openrouter: FakeOpenRouter) -> None:
    client = OpenRouterClient(make_settings(fake_openrouter), "sk-or-v1-bad")
    try:
        with pytest.raises(ModelError) as caught:
            await client.key_info()
    finally:
        await client.close()
    assert caught.value.kind == "auth"


def _closed_port() -> int:
    """A loopback port nothing listens on."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


# --- the fake itself (reused by later suites) ---


async def test_fake_answers_non_streaming_requests_as_json(fake_openrouter: FakeOpenRouter) -> None:
    fake_openrouter.reply_next("one-off answer")
    question: list[ChatCompletionMessageParam] = [{"role": "user", "content": "Hello?"}]
    sdk = openai.AsyncOpenAI(api_key=FAKE_API_KEY, base_url=fake_openrouter.base_url, max_retries=0)
    try:
        completion = await sdk.chat.completions.create(
            model=LLAMA_VISION_MODEL, messages=question, max_tokens=8
        )
        again = await sdk.chat.completions.create(
            model=LLAMA_VISION_MODEL, messages=question, max_tokens=8
        )
    finally:
        await sdk.close()
    assert completion.choices[0].message.content == "one-off answer"
    assert again.choices[0].message.content == fake_openrouter.reply
    assert completion.usage is not None and completion.usage.completion_tokens > 0


async def test_fake_paces_its_stream() -> None:
    async with FakeOpenRouter(
        chunks=4, chunk_delay_seconds=0.03, first_token_latency_seconds=0.05
    ) as fake:
        client = OpenRouterClient(make_settings(fake), FAKE_API_KEY)
        try:
            started = time.monotonic()
            stream = client.stream(QUESTION, max_tokens=16)
            await anext(stream)
            first_token = time.monotonic() - started
            async for _ in stream:
                pass
            total = time.monotonic() - started
        finally:
            await client.close()
    assert first_token >= 0.05
    assert total >= 0.05 + 3 * 0.03
