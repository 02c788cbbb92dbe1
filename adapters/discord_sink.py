"""Discord's ReplySink: a streamed answer in a thread, a channel or a reply chain, never pinging anyone."""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Awaitable, Callable
from dataclasses import dataclass

import discord

from adapters.streaming import StreamingSink

__all__ = [
    "DISCORD_MESSAGE_LIMIT",
    "EDIT_INTERVAL_SECONDS",
    "NO_MENTIONS",
    "DiscordSink",
    "Target",
    "in_channel",
    "quiet_reply",
    "reply_to",
    "thread_on",
]

log = logging.getLogger("glimpse.discord")

DISCORD_MESSAGE_LIMIT = 2000  # characters per message
EDIT_INTERVAL_SECONDS = 1.0  # per answer: Discord allows about five edits per 5 s per channel
NO_MENTIONS = discord.AllowedMentions.none()


@dataclass(frozen=True, slots=True)
class Target:
    """Where an answer's messages go, and the message they reply to, if any."""

    channel: discord.abc.Messageable
    reference: discord.MessageReference | None = None


TargetFactory = Callable[[], Awaitable[Target]]
Quiet = Callable[[str], Awaitable[None]]


def in_channel(channel: discord.abc.Messageable) -> TargetFactory:
    """Post plainly in a channel, thread or DM."""

    async def target() -> Target:
        return Target(channel)

    return target


def reply_to(message: discord.Message) -> TargetFactory:
    """Reply to a message, in its channel."""

    async def target() -> Target:
        return Target(message.channel, message.to_reference(fail_if_not_exists=False))

    return target


def thread_on(message: discord.Message, name: str) -> TargetFactory:
    """Open a public thread on a message; where Discord refuses, reply to the message instead."""

    async def target() -> Target:
        try:
            thread = await message.create_thread(name=name)
        except (discord.HTTPException, ValueError) as exc:
            log.info(
                "cannot open a thread on message %s (%s); replying to it instead", message.id, exc
            )
            return await reply_to(message)()
        return Target(thread)

    return target


def quiet_reply(message: discord.Message) -> Quiet:
    """Notices no answer followed (a refusal, an empty mention) reply to the message itself."""

    async def send(text: str) -> None:
        await message.channel.send(
            text,
            reference=message.to_reference(fail_if_not_exists=False),
            allowed_mentions=NO_MENTIONS,
        )

    return send


class DiscordSink(StreamingSink):
    """One answer on Discord: opened lazily (a thread is created only when there is an answer to show).

    Notices that arrive before the answer starts are held: they go first into the
    answer's place when it starts, or to `quiet` (a reply, an ephemeral note) when
    `close()` finds that no answer followed (a refusal, an empty question).
    """

    def __init__(
        self,
        target: TargetFactory,
        *,
        quiet: Quiet | None = None,
        on_posted: Callable[[int], None] | None = None,
    ) -> None:
        super().__init__(limit=DISCORD_MESSAGE_LIMIT, interval_seconds=EDIT_INTERVAL_SECONDS)
        self._make_target = target
        self._target: Target | None = None
        self._resolving = asyncio.Lock()
        self._quiet = quiet
        self._on_posted = on_posted
        self._held: list[str] = []
        self._started = False
        self._typing: asyncio.Task[None] | None = None

    @property
    def started(self) -> bool:
        """Whether an answer began (its place was opened); False after refusals and other notices."""
        return self._started

    # --- StreamingSink hooks ---

    async def _on_start(self) -> None:
        self._started = True
        target = await self._resolve()
        held, self._held = self._held, []
        for text in held:
            await self._send(target, text)
        self._typing = asyncio.create_task(
            _keep_typing(target.channel), name="glimpse-discord-typing"
        )

    async def _on_end(self) -> None:
        await self._stop_typing()

    async def _post(self, text: str) -> discord.Message:
        await self._stop_typing()  # the first words are on screen
        return await self._send(await self._resolve(), text)

    async def _edit(self, handle: discord.Message | discord.PartialMessage, text: str) -> None:
        await handle.edit(content=text, allowed_mentions=NO_MENTIONS)

    def _handle_id(self, handle: discord.Message | discord.PartialMessage) -> str:
        """`channel id/message id`: where the message is, for editing it after a restart."""
        return f"{handle.channel.id}/{handle.id}"

    # --- ReplySink ---

    async def notice(self, text: str) -> None:
        if not self._started:
            self._held.append(text)
            return
        await self._send(await self._resolve(), text)

    async def close(self) -> None:
        """Deliver held notices that no answer followed; stop typing. Call once the core is done."""
        await self._stop_typing()
        held, self._held = self._held, []
        for text in held:
            if self._quiet is not None:
                await self._quiet(text[:DISCORD_MESSAGE_LIMIT])
            else:
                await self._send(await self._resolve(), text)

    # --- internals ---

    async def _resolve(self) -> Target:
        async with self._resolving:
            if self._target is None:
                self._target = await self._make_target()
            return self._target

    async def _send(self, target: Target, text: str) -> discord.Message:
        text = text[:DISCORD_MESSAGE_LIMIT]
        if target.reference is None:
            message = await target.channel.send(text, allowed_mentions=NO_MENTIONS)
        else:
            message = await target.channel.send(
                text, reference=target.reference, allowed_mentions=NO_MENTIONS
            )
        if self._on_posted is not None:
            self._on_posted(message.id)
        return message

    async def _stop_typing(self) -> None:
        task, self._typing = self._typing, None
        if task is not None:
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await task


async def _keep_typing(channel: discord.abc.Messageable) -> None:
    """The typing indicator until cancelled (discord.py renews it every 5 s); best effort."""
    try:
        async with channel.typing():
            await asyncio.Event().wait()
    except discord.HTTPException as exc:
        log.debug("typing indicator refused: %s", exc)
