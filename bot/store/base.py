"""The memory store contract every backend (SQLite, Redis, in-memory) fulfils."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Protocol

from bot.messages import ConversationKey
from bot.turns import Summary, Turn

__all__ = ["Store", "StoreError"]


class StoreError(Exception):
    """The store cannot be reached or written right now (the core degrades, it does not crash)."""


class Store(Protocol):
    """Turns per conversation, the ids of events already handled, and channels' chosen models."""

    async def open(self) -> None:
        """Connect and create what is missing; idempotent."""

    async def close(self) -> None: ...

    async def ping(self) -> None:
        """Raise StoreError if the store cannot be used right now."""

    async def load(self, key: ConversationKey, limit: int) -> list[Turn]:
        """The newest `limit` turns of the conversation, oldest first."""

    async def append(self, key: ConversationKey, turns: Sequence[Turn]) -> None:
        """Add turns atomically: all of them are stored, or none."""

    async def reset(self, key: ConversationKey) -> None:
        """Forget the conversation: its turns and its summary."""

    async def load_summary(self, key: ConversationKey) -> Summary | None:
        """The conversation's summary of its oldest turns, or None."""

    async def save_summary(
        self, key: ConversationKey, summary: Summary, *, replacing: float | None
    ) -> bool:
        """Store `summary` only if the stored one still covers through `replacing` (None: none stored).

        A compare-and-set on `through`: two processes folding the same turns cannot both win,
        and a fold based on an old summary never overwrites a newer one. True if stored.
        """

    async def claim(self, event_id: str, ttl_seconds: float) -> bool:
        """True the first time an event id is seen (within the ttl), False for a duplicate."""

    async def prune(self, older_than: float) -> int:
        """Delete turns created before `older_than` (unix seconds), and summaries last updated
        before it; return how many turns."""

    async def forget_user(self, author_id: str) -> int:
        """Delete every turn `author_id` wrote, in all conversations, and the summaries of those
        conversations (they may repeat the user's words); return how many turns."""

    async def get_channel_model(self, platform: str, workspace: str, channel: str) -> str | None:
        """The model an admin set for the channel, or None."""

    async def set_channel_model(
        self, platform: str, workspace: str, channel: str, model: str | None
    ) -> None:
        """Set the channel's model for every process sharing the store; None clears it."""

    async def channel_models(self) -> dict[tuple[str, str, str], str]:
        """Every channel's model set by an admin, by (platform, workspace, channel)."""
