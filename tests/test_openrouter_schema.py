"""Every chat request Glimpse sends matches OpenRouter's published request schema.

`openrouter_chat_request.schema.json` is written after the ChatRequest schema of OpenRouter's
OpenAPI document (its source and date are in the file), with the objects Glimpse fills closed, so
a field OpenRouter does not define (such as the old `transforms`) fails here rather than being
ignored by OpenRouter in silence. The bodies are the ones the fake recorded, sent by the real
openai SDK: the streamed answer and the non-streamed summary (`OpenRouterClient.complete`).
"""

from __future__ import annotations

import copy
import io
import json
from collections.abc import AsyncIterator
from functools import cache
from pathlib import Path
from typing import Any

import jsonschema
import pytest
from PIL import Image
from pydantic import SecretStr

from bot.app import build_conversations
from bot.config import Secrets, Settings
from bot.conversations import Conversations, Status
from bot.messages import ConversationKey, ImageRef, IncomingMessage
from bot.openrouter import COMPRESSION_OFF, OpenRouterClient
from tests.fakes.openrouter import FAKE_API_KEY, TEXT_ONLY_MODEL, FakeOpenRouter
from tests.fakes.sink import RecordingSink

SCHEMA_PATH = Path(__file__).with_name("openrouter_chat_request.schema.json")
PROVIDER = {"order": ["DeepInfra"], "allow_fallbacks": True, "data_collection": "deny"}
SUMMARY_TEMPERATURE = 0.2
KEY = ConversationKey("test", "w1", "c1", "t1")


@cache
def _validator() -> jsonschema.Draft202012Validator:
    schema = json.loads(SCHEMA_PATH.read_text(encoding="utf-8"))
    jsonschema.Draft202012Validator.check_schema(schema)
    return jsonschema.Draft202012Validator(schema)


def _problems(body: dict[str, Any]) -> list[str]:
    """Each way `body` breaks the schema, as `path: message`; empty when it conforms."""
    return [
        f"{'/'.join(map(str, error.absolute_path)) or '(body)'}: {error.message}"
        for error in _validator().iter_errors(body)
    ]


def _settings(fake: FakeOpenRouter, **overrides: Any) -> Settings:
    values: dict[str, Any] = {
        "base_url": fake.base_url,
        "max_retries": 0,
        "request_timeout_seconds": 5,
        "provider": PROVIDER,
        "fallback_models": [TEXT_ONLY_MODEL],
    }
    values.update(overrides)
    return Settings(**values)


def _jpeg() -> bytes:
    buffer = io.BytesIO()
    Image.new("RGB", (320, 240), "teal").save(buffer, "JPEG")
    return buffer.getvalue()


@pytest.fixture
async def client(fake_openrouter: FakeOpenRouter) -> AsyncIterator[OpenRouterClient]:
    client = OpenRouterClient(_settings(fake_openrouter), FAKE_API_KEY)
    yield client
    await client.close()


async def test_the_streamed_answer_and_the_summary_request_match_the_schema(
    fake_openrouter: FakeOpenRouter, client: OpenRouterClient
) -> None:
    messages: list[dict[str, Any]] = [
        {"role": "system", "content": "Be brief."},
        {
            "role": "user",
            "content": [
                {"type": "image_url", "image_url": {"url": "data:image/jpeg;base64,/9j/4AAQ"}},
                {"type": "text", "text": "alice: what is this?"},
            ],
        },
        {"role": "assistant", "content": "A lighthouse."},
        {"role": "user", "content": "bob: and its colour?"},
    ]
    _ = [event async for event in client.stream(messages, max_tokens=64)]
    await client.complete(messages, max_tokens=32, temperature=SUMMARY_TEMPERATURE)

    streamed, summary = (request.body for request in fake_openrouter.chat_requests)
    assert (streamed["stream"], summary["stream"]) == (True, False)
    assert summary["temperature"] == SUMMARY_TEMPERATURE
    for body in (streamed, summary):
        assert _problems(body) == []
        assert body["plugins"] == COMPRESSION_OFF["plugins"]
        assert body["provider"] == PROVIDER and len(body["models"]) == 2


async def test_every_request_of_a_conversation_with_a_photo_and_summaries_matches_the_schema(
    fake_openrouter: FakeOpenRouter, tmp_path: Path
) -> None:
    """The real core end to end: names, an image, follow-ups past the context, summaries."""
    fake_openrouter.responder = lambda body: (
        "Noted, and here is a longer answer to keep the context filling up. " * 3
        if body.get("stream")
        else "Summary: a photo of a teal square, then several remarks about it."
    )
    settings = _settings(
        fake_openrouter,
        store_url=f"sqlite:///{tmp_path / 'g.db'}",
        user_messages_per_minute=0,
        context_length=1024,
        max_output_tokens=128,
        safety_margin_tokens=16,
    )
    service: Conversations = build_conversations(
        settings, Secrets(openrouter_api_key=SecretStr(FAKE_API_KEY))
    )
    await service.start()
    try:
        photo = ImageRef(filename="photo.jpg", data=_jpeg(), mime_type="image/jpeg")
        for i in range(9):
            outcome = await service.handle(
                IncomingMessage(
                    key=KEY,
                    message_id=f"m{i}",
                    author_id=f"u{i % 2}",
                    author_name=("alice", "bob")[i % 2],
                    text=f"Remark {i} about the photo. " + "Some more words to fill it. " * 8,
                    images=(photo,) if i == 0 else (),
                    shared=True,
                ),
                RecordingSink(),
            )
            assert outcome.status is Status.ANSWERED
            await service.idle()
    finally:
        await service.close()

    bodies = [request.body for request in fake_openrouter.chat_requests]
    assert any(not body["stream"] for body in bodies), "no summary was made"
    assert any(
        isinstance(message["content"], list)
        for message in bodies[0]["messages"]
        if message["role"] == "user"
    ), "the photo was not sent"
    for body in bodies:
        assert _problems(body) == []


def test_a_field_the_schema_does_not_name_is_refused() -> None:
    body: dict[str, Any] = {
        "model": "meta-llama/llama-3.2-90b-vision-instruct",
        "messages": [{"role": "user", "content": "hi"}],
        "stream": True,
        "max_tokens": 16,
        "stream_options": {"include_usage": True},
        **copy.deepcopy(COMPRESSION_OFF),
    }
    assert _problems(body) == []

    assert _problems({**body, "transforms": []}) == [
        "(body): Additional properties are not allowed ('transforms' was unexpected)"
    ]
    plugin = {"id": "context-compression", "enabled": False, "mode": "off"}
    assert _problems({**body, "plugins": [plugin]})
    assert _problems({**body, "provider": {"data_colection": "deny"}})
    assert _problems({**body, "messages": [{"role": "user", "content": "hi", "speaker": "a"}]})
