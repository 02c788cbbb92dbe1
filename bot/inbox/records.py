"""What the inbox keeps per claimed message: its state, who answers it, and how to answer it again."""

from __future__ import annotations

import enum
import math
from dataclasses import dataclass

from bot.messages import ConversationKey

__all__ = [
    "MAX_MESSAGE_CHARS",
    "OPEN_STATES",
    "InboxEntry",
    "InboxThread",
    "State",
    "event_id_of",
    "validate_entry",
]

MAX_MESSAGE_CHARS = 64_000  # a serialised message larger than this is kept without its body


class State(enum.StrEnum):
    """claimed → answering (a reply message exists) → answered or failed."""

    CLAIMED = "claimed"
    ANSWERING = "answering"
    ANSWERED = "answered"
    FAILED = "failed"


OPEN_STATES = frozenset({State.CLAIMED, State.ANSWERING})  # work that may need resuming


def event_id_of(platform: str, workspace: str, message_id: str) -> str:
    """The id dedup claims and the inbox records a message under (`platform:workspace:message_id`)."""
    return f"{platform}:{workspace}:{message_id}"


@dataclass(frozen=True, slots=True)
class InboxEntry:
    """One claimed message.

    `message` is the `IncomingMessage` as JSON without secrets (see `bot.inbox.codec`), or ""
    when it was too large to keep; `reply_id` is the platform's id of the answer's first message
    ("" before one was posted); `attempts` counts the times answering began; `instance` is the
    process answering it now; `claimed_at` and `updated_at` are unix seconds.
    """

    event_id: str
    key: ConversationKey
    message_id: str
    state: State
    message: str
    instance: str
    claimed_at: float
    updated_at: float
    attempts: int = 1
    reply_id: str = ""

    @property
    def is_open(self) -> bool:
        return self.state in OPEN_STATES


@dataclass(frozen=True, slots=True)
class InboxThread:
    """A conversation with messages claimed lately: the newest one's id and when it was claimed."""

    key: ConversationKey
    newest_message_id: str
    last_claimed_at: float


def validate_entry(entry: InboxEntry) -> None:
    """Raise ValueError if the entry cannot be stored faithfully by every backend."""
    if not isinstance(entry, InboxEntry) or not isinstance(entry.key, ConversationKey):
        raise ValueError("expected an InboxEntry with a ConversationKey")
    texts = (entry.event_id, entry.message_id, entry.message, entry.instance, entry.reply_id)
    if not all(isinstance(text, str) for text in texts) or not entry.event_id:
        raise ValueError("an inbox entry's ids and message are str, and its event_id is not empty")
    if len(entry.message) > MAX_MESSAGE_CHARS:
        raise ValueError(f"an inbox entry's message is at most {MAX_MESSAGE_CHARS} characters")
    if State(entry.state) is not entry.state:
        raise ValueError(f"unknown inbox state {entry.state!r}")
    if (
        isinstance(entry.attempts, bool)
        or not isinstance(entry.attempts, int)
        or entry.attempts < 0
    ):
        raise ValueError("an inbox entry's attempts is an int >= 0")
    for stamp in (entry.claimed_at, entry.updated_at):
        if (
            isinstance(stamp, bool)
            or not isinstance(stamp, int | float)
            or not math.isfinite(stamp)
        ):
            raise ValueError("an inbox entry's claimed_at and updated_at are finite unix seconds")
