"""P3's memory columns: which facts a conversation's last request still holds, summaries or not."""

# Each corpus conversation is replayed through the real `Conversations` service (memory store,
# the openai SDK, the fake OpenRouter): its user messages in order, each earlier one opening with
# a marked fact (`fact-17=teal`), the fake answering each with the corpus's own reply and, asked
# for a summary (a non-streamed request), keeping every marked fact it is shown. What is scored is
# the request of the conversation's last message: which planted facts appear anywhere in it,
# verbatim in a turn or inside the summary in the system message.

from __future__ import annotations

import json
import math
import random
import re
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

from pydantic import SecretStr

from benchmarks.common import MemorySink, core_settings
from benchmarks.context_use import CONTEXT_TOKENS, count_request
from benchmarks.corpus import Conversation
from bot.app import build_conversations
from bot.config import DEFAULT_SYSTEM_PROMPT, Secrets, Settings
from bot.context import Budget, ModelRequest
from bot.conversations import Conversations, Status
from bot.memory.transcript import request_cost
from bot.messages import ConversationKey, IncomingMessage
from bot.tokens import TokenCounter
from tests.fakes.openrouter import FAKE_API_KEY, FakeOpenRouter

__all__ = [
    "VARIANTS",
    "ConversationRecall",
    "Planted",
    "RecallResult",
    "Variant",
    "measure_memory_recall",
    "plant_facts",
]

FACT = re.compile(r"fact-\d+=[a-z]+")
COLOURS = (
    "amber azure beige black blue bronze coral crimson cyan gold green grey indigo ivory "
    "khaki lilac lime magenta maroon navy olive orange peach pink plum purple red rust "
    "salmon silver tan teal violet white yellow"
).split()
FALLBACK_REPLY = "Noted."  # the answer to a message with no corpus reply (the last one)
SUMMARY_PREFIX = "Facts established earlier: "
# Llama 3.2 90B Vision on OpenRouter, USD per token (DESIGN.md), for the cost per 100 answers.
PROMPT_USD_PER_TOKEN = 0.80e-6
COMPLETION_USD_PER_TOKEN = 1.60e-6
# A summary this close to its cap was cut to fit it (the fake's list of facts was longer).
CAP_SLACK_TOKENS = 8
Messages = list[dict[str, Any]]


@dataclass(frozen=True, slots=True)
class Variant:
    """One way of replaying the corpus: with summaries or not, waiting for them or not."""

    name: str
    summaries: bool
    waits: bool  # `await conversations.idle()` after each answer, before the next message


VARIANTS = (
    Variant("no summaries", summaries=False, waits=True),
    Variant("summaries", summaries=True, waits=True),
    Variant("summaries, next message at once", summaries=True, waits=False),
)


@dataclass(frozen=True, slots=True)
class Planted:
    """A corpus conversation as its user sends it: messages with facts, and the replies."""

    index: int
    profile: str
    messages: tuple[str, ...]  # oldest first; the last is the question whose request is scored
    replies: tuple[str, ...]  # the corpus's reply to each message but the last
    facts: tuple[str, ...]  # the fact opening each message but the last, oldest first
    exceeds: bool  # the whole conversation, as sent, is over the prompt budget


def plant_facts(
    corpus: Sequence[Conversation], counter: TokenCounter, budget: int, seed: int = 16
) -> list[Planted]:
    """Open every earlier user message with a fact numbered across the corpus (`fact-17=teal`)."""
    rng = random.Random(seed)
    number = 0
    planted = []
    for index, conversation in enumerate(corpus):
        users = [text for role, text in conversation.history if role == "user"]
        replies = [text for role, text in conversation.history if role == "assistant"]
        facts = []
        for _ in users:
            number += 1
            facts.append(f"fact-{number}={rng.choice(COLOURS)}")
        messages = [f"{fact} {text}" for fact, text in zip(facts, users, strict=True)]
        messages.append(conversation.new_message)
        whole: Messages = [{"role": "system", "content": DEFAULT_SYSTEM_PROMPT}]
        for message, reply in zip(messages[:-1], replies, strict=True):
            whole += [{"role": "user", "content": message}, {"role": "assistant", "content": reply}]
        whole.append({"role": "user", "content": messages[-1]})
        planted.append(
            Planted(
                index=index,
                profile=conversation.profile,
                messages=tuple(messages),
                replies=tuple(replies),
                facts=tuple(facts),
                exceeds=count_request(counter, whole) > budget,
            )
        )
    return planted


@dataclass(frozen=True, slots=True)
class ConversationRecall:
    """What the last request of one conversation held of its facts."""

    index: int
    planted: int  # facts in its earlier messages
    kept: int  # of them, present in the last request (verbatim or in the summary)
    first_kept: bool | None  # the first message's fact present (None: no earlier messages)
    in_summary: int  # facts present only through the summary
    exceeds: bool
    dropped: int  # older turns the last request left out that its summary did not cover
    summary_tokens: int  # the summary sent with the last request (0: none)


@dataclass
class RecallResult:
    """One variant over the corpus: recall per conversation, overflows, every call's tokens."""

    variant: Variant
    budget: int
    max_output_tokens: int
    conversations: list[ConversationRecall] = field(default_factory=list)
    answers: int = 0
    failed: int = 0  # messages not answered (must stay 0)
    answer_prompt_tokens: int = 0  # as the context builder counted them
    answer_completion_tokens: int = 0  # the corpus replies, counted
    answers_with_summary: int = 0  # answer requests that carried a summary
    answer_summary_tokens: int = 0  # the summaries' tokens in those requests
    answer_overflows: int = 0  # over the budget, or over the context with the reserved answer
    summary_calls: int = 0
    summary_prompt_tokens: int = 0  # each summary request counted with the tokenizer
    summary_completion_tokens: int = 0
    summary_max_tokens: int = 0  # the summary's cap, asked as max_tokens
    summary_overflows: int = 0  # summary requests whose prompt plus max_tokens exceed the context
    seconds: float = 0.0

    def _chosen(self, *, only_exceeding: bool) -> list[ConversationRecall]:
        return [c for c in self.conversations if c.exceeds or not only_exceeding]

    def fact_share(self, *, only_exceeding: bool = False) -> float:
        """Share of all planted facts present in their conversation's last request."""
        chosen = self._chosen(only_exceeding=only_exceeding)
        planted = sum(c.planted for c in chosen)
        return sum(c.kept for c in chosen) / planted if planted else math.nan

    def first_share(self, *, only_exceeding: bool = False) -> float:
        """Share of conversations whose first message's fact is present in the last request."""
        chosen = [
            c for c in self._chosen(only_exceeding=only_exceeding) if c.first_kept is not None
        ]
        return sum(bool(c.first_kept) for c in chosen) / len(chosen) if chosen else math.nan

    def summary_share(self, *, only_exceeding: bool = False) -> float:
        """Share of all planted facts present only through the summary."""
        chosen = self._chosen(only_exceeding=only_exceeding)
        planted = sum(c.planted for c in chosen)
        return sum(c.in_summary for c in chosen) / planted if planted else math.nan

    @property
    def summary_cap(self) -> int:
        """The most tokens a summary may have (what each summary call asked as max_tokens)."""
        return self.summary_max_tokens // self.summary_calls if self.summary_calls else 0

    def misses(self, *, only_exceeding: bool = False) -> dict[str, int]:
        """Facts missing from last requests, by cause: crowded out, a summary at its cap, other."""
        counts = {"crowded out": 0, "summary at its cap": 0, "other": 0}
        for c in self._chosen(only_exceeding=only_exceeding):
            if c.kept == c.planted:
                continue
            if c.dropped:
                reason = "crowded out"
            elif self.summary_cap and c.summary_tokens >= self.summary_cap - CAP_SLACK_TOKENS:
                reason = "summary at its cap"
            else:
                reason = "other"
            counts[reason] += c.planted - c.kept
        return counts

    def first_misses_crowded(self, *, only_exceeding: bool = False) -> tuple[int, int]:
        """Conversations missing the first fact: all, and those whose last request dropped turns."""
        missed = [c for c in self._chosen(only_exceeding=only_exceeding) if c.first_kept is False]
        return len(missed), sum(1 for c in missed if c.dropped)

    @property
    def overflows(self) -> int:
        return self.answer_overflows + self.summary_overflows

    def per_100_answers(self, tokens: int) -> float:
        return 100 * tokens / self.answers if self.answers else math.nan

    @property
    def summary_tokens(self) -> int:
        return self.summary_prompt_tokens + self.summary_completion_tokens

    @property
    def answer_tokens(self) -> int:
        return self.answer_prompt_tokens + self.answer_completion_tokens

    def summary_usd_per_100(self) -> float:
        """What the summary calls cost per 100 answers, at the model's prices."""
        return self._per_100_usd(self.summary_prompt_tokens, self.summary_completion_tokens)

    def answer_usd_per_100(self) -> float:
        """What the answers themselves cost per 100 answers, at the model's prices."""
        return self._per_100_usd(self.answer_prompt_tokens, self.answer_completion_tokens)

    def at_cap_usd_per_100(self) -> float:
        """The most answers and summary calls would cost per 100 answers, every summary at its cap."""
        # Each summary's text grows to the cap: its completion, the prompt of each answer that
        # carries it, and the prompt of the summary call that folds it again (at most the cap per
        # call) grow by at most that much; the rest of every request stays as it was or shrinks.
        cap = self.summary_cap
        extra_completion = self.summary_max_tokens - self.summary_completion_tokens
        extra_prompt = self.answers_with_summary * cap - self.answer_summary_tokens
        extra_prompt += self.summary_calls * cap
        return (
            self.answer_usd_per_100()
            + self.summary_usd_per_100()
            + self._per_100_usd(extra_prompt, extra_completion)
        )

    def _per_100_usd(self, prompt: int, completion: int) -> float:
        usd = prompt * PROMPT_USD_PER_TOKEN + completion * COMPLETION_USD_PER_TOKEN
        return 100 * usd / self.answers if self.answers else math.nan


class _Model:
    """The fake model: the corpus's reply to each message; a summary keeping every fact shown."""

    def __init__(self, planted: Sequence[Planted], counter: TokenCounter, result: RecallResult):
        self._replies = {
            message: reply
            for conversation in planted
            for message, reply in zip(conversation.messages, conversation.replies, strict=False)
        }
        self._counter = counter
        self._result = result

    def respond(self, body: dict[str, Any]) -> str:
        """The reply text for one chat request (the fake's `responder`)."""
        messages: Messages = body["messages"]
        if body.get("stream"):
            last = messages[-1]["content"]
            return (
                self._replies.get(last, FALLBACK_REPLY) if isinstance(last, str) else FALLBACK_REPLY
            )
        # A summary request: every fact shown, oldest first (the current summary comes first).
        shown = list(dict.fromkeys(FACT.findall(json.dumps(messages, ensure_ascii=False))))
        text = SUMMARY_PREFIX + ("; ".join(shown) if shown else "none") + "."
        prompt = request_cost(self._counter, messages)
        result = self._result
        result.summary_calls += 1
        result.summary_prompt_tokens += prompt
        result.summary_completion_tokens += self._counter.text(text)
        result.summary_max_tokens += int(body["max_tokens"])
        result.summary_overflows += prompt + int(body["max_tokens"]) > CONTEXT_TOKENS
        return text


def _request_text(messages: Messages) -> tuple[str, str]:
    """The request's system message, and everything else, as text (images left out)."""
    parts = []
    for message in messages[1:]:
        content = message["content"]
        if isinstance(content, list):
            content = "".join(part.get("text", "") for part in content)
        parts.append(content)
    return str(messages[0]["content"]), "\n".join(parts)


async def _replay(
    service: Conversations,
    conversation: Planted,
    variant: Variant,
    counter: TokenCounter,
    result: RecallResult,
) -> None:
    """Send the conversation's messages in order and score its last request."""
    key = ConversationKey("bench", "w-recall", "c-recall", f"t{conversation.index}")
    last: ModelRequest | None = None
    for number, text in enumerate(conversation.messages):
        message = IncomingMessage(
            key=key, message_id=f"r{conversation.index}-{number}", author_id="u1", text=text
        )
        outcome = await service.handle(message, MemorySink())
        result.answers += 1
        if outcome.status is not Status.ANSWERED or outcome.request is None:
            result.failed += 1
            continue
        request = outcome.request
        result.answer_prompt_tokens += request.prompt_tokens
        result.answer_completion_tokens += counter.text(outcome.text)
        result.answers_with_summary += request.summary_tokens > 0
        result.answer_summary_tokens += request.summary_tokens
        result.answer_overflows += (
            request.prompt_tokens > result.budget
            or request.prompt_tokens + result.max_output_tokens > CONTEXT_TOKENS
        )
        last = request
        if variant.waits:
            await service.idle()
    system, turns = _request_text(last.messages) if last is not None else ("", "")
    verbatim = set(conversation.facts) & set(FACT.findall(turns))
    summarised = set(conversation.facts) & set(FACT.findall(system))
    kept = verbatim | summarised
    result.conversations.append(
        ConversationRecall(
            index=conversation.index,
            planted=len(conversation.facts),
            kept=len(kept),
            first_kept=conversation.facts[0] in kept if conversation.facts else None,
            in_summary=len(summarised - verbatim),
            exceeds=conversation.exceeds,
            dropped=last.history_dropped if last is not None else 0,
            summary_tokens=last.summary_tokens if last is not None else 0,
        )
    )


def _budget(settings: Settings) -> int:
    """Prompt tokens a request may use with the default model's 4,096-token context."""
    return Budget(
        CONTEXT_TOKENS, settings.max_output_tokens, settings.safety_margin_tokens
    ).prompt_tokens


async def _run_variant(
    variant: Variant, planted: Sequence[Planted], counter: TokenCounter
) -> RecallResult:
    """Replay every conversation, one at a time, through a fresh service against a fresh fake."""
    started = time.perf_counter()
    async with FakeOpenRouter(record_requests=False) as fake:
        settings = core_settings(fake.base_url, summaries=variant.summaries)
        result = RecallResult(variant, _budget(settings), settings.max_output_tokens)
        fake.responder = _Model(planted, counter, result).respond
        service = build_conversations(settings, Secrets(openrouter_api_key=SecretStr(FAKE_API_KEY)))
        await service.start()
        try:
            for conversation in planted:
                await _replay(service, conversation, variant, counter, result)
            await service.idle()
        finally:
            await service.close()
    result.seconds = time.perf_counter() - started
    return result


async def measure_memory_recall(
    corpus: Sequence[Conversation], variants: Sequence[Variant] = VARIANTS
) -> list[RecallResult]:
    """Every variant over the same conversations, each in a fresh service and memory store."""
    counter = TokenCounter()
    planted = plant_facts(corpus, counter, _budget(Settings()))
    return [await _run_variant(variant, planted, counter) for variant in variants]
