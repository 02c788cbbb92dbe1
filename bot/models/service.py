"""What the conversations service asks about models: which answers a message, with what budget,
and how to call it so that a retired model never leaves a user without an answer."""

from __future__ import annotations

import datetime as dt
import logging
from collections.abc import AsyncIterator
from dataclasses import dataclass
from typing import Any

from bot.config import Settings
from bot.context import Budget, ContextBuilder, ContextError, ModelRequest
from bot.messages import IncomingMessage
from bot.metrics import Metrics
from bot.models.estimate import UndercountWatch, counter_for, is_llama3
from bot.models.health import ModelHealth, expiry_lines
from bot.models.resolve import ChannelModels, Source, is_listed, models_in_use
from bot.openrouter import ModelError, ModelInfo, OpenRouterClient, StreamEnd, TextDelta
from bot.store import Store, StoreError
from bot.tokens import TokenCounter
from bot.turns import Usage

__all__ = ["ModelChoice", "Models"]

log = logging.getLogger("glimpse.models")


@dataclass(frozen=True, slots=True)
class ModelChoice:
    """The model that answers a message, why, and the builder counted for it."""

    model: str  # what is asked (a gone model's replacement, if it was found gone)
    chosen: str  # what the channel is set to
    source: Source
    info: ModelInfo
    builder: ContextBuilder

    @property
    def reads_images(self) -> bool:
        return self.info.reads_images


class Models:
    """Per-message model choice, per-model builders, fallback from gone models, count checks."""

    def __init__(
        self,
        settings: Settings,
        *,
        store: Store,
        client: OpenRouterClient,
        counter: TokenCounter,
        metrics: Metrics,
    ) -> None:
        self._settings = settings
        self._client = client
        self._counter = counter
        self.channels = ChannelModels(settings, store=store, client=client)
        self.health = ModelHealth(settings, metrics)
        self._builders: dict[str, tuple[ModelInfo, ContextBuilder]] = {}
        self._watch = UndercountWatch()
        self._unusable: set[str] = set()  # models whose context leaves no room (logged once)

    @property
    def client(self) -> OpenRouterClient:
        return self._client

    async def choose(self, message: IncomingMessage | None = None) -> ModelChoice:
        """The model for this message's channel (a thread uses its parent's); None: the default."""
        source: Source = "default"
        model = self._settings.model
        if message is not None:
            key = message.key
            resolved = await self.channels.resolve(
                key.platform, key.workspace, message.parent_channel or key.channel
            )
            model, source = resolved.model, resolved.source
        asked = self.health.route(model)
        try:
            info, builder = await self.builder(asked)
        except ContextError as exc:
            if asked == self._settings.model:
                raise
            if asked not in self._unusable:
                self._unusable.add(asked)
                log.warning("model %s cannot be used (%s); the default model answers", asked, exc)
            asked = self._settings.model
            info, builder = await self.builder(asked)
        return ModelChoice(asked, model, source, info, builder)

    async def builder(self, model: str) -> tuple[ModelInfo, ContextBuilder]:
        """The model's listing and a ContextBuilder for its context (rebuilt if the listing changed)."""
        info = await self._client.model_info(model)
        cached = self._builders.get(model)
        if cached is not None and cached[0] is info:
            return cached
        budget = Budget(
            info.context_length,
            self._settings.max_output_tokens,
            self._settings.safety_margin_tokens,
        )
        if budget.prompt_tokens <= 0:
            raise ContextError(
                f"max_output_tokens ({budget.max_output_tokens}) plus safety_margin_tokens "
                f"({budget.safety_margin}) leave no room in {model}'s {budget.context_length}-token "
                "context"
            )
        builder = ContextBuilder(
            counter_for(model, self._counter),
            budget,
            images_per_request=self._settings.images_per_request,
            image_tokens=self._settings.image_prompt_tokens,
            model=model,
        )
        self._builders[model] = (info, builder)
        return info, builder

    async def stream(
        self, messages: list[dict[str, Any]], *, max_tokens: int, model: str | None = None
    ) -> AsyncIterator[TextDelta | StreamEnd]:
        """The client's stream; a model found gone before any text is replaced, and asked again."""
        asked = self.health.route(model or self._settings.model)
        while True:
            started = False
            try:
                async for event in self._client.stream(
                    messages, max_tokens=max_tokens, model=asked
                ):
                    started = True
                    yield event
                return
            except ModelError as error:
                replacement = None if started else self.health.replace(asked, error)
                if replacement is None:
                    raise
                asked = replacement

    def check_count(self, request: ModelRequest, usage: Usage | None) -> None:
        """Log when OpenRouter billed more prompt tokens than the request was counted at.

        Requests with images are left out: an image's count is a setting (image_prompt_tokens),
        and what a provider bills for it varies. So is an answer from another model than counted.
        """
        model = request.model or self._settings.model
        if usage is None or request.images or not usage.prompt_tokens:
            return
        if not usage.model.startswith(model.split(":", 1)[0]):
            return
        self._watch.check(
            model, request.prompt_tokens, usage.prompt_tokens, estimated=not is_llama3(model)
        )

    async def warn_at_start(self, today: dt.date | None = None) -> list[str]:
        """Log (and return) a warning for each model in use that is expired or expires soon."""
        today = today or dt.datetime.now(dt.UTC).date()
        catalogue = await self._client.catalogue()
        if catalogue is None:
            return []  # the client logged that GET /models could not be read
        try:
            stored = await self.channels.stored()
        except StoreError as exc:
            log.warning("could not read the channels' models from the store: %s", exc)
            stored = {}
        in_use = models_in_use(self._settings, stored)
        for model, where in in_use:
            if model != self._settings.model and not is_listed(model, catalogue):
                await self.channels.usable(model, where)  # logged once, here or at first use
        lines = expiry_lines(in_use, catalogue, today)
        for line in lines:
            log.warning("%s: choose another model (glimpse doctor lists them all)", line)
        return lines
