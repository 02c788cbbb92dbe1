"""The memory store contract every backend (SQLite, Redis, in-memory) fulfils."""

from __future__ import annotations

from collections.abc import Sequence
from typing import TYPE_CHECKING, Protocol

from bot.messages import ConversationKey
from bot.turns import Summary, Turn

if TYPE_CHECKING:  # bot.inbox's service uses this module: no import at run time
    from bot.inbox.records import InboxEntry, InboxThread, State

__all__ = ["Store", "StoreError"]


class StoreError(Exception):
    """The store cannot be reached or written right now (the core degrades, it does not crash)."""


class Store(Protocol):
    """Turns per conversation, the ids of events already handled, channels' chosen models, the inbox."""

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
        """Delete turns created before `older_than` (unix seconds), summaries last updated before
        it and inbox entries claimed before it; return how many turns."""

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

    # --- the inbox (bot/inbox): each claimed message's state, to resume unfinished answers ---

    async def inbox_record(self, entry: InboxEntry) -> bool:
        """Keep a newly claimed message; False (and nothing changes) if its event id is kept already."""

    async def inbox_get(self, event_id: str) -> InboxEntry | None:
        """The entry of an event id (`bot.inbox.event_id_of`), or None if it was never recorded."""

    async def inbox_update(
        self, event_id: str, *, instance: str, state: State, reply_id: str = ""
    ) -> bool:
        """Move an open entry that `instance` answers to `state`, noting its reply's id (unless "");
        updated_at becomes now. False if the entry is gone, finished, or another instance took it."""

    async def inbox_take(self, event_id: str, *, attempts: int, instance: str) -> bool:
        """Take an open entry over for another attempt if it still has `attempts`: of several callers
        exactly one wins; the entry is then claimed by `instance`, attempts + 1, updated now."""

    async def inbox_unfinished(
        self, *, updated_before: float, claimed_after: float, limit: int
    ) -> list[InboxEntry]:
        """Open entries last updated before `updated_before` and claimed after `claimed_after`,
        oldest claim first, at most `limit`."""

    async def inbox_threads(
        self, *, since: float, limit: int, platform: str | None = None
    ) -> list[InboxThread]:
        """Conversations with a message claimed at or after `since` (on `platform`, if given), most
        recent first, each with the id of its newest claimed message; at most `limit`."""

    async def inbox_prune(self, *, older_than: float, keep: int) -> int:
        """Delete entries claimed before `older_than` and all but the newest `keep`; how many went."""
