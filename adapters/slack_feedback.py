"""Clicks on an answer's 👍/👎 buttons (`block_actions`): acked at once, recorded through the core."""

from __future__ import annotations

import logging
from collections.abc import Callable, Coroutine, Mapping
from typing import Any

from slack_bolt.async_app import AsyncApp
from slack_bolt.context.ack.async_ack import AsyncAck

from adapters.slack_blocks import FEEDBACK_ACTIONS, read_rating
from adapters.slack_events import PLATFORM
from bot.feedback import AnswerRating, Feedback

__all__ = ["SlackFeedback", "answer_rating"]

log = logging.getLogger("glimpse.slack")

Spawn = Callable[[Coroutine[Any, Any, None]], None]


class SlackFeedback:
    """The feedback buttons' listener: one rating per click, the answer being the message clicked."""

    def __init__(self, feedback: Feedback, *, spawn: Spawn) -> None:
        self._feedback = feedback
        self._spawn = spawn

    def register(self, app: AsyncApp) -> None:
        app.action(FEEDBACK_ACTIONS)(self._on_click)

    async def _on_click(self, ack: AsyncAck, body: dict[str, Any]) -> None:
        await ack()
        rating = answer_rating(body)
        if rating is None:
            log.warning("slack: a feedback click without a rating, answer or user; ignored")
            return
        self._spawn(self._record(rating))

    async def _record(self, rating: AnswerRating) -> None:
        await self._feedback.rate(rating)


def answer_rating(body: Mapping[str, Any]) -> AnswerRating | None:
    """The rating a `block_actions` payload carries, or None if something it needs is missing."""
    actions = body.get("actions") or []
    read = read_rating(actions[0]) if actions and isinstance(actions[0], Mapping) else None
    container = _mapping(body.get("container"))
    answer = _mapping(body.get("message")).get("ts") or container.get("message_ts")
    channel = _mapping(body.get("channel")).get("id") or container.get("channel_id")
    user, team = _mapping(body.get("user")), _mapping(body.get("team"))
    if read is None or not answer or not channel or not user.get("id"):
        return None
    rating, model = read
    return AnswerRating(
        platform=PLATFORM,
        workspace=str(team.get("id") or user.get("team_id") or ""),
        channel=str(channel),
        answer_id=str(answer),
        user=str(user["id"]),
        model=model,
        rating=rating,
    )


def _mapping(value: object) -> Mapping[str, Any]:
    return value if isinstance(value, Mapping) else {}
