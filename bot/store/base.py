"""The memory store contract every backend (SQLite, Redis, in-memory) fulfils."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Protocol

from bot.messages import ConversationKey
from bot.turns import Turn

__all__ = ["Store", "StoreError"]


class StoreError(Exception):
    """The store cannot be reached or written right now (the core degrades, it does not crash)."""


class Store(Protocol):
    """Turns per conversation, plus the ids of events already handled."""

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
        """Forget the conversation."""

    async def claim(self, event_id: str, ttl_seconds: float) -> bool:
        """True the first time an event id is seen (within the ttl), False for a duplicate."""

    async def prune(self, older_than: float) -> int:
        """Delete turns created before `older_than` (unix seconds); return how many."""

    async def forget_user(self, author_id: str) -> int:
        """Delete every turn `author_id` wrote, in all conversations; return how many."""
