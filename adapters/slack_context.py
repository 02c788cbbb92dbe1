"""What a Slack message brings to the core besides its text: who wrote it, whom it names, the thread it is in."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Mapping
from typing import Any

import aiohttp
from slack_sdk.errors import SlackApiError
from slack_sdk.web.async_client import AsyncWebClient

from adapters.slack_events import from_event, parent_author, quotable, quote_of
from adapters.slack_lookups import LogOnce, LookupCache
from adapters.slack_people import SlackPeople
from adapters.slack_sink import slack_error
from bot.messages import IncomingMessage, QuotedMessage

__all__ = ["SlackContext"]

log = logging.getLogger("glimpse.slack")

PARENT_TIMEOUT_SECONDS = 5.0  # then the question is answered without the thread's first message
PARENT_TTL_SECONDS = 30.0  # a mention's two events (app_mention and message) share one fetch
REMEMBERED_PARENTS = 1_000
HISTORY_SCOPES = "channels:history, groups:history, im:history and mpim:history"

Event = Mapping[str, Any]
ParentKey = tuple[str, str]  # (channel, thread ts)


class SlackContext:
    """Turns events into IncomingMessages with names resolved and a thread's first message quoted.

    Every look-up is bounded and optional: when Slack will not say, the message goes on without.
    """

    def __init__(
        self, client: AsyncWebClient, *, bot_token: str, people: SlackPeople | None = None
    ) -> None:
        self._client = client
        self._token = bot_token
        self.people = people or SlackPeople(client)
        self._parents: LookupCache[ParentKey, dict[str, Any] | None] = LookupCache(
            self._fetch_parent, limit=REMEMBERED_PARENTS
        )
        self._warnings = LogOnce(log)

    async def message(
        self,
        event: Event,
        *,
        team_id: str,
        bot_user_id: str | None,
        bot_id: str | None,
        with_parent: bool,
    ) -> IncomingMessage:
        """`event` for the core; `with_parent` brings the thread's first message (a new thread for us)."""
        quoting = (
            self._quoted(event, bot_user_id=bot_user_id, bot_id=bot_id)
            if with_parent
            else _no_quote()
        )
        files, author, names, quoted = await asyncio.gather(
            self.complete_files(event),
            self.people.name(str(event["user"])),
            self.people.mentioned(str(event.get("text") or ""), skip=bot_user_id),
            quoting,
        )
        return from_event(
            files,
            team_id=team_id,
            bot_user_id=bot_user_id,
            bot_token=self._token,
            author_name=author,
            names=names,
            quoted=quoted,
        )

    async def command_author(self, command: Mapping[str, Any]) -> str:
        """The `/ask` asker's display name; the command's own `user_name` if Slack will not say."""
        user_name = str(command.get("user_name") or "")
        return await self.people.name(str(command["user_id"]), fallback=user_name)

    async def complete_files(self, event: Event) -> dict[str, Any]:
        """Slack Connect events carry stub files ("check_file_info"); fetch their details."""
        files = event.get("files") or []
        if not any(file.get("file_access") == "check_file_info" for file in files):
            return dict(event)
        return {**event, "files": [await self._file_info(file) for file in files]}

    async def _file_info(self, file: Mapping[str, Any]) -> dict[str, Any]:
        if file.get("file_access") != "check_file_info":
            return dict(file)
        try:
            return dict((await self._client.files_info(file=str(file["id"])))["file"])
        except SlackApiError as exc:
            log.warning("slack: files.info for %s failed: %s", file.get("id"), slack_error(exc))
            return dict(file)

    # --- the thread's first message ---

    async def _quoted(
        self, event: Event, *, bot_user_id: str | None, bot_id: str | None
    ) -> tuple[QuotedMessage, ...]:
        """The thread's first message as a reply quote, unless it is ours, the event, or unreadable."""
        channel = str(event["channel"])
        parent = await self._parents.get((channel, str(event.get("thread_ts"))))
        if parent is None or not quotable(parent, event, bot_user_id=bot_user_id, bot_id=bot_id):
            return ()
        author_id, known_name = parent_author(parent)
        parent, author, names = await asyncio.gather(
            self.complete_files(parent),
            self._author(author_id, known_name),
            self.people.mentioned(str(parent.get("text") or ""), skip=bot_user_id),
        )
        quote = quote_of(
            parent,
            channel=channel,
            author_name=author,
            bot_user_id=bot_user_id,
            bot_token=self._token,
            names=names,
        )
        return (quote,)

    async def _author(self, author_id: str, known_name: str) -> str:
        return known_name or await self.people.name(author_id)

    async def _fetch_parent(self, key: ParentKey) -> tuple[dict[str, Any] | None, float]:
        """One conversations.replies call for the thread's first message; None when Slack will not say."""
        channel, thread_ts = key
        try:
            response = await asyncio.wait_for(
                self._client.conversations_replies(
                    channel=channel, ts=thread_ts, limit=1, inclusive=True
                ),
                PARENT_TIMEOUT_SECONDS,
            )
        except SlackApiError as exc:
            self._parent_failed(slack_error(exc), channel)
        except (TimeoutError, aiohttp.ClientError) as exc:
            self._parent_failed(type(exc).__name__, channel)
        else:
            messages = response.get("messages") or []
            return (dict(messages[0]) if messages else None), PARENT_TTL_SECONDS
        return None, PARENT_TTL_SECONDS

    def _parent_failed(self, error: str, channel: str) -> None:
        fix = f": add {HISTORY_SCOPES} and reinstall" if error == "missing_scope" else ""
        self._warnings.warning(
            error,
            "slack: a thread's first message in %s could not be read (%s); answered without it%s",
            channel,
            error,
            fix,
        )


async def _no_quote() -> tuple[QuotedMessage, ...]:
    return ()
