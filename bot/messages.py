"""The contract between an adapter and the core: what arrives, and where the reply goes."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Literal, Protocol, runtime_checkable

__all__ = [
    "ConversationKey",
    "FileRef",
    "ImageRef",
    "IncomingMessage",
    "QuotedMessage",
    "RatedSink",
    "ReplySink",
    "ShowsReply",
    "reply_id_of",
]


@dataclass(frozen=True, slots=True)
class ConversationKey:
    """Where a conversation lives: one thread (or DM, or terminal session) on one platform."""

    platform: str
    workspace: str
    channel: str
    thread: str

    def __str__(self) -> str:
        return f"{self.platform}:{self.workspace}:{self.channel}:{self.thread}"

    @classmethod
    def parse(cls, text: str) -> ConversationKey:
        """Read back the form `str()` writes (`platform:workspace:channel:thread`)."""
        parts = text.split(":", 3)
        if len(parts) != 4:
            raise ValueError(
                f"a conversation key has four parts platform:workspace:channel:thread, got {text!r}"
            )
        return cls(*parts)


@dataclass(frozen=True, slots=True)
class ImageRef:
    """An attachment the adapter found: where to get it and what the platform says it is.

    Exactly one of `url` (downloaded by the core, with `headers`) or `data`
    (bytes the adapter already holds, e.g. a local file in the terminal) is set.
    The core never trusts `mime_type` or the name's extension: it sniffs the bytes.
    `FileRef` is the same type, the name to use for attachments that are not images.
    """

    filename: str
    url: str | None = None
    data: bytes | None = None
    mime_type: str | None = None
    size: int | None = None
    headers: Mapping[str, str] = field(default_factory=dict, repr=False)

    def __post_init__(self) -> None:
        if (self.url is None) == (self.data is None):
            raise ValueError("an ImageRef needs exactly one of url or data")


FileRef = ImageRef


@dataclass(frozen=True, slots=True)
class QuotedMessage:
    """Another message the new one brings along: the one it replies to, or one it forwards.

    A reply's message becomes a turn of its own just before the new one, attributed to its
    author (`author_id` lets `forget --user` find it; "" if unknown). A forward is part of the
    forwarder's own turn, like an attachment (Discord does not say who wrote the original).
    `message_id` is the quoted message's id in the same form as `IncomingMessage.message_id`,
    so a message the conversation already holds is not brought in twice.
    """

    kind: Literal["reply", "forward"]
    text: str
    message_id: str = ""
    author_id: str = ""
    author_name: str = ""
    images: tuple[ImageRef, ...] = ()
    other_files: tuple[str, ...] = ()
    files: tuple[FileRef, ...] = ()  # attachments that are not images by the platform's word


@dataclass(frozen=True, slots=True)
class IncomingMessage:
    """One user message, platform-free: text with the bot mention stripped, plus images."""

    key: ConversationKey
    message_id: str
    author_id: str
    text: str
    author_name: str = ""
    images: tuple[ImageRef, ...] = ()
    # Other attachments (text, code, logs, PDFs…): the core sniffs each and reads what it can.
    files: tuple[FileRef, ...] = ()
    # Names of attachments the adapter saw but cannot hand over (no URL): for a short note.
    other_files: tuple[str, ...] = ()
    # Extra ids the access rules look at (e.g. Discord roles, the thread's parent channel).
    author_roles: tuple[str, ...] = ()
    parent_channel: str | None = None
    is_direct: bool = False
    # The conversation may have several people (a channel or thread, a group DM): each user turn
    # then reaches the model prefixed with its author's name. False for a DM and the terminal.
    shared: bool = False
    # Messages this one replies to or forwards, brought into the new turn (text and images).
    quoted: tuple[QuotedMessage, ...] = ()


@runtime_checkable
class ReplySink(Protocol):
    """Where the answer goes; the adapter hides the platform's edit-rate and length limits.

    The core calls `start` once, `update` with the whole text so far as it streams
    (as often as it likes: the sink throttles), then exactly one of `finish` (the
    final answer) or `fail` (an error sentence, after any partial answer that
    arrived). `notice` sends a short standalone line (a refusal, a warning) and may
    be called without `start`.
    """

    async def start(self) -> None: ...

    async def update(self, text: str) -> None: ...

    async def finish(self, text: str) -> None: ...

    async def fail(self, text: str) -> None: ...

    async def notice(self, text: str) -> None: ...


@runtime_checkable
class RatedSink(Protocol):
    """A ReplySink that shows rating buttons under a finished answer (Slack's feedback buttons).

    The core calls `answered_by` with the model that wrote the answer just before `finish`;
    a click comes back to the core through `bot.feedback.Feedback.rate`.
    """

    def answered_by(self, model: str) -> None: ...


@runtime_checkable
class ShowsReply(Protocol):
    """A sink that can say which platform message holds its answer, so it can be resumed after a crash.

    `reply_id` is "" until the answer's first message was posted; then the id the adapter needs to
    open a sink on that message again (Slack: its ts; Discord: `channel id/message id`).
    """

    @property
    def reply_id(self) -> str: ...


def reply_id_of(sink: ReplySink) -> str:
    """The sink's `reply_id`, or "" for a sink that cannot say (the terminal)."""
    return sink.reply_id if isinstance(sink, ShowsReply) else ""
