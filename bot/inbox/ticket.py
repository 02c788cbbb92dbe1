"""One claimed message's entry while this process answers it: its progress written to the store."""

from __future__ import annotations

import asyncio
import contextlib
import logging

from bot.inbox.records import State
from bot.store.base import Store, StoreError

__all__ = ["Ticket"]

log = logging.getLogger("glimpse.inbox")


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

    def keep_fresh(self) -> None:
        """Touch the entry every heartbeat while it is open, so no one takes it for abandoned."""
        if self._keeper is None:
            self._keeper = asyncio.create_task(self._keep(), name="glimpse-inbox-heartbeat")

    async def stop(self) -> None:
        keeper, self._keeper = self._keeper, None
        if keeper is not None:
            keeper.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await keeper

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

    async def _keep(self) -> None:
        while True:
            await asyncio.sleep(self._heartbeat_seconds)
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
