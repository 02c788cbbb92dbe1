"""Builds the token-budgeted model request from the system prompt, memory and the new turn."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from bot.tokens import TokenCounter
from bot.turns import PreparedImage, Summary, Turn

__all__ = [
    "MIN_USER_TEXT_TOKENS",
    "SUMMARY_HEADER",
    "Budget",
    "ContextBuilder",
    "ContextError",
    "ModelRequest",
    "rendered",
    "spoken",
    "system_text",
]

TRUNCATION_MARK = " […]"
SUMMARY_HEADER = (
    "\n\nSummary of the earlier part of this conversation (those messages are no longer shown):\n"
)
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
    history_dropped: int  # older turns left out, and not covered by the summary
    images: tuple[PreparedImage, ...]  # sent with this request (newest first)
    user_text_shortened: bool
    summary_tokens: int = 0  # the summary's text, sent in the system message (0: none)
    history_summarised: int = 0  # older turns the summary stands for, not sent themselves
    model: str = ""  # the model it was counted for ("": the configured one)


def image_note(image: PreparedImage, *, visible: bool) -> str:
    """The words that stand beside (or in place of) an image in the prompt."""
    if visible:
        return f"[attached image: {image.label}]\n"
    if image.caption:
        return (
            f"[an image was attached here ({image.label}); it is no longer visible. "
            f'What you said about it then: "{image.caption}"]\n'
        )
    return f"[an image was attached here ({image.label}); it is no longer visible]\n"


def system_text(system_prompt: str, summary: Summary | None) -> str:
    """The system message: the prompt, then the summary of what no longer fits, if there is one."""
    return f"{system_prompt}{SUMMARY_HEADER}{summary.text}" if summary else system_prompt


def spoken(speaker: str, text: str) -> str:
    """The text as the model reads it: "speaker: text", or the text alone without a speaker."""
    return f"{speaker}: {text}" if speaker else text


def rendered(turn: Turn, text: str, *, visible: bool) -> str:
    """A turn's text as the model reads it: speaker prefix, image note, text."""
    if turn.image is None:
        return spoken(turn.speaker, text)
    return spoken(turn.speaker, image_note(turn.image, visible=visible) + text)


class ContextBuilder:
    """Keeps the system prompt and the new turn, then adds older turns newest-first while they fit."""

    def __init__(
        self,
        counter: TokenCounter,
        budget: Budget,
        *,
        images_per_request: int = 1,
        image_tokens: int = 1,
        model: str = "",
    ) -> None:
        self._counter = counter
        self._budget = budget
        self.model = model  # stamped on every request it builds
        self._images_per_request = images_per_request
        self._image_tokens = image_tokens

    @property
    def budget(self) -> Budget:
        return self._budget

    @property
    def counter(self) -> TokenCounter:
        """What it counts with: exact for Llama 3 models, an estimate for others."""
        return self._counter

    def build(
        self,
        system_prompt: str,
        history: Sequence[Turn],
        new_turn: Turn,
        *,
        summary: Summary | None = None,
    ) -> ModelRequest:
        """The request; turns the summary covers (created at or before its `through`) are left out."""
        limit = self._budget.prompt_tokens
        system = system_text(system_prompt, summary)
        fixed = self.fixed_cost(system)
        summarised = 0
        if summary is not None:
            kept_history = [turn for turn in history if turn.created_at > summary.through]
            summarised = len(history) - len(kept_history)
            history = kept_history
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

        messages: list[dict[str, Any]] = [{"role": "system", "content": system}]
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
            summary_tokens=summary.tokens if summary else 0,
            history_summarised=summarised,
            model=self.model,
        )

    def fixed_cost(self, system: str) -> int:
        """Tokens every request pays before its turns: the dialog's frame and the system message."""
        return self._counter.dialog_overhead() + self._counter.message("system", system)

    def history_cost(self, turn: Turn) -> int:
        """What an older turn costs when it is sent without its image (the most it costs as history)."""
        return self._cost(turn, turn.text, visible=False, counted=turn.tokens)

    def tightest_room(self, prompts: Sequence[tuple[str, str]]) -> tuple[int, str]:
        """The least room a question has under any of the named system prompts, and that name."""
        return min((self.question_room(text), name) for name, text in prompts)

    def question_room(self, system_prompt: str) -> int:
        """Tokens a new text question may use under `system_prompt` (below MIN_USER_TEXT_TOKENS: none)."""
        room = self._budget.prompt_tokens - self.fixed_cost(system_prompt)
        return self._text_room(Turn(role="user", text="", tokens=0, created_at=0.0), room)

    def _text_room(self, turn: Turn, room: int) -> int:
        """What is left of `room` for the turn's text once its frame, note and cut mark are counted."""
        return room - self._cost(turn, TRUNCATION_MARK, visible=turn.image is not None)

    def _cost(self, turn: Turn, text: str, *, visible: bool, counted: int | None = None) -> int:
        if turn.image is None:
            if counted is not None:
                return self._counter.stored(counted)
            return self._counter.message(turn.role, rendered(turn, text, visible=False))
        # Counted as sent: the prefix, the note and the text are one string, so count them together.
        images = 1 if visible else 0
        return self._counter.message(
            turn.role,
            rendered(turn, text, visible=visible),
            images=images,
            image_tokens=self._image_tokens,
        )

    def _fit_new_turn(self, turn: Turn, room: int) -> tuple[str, bool]:
        """The new turn's text, shortened (and marked) if it alone would not fit in `room` tokens."""
        visible = turn.image is not None
        if self._cost(turn, turn.text, visible=visible) <= room:
            return turn.text, False
        text_room = self._text_room(turn, room)
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
        content = rendered(turn, text, visible=visible)
        if turn.image is None or not visible:
            return {"role": turn.role, "content": content}
        # Meta's format: the image attends only to the text after it, so the image part comes first.
        return {
            "role": turn.role,
            "content": [
                {"type": "image_url", "image_url": {"url": turn.image.data_url()}},
                {"type": "text", "text": content},
            ],
        }
