"""The admin command behind Discord's and Slack's /model: set, clear and show a channel's model."""

from __future__ import annotations

import datetime as dt
import logging

from bot.config import Settings
from bot.context import MIN_USER_TEXT_TOKENS, ContextError
from bot.memory import SPEAKERS_NOTE
from bot.models.health import expiry_problem
from bot.models.resolve import listing_of
from bot.models.service import Models
from bot.store import StoreError

__all__ = ["ModelCommands"]

log = logging.getLogger("glimpse.models")

MODELS_PAGE = "https://openrouter.ai/models?fmt=cards&input_modalities=image"
NOT_ADMIN = "Only Glimpse's admins can change the model of a channel."
CANNOT_CHECK = (
    "I can't read OpenRouter's list of models right now, so I left the model as it was. "
    "Please try again in a few minutes."
)
NOT_SAVED = "I couldn't save the change right now, so the model stays as it was. Please try again."
_SOURCES = {
    "admin": "set by an admin",
    "config": "from the bot's configuration",
    "default": "the bot's default",
}


class ModelCommands:
    """Sentences for the user, never exceptions: who may switch a channel's model, and to what.

    Allowed: models GET /models lists that take images (Glimpse is a vision bot; a text-only
    model would ignore every image), with room for a question in their context.
    """

    def __init__(self, settings: Settings, models: Models) -> None:
        self._settings = settings
        self._models = models

    async def set(
        self,
        platform: str,
        workspace: str,
        channel: str,
        model: str | None,
        *,
        user_id: str,
        is_manager: bool = False,
    ) -> str:
        """Set (or with None or "" clear) a channel's model; the sentence to show the user."""
        if not (is_manager or self._settings.is_admin(platform, user_id)):
            log.info("user %s may not set channel %s's model", user_id, channel)
            return NOT_ADMIN
        model = (model or "").strip()
        refusal = await self._refusal(model, channel) if model else None
        if refusal is not None:
            return refusal
        try:
            await self._models.channels.set(platform, workspace, channel, model or None)
        except (StoreError, ValueError) as exc:
            log.warning("could not store channel %s's model: %s", channel, exc)
            return NOT_SAVED
        log.info("channel %s's model set to %s by %s", channel, model or "(cleared)", user_id)
        if not model:
            resolved = await self._models.channels.resolve(platform, workspace, channel)
            return (
                f"This channel's model is back to `{resolved.model}` ({_SOURCES[resolved.source]})."
            )
        return await self._confirmation(model)

    async def current(self, platform: str, workspace: str, channel: str) -> str:
        """The id of the model that answers in the channel now."""
        resolved = await self._models.channels.resolve(platform, workspace, channel)
        return self._models.health.route(resolved.model)

    async def describe(self, platform: str, workspace: str, channel: str) -> str:
        """A sentence: the channel's model, where it was chosen, and its replacement if it is gone."""
        resolved = await self._models.channels.resolve(platform, workspace, channel)
        text = f"This channel uses `{resolved.model}` ({_SOURCES[resolved.source]})."
        answering = self._models.health.route(resolved.model)
        if answering != resolved.model:
            text += f" It is unavailable on OpenRouter, so `{answering}` answers for now."
        return text

    async def vision_models(self) -> list[str]:
        """Ids of the models a channel may be set to, sorted (empty if OpenRouter cannot be read)."""
        return await self._models.client.vision_models()

    async def _refusal(self, model: str, channel: str) -> str | None:
        catalogue = await self._models.client.catalogue()
        if catalogue is None:
            return CANNOT_CHECK
        if listing_of(model, catalogue) is None:
            return (
                f"OpenRouter has no model `{model}`. Pick one that reads images from {MODELS_PAGE}."
            )
        info = listing_of(model, catalogue)
        if info is None or "image" not in info.input_modalities:
            return f"`{model}` can't read images, so it can't be a channel's model here."
        try:
            _, builder = await self._models.builder(model)
        except ContextError:
            builder = None
        prompt = self._settings.system_prompt_for(channel) + SPEAKERS_NOTE
        if builder is None or builder.question_room(prompt) < MIN_USER_TEXT_TOKENS:
            return (
                f"`{model}`'s {info.context_length:,}-token context leaves no room for a question "
                "once the bot's reserved answer length is taken, so I left the model as it was."
            )
        return None

    async def _confirmation(self, model: str) -> str:
        info = await self._models.client.model_info(model)
        text = f"This channel now uses `{model}` ({info.context_length:,}-token context)."
        problem = expiry_problem(info, dt.datetime.now(dt.UTC).date())
        if problem is not None:
            text += f" Note: it {problem} on OpenRouter."
        return text
