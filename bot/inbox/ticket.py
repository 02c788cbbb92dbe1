"""One claimed message's entry while this process answers it: its progress written to the store."""

from __future__ import annotations

import asyncio
import logging

from bot.inbox.records import InboxEntry, State
from bot.store.base import Store, StoreError

__all__ = ["Ticket"]

log = logging.getLogger("glimpse.inbox")

STOP_WAIT_SECONDS = 1.0


class Ticket:
    """Moves one entry claimed → answering → answered/failed, and keeps it fresh while it is open.

    Store trouble is logged, never raised: the answer matters more than its record.
    """

    def __init__(self, store: Store, event_id: str, *, instance: str, heartbeat_seconds: float):
        self.event_id = event_id
        self._store = store
        self._instance = instance
        self._heartbeat_seconds = heartbeat_seconds
        self.state = State.CLAIMED
        self._reply_id = ""
        self._keeper: asyncio.Task[None] | None = None
        self._recording: asyncio.Task[bool] | None = None
        self._stopped = False

    def begin(self, entry: InboxEntry) -> None:
        """Record the entry and keep it fresh, in the background: the caller does not wait (its
        place in the conversation's queue is taken before anything awaits)."""
        self._recording = asyncio.create_task(self._record(entry), name="glimpse-inbox-record")
        self.keep_fresh()

    async def recorded(self) -> bool:
        """Whether this ticket's entry is ours (False: a duplicate delivery, or the store failed)."""
        return True if self._recording is None else await asyncio.shield(self._recording)

    def keep_fresh(self) -> None:
        """Touch the entry every heartbeat while it is open, so no one takes it for abandoned."""
        if self._keeper is None:
            self._keeper = asyncio.create_task(self._keep(), name="glimpse-inbox-heartbeat")

    async def settle(self, *, failed: bool = False) -> None:
        """The message is done with (answered, refused, a duplicate, or it failed): end its entry."""
        await self.stop()
        if await self.recorded():
            await (self.failed() if failed else self.answered())

    async def stop(self) -> None:
        """End the heartbeat; never waits long (a store call may not end at once when cancelled)."""
        self._stopped = True
        keeper, self._keeper = self._keeper, None
        if keeper is not None:
            keeper.cancel()
            await asyncio.wait({keeper}, timeout=STOP_WAIT_SECONDS)

    async def answering(self, reply_id: str) -> None:
        """The answer is on screen: note where, once."""
        if reply_id and reply_id != self._reply_id:
            await self._move(State.ANSWERING, reply_id)

    async def answered(self, reply_id: str = "") -> None:
        await self.stop()
        await self._move(State.ANSWERED, reply_id)

    async def failed(self, reply_id: str = "") -> None:
        await self.stop()
        await self._move(State.FAILED, reply_id)

    async def _move(self, state: State, reply_id: str) -> None:
        if self.state not in (State.CLAIMED, State.ANSWERING):
            return
        self.state = state
        self._reply_id = reply_id or self._reply_id
        await self._write(state, reply_id)

    async def _record(self, entry: InboxEntry) -> bool:
        try:
            return await self._store.inbox_record(entry)
        except StoreError as exc:
            log.warning("inbox: could not record %s: %s", self.event_id, exc)
            return False

    async def _keep(self) -> None:
        if not await self.recorded():
            return
        while not self._stopped:
            await asyncio.sleep(self._heartbeat_seconds)
            if not self._stopped:
                await self._write(self.state, "")

    async def _write(self, state: State, reply_id: str) -> None:
        try:
            kept = await self._store.inbox_update(
                self.event_id, instance=self._instance, state=state, reply_id=reply_id
            )
        except StoreError as exc:
            log.warning("inbox: could not note %s as %s: %s", self.event_id, state.value, exc)
            return
        if not kept:
            log.warning(
                "inbox: %s was taken over by another process (or finished) while answered here",
                self.event_id,
            )
