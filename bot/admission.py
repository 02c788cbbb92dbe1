"""A bound on concurrent model calls: wait a little for a free slot, or tell the user the bot is busy."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

__all__ = ["BUSY_NOTICE", "Admission", "Busy"]

log = logging.getLogger("glimpse.admission")

BUSY_NOTICE = "I'm busy right now — please try again in a moment."


class Busy(Exception):
    """No model-call slot became free within `busy_after_seconds`."""


class Admission:
    """At most `max_concurrent` model calls at once; a caller waits up to `busy_after_seconds` for one.

    Waiters are served in arrival order (asyncio.Semaphore is FIFO), so the queue is bounded in
    time rather than growing without limit: whoever waited too long is turned away with `Busy`.
    ::

        admission = Admission(64, busy_after_seconds=20)
        async with admission.slot():
            ...  # stream the model's answer
    """

    def __init__(self, max_concurrent: int, *, busy_after_seconds: float) -> None:
        if max_concurrent < 1:
            raise ValueError("max_concurrent must be at least 1")
        self.max_concurrent = max_concurrent
        self.busy_after_seconds = busy_after_seconds
        self._slots = asyncio.Semaphore(max_concurrent)
        self.active = 0  # model calls running now
        self.peak = 0  # the most that ever ran at once
        self.waiting = 0  # callers queued for a slot now
        self.turned_away = 0  # callers that got Busy

    @asynccontextmanager
    async def slot(self) -> AsyncIterator[None]:
        """Hold one slot for the body; raise Busy if none frees up within `busy_after_seconds`."""
        await self._acquire()
        self.active += 1
        self.peak = max(self.peak, self.active)
        try:
            yield
        finally:
            self.active -= 1
            self._slots.release()

    async def _acquire(self) -> None:
        self.waiting += 1
        try:
            async with asyncio.timeout(self.busy_after_seconds):
                await self._slots.acquire()
        except TimeoutError:
            self.turned_away += 1
            log.warning(
                "busy: all %d model-call slots stayed taken for %g s (%d waiting)",
                self.max_concurrent,
                self.busy_after_seconds,
                self.waiting - 1,
            )
            raise Busy(f"no model-call slot free within {self.busy_after_seconds:g} s") from None
        finally:
            self.waiting -= 1
