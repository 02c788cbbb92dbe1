"""Which model a channel uses: an admin's choice (store) > `channel_models` > the default model."""

from __future__ import annotations

import logging
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Literal

from bot.config import Settings
from bot.openrouter import ModelInfo, OpenRouterClient
from bot.store import Store, StoreError

__all__ = [
    "OVERRIDE_CACHE_SECONDS",
    "ChannelModels",
    "Resolved",
    "Source",
    "is_listed",
    "listing_of",
    "models_in_use",
]

log = logging.getLogger("glimpse.models")

OVERRIDE_CACHE_SECONDS = 30.0  # an admin's choice made in another process is seen within this

Source = Literal["admin", "config", "default"]


@dataclass(frozen=True, slots=True)
class Resolved:
    """A channel's model and where it was chosen."""

    model: str
    source: Source


def is_listed(model: str, catalogue: dict[str, ModelInfo]) -> bool:
    """Whether GET /models lists `model` (a ":variant" suffix such as ":nitro" counts as its base)."""
    return listing_of(model, catalogue) is not None


def listing_of(model: str, catalogue: dict[str, ModelInfo]) -> ModelInfo | None:
    """The GET /models entry of `model` (or of its base id without a ":variant"), if listed."""
    return catalogue.get(model) or catalogue.get(model.split(":", 1)[0])


def models_in_use(
    settings: Settings, stored: dict[tuple[str, str, str], str]
) -> list[tuple[str, str]]:
    """(model, where it is set) for the default model, channel_models and admins' choices."""
    found = [(settings.model, "the model (GLIMPSE_MODEL)")]
    found += [
        (model, f"channel {channel}'s model (channel_models)")
        for channel, model in settings.channel_models.items()
    ]
    found += [
        (model, f"{platform} channel {channel}'s model (set by an admin)")
        for (platform, _, channel), model in sorted(stored.items())
    ]
    return found


class ChannelModels:
    """Resolves a channel's model; the store's value is cached briefly, a local change at once."""

    def __init__(
        self,
        settings: Settings,
        *,
        store: Store,
        client: OpenRouterClient,
        cache_seconds: float = OVERRIDE_CACHE_SECONDS,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self._settings = settings
        self._store = store
        self._client = client
        self._cache_seconds = cache_seconds
        self._clock = clock
        self._cache: dict[tuple[str, str, str], tuple[float, str | None]] = {}
        self._unlisted_warned: set[str] = set()

    async def resolve(self, platform: str, workspace: str, channel: str) -> Resolved:
        """The channel's model (pass a thread's parent channel); an unlisted choice is passed over."""
        chosen = await self.override(platform, workspace, channel)
        if chosen and await self.usable(chosen, f"the model an admin set for channel {channel}"):
            return Resolved(chosen, "admin")
        configured = self._settings.channel_models.get(channel)
        if configured and await self.usable(configured, f"channel_models[{channel!r}]"):
            return Resolved(configured, "config")
        return Resolved(self._settings.model, "default")

    async def override(self, platform: str, workspace: str, channel: str) -> str | None:
        """The model an admin set for the channel (cached for a while); None if none or unreadable."""
        key = (platform, workspace, channel)
        cached = self._cache.get(key)
        if cached is not None and self._clock() - cached[0] < self._cache_seconds:
            return cached[1]
        try:
            model = await self._store.get_channel_model(platform, workspace, channel)
        except StoreError as exc:  # cached too: one warning per channel per cache period
            log.warning(
                "could not read channel %s's model (%s); using the configured one", channel, exc
            )
            model = None
        self._cache[key] = (self._clock(), model)
        return model

    async def set(self, platform: str, workspace: str, channel: str, model: str | None) -> None:
        """Store the channel's model (None clears it); raises StoreError. Seen here at once."""
        await self._store.set_channel_model(platform, workspace, channel, model)
        self._cache[(platform, workspace, channel)] = (self._clock(), model)

    async def stored(self) -> dict[tuple[str, str, str], str]:
        """Every channel's model set by an admin (from the store; raises StoreError)."""
        return await self._store.channel_models()

    async def usable(self, model: str, what: str) -> bool:
        """Listed by GET /models, or the listing cannot be read (then trusted); logs once if not."""
        catalogue = await self._client.catalogue()
        if catalogue is None or is_listed(model, catalogue):
            return True
        if model not in self._unlisted_warned:
            self._unlisted_warned.add(model)
            log.warning(
                "%s is %s, which OpenRouter does not list (GET /models); the channel uses the "
                "next model in line until it is changed",
                what,
                model,
            )
        return False
