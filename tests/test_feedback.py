"""Ratings of answers through the core's Feedback service: ledger, metrics, malformed clicks, outages."""

from __future__ import annotations

from dataclasses import replace

import pytest

from bot.feedback import AnswerRating, Feedback, offer_rating
from bot.ledger_memory import MemoryLedger
from bot.metrics import Metrics
from tests.fakes.sink import RecordingSink

MODEL = "meta-llama/llama-3.2-90b-vision-instruct"
CLICK = AnswerRating("slack", "T1", "C1", "1700000000.000100", "U_ALICE", MODEL, "good")


def _counted(metrics: Metrics, rating: str) -> float:
    value = metrics.registry.get_sample_value(
        "glimpse_feedback_total", {"model": MODEL, "rating": rating}
    )
    return value or 0.0


async def _service() -> tuple[Feedback, MemoryLedger, Metrics]:
    ledger, metrics = MemoryLedger(), Metrics()
    await ledger.open()
    return Feedback(ledger, metrics, clock=lambda: 1_741_910_400.0), ledger, metrics


async def test_a_click_is_recorded_in_the_ledger_and_counted() -> None:
    feedback, ledger, metrics = await _service()

    assert await feedback.rate(CLICK)

    [row] = await ledger.usage("2025-03-14", "2025-03-14", "model")
    assert (row.group, row.good, row.bad) == (MODEL, 1, 0)
    assert _counted(metrics, "good") == 1


async def test_repeated_clicks_count_once_and_the_last_one_wins() -> None:
    feedback, ledger, metrics = await _service()

    for rating in ("good", "good", "bad", "bad"):
        assert await feedback.rate(replace(CLICK, rating=rating))

    [row] = await ledger.usage("2025-03-14", "2025-03-14", "model")
    assert (row.good, row.bad) == (0, 1)
    assert (_counted(metrics, "good"), _counted(metrics, "bad")) == (1, 1)


@pytest.mark.parametrize(
    "bad",
    [
        replace(CLICK, rating="meh"),
        replace(CLICK, model=""),
        replace(CLICK, model="m" * 201),
        replace(CLICK, answer_id=""),
        replace(CLICK, user=""),
    ],
)
async def test_a_malformed_click_is_refused_and_logged(
    bad: AnswerRating, caplog: pytest.LogCaptureFixture
) -> None:
    feedback, ledger, metrics = await _service()

    assert not await feedback.rate(bad)

    assert ledger.ratings == {}
    assert "ignored a malformed rating" in caplog.text


async def test_a_store_outage_loses_the_click_but_not_the_process(
    caplog: pytest.LogCaptureFixture,
) -> None:
    feedback, ledger, metrics = await _service()
    await ledger.close()

    assert not await feedback.rate(CLICK)

    assert "could not record a rating" in caplog.text
    assert _counted(metrics, "good") == 0


def test_only_a_sink_with_rating_buttons_is_told_the_model() -> None:
    class Rated(RecordingSink):
        model = ""

        def answered_by(self, model: str) -> None:
            self.model = model

    plain, rated = RecordingSink(), Rated()
    offer_rating(plain, MODEL)
    offer_rating(rated, MODEL)
    assert rated.model == MODEL
