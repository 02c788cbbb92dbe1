"""Folds the turns that no longer fit into the conversation's summary: after the answer, in the background."""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Sequence
from dataclasses import dataclass

from bot.budgets import Budgets
from bot.context import SUMMARY_HEADER, ContextBuilder
from bot.memory.folding import turns_to_fold
from bot.memory.transcript import request_cost, summary_messages
from bot.messages import ConversationKey, IncomingMessage
from bot.metrics import Metrics
from bot.openrouter import ModelError, OpenRouterClient
from bot.store import Store, StoreError
from bot.tokens import TokenCounter
from bot.turns import Summary, Turn

__all__ = ["CLAIM_TTL_SECONDS", "Summarizer"]

log = logging.getLogger("glimpse.summaries")

# One process folds a given summary at a time (a claim on the summary it starts from); a claim
# left by a crashed or failed fold lapses after this long, and a later answer tries again.
CLAIM_TTL_SECONDS = 120.0
SUMMARY_TEMPERATURE = 0.2
MIN_RESERVE_TOKENS = 128  # room kept for the next question when deciding what still fits
WORDS_PER_TOKEN = 0.6  # the word limit asked of the model, from the summary's token cap


@dataclass(frozen=True, slots=True)
class _Fold:
    """One fold to make: the summary it starts from and the turns to add to it."""

    message: IncomingMessage  # the answer that made it due: its payer is charged
    base: Summary | None
    turns: tuple[Turn, ...]
    cap_tokens: int  # the most tokens the new summary's text may have
    prompt_tokens: int  # the most the summary request may count
    model: str  # the conversation's model, which makes the summary ("": the configured one)
    counter: TokenCounter  # how that model's requests are counted


class Summarizer:
    """Keeps each conversation's summary of what no longer fits; never delays an answer."""

    def __init__(
        self,
        *,
        store: Store,
        client: OpenRouterClient,
        counter: TokenCounter,
        budgets: Budgets,
        metrics: Metrics,
        share: float,
    ) -> None:
        self._store = store
        self._client = client
        self._counter = counter
        self._budgets = budgets
        self._metrics = metrics
        self._share = share
        self._running: dict[ConversationKey, asyncio.Task[None]] = {}

    def cap_tokens(self, builder: ContextBuilder) -> int:
        """The most tokens a summary's text may have: its share of the budget, less its header."""
        share = int(builder.budget.prompt_tokens * self._share)
        return max(0, share - builder.counter.text(SUMMARY_HEADER))

    def fits(self, summary: Summary | None, builder: ContextBuilder) -> Summary | None:
        """The summary, unless it is over today's cap (the budget shrank): then None, logged."""
        tokens = builder.counter.stored_text(summary.tokens) if summary is not None else 0
        if summary is not None and tokens > self.cap_tokens(builder):
            log.info(
                "summary of %d tokens is over the cap of %d; not sent",
                tokens,
                self.cap_tokens(builder),
            )
            return None
        return summary

    def consider(
        self,
        message: IncomingMessage,
        builder: ContextBuilder,
        system: str,
        turns: Sequence[Turn],
        summary: Summary | None,
    ) -> None:
        """After an answer is delivered: fold in the background if the next request would drop turns.

        `system` is the system prompt without a summary; `turns` the conversation, oldest first,
        ending with the exchange just stored.
        """
        key = message.key
        cap = self.cap_tokens(builder)
        if key in self._running or cap <= 0 or not turns:
            return
        budget = builder.budget
        reserve = _reserve(turns, builder)
        room = budget.prompt_tokens - builder.fixed_cost(system) - cap - reserve
        fold = turns_to_fold(turns, summary, room=max(0, room), cost=builder.history_cost)
        if not fold:
            return
        job = _Fold(
            message=message,
            base=summary,
            turns=tuple(fold),
            cap_tokens=cap,
            prompt_tokens=budget.context_length - cap - budget.safety_margin,
            model=builder.model,
            counter=builder.counter,
        )
        task = asyncio.create_task(self._fold(job), name=f"glimpse-summary-{key}")
        self._running[key] = task
        task.add_done_callback(lambda _: self._running.pop(key, None))

    def forget(self, key: ConversationKey) -> None:
        """Stop a fold of this conversation in flight (it is being reset)."""
        task = self._running.pop(key, None)
        if task is not None:
            task.cancel()

    async def idle(self) -> None:
        """Wait until no fold is in flight (tests, benchmarks, shutdown)."""
        while self._running:
            await asyncio.wait(list(self._running.values()))

    async def close(self) -> None:
        """Stop the folds in flight: a lost fold is made again after a later answer."""
        tasks = list(self._running.values())
        for task in tasks:
            task.cancel()
        if tasks:
            await asyncio.wait(tasks)

    async def _fold(self, job: _Fold) -> None:
        key = job.message.key
        try:
            await self._fold_once(job)
        except asyncio.CancelledError:
            raise
        except Exception:  # a background task must log, never vanish
            log.exception("summary of %s failed unexpectedly", key)
            self._metrics.summary("failed")

    async def _fold_once(self, job: _Fold) -> None:
        key = job.message.key
        base_through = job.base.through if job.base is not None else None
        if not await self._claim(key, base_through):
            self._metrics.summary("skipped")
            return
        messages = summary_messages(
            job.base,
            job.turns,
            job.counter,
            words=max(20, int(job.cap_tokens * WORDS_PER_TOKEN)),
            prompt_tokens=job.prompt_tokens,
        )
        if request_cost(job.counter, messages) > job.prompt_tokens:
            log.warning("summary of %s skipped: even its shortest request would not fit", key)
            self._metrics.summary("skipped")
            return
        try:
            completion = await self._client.complete(
                messages,
                max_tokens=job.cap_tokens,
                temperature=SUMMARY_TEMPERATURE,
                model=job.model or None,
            )
        except ModelError as exc:
            log.warning(
                "summary of %s skipped: the model call failed (%s); the conversation goes on "
                "without it",
                key,
                exc.kind,
            )
            self._metrics.summary("failed")
            return
        await self._budgets.record(job.message, completion.usage, 0, kind="summary")
        text = job.counter.truncate(completion.text.strip(), job.cap_tokens).strip()
        if not text:
            log.warning("summary of %s skipped: the model sent back an empty summary", key)
            self._metrics.summary("failed", completion.usage)
            return
        summary = Summary(
            text=text,
            tokens=self._counter.text(text),
            through=job.turns[-1].created_at,
            updated_at=time.time(),
        )
        result = await self._save(key, summary, base_through)
        self._metrics.summary(result, completion.usage)
        if result == "made":
            log.info(
                "summarised %d turns of %s into %d tokens (%d prompt + %d completion tokens, $%.6f)",
                len(job.turns),
                key,
                summary.tokens,
                completion.usage.prompt_tokens,
                completion.usage.completion_tokens,
                completion.usage.cost,
            )

    async def _claim(self, key: ConversationKey, base_through: float | None) -> bool:
        """Whether this process folds from this base (another process may be at it already)."""
        start = "start" if base_through is None else repr(base_through)
        try:
            claimed = await self._store.claim(f"summary:{key}:{start}", CLAIM_TTL_SECONDS)
        except StoreError as exc:
            log.warning("summary of %s skipped: %s", key, exc)
            return False
        if not claimed:
            log.info("summary of %s skipped: another process is folding the same turns", key)
        return claimed

    async def _save(self, key: ConversationKey, summary: Summary, base: float | None) -> str:
        """Store it if the stored summary is still the one folded from: "made", "skipped" or "failed"."""
        try:
            if not await self._store.save_summary(key, summary, replacing=base):
                log.info("summary of %s not stored: a newer one was stored meanwhile", key)
                return "skipped"
            if not await self._store.load(key, 1):  # reset while the summary was made
                await self._store.reset(key)
                return "skipped"
        except StoreError as exc:
            log.warning("summary of %s not stored: %s", key, exc)
            return "failed"
        return "made"


def _reserve(turns: Sequence[Turn], builder: ContextBuilder) -> int:
    """Room to keep for the next question: as much as the last one took, within bounds."""
    last_user = next((turn for turn in reversed(turns) if turn.role == "user"), None)
    cost = builder.history_cost(last_user) if last_user is not None else 0
    return max(MIN_RESERVE_TOKENS, min(cost, builder.budget.prompt_tokens // 4))
