"""The terminal adapter: `glimpse chat` talks to the core exactly as Discord and Slack do."""

from __future__ import annotations

import asyncio
import codecs
import contextlib
import logging
import math
import mimetypes
import os
import signal
import sys
import uuid
from collections.abc import Callable, Iterator, Sequence
from pathlib import Path
from types import TracebackType
from typing import TextIO

from bot.config import Settings
from bot.conversations import Conversations, Status
from bot.images.errors import ImageRefused, display_name
from bot.images.prepare import decode_image
from bot.messages import ConversationKey, ImageRef, IncomingMessage
from bot.store import store_location
from bot.turns import Usage

__all__ = [
    "ConsoleError",
    "ConsoleSink",
    "HeldLogs",
    "LineReader",
    "Terminal",
    "conversation_key",
    "cost_line",
    "load_images",
    "local_image",
]

HELP = "/image PATH, /reset, /quit; Ctrl-C stops an answer, Ctrl-C or Ctrl-D at the prompt quits"
PROMPT = "you> "
THINKING = "thinking…"
ERASE_LINE = "\r\033[K"  # back to the line's start, clear it: the indicator leaves no trace
BYTES_PER_MIB = 1024 * 1024
READ_BYTES = 64 * 1024
EXIT_OK = 0
EXIT_UNANSWERED = 1
EXIT_INTERRUPTED = 130  # the shell's code for a command stopped with Ctrl-C


class ConsoleError(Exception):
    """A terminal-side refusal (a missing, oversized or unreadable image file); shown as is."""


class ConsoleSink:
    """Prints the answer to stdout as it streams; notices, errors and the indicator go to stderr."""

    def __init__(self, out: TextIO | None = None, err: TextIO | None = None) -> None:
        self._out = out or sys.stdout
        self._err = err or sys.stderr
        self._printed = ""
        self._thinking = False
        self.told = False  # the user was shown a notice or an error for the current message

    def begin(self) -> None:
        """A message went out: show "thinking…" on a terminal until something is printed."""
        self._printed = ""
        self.told = False
        if self.on_terminal:
            self._err.write(THINKING)
            self._err.flush()
            self._thinking = True

    async def start(self) -> None:
        self._printed = ""

    async def update(self, text: str) -> None:
        self._write_new(text)

    async def finish(self, text: str) -> None:
        self._write_new(text)
        self._out.write("\n")
        self._out.flush()

    async def fail(self, text: str) -> None:
        self._settle()
        if self._printed and text.startswith(self._printed):
            self._out.write("\n")
            self._out.flush()
            text = text[len(self._printed) :].strip()
        self.say(text)
        self.told = True

    async def notice(self, text: str) -> None:
        self.say(text)
        self.told = True

    def stopped(self) -> None:
        """Ctrl-C ended the answer: close its line and say what became of it."""
        self._settle()
        if self._printed:
            self._out.write("\n")
            self._out.flush()
            self.say("stopped; the answer so far is remembered, marked as cut off")
        else:
            self.say("stopped before the answer began")

    @property
    def on_terminal(self) -> bool:
        """Whether stderr is a terminal (a person watching), not a pipe or a file."""
        return self._err.isatty()

    def prompt(self, text: str) -> None:
        """Ask for the next line, on stdout as `input()` does."""
        self._out.write(text)
        self._out.flush()

    def end_prompt(self) -> None:
        """The input ended at the prompt (Ctrl-D, Ctrl-C): move off the prompt's line."""
        self._err.write("\n")
        self._err.flush()

    def say(self, text: str) -> None:
        """One line of Glimpse's own on stderr."""
        self._settle()
        self._err.write(f"glimpse: {text}\n")
        self._err.flush()

    def aside(self, text: str) -> None:
        """A line on stderr without the `glimpse:` prefix (the cost after an answer)."""
        self._settle()
        self._err.write(f"{text}\n")
        self._err.flush()

    def _write_new(self, text: str) -> None:
        self._settle()
        if text.startswith(self._printed):
            self._out.write(text[len(self._printed) :])
        else:  # the text changed under us: print it whole on a fresh line
            self._out.write("\n" + text)
        self._printed = text
        self._out.flush()

    def _settle(self) -> None:
        """Erase the "thinking…" indicator, if it is showing."""
        if self._thinking:
            self._err.write(ERASE_LINE)
            self._err.flush()
            self._thinking = False


MODEL_LOGGER = "glimpse.openrouter"


class HeldLogs(logging.Filter):
    """While an answer is under way Glimpse's log lines wait: dropped if the user was told, else shown.

    The terminal's user sees every refusal and error as one sentence; the log line about the same
    thing would only repeat it (and land in the middle of the streamed answer). Errors pass at once.
    """

    def __init__(self) -> None:
        super().__init__()
        self._held: list[logging.LogRecord] | None = None

    def filter(self, record: logging.LogRecord) -> bool:
        if self._held is None or record.levelno >= logging.ERROR:
            return True
        if not record.name.startswith("glimpse"):
            return True
        if not any(held is record for held in self._held):  # each handler asks about it
            self._held.append(record)
        return False

    def hold(self) -> None:
        """Start holding Glimpse's log lines below ERROR."""
        self._held = []

    def release(self, *, told: bool) -> None:
        """Stop holding; show what was held, less what the user's sentence already said.

        Once the user was told, INFO lines (refusals) and the model client's warnings go: the
        sentence names the same thing. Other warnings stay, since they carry a cause the sentence
        leaves out (the disk is full, the store is unreachable).
        """
        held, self._held = self._held or [], None
        for record in held:
            if told and (record.levelno < logging.WARNING or record.name == MODEL_LOGGER):
                continue
            logging.getLogger(record.name).handle(record)

    @contextlib.contextmanager
    def installed(self) -> Iterator[HeldLogs]:
        """On the root logger's handlers for the duration."""
        handlers = list(logging.getLogger().handlers)
        for handler in handlers:
            handler.addFilter(self)
        try:
            yield self
        finally:
            for handler in handlers:
                handler.removeFilter(self)


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


class Terminal:
    """One `glimpse chat`: messages go through the core; answers, costs and refusals are printed.

    Ctrl-C stops the answer under way, ends the conversation at the prompt, and during start-up
    ends the session once the core has started (a store half opened would be left behind); a
    second Ctrl-C during start-up stops at once.
    """

    def __init__(
        self,
        conversations: Conversations,
        key: ConversationKey,
        settings: Settings,
        *,
        show_cost: bool = True,
        quiet_logs: bool = True,
        sink: ConsoleSink | None = None,
    ) -> None:
        self._conversations = conversations
        self._key = key
        self._settings = settings
        self._show_cost = show_cost
        self._logs = HeldLogs() if quiet_logs else None
        self._sink = sink or ConsoleSink()
        self._answer: asyncio.Task[Status] | None = None
        self._lines: LineReader | None = None
        self._interrupted = False  # Ctrl-C came while no answer or prompt was waiting

    async def run(self, message: str | None, images: Sequence[ImageRef], *, forget: bool) -> int:
        """Start the core, then send `message` (`-m`) or hold the interactive conversation."""
        with self._session():
            if not await self._start(forget=forget):
                return EXIT_INTERRUPTED
            if message is None:
                return await self._loop()
            return await self._once(message, images)

    def startup_line(self) -> str:
        """Which model, store and conversation this session uses."""
        store = store_location(self._settings.resolved_store_url())
        return f"model {self._settings.model}, store: {store}, conversation '{self._key.thread}'"

    async def ask(self, text: str, images: Sequence[ImageRef]) -> Status | None:
        """Send one message and print what comes back; None if Ctrl-C stopped the answer."""
        message = IncomingMessage(
            key=self._key,
            message_id=uuid.uuid4().hex,
            author_id=_user(),
            author_name=_user(),
            text=text,
            images=tuple(images),
        )
        self._sink.begin()
        if self._logs is not None:
            self._logs.hold()
        try:
            return await self._answered(message)
        finally:
            if self._logs is not None:
                self._logs.release(told=self._sink.told)

    async def _start(self, *, forget: bool) -> bool:
        """Start the core (forgetting the conversation if asked); False if Ctrl-C came meanwhile."""
        if await _cancelled_already():
            return False
        await self._conversations.start()
        if forget:
            await self._conversations.reset(self._key)
        return not self._interrupted

    async def _once(self, text: str, images: Sequence[ImageRef]) -> int:
        """`-m`: 0 if answered, 130 if Ctrl-C stopped it, 1 otherwise."""
        if self._sink.on_terminal:
            self._sink.say(self.startup_line())
        status = await self.ask(text, images)
        if status is None:
            return EXIT_INTERRUPTED
        return EXIT_OK if status is Status.ANSWERED else EXIT_UNANSWERED

    async def _loop(self) -> int:
        """The interactive conversation; /quit, Ctrl-D or Ctrl-C at the prompt end it with 0."""
        self._sink.say(self.startup_line())
        self._sink.aside(HELP)
        pending: list[ImageRef] = []
        with LineReader() as lines:
            self._lines = lines
            try:
                while (line := await self._prompt(lines)) is not None:
                    if not await self._command(line.strip(), pending):
                        break
            finally:
                self._lines = None
        return EXIT_OK

    async def _answered(self, message: IncomingMessage) -> Status | None:
        self._answer = asyncio.create_task(self._handle(message))
        try:
            return await self._answer
        except asyncio.CancelledError:
            current = asyncio.current_task()
            if current is not None and current.cancelling():
                raise  # this session itself is being cancelled, not only the answer
            self._sink.stopped()
            return None
        finally:
            self._answer = None

    async def _handle(self, message: IncomingMessage) -> Status:
        outcome = await self._conversations.handle(message, self._sink)
        if outcome.status is Status.ANSWERED and outcome.usage is not None and self._show_cost:
            self._sink.aside(cost_line(outcome.usage))
        return outcome.status

    async def _prompt(self, lines: LineReader) -> str | None:
        if self._interrupted:
            return None
        self._sink.prompt(PROMPT)
        line = await lines.readline()
        if line is None:  # Ctrl-D or Ctrl-C: the cursor is still after the prompt
            self._sink.end_prompt()
        return line

    async def _command(self, line: str, pending: list[ImageRef]) -> bool:
        """Act on one line; False to end the conversation."""
        if not line:
            return True
        if line in ("/quit", "/exit"):
            return False
        if line == "/reset":
            done = await self._conversations.reset(self._key)
            self._sink.say("conversation forgotten" if done else "could not reach memory")
        elif line == "/image" or line.startswith("/image "):
            self._attach(line.removeprefix("/image").strip(), pending)
        elif line.startswith("/"):
            self._sink.say(f"unknown command. {HELP}")
        else:
            await self.ask(line, pending)
            pending.clear()
        return True

    def _attach(self, path: str, pending: list[ImageRef]) -> None:
        """`/image PATH`: checked now, refused at once in one line if it cannot be used."""
        try:
            if not path:
                raise ConsoleError("/image needs the path of an image file")
            _check_count(len(pending) + 1, self._settings)
            pending.append(local_image(path, self._settings))
        except ConsoleError as exc:
            self._sink.say(str(exc))
            return
        self._sink.say(f"{pending[-1].filename} will go with your next message")

    @contextlib.contextmanager
    def _session(self) -> Iterator[None]:
        """Ctrl-C handled by this session, Glimpse's log lines held during answers."""
        with contextlib.ExitStack() as stack:
            if self._logs is not None:
                stack.enter_context(self._logs.installed())
            stack.enter_context(_signal_handler(signal.SIGINT, self._interrupt))
            yield

    def _interrupt(self) -> None:
        """Ctrl-C: stop the answer under way, end the input at the prompt, or end the session."""
        if self._answer is not None and not self._answer.done():
            if not self._answer.cancelling():  # a second Ctrl-C lets the partial answer be saved
                self._answer.cancel()
        elif self._lines is not None:
            self._lines.close()
        elif self._interrupted:  # the second Ctrl-C during start-up: stop now
            raise KeyboardInterrupt
        else:
            self._interrupted = True


def conversation_key(name: str) -> ConversationKey:
    """Terminal conversations are named; the default one is `default`."""
    return ConversationKey(platform="terminal", workspace="local", channel=_user(), thread=name)


def load_images(paths: Sequence[str], settings: Settings) -> list[ImageRef]:
    """The `--image` files, each checked: any that cannot be used raises ConsoleError."""
    _check_count(len(paths), settings)
    return [local_image(path, settings) for path in paths]


def local_image(path: str, settings: Settings) -> ImageRef:
    """Read and check an image file: what the core would refuse is refused here, before sending."""
    file = Path(path).expanduser()
    data = _read_file(file, path, settings.image_max_bytes)
    name = display_name(file.name)
    try:
        decode_image(
            data, name, max_pixels=settings.image_max_pixels, max_side=settings.image_max_side
        ).close()
    except ImageRefused as refusal:
        raise ConsoleError(refusal.user_message) from None
    except Exception:  # a decoder failing in a way the checks do not foresee
        raise ConsoleError(f"{name} could not be read as an image.") from None
    mime, _ = mimetypes.guess_type(file.name)
    return ImageRef(filename=file.name, data=data, mime_type=mime, size=len(data))


def cost_line(usage: Usage) -> str:
    """`(1,234 + 56 tokens, $0.0012)`: prompt and completion tokens, and what the answer cost."""
    return f"({usage.prompt_tokens:,} + {usage.completion_tokens:,} tokens, {_dollars(usage.cost)})"


def _dollars(amount: float) -> str:
    """Two significant digits for fractions of a cent ($0.0012), cents otherwise ($1.50)."""
    if amount <= 0:
        return "$0"
    decimals = max(2, 1 - math.floor(math.log10(amount)))
    return f"${amount:.{decimals}f}"


def _mib(size: int) -> str:
    """Bytes in MiB, the unit of the image_max_bytes default: "20 MiB", "2.86 MiB"."""
    value = size / BYTES_PER_MIB
    text = f"{value:.2f}" if value >= 0.01 else f"{value:.2g}"
    return f"{text.rstrip('0').rstrip('.') if '.' in text else text} MiB"


def _read_file(file: Path, shown: str, max_bytes: int) -> bytes:
    """The file's bytes; refused before reading if it is not a regular file or over the limit."""
    try:
        if not file.exists():
            raise ConsoleError(f"cannot read {shown}: no such file")
        if not file.is_file():
            raise ConsoleError(f"{shown} is not a file")
        _check_size(file.name, file.stat().st_size, max_bytes)
        data = file.read_bytes()
    except OSError as exc:
        raise ConsoleError(f"cannot read {shown}: {exc.strerror or exc}") from None
    _check_size(file.name, len(data), max_bytes)
    return data


def _check_size(name: str, size: int, max_bytes: int) -> None:
    if size <= max_bytes:
        return
    limit = _mib(max_bytes)
    if _mib(size) == limit:
        raise ConsoleError(f"{name} is over the {limit} limit (image_max_bytes)")
    raise ConsoleError(f"{name} is {_mib(size)}; the limit is {limit} (image_max_bytes)")


async def _cancelled_already() -> bool:
    """Whether a Ctrl-C reached asyncio.run's own handler (a pending cancel) before ours was set."""
    try:
        await asyncio.sleep(0)
    except asyncio.CancelledError:
        task = asyncio.current_task()
        if task is not None:
            task.uncancel()
        return True
    return False


def _check_count(count: int, settings: Settings) -> None:
    limit = settings.images_per_message
    if count > limit:
        raise ConsoleError(
            f"{count} images; at most {limit} go with one message (images_per_message)"
        )


@contextlib.contextmanager
def _signal_handler(signum: int, callback: Callable[[], None]) -> Iterator[None]:
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


def _user() -> str:
    return os.environ.get("USER") or os.environ.get("USERNAME") or "you"
