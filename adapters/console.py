"""The terminal adapter: `glimpse chat` talks to the core exactly as Discord and Slack do."""

from __future__ import annotations

import asyncio
import contextlib
import math
import os
import signal
import uuid
from collections.abc import Iterator

from adapters.console_files import Attachments, ConsoleError, load_attachments
from adapters.console_input import LineReader, cancelled_already, signal_handler
from adapters.console_logs import HeldLogs
from adapters.console_sink import ConsoleSink
from bot.config import Settings
from bot.conversations import Conversations, Status
from bot.messages import ConversationKey, IncomingMessage
from bot.store import store_location
from bot.turns import Usage

__all__ = [
    "Attachments",
    "ConsoleError",
    "ConsoleSink",
    "HeldLogs",
    "LineReader",
    "Terminal",
    "build_message",
    "conversation_key",
    "cost_line",
    "load_attachments",
]

HELP = "/attach PATH, /reset, /quit; Ctrl-C stops an answer, Ctrl-C or Ctrl-D at the prompt quits"
ATTACH_COMMANDS = ("/attach", "/image")  # /image: the older name, kept
PROMPT = "you> "
EXIT_OK = 0
EXIT_UNANSWERED = 1
EXIT_INTERRUPTED = 130  # the shell's code for a command stopped with Ctrl-C


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

    async def run(self, message: str | None, attachments: Attachments, *, forget: bool) -> int:
        """Start the core, then send `message` (`-m`) or hold the interactive conversation."""
        with self._session():
            if not await self._start(forget=forget):
                return EXIT_INTERRUPTED
            if message is None:
                return await self._loop()
            return await self._once(message, attachments)

    def startup_line(self) -> str:
        """Which model, store and conversation this session uses."""
        store = store_location(self._settings.resolved_store_url())
        return f"model {self._settings.model}, store: {store}, conversation '{self._key.thread}'"

    async def ask(self, text: str, attachments: Attachments) -> Status | None:
        """Send one message and print what comes back; None if Ctrl-C stopped the answer."""
        message = build_message(self._key, text, attachments)
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
        if await cancelled_already():
            return False
        await self._conversations.start()
        if forget:
            await self._conversations.reset(self._key)
        return not self._interrupted

    async def _once(self, text: str, attachments: Attachments) -> int:
        """`-m`: 0 if answered, 130 if Ctrl-C stopped it, 1 otherwise.

        A file only the core can judge (text, a PDF…) does not change this: if the core cannot
        read it, its sentence is on stderr and the code still says whether the message was answered.
        """
        if self._sink.on_terminal:
            self._sink.say(self.startup_line())
        status = await self.ask(text, attachments)
        if status is None:
            return EXIT_INTERRUPTED
        return EXIT_OK if status is Status.ANSWERED else EXIT_UNANSWERED

    async def _loop(self) -> int:
        """The interactive conversation; /quit, Ctrl-D or Ctrl-C at the prompt end it with 0."""
        self._sink.say(self.startup_line())
        self._sink.aside(HELP)
        pending = Attachments()
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

    async def _command(self, line: str, pending: Attachments) -> bool:
        """Act on one line; False to end the conversation."""
        if not line:
            return True
        if line in ("/quit", "/exit"):
            return False
        if line == "/reset":
            done = await self._conversations.reset(self._key)
            self._sink.say("conversation forgotten" if done else "could not reach memory")
        elif (command := line.split(maxsplit=1)[0]) in ATTACH_COMMANDS:
            self._attach(command, line.removeprefix(command).strip(), pending)
        elif line.startswith("/"):
            self._sink.say(f"unknown command. {HELP}")
        else:
            await self.ask(line, pending)
            pending.clear()
        return True

    def _attach(self, command: str, path: str, pending: Attachments) -> None:
        """`/attach PATH`: read and checked now, refused at once in one line if it cannot be used."""
        try:
            if not path:
                raise ConsoleError(f"{command} needs the path of a file")
            ref = pending.add(path, self._settings)
        except ConsoleError as exc:
            self._sink.say(str(exc))
            return
        self._sink.say(f"{ref.filename} will go with your next message")

    @contextlib.contextmanager
    def _session(self) -> Iterator[None]:
        """Ctrl-C handled by this session, Glimpse's log lines held during answers."""
        with contextlib.ExitStack() as stack:
            if self._logs is not None:
                stack.enter_context(self._logs.installed())
            stack.enter_context(signal_handler(signal.SIGINT, self._interrupt))
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


def build_message(key: ConversationKey, text: str, attachments: Attachments) -> IncomingMessage:
    """One message of this terminal's user: images the terminal recognised, the rest as files."""
    return IncomingMessage(
        key=key,
        message_id=uuid.uuid4().hex,
        author_id=_user(),
        author_name=_user(),
        text=text,
        images=tuple(attachments.images),
        files=tuple(attachments.files),
    )


def conversation_key(name: str) -> ConversationKey:
    """Terminal conversations are named; the default one is `default`."""
    return ConversationKey(platform="terminal", workspace="local", channel=_user(), thread=name)


def cost_line(usage: Usage) -> str:
    """`(1,234 + 56 tokens, $0.0012)`: prompt and completion tokens, and what the answer cost."""
    return f"({usage.prompt_tokens:,} + {usage.completion_tokens:,} tokens, {_dollars(usage.cost)})"


def _dollars(amount: float) -> str:
    """Two significant digits for fractions of a cent ($0.0012), cents otherwise ($1.50)."""
    if amount <= 0:
        return "$0"
    decimals = max(2, 1 - math.floor(math.log10(amount)))
    return f"${amount:.{decimals}f}"


def _user() -> str:
    return os.environ.get("USER") or os.environ.get("USERNAME") or "you"
