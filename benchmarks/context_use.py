"""P3: how much of the token budget each way of choosing context uses, and how often it overflows."""

from __future__ import annotations

import math
import statistics
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

from benchmarks.baseline import MAX_MESSAGES
from benchmarks.corpus import Conversation
from bot.config import DEFAULT_SYSTEM_PROMPT, Settings
from bot.context import Budget, ContextBuilder
from bot.tokens import TokenCounter
from bot.turns import Turn

__all__ = ["STRATEGIES", "StrategyResult", "measure_context_use"]

CONTEXT_TOKENS = 4096  # the default model's context on OpenRouter
CHARS_PER_TOKEN = 4
STRATEGIES = ("glimpse", "last 25 messages", "chars ÷ 4")

Messages = list[dict[str, Any]]


@dataclass
class StrategyResult:
    """Per conversation: real prompt tokens, whether the request overflows; and the budget."""

    name: str
    budget: int
    max_output_tokens: int
    prompt_tokens: list[int] = field(default_factory=list)
    exceeds: list[bool] = field(default_factory=list)  # the whole history would not fit the budget

    def shares(self, *, only_exceeding: bool = False) -> list[float]:
        return [
            tokens / self.budget
            for tokens, exceeds in zip(self.prompt_tokens, self.exceeds, strict=True)
            if exceeds or not only_exceeding
        ]

    def median_share(self, *, only_exceeding: bool = False) -> float:
        shares = self.shares(only_exceeding=only_exceeding)
        return statistics.median(shares) if shares else math.nan

    @property
    def overflows(self) -> int:
        """Requests whose prompt plus the reserved answer do not fit the context."""
        return sum(t + self.max_output_tokens > CONTEXT_TOKENS for t in self.prompt_tokens)

    @property
    def rejected(self) -> int:
        """Requests whose prompt alone is larger than the context."""
        return sum(t > CONTEXT_TOKENS for t in self.prompt_tokens)


def count_request(counter: TokenCounter, messages: Messages) -> int:
    """Real Llama 3 tokens of a text-only request, chat template included."""
    return counter.dialog_overhead() + sum(
        counter.message(m["role"], m["content"]) for m in messages
    )


def _glimpse(
    counter: TokenCounter, builder: ContextBuilder, history_turns: int
) -> Callable[[Conversation], Messages]:
    def choose(conversation: Conversation) -> Messages:
        turns = [
            Turn(role=role, text=text, tokens=counter.message(role, text), created_at=0.0)  # type: ignore[arg-type]
            for role, text in conversation.history[-history_turns:]
        ]
        new = Turn(
            role="user",
            text=conversation.new_message,
            tokens=counter.message("user", conversation.new_message),
            created_at=0.0,
        )
        return builder.build(DEFAULT_SYSTEM_PROMPT, turns, new).messages

    return choose


def _last_messages(conversation: Conversation) -> Messages:
    """llmcord's default: the newest 25 messages, the new one included, nothing counted."""
    kept = conversation.history[-(MAX_MESSAGES - 1) :]
    return [
        {"role": "system", "content": DEFAULT_SYSTEM_PROMPT},
        *({"role": role, "content": text} for role, text in kept),
        {"role": "user", "content": conversation.new_message},
    ]


def _estimate(text: str) -> int:
    return math.ceil(len(text) / CHARS_PER_TOKEN)


def _chars_over_four(budget: int) -> Callable[[Conversation], Messages]:
    """Budgeted like Glimpse, but with tokens estimated as characters ÷ 4 (new message cut to fit)."""

    def choose(conversation: Conversation) -> Messages:
        room = budget - _estimate(DEFAULT_SYSTEM_PROMPT)
        new = conversation.new_message[: room * CHARS_PER_TOKEN]
        used = _estimate(new)
        kept: list[dict[str, Any]] = []
        for role, text in reversed(conversation.history):
            if used + _estimate(text) > room:
                break
            used += _estimate(text)
            kept.append({"role": role, "content": text})
        return [
            {"role": "system", "content": DEFAULT_SYSTEM_PROMPT},
            *reversed(kept),
            {"role": "user", "content": new},
        ]

    return choose


def _whole(conversation: Conversation) -> Messages:
    return [
        {"role": "system", "content": DEFAULT_SYSTEM_PROMPT},
        *({"role": role, "content": text} for role, text in conversation.history),
        {"role": "user", "content": conversation.new_message},
    ]


def measure_context_use(corpus: Sequence[Conversation]) -> list[StrategyResult]:
    """Every strategy on the same corpus, every request counted with the real tokenizer."""
    settings = Settings()
    counter = TokenCounter()
    budget = Budget(CONTEXT_TOKENS, settings.max_output_tokens, settings.safety_margin_tokens)
    builder = ContextBuilder(counter, budget, image_tokens=settings.image_prompt_tokens)
    choosers = {
        "glimpse": _glimpse(counter, builder, settings.history_turns),
        "last 25 messages": _last_messages,
        "chars ÷ 4": _chars_over_four(budget.prompt_tokens),
    }
    results = {
        name: StrategyResult(name, budget.prompt_tokens, settings.max_output_tokens)
        for name in STRATEGIES
    }
    for conversation in corpus:
        exceeds = count_request(counter, _whole(conversation)) > budget.prompt_tokens
        for name, choose in choosers.items():
            results[name].prompt_tokens.append(count_request(counter, choose(conversation)))
            results[name].exceeds.append(exceeds)
    return list(results.values())
