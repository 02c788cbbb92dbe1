"""Where a Slack answer goes: a threaded message edited as the model streams, split past Slack's limits."""

from __future__ import annotations

import logging
import time
from collections.abc import Sequence
from typing import Any

from slack_sdk.errors import SlackApiError
from slack_sdk.web.async_client import AsyncWebClient

from adapters.slack_blocks import (
    MARKDOWN_BLOCK_CHARS,
    feedback_blocks,
    markdown_block,
    rating_buttons,
)
from adapters.slack_features import NATIVE_REFUSALS, WorkspaceFeatures
from adapters.slack_format import escape, to_mrkdwn, to_native_markdown
from adapters.split import split_message
from adapters.streaming import StreamingSink

__all__ = [
    "MAX_MESSAGE_CHARS",
    "BlocksRefused",
    "PIECE_CHARS",
    "MessageTooLong",
    "SlackNativeSink",
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
NATIVE_CALL_CHARS = 11_000  # markdown_text per chat.*Stream call (Slack: at most 12,000)
STOPPED_BY_USER = "stopped_by_user"
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


class SlackNativeSink:
    """Slack's own streaming (chat.startStream / appendStream / stopStream), ending with feedback buttons.

    The stream starts with the first text. If Slack refuses to start it, the whole answer goes out
    with chat.update edits instead (a `SlackReplySink`), and a refusal that means "not in this
    workspace" is remembered, so its next answers go there directly. If the stream breaks later,
    what Slack already shows stays and only the rest follows, in new messages: nothing is lost or
    shown twice. A person pressing Slack's stop ends the answer where it is.
    """

    def __init__(
        self,
        thread: SlackThread,
        *,
        react_ts: str | None,
        interval_seconds: float,
        team_id: str,
        user_id: str,
        features: WorkspaceFeatures,
    ) -> None:
        self._thread = thread
        self._react_ts = react_ts
        self._interval = interval_seconds
        self._recipient = (team_id, user_id)
        self._features = features
        self._fallback = SlackReplySink(
            thread,
            react_ts=None,
            interval_seconds=interval_seconds,
            features=features,
            team=team_id,
        )
        self._ts: str | None = None  # the streamed message, once started
        self._sent = ""  # the answer text Slack shows in the stream
        self._broken = False  # the rest goes through the fallback
        self._stopped = False  # stopped by the person in Slack
        self._model: str | None = None
        self._last_append = 0.0

    def answered_by(self, model: str) -> None:
        self._model = model
        self._fallback.answered_by(model)

    async def start(self) -> None:
        if self._react_ts:
            await self._thread.react(self._react_ts, add=True)

    @property
    def reply_id(self) -> str:
        """The stream's message (chat.startStream's ts), or the fallback's first message."""
        return self._ts or self._fallback.reply_id

    async def update(self, text: str) -> None:
        if self._broken:
            await self._fallback.update(self._rest(text))
        elif not self._stopped and time.monotonic() - self._last_append >= self._interval:
            await self._stream(text, final=False)

    async def finish(self, text: str) -> None:
        await self._end(text, rated=True)

    async def fail(self, text: str) -> None:
        await self._end(text, rated=False)

    async def notice(self, text: str) -> None:
        await self._fallback.notice(text)

    async def _end(self, text: str, *, rated: bool) -> None:
        try:
            if not self._broken and not self._stopped:
                await self._stream(text, final=True, rated=rated)
            if self._broken:
                rest = self._rest(text)
                await (self._fallback.finish(rest) if rated else self._fallback.fail(rest))
        finally:
            if self._react_ts:
                await self._thread.react(self._react_ts, add=False)

    def _rest(self, text: str) -> str:
        """What Slack does not show yet: everything, or what follows the streamed part."""
        return text[len(self._sent) :].lstrip("\n") if text.startswith(self._sent) else text

    async def _stream(self, text: str, *, final: bool, rated: bool = False) -> None:
        """Send what is new since the last call; a trailing "<" waits, so no ping markup is split in two."""
        if not text.startswith(self._sent):
            text = self._sent + "\n\n" + text
        ready = text if final or not text.endswith("<") else text[:-1]
        delta = ready[len(self._sent) :]
        try:
            for piece in _pieces(to_native_markdown(delta)):
                await self._append(piece)
            self._sent = ready  # (a break between pieces shows the delta again rather than lose it)
            if final:
                await self._stop(self._feedback() if rated else None)
        except SlackApiError as exc:
            self._break(exc)
            if self._broken and self._ts is not None:
                await self._close_quietly()
            return
        self._last_append = time.monotonic()

    async def _append(self, markdown: str) -> None:
        client, channel = self._thread.client, self._thread.channel
        if self._ts is None:
            team, user = self._recipient
            response = await client.chat_startStream(
                channel=channel,
                thread_ts=self._thread.thread_ts or "",
                recipient_team_id=team,
                recipient_user_id=user,
                markdown_text=markdown,
            )
            self._ts = str(response["ts"])
        else:
            await client.chat_appendStream(channel=channel, ts=self._ts, markdown_text=markdown)

    async def _stop(self, blocks: list[dict[str, Any]] | None) -> None:
        if self._ts is None:
            return  # nothing was said: no stream to end
        await self._thread.client.chat_stopStream(
            channel=self._thread.channel, ts=self._ts, blocks=blocks
        )

    async def _close_quietly(self) -> None:
        """End a broken stream where it is, so Slack stops showing it as in progress (best effort)."""
        assert self._ts is not None
        try:
            await self._thread.client.chat_stopStream(channel=self._thread.channel, ts=self._ts)
        except SlackApiError as exc:
            log.info(
                "slack: could not end the broken stream in %s: %s",
                self._thread.channel,
                slack_error(exc),
            )

    def _feedback(self) -> list[dict[str, Any]] | None:
        return feedback_blocks(self._model) if self._model else None

    def _break(self, exc: SlackApiError) -> None:
        error = slack_error(exc)
        if error == STOPPED_BY_USER:
            log.info("slack: the answer in %s was stopped in Slack", self._thread.channel)
            self._stopped = True
            return
        if self._ts is None and error in NATIVE_REFUSALS:
            self._features.refuse(self._recipient[0], "native streaming", error)
        log.warning(
            "slack: native streaming %s in %s (%s); the rest goes out with chat.update",
            "failed" if self._ts is not None else "refused",
            self._thread.channel,
            error,
        )
        self._broken = True


def _pieces(markdown: str) -> list[str]:
    """Slack takes at most 12,000 characters of markdown_text per call."""
    step = NATIVE_CALL_CHARS
    return [markdown[at : at + step] for at in range(0, len(markdown), step)]


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
