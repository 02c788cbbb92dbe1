"""Who is talking on Slack: user ids as the names people see, one users.info call per person an hour."""

from __future__ import annotations

import asyncio
import logging
import re
import time
from collections.abc import Callable, Mapping
from typing import Any

import aiohttp
from slack_sdk.errors import SlackApiError
from slack_sdk.web.async_client import AsyncWebClient

from adapters.slack_lookups import LogOnce, LookupCache
from adapters.slack_sink import slack_error

__all__ = ["SlackPeople", "display_name"]

log = logging.getLogger("glimpse.slack")

NAME_TTL_SECONDS = 60 * 60.0  # a renamed person is seen by this long at most
FAILED_NAME_TTL_SECONDS = 60.0  # a failed look-up is tried again after this long
REMEMBERED_NAMES = 10_000
LOOKUP_TIMEOUT_SECONDS = 3.0  # then the message goes on with the user id (a long Retry-After too)
MENTIONS_RESOLVED = 10  # other people's <@U…> named per message; any more stay ids
MAX_NAME_CHARS = 80
MISSING_SCOPE = (
    "slack: users.info answered missing_scope, so people are named by their user ids: add the "
    "users:read bot scope (config/slack-manifest.yaml) and reinstall the app"
)
_USER_MENTION = re.compile(r"<@([UW][A-Z0-9]+)(?:\|[^<>]*)?>")


class SlackPeople:
    """Display names for user ids, cached in-process; a failed look-up never fails a message."""

    def __init__(
        self, client: AsyncWebClient, *, clock: Callable[[], float] = time.monotonic
    ) -> None:
        self._client = client
        self._names: LookupCache[str, str | None] = LookupCache(
            self._look_up, limit=REMEMBERED_NAMES, clock=clock
        )
        self._warnings = LogOnce(log)

    async def name(self, user_id: str, *, fallback: str = "") -> str:
        """The name people see for `user_id`; `fallback`, else the id itself, when Slack does not say."""
        return await self._names.get(user_id) or fallback or user_id

    async def mentioned(self, text: str, *, skip: str | None = None) -> dict[str, str]:
        """Names of the people `<@U…>`-mentioned in Slack `text` (except `skip`: the bot itself)."""
        found = (user for user in _USER_MENTION.findall(text) if user != skip)
        users = list(dict.fromkeys(found))[:MENTIONS_RESOLVED]
        names = await asyncio.gather(*(self._names.get(user) for user in users))
        return {user: name for user, name in zip(users, names, strict=True) if name}

    async def _look_up(self, user_id: str) -> tuple[str | None, float]:
        try:
            response = await asyncio.wait_for(
                self._client.users_info(user=user_id), LOOKUP_TIMEOUT_SECONDS
            )
        except SlackApiError as exc:
            self._failed(slack_error(exc), user_id)
        except (TimeoutError, aiohttp.ClientError) as exc:
            self._failed(type(exc).__name__, user_id)
        else:
            name = display_name(response.get("user") or {})
            if name:
                return name, NAME_TTL_SECONDS
        return None, FAILED_NAME_TTL_SECONDS

    def _failed(self, error: str, user_id: str) -> None:
        if error == "missing_scope":
            self._warnings.warning(error, MISSING_SCOPE)
        else:
            self._warnings.warning(
                error, "slack: users.info failed (%s) for %s; named by user id", error, user_id
            )


def display_name(user: Mapping[str, Any]) -> str:
    """A users.info `user` as people see it: display name, else real name, else username."""
    profile = user.get("profile") or {}
    candidates = (
        profile.get("display_name"),
        profile.get("real_name"),
        user.get("real_name"),
        user.get("name"),
    )
    for candidate in candidates:
        name = " ".join(str(candidate or "").split())
        if name:
            return name[:MAX_NAME_CHARS]
    return ""
