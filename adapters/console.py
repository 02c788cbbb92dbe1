"""The terminal adapter: `glimpse chat` talks to the core exactly as Discord and Slack do."""

from __future__ import annotations

import asyncio
import mimetypes
import os
import sys
import uuid
from pathlib import Path
from typing import TextIO

from bot.conversations import Conversations, Status
from bot.messages import ConversationKey, ImageRef, IncomingMessage

__all__ = [
    "ConsoleError",
    "ConsoleSink",
    "chat_once",
    "chat_loop",
    "conversation_key",
    "local_image",
]

HELP = (
    "Commands: /image PATH (attach to your next message), /reset (forget this conversation), /quit"
)


class ConsoleError(Exception):
    """A terminal-side problem (a missing image file); the message is shown as is."""


class ConsoleSink:
    """Prints the answer to stdout as it streams; notices and errors go to stderr."""

    def __init__(self, out: TextIO | None = None, err: TextIO | None = None) -> None:
        self._out = out or sys.stdout
        self._err = err or sys.stderr
        self._printed = ""

    async def start(self) -> None:
        self._printed = ""

    async def update(self, text: str) -> None:
        self._write_new(text)

    async def finish(self, text: str) -> None:
        self._write_new(text)
        self._out.write("\n")
        self._out.flush()

    async def fail(self, text: str) -> None:
        if self._printed and text.startswith(self._printed):
            self._out.write("\n")
            self._out.flush()
            text = text[len(self._printed) :].strip()
        self._err.write(f"glimpse: {text}\n")
        self._err.flush()

    async def notice(self, text: str) -> None:
        self._err.write(f"glimpse: {text}\n")
        self._err.flush()

    def _write_new(self, text: str) -> None:
        if text.startswith(self._printed):
            self._out.write(text[len(self._printed) :])
        else:  # the text changed under us: print it whole on a fresh line
            self._out.write("\n" + text)
        self._printed = text
        self._out.flush()


def conversation_key(name: str) -> ConversationKey:
    """Terminal conversations are named; the default one is `default`."""
    return ConversationKey(platform="terminal", workspace="local", channel=_user(), thread=name)


def local_image(path: str, *, max_bytes: int) -> ImageRef:
    """Read an image file for the core, refusing before reading if it is over the byte limit."""
    file = Path(path).expanduser()
    try:
        size = file.stat().st_size
        if not file.is_file():
            raise ConsoleError(f"{path} is not a file")
        if size > max_bytes:
            raise ConsoleError(
                f"{file.name} is {size / 1e6:.1f} MB; the limit is {max_bytes / 1e6:.1f} MB"
            )
        data = file.read_bytes()
    except OSError as exc:
        raise ConsoleError(f"cannot read {path}: {exc.strerror or exc}") from None
    mime, _ = mimetypes.guess_type(file.name)
    return ImageRef(filename=file.name, data=data, mime_type=mime, size=size)


async def chat_once(
    conversations: Conversations,
    key: ConversationKey,
    text: str,
    images: list[ImageRef],
    sink: ConsoleSink,
) -> bool:
    """Send one message; True if it was answered."""
    message = IncomingMessage(
        key=key,
        message_id=uuid.uuid4().hex,
        author_id=_user(),
        author_name=_user(),
        text=text,
        images=tuple(images),
    )
    outcome = await conversations.handle(message, sink)
    return outcome.status is Status.ANSWERED


async def chat_loop(conversations: Conversations, key: ConversationKey, *, max_bytes: int) -> int:
    """The interactive terminal conversation; returns the exit code."""
    sink = ConsoleSink()
    pending: list[ImageRef] = []
    print(f"Glimpse — conversation '{key.thread}'. {HELP}", file=sys.stderr)
    while True:
        try:
            line = await asyncio.to_thread(input, "you> ")
        except (EOFError, KeyboardInterrupt):
            print(file=sys.stderr)
            return 0
        line = line.strip()
        if not line:
            continue
        if line in ("/quit", "/exit"):
            return 0
        if line == "/reset":
            done = await conversations.reset(key)
            print(
                "glimpse: conversation forgotten" if done else "glimpse: could not reach memory",
                file=sys.stderr,
            )
            continue
        if line.startswith("/image"):
            try:
                pending.append(
                    local_image(line.removeprefix("/image").strip(), max_bytes=max_bytes)
                )
                print(
                    f"glimpse: {pending[-1].filename} will go with your next message",
                    file=sys.stderr,
                )
            except ConsoleError as exc:
                print(f"glimpse: {exc}", file=sys.stderr)
            continue
        if line.startswith("/"):
            print(f"glimpse: unknown command. {HELP}", file=sys.stderr)
            continue
        await chat_once(conversations, key, line, pending, sink)
        pending = []


def _user() -> str:
    return os.environ.get("USER") or os.environ.get("USERNAME") or "you"
