"""An in-process memory store in plain dicts, for tests and benchmarks (lost when the process ends)."""

from __future__ import annotations

import time
from collections.abc import Callable, Sequence
from dataclasses import replace

from bot.inbox.records import OPEN_STATES, InboxEntry, InboxThread, State, validate_entry
from bot.messages import ConversationKey
from bot.store.base import StoreError
from bot.store.codec import (
    validate_model_id,
    validate_replacing,
    validate_summary,
    validate_turn,
)
from bot.turns import Summary, Turn

__all__ = ["MemoryStore"]


class MemoryStore:
    """The Store contract in dicts; each method runs without awaiting, so it is atomic for asyncio.

    Closing keeps the data (like a server that is unreachable for a while); while
    closed, every operation raises StoreError.
    """

    def __init__(self, *, claim_sweep_seconds: float = 60.0) -> None:
        self._turns: dict[ConversationKey, list[Turn]] = {}
        self._summaries: dict[ConversationKey, Summary] = {}
        self._claims: dict[str, float] = {}  # event id -> time.monotonic() when the claim expires
        self._models: dict[tuple[str, str, str], str] = {}  # by (platform, workspace, channel)
        self._inbox: dict[str, InboxEntry] = {}  # by event id, in the order recorded
        self._claim_sweep_seconds = claim_sweep_seconds
        self._last_sweep = time.monotonic()
        self._open = False

    def __repr__(self) -> str:
        return f"MemoryStore({len(self._turns)} conversations)"

    async def open(self) -> None:
        self._open = True

    async def close(self) -> None:
        self._open = False

    async def ping(self) -> None:
        self._require_open()

    async def load(self, key: ConversationKey, limit: int) -> list[Turn]:
        self._require_open()
        if limit <= 0:
            return []
        return list(self._turns.get(key, ())[-limit:])

    async def append(self, key: ConversationKey, turns: Sequence[Turn]) -> None:
        self._require_open()
        turns = list(turns)
        for turn in turns:
            validate_turn(turn)
        if turns:
            self._turns.setdefault(key, []).extend(turns)

    async def reset(self, key: ConversationKey) -> None:
        self._require_open()
        self._turns.pop(key, None)
        self._summaries.pop(key, None)

    async def load_summary(self, key: ConversationKey) -> Summary | None:
        self._require_open()
        return self._summaries.get(key)

    async def save_summary(
        self, key: ConversationKey, summary: Summary, *, replacing: float | None
    ) -> bool:
        self._require_open()
        validate_summary(summary)
        validate_replacing(replacing)
        current = self._summaries.get(key)
        if (None if current is None else current.through) != replacing:
            return False
        self._summaries[key] = summary
        return True

    async def claim(self, event_id: str, ttl_seconds: float) -> bool:
        self._require_open()
        now = time.monotonic()
        self._sweep_claims(now)
        expires_at = self._claims.get(event_id)
        if expires_at is not None and expires_at > now:
            return False
        self._claims[event_id] = now + ttl_seconds
        return True

    async def prune(self, older_than: float) -> int:
        self._require_open()
        removed = self._remove_turns(lambda turn: turn.created_at < older_than)
        self._summaries = {
            key: summary
            for key, summary in self._summaries.items()
            if summary.updated_at >= older_than
        }
        self._sweep_claims(time.monotonic(), force=True)
        self._inbox = {
            event: entry for event, entry in self._inbox.items() if entry.claimed_at >= older_than
        }
        return removed

    async def forget_user(self, author_id: str) -> int:
        self._require_open()
        if not author_id:
            raise ValueError(
                "forget_user needs an author id (an empty one would match every bot turn)"
            )
        for key, turns in self._turns.items():
            if any(turn.author_id == author_id for turn in turns):
                self._summaries.pop(key, None)
        return self._remove_turns(lambda turn: turn.author_id == author_id)

    async def get_channel_model(self, platform: str, workspace: str, channel: str) -> str | None:
        self._require_open()
        return self._models.get((platform, workspace, channel))

    async def set_channel_model(
        self, platform: str, workspace: str, channel: str, model: str | None
    ) -> None:
        self._require_open()
        validate_model_id(model)
        if model is None:
            self._models.pop((platform, workspace, channel), None)
        else:
            self._models[(platform, workspace, channel)] = model

    async def channel_models(self) -> dict[tuple[str, str, str], str]:
        self._require_open()
        return dict(self._models)

    # --- the inbox ---

    async def inbox_record(self, entry: InboxEntry) -> bool:
        self._require_open()
        validate_entry(entry)
        if entry.event_id in self._inbox:
            return False
        self._inbox[entry.event_id] = entry
        return True

    async def inbox_get(self, event_id: str) -> InboxEntry | None:
        self._require_open()
        return self._inbox.get(event_id)

    async def inbox_update(
        self, event_id: str, *, instance: str, state: State, reply_id: str = ""
    ) -> bool:
        self._require_open()
        entry = self._inbox.get(event_id)
        if entry is None or not entry.is_open or entry.instance != instance:
            return False
        self._inbox[event_id] = replace(
            entry, state=State(state), updated_at=time.time(), reply_id=reply_id or entry.reply_id
        )
        return True

    async def inbox_take(self, event_id: str, *, attempts: int, instance: str) -> bool:
        self._require_open()
        entry = self._inbox.get(event_id)
        if entry is None or not entry.is_open or entry.attempts != attempts:
            return False
        self._inbox[event_id] = replace(
            entry,
            state=State.CLAIMED,
            attempts=attempts + 1,
            instance=instance,
            updated_at=time.time(),
        )
        return True

    async def inbox_unfinished(
        self, *, updated_before: float, claimed_after: float, limit: int
    ) -> list[InboxEntry]:
        self._require_open()
        found = [
            entry
            for entry in self._inbox.values()
            if entry.state in OPEN_STATES
            and entry.updated_at < updated_before
            and entry.claimed_at > claimed_after
        ]
        return sorted(found, key=lambda entry: entry.claimed_at)[: max(0, limit)]

    async def inbox_threads(
        self, *, since: float, limit: int, platform: str | None = None
    ) -> list[InboxThread]:
        self._require_open()
        newest: dict[ConversationKey, InboxEntry] = {}
        for entry in self._inbox.values():
            if entry.claimed_at < since or platform not in (None, entry.key.platform):
                continue
            known = newest.get(entry.key)
            if known is None or entry.claimed_at >= known.claimed_at:
                newest[entry.key] = entry
        ordered = sorted(newest.values(), key=lambda entry: entry.claimed_at, reverse=True)
        return [
            InboxThread(entry.key, entry.message_id, entry.claimed_at)
            for entry in ordered[: max(0, limit)]
        ]

    async def inbox_prune(self, *, older_than: float, keep: int) -> int:
        self._require_open()
        kept = sorted(
            (entry for entry in self._inbox.values() if entry.claimed_at >= older_than),
            key=lambda entry: entry.claimed_at,
        )
        kept = kept[len(kept) - max(0, keep) :] if keep > 0 else []
        removed = len(self._inbox) - len(kept)
        self._inbox = {entry.event_id: entry for entry in kept}
        return removed

    def _require_open(self) -> None:
        if not self._open:
            raise StoreError("the in-memory store is closed")

    def _remove_turns(self, doomed: Callable[[Turn], bool]) -> int:
        removed = 0
        for key, turns in list(self._turns.items()):
            kept = [turn for turn in turns if not doomed(turn)]
            removed += len(turns) - len(kept)
            if kept:
                self._turns[key] = kept
            else:
                del self._turns[key]
        return removed

    def _sweep_claims(self, now: float, *, force: bool = False) -> None:
        if not force and now - self._last_sweep < self._claim_sweep_seconds:
            return
        self._last_sweep = now
        self._claims = {event: expiry for event, expiry in self._claims.items() if expiry > now}
