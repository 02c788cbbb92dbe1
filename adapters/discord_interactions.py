"""Answering an interaction (`/ask`, the message menus): in a thread where the bot can post, else in the interaction itself.

A user can install Glimpse to their account and use it in servers the bot never joined and in DMs
between people. There the bot cannot post, read history or open threads: the answer is the
interaction's own response (deferred, then edited) with follow-ups for long answers, and the
conversation is the channel's, like any other.
"""

from __future__ import annotations

import logging
from collections.abc import Awaitable, Callable
from functools import partial
from typing import Any

import discord

from adapters.discord_sink import (
    DISCORD_MESSAGE_LIMIT,
    EDIT_INTERVAL_SECONDS,
    NO_MENTIONS,
    DiscordSink,
    TargetFactory,
    in_channel,
    reply_to,
    thread_on,
)
from adapters.discord_translate import (
    PLATFORM,
    Attachments,
    ReplyChains,
    author_roles,
    dm_key,
    root_key,
    thread_name,
)
from adapters.streaming import StreamingSink
from bot.config import Settings
from bot.conversations import Conversations
from bot.messages import ConversationKey, IncomingMessage, QuotedMessage

__all__ = [
    "DMS_OFF",
    "InteractionAnswers",
    "InteractionSink",
    "bot_can_post",
    "place_key",
    "question_header",
]

log = logging.getLogger("glimpse.discord")

Quotes = tuple[QuotedMessage, ...]

QUESTION_PREVIEW_CHARS = 1800  # of the question quoted above an answer in a thread
INLINE_PREVIEW_CHARS = 300  # of the question quoted at the top of an answer given in place
ANSWER_MIN_CHARS = 1000  # what the first message of an in-place answer keeps for the answer
NO_ATTACHMENTS = Attachments()
# Discord's cap on follow-ups to an interaction only a user install authorized (the app is not in
# the server, or a DM between people): an answer longer than the response and these is cut.
MAX_FOLLOWUPS = 5
CUT_MARK = "\n… (cut here: Discord allows no more messages for this answer)"
DMS_OFF = "I don't answer direct messages here. Ask me in a server channel instead."


def bot_can_post(interaction: discord.Interaction) -> bool:
    """Whether the bot itself can post where the interaction came from.

    Yes in a server it is a member of (it has the guild: GUILD_CREATE came) where the channel
    lets it send messages, and in its own DM; no in a server where only the user installed
    Glimpse, nor in a DM or group DM between people.
    """
    if interaction.guild_id is None:
        return not interaction.context.private_channel
    if interaction.client.get_guild(interaction.guild_id) is None:
        return False
    allowed = interaction.app_permissions  # the bot's, in this channel, overrides applied
    in_thread = isinstance(interaction.channel, discord.Thread)
    return allowed.send_messages_in_threads if in_thread else allowed.send_messages


def place_key(interaction: discord.Interaction) -> ConversationKey:
    """The conversation of a place the bot cannot post in: the channel (or thread) it was used in."""
    channel_id = interaction.channel_id or 0
    if interaction.guild_id is None:
        return dm_key(channel_id)
    return ConversationKey(PLATFORM, str(interaction.guild_id), str(channel_id), str(channel_id))


def question_header(
    question: str, about: str | None = None, limit: int = QUESTION_PREVIEW_CHARS
) -> str:
    """The question, quoted (cut to `limit`), and a line saying what it is about, for the top of an answer."""
    text = question if len(question) <= limit else question[: limit - 1] + "…"
    quoted = "\n".join(f"> {line}" for line in text.splitlines() or [""])
    return quoted + (f"\n{about}" if about else "")


class InteractionAnswers:
    """Acknowledge an interaction at once, then answer it through the core, where the bot can reach."""

    def __init__(
        self, conversations: Conversations, settings: Settings, chains: ReplyChains
    ) -> None:
        self._conversations = conversations
        self._settings = settings
        self._chains = chains

    async def answer(
        self,
        interaction: discord.Interaction,
        question: str,
        *,
        about: str | None = None,
        attachments: Attachments = NO_ATTACHMENTS,
        quoted: Quotes = (),
    ) -> None:
        """Defer, then answer `question` (with the attachments and quoted messages it brings).

        `about` is a line under the question saying what it is about (a file's name, a message's link).
        """
        if interaction.guild_id is None and not self._settings.discord.allow_dms:
            await interaction.response.send_message(DMS_OFF, ephemeral=True)
            return
        try:
            await interaction.response.defer(thinking=True)  # Discord's 3 s deadline
        except discord.HTTPException as exc:  # already acknowledged (a replay) or expired
            log.info("cannot acknowledge interaction %s: %s", interaction.id, exc)
            return
        if bot_can_post(interaction):
            await self._in_a_thread(interaction, question, about, attachments, quoted)
        else:
            await self._in_place(interaction, question, about, attachments, quoted)

    async def _in_a_thread(
        self,
        interaction: discord.Interaction,
        question: str,
        about: str | None,
        attachments: Attachments,
        quoted: Quotes,
    ) -> None:
        """Show the question, then answer in a new thread on it (or in the thread or DM asked in)."""
        original = await interaction.edit_original_response(
            content=question_header(question, about), allowed_mentions=NO_MENTIONS
        )
        images = [*attachments.images, *(ref for quote in quoted for ref in quote.images)]
        files = [*attachments.files, *(ref for quote in quoted for ref in quote.files)]
        key, parent, target = _thread_place(
            interaction, original, thread_name(question, images, files)
        )
        incoming = _incoming(interaction, key, parent, question, attachments, quoted)
        on_posted = None
        if interaction.guild_id is not None:  # replies to any of these continue the conversation
            root = int(key.thread)
            self._chains.remember(original.id, root)
            on_posted = partial(self._chains.remember, root_id=root)
        sink = DiscordSink(target, quiet=_ephemeral(interaction), on_posted=on_posted)
        try:
            await self._conversations.handle(incoming, sink)
        finally:
            await sink.close()
        if not sink.started:  # refused, rate-limited, a duplicate...: no question left hanging
            await _quietly(interaction.delete_original_response())

    async def _in_place(
        self,
        interaction: discord.Interaction,
        question: str,
        about: str | None,
        attachments: Attachments,
        quoted: Quotes,
    ) -> None:
        """Answer in the interaction's own response: the channel's conversation, no thread."""
        channel = interaction.channel
        parent = getattr(channel, "parent_id", None) or interaction.channel_id
        incoming = _incoming(
            interaction,
            place_key(interaction),
            str(parent) if interaction.guild_id is not None else None,
            question,
            attachments,
            quoted,
        )
        header = question_header(question, about, INLINE_PREVIEW_CHARS)
        sink = InteractionSink(interaction, header)
        try:
            await self._conversations.handle(incoming, sink)
        finally:
            await sink.close()


class InteractionSink(StreamingSink):
    """An answer in an interaction's deferred response (under the question), long ones continued in follow-ups.

    Notices before the answer go at its top; when no answer follows (a refusal, a duplicate) the
    deferred response is deleted and the notices reach only the person who asked. Past Discord's
    cap on follow-ups the rest of the answer is left out, and the last message says so.
    """

    def __init__(self, interaction: discord.Interaction, header: str) -> None:
        super().__init__(limit=DISCORD_MESSAGE_LIMIT, interval_seconds=EDIT_INTERVAL_SECONDS)
        self._interaction = interaction
        self._header = header
        self._held: list[str] = []
        self._started = False
        self._followups = 0
        self._cut_after: Any = _DROPPED  # the handle of the message that ends with CUT_MARK

    @property
    def started(self) -> bool:
        return self._started

    # --- StreamingSink hooks ---

    async def _on_start(self) -> None:
        self._started = True
        top = "\n\n".join([self._header, *self._held])
        self._held = []
        self._header = top[: DISCORD_MESSAGE_LIMIT - ANSWER_MIN_CHARS - 1]
        # Every piece leaves room for the header above the first and the cut mark under the last.
        self._limit = DISCORD_MESSAGE_LIMIT - max(len(self._header) + 1, len(CUT_MARK))

    async def _post(self, text: str) -> Any:
        if not self._posted:  # the first piece: the deferred response itself
            await self._edit_original(text)
            return None
        if self._followups >= MAX_FOLLOWUPS:
            await self._mark_cut()
            return _DROPPED
        self._followups += 1
        return await self._interaction.followup.send(text, wait=True, allowed_mentions=NO_MENTIONS)

    async def _edit(self, handle: Any, text: str) -> None:
        if handle is _DROPPED:
            return
        shown = text + (CUT_MARK if handle is self._cut_after else "")
        if handle is None:
            await self._edit_original(shown)
        else:
            await handle.edit(content=shown, allowed_mentions=NO_MENTIONS)

    def _handle_id(self, handle: Any) -> str:
        """Nothing to reopen after a restart: only the interaction's token, gone with the process,
        can edit an answer given in its response, and the bot cannot post where it was asked."""
        return ""

    # --- ReplySink ---

    async def notice(self, text: str) -> None:
        if not self._started:
            self._held.append(text)
            return
        if self._followups >= MAX_FOLLOWUPS:
            log.info(
                "notice for interaction %s not shown: no follow-ups left", self._interaction.id
            )
            return
        self._followups += 1
        await self._interaction.followup.send(
            text[:DISCORD_MESSAGE_LIMIT], allowed_mentions=NO_MENTIONS
        )

    async def close(self) -> None:
        """Call once the core is done: with no answer, remove the pending response and say why privately."""
        if self._started:
            return
        await _quietly(self._interaction.delete_original_response())
        held, self._held = self._held, []
        for text in held:
            await self._interaction.followup.send(
                text[:DISCORD_MESSAGE_LIMIT], ephemeral=True, allowed_mentions=NO_MENTIONS
            )

    # --- internals ---

    async def _mark_cut(self) -> None:
        """Once: end the last message posted with a mark saying the rest could not be shown."""
        if self._cut_after is not _DROPPED:
            return
        handle, shown = self._posted[-1]
        self._cut_after = handle
        log.warning(
            "answer to interaction %s cut after %d follow-ups (Discord's cap for a user install)",
            self._interaction.id,
            MAX_FOLLOWUPS,
        )
        await self._edit(handle, shown)

    async def _edit_original(self, text: str) -> None:
        await self._interaction.edit_original_response(
            content=f"{self._header}\n{text}", allowed_mentions=NO_MENTIONS
        )


_DROPPED: Any = object()  # the handle of a piece left unposted (past the follow-up cap)


def _incoming(
    interaction: discord.Interaction,
    key: ConversationKey,
    parent: str | None,
    question: str,
    attachments: Attachments,
    quoted: Quotes,
) -> IncomingMessage:
    return IncomingMessage(
        key=key,
        message_id=str(interaction.id),
        author_id=str(interaction.user.id),
        author_name=interaction.user.display_name,
        text=question,
        images=attachments.images,
        files=attachments.files,
        other_files=attachments.other_files,
        author_roles=author_roles(interaction.user),
        parent_channel=parent,
        is_direct=interaction.guild_id is None,
        # A guild channel or thread, a DM between people: several people may talk.
        shared=interaction.guild_id is not None or interaction.context.private_channel,
        quoted=quoted,
    )


def _thread_place(
    interaction: discord.Interaction, original: discord.Message, name: str
) -> tuple[ConversationKey, str | None, TargetFactory]:
    """The conversation and the answer's place: the thread or DM asked in, else a new thread."""
    channel = interaction.channel
    if interaction.guild_id is None:
        return (
            dm_key(interaction.channel_id or original.channel.id),
            None,
            in_channel(original.channel),
        )
    if isinstance(channel, discord.Thread):
        return (
            root_key(interaction.guild_id, channel.id),
            str(channel.parent_id),
            in_channel(channel),
        )
    key = root_key(interaction.guild_id, original.id)
    parent = str(interaction.channel_id)
    if isinstance(channel, discord.TextChannel):
        return key, parent, thread_on(original, name)
    return key, parent, reply_to(original)


def _ephemeral(interaction: discord.Interaction) -> Callable[[str], Awaitable[None]]:
    """Notices no answer followed (refusals, rate limits) reach only the person who asked."""

    async def send(text: str) -> None:
        await interaction.followup.send(text, ephemeral=True, allowed_mentions=NO_MENTIONS)

    return send


async def _quietly(action: Awaitable[object]) -> None:
    try:
        await action
    except discord.HTTPException as exc:
        log.debug("cleanup after an interaction failed: %s", exc)
