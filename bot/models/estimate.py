"""Token counts per model: exact for Meta's Llama 3 models, a conservative estimate for the rest."""

from __future__ import annotations

import logging
import math
import re

from bot.tokens import TokenCounter

__all__ = [
    "ESTIMATE_FACTOR",
    "ESTIMATE_MESSAGE_TOKENS",
    "EstimatingCounter",
    "UndercountWatch",
    "counter_for",
    "is_llama3",
]

log = logging.getLogger("glimpse.models")

# Another family's tokenizer and chat template are unknown here: its count is taken as the Llama 3
# count × 1.25, plus 16 tokens per message for a template that may be longer than Llama's. Llama 3's
# 128K vocabulary is among the most compact; tokenizers with ~32K-150K vocabularies (Mistral,
# Qwen, Gemma, GPT-4o's o200k) are within 25% of it on English and code.
ESTIMATE_FACTOR = 1.25
ESTIMATE_MESSAGE_TOKENS = 16
UNDERCOUNT_LOG_EVERY = 100  # after the first, one warning per this many under-counts of a model

# Meta's own Llama 3 models (3, 3.1, 3.2, 3.3, any size, vision or not, any ":variant"): the
# tokenizer and chat template `TokenCounter` reproduces. Fine-tunes by others (often with another
# template), Llama Guard and Llama 4 (another tokenizer) are estimated.
_LLAMA3 = re.compile(r"meta-llama/llama-?3(?![0-9])[^:]*(:.*)?", re.IGNORECASE)


def is_llama3(model: str) -> bool:
    """Whether `model` is one of Meta's Llama 3 models (`meta-llama/llama-3…` or `llama3…`)."""
    return _LLAMA3.fullmatch(model) is not None


class EstimatingCounter(TokenCounter):
    """A TokenCounter whose counts are a ceiling for tokenizers other than Llama 3's.

    text: ceil(Llama 3 count × 1.25); a message: ceil(its Llama 3 count × 1.25) + 16;
    `truncate` keeps a prefix whose estimate fits. Stored turns (counted with Llama 3 when they
    were made) are converted with `stored`.
    """

    def __init__(self, exact: TokenCounter) -> None:
        super().__init__(exact._tokenizer)  # the same tokenizer instance; its counts are cached
        self._exact = exact

    def text(self, text: str) -> int:
        return _scaled(self._exact.text(text))

    def message(self, role: str, text: str, *, images: int = 0, image_tokens: int = 1) -> int:
        exact = self._exact.message(role, text, images=images, image_tokens=image_tokens)
        return self.stored(exact)

    def dialog_overhead(self) -> int:
        return _scaled(self._exact.dialog_overhead()) + ESTIMATE_MESSAGE_TOKENS

    def truncate(self, text: str, max_tokens: int) -> str:
        return self._exact.truncate(text, math.floor(max_tokens / ESTIMATE_FACTOR))

    def stored(self, tokens: int) -> int:
        return _scaled(tokens) + ESTIMATE_MESSAGE_TOKENS

    def stored_text(self, tokens: int) -> int:
        return _scaled(tokens)


def counter_for(model: str, exact: TokenCounter) -> TokenCounter:
    """The exact counter for a Llama 3 model, the estimating one for any other."""
    return exact if is_llama3(model) else EstimatingCounter(exact)


class UndercountWatch:
    """Compares each request's count with OpenRouter's billed prompt_tokens; logs a short count."""

    def __init__(self, *, every: int = UNDERCOUNT_LOG_EVERY) -> None:
        self._every = every
        self._short: dict[str, int] = {}  # model -> under-counts seen

    def check(self, model: str, counted: int, reported: int, *, estimated: bool) -> bool:
        """True if OpenRouter billed more than was counted (logged the first and every Nth time)."""
        if reported <= counted:
            return False
        seen = self._short[model] = self._short.get(model, 0) + 1
        if seen == 1 or seen % self._every == 0:
            how = "estimated (Llama 3 count × 1.25 + 16 a message)" if estimated else "counted"
            log.warning(
                "model %s: %d prompt tokens %s but OpenRouter billed %d (%d short; under-count "
                "%d for this model): the safety margin (safety_margin_tokens) absorbs this; "
                "raise it if requests are refused as too long",
                model,
                counted,
                how,
                reported,
                reported - counted,
                seen,
            )
        return True


def _scaled(tokens: int) -> int:
    return math.ceil(tokens * ESTIMATE_FACTOR)
