"""The model package's pure steps: which ids count exactly, the estimate, expiry, gone models."""

from __future__ import annotations

import datetime as dt
import logging

import pytest

from bot.config import Settings
from bot.context import Budget, ContextBuilder
from bot.metrics import Metrics
from bot.models import (
    EstimatingCounter,
    ModelHealth,
    UndercountWatch,
    counter_for,
    expiry_problem,
    is_llama3,
)
from bot.models.estimate import ESTIMATE_MESSAGE_TOKENS
from bot.openrouter import ModelError, ModelInfo
from bot.tokens import TokenCounter
from bot.turns import Turn

TEXTS = [
    "",
    "hello",
    "What is in this picture? Is the boat red or orange?",
    "def answer(question):\n    return model.stream(question)  # 42\n" * 20,
    "Что на фото? 🐱‍👤 — مرحبا 漢字 " * 30,
    "x" * 5000,
]


@pytest.fixture(scope="module")
def exact() -> TokenCounter:
    return TokenCounter()


@pytest.mark.parametrize(
    ("model", "llama3"),
    [
        ("meta-llama/llama-3.2-90b-vision-instruct", True),
        ("meta-llama/llama-3.1-8b-instruct:free", True),
        ("meta-llama/llama-3.3-70b-instruct", True),
        ("meta-llama/llama3-70b", True),
        ("META-LLAMA/Llama-3-8B-Instruct:nitro", True),
        ("meta-llama/llama-4-maverick", False),
        ("meta-llama/llama-guard-3-8b", False),
        ("meta-llama/llama-30b", False),
        ("nousresearch/hermes-3-llama-3.1-405b", False),
        ("qwen/qwen2.5-vl-72b-instruct", False),
        ("llama-3.2-90b-vision-instruct", False),
    ],
)
def test_which_models_are_counted_exactly(model: str, llama3: bool) -> None:
    assert is_llama3(model) is llama3


def test_a_llama_3_model_gets_the_exact_counter_and_another_the_estimate(
    exact: TokenCounter,
) -> None:
    assert counter_for("meta-llama/llama-3.2-11b-vision-instruct", exact) is exact
    assert isinstance(counter_for("google/gemma-3-27b-it", exact), EstimatingCounter)


@pytest.mark.parametrize("text", TEXTS, ids=range(len(TEXTS)))
def test_the_estimate_is_never_below_the_llama_count(exact: TokenCounter, text: str) -> None:
    estimate = EstimatingCounter(exact)
    assert estimate.text(text) >= exact.text(text)
    for role in ("system", "user", "assistant"):
        counted = exact.message(role, text, images=1)
        assert estimate.message(role, text, images=1) >= counted + ESTIMATE_MESSAGE_TOKENS
        assert estimate.stored(counted) == estimate.message(role, text, images=1)
    assert estimate.dialog_overhead() > exact.dialog_overhead()
    assert estimate.stored_text(exact.text(text)) == estimate.text(text)


@pytest.mark.parametrize("limit", [1, 10, 100, 1000])
def test_the_estimates_truncation_fits_its_own_count(exact: TokenCounter, limit: int) -> None:
    estimate = EstimatingCounter(exact)
    text = TEXTS[3] + TEXTS[4]
    cut = estimate.truncate(text, limit)
    assert text.startswith(cut) and estimate.text(cut) <= limit


def test_a_request_for_an_estimated_model_counts_more_than_for_llama(exact: TokenCounter) -> None:
    history = [
        Turn("user", "What is this?", exact.message("user", "What is this?"), 1.0),
        Turn("assistant", "A boat.", exact.message("assistant", "A boat."), 2.0),
    ]
    new = Turn("user", TEXTS[3], 0, 3.0)
    budget = Budget(32768, 1024, 64)
    llama = ContextBuilder(exact, budget).build("Be brief.", history, new)
    other = ContextBuilder(EstimatingCounter(exact), budget, model="acme/v").build(
        "Be brief.", history, new
    )
    assert other.messages == llama.messages and other.model == "acme/v"
    assert other.prompt_tokens >= llama.prompt_tokens * 1.25 + 4 * ESTIMATE_MESSAGE_TOKENS


def test_an_under_count_is_logged_the_first_time_and_then_every_nth(
    caplog: pytest.LogCaptureFixture,
) -> None:
    watch = UndercountWatch(every=3)
    with caplog.at_level(logging.WARNING, logger="glimpse.models"):
        assert not watch.check("acme/v", 100, 100, estimated=True)
        results = [watch.check("acme/v", 100, 120, estimated=True) for _ in range(6)]
        watch.check("other/m", 10, 11, estimated=False)
    assert results == [True] * 6
    lines = [r.getMessage() for r in caplog.records]
    assert len(lines) == 4  # acme/v: 1st, 3rd, 6th; other/m: 1st
    assert "acme/v" in lines[0] and "20 short" in lines[0] and "estimated" in lines[0]


# --- expiry ---


def _info(expiration_date: str | None) -> ModelInfo:
    return ModelInfo("acme/v", 8192, 0.0, 0.0, 0.0, ("text", "image"), True, expiration_date)


@pytest.mark.parametrize(
    ("date", "problem"),
    [
        (None, None),
        ("not a date", None),
        ("2026-02-01", None),
        ("2026-01-31", "expires on 2026-01-31 (in 30 days)"),
        ("2026-01-02", "expires on 2026-01-02 (tomorrow)"),
        ("2026-01-01", "expires on 2026-01-01 (today)"),
        ("2025-12-31", "expired on 2025-12-31"),
    ],
)
def test_expiry_is_a_problem_within_30_days(date: str | None, problem: str | None) -> None:
    assert expiry_problem(_info(date), dt.date(2026, 1, 1)) == problem


# --- gone models ---


class Clock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


def _gone(*suggested: str) -> ModelError:
    return ModelError(
        "bad_request", "HTTP 404", status=404, model_gone=True, suggested_models=suggested
    )


def test_a_gone_model_is_replaced_in_order_and_remembered_for_a_while() -> None:
    clock, metrics = Clock(), Metrics()
    settings = Settings(model="acme/default", fallback_models=["acme/first", "acme/second"])
    health = ModelHealth(settings, metrics, memory_seconds=60, clock=clock)
    assert health.replace("acme/channel", _gone()) == "acme/first"
    assert health.route("acme/channel") == "acme/first"
    assert health.replace("acme/first", _gone()) == "acme/second"
    assert health.route("acme/channel") == "acme/second"  # followed through
    clock.now += 61
    assert health.route("acme/channel") == "acme/channel"  # asked again after a while
    value = metrics.registry.get_sample_value(
        "glimpse_model_fallbacks_total", {"from": "acme/channel", "to": "acme/first"}
    )
    assert value == 1.0


def test_without_fallback_models_a_channels_gone_model_falls_back_to_the_default() -> None:
    health = ModelHealth(Settings(model="acme/default"), Metrics())
    assert health.replace("acme/channel", _gone()) == "acme/default"
    assert health.replace("acme/default", _gone()) is None  # nothing left to ask
    assert health.replace("acme/x", ModelError("unavailable", "HTTP 503", status=503)) is None


def test_openrouters_suggestions_come_after_the_configured_fallbacks() -> None:
    health = ModelHealth(Settings(model="acme/default", fallback_models=["acme/gone"]), Metrics())
    assert health.replace("acme/gone", _gone()) == "acme/default"
    assert health.replace("acme/channel", _gone("acme/suggested")) == "acme/suggested"
