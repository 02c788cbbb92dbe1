"""Catching up after downtime: missed messages in recent conversations answered, or one offline notice."""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Generic, Protocol, TypeVar

from bot.config import CatchUpSettings
from bot.inbox.records import InboxThread, event_id_of
from bot.messages import ConversationKey
from bot.store.base import Store, StoreError

__all__ = ["OFFLINE_NOTICE", "Backlog", "CatchUp", "CatchUpReport", "Missed"]

log = logging.getLogger("glimpse.catch_up")

OFFLINE_NOTICE = "I was offline when this was sent; ask again if you still need this."
CONVERSATIONS_AT_ONCE = 4  # conversations read and answered side by side (each in its own order)
# As long as the core's dedup remembers a message: an old message noticed once is never noticed again.
NOTICED_TTL_SECONDS = 24 * 3600

M = TypeVar("M")


@dataclass(frozen=True, slots=True)
class Missed(Generic[M]):
    """A message sent while Glimpse was away that it would have answered: the platform's own
    object, its id and when it was sent (unix seconds)."""

    item: M
    message_id: str
    sent_at: float


class Backlog(Protocol[M]):
    """What a platform's adapter offers the catch-up."""

    async def missed(
        self, thread: InboxThread, limit: int, *, sent_after: float | None = None
    ) -> Sequence[Missed[M]]:
        """The conversation's messages after `thread.newest_message_id` (or, given `sent_after`,
        sent after that unix time) that would have been answered live, oldest first, at most
        `limit`."""

    async def answer(self, item: M) -> None:
        """Hand the message to the path live messages take (dedup drops one answered already)."""

    async def notice(self, item: M, text: str) -> None:
        """Reply `text` to the message."""


@dataclass(slots=True)
class CatchUpReport:
    """What one catch-up did: conversations read, messages handed on to be answered, old ones."""

    checked: int = 0
    answered: int = 0
    too_old: int = 0
    noticed: int = 0
    failed: int = 0


class CatchUp:
    """Reads the conversations Glimpse answered in lately (the inbox knows them) for messages it
    missed; answers those younger than `answer_within_minutes` in order, and gives the older ones
    one offline notice per conversation (or nothing)."""

    def __init__(self, store: Store, settings: CatchUpSettings) -> None:
        self._store = store
        self._settings = settings

    @property
    def enabled(self) -> bool:
        return self._settings.enabled

    async def run(
        self,
        platform: str,
        backlog: Backlog[M],
        *,
        only: Callable[[ConversationKey], bool] | None = None,
        label: str = "",
        session_started: float | None = None,
    ) -> CatchUpReport:
        """Catch up the platform's recent conversations (those `only` accepts, if given); `label`
        names the part caught up (a shard) in the log.

        `session_started`: when the platform's new session began. A conversation with a message
        claimed since (delivered live before the catch-up came to it) no longer names the last
        message seen before the downtime: it is read from `answer_within_minutes` ago instead,
        dedup dropping what was answered already (older missed messages then get no notice).
        """
        report = CatchUpReport()
        if not self._settings.enabled:
            return report
        now = time.time()
        try:
            threads = await self._store.inbox_threads(
                since=now - self._settings.within_hours * 3600,
                limit=self._settings.max_threads,
                platform=platform,
            )
        except StoreError as exc:
            log.warning("catch-up: cannot read the recent conversations: %s", exc)
            return report
        if only is not None:
            threads = [thread for thread in threads if only(thread.key)]
        answer_after = now - self._settings.answer_within_minutes * 60
        room = asyncio.Semaphore(CONVERSATIONS_AT_ONCE)

        async def one(thread: InboxThread) -> None:
            live = session_started is not None and thread.last_claimed_at >= session_started
            async with room:
                await self._thread(
                    thread, backlog, answer_after, report, sent_after=answer_after if live else None
                )

        await asyncio.gather(*(one(thread) for thread in threads))
        log.info(
            "catch-up on %s%s: %d conversations checked, %d missed messages passed on to be "
            "answered (dedup drops any answered already), "
            "%d too old to answer (%d offline notices), %d conversations unreadable",
            platform,
            f" ({label})" if label else "",
            report.checked,
            report.answered,
            report.too_old,
            report.noticed,
            report.failed,
        )
        return report

    async def _thread(
        self,
        thread: InboxThread,
        backlog: Backlog[M],
        answer_after: float,
        report: CatchUpReport,
        *,
        sent_after: float | None,
    ) -> None:
        try:
            missed = await backlog.missed(
                thread, self._settings.max_messages, sent_after=sent_after
            )
            report.checked += 1
            old = [m for m in missed if m.sent_at < answer_after]
            if old:
                await self._notice(thread, old, backlog, report)
            for message in missed:
                if message.sent_at >= answer_after:
                    await backlog.answer(message.item)
                    report.answered += 1
        except Exception:  # one conversation's trouble never stops the others
            report.failed += 1
            log.exception("catch-up: could not catch up %s", thread.key)

    async def _notice(
        self,
        thread: InboxThread,
        old: Sequence[Missed[M]],
        backlog: Backlog[M],
        report: CatchUpReport,
    ) -> None:
        """Claim the old messages as the core's dedup does (none is answered, noticed twice, or
        answered by a late delivery); one notice under the newest newly claimed."""
        key = thread.key
        fresh: list[Missed[M]] = []
        for message in old:
            event_id = event_id_of(key.platform, key.workspace, message.message_id)
            if await self._store.claim(event_id, NOTICED_TTL_SECONDS):
                fresh.append(message)
        report.too_old += len(fresh)
        if fresh and self._settings.offline_notice:
            await backlog.notice(fresh[-1].item, OFFLINE_NOTICE)
            report.noticed += 1
        if fresh:
            log.info(
                "catch-up: %d messages in %s were sent more than %g minutes ago; %s",
                len(fresh),
                key,
                self._settings.answer_within_minutes,
                "noticed as too old" if self._settings.offline_notice else "left unanswered",
            )
