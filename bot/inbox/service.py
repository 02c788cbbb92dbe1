"""The inbox service: record what is claimed, track it while it is answered, answer again what a crash left."""

from __future__ import annotations

import asyncio
import logging
import os
import secrets
import socket
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import asynccontextmanager

from bot.config import InboxSettings
from bot.inbox.codec import decode_message, encode_message
from bot.inbox.records import InboxEntry, State, event_id_of
from bot.inbox.sinks import ResumedSink, TrackedSink
from bot.inbox.ticket import Ticket
from bot.messages import IncomingMessage, ReplySink
from bot.store.base import Store, StoreError

__all__ = ["GIVE_UP_NOTICE", "Answerer", "Inbox", "Reopener"]

log = logging.getLogger("glimpse.inbox")

GIVE_UP_NOTICE = (
    "⚠️ I couldn't finish this answer: I was interrupted every time I tried. Please ask again."
)
BATCH = 50  # unfinished entries looked at per pass
HEARTBEAT_MAX_SECONDS = 5.0
MISSED_HEARTBEATS = 3  # an entry not touched for this many heartbeats has lost its process


# An adapter's way back to a message: given it and the id of its interrupted answer's message ("":
# none was posted), the message ready to answer (credentials added back) and a sink on that message.
Reopener = Callable[[IncomingMessage, str], Awaitable[tuple[IncomingMessage, ReplySink]]]


# Answers a taken-over message again, in conversation order (Conversations provides it); the last
# argument says the caller holds the conversation's lock already.
Answerer = Callable[[IncomingMessage, ReplySink, InboxEntry, bool], Awaitable[None]]


class Inbox:
    """Each claimed message of a platform that can resume (its adapter registered a Reopener) is
    recorded; its entry follows the answer; a pass every `check_interval_seconds` answers again the
    entries left open longer than `resume_after_seconds` (at most `max_attempts` times).

    `shared`: other processes use the store too (Redis). Otherwise every entry left open before
    this process started is abandoned, and is answered again at once.
    """

    def __init__(self, store: Store, settings: InboxSettings, *, shared: bool) -> None:
        self._store = store
        self._settings = settings
        self._shared = shared
        self.instance = f"{socket.gethostname()}:{os.getpid()}:{secrets.token_hex(3)}"
        self._started_at = time.time()
        self._reopeners: dict[str, Reopener] = {}
        self._answer: Answerer | None = None
        self._wake = asyncio.Event()
        self._loop: asyncio.Task[None] | None = None
        self._resuming: set[asyncio.Task[None]] = set()

    @property
    def heartbeat_seconds(self) -> float:
        """How often an open entry is touched: often enough that a conversation's next message
        can tell a dead process's entry soon after the conversation's lease is free."""
        return min(self._settings.resume_after_seconds / 4, HEARTBEAT_MAX_SECONDS)

    # --- life cycle ---

    def start(self, answer: Answerer) -> None:
        """Look for unfinished work whenever an adapter registers, then every check interval."""
        self._answer = answer
        if self._settings.enabled and self._loop is None:
            self._loop = asyncio.create_task(self._resume_forever(), name="glimpse-inbox")

    async def close(self) -> None:
        tasks = [t for t in (self._loop, *self._resuming) if t is not None]
        self._loop = None
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)

    def register(self, platform: str, reopen: Reopener) -> None:
        """The adapter of `platform` can answer a message again: record its messages from now on."""
        self._reopeners[platform] = reopen
        self._wake.set()

    # --- while answering ---

    @asynccontextmanager
    async def receiving(self, message: IncomingMessage) -> AsyncIterator[Ticket | None]:
        """Record the message (in the background, while it waits its turn) and end its entry when
        the body is done with it; None for a platform that cannot resume.

        Entering awaits nothing, so a conversation lock taken just after it keeps arrival order.
        """
        if not self._settings.enabled or message.key.platform not in self._reopeners:
            yield None
            return
        event_id = event_id_of(message.key.platform, message.key.workspace, message.message_id)
        ticket = self._ticket(event_id)
        now = time.time()
        ticket.begin(
            InboxEntry(
                event_id=event_id,
                key=message.key,
                message_id=message.message_id,
                state=State.CLAIMED,
                message=encode_message(message),
                instance=self.instance,
                claimed_at=now,
                updated_at=now,
            )
        )
        try:
            yield ticket
        except BaseException:
            await asyncio.shield(ticket.settle(failed=True))
            raise
        await ticket.settle()

    @asynccontextmanager
    async def tracking(
        self,
        sink: ReplySink,
        ticket: Ticket | None = None,
        *,
        resumed: InboxEntry | None = None,
    ) -> AsyncIterator[ReplySink]:
        """The sink to answer into: it notes the reply's id and the end in the message's entry
        (`ticket` from `receiving`, or the entry `resumed` after taking it over)."""
        if resumed is not None:
            ticket = self._ticket(resumed.event_id)
            ticket.keep_fresh()
        if ticket is None or not await ticket.recorded():
            yield sink  # not tracked here (a duplicate delivery, the store down)
            return
        tracked = TrackedSink(sink, ticket)
        try:
            yield tracked
        except BaseException:
            await asyncio.shield(ticket.failed(tracked.reply_id))
            raise
        finally:
            await ticket.stop()
        await ticket.answered(tracked.reply_id)  # refusals and notices too: nothing to resume

    def _ticket(self, event_id: str) -> Ticket:
        return Ticket(
            self._store, event_id, instance=self.instance, heartbeat_seconds=self.heartbeat_seconds
        )

    # --- resuming ---

    async def _resume_forever(self) -> None:
        await self._wake.wait()  # the first adapter is ready
        while True:
            self._wake.clear()
            try:
                await self.resume_unfinished()
                await self._prune()
            except StoreError as exc:
                log.warning("inbox: could not look for unfinished answers: %s", exc)
            try:
                async with asyncio.timeout(self._settings.check_interval_seconds):
                    await self._wake.wait()
            except TimeoutError:
                pass

    async def resume_earlier(self, message: IncomingMessage) -> None:
        """With the conversation's lock held, before `message` is answered: answer again first the
        conversation's messages whose process died (their heartbeat stopped), so order is kept."""
        if not self._settings.enabled or message.key.platform not in self._reopeners:
            return
        now = time.time()
        updated_before = now - MISSED_HEARTBEATS * self.heartbeat_seconds
        if not self._shared:
            updated_before = max(updated_before, self._started_at)
        own = event_id_of(message.key.platform, message.key.workspace, message.message_id)
        try:
            entries = await self._store.inbox_unfinished(
                updated_before=updated_before,
                claimed_after=now - self._settings.resume_within_seconds,
                limit=BATCH,
            )
            for entry in entries:
                if entry.key != message.key or entry.event_id == own:
                    continue
                if await self._store.inbox_take(
                    entry.event_id, attempts=entry.attempts, instance=self.instance
                ):
                    await self._resume(entry, locked=True)
        except StoreError as exc:
            log.warning("inbox: could not look for earlier unfinished answers: %s", exc)

    async def resume_unfinished(self) -> int:
        """Answer again (or give up on) open entries nobody has touched lately; how many taken."""
        now = time.time()
        settings = self._settings
        updated_before = now - settings.resume_after_seconds
        if not self._shared:  # this process is the store's only user: the rest is abandoned
            updated_before = max(updated_before, self._started_at)
        entries = await self._store.inbox_unfinished(
            updated_before=updated_before,
            claimed_after=now - settings.resume_within_seconds,
            limit=BATCH,
        )
        taken = 0
        for entry in entries:
            if entry.key.platform not in self._reopeners:
                continue  # another process's platform
            if not await self._store.inbox_take(
                entry.event_id, attempts=entry.attempts, instance=self.instance
            ):
                continue  # another process took it first
            taken += 1
            task = asyncio.create_task(self._resume(entry), name="glimpse-inbox-resume")
            self._resuming.add(task)
            task.add_done_callback(self._resuming.discard)
        return taken

    async def _resume(self, entry: InboxEntry, *, locked: bool = False) -> None:
        reopen = self._reopeners[entry.key.platform]
        message, readable = _message_of(entry)
        try:
            message, sink = await reopen(message, entry.reply_id)
            if entry.attempts >= self._settings.max_attempts or not readable:
                log.warning(
                    "inbox: giving up on %s in %s after %d interrupted attempts",
                    entry.event_id,
                    entry.key,
                    entry.attempts,
                )
                await sink.fail(GIVE_UP_NOTICE)
                await self._end(entry, State.FAILED)
                return
            log.info(
                "inbox: answering %s in %s again (attempt %d, its answer was %s)",
                entry.event_id,
                entry.key,
                entry.attempts + 1,
                f"in message {entry.reply_id}" if entry.reply_id else "not yet shown",
            )
            assert self._answer is not None
            await self._answer(message, ResumedSink(sink), entry, locked)
        except Exception:
            log.exception("inbox: could not answer %s again", entry.event_id)
            await self._end(entry, State.FAILED)

    async def _end(self, entry: InboxEntry, state: State) -> None:
        try:
            await self._store.inbox_update(entry.event_id, instance=self.instance, state=state)
        except StoreError as exc:
            log.warning("inbox: could not note %s as %s: %s", entry.event_id, state.value, exc)

    async def _prune(self) -> None:
        removed = await self._store.inbox_prune(
            older_than=time.time() - self._settings.keep_hours * 3600,
            keep=self._settings.max_entries,
        )
        if removed:
            log.info("inbox: pruned %d old entries", removed)


def _message_of(entry: InboxEntry) -> tuple[IncomingMessage, bool]:
    """The recorded message and True; only its place and False if it was not kept (too large)
    or cannot be read."""
    if entry.message:
        try:
            return decode_message(entry.message), True
        except ValueError as exc:
            log.warning("inbox: the message of %s cannot be read: %s", entry.event_id, exc)
    return IncomingMessage(key=entry.key, message_id=entry.message_id, author_id="", text=""), False
