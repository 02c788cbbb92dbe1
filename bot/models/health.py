"""Model health: expiry dates from GET /models, and models found gone replaced for a while."""

from __future__ import annotations

import datetime as dt
import logging
import time
from collections.abc import Callable

from bot.config import Settings
from bot.metrics import Metrics
from bot.openrouter import ModelError, ModelInfo

__all__ = [
    "EXPIRY_WARNING_DAYS",
    "GONE_MEMORY_SECONDS",
    "ModelHealth",
    "expiry_lines",
    "expiry_problem",
]

log = logging.getLogger("glimpse.models")

EXPIRY_WARNING_DAYS = 30  # warn about a model OpenRouter retires within this many days
GONE_MEMORY_SECONDS = 600.0  # a model found gone is not asked again for this long (per process)


def expiry_problem(
    info: ModelInfo, today: dt.date, *, within_days: int = EXPIRY_WARNING_DAYS
) -> str | None:
    """ "expired on D" or "expires on D (in N days)" if that is within `within_days`; else None."""
    if not info.expiration_date:
        return None
    try:
        date = dt.date.fromisoformat(info.expiration_date)
    except ValueError:
        return None
    days = (date - today).days
    if days < 0:
        return f"expired on {date.isoformat()}"
    if days <= within_days:
        when = "today" if days == 0 else "tomorrow" if days == 1 else f"in {days} days"
        return f"expires on {date.isoformat()} ({when})"
    return None


def expiry_lines(
    in_use: list[tuple[str, str]], catalogue: dict[str, ModelInfo], today: dt.date
) -> list[str]:
    """ "<where> <model> expires on D (in N days) on OpenRouter" for each listed model in use."""
    lines = []
    for model, where in in_use:
        info = catalogue.get(model) or catalogue.get(model.split(":", 1)[0])
        problem = expiry_problem(info, today) if info is not None else None
        if problem is not None:
            lines.append(f"{where} {model} {problem} on OpenRouter")
    return list(dict.fromkeys(lines))


class ModelHealth:
    """Remembers the models found gone in this process, and which model answers in their place."""

    def __init__(
        self,
        settings: Settings,
        metrics: Metrics,
        *,
        memory_seconds: float = GONE_MEMORY_SECONDS,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self._settings = settings
        self._metrics = metrics
        self._memory_seconds = memory_seconds
        self._clock = clock
        self._gone: dict[str, tuple[float, str]] = {}  # model -> (forgotten at, replacement)

    def route(self, model: str) -> str:
        """The model that answers for `model`: itself, or the replacement of a model found gone."""
        seen = {model}
        while (replacement := self._replacement(model)) is not None and replacement not in seen:
            seen.add(replacement)
            model = replacement
        return model

    def is_gone(self, model: str) -> bool:
        return self._replacement(model) is not None

    def replace(self, model: str, error: ModelError) -> str | None:
        """After `model` failed: if the error says it is gone, the model to ask instead; else None.

        Candidates in order: `fallback_models`, the replacements OpenRouter suggested, then the
        default model (when the gone one was a channel's). The first that is not gone itself is
        remembered for GONE_MEMORY_SECONDS, logged once and counted in the metric.
        """
        if not error.model_gone:
            return None
        candidates = [
            *self._settings.fallback_models,
            *error.suggested_models,
            self._settings.model,
        ]
        replacement = next(
            (c for c in dict.fromkeys(candidates) if c and c != model and not self.is_gone(c)), None
        )
        if replacement is None:
            log.error(
                "model %s is gone (%s) and no other model is configured: set fallback_models",
                model,
                error.detail,
            )
            return None
        self._gone[model] = (self._clock() + self._memory_seconds, replacement)
        self._metrics.model_fallback(model, replacement)
        log.warning(
            "model %s is gone (%s); %s answers in its place for the next %d minutes: "
            "change the model (GLIMPSE_MODEL, channel_models or /model) or set fallback_models",
            model,
            error.detail,
            replacement,
            round(self._memory_seconds / 60),
        )
        return replacement

    def _replacement(self, model: str) -> str | None:
        found = self._gone.get(model)
        if found is None:
            return None
        if found[0] <= self._clock():
            del self._gone[model]  # asked again: it may be back (or the operator changed things)
            return None
        return found[1]
