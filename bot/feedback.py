"""People's ratings of answers (the feedback buttons): checked, recorded in the ledger, counted."""

from __future__ import annotations

import logging
import time
from collections.abc import Callable
from dataclasses import dataclass

from bot.ledger import RATINGS, Ledger, Payer, Rating, RatingEntry, utc_day
from bot.messages import RatedSink, ReplySink
from bot.metrics import Metrics
from bot.store import StoreError

__all__ = ["MAX_MODEL_CHARS", "AnswerRating", "Feedback", "offer_rating"]

log = logging.getLogger("glimpse.feedback")

MAX_MODEL_CHARS = 200  # a model id as OpenRouter spells it; anything longer is not one


@dataclass(frozen=True, slots=True)
class AnswerRating:
    """A click on an answer's rating buttons, as an adapter read it from the platform."""

    platform: str
    workspace: str
    channel: str
    answer_id: str  # the rated reply's id on the platform (Slack: the message ts)
    user: str  # who clicked
    model: str  # the model that wrote the answer (carried by the buttons)
    rating: str  # "good" or "bad"


class Feedback:
    """Records ratings: each person's latest rating of an answer counts, once."""

    def __init__(
        self, ledger: Ledger, metrics: Metrics, *, clock: Callable[[], float] = time.time
    ) -> None:
        self._ledger = ledger
        self._metrics = metrics
        self._clock = clock

    async def rate(self, click: AnswerRating) -> bool:
        """Record one click; False (and a log line) when it is malformed or the store is down."""
        rating = _rating(click.rating)
        if rating is None or not _usable(click):
            log.warning(
                "feedback: ignored a malformed rating %r of answer %r",
                click.rating,
                click.answer_id,
            )
            return False
        rater = Payer(click.platform, click.workspace, click.channel, click.user)
        entry = RatingEntry(utc_day(self._clock()), rater, click.answer_id, click.model, rating)
        try:
            previous = await self._ledger.rate(entry)
        except StoreError as exc:
            log.warning("feedback: could not record a rating of %s: %s", click.answer_id, exc)
            return False
        if previous != rating:
            self._metrics.feedback.labels(click.model, rating).inc()
        log.info(
            "feedback: %s rated answer %s (%s) %s", click.user, click.answer_id, click.model, rating
        )
        return True


def offer_rating(sink: ReplySink, model: str) -> None:
    """Tell a sink that shows rating buttons which model wrote the answer it is about to finish."""
    if isinstance(sink, RatedSink):
        sink.answered_by(model)


def _rating(text: str) -> Rating | None:
    for rating in RATINGS:
        if text == rating:
            return rating
    return None


def _usable(click: AnswerRating) -> bool:
    ids = (click.platform, click.workspace, click.channel, click.answer_id, click.user)
    return all(ids) and 0 < len(click.model) <= MAX_MODEL_CHARS
