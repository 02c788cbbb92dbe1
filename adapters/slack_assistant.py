"""Slack's agent/assistant surface: suggested prompts, a working status and a thread title, best effort.

Two generations of it exist. An app with `assistant_view` in its manifest gets
`assistant_thread_started` for each new thread of the assistant pane (prompts go to that thread);
an app with `agent_view` (what Slack gives new apps, and what `config/slack-manifest-agent.yaml`
asks for) gets `app_home_opened` with `tab == "messages"` instead, and its prompts belong to the
DM itself (Slack silently drops them when `thread_ts` is sent). In both, questions are ordinary
DM messages, answered by the listeners like any other; this module only adds the status while
Glimpse works and the title from the first question. A workspace that refuses a call (an older
plan, the classic manifest, a missing scope) is told once in the log and spared that call since.
"""

from __future__ import annotations

import logging
import re
from collections.abc import AsyncIterator, Awaitable, Callable, Coroutine, Sequence
from contextlib import asynccontextmanager
from typing import Any

from slack_bolt.async_app import AsyncApp, AsyncAssistant
from slack_sdk.errors import SlackApiError
from slack_sdk.web.async_client import AsyncWebClient

from adapters.slack_lookups import LogOnce
from adapters.slack_sink import slack_error
from bot.config import SuggestedPrompt
from bot.messages import ConversationKey, IncomingMessage

__all__ = [
    "PROMPTS_TITLE",
    "STATUS_FILE",
    "STATUS_IMAGE",
    "STATUS_THINKING",
    "AssistantThreads",
    "SlackAssistant",
    "nothing_shown",
    "status_for",
    "title_for",
]

log = logging.getLogger("glimpse.slack")

STATUS_IMAGE = "is looking at your image…"
STATUS_FILE = "is reading your file…"
STATUS_THINKING = "is thinking…"
CLEAR_STATUS = ""  # an empty status takes the indicator away
PROMPTS_TITLE = "Upload an image or a file, or try one of these:"
TITLE_CHARS = 60  # Slack cuts long thread titles in its list; ours end with "…" instead
UNTITLED = "A question"
# Errors that say the workspace or the app cannot use the method at all (not this one call).
UNSUPPORTED = frozenset(
    {
        "not_allowed_token_type",
        "unknown_method",
        "feature_not_enabled",
        "missing_scope",
        "method_deprecated",
        "no_permission",
        "team_access_not_granted",
    }
)
HINT = "Slack's assistant features are unavailable; answering without them (see the agent manifest in the README)"

Spawn = Callable[[Coroutine[Any, Any, None]], None]


def status_for(message: IncomingMessage) -> str:
    """What the pane says while Glimpse works: looking at the image, reading the file, or thinking."""
    if message.images or any(quote.images for quote in message.quoted):
        return STATUS_IMAGE
    if message.files or any(quote.files for quote in message.quoted):
        return STATUS_FILE
    return STATUS_THINKING


def title_for(message: IncomingMessage) -> str:
    """The thread's title: the first question on one line, cut to TITLE_CHARS; a file's name without text."""
    words = re.sub(r"\s+", " ", message.text).strip()
    if not words:
        attachments = [ref.filename for ref in (*message.images, *message.files)]
        words = f"About {attachments[0]}" if attachments else UNTITLED
    return words if len(words) <= TITLE_CHARS else words[: TITLE_CHARS - 1].rstrip() + "…"


class AssistantThreads:
    """The assistant.threads.* calls, each best effort: never raises, never costs an answer."""

    def __init__(self, client: AsyncWebClient, *, prompts: Sequence[SuggestedPrompt]) -> None:
        self._client = client
        self._prompts = [{"title": p.title, "message": p.message} for p in prompts]
        self._unsupported: set[str] = set()
        self._warnings = LogOnce(log)

    async def suggest(self, channel: str, thread_ts: str | None) -> bool:
        """Offer the prompts in an assistant thread, or (agent view, `thread_ts=None`) in the DM."""
        if not self._prompts:
            return False
        return await self._call(
            "assistant.threads.setSuggestedPrompts",
            channel,
            lambda: self._client.assistant_threads_setSuggestedPrompts(
                channel_id=channel, thread_ts=thread_ts, prompts=self._prompts, title=PROMPTS_TITLE
            ),
        )

    async def set_status(self, channel: str, thread_ts: str, status: str) -> bool:
        """Show (or, with "", clear) the "is thinking…" line under the thread; True if Slack took it."""
        return await self._call(
            "assistant.threads.setStatus",
            channel,
            lambda: self._client.assistant_threads_setStatus(
                channel_id=channel, thread_ts=thread_ts, status=status
            ),
        )

    async def set_title(self, channel: str, thread_ts: str, title: str) -> bool:
        return await self._call(
            "assistant.threads.setTitle",
            channel,
            lambda: self._client.assistant_threads_setTitle(
                channel_id=channel, thread_ts=thread_ts, title=title
            ),
        )

    async def _call(self, method: str, channel: str, call: Callable[[], Awaitable[Any]]) -> bool:
        if method in self._unsupported:
            return False
        try:
            await call()
        except SlackApiError as exc:
            error = slack_error(exc)
            if error in UNSUPPORTED:
                self._unsupported.add(method)
                log.warning("slack: %s answered %s; %s", method, error, HINT)
            else:
                self._warnings.warning(
                    f"{method}:{error}", "slack: %s in %s failed: %s", method, channel, error
                )
            return False
        return True


class SlackAssistant:
    """The assistant pane's events on a Bolt app, and the status and title around a DM's answer."""

    def __init__(
        self,
        threads: AssistantThreads,
        *,
        is_active: Callable[[ConversationKey], Awaitable[bool]],
        spawn: Spawn,
    ) -> None:
        self.threads = threads
        self._is_active = is_active
        self._spawn = spawn

    def register(self, app: AsyncApp) -> None:
        """Bolt's Assistant middleware for the assistant view; app_home_opened for the agent view."""
        assistant = AsyncAssistant(logger=log)
        assistant.thread_started(self._on_thread_started)
        assistant.thread_context_changed(self._on_context_changed)
        app.assistant(assistant)  # user messages pass through to the app's own message listener
        app.event("app_home_opened")(self._on_home_opened)

    @asynccontextmanager
    async def working(self, message: IncomingMessage) -> AsyncIterator[bool]:
        """Around an answer in a DM: the title (first question only) and the status, cleared after.

        Yields whether Slack shows the status (if not, the caller shows its own sign of work).
        """
        channel, thread_ts = message.key.channel, message.key.thread
        if not await self._is_active(message.key):
            await self.threads.set_title(channel, thread_ts, title_for(message))
        shown = await self.threads.set_status(channel, thread_ts, status_for(message))
        try:
            yield shown
        finally:
            if shown:
                await self.threads.set_status(channel, thread_ts, CLEAR_STATUS)

    # --- listeners: ack (Bolt does, for the Assistant's), then a task ---

    async def _on_thread_started(self, payload: dict[str, Any]) -> None:
        thread = payload.get("assistant_thread") or {}
        channel, thread_ts = str(thread.get("channel_id") or ""), thread.get("thread_ts")
        if channel and thread_ts:
            self._spawn(self._suggest(channel, str(thread_ts)))

    async def _on_context_changed(self, payload: dict[str, Any]) -> None:
        """The user moved to another channel with the pane open; Glimpse does not read channels."""
        log.debug("slack: assistant thread context changed: %s", payload.get("assistant_thread"))

    async def _on_home_opened(self, event: dict[str, Any]) -> None:
        """Agent view: opening the Messages tab is the new thread; its prompts go to the DM."""
        if event.get("tab") == "messages" and event.get("channel"):
            self._spawn(self._suggest(str(event["channel"]), None))

    async def _suggest(self, channel: str, thread_ts: str | None) -> None:
        await self.threads.suggest(channel, thread_ts)


@asynccontextmanager
async def nothing_shown() -> AsyncIterator[bool]:
    """`SlackAssistant.working` for answers outside the assistant surface."""
    yield False
