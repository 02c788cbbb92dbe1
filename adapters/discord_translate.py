"""Discord objects to the core's contract: conversation keys, readable text, attachments, thread names."""

from __future__ import annotations

import mimetypes
import re
from collections import OrderedDict
from collections.abc import Callable, Iterable
from typing import NamedTuple
from urllib.parse import urlsplit

import discord

from bot.messages import ConversationKey, FileRef, ImageRef

__all__ = [
    "PLATFORM",
    "THREAD_NAME_LIMIT",
    "Attachments",
    "ReplyChains",
    "attachment_refs",
    "author_roles",
    "dm_key",
    "images_and_files",
    "mentions_bot",
    "readable_text",
    "root_key",
    "snapshot_text",
    "thread_name",
]

PLATFORM = "discord"
DM_WORKSPACE = "@me"
THREAD_NAME_LIMIT = 100
DEFAULT_THREAD_NAME = "Question for Glimpse"
REPLY_CHAINS_REMEMBERED = 10_000
_MENTION = re.compile(r"<(@[!&]?|#)(\d+)>")
_SPACES = re.compile(r"\s+")


def root_key(guild_id: int, root_id: int) -> ConversationKey:
    """A guild conversation is named by its root: a thread's id, or the message a reply chain starts from.

    A thread started from a message shares that message's id, so a mention's conversation
    keeps the same key whether Discord let the bot open a thread on it or not.
    """
    return ConversationKey(PLATFORM, str(guild_id), str(root_id), str(root_id))


def dm_key(channel_id: int) -> ConversationKey:
    """A DM channel is one conversation."""
    return ConversationKey(PLATFORM, DM_WORKSPACE, str(channel_id), str(channel_id))


def mentions_bot(message: discord.Message, bot_id: int) -> bool:
    """An explicit @mention of the bot user or of its managed role (what the client inserts for `@Glimpse`)."""
    if any(user.id == bot_id for user in message.mentions):
        return True
    return any(_is_bot_role(role, bot_id) for role in message.role_mentions)


def readable_text(message: discord.Message, bot_id: int) -> str:
    """The message text with the bot's mentions removed and other mentions shown as names."""
    users = {user.id: user.display_name for user in message.mentions}
    roles = {role.id: role for role in message.role_mentions}
    channels = {channel.id: getattr(channel, "name", None) for channel in message.channel_mentions}
    return _readable(message.content, bot_id, users.get, roles.get, channels.get)


def snapshot_text(
    snapshot: discord.MessageSnapshot, guild: discord.Guild | None, bot_id: int
) -> str:
    """A forwarded message's text, its mentions named from what this server knows (a snapshot has no author)."""

    def user_name(user_id: int) -> str | None:
        member = guild.get_member(user_id) if guild is not None else None
        return member.display_name if member is not None else None

    def role(role_id: int) -> discord.Role | None:
        return guild.get_role(role_id) if guild is not None else None

    def channel_name(channel_id: int) -> str | None:
        channel = guild.get_channel_or_thread(channel_id) if guild is not None else None
        return channel.name if channel is not None else None

    return _readable(snapshot.content, bot_id, user_name, role, channel_name)


def author_roles(author: discord.User | discord.Member) -> tuple[str, ...]:
    """Role ids for the access lists (not @everyone); users outside a guild have none."""
    roles = getattr(author, "roles", [])
    return tuple(str(role.id) for role in roles if not role.is_default())


class Attachments(NamedTuple):
    """What a message carries for the core besides its text."""

    images: tuple[ImageRef, ...] = ()
    files: tuple[FileRef, ...] = ()  # every other attachment: the core sniffs and reads it
    other_files: tuple[str, ...] = ()  # names of attachments without a URL to hand over


def attachment_refs(attachments: Iterable[discord.Attachment]) -> Attachments:
    """Attachments as the core fetches them: `image/*` by Discord's word as images, the rest as files.

    Size and content type are as Discord gives them (the core checks the size before it
    downloads and sniffs the bytes); an attachment without a URL is only named.
    """
    images: list[ImageRef] = []
    files: list[FileRef] = []
    others: list[str] = []
    for attachment in attachments:
        if not attachment.url:
            others.append(attachment.filename)
        elif _is_image(attachment.content_type):
            images.append(_ref(attachment, _media_type(attachment.content_type)))
        else:
            files.append(_ref(attachment, attachment.content_type or None))
    return Attachments(tuple(images), tuple(files), tuple(others))


def images_and_files(message: discord.Message | discord.MessageSnapshot) -> Attachments:
    """A message's attachments (see `attachment_refs`), plus image embeds' URLs as images."""
    found = attachment_refs(message.attachments)
    return found._replace(images=found.images + tuple(_embed_images(message.embeds)))


def thread_name(text: str, images: Iterable[ImageRef] = (), files: Iterable[FileRef] = ()) -> str:
    """A thread title from the question's first line (else the first attachment), at most 100 characters."""
    first_line = next((line for line in text.splitlines() if line.strip()), "")
    name = _SPACES.sub(" ", first_line).strip()
    if not name:
        first_image, first_file = next(iter(images), None), next(iter(files), None)
        if first_image is not None:
            name = f"Image: {first_image.filename}"
        elif first_file is not None:
            name = f"File: {first_file.filename}"
        else:
            name = DEFAULT_THREAD_NAME
    if len(name) > THREAD_NAME_LIMIT:
        name = name[: THREAD_NAME_LIMIT - 1].rstrip() + "…"
    return name


class ReplyChains:
    """Which conversation root each message of a reply chain belongs to (bounded, newest kept)."""

    def __init__(self, capacity: int = REPLY_CHAINS_REMEMBERED) -> None:
        self._roots: OrderedDict[int, int] = OrderedDict()
        self._capacity = capacity

    def remember(self, message_id: int, root_id: int) -> None:
        self._roots[message_id] = root_id
        self._roots.move_to_end(message_id)
        while len(self._roots) > self._capacity:
            self._roots.popitem(last=False)

    def root_of(self, message_id: int) -> int | None:
        return self._roots.get(message_id)


def _readable(
    content: str,
    bot_id: int,
    user_name: Callable[[int], str | None],
    role: Callable[[int], discord.Role | None],
    channel_name: Callable[[int], str | None],
) -> str:
    """`content` with the bot's mentions removed and other user, role and channel mentions as names."""

    def replace(match: re.Match[str]) -> str:
        kind, target = match.group(1), int(match.group(2))
        if kind in ("@", "@!"):
            return "" if target == bot_id else f"@{user_name(target) or 'someone'}"
        if kind == "@&":
            found = role(target)
            return "" if found is None or _is_bot_role(found, bot_id) else f"@{found.name}"
        return f"#{channel_name(target) or 'channel'}"

    return _MENTION.sub(replace, content).strip()


def _is_bot_role(role: discord.Role, bot_id: int) -> bool:
    return role.tags is not None and role.tags.bot_id == bot_id


def _media_type(content_type: str | None) -> str:
    """`image/png; charset=…` → `image/png`."""
    return (content_type or "").split(";")[0].strip().lower()


def _is_image(content_type: str | None) -> bool:
    return _media_type(content_type).startswith("image/")


def _ref(attachment: discord.Attachment, mime_type: str | None) -> ImageRef:
    return ImageRef(
        filename=attachment.filename, url=attachment.url, mime_type=mime_type, size=attachment.size
    )


def _embed_images(embeds: Iterable[discord.Embed]) -> list[ImageRef]:
    refs = []
    for embed in embeds:
        url = (embed.url or embed.thumbnail.url) if embed.type == "image" else embed.image.url
        if not url:
            continue
        filename = urlsplit(url).path.rsplit("/", 1)[-1] or "image"
        refs.append(
            ImageRef(filename=filename, url=url, mime_type=mimetypes.guess_type(filename)[0])
        )
    return refs
