"""Sinks the inbox puts around an adapter's: one that reports progress to the store, one that marks a resumed answer."""

from __future__ import annotations

from bot.inbox.ticket import Ticket
from bot.messages import RatedSink, ReplySink, reply_id_of

__all__ = ["INTERRUPTED_NOTE", "ResumedSink", "TrackedSink"]

INTERRUPTED_NOTE = "_(I was interrupted while answering this; here is the whole answer again.)_"


class TrackedSink:
    """Passes everything on; notes the reply's id once it exists, and the end (answered or failed)."""

    def __init__(self, sink: ReplySink, ticket: Ticket) -> None:
        self._sink = sink
        self._ticket = ticket
        self.failed = False

    @property
    def reply_id(self) -> str:
        return reply_id_of(self._sink)

    async def start(self) -> None:
        await self._sink.start()

    async def update(self, text: str) -> None:
        await self._sink.update(text)
        await self._ticket.answering(self.reply_id)

    async def finish(self, text: str) -> None:
        await self._sink.finish(text)
        # Before the turns are stored: a crash after this point never shows the answer twice.
        await self._ticket.answered(self.reply_id)

    async def fail(self, text: str) -> None:
        self.failed = True
        await self._sink.fail(text)
        await self._ticket.failed(self.reply_id)

    async def notice(self, text: str) -> None:
        await self._sink.notice(text)

    def answered_by(self, model: str) -> None:
        """Rating buttons, where the sink inside shows them."""
        if isinstance(self._sink, RatedSink):
            self._sink.answered_by(model)


class ResumedSink:
    """An answer given again in the place of an interrupted one: shown under a note saying so."""

    def __init__(self, sink: ReplySink, note: str = INTERRUPTED_NOTE) -> None:
        self._sink = sink
        self._note = note

    @property
    def reply_id(self) -> str:
        return reply_id_of(self._sink)

    async def start(self) -> None:
        await self._sink.start()
        await self._sink.update(self._note)  # the half answer is replaced at once

    async def update(self, text: str) -> None:
        await self._sink.update(self._noted(text))

    async def finish(self, text: str) -> None:
        await self._sink.finish(self._noted(text))

    async def fail(self, text: str) -> None:
        await self._sink.fail(self._noted(text))

    async def notice(self, text: str) -> None:
        await self._sink.notice(text)

    def answered_by(self, model: str) -> None:
        """Rating buttons, where the sink inside shows them."""
        if isinstance(self._sink, RatedSink):
            self._sink.answered_by(model)

    def _noted(self, text: str) -> str:
        return f"{self._note}\n\n{text}"
