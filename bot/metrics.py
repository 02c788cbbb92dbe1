"""Prometheus metrics of one Conversations service, kept in its own registry (never the global one)."""

from __future__ import annotations

import logging
import weakref
from collections.abc import Iterator
from contextlib import contextmanager
from typing import TYPE_CHECKING

from prometheus_client import CONTENT_TYPE_LATEST as CONTENT_TYPE
from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram, generate_latest

from bot.turns import Usage

if TYPE_CHECKING:
    from bot.conversations import Outcome
    from bot.ledger import CallKind

__all__ = ["CONTENT_TYPE", "Metrics"]

FIRST_TOKEN_BUCKETS_SECONDS = (0.25, 0.5, 1, 2, 3, 5, 8, 13, 20, 30, 60)
ANSWER_BUCKETS_SECONDS = (0.5, 1, 2, 5, 10, 20, 30, 60, 120, 300)
IMAGE_RESULTS = ("processed", "refused")
SUMMARY_RESULTS = ("made", "failed", "skipped")
# Retries are observed in the log lines that announce them: (logger, line prefix, layer label).
RETRY_LINES = (
    ("openai._base_client", "Retrying request", "sdk"),  # 408/429/5xx/timeouts before the stream
    ("glimpse.openrouter", "retrying after", "stream"),  # failures in the stream before any text
)


class Metrics:
    """Counters, histograms and gauges: messages, latency, tokens, cost, images, summaries, retries."""

    def __init__(self, registry: CollectorRegistry | None = None) -> None:
        self.registry = registry if registry is not None else CollectorRegistry()
        self._define()
        for result in IMAGE_RESULTS:
            self.images.labels(result)
        for result in SUMMARY_RESULTS:
            self.summaries.labels(result)
        for _, _, layer in RETRY_LINES:
            self.retries.labels(layer)
        _watch_retries(self)

    def _define(self) -> None:
        r = self.registry
        self.messages = Counter(
            "glimpse_messages",
            "Messages handled, by platform and outcome status",
            ["platform", "status"],
            registry=r,
        )
        self.dedup_hits = Counter(
            "glimpse_dedup_hits", "Messages ignored as already handled", ["platform"], registry=r
        )
        self.first_token = Histogram(
            "glimpse_first_token_seconds",
            "Time from the model request to the first answer text",
            ["platform"],
            buckets=FIRST_TOKEN_BUCKETS_SECONDS,
            registry=r,
        )
        self.answer = Histogram(
            "glimpse_answer_seconds",
            "Time from receiving a message to the end of its answer",
            ["platform"],
            buckets=ANSWER_BUCKETS_SECONDS,
            registry=r,
        )
        self.prompt_tokens = Counter(
            "glimpse_prompt_tokens",
            "Prompt tokens billed, by model and kind of call (answer or summary)",
            ["model", "kind"],
            registry=r,
        )
        self.completion_tokens = Counter(
            "glimpse_completion_tokens",
            "Completion tokens billed, by model and kind of call (answer or summary)",
            ["model", "kind"],
            registry=r,
        )
        self.cost = Counter(
            "glimpse_cost_usd",
            "Model cost in US dollars, by model and kind of call (answer or summary)",
            ["model", "kind"],
            registry=r,
        )
        self.summaries = Counter(
            "glimpse_summaries",
            "Summaries of older turns, by result (made, failed or skipped)",
            ["result"],
            registry=r,
        )
        self.images = Counter(
            "glimpse_images",
            "Images received, by result (processed or refused)",
            ["result"],
            registry=r,
        )
        self.retries = Counter(
            "glimpse_model_retries",
            "Model request retries (sdk: before the stream; stream: inside it, before any text)",
            ["layer"],
            registry=r,
        )
        self.model_fallbacks = Counter(
            "glimpse_model_fallbacks",
            "Models found gone (retired, unlisted) and replaced by another for later answers",
            ["from", "to"],
            registry=r,
        )
        self.feedback = Counter(
            "glimpse_feedback",
            "People's ratings of answers, by model and rating (a repeated click is not counted; "
            "a changed one counts for its new rating)",
            ["model", "rating"],
            registry=r,
        )
        self.in_flight = Gauge(
            "glimpse_answers_in_flight", "Messages being answered now", registry=r
        )
        self.queued = Gauge(
            "glimpse_messages_queued",
            "Messages waiting behind an earlier message of the same conversation",
            registry=r,
        )

    def render(self) -> bytes:
        """The Prometheus text exposition of this registry."""
        return generate_latest(self.registry)

    @contextmanager
    def waiting(self) -> Iterator[None]:
        """Around a whole `handle` call: queued until `answering` starts, and after it ends."""
        self.queued.inc()
        try:
            yield
        finally:
            self.queued.dec()

    @contextmanager
    def answering(self) -> Iterator[None]:
        """Around the part of `handle` that holds the conversation: in flight, not queued."""
        self.queued.dec()
        self.in_flight.inc()
        try:
            yield
        finally:
            self.in_flight.dec()
            self.queued.inc()

    def image_results(self, processed: int, refused: int) -> None:
        self.images.labels("processed").inc(processed)
        self.images.labels("refused").inc(refused)

    def model_fallback(self, gone: str, replacement: str) -> None:
        """A model was found gone; `replacement` answers in its place for a while."""
        self.model_fallbacks.labels(gone, replacement).inc()

    def observe(self, platform: str, outcome: Outcome, seconds: float) -> None:
        """One message's outcome; latency and usage only when the model was asked."""
        status = outcome.status.value
        self.messages.labels(platform, status).inc()
        if status == "duplicate":
            self.dedup_hits.labels(platform).inc()
        if outcome.first_token_seconds is not None:
            self.first_token.labels(platform).observe(outcome.first_token_seconds)
        if outcome.request is not None:
            self.answer.labels(platform).observe(seconds)
        if outcome.usage is not None:
            self._usage(outcome.usage, "answer")

    def summary(self, result: str, usage: Usage | None = None) -> None:
        """One summary call's result (made, failed or skipped) and, if billed, its usage."""
        if result not in SUMMARY_RESULTS:
            raise ValueError(f"a summary result is one of {SUMMARY_RESULTS}, not {result!r}")
        self.summaries.labels(result).inc()
        if usage is not None:
            self._usage(usage, "summary")

    def _usage(self, usage: Usage, kind: CallKind) -> None:
        self.prompt_tokens.labels(usage.model, kind).inc(usage.prompt_tokens)
        self.completion_tokens.labels(usage.model, kind).inc(usage.completion_tokens)
        self.cost.labels(usage.model, kind).inc(max(0.0, usage.cost))


class _RetryWatch(logging.Filter):
    """On one logger: counts its retry lines, and passes on only records its parent's level allows.

    The logger is lowered to INFO so retry lines are always created; this filter then drops
    what the operator's level would have dropped, so logging output does not change.
    """

    def __init__(self, logger: logging.Logger, prefix: str, layer: str) -> None:
        super().__init__()
        self._logger = logger
        self._prefix = prefix
        self._layer = layer
        self._own_level = logger.level
        self.listeners: weakref.WeakSet[Metrics] = weakref.WeakSet()

    def filter(self, record: logging.LogRecord) -> bool:
        if str(record.msg).startswith(self._prefix):
            for metrics in list(self.listeners):
                metrics.retries.labels(self._layer).inc()
        threshold = self._own_level or _parent_level(self._logger)
        return record.levelno >= threshold


_WATCHES: dict[str, _RetryWatch] = {}


def _watch_retries(metrics: Metrics) -> None:
    for name, prefix, layer in RETRY_LINES:
        watch = _WATCHES.get(name)
        if watch is None:
            logger = logging.getLogger(name)
            watch = _WATCHES[name] = _RetryWatch(logger, prefix, layer)
            logger.addFilter(watch)
            logger.setLevel(min(logging.INFO, logger.getEffectiveLevel()))
        watch.listeners.add(metrics)


def _parent_level(logger: logging.Logger) -> int:
    parent = logger.parent
    return parent.getEffectiveLevel() if parent is not None else logging.WARNING
