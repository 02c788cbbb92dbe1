"""Where a Slack answer goes: a threaded message edited as the model streams, split past Slack's limits."""

from __future__ import annotations

import logging
import time
from collections.abc import Sequence

from slack_sdk.errors import SlackApiError
from slack_sdk.web.async_chat_stream import AsyncChatStream
from slack_sdk.web.async_client import AsyncWebClient

from adapters.slack_format import escape, to_mrkdwn, to_native_markdown
from adapters.split import split_message
from adapters.streaming import StreamingSink

__all__ = [
    "MAX_MESSAGE_CHARS",
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
IGNORED_REACTION_ERRORS = frozenset({"already_reacted", "no_reaction", "message_not_found"})
NATIVE_BUFFER_CHARS = 64


class SlackUnavailable(Exception):
    """Slack will not take messages in this channel (the bot is not a member, or it is gone)."""


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

    async def post(self, text: str) -> str:
        """Post mrkdwn `text` in the thread (or the channel, without a thread); its ts."""
        self._check_length(text)
        try:
            response = await self.client.chat_postMessage(
                channel=self.channel,
                thread_ts=self.thread_ts,
                text=text,
                unfurl_links=False,
                unfurl_media=False,
            )
        except SlackApiError as exc:
            raise self._translate(exc, "chat.postMessage") from None
        return str(response["ts"])

    async def edit(self, ts: str, text: str) -> None:
        self._check_length(text)
        try:
            await self.client.chat_update(channel=self.channel, ts=ts, text=text)
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
        log.error("slack: %s in %s failed: %s", method, self.channel, error)
        return exc


class SlackReplySink(StreamingSink):
    """One answer in one thread: a message edited at most once per interval, more messages past the limit.

    The ":eyes:" reaction on the question says the model is working; it goes when the answer ends.
    """

    def __init__(
        self, thread: SlackThread, *, react_ts: str | None, interval_seconds: float
    ) -> None:
        super().__init__(limit=PIECE_CHARS, interval_seconds=interval_seconds)
        self._thread = thread
        self._react_ts = react_ts
        self._unavailable = False

    async def _post(self, text: str) -> str:
        return await self._thread.post(to_mrkdwn(text))

    async def _edit(self, handle: str, text: str) -> None:
        await self._thread.edit(handle, to_mrkdwn(text))

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

    def _give_up(self, exc: SlackUnavailable) -> None:
        if not self._unavailable:
            log.warning(
                "slack: cannot post in %s (%s); skipping this reply", self._thread.channel, exc
            )
        self._unavailable = True


class SlackNativeSink:
    """Slack's own streaming (chat.startStream / appendStream / stopStream), where the workspace has it.

    Falls back to a `SlackReplySink` (edits with chat.update) if Slack refuses to start the stream.
    """

    def __init__(
        self,
        thread: SlackThread,
        *,
        react_ts: str | None,
        interval_seconds: float,
        team_id: str,
        user_id: str,
    ) -> None:
        self._thread = thread
        self._react_ts = react_ts
        self._interval = interval_seconds
        self._recipient = (team_id, user_id)
        self._fallback = SlackReplySink(thread, react_ts=None, interval_seconds=interval_seconds)
        self._stream: AsyncChatStream | None = None
        self._failed_over = False
        self._sent = ""
        self._last_append = 0.0

    async def start(self) -> None:
        if self._react_ts:
            await self._thread.react(self._react_ts, add=True)
        self._stream = await self._thread.client.chat_stream(
            channel=self._thread.channel,
            thread_ts=self._thread.thread_ts or "",
            recipient_team_id=self._recipient[0],
            recipient_user_id=self._recipient[1],
            buffer_size=NATIVE_BUFFER_CHARS,
        )

    @property
    def reply_id(self) -> str:
        """The stream's message (chat.startStream's ts), or the fallback's first message."""
        if self._stream is not None and self._stream.ts:
            return str(self._stream.ts)
        return self._fallback.reply_id

    async def update(self, text: str) -> None:
        if self._failed_over:
            await self._fallback.update(text)
        elif time.monotonic() - self._last_append >= self._interval:
            await self._append(text, final=False)

    async def finish(self, text: str) -> None:
        await self._end(text)

    async def fail(self, text: str) -> None:
        await self._end(text)

    async def notice(self, text: str) -> None:
        await self._fallback.notice(text)

    async def _end(self, text: str) -> None:
        try:
            if not self._failed_over:
                await self._append(text, final=True)
            if self._failed_over:
                await self._fallback.finish(text)
        finally:
            if self._react_ts:
                await self._thread.react(self._react_ts, add=False)

    async def _append(self, text: str, *, final: bool) -> None:
        """Send what is new since the last call; a trailing "<" waits, so no ping markup is split in two."""
        if not text.startswith(self._sent):
            text = self._sent + "\n\n" + text
        ready = text if final or not text.endswith("<") else text[:-1]
        delta = to_native_markdown(ready[len(self._sent) :])
        if self._stream is None:
            raise RuntimeError("SlackNativeSink.start() must come first")
        try:
            if final:
                await self._stream.stop(markdown_text=delta or None)
            elif delta:
                await self._stream.append(markdown_text=delta)
        except SlackApiError as exc:
            self._fail_over(exc)
            return
        self._sent = ready
        self._last_append = time.monotonic()

    def _fail_over(self, exc: SlackApiError) -> None:
        log.warning(
            "slack: native streaming failed in %s (%s); answering with chat.update instead",
            self._thread.channel,
            slack_error(exc),
        )
        self._failed_over = True


def question_text(
    user_id: str, question: str, *, attachments: Sequence[str] = (), limit: int = 3_000
) -> str:
    """What `/ask` posts as the bot: "*@user asks:* …" (mentioning only the asker), plus the files read."""
    shown = question if len(question) <= limit else question[: limit - 1] + "…"
    about = f" _(about {escape(', '.join(attachments))})_" if attachments else ""
    return f"*<@{user_id}> asks:* {escape(shown)}{about}"
