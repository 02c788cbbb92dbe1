"""Slack's own streaming (chat.startStream / appendStream / stopStream), ending with feedback buttons."""

from __future__ import annotations

import logging
import time
from typing import Any

import aiohttp
from slack_sdk.errors import SlackApiError

from adapters.slack_blocks import feedback_blocks
from adapters.slack_features import NATIVE_REFUSALS, WorkspaceFeatures
from adapters.slack_format import to_native_markdown
from adapters.slack_sink import SlackReplySink, SlackThread, slack_error

__all__ = ["SlackNativeSink"]

log = logging.getLogger("glimpse.slack")

NATIVE_CALL_CHARS = 11_000  # markdown_text per chat.*Stream call (Slack: at most 12,000)
STOPPED_BY_USER = "stopped_by_user"  # the person pressed Slack's stop: no more appends


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
        except (SlackApiError, aiohttp.ClientError, TimeoutError) as exc:
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
        except (SlackApiError, aiohttp.ClientError, TimeoutError) as exc:
            log.info(
                "slack: could not end the broken stream in %s: %s",
                self._thread.channel,
                slack_error(exc) if isinstance(exc, SlackApiError) else type(exc).__name__,
            )

    def _feedback(self) -> list[dict[str, Any]] | None:
        return feedback_blocks(self._model) if self._model else None

    def _break(self, exc: Exception) -> None:
        error = slack_error(exc) if isinstance(exc, SlackApiError) else type(exc).__name__
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
