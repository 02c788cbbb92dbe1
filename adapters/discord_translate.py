"""Discord objects to the core's contract: conversation keys, readable text, images, thread names."""

from __future__ import annotations

import mimetypes
import re
from collections import OrderedDict
from collections.abc import Callable, Iterable
from urllib.parse import urlsplit

import discord

from bot.messages import ConversationKey, ImageRef

__all__ = [
    "PLATFORM",
    "THREAD_NAME_LIMIT",
    "ReplyChains",
    "attachment_image",
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


def attachment_image(attachment: discord.Attachment) -> ImageRef | None:
    """An ImageRef for an `image/*` attachment (the core checks its declared size), else None."""
    mime = attachment.content_type or mimetypes.guess_type(attachment.filename)[0]
    if not mime or not mime.split(";")[0].strip().startswith("image/"):
        return None
    return ImageRef(
        filename=attachment.filename,
        url=attachment.url,
        mime_type=mime.split(";")[0].strip(),
        size=attachment.size,
    )


def images_and_files(
    message: discord.Message | discord.MessageSnapshot,
) -> tuple[tuple[ImageRef, ...], tuple[str, ...]]:
    """Image attachments and image embeds' URLs as ImageRefs; names of the other attachments."""
    images: list[ImageRef] = []
    others: list[str] = []
    for attachment in message.attachments:
        image = attachment_image(attachment)
        if image is None:
            others.append(attachment.filename)
        else:
            images.append(image)
    images.extend(_embed_images(message.embeds))
    return tuple(images), tuple(others)


def thread_name(text: str, images: Iterable[ImageRef] = ()) -> str:
    """A thread title from the question's first line, at most 100 characters."""
    first_line = next((line for line in text.splitlines() if line.strip()), "")
    name = _SPACES.sub(" ", first_line).strip()
    if not name:
        first_image = next(iter(images), None)
        name = f"Image: {first_image.filename}" if first_image else DEFAULT_THREAD_NAME
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
