"""Where a Slack answer goes: a threaded message edited as the model streams, split past Slack's limits.

Slack's own streaming, tried first where the workspace allows it, is in `adapters.slack_native`.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from typing import Any

from slack_sdk.errors import SlackApiError
from slack_sdk.web.async_client import AsyncWebClient

from adapters.slack_blocks import (
    MARKDOWN_BLOCK_CHARS,
    markdown_block,
    rating_buttons,
)
from adapters.slack_features import WorkspaceFeatures
from adapters.slack_format import escape, to_mrkdwn, to_native_markdown
from adapters.split import split_message
from adapters.streaming import StreamingSink

__all__ = [
    "MAX_MESSAGE_CHARS",
    "BlocksRefused",
    "PIECE_CHARS",
    "MessageTooLong",
    "SlackReplySink",
    "SlackThread",
    "SlackUnavailable",
    "question_text",
    "slack_error",
]

log = logging.getLogger("glimpse.slack")

# Slack truncates long messages and refuses long edits (msg_too_long); stay well under 4,000.
MAX_MESSAGE_CHARS = 3_900
# Raw Markdown per message before mrkdwn escaping (which only grows text) takes it toward the cap.
PIECE_CHARS = 3_500
MIN_PIECE_CHARS = 500
WORKING_REACTION = "eyes"
# The channel is gone or closed to the bot: log once and stop trying.
UNAVAILABLE_ERRORS = frozenset(
    {
        "not_in_channel",
        "channel_not_found",
        "is_archived",
        "restricted_action",
        "cannot_reply_to_message",
    }
)
BLOCK_ERRORS = frozenset({"invalid_blocks", "invalid_blocks_format", "msg_blocks_too_long"})
IGNORED_REACTION_ERRORS = frozenset({"already_reacted", "no_reaction", "message_not_found"})
# Answer text per message in a markdown block: under Slack's 12,000 once pings are defused.
MARKDOWN_PIECE_CHARS = 11_000
SECTION_CHARS = 3_000  # a section block's text (the mrkdwn fallback's buttons need one)
NOTIFICATION_CHARS = 3_000  # the `text` beside blocks only shows in notifications


class SlackUnavailable(Exception):
    """Slack will not take messages in this channel (the bot is not a member, or it is gone)."""


class BlocksRefused(Exception):
    """Slack refused a message's blocks (a block type it does not know here, blocks too long)."""


class MessageTooLong(Exception):
    """A message was over Slack's length limit (`msg_too_long`, or over ours before sending)."""


def slack_error(exc: SlackApiError) -> str:
    """Slack's error code (`not_in_channel`, `ratelimited`, …), or the HTTP status if the body was not JSON."""
    data = getattr(exc.response, "data", None)
    if isinstance(data, dict) and data.get("error"):
        return str(data["error"])
    return f"HTTP {getattr(exc.response, 'status_code', '?')}"


class SlackThread:
    """The Web API calls one reply needs, with Slack's errors sorted into what to do next."""

    def __init__(self, client: AsyncWebClient, *, channel: str, thread_ts: str | None) -> None:
        self.client = client
        self.channel = channel
        self.thread_ts = thread_ts

    async def post(self, text: str, *, blocks: list[dict[str, Any]] | None = None) -> str:
        """Post mrkdwn `text` (with `blocks`, only the notification) in the thread; its ts."""
        self._check_length(text)
        try:
            response = await self.client.chat_postMessage(
                channel=self.channel,
                thread_ts=self.thread_ts,
                text=text,
                blocks=blocks,
                unfurl_links=False,
                unfurl_media=False,
            )
        except SlackApiError as exc:
            raise self._translate(exc, "chat.postMessage") from None
        return str(response["ts"])

    async def edit(self, ts: str, text: str, *, blocks: list[dict[str, Any]] | None = None) -> None:
        """Replace a message's text and blocks (`[]` removes its blocks; None keeps them)."""
        self._check_length(text)
        try:
            await self.client.chat_update(channel=self.channel, ts=ts, text=text, blocks=blocks)
        except SlackApiError as exc:
            raise self._translate(exc, "chat.update") from None

    async def react(self, ts: str, *, add: bool) -> None:
        """Best effort: a missing reaction never costs the answer."""
        method = self.client.reactions_add if add else self.client.reactions_remove
        try:
            await method(channel=self.channel, timestamp=ts, name=WORKING_REACTION)
        except SlackApiError as exc:
            if slack_error(exc) not in IGNORED_REACTION_ERRORS:
                log.warning(
                    "slack: could not %s :%s: on %s in %s: %s",
                    "add" if add else "remove",
                    WORKING_REACTION,
                    ts,
                    self.channel,
                    slack_error(exc),
                )

    def _check_length(self, text: str) -> None:
        if len(text) > MAX_MESSAGE_CHARS:
            raise MessageTooLong(f"{len(text)} characters")

    def _translate(self, exc: SlackApiError, method: str) -> Exception:
        error = slack_error(exc)
        if error == "msg_too_long":
            return MessageTooLong(method)
        if error in UNAVAILABLE_ERRORS:
            return SlackUnavailable(error)
        if error in BLOCK_ERRORS:
            return BlocksRefused(error)
        log.error("slack: %s in %s failed: %s", method, self.channel, error)
        return exc


class SlackReplySink(StreamingSink):
    """One answer in one thread: a message edited at most once per interval, more messages past the limit.

    Each message is a `markdown` block (Slack renders the model's Markdown itself), with the mrkdwn
    conversion as its notification text; where Slack refuses the block, the mrkdwn conversion is
    the message, in smaller pieces. A finished answer ends with 👍/👎 buttons once the core has
    said which model wrote it. The ":eyes:" reaction on the question says the model is working.
    """

    def __init__(
        self,
        thread: SlackThread,
        *,
        react_ts: str | None,
        interval_seconds: float,
        features: WorkspaceFeatures | None = None,
        team: str = "",
    ) -> None:
        self._features = features or WorkspaceFeatures()
        self._team = team
        self._markdown = self._features.allows(team, "markdown block")
        limit = MARKDOWN_PIECE_CHARS if self._markdown else PIECE_CHARS
        super().__init__(limit=limit, interval_seconds=interval_seconds)
        self._thread = thread
        self._react_ts = react_ts
        self._unavailable = False
        self._model: str | None = None
        self._with_blocks: set[str] = set()  # messages posted with blocks

    def answered_by(self, model: str) -> None:
        self._model = model

    def _marks_last(self) -> bool:
        return self._model is not None

    async def _post(self, text: str) -> str:
        return await self._send(None, text, rated=False)

    async def _edit(self, handle: str, text: str) -> None:
        await self._send(handle, text, rated=False)

    async def _post_last(self, text: str) -> str:
        return await self._send(None, text, rated=True)

    async def _edit_last(self, handle: str, text: str) -> None:
        await self._send(handle, text, rated=True)

    async def _send(self, ts: str | None, text: str, *, rated: bool) -> str:
        mrkdwn = to_mrkdwn(text)
        blocks: list[dict[str, Any]] | None = None
        if self._markdown:
            markdown = to_native_markdown(text)
            if len(markdown) > MARKDOWN_BLOCK_CHARS:
                raise MessageTooLong(f"{len(markdown)} characters of Markdown")
            blocks, mrkdwn = [markdown_block(markdown)], _notification(mrkdwn)
        if rated and self._model and (blocks is not None or len(mrkdwn) <= SECTION_CHARS):
            if blocks is None:
                blocks = [{"type": "section", "text": {"type": "mrkdwn", "text": mrkdwn}}]
            blocks.append(rating_buttons(self._model))
        if blocks is None and ts in self._with_blocks:
            blocks = []  # chat.update keeps a message's blocks unless told to drop them
        if ts is None:
            ts = await self._thread.post(mrkdwn, blocks=blocks)
        else:
            await self._thread.edit(ts, mrkdwn, blocks=blocks)
        (self._with_blocks.add if blocks else self._with_blocks.discard)(ts)
        return ts

    async def _on_start(self) -> None:
        if self._react_ts and not self._unavailable:
            await self._thread.react(self._react_ts, add=True)

    async def _on_end(self) -> None:
        if self._react_ts and not self._unavailable:
            await self._thread.react(self._react_ts, add=False)

    async def notice(self, text: str) -> None:
        if self._unavailable:
            return
        try:
            # A long note (many refused files) goes in several messages.
            for piece in split_message(text, PIECE_CHARS):
                await self._thread.post(to_mrkdwn(piece))
        except SlackUnavailable as exc:
            self._give_up(exc)

    async def _show(self, text: str) -> None:
        """Show `text`, in smaller pieces each time Slack says a message is too long."""
        while not self._unavailable:
            try:
                await super()._show(text)
                return
            except SlackUnavailable as exc:
                self._give_up(exc)
            except BlocksRefused as exc:
                self._refused(str(exc))
            except MessageTooLong as exc:
                if self._limit <= MIN_PIECE_CHARS:
                    raise
                self._limit = max(MIN_PIECE_CHARS, self._limit * 2 // 3)
                log.warning(
                    "slack: message too long in %s (%s); splitting at %d characters",
                    self._thread.channel,
                    exc,
                    self._limit,
                )

    def _refused(self, error: str) -> None:
        """Blocks refused: the markdown block goes (for the workspace), then the buttons."""
        if self._markdown:
            self._features.refuse(self._team, "markdown block", error)
            self._markdown, self._limit = False, PIECE_CHARS
        elif self._model is not None:
            log.warning("slack: rating buttons refused in %s (%s)", self._thread.channel, error)
            self._model = None
        else:
            raise BlocksRefused(error)

    def _give_up(self, exc: SlackUnavailable) -> None:
        if not self._unavailable:
            log.warning(
                "slack: cannot post in %s (%s); skipping this reply", self._thread.channel, exc
            )
        self._unavailable = True


def _notification(mrkdwn: str) -> str:
    """The `text` beside blocks, which Slack shows in notifications: the start of the answer."""
    if len(mrkdwn) <= NOTIFICATION_CHARS:
        return mrkdwn
    return mrkdwn[: NOTIFICATION_CHARS - 1].rsplit(" ", 1)[0] + "…"


def question_text(
    user_id: str, question: str, *, attachments: Sequence[str] = (), limit: int = 3_000
) -> str:
    """What `/ask` posts as the bot: "*@user asks:* …" (mentioning only the asker), plus the files read."""
    shown = question if len(question) <= limit else question[: limit - 1] + "…"
    about = f" _(about {escape(', '.join(attachments))})_" if attachments else ""
    return f"*<@{user_id}> asks:* {escape(shown)}{about}"
