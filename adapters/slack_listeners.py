"""Bolt listeners for Glimpse: ack Slack at once, then answer in a tracked task through the core."""

from __future__ import annotations

import asyncio
import logging
import time
from collections import OrderedDict
from collections.abc import Coroutine, Mapping
from typing import Any

from slack_bolt.async_app import AsyncApp
from slack_bolt.context.ack.async_ack import AsyncAck
from slack_bolt.context.async_context import AsyncBoltContext
from slack_bolt.context.respond.async_respond import AsyncRespond
from slack_bolt.request.async_request import AsyncBoltRequest
from slack_sdk.errors import SlackApiError
from slack_sdk.web.async_client import AsyncWebClient

from adapters.slack_assistant import AssistantThreads, SlackAssistant, nothing_shown
from adapters.slack_context import SlackContext
from adapters.slack_events import (
    PLATFORM,
    conversation_key,
    from_command,
    ignore_reason,
    is_direct,
    is_reply,
    latest_uploads,
    mentions,
    thread_of,
)
from adapters.slack_features import WorkspaceFeatures
from adapters.slack_feedback import SlackFeedback
from adapters.slack_format import from_slack, is_reset
from adapters.slack_native import SlackNativeSink
from adapters.slack_shortcuts import AskShortcut
from adapters.slack_sink import (
    SlackReplySink,
    SlackThread,
    SlackUnavailable,
    question_text,
    slack_error,
)
from bot.config import SlackSettings
from bot.conversations import Conversations, Status
from bot.inbox import with_headers
from bot.messages import ConversationKey, IncomingMessage, ReplySink

__all__ = ["SlackListeners"]

log = logging.getLogger("glimpse.slack")

REMEMBERED_THREADS = 10_000  # (team, channel, user) -> latest conversation, for `/reset`
REMEMBERED_RESETS = 1_000
UPLOAD_LOOKBACK_SECONDS = 10 * 60  # `/ask` reads the asker's files posted this recently
HISTORY_MESSAGES = 50
USAGE = (
    "Ask me anything: `{command} what does this error mean?` I answer in a thread; reply there "
    "to follow up. To ask about a picture or a file (a log, code, a PDF), upload it here first (or "
    "in a message that @mentions me). `{command} reset` forgets our latest conversation here. "
    "`{command} model` shows the model answering in this channel; admins change it with "
    "`{command} model NAME` (`{command} model default` goes back to the configured one)."
)
RESET_DONE = "Done: I've forgotten this conversation. Mention me to start a new one."
RESET_RECENT_DONE = "Done: I've forgotten our latest conversation in this channel."
RESET_WHERE = (
    "I don't remember a recent conversation of ours here. To make me forget a thread, write "
    "`reset` in it (mention me if I haven't answered there): Slack doesn't tell apps which thread "
    "a slash command was typed in."
)
RESET_FAILED = "I couldn't reach my memory to forget that. Please try again in a minute."
MODEL_WORD = "model"
CLEAR_MODEL = "default"
CANNOT_POST = (
    "I can't post in this conversation. In a channel, add me first (`/invite @{name}`); "
    "elsewhere, send me a direct message instead."
)

Work = Coroutine[Any, Any, None]


class SlackListeners:
    """The `/ask` and reset commands, mentions, thread follow-ups and DMs, registered on a Bolt app.

    Each listener only acks and starts a task; `drain()` waits for the tasks (tests, shutdown).
    """

    def __init__(
        self,
        conversations: Conversations,
        settings: SlackSettings,
        *,
        client: AsyncWebClient,
        bot_token: str,
    ) -> None:
        self._conversations = conversations
        self._settings = settings
        self._client = client
        self._token = bot_token
        self.context = SlackContext(client, bot_token=bot_token)
        self.bot_name = "glimpse"
        self._tasks: set[asyncio.Task[None]] = set()
        self._recent: OrderedDict[tuple[str, str, str], ConversationKey] = OrderedDict()
        self._resets: OrderedDict[str, None] = OrderedDict()
        self.assistant = (
            SlackAssistant(
                AssistantThreads(client, prompts=settings.suggested_prompts),
                is_active=conversations.is_active,
                spawn=self._spawn,
            )
            if settings.assistant
            else None
        )
        self.features = WorkspaceFeatures()  # what each workspace refused (native streaming…)
        self.feedback = SlackFeedback(conversations.feedback, spawn=self._spawn)

    def register(self, app: AsyncApp) -> None:
        app.command(_slash(self._settings.command))(self._on_ask)
        if self._settings.reset_command:
            app.command(_slash(self._settings.reset_command))(self._on_reset_command)
        app.event("app_mention")(self._on_mention)
        app.event("message")(self._on_message)
        if self.assistant is not None:
            self.assistant.register(app)
        if self._settings.shortcut:
            AskShortcut(
                callback_id=self._settings.shortcut,
                client=self._client,
                context=self.context,
                bot_token=self._token,
                answer=self._answer_shortcut,
                spawn=self._spawn,
                bot_name=lambda: self.bot_name,
            ).register(app)
        self.feedback.register(app)

    async def drain(self, timeout_seconds: float | None = None) -> None:
        """Wait for the answers in flight: all of them, or until the timeout, then cancel the rest."""
        while self._tasks:
            _, pending = await asyncio.wait(set(self._tasks), timeout=timeout_seconds)
            if pending and timeout_seconds is not None:
                for task in pending:
                    task.cancel()
                await asyncio.gather(*pending, return_exceptions=True)
                return

    # --- listeners: ack, then a task ---

    async def _on_ask(
        self,
        ack: AsyncAck,
        command: dict[str, Any],
        respond: AsyncRespond,
        context: AsyncBoltContext,
    ) -> None:
        text = from_slack(str(command.get("text") or ""), bot_user_id=context.bot_user_id)
        if not text:
            usage = USAGE.format(command=_slash(self._settings.command))
            await ack(text=usage, response_type="ephemeral")
            return
        await ack()
        if is_reset(text):
            self._spawn(self._reset_command(command, respond))
        elif _model_request(text) is not None:
            self._spawn(self._model_command(command, _model_request(text) or "", respond))
        else:
            self._spawn(self._ask(command, text, respond))

    async def _on_reset_command(
        self, ack: AsyncAck, command: dict[str, Any], respond: AsyncRespond
    ) -> None:
        await ack()
        self._spawn(self._reset_command(command, respond))

    async def _on_mention(
        self, event: dict[str, Any], context: AsyncBoltContext, request: AsyncBoltRequest
    ) -> None:
        _note_retry(request, event)
        if ignore_reason(event) is None:
            self._spawn(self._on_person(event, context, addressed=True))

    async def _on_message(
        self, event: dict[str, Any], context: AsyncBoltContext, request: AsyncBoltRequest
    ) -> None:
        _note_retry(request, event)
        reason = ignore_reason(event)
        if reason is not None:
            log.debug("slack: ignoring message %s: %s", event.get("ts"), reason)
            return
        addressed = is_direct(event) or mentions(event, context.bot_user_id)
        self._spawn(self._on_person(event, context, addressed=addressed))

    async def answer_missed(self, event: dict[str, Any], *, bot_user_id: str, bot_id: str) -> None:
        """A message the catch-up found after downtime (adapters.slack_catch_up), routed as the
        `message` event Slack did not deliver."""
        context = AsyncBoltContext(
            team_id=str(event.get("team") or ""), bot_user_id=bot_user_id, bot_id=bot_id
        )
        addressed = is_direct(event) or mentions(event, bot_user_id)
        await self._on_person(event, context, addressed=addressed)

    # --- the work ---

    async def _ask(self, command: Mapping[str, Any], text: str, respond: AsyncRespond) -> None:
        """Post the question as the bot, then answer in that message's thread."""
        channel, user = str(command["channel_id"]), str(command["user_id"])
        files, author = await asyncio.gather(
            self._recent_uploads(channel, user), self.context.command_author(command)
        )
        top = SlackThread(self._client, channel=channel, thread_ts=None)
        names = [str(file.get("name") or file.get("title") or "file") for file in files]
        try:
            question_ts = await top.post(question_text(user, text, attachments=names))
        except SlackUnavailable as exc:
            log.warning("slack: cannot post a question in %s (%s); told %s", channel, exc, user)
            await respond(text=CANNOT_POST.format(name=self.bot_name), response_type="ephemeral")
            return
        message = from_command(
            command,
            question_ts=question_ts,
            text=text,
            files=files,
            bot_token=self._token,
            author_name=author,
        )
        await self._answer(message, react_ts=question_ts)

    async def _recent_uploads(self, channel: str, user: str) -> list[Mapping[str, Any]]:
        """Slash commands carry no files: the asker's latest upload here in the last few minutes."""
        oldest = f"{time.time() - UPLOAD_LOOKBACK_SECONDS:.6f}"
        try:
            history = await self._client.conversations_history(
                channel=channel, oldest=oldest, limit=HISTORY_MESSAGES
            )
        except SlackApiError as exc:
            log.info("slack: no recent uploads read in %s: %s", channel, slack_error(exc))
            return []
        uploads = latest_uploads(history.get("messages") or [], user)
        return list((await self.context.complete_files({"files": uploads}))["files"])

    async def _on_person(
        self, event: dict[str, Any], context: AsyncBoltContext, *, addressed: bool
    ) -> None:
        """Answered if it is for us (mention, DM) or continues a thread we answered in.

        A mention in a thread we have not answered in brings the thread's first message along.
        """
        team_id = str(context.team_id or event.get("team") or "")
        key = conversation_key(team_id, str(event["channel"]), thread_of(event))
        active = bool(event.get("thread_ts")) and await self._conversations.is_active(key)
        if not addressed and not active:
            return
        message = await self.context.message(
            event,
            team_id=team_id,
            bot_user_id=context.bot_user_id,
            bot_id=context.bot_id,
            with_parent=is_reply(event) and not active,
        )
        if is_reset(message.text) and not (message.images or message.files):
            await self._reset_message(message, in_thread=bool(event.get("thread_ts")))
        else:
            await self._answer(message, react_ts=str(event["ts"]))

    async def _answer_shortcut(self, message: IncomingMessage, react_ts: str) -> None:
        await self._answer(message, react_ts=react_ts)

    async def _answer(self, message: IncomingMessage, *, react_ts: str) -> None:
        working = (
            self.assistant.working(message)
            if self.assistant is not None and message.is_direct
            else nothing_shown()
        )
        async with working as shown:  # Slack's "is thinking…" status replaces the :eyes: reaction
            outcome = await self._conversations.handle(
                message, self._sink(message, "" if shown else react_ts)
            )
        if outcome.status is Status.ANSWERED:
            recent = (message.key.workspace, message.key.channel, message.author_id)
            _remember(self._recent, recent, message.key, REMEMBERED_THREADS)
        log.info(
            "slack: message %s in %s: %s", message.message_id, message.key, outcome.status.value
        )

    def _sink(self, message: IncomingMessage, react_ts: str) -> ReplySink:
        thread = SlackThread(
            self._client, channel=message.key.channel, thread_ts=message.key.thread
        )
        interval = self._settings.update_interval_seconds
        team = message.key.workspace
        if self._settings.native_streaming and self.features.allows(team, "native streaming"):
            return SlackNativeSink(
                thread,
                react_ts=react_ts,
                interval_seconds=interval,
                team_id=team,
                user_id=message.author_id,
                features=self.features,
            )
        return SlackReplySink(
            thread, react_ts=react_ts, interval_seconds=interval, features=self.features, team=team
        )

    async def reopen(
        self, message: IncomingMessage, reply_id: str
    ) -> tuple[IncomingMessage, ReplySink]:
        """For the inbox: the message with the bot token on its files again, and a sink that edits
        the interrupted answer's message `reply_id` (chat.update on its ts), or posts in the thread."""
        thread = SlackThread(
            self._client, channel=message.key.channel, thread_ts=message.key.thread
        )
        sink = SlackReplySink(
            thread,
            react_ts=None,
            interval_seconds=self._settings.update_interval_seconds,
            features=self.features,
            team=message.key.workspace,
        )
        if reply_id:
            sink.reopen(reply_id)
        token = {"Authorization": f"Bearer {self._token}"}
        return with_headers(message, lambda _url: token), sink

    # --- forgetting ---

    async def _reset_message(self, message: IncomingMessage, *, in_thread: bool) -> None:
        """`reset` in a thread forgets it; outside a thread, the user's latest conversation there.

        Done once even when Slack delivers the message twice (as a mention and as a message).
        """
        if message.message_id in self._resets:
            return
        _remember(self._resets, message.message_id, None, REMEMBERED_RESETS)
        if in_thread:
            reply = RESET_DONE if await self._conversations.reset(message.key) else RESET_FAILED
        else:
            who = (message.key.workspace, message.key.channel, message.author_id)
            reply = await self._forget(self._recent.pop(who, None))
        thread = SlackThread(
            self._client, channel=message.key.channel, thread_ts=message.key.thread
        )
        await SlackReplySink(thread, react_ts=None, interval_seconds=1.0).notice(reply)

    async def _reset_command(self, command: Mapping[str, Any], respond: AsyncRespond) -> None:
        """Slash commands carry no thread, so `/reset` forgets the user's latest conversation here."""
        who = (str(command["team_id"]), str(command["channel_id"]), str(command["user_id"]))
        reply = await self._forget(self._recent.pop(who, None))
        await respond(text=reply, response_type="ephemeral")

    # --- the channel's model ---

    async def _model_command(
        self, command: Mapping[str, Any], name: str, respond: AsyncRespond
    ) -> None:
        """`/ask model` shows the channel's model; `/ask model NAME` sets it, `default` clears it.

        A slash command carries no thread, so this is always the channel's own model.
        """
        team, channel = str(command["team_id"]), str(command["channel_id"])
        if not name:
            reply = await self._conversations.describe_channel_model(PLATFORM, team, channel)
        else:
            reply = await self._conversations.set_channel_model(
                PLATFORM,
                team,
                channel,
                None if name.lower() == CLEAR_MODEL else name,
                user_id=str(command["user_id"]),
            )
        await respond(text=reply, response_type="ephemeral")

    async def _forget(self, key: ConversationKey | None) -> str:
        if key is None:
            return RESET_WHERE
        return RESET_RECENT_DONE if await self._conversations.reset(key) else RESET_FAILED

    # --- helpers ---

    def _spawn(self, work: Work) -> None:
        task = asyncio.create_task(_logged(work))
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)


def _slash(command: str) -> str:
    return command if command.startswith("/") else f"/{command}"


def _model_request(text: str) -> str | None:
    """`model` -> "", `model NAME` -> NAME; None when the text is a question, not this command."""
    word, _, rest = text.strip().partition(" ")
    if word.lower() != MODEL_WORD:
        return None
    rest = rest.strip().strip("`")
    return rest if " " not in rest else None  # "model of this car?" stays a question


def _note_retry(request: AsyncBoltRequest, event: Mapping[str, Any]) -> None:
    retry = request.headers.get("x-slack-retry-num")
    if retry:
        reason = (request.headers.get("x-slack-retry-reason") or ["?"])[0]
        log.info("slack: Slack resent message %s (retry %s, %s)", event.get("ts"), retry[0], reason)


def _remember(cache: OrderedDict[Any, Any], key: Any, value: Any, limit: int) -> None:
    cache[key] = value
    cache.move_to_end(key)
    while len(cache) > limit:
        cache.popitem(last=False)


async def _logged(work: Work) -> None:
    try:
        await work
    except Exception:
        log.exception("slack: handling a Slack request failed")
