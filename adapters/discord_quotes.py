"""What a Discord message brings along: the person's message it replies to, the messages it forwards."""

from __future__ import annotations

from collections import OrderedDict
from dataclasses import dataclass
from datetime import datetime, timedelta

import discord

from adapters.discord_translate import images_and_files, readable_text, snapshot_text
from bot.messages import QuotedMessage

__all__ = [
    "FORWARD_COMMENT_SECONDS",
    "RecentForwards",
    "forward_quotes",
    "is_forward",
    "is_reply",
    "reply_quote",
]

# Discord's client sends "forward with a comment" as two messages, the forward and then the
# comment, at once; the comment brings the forward along if it follows within this time.
FORWARD_COMMENT_SECONDS = 5.0
FORWARDS_REMEMBERED = 1_000  # channels whose latest message (from a person) was a forward


def is_forward(message: discord.Message) -> bool:
    """A forward: its `message_reference` is of type FORWARD and its content is in `message_snapshots`."""
    return (
        message.reference is not None
        and message.reference.type is discord.MessageReferenceType.forward
    )


def is_reply(message: discord.Message) -> bool:
    """A reply to another message (a DEFAULT reference with a message id; not a forward)."""
    ref = message.reference
    return (
        ref is not None
        and ref.type is not discord.MessageReferenceType.forward
        and ref.message_id is not None
    )


def forward_quotes(message: discord.Message, bot_id: int) -> tuple[QuotedMessage, ...]:
    """The messages a forward carries (Discord sends one snapshot today), without an author."""
    if not is_forward(message):
        return ()
    assert message.reference is not None
    original = str(message.reference.message_id or "")
    quotes = []
    for snapshot in message.message_snapshots:
        found = images_and_files(snapshot)
        text = snapshot_text(snapshot, message.guild, bot_id)
        if text or any(found):
            quotes.append(
                QuotedMessage(
                    kind="forward",
                    text=text,
                    message_id=original,
                    images=found.images,
                    files=found.files,
                    other_files=found.other_files,
                )
            )
    return tuple(quotes)


def reply_quote(replied: discord.Message, bot_id: int) -> QuotedMessage:
    """The message someone replied to, attributed to its author (what it forwarded included)."""
    images, files, others = images_and_files(replied)
    texts = [readable_text(replied, bot_id)]
    for forwarded in forward_quotes(replied, bot_id):
        texts.append(forwarded.text)
        images += forwarded.images
        files += forwarded.files
        others += forwarded.other_files
    return QuotedMessage(
        kind="reply",
        text="\n\n".join(text for text in texts if text),
        message_id=str(replied.id),
        author_id=str(replied.author.id),
        author_name=replied.author.display_name,
        images=images,
        files=files,
        other_files=others,
    )


@dataclass(frozen=True, slots=True)
class _Forward:
    message_id: int
    author_id: int
    sent: datetime
    quotes: tuple[QuotedMessage, ...]


class RecentForwards:
    """Each channel's latest message from a person, when it was a forward (bounded, newest kept).

    A comment sent with a forward arrives as the next message from the same person, moments later;
    `see` hands it the forward. Any other message in between means it is not that comment.
    """

    def __init__(
        self,
        capacity: int = FORWARDS_REMEMBERED,
        window_seconds: float = FORWARD_COMMENT_SECONDS,
    ) -> None:
        self._latest: OrderedDict[int, _Forward] = OrderedDict()
        self._capacity = capacity
        self._window = timedelta(seconds=window_seconds)

    def see(
        self, message: discord.Message, forwarded: tuple[QuotedMessage, ...]
    ) -> tuple[QuotedMessage, ...]:
        """Note `message` (with what it forwards); return the forward it is the comment of, if any."""
        channel_id = message.channel.id
        previous = self._latest.pop(channel_id, None)
        if forwarded:
            self._remember(channel_id, message, forwarded)
            return ()
        if previous is None or previous.author_id != message.author.id:
            return ()
        if (
            not previous.message_id < message.id
            or message.created_at - previous.sent > self._window
        ):
            return ()
        return previous.quotes

    def _remember(
        self, channel_id: int, message: discord.Message, forwarded: tuple[QuotedMessage, ...]
    ) -> None:
        self._latest[channel_id] = _Forward(
            message.id, message.author.id, message.created_at, forwarded
        )
        while len(self._latest) > self._capacity:
            self._latest.popitem(last=False)
