"""The fake OpenRouter the benchmarks stream from: one pacer writes every plain stream's chunks on time."""

from __future__ import annotations

import asyncio
import heapq
import itertools
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Any

from aiohttp import web

from tests.fakes.openrouter import (
    PROCESSING_EVENT,
    Behaviour,
    FakeOpenRouter,
    content_event,
    split_reply,
)

__all__ = ["PacedOpenRouter", "Pacer"]

# Writes due within this much of each other go out in one wake-up of the pacer.
TICK_SECONDS = 0.001
_ID_PLACEHOLDER = "gen-" + "0" * 20  # the same length as a real generation id


def _framed(event: bytes) -> bytes:
    """One server-sent event as one chunk of a chunked HTTP/1.1 body."""
    return b"%x\r\n%b\r\n" % (len(event), event)


@dataclass(slots=True)
class _Stream:
    transport: asyncio.Transport
    frames: list[bytes]
    interval: float
    done: asyncio.Future[None]
    sent: int = 0

    def write_due(self, when: float, horizon: float) -> float:
        """Write, in one send, every frame due by `horizon` from the one due at `when`; return
        when the next is due. A pacer that fell behind catches up in fewer sends, as a server's
        socket buffer would coalesce them."""
        start = end = self.sent
        while True:
            end += 1
            when += self.interval
            if end == len(self.frames) or when > horizon:
                break
        self.transport.write(
            self.frames[start] if end == start + 1 else b"".join(self.frames[start:end])
        )
        self.sent = end
        return when


@dataclass
class Pacer:
    """Writes each stream's frames at its own times, all from one task woken once per tick.

    The fake's usual way, a coroutine that sleeps between `response.write` calls, costs a timer,
    a task step and aiohttp's writer per chunk: at 1,000 streams of 200 chunks in 2 s that is more
    than one core, so the fake fell behind its own pace. Here a chunk costs one heap step and one
    `transport.write`, and each stream's times come from its schedule, not from when the previous
    write happened, as a model's tokens would.
    """

    _due: list[tuple[float, int, _Stream]] = field(default_factory=list)
    _order: itertools.count[int] = field(default_factory=itertools.count)
    _wake: asyncio.Event = field(default_factory=asyncio.Event)
    _task: asyncio.Task[None] | None = None

    async def send(
        self, transport: asyncio.Transport, frames: list[bytes], first: float, interval: float
    ) -> None:
        """Write `frames[0]` after `first` seconds, then one frame every `interval` seconds."""
        loop = asyncio.get_running_loop()
        stream = _Stream(transport, frames, interval, loop.create_future())
        heapq.heappush(self._due, (loop.time() + first, next(self._order), stream))
        self._wake.set()
        if self._task is None or self._task.done():
            self._task = asyncio.create_task(self._run())
        try:
            await stream.done
        finally:
            stream.sent = len(frames)  # a cancelled handler's stream is dropped at its next turn

    @property
    def scheduled(self) -> int:
        """Streams with frames still to write."""
        return len(self._due)

    async def close(self) -> None:
        if self._task is not None:
            self._task.cancel()
            await asyncio.gather(self._task, return_exceptions=True)

    async def _run(self) -> None:
        loop = asyncio.get_running_loop()
        due = self._due
        while True:
            if not due:
                self._wake.clear()
                await self._wake.wait()
                continue
            horizon = loop.time() + TICK_SECONDS
            while due and due[0][0] <= horizon:
                when, order, stream = heapq.heappop(due)
                if stream.sent < len(stream.frames) and not stream.transport.is_closing():
                    when = stream.write_due(when, horizon)
                    if stream.sent < len(stream.frames):
                        heapq.heappush(due, (when, order, stream))
                        continue
                if not stream.done.done():
                    stream.done.set_result(None)
            if due:
                await asyncio.sleep(max(due[0][0] - loop.time(), TICK_SECONDS))


@dataclass
class PacedOpenRouter(FakeOpenRouter):
    """FakeOpenRouter whose plain streams (nothing scripted, not gzip) go through one Pacer.

    The bytes on the wire are the ones FakeOpenRouter writes, built once per reply and model
    with a placeholder id that each stream swaps for its own; one piece in the middle carries
    the stream's own number, so no two answers are the same text.
    """

    pacer: Pacer = field(default_factory=Pacer)
    _replies: Iterator[int] = field(default_factory=itertools.count)  # numbers each reply
    _templates: dict[tuple[str, str, int, int], list[bytes]] = field(default_factory=dict)

    async def _before_close(self) -> None:
        await self.pacer.close()
        await super()._before_close()

    async def _write_stream(
        self,
        request: web.Request,
        response: web.StreamResponse,
        body: dict[str, Any],
        model: str,
        text: str,
        behaviour: Behaviour | None,
        generation_id: str,
    ) -> web.StreamResponse:
        if behaviour is not None or self.gzip_streams:
            return await super()._write_stream(
                request, response, body, model, text, behaviour, generation_id
            )
        await response.prepare(request)
        await response.write(PROCESSING_EVENT)  # sends the headers too
        transport = request.transport
        if response.headers.get("Transfer-Encoding") != "chunked" or transport is None:
            raise RuntimeError("the paced fake writes chunked HTTP/1.1 bodies only")
        created = int(time.time())
        pieces = split_reply(text, self.chunks)
        frames = self._content_frames(created, model, text, pieces, generation_id)
        if pieces:  # real answers differ: a bot cannot count one answer's tokens for them all
            middle = len(pieces) // 2
            own = f"{pieces[middle]} r{next(self._replies)}"
            frames[middle] = _framed(content_event(generation_id, created, model, own))
        closing = self.closing_events(generation_id, created, model, body, len(pieces))
        end = b"".join(_framed(event) for event in closing)  # right after the last piece
        if frames:
            frames[-1] += end
        else:
            frames = [end]
        await self.pacer.send(
            transport, frames, self.first_token_latency_seconds, self.chunk_delay_seconds
        )
        if self.done_linger_seconds:
            await asyncio.sleep(self.done_linger_seconds)
        await response.write_eof()
        return response

    def _content_frames(
        self, created: int, model: str, text: str, pieces: list[str], generation_id: str
    ) -> list[bytes]:
        """The reply's content events, framed, built once per reply with a placeholder id."""
        key = (model, text, len(pieces), created)  # the pieces follow from the text and count
        template = self._templates.get(key)
        if template is None:
            template = [
                _framed(content_event(_ID_PLACEHOLDER, created, model, piece)) for piece in pieces
            ]
            self._templates = {key: template}  # one reply at a time: keep only the latest
        placeholder, own = _ID_PLACEHOLDER.encode(), generation_id.encode()
        return [frame.replace(placeholder, own) for frame in template]
