"""A model per channel end to end: config and admins' choices, their budgets, gone models, counts."""

from __future__ import annotations

import datetime as dt
import logging
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest

from bot.app import build_conversations
from bot.config import Secrets, Settings
from bot.conversations import Conversations, Status
from bot.messages import ConversationKey, IncomingMessage
from bot.models import is_llama3
from bot.models.commands import NOT_ADMIN
from bot.tokens import TokenCounter
from tests.fakes.openrouter import (
    FAKE_API_KEY,
    LLAMA_VISION_MODEL,
    QWEN_VISION_MODEL,
    TEXT_ONLY_MODEL,
    FakeOpenRouter,
)
from tests.fakes.sink import RecordingSink
from tests.redis_support import delete_prefix, require_redis, store_url, unique_prefix

QWEN_CHANNEL = "C-qwen"


def _settings(fake: FakeOpenRouter, tmp_path: Path, **overrides: Any) -> Settings:
    values: dict[str, Any] = {
        "base_url": fake.base_url,
        "store_url": f"sqlite:///{tmp_path / 'glimpse.db'}",
        "max_retries": 0,
        "request_timeout_seconds": 5,
        "user_messages_per_minute": 0,
        "summaries": False,
        "channel_models": {QWEN_CHANNEL: QWEN_VISION_MODEL},
        "admins": ["boss"],
    }
    return Settings(**(values | overrides))


_ids = iter(range(10**9))


def _message(text: str, *, channel: str = "c1", parent: str | None = None) -> IncomingMessage:
    return IncomingMessage(
        key=ConversationKey("test", "w1", channel, "t1"),
        message_id=f"m{next(_ids)}",
        author_id="u1",
        text=text,
        parent_channel=parent,
    )


@pytest.fixture
async def fake() -> AsyncIterator[FakeOpenRouter]:
    async with FakeOpenRouter() as server:
        yield server


@pytest.fixture
async def service(fake: FakeOpenRouter, tmp_path: Path) -> AsyncIterator[Conversations]:
    conversations = build_conversations(
        _settings(fake, tmp_path), Secrets(openrouter_api_key=FAKE_API_KEY)
    )
    await conversations.start()
    yield conversations
    await conversations.close()


async def _ask(service: Conversations, message: IncomingMessage) -> RecordingSink:
    sink = RecordingSink()
    outcome = await service.handle(message, sink)
    assert outcome.status is Status.ANSWERED, sink.seen
    return sink


def _fallbacks(service: Conversations, gone: str, replacement: str) -> float | None:
    return service.metrics.registry.get_sample_value(
        "glimpse_model_fallbacks_total", {"from": gone, "to": replacement}
    )


# --- the channel's model from the config ---


async def test_a_configured_channel_model_answers_with_its_own_budget(
    service: Conversations, fake: FakeOpenRouter
) -> None:
    question = "Describe the architecture of this system in detail. " * 20
    sink = RecordingSink()
    outcome = await service.handle(_message(question, channel=QWEN_CHANNEL), sink)
    other = await service.handle(_message(question), RecordingSink())

    assert outcome.request is not None and other.request is not None
    assert outcome.request.budget == 32768 - 1024 - 64  # Qwen's context in the fake's /models
    assert other.request.budget == 4096 - 1024 - 64
    qwen_body, llama_body = (request.body for request in fake.chat_requests)
    assert (qwen_body["model"], llama_body["model"]) == (QWEN_VISION_MODEL, LLAMA_VISION_MODEL)
    assert outcome.request.model == QWEN_VISION_MODEL
    # Not a Llama 3 model: estimated, never below what the Llama 3 tokenizer counts.
    assert outcome.request.prompt_tokens > other.request.prompt_tokens


async def test_a_thread_uses_its_parent_channels_model(
    service: Conversations, fake: FakeOpenRouter
) -> None:
    await _ask(service, _message("hello", channel="thread-9", parent=QWEN_CHANNEL))
    assert fake.chat_requests[-1].body["model"] == QWEN_VISION_MODEL
    assert await service.channel_model("test", "w1", QWEN_CHANNEL) == QWEN_VISION_MODEL


async def test_an_unlisted_configured_model_is_passed_over_with_a_warning(
    fake: FakeOpenRouter, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    settings = _settings(fake, tmp_path, channel_models={"c1": "acme/not-listed"})
    service = build_conversations(settings, Secrets(openrouter_api_key=FAKE_API_KEY))
    await service.start()
    try:
        with caplog.at_level(logging.WARNING, logger="glimpse.models"):
            await _ask(service, _message("one"))
            await _ask(service, _message("two"))
    finally:
        await service.close()
    assert [r.body["model"] for r in fake.chat_requests] == [LLAMA_VISION_MODEL] * 2
    assert len([r for r in caplog.records if "acme/not-listed" in r.getMessage()]) == 1


async def test_a_channel_model_too_small_for_the_reserved_output_gives_way_to_the_default(
    fake: FakeOpenRouter, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    qwen = next(entry for entry in fake.models if entry["id"] == QWEN_VISION_MODEL)
    qwen["context_length"] = 1024  # all of it reserved for the answer (max_output_tokens)
    service = build_conversations(
        _settings(fake, tmp_path), Secrets(openrouter_api_key=FAKE_API_KEY)
    )
    await service.start()
    try:
        with caplog.at_level(logging.WARNING, logger="glimpse.models"):
            await _ask(service, _message("one", channel=QWEN_CHANNEL))
            await _ask(service, _message("two", channel=QWEN_CHANNEL))
    finally:
        await service.close()
    assert [r.body["model"] for r in fake.chat_requests] == [LLAMA_VISION_MODEL] * 2
    assert len([r for r in caplog.records if "cannot be used" in r.getMessage()]) == 1


# --- an admin's choice, in the store ---


async def test_an_admin_sets_and_clears_a_channels_model(
    service: Conversations, fake: FakeOpenRouter
) -> None:
    said = await service.set_channel_model("test", "w1", "c1", QWEN_VISION_MODEL, user_id="boss")
    assert said == f"This channel now uses `{QWEN_VISION_MODEL}` (32,768-token context)."
    await _ask(service, _message("after the switch"))
    assert fake.chat_requests[-1].body["model"] == QWEN_VISION_MODEL
    assert "set by an admin" in await service.describe_channel_model("test", "w1", "c1")

    said = await service.set_channel_model("test", "w1", "c1", None, user_id="boss")
    assert said == f"This channel's model is back to `{LLAMA_VISION_MODEL}` (the bot's default)."
    await _ask(service, _message("after clearing"))
    assert fake.chat_requests[-1].body["model"] == LLAMA_VISION_MODEL


async def test_an_admins_choice_beats_the_config_and_clearing_returns_to_it(
    service: Conversations, fake: FakeOpenRouter
) -> None:
    await service.set_channel_model("test", "w1", QWEN_CHANNEL, LLAMA_VISION_MODEL, user_id="boss")
    await _ask(service, _message("hi", channel=QWEN_CHANNEL))
    assert fake.chat_requests[-1].body["model"] == LLAMA_VISION_MODEL
    said = await service.set_channel_model("test", "w1", QWEN_CHANNEL, "", user_id="boss")
    assert QWEN_VISION_MODEL in said and "configuration" in said


async def test_who_may_set_a_channels_model(service: Conversations, fake: FakeOpenRouter) -> None:
    assert (
        await service.set_channel_model("test", "w1", "c1", QWEN_VISION_MODEL, user_id="u1")
        == NOT_ADMIN
    )
    assert await service.channel_model("test", "w1", "c1") == LLAMA_VISION_MODEL
    said = await service.set_channel_model(
        "test", "w1", "c1", QWEN_VISION_MODEL, user_id="u1", is_manager=True
    )
    assert said.startswith("This channel now uses")
    assert await service.channel_model("test", "w1", "c1") == QWEN_VISION_MODEL


@pytest.mark.parametrize(
    ("model", "said"),
    [
        ("acme/no-such-model", "OpenRouter has no model `acme/no-such-model`"),
        (TEXT_ONLY_MODEL, "can't read images"),
    ],
    ids=["unknown", "text-only"],
)
async def test_a_model_that_is_not_a_listed_vision_model_is_refused(
    service: Conversations, fake: FakeOpenRouter, model: str, said: str
) -> None:
    assert said in await service.set_channel_model("test", "w1", "c1", model, user_id="boss")
    assert await service.channel_model("test", "w1", "c1") == LLAMA_VISION_MODEL


async def test_no_switch_while_the_model_list_cannot_be_read(
    fake: FakeOpenRouter, tmp_path: Path
) -> None:
    fake.fail_next(503, route="models")
    service = build_conversations(
        _settings(fake, tmp_path), Secrets(openrouter_api_key=FAKE_API_KEY)
    )
    await service.start()
    try:
        said = await service.set_channel_model(
            "test", "w1", "c1", QWEN_VISION_MODEL, user_id="boss"
        )
        assert "can't read OpenRouter's list of models" in said
        assert await service.vision_models() == []
    finally:
        await service.close()


async def test_vision_models_for_autocomplete(service: Conversations) -> None:
    assert await service.vision_models() == [LLAMA_VISION_MODEL, QWEN_VISION_MODEL]


async def test_an_admins_choice_reaches_another_process_through_redis(
    fake: FakeOpenRouter, tmp_path: Path
) -> None:
    require_redis()
    prefix = unique_prefix()
    settings = _settings(fake, tmp_path, store_url=store_url(prefix))
    first, second = (
        build_conversations(settings, Secrets(openrouter_api_key=FAKE_API_KEY)) for _ in range(2)
    )
    await first.start()
    await second.start()
    try:
        await first.set_channel_model("test", "w1", "c1", QWEN_VISION_MODEL, user_id="boss")
        await _ask(second, _message("from the other process"))
        assert fake.chat_requests[-1].body["model"] == QWEN_VISION_MODEL
    finally:
        await first.close()
        await second.close()
        await delete_prefix(prefix)


# --- a model that is gone ---


async def test_a_gone_channel_model_falls_back_once_logged_and_counted(
    service: Conversations, fake: FakeOpenRouter, caplog: pytest.LogCaptureFixture
) -> None:
    fake.gone_models.add(QWEN_VISION_MODEL)
    with caplog.at_level(logging.WARNING):
        first = await _ask(service, _message("still there?", channel=QWEN_CHANNEL))
        await _ask(service, _message("and now?", channel=QWEN_CHANNEL))
    assert first.final == fake.reply and first.failed is None
    asked = [request.body["model"] for request in fake.chat_requests]
    assert asked == [QWEN_VISION_MODEL, LLAMA_VISION_MODEL, LLAMA_VISION_MODEL]
    [warning] = [r for r in caplog.records if r.levelno >= logging.WARNING]
    assert "is gone" in warning.getMessage() and warning.levelno == logging.WARNING
    assert _fallbacks(service, QWEN_VISION_MODEL, LLAMA_VISION_MODEL) == 1.0
    assert f"`{LLAMA_VISION_MODEL}` answers for now" in await service.describe_channel_model(
        "test", "w1", QWEN_CHANNEL
    )


async def test_a_gone_default_model_falls_back_to_fallback_models(
    fake: FakeOpenRouter, tmp_path: Path
) -> None:
    fake.gone_models.add(LLAMA_VISION_MODEL)
    settings = _settings(fake, tmp_path, fallback_models=[QWEN_VISION_MODEL])
    service = build_conversations(settings, Secrets(openrouter_api_key=FAKE_API_KEY))
    await service.start()
    try:
        sink = await _ask(service, _message("hello"))
        assert sink.final == fake.reply
        assert _fallbacks(service, LLAMA_VISION_MODEL, QWEN_VISION_MODEL) == 1.0
    finally:
        await service.close()
    assert [r.body["model"] for r in fake.chat_requests] == [LLAMA_VISION_MODEL, QWEN_VISION_MODEL]


async def test_a_gone_model_with_nothing_to_fall_back_to_is_an_error_for_the_user(
    service: Conversations, fake: FakeOpenRouter
) -> None:
    fake.gone_models.add(LLAMA_VISION_MODEL)
    sink = RecordingSink()
    outcome = await service.handle(_message("hello"), sink)
    assert outcome.status is Status.FAILED
    assert sink.failed == f"⚠️ The model {LLAMA_VISION_MODEL} is not available on OpenRouter."


async def test_start_warns_about_a_model_that_expires_soon(
    fake: FakeOpenRouter, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    soon = (dt.datetime.now(dt.UTC).date() + dt.timedelta(days=5)).isoformat()
    fake.expire(QWEN_VISION_MODEL, soon)
    service = build_conversations(
        _settings(fake, tmp_path), Secrets(openrouter_api_key=FAKE_API_KEY)
    )
    with caplog.at_level(logging.WARNING, logger="glimpse.models"):
        await service.start()
    await service.close()
    [line] = [r.getMessage() for r in caplog.records if "expires" in r.getMessage()]
    where = f"channel {QWEN_CHANNEL}'s model (channel_models)"
    assert f"{where} {QWEN_VISION_MODEL} expires on {soon} (in 5 days) on OpenRouter" in line


# --- counted against billed ---


async def test_an_estimate_short_of_the_billed_count_is_logged(
    service: Conversations, fake: FakeOpenRouter, caplog: pytest.LogCaptureFixture
) -> None:
    fake.reported_prompt_tokens = 5000
    with caplog.at_level(logging.WARNING, logger="glimpse.models"):
        outcome = await service.handle(_message("hi", channel=QWEN_CHANNEL), RecordingSink())
        await service.handle(_message("again", channel=QWEN_CHANNEL), RecordingSink())
    assert outcome.request is not None and outcome.request.prompt_tokens < 5000
    [line] = [r.getMessage() for r in caplog.records if "billed" in r.getMessage()]
    assert QWEN_VISION_MODEL in line and "estimated" in line and "5000" in line


async def test_a_count_at_or_above_the_billed_one_is_not_logged(
    service: Conversations, fake: FakeOpenRouter, caplog: pytest.LogCaptureFixture
) -> None:
    with caplog.at_level(logging.WARNING, logger="glimpse.models"):
        await _ask(service, _message("hi", channel=QWEN_CHANNEL))
    assert not [r for r in caplog.records if "billed" in r.getMessage()]


def test_the_fakes_models_are_what_the_tests_assume() -> None:
    assert is_llama3(LLAMA_VISION_MODEL) and not is_llama3(QWEN_VISION_MODEL)
    assert TokenCounter().text("hello") > 0
