"""Slack after downtime: the missed messages of recent conversations, read with conversations.replies and .history."""

from __future__ import annotations

import logging
from collections.abc import Awaitable, Callable, Mapping, Sequence
from typing import Any

from slack_sdk.errors import SlackApiError
from slack_sdk.web.async_client import AsyncWebClient

from adapters.slack_events import ignore_reason, is_direct, mentions, message_id
from adapters.slack_sink import slack_error
from bot.inbox import InboxThread, Missed

__all__ = ["SlackBacklog"]

log = logging.getLogger("glimpse.slack")

Event = dict[str, Any]


class SlackBacklog:
    """A conversation's missed messages: its thread's replies after the newest one claimed, and,
    once per channel and catch-up, new top-level messages there (a DM, a mention)."""

    def __init__(
        self,
        client: AsyncWebClient,
        *,
        bot_user_id: str,
        answer: Callable[[Event], Awaitable[None]],
    ) -> None:
        self._client = client
        self._bot_user_id = bot_user_id
        self._answer = answer
        self._channels_read: set[str] = set()  # one backlog per catch-up: each channel once

    async def missed(
        self, thread: InboxThread, limit: int, *, sent_after: float | None = None
    ) -> Sequence[Missed[Event]]:
        key = thread.key
        _, _, newest_ts = thread.newest_message_id.rpartition(":")
        oldest = f"{sent_after:.6f}" if sent_after is not None else newest_ts
        try:
            found = await self._replies(key.channel, key.thread, oldest, limit)
            if key.channel not in self._channels_read:
                self._channels_read.add(key.channel)  # the newest conversation of it comes first
                found += await self._top_level(key.channel, oldest, limit)
        except SlackApiError as exc:
            log.info("slack: catch-up cannot read %s: %s", key, slack_error(exc))
            return []
        missed = {str(m["ts"]): m for m in found if float(m["ts"]) > float(oldest)}
        events = [
            {**m, "channel": key.channel, "team": key.workspace}
            for _, m in sorted(missed.items(), key=lambda item: float(item[0]))
        ]
        return [
            Missed(event, message_id(key.channel, str(event["ts"])), float(event["ts"]))
            for event in events[:limit]
            if ignore_reason(event) is None
        ]

    async def answer(self, item: Event) -> None:
        await self._answer(item)  # the live path: routing, dedup, the core

    async def notice(self, item: Event, text: str) -> None:
        await self._client.chat_postMessage(
            channel=item["channel"], thread_ts=str(item.get("thread_ts") or item["ts"]), text=text
        )

    async def _replies(self, channel: str, thread_ts: str, oldest: str, limit: int) -> list[Event]:
        response = await self._client.conversations_replies(
            channel=channel, ts=thread_ts, oldest=oldest, limit=limit
        )
        return [dict(m) for m in response.get("messages") or [] if _in_thread(m, thread_ts)]

    async def _top_level(self, channel: str, oldest: str, limit: int) -> list[Event]:
        """New messages of a DM, mentions of Glimpse in a channel (threads come by `_replies`)."""
        response = await self._client.conversations_history(
            channel=channel, oldest=oldest, limit=limit
        )
        return [
            dict(m)
            for m in response.get("messages") or []
            if not m.get("thread_ts") or m.get("thread_ts") == m.get("ts")
            if is_direct({**m, "channel": channel}) or mentions(m, self._bot_user_id)
        ]


def _in_thread(message: Mapping[str, Any], thread_ts: str) -> bool:
    """A reply below the thread's first message."""
    return message.get("thread_ts") == thread_ts and message.get("ts") != thread_ts
