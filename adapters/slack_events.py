"""Slack payloads (events, slash commands, files) translated into the core's IncomingMessage."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

from adapters.slack_format import from_slack
from bot.messages import ConversationKey, FileRef, ImageRef, IncomingMessage, QuotedMessage

__all__ = [
    "HANDLED_SUBTYPES",
    "PLATFORM",
    "conversation_key",
    "from_command",
    "from_event",
    "ignore_reason",
    "is_direct",
    "is_reply",
    "latest_uploads",
    "mentions",
    "message_id",
    "parent_author",
    "quotable",
    "quote_of",
    "thread_of",
]

PLATFORM = "slack"
# Plain messages, messages with files, and thread replies also sent to the channel.
HANDLED_SUBTYPES = frozenset({"", "file_share", "thread_broadcast"})
# What a thread's first message may be to come along with a question in the thread: another bot's
# post (an alert, a report) counts; a deleted message's tombstone, a join, a topic change do not.
QUOTABLE_SUBTYPES = HANDLED_SUBTYPES | {"bot_message"}

Event = Mapping[str, Any]


def conversation_key(team_id: str, channel: str, thread_ts: str) -> ConversationKey:
    """One conversation per thread: the thread's root ts (a top-level message starts its own thread)."""
    return ConversationKey(platform=PLATFORM, workspace=team_id, channel=channel, thread=thread_ts)


def message_id(channel: str, ts: str) -> str:
    """A message's identity across event types and retries: ts is unique within its channel."""
    return f"{channel}:{ts}"


def thread_of(event: Event) -> str:
    return str(event.get("thread_ts") or event["ts"])


def is_direct(event: Event) -> bool:
    """A 1:1 DM (not a group DM: app_mention events carry no channel_type, so the id says)."""
    return event.get("channel_type") == "im" or str(event.get("channel", "")).startswith("D")


def is_reply(event: Event) -> bool:
    """Written in a thread, below its first message."""
    return bool(event.get("thread_ts")) and event.get("thread_ts") != event.get("ts")


def mentions(event: Event, bot_user_id: str | None) -> bool:
    return bool(bot_user_id) and f"<@{bot_user_id}" in str(event.get("text") or "")


def ignore_reason(event: Event) -> str | None:
    """Why a message event is not a person talking (edit, deletion, join, bot); None if it is."""
    subtype = str(event.get("subtype") or "")
    if subtype not in HANDLED_SUBTYPES:
        return f"subtype {subtype}"
    if event.get("bot_id") or event.get("bot_profile"):
        return "a bot's message"
    if not event.get("user") or not event.get("ts") or not event.get("channel"):
        return "no user, ts or channel"
    if event.get("hidden"):
        return "hidden"
    return None


def from_event(
    event: Event,
    *,
    team_id: str,
    bot_user_id: str | None,
    bot_token: str,
    author_name: str = "",
    names: Mapping[str, str] | None = None,
    quoted: tuple[QuotedMessage, ...] = (),
) -> IncomingMessage:
    """A mention, thread follow-up or DM as the core sees it (`names`: people mentioned in it)."""
    channel, ts = str(event["channel"]), str(event["ts"])
    images, files, others = _files(event.get("files") or (), bot_token)
    return IncomingMessage(
        key=conversation_key(team_id, channel, thread_of(event)),
        message_id=message_id(channel, ts),
        author_id=str(event["user"]),
        author_name=author_name,
        text=from_slack(str(event.get("text") or ""), bot_user_id=bot_user_id, names=names),
        images=images,
        files=files,
        other_files=others,
        parent_channel=channel,
        is_direct=is_direct(event),
        shared=not is_direct(event),
        quoted=quoted,
    )


def quotable(parent: Event, event: Event, *, bot_user_id: str | None, bot_id: str | None) -> bool:
    """Whether a thread's first message comes along with `event`: not ours, not the event itself."""
    if not is_reply(event) or parent.get("ts") != event.get("thread_ts"):
        return False
    if str(parent.get("subtype") or "") not in QUOTABLE_SUBTYPES or parent.get("hidden"):
        return False
    ours = (bot_user_id and parent.get("user") == bot_user_id) or (
        bot_id and parent.get("bot_id") == bot_id
    )
    return not ours and bool(parent.get("text") or parent.get("files"))


def parent_author(parent: Event) -> tuple[str, str]:
    """(author id, name when the message says it): a person's name is looked up, a bot's is here."""
    if parent.get("user"):
        return str(parent["user"]), ""
    profile = parent.get("bot_profile") or {}
    name = str(profile.get("name") or parent.get("username") or "")
    return str(parent.get("bot_id") or ""), name


def quote_of(
    parent: Event,
    *,
    channel: str,
    author_name: str,
    bot_user_id: str | None,
    bot_token: str,
    names: Mapping[str, str] | None = None,
) -> QuotedMessage:
    """A thread's first message as the message a question in the thread replies to."""
    images, files, others = _files(parent.get("files") or (), bot_token)
    return QuotedMessage(
        kind="reply",
        text=from_slack(str(parent.get("text") or ""), bot_user_id=bot_user_id, names=names),
        message_id=message_id(channel, str(parent["ts"])),
        author_id=parent_author(parent)[0],
        author_name=author_name,
        images=images,
        files=files,
        other_files=others,
    )


def from_command(
    command: Mapping[str, Any],
    *,
    question_ts: str,
    text: str,
    files: Sequence[Mapping[str, Any]] = (),
    bot_token: str = "",
    author_name: str = "",
) -> IncomingMessage:
    """An `/ask` question, answered in the thread of the message the bot posted for it (`question_ts`).

    `files` are the asker's own recent uploads here: slash commands cannot carry files themselves.
    `author_name` is the asker's display name; without one, the command's (legacy) `user_name`.
    """
    channel = str(command["channel_id"])
    images, refs, others = _files(files, bot_token)
    direct = channel.startswith("D") or command.get("channel_name") == "directmessage"
    return IncomingMessage(
        key=conversation_key(str(command["team_id"]), channel, question_ts),
        message_id=message_id(channel, question_ts),
        author_id=str(command["user_id"]),
        author_name=author_name or str(command.get("user_name") or ""),
        text=text,
        images=images,
        files=refs,
        other_files=others,
        parent_channel=channel,
        is_direct=direct,
        shared=not direct,
    )


def latest_uploads(messages: Sequence[Mapping[str, Any]], user: str) -> list[Mapping[str, Any]]:
    """The files, of any kind, of `user`'s newest top-level message that has some (newest first).

    "/ask what's wrong in this log?" right after uploading error.log is about that log, as much
    as "/ask what is in this picture?" is about the photo; deleted files (tombstones) do not count.
    """
    for message in messages:
        if message.get("user") != user or ignore_reason({**message, "channel": "-"}) is not None:
            continue
        if message.get("thread_ts") not in (None, message.get("ts")):
            continue
        files = [f for f in message.get("files") or () if f.get("mode") != "tombstone"]
        if files:
            return files
    return []


def _files(
    files: Sequence[Mapping[str, Any]], bot_token: str
) -> tuple[tuple[ImageRef, ...], tuple[FileRef, ...], tuple[str, ...]]:
    """Images (`image/*` by Slack's word) and other files, fetched with the bot token; names of the rest.

    Slack's file host needs the token; the core sniffs the bytes of both kinds. A file without
    a URL (deleted, external) is only named.
    """
    images: list[ImageRef] = []
    refs: list[FileRef] = []
    others: list[str] = []
    for file in files:
        name = str(file.get("name") or file.get("title") or file.get("id") or "file")
        url = file.get("url_private_download") or file.get("url_private")
        if not url:
            others.append(name)
            continue
        mimetype = str(file.get("mimetype") or "")
        ref = ImageRef(
            filename=name,
            url=str(url),
            mime_type=mimetype or None,
            size=int(file["size"]) if file.get("size") is not None else None,
            headers={"Authorization": f"Bearer {bot_token}"},
        )
        if mimetype.startswith("image/"):
            images.append(ref)
        else:
            refs.append(ref)
    return tuple(images), tuple(refs), tuple(others)
