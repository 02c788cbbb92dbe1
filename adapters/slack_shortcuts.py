"""The "Ask Glimpse about this" message shortcut: a message's images and files, answered in its thread.

What a user expects from it: Glimpse looks at that message now, where everyone sees it, and they
can follow up. A message shortcut carries no question of its own, and a modal asking for one would
be one more step before anything useful happens, so Glimpse says in the message's thread who asked,
invites a reply there, and answers a default question at once (a description, with any text in the
image). The thread is then one Glimpse follows: replies there are follow-ups, no mention needed.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable, Coroutine, Mapping
from typing import Any

from slack_bolt.async_app import AsyncApp
from slack_bolt.context.ack.async_ack import AsyncAck
from slack_bolt.context.async_context import AsyncBoltContext
from slack_bolt.context.respond.async_respond import AsyncRespond

from adapters.slack_context import SlackContext
from adapters.slack_events import (
    conversation_key,
    message_id,
    parent_author,
    quote_of,
    thread_of,
)
from adapters.slack_sink import SlackThread, SlackUnavailable
from bot.messages import IncomingMessage

__all__ = ["FILE_QUESTION", "IMAGE_QUESTION", "NO_ATTACHMENT", "AskShortcut", "intro_text"]

log = logging.getLogger("glimpse.slack")

IMAGE_QUESTION = "Describe this image, including any text it shows."
FILE_QUESTION = "What can you tell me about this file?"
NO_ATTACHMENT = (
    "That message has no image or file for me to look at. To ask about its text, mention me in "
    "its thread (`@{name} what does this mean?`)."
)
CANNOT_POST = (
    "I can't post in this conversation, so I can't answer there. In a channel, add me first "
    "(`/invite @{name}`)."
)

Answer = Callable[[IncomingMessage, str], Awaitable[None]]
Spawn = Callable[[Coroutine[Any, Any, None]], None]


def intro_text(user_id: str) -> str:
    """The line before the answer: who asked, and that the thread is open for more."""
    return f"*<@{user_id}> asked me about this message.* Reply in this thread to ask me more."


def _attachments(message: Mapping[str, Any]) -> list[Mapping[str, Any]]:
    """The message's files that still exist (a deleted file stays as a tombstone)."""
    return [f for f in message.get("files") or () if f.get("mode") != "tombstone"]


class AskShortcut:
    """The message shortcut on a Bolt app: ack, then in a task post the intro and answer the message."""

    def __init__(
        self,
        *,
        callback_id: str,
        client: Any,
        context: SlackContext,
        bot_token: str,
        answer: Answer,
        spawn: Spawn,
        bot_name: Callable[[], str],
    ) -> None:
        self._callback_id = callback_id
        self._client = client
        self._context = context
        self._token = bot_token
        self._answer = answer
        self._spawn = spawn
        self._bot_name = bot_name

    def register(self, app: AsyncApp) -> None:
        app.shortcut({"type": "message_action", "callback_id": self._callback_id})(
            self._on_shortcut
        )

    async def _on_shortcut(
        self,
        ack: AsyncAck,
        body: dict[str, Any],
        respond: AsyncRespond,
        context: AsyncBoltContext,
    ) -> None:
        await ack()
        message = body.get("message") or {}
        if not _attachments(message):
            log.info("slack: shortcut on %s, a message without files", body.get("message_ts"))
            await respond(
                text=NO_ATTACHMENT.format(name=self._bot_name()),
                response_type="ephemeral",
                replace_original=False,
            )
            return
        self._spawn(self._ask(body, respond, context))

    async def _ask(
        self, body: Mapping[str, Any], respond: AsyncRespond, context: AsyncBoltContext
    ) -> None:
        channel = str((body.get("channel") or {}).get("id") or "")
        user = str((body.get("user") or {}).get("id") or "")
        team = str((body.get("team") or {}).get("id") or context.team_id or "")
        message = {**body["message"], "channel": channel}
        thread = SlackThread(self._client, channel=channel, thread_ts=thread_of(message))
        try:
            await thread.post(intro_text(user))
        except SlackUnavailable as exc:
            log.warning("slack: shortcut in %s cannot post (%s); told %s", channel, exc, user)
            await respond(
                text=CANNOT_POST.format(name=self._bot_name()),
                response_type="ephemeral",
                replace_original=False,
            )
            return
        question = await self._question(body, message, team=team, user=user, context=context)
        await self._answer(question, str(message["ts"]))

    async def _question(
        self,
        body: Mapping[str, Any],
        message: Mapping[str, Any],
        *,
        team: str,
        user: str,
        context: AsyncBoltContext,
    ) -> IncomingMessage:
        """The asker's default question, with the message (text, images, files) quoted under its author."""
        channel = str(message["channel"])
        author_id, known_name = parent_author(message)
        message, asker, author, names = await asyncio.gather(
            self._context.complete_files(message),
            self._context.people.name(user),
            self._author(author_id, known_name),
            self._context.people.mentioned(
                str(message.get("text") or ""), skip=context.bot_user_id
            ),
        )
        quote = quote_of(
            message,
            channel=channel,
            author_name=author,
            bot_user_id=context.bot_user_id,
            bot_token=self._token,
            names=names,
        )
        direct = channel.startswith("D")
        return IncomingMessage(
            key=conversation_key(team, channel, thread_of(message)),
            message_id=message_id(channel, str(body.get("action_ts") or message["ts"])),
            author_id=user,
            author_name=asker,
            text=IMAGE_QUESTION if quote.images else FILE_QUESTION,
            parent_channel=channel,
            is_direct=direct,
            shared=not direct,
            quoted=(quote,),
        )

    async def _author(self, author_id: str, known_name: str) -> str:
        return known_name or await self._context.people.name(author_id)
