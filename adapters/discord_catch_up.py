"""Discord after downtime: on a fresh session's READY, the missed messages of recent conversations, read from channel history."""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Awaitable, Callable, Sequence
from datetime import UTC, datetime
from functools import partial
from typing import TYPE_CHECKING, Any

import discord

from adapters.discord_shards import DM_SHARD, guild_shard
from adapters.discord_translate import DM_WORKSPACE, PLATFORM, mentions_bot, root_key
from bot.inbox import CatchUp, CatchUpReport, InboxThread, Missed
from bot.messages import ConversationKey

if TYPE_CHECKING:
    from adapters.discord import GlimpseDiscord

__all__ = ["DiscordBacklog", "DiscordCatchUp", "on_shard"]

log = logging.getLogger("glimpse.discord")

Message = discord.Message


class DiscordBacklog:
    """A conversation's missed messages: its thread's or DM's history after the newest one claimed."""

    def __init__(
        self,
        client: GlimpseDiscord,
        *,
        is_active: Callable[[ConversationKey], Awaitable[bool]],
        allow_dms: bool,
    ) -> None:
        self._client = client
        self._is_active = is_active
        self._allow_dms = allow_dms

    async def missed(
        self, thread: InboxThread, limit: int, *, sent_after: float | None = None
    ) -> Sequence[Missed[Message]]:
        channel = await self._channel(thread)
        if channel is None:
            return []
        after: discord.abc.Snowflake | datetime = (
            datetime.fromtimestamp(sent_after, UTC)
            if sent_after is not None
            else discord.Object(int(thread.newest_message_id))
        )
        missed: list[Missed[Message]] = []
        async for message in channel.history(after=after, limit=limit, oldest_first=True):
            if await self._would_answer(message, channel):
                missed.append(Missed(message, str(message.id), message.created_at.timestamp()))
        return missed

    async def answer(self, item: Message) -> None:
        await self._client.on_message(item)  # the live path: routing, dedup, the core

    async def notice(self, item: Message, text: str) -> None:
        await item.reply(text, mention_author=False)

    async def _channel(self, thread: InboxThread) -> Any:
        """The DM or thread to read; None for a reply chain's conversation (named by a message, not
        a channel) or a channel Discord no longer shows."""
        key = thread.key
        if key.workspace == DM_WORKSPACE:
            return (
                self._client.get_partial_messageable(int(key.channel)) if self._allow_dms else None
            )
        try:
            channel = await self._client.fetch_channel(int(key.channel))
        except discord.HTTPException as exc:  # 404: a reply chain's root message; 403: no access
            log.debug("catch-up: %s has no readable channel: %s", key, exc)
            return None
        return channel if isinstance(channel, discord.Thread) else None

    async def _would_answer(self, message: Message, channel: Any) -> bool:
        """What the live path answers: a person's message in a DM, or in a thread the bot opened,
        has answered in or is mentioned in."""
        if not self._client._from_a_person(message):
            return False
        if not isinstance(channel, discord.Thread):
            return True  # a DM
        assert self._client.user is not None
        if channel.owner_id == self._client.user.id or mentions_bot(message, self._client.user.id):
            return True
        return await self._is_active(root_key(channel.guild.id, channel.id))


class DiscordCatchUp:
    """Runs the catch-up in the background after each fresh session (never on a resume): of every
    conversation, or, for a sharded client, of the conversations of the shard that got READY."""

    def __init__(self, client: GlimpseDiscord, catch_up: CatchUp, backlog: DiscordBacklog) -> None:
        self._client = client
        self._catch_up = catch_up
        self._backlog = backlog
        self._tasks: dict[int | None, asyncio.Task[None]] = {}  # by shard (None: unsharded)
        self.last_report: CatchUpReport | None = None  # the latest finished catch-up's
        self._session_started: float | None = None

    def connected(self) -> None:
        """A session's READY arrived (`on_connect`, before any of its messages is handled)."""
        self._session_started = time.time()

    def start(self, shard: tuple[int, int] | None = None) -> None:
        """After READY (of shard (id, count)): catch up unless disabled or catching up already."""
        shard_id = shard[0] if shard is not None else None
        running = self._tasks.get(shard_id)
        if not self._catch_up.enabled or (running is not None and not running.done()):
            return
        self._tasks[shard_id] = asyncio.create_task(
            self._run(shard), name=f"glimpse-discord-catch-up-{shard_id}"
        )

    async def stop(self) -> None:
        tasks, self._tasks = list(self._tasks.values()), {}
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)

    async def wait(self) -> None:
        """Until the catch-ups under way (if any) have finished."""
        await asyncio.shield(asyncio.gather(*self._tasks.values()))

    async def _run(self, shard: tuple[int, int] | None) -> None:
        only, label = None, ""
        if shard is not None:
            shard_id, count = shard
            only, label = partial(on_shard, shard_id=shard_id, count=count), f"shard {shard_id}"
        try:
            self.last_report = await self._catch_up.run(
                PLATFORM,
                self._backlog,
                only=only,
                label=label,
                session_started=self._session_started,
            )
        except Exception:
            log.exception("catch-up after READY failed")


def on_shard(key: ConversationKey, *, shard_id: int, count: int) -> bool:
    """Whether Discord sends this conversation's events to the shard (DMs: shard 0)."""
    if key.workspace == DM_WORKSPACE:
        return shard_id == DM_SHARD
    return guild_shard(int(key.workspace), count) == shard_id
