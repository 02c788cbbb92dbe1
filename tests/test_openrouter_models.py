"""The OpenRouter client per model: model_info and the catalogue, per-request models, gone models."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from typing import Any

import pytest

import bot.openrouter as openrouter
from bot.config import Settings
from bot.openrouter import ModelError, OpenRouterClient, StreamEnd, TextDelta, _model_gone
from tests.fakes.openrouter import (
    FAKE_API_KEY,
    LLAMA_VISION_MODEL,
    QWEN_VISION_MODEL,
    TEXT_ONLY_MODEL,
    FakeOpenRouter,
)

QUESTION = [{"role": "user", "content": "What is in the picture?"}]


def make_client(fake: FakeOpenRouter, **overrides: Any) -> OpenRouterClient:
    values: dict[str, Any] = {"base_url": fake.base_url, "max_retries": 0}
    return OpenRouterClient(Settings(**(values | overrides)), FAKE_API_KEY)


@pytest.fixture
async def client(fake_openrouter: FakeOpenRouter) -> AsyncIterator[OpenRouterClient]:
    client = make_client(fake_openrouter)
    yield client
    await client.close()


async def answer(client: OpenRouterClient, model: str | None = None) -> StreamEnd:
    end = None
    async for event in client.stream(QUESTION, max_tokens=64, model=model):
        if not isinstance(event, TextDelta):
            end = event
    assert end is not None
    return end


async def failure(client: OpenRouterClient, model: str | None = None) -> ModelError:
    with pytest.raises(ModelError) as caught:
        await answer(client, model)
    return caught.value


# --- models and the catalogue ---


async def test_model_info_per_model_reads_the_listing_once(
    fake_openrouter: FakeOpenRouter, client: OpenRouterClient
) -> None:
    qwen = await client.model_info(QWEN_VISION_MODEL)
    default = await client.model_info()
    assert (qwen.id, qwen.context_length, qwen.reads_images) == (QWEN_VISION_MODEL, 32768, True)
    assert qwen.prompt_price == pytest.approx(0.00000025) and qwen.expiration_date is None
    assert (default.id, default.context_length) == (LLAMA_VISION_MODEL, 4096)
    assert await client.model_info(QWEN_VISION_MODEL) is qwen
    assert not (await client.model_info(TEXT_ONLY_MODEL)).reads_images
    assert [r.path for r in fake_openrouter.requests] == ["/api/v1/models"]


async def test_model_info_carries_the_expiration_date(fake_openrouter: FakeOpenRouter) -> None:
    fake_openrouter.expire(QWEN_VISION_MODEL, "2026-12-31")
    fake_openrouter.models[0]["expiration_date"] = "2027-01-15T00:00:00Z"
    client = make_client(fake_openrouter)
    try:
        assert (await client.model_info(QWEN_VISION_MODEL)).expiration_date == "2026-12-31"
        assert (await client.model_info()).expiration_date == "2027-01-15"
    finally:
        await client.close()


async def test_configured_context_length_is_the_default_models_only(
    fake_openrouter: FakeOpenRouter,
) -> None:
    client = make_client(fake_openrouter, context_length=2048)
    try:
        assert (await client.model_info()).context_length == 2048
        assert (await client.model_info(QWEN_VISION_MODEL)).context_length == 32768
    finally:
        await client.close()


async def test_vision_models_lists_the_models_that_take_images(
    fake_openrouter: FakeOpenRouter, client: OpenRouterClient
) -> None:
    assert await client.vision_models() == [LLAMA_VISION_MODEL, QWEN_VISION_MODEL]
    assert await client.vision_models() == [LLAMA_VISION_MODEL, QWEN_VISION_MODEL]
    listed = await client.catalogue()
    assert listed is not None and TEXT_ONLY_MODEL in listed
    assert len(fake_openrouter.requests) == 1  # cached


async def test_an_unreadable_catalogue_is_none_and_no_vision_models(
    fake_openrouter: FakeOpenRouter, client: OpenRouterClient
) -> None:
    fake_openrouter.fail_next(500, route="models")
    assert await client.catalogue() is None
    assert await client.vision_models() == []
    assert not (await client.model_info(QWEN_VISION_MODEL)).from_api
    assert len(fake_openrouter.requests) == 1  # a failed read is not repeated at once


async def test_a_stale_catalogue_is_used_while_it_is_read_again_in_the_background(
    fake_openrouter: FakeOpenRouter, client: OpenRouterClient, monkeypatch: pytest.MonkeyPatch
) -> None:
    assert QWEN_VISION_MODEL in await client.vision_models()
    monkeypatch.setattr(openrouter, "CATALOGUE_TTL_SECONDS", 0.0)
    fake_openrouter.models = [m for m in fake_openrouter.models if m["id"] != QWEN_VISION_MODEL]
    assert QWEN_VISION_MODEL in await client.vision_models()  # no wait for the new listing
    for _ in range(100):
        await asyncio.sleep(0.01)
        if len(fake_openrouter.requests) == 2 and client._refreshing is None:
            break
    monkeypatch.setattr(openrouter, "CATALOGUE_TTL_SECONDS", 3600.0)
    assert await client.vision_models() == [LLAMA_VISION_MODEL]
    assert len(fake_openrouter.requests) == 2


# --- the model of a request ---


async def test_a_request_names_its_own_model_and_fallbacks_primary_first(
    fake_openrouter: FakeOpenRouter,
) -> None:
    client = make_client(fake_openrouter, fallback_models=[QWEN_VISION_MODEL, TEXT_ONLY_MODEL])
    try:
        end = await answer(client, QWEN_VISION_MODEL)
        await answer(client)
        await client.complete(QUESTION, max_tokens=16, model=QWEN_VISION_MODEL)
    finally:
        await client.close()
    first, second, third = (request.body for request in fake_openrouter.chat_requests)
    assert first["model"] == QWEN_VISION_MODEL == end.usage.model
    assert first["models"] == [QWEN_VISION_MODEL, TEXT_ONLY_MODEL]
    assert second["model"] == LLAMA_VISION_MODEL
    assert second["models"] == [LLAMA_VISION_MODEL, QWEN_VISION_MODEL, TEXT_ONLY_MODEL]
    assert (third["model"], third["stream"]) == (QWEN_VISION_MODEL, False)


# --- a model that is gone ---


async def test_a_retired_model_is_a_gone_model_error(
    fake_openrouter: FakeOpenRouter, client: OpenRouterClient
) -> None:
    fake_openrouter.gone_models.add(QWEN_VISION_MODEL)
    error = await failure(client, QWEN_VISION_MODEL)
    assert (error.status, error.model_gone, error.retryable) == (404, True, False)
    assert error.user_message == f"The model {QWEN_VISION_MODEL} is not available on OpenRouter."
    assert len(fake_openrouter.chat_requests) == 1
    await answer(client)  # the default model still answers


async def test_a_gone_model_is_told_apart_from_a_request_no_provider_can_serve(
    fake_openrouter: FakeOpenRouter, client: OpenRouterClient
) -> None:
    fake_openrouter.fail_next(404, message="No endpoints found that support tool use.")
    assert not (await failure(client)).model_gone
    fake_openrouter.fail_next(400, message="acme/nope is not a valid model ID")
    assert (await failure(client)).model_gone
    fake_openrouter.fail_next(400, message="Invalid request: max_tokens must be positive")
    assert not (await failure(client)).model_gone
    fake_openrouter.fail_next(503)
    assert not (await failure(client)).model_gone


@pytest.mark.parametrize(
    ("status", "body", "gone"),
    [
        (410, {"code": 410, "message": "Gone"}, True),
        (404, {"code": 404, "message": "Healer Alpha was a stealth model. Find it here"}, True),
        (404, {"code": 404, "message": "No endpoints found matching your data policy"}, False),
        (None, {"code": "model_not_found", "message": "The model does not exist"}, True),
        (
            400,
            {"code": 400, "message": "x", "metadata": {"availability": {"code": "no_endpoints"}}},
            True,
        ),
        (400, {"code": 400, "message": "x", "availability": {"code": "model_deprecated"}}, True),
        (502, {"code": 502, "message": "Provider returned error"}, False),
    ],
)
def test_which_error_bodies_say_the_model_is_gone(
    status: int | None, body: dict[str, Any], gone: bool
) -> None:
    assert _model_gone(status, body, body["message"]) is gone
