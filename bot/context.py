"""Builds the token-budgeted model request from the system prompt, memory and the new turn."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from bot.tokens import TokenCounter
from bot.turns import PreparedImage, Turn

__all__ = ["Budget", "ContextBuilder", "ContextError", "ModelRequest"]

TRUNCATION_MARK = " […]"
# Below this many tokens for the new message's text, shortening it would leave nothing worth sending.
MIN_USER_TEXT_TOKENS = 16


class ContextError(Exception):
    """Not even the system prompt and a shortened question fit: the configuration leaves no room."""


@dataclass(frozen=True, slots=True)
class Budget:
    """How many prompt tokens a request may use: context − reserved output − safety margin."""

    context_length: int
    max_output_tokens: int
    safety_margin: int

    @property
    def prompt_tokens(self) -> int:
        return self.context_length - self.max_output_tokens - self.safety_margin


@dataclass(frozen=True, slots=True)
class ModelRequest:
    """OpenAI-format messages plus what the builder counted and decided."""

    messages: list[dict[str, Any]]
    prompt_tokens: int  # counted exactly, <= budget
    budget: int
    history_turns: int  # older turns that fit
    history_dropped: int  # older turns left out
    images: tuple[PreparedImage, ...]  # sent with this request (newest first)
    user_text_shortened: bool


def image_note(image: PreparedImage, *, visible: bool) -> str:
    """The words that stand beside (or in place of) an image in the prompt."""
    if visible:
        return f"[attached image: {image.label}]\n"
    return f"[an image was attached here ({image.label}); it is no longer visible]\n"


class ContextBuilder:
    """Keeps the system prompt and the new turn, then adds older turns newest-first while they fit."""

    def __init__(
        self,
        counter: TokenCounter,
        budget: Budget,
        *,
        images_per_request: int = 1,
        image_tokens: int = 1,
    ) -> None:
        self._counter = counter
        self._budget = budget
        self._images_per_request = images_per_request
        self._image_tokens = image_tokens

    def build(self, system_prompt: str, history: Sequence[Turn], new_turn: Turn) -> ModelRequest:
        limit = self._budget.prompt_tokens
        fixed = self._counter.dialog_overhead() + self._counter.message("system", system_prompt)
        new_text, shortened = self._fit_new_turn(new_turn, limit - fixed)
        new_turn_tokens = self._cost(new_turn, new_text, visible=new_turn.image is not None)
        used = fixed + new_turn_tokens

        images_left = self._images_per_request - (1 if new_turn.image is not None else 0)
        kept: list[tuple[Turn, bool]] = []
        for turn in reversed(history):
            visible = turn.image is not None and images_left > 0
            cost = self._cost(turn, turn.text, visible=visible, counted=turn.tokens)
            if used + cost > limit:
                break
            used += cost
            kept.append((turn, visible))
            if visible:
                images_left -= 1
        kept.reverse()

        messages: list[dict[str, Any]] = [{"role": "system", "content": system_prompt}]
        messages += [self._message(turn, turn.text, visible) for turn, visible in kept]
        messages.append(self._message(new_turn, new_text, new_turn.image is not None))
        sent = [t.image for t, v in kept if v and t.image is not None]
        if new_turn.image is not None:
            sent.append(new_turn.image)
        if (
            used > limit
        ):  # pragma: no cover - _fit_new_turn guarantees this; never send an over-budget request
            raise ContextError(f"request counted at {used} tokens exceeds the budget of {limit}")
        return ModelRequest(
            messages=messages,
            prompt_tokens=used,
            budget=limit,
            history_turns=len(kept),
            history_dropped=len(history) - len(kept),
            images=tuple(reversed(sent)),
            user_text_shortened=shortened,
        )

    def _cost(self, turn: Turn, text: str, *, visible: bool, counted: int | None = None) -> int:
        if turn.image is None:
            return counted if counted is not None else self._counter.message(turn.role, text)
        # Counted as sent: the note and the text are one string, so count them together.
        note = image_note(turn.image, visible=visible)
        images = 1 if visible else 0
        return self._counter.message(
            turn.role, note + text, images=images, image_tokens=self._image_tokens
        )

    def _fit_new_turn(self, turn: Turn, room: int) -> tuple[str, bool]:
        """The new turn's text, shortened (and marked) if it alone would not fit in `room` tokens."""
        visible = turn.image is not None
        if self._cost(turn, turn.text, visible=visible) <= room:
            return turn.text, False
        text_room = room - self._cost(turn, TRUNCATION_MARK, visible=visible)
        if text_room < MIN_USER_TEXT_TOKENS:
            raise ContextError(
                f"the system prompt and reserved output leave only {room} tokens for the message; "
                "shorten the system prompt or lower max_output_tokens"
            )
        text = self._counter.truncate(turn.text, text_room) + TRUNCATION_MARK
        # Tokens can merge differently across the cut; shave until the joined text is counted as fitting.
        while self._cost(turn, text, visible=visible) > room:
            text_room -= 1
            text = self._counter.truncate(turn.text, text_room) + TRUNCATION_MARK
        return text, True

    @staticmethod
    def _message(turn: Turn, text: str, visible: bool) -> dict[str, Any]:
        if turn.image is None:
            return {"role": turn.role, "content": text}
        note = image_note(turn.image, visible=visible)
        if not visible:
            return {"role": turn.role, "content": note + text}
        # Meta's format: the image attends only to the text after it, so the image part comes first.
        return {
            "role": turn.role,
            "content": [
                {"type": "image_url", "image_url": {"url": turn.image.data_url()}},
                {"type": "text", "text": note + text},
            ],
        }
