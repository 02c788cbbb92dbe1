"""The terminal's input: stdin lines read by the event loop, and Ctrl-C (SIGINT) handled by it."""

from __future__ import annotations

import asyncio
import codecs
import contextlib
import os
import signal
import sys
from collections.abc import Callable, Iterator
from types import TracebackType
from typing import TextIO

__all__ = ["READ_BYTES", "LineReader", "cancelled_already", "signal_handler"]

READ_BYTES = 64 * 1024


class LineReader:
    """Lines from stdin, read by the event loop itself, so Ctrl-C can end a pending read at once.

    A regular file (`glimpse chat < script`) cannot be watched by the loop; it is read directly,
    which never blocks.
    """

    def __init__(self, stream: TextIO | None = None) -> None:
        self._stream = stream or sys.stdin
        self._fd = -1
        self._lines: asyncio.Queue[str | None] = asyncio.Queue()
        self._decoder = codecs.getincrementaldecoder(self._stream.encoding or "utf-8")("replace")
        self._partial = ""
        self._ended = False

    def __enter__(self) -> LineReader:
        try:
            fd = self._stream.fileno()
            asyncio.get_running_loop().add_reader(fd, self._on_readable)
        except (OSError, ValueError, NotImplementedError):  # a regular file, or no file at all
            return self
        self._fd = fd
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self._unwatch()

    async def readline(self) -> str | None:
        """The next line without its newline; None at the end of input or once `close` was called."""
        if self._ended:
            return None
        if self._fd < 0 and self._lines.empty():
            line = self._stream.readline()
            self._ended = not line
            return line.rstrip("\r\n") if line else None
        line = await self._lines.get()
        self._ended = self._ended or line is None
        return None if self._ended else line

    def close(self) -> None:
        """End the input now: lines typed ahead are dropped, a pending `readline` returns None."""
        self._ended = True
        self._unwatch()
        self._lines.put_nowait(None)

    def _on_readable(self) -> None:
        try:
            data = os.read(self._fd, READ_BYTES)
        except BlockingIOError:
            return
        except OSError:  # the terminal went away
            data = b""
        if not data:
            self._at_end()
            return
        self._partial += self._decoder.decode(data)
        *lines, self._partial = self._partial.split("\n")
        for line in lines:
            self._lines.put_nowait(line.removesuffix("\r"))

    def _at_end(self) -> None:
        """End of input (Ctrl-D on an empty line, a closed pipe): what was typed still counts."""
        rest = self._partial + self._decoder.decode(b"", final=True)
        if rest:
            self._lines.put_nowait(rest)
        self._lines.put_nowait(None)
        self._unwatch()

    def _unwatch(self) -> None:
        if self._fd >= 0:
            with contextlib.suppress(RuntimeError):  # the loop is already closed
                asyncio.get_running_loop().remove_reader(self._fd)
            self._fd = -1


@contextlib.contextmanager
def signal_handler(signum: int, callback: Callable[[], None]) -> Iterator[None]:
    """`callback` runs in the event loop on `signum`; the previous handler comes back afterwards."""
    loop = asyncio.get_running_loop()
    previous = signal.getsignal(signum)
    if previous is signal.SIG_IGN:  # started in the background (`cmd &`): the signal stays ignored
        yield
        return
    try:
        loop.add_signal_handler(signum, callback)
    except (NotImplementedError, RuntimeError, ValueError):  # no signals here (not the main thread)
        yield
        return
    try:
        yield
    finally:
        loop.remove_signal_handler(signum)
        if previous is not None:  # asyncio.run's own handler: Ctrl-C while closing still works
            signal.signal(signum, previous)


async def cancelled_already() -> bool:
    """Whether a Ctrl-C reached asyncio.run's own handler (a pending cancel) before ours was set."""
    try:
        await asyncio.sleep(0)
    except asyncio.CancelledError:
        task = asyncio.current_task()
        if task is not None:
            task.uncancel()
        return True
    return False
