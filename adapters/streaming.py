"""A ReplySink base for chat platforms: post, edit at most once per interval, continue past the length limit."""

from __future__ import annotations

import asyncio
import logging
import time
from abc import ABC, abstractmethod
from typing import Any

from adapters.split import split_message

__all__ = ["StreamingSink"]

log = logging.getLogger("glimpse.adapters")


class StreamingSink(ABC):
    """Shows a streamed answer as one or more platform messages, edited in place as text arrives.

    Subclasses say how to post and edit one message; this class decides when, so a
    fast stream costs at most one edit per `interval_seconds` per sink (one answer),
    never a lock shared with other conversations.
    """

    def __init__(self, *, limit: int, interval_seconds: float) -> None:
        self._limit = limit
        self._interval = interval_seconds
        self._posted: list[tuple[Any, str]] = []  # (platform handle, text shown) per message
        self._latest = ""
        self._last_flush = 0.0
        self._pending: asyncio.Task[None] | None = None
        self._lock = asyncio.Lock()
        self._finishing = False  # `finish` (not `fail`) is showing the final text

    # --- what a platform provides ---

    @abstractmethod
    async def _post(self, text: str) -> Any:
        """Send a new message in the reply's place; return whatever `_edit` needs to change it."""

    @abstractmethod
    async def _edit(self, handle: Any, text: str) -> None:
        """Replace the text of a message this sink posted."""

    async def _on_start(self) -> None:
        """A 'working' signal while the model thinks (a reaction, a typing indicator)."""

    async def _on_end(self) -> None:
        """Take the 'working' signal away."""

    def _render_failure(self, text: str) -> str:
        return text

    def _handle_id(self, handle: Any) -> str:
        """The platform's id of a posted message, as `reply_id` gives it (and `reopen` takes it back)."""
        return str(handle)

    # --- resuming an interrupted answer ---

    @property
    def reply_id(self) -> str:
        """The id of the answer's first message; "" until it was posted."""
        return self._handle_id(self._posted[0][0]) if self._posted else ""

    def reopen(self, handle: Any) -> None:
        """Show the answer in a message posted earlier (by a process that died), editing it."""
        self._posted = [(handle, "")]

    def _marks_last(self) -> bool:
        """Whether a finished answer's last message is sent with `_post_last` / `_edit_last`."""
        return False

    async def _post_last(self, text: str) -> Any:
        """Post the last message of a finished answer (a subclass may add buttons to it)."""
        return await self._post(text)

    async def _edit_last(self, handle: Any, text: str) -> None:
        """Edit the last message of a finished answer; called even when its text is unchanged."""
        await self._edit(handle, text)

    # --- ReplySink ---

    async def start(self) -> None:
        await self._on_start()

    async def update(self, text: str) -> None:
        self._latest = text
        if self._pending is not None:
            return  # a flush is already scheduled; it will show the newest text
        wait = self._interval - (time.monotonic() - self._last_flush)
        if wait <= 0:
            await self._flush_quietly()
        else:
            self._pending = asyncio.create_task(self._flush_later(wait))

    async def finish(self, text: str) -> None:
        self._finishing = True
        await self._final(text)

    async def fail(self, text: str) -> None:
        await self._final(self._render_failure(text))

    @abstractmethod
    async def notice(self, text: str) -> None: ...

    # --- internals ---

    async def _final(self, text: str) -> None:
        if self._pending is not None:
            self._pending.cancel()
            self._pending = None
        try:
            await self._show(text)
        finally:
            await self._on_end()

    async def _flush_later(self, wait: float) -> None:
        await asyncio.sleep(wait)
        self._pending = None
        await self._flush_quietly()

    async def _flush_quietly(self) -> None:
        """Mid-stream edits are best effort: a failed one is retried by the next flush."""
        try:
            await self._show(self._latest)
        except Exception as exc:  # noqa: BLE001 - the platform's error types are the subclass's business
            log.warning("could not update a streaming reply: %s", exc)

    async def _show(self, text: str) -> None:
        if not text.strip():
            return
        async with self._lock:
            self._last_flush = time.monotonic()
            pieces = split_message(text, self._limit)
            last = len(pieces) - 1 if self._finishing and self._marks_last() else -1
            for index, piece in enumerate(pieces):
                if index < len(self._posted):
                    handle, shown = self._posted[index]
                    if index == last:
                        await self._edit_last(handle, piece)
                        self._posted[index] = (handle, piece)
                    elif shown != piece:
                        await self._edit(handle, piece)
                        self._posted[index] = (handle, piece)
                else:
                    post = self._post_last if index == last else self._post
                    self._posted.append((await post(piece), piece))
