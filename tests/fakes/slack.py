"""A loopback fake of Slack: the Web API, the private file host, Socket Mode, and signed requests to the app."""

from __future__ import annotations

import asyncio
import hashlib
import hmac
import itertools
import json
import time
import uuid
from collections import deque
from dataclasses import dataclass, field
from typing import Any, ClassVar
from urllib.parse import urlencode

from aiohttp import WSMsgType, web

from tests.fakes.server import LoopbackServer
from tests.fakes.slack_assistant import SCOPES as ASSISTANT_SCOPES
from tests.fakes.slack_assistant import AssistantThreadsApi

__all__ = [
    "APP_TOKEN",
    "BOT_ID",
    "BOT_TOKEN",
    "BOT_USER_ID",
    "SIGNING_SECRET",
    "TEAM_ID",
    "ApiCall",
    "FakeSlack",
    "Posted",
    "block_actions_body",
    "command_body",
    "event_body",
    "sign",
]

BOT_TOKEN = "xoxb-fake.bot.token.for.tests"  # dotted: never the shape of a real token
APP_TOKEN = "xapp-fake.app.token.for.tests"
SIGNING_SECRET = "fake-signing-secret-for-tests"
TEAM_ID = "T0FAKE001"
BOT_USER_ID = "U0GLIMPSE"
BOT_ID = "B0GLIMPSE"
APP_ID = "A0GLIMPSE"
# Slack refuses longer message text in chat.update and truncates posts; the fake refuses both.
MAX_TEXT_CHARS = 4_000
SOCKET_PATH = "/socket-mode"
# The bot scope a method needs (history scopes by the channel id's first letter).
HISTORY_SCOPES = {"C": "channels:history", "G": "groups:history", "D": "im:history"}
HISTORY_METHODS = frozenset({"conversations.history", "conversations.replies"})
METHOD_SCOPES = {"users.info": "users:read", "files.info": "files:read", **ASSISTANT_SCOPES}
BINARY = "application/octet-stream"  # what the file host says for a file of no known type
# The arguments Slack documents for the methods the fake checks strictly (token aside: a header).
DOCUMENTED_ARGS: dict[str, frozenset[str]] = {
    "chat.postMessage": frozenset(
        {"channel", "text", "blocks", "attachments", "thread_ts", "reply_broadcast", "mrkdwn",
         "parse", "link_names", "unfurl_links", "unfurl_media", "icon_emoji", "icon_url",
         "username", "metadata", "markdown_text", "as_user"}
    ),
    "chat.update": frozenset(
        {"channel", "ts", "text", "blocks", "attachments", "parse", "link_names", "metadata",
         "markdown_text", "reply_broadcast", "file_ids", "as_user"}
    ),
    "chat.startStream": frozenset(
        {"channel", "thread_ts", "markdown_text", "chunks", "recipient_user_id",
         "recipient_team_id", "task_display_mode", "icon_emoji", "icon_url", "username"}
    ),
    "chat.appendStream": frozenset({"channel", "ts", "markdown_text", "chunks"}),
    "conversations.history": frozenset(
        {"channel", "cursor", "include_all_metadata", "inclusive", "latest", "limit", "oldest"}
    ),
    "conversations.replies": frozenset(
        {"channel", "ts", "cursor", "include_all_metadata", "inclusive", "latest", "limit",
         "oldest"}
    ),
    "chat.stopStream": frozenset(
        {"channel", "ts", "markdown_text", "chunks", "blocks", "metadata", "session_status"}
    ),
}  # fmt: skip
MARKDOWN_TEXT_CHARS = 12_000  # markdown_text, and all markdown blocks of one message together
MAX_BLOCKS = 50


@dataclass(frozen=True, slots=True)
class ApiCall:
    """One Web API call the fake received: method name, arguments (form or JSON), headers."""

    method: str
    args: dict[str, Any]
    headers: dict[str, str]


@dataclass(slots=True)
class Posted:
    """A message as it stands now in the fake workspace."""

    channel: str
    ts: str
    text: str
    thread_ts: str | None
    user: str = BOT_USER_ID
    edits: int = 0
    deleted: bool = False
    blocks: list[dict[str, Any]] = field(default_factory=list)
    streaming: bool = False  # chat.startStream until chat.stopStream


@dataclass(slots=True)
class _Fault:
    error: str
    status: int
    retry_after: int | None


@dataclass
class FakeSlack(AssistantThreadsApi, LoopbackServer):
    """Slack's Web API on 127.0.0.1. Use as `async with FakeSlack() as slack:`; point the app at `slack.api_url`."""

    RUNNER_OPTIONS: ClassVar[dict[str, Any]] = {"shutdown_timeout": 0.5}

    bot_token: str = BOT_TOKEN
    app_token: str = APP_TOKEN
    team_id: str = TEAM_ID
    calls: list[ApiCall] = field(default_factory=list)
    messages: list[Posted] = field(default_factory=list)
    reactions: dict[tuple[str, str], set[str]] = field(default_factory=dict)
    responses: list[dict[str, Any]] = field(default_factory=list)  # bodies POSTed to response_url
    socket_acks: list[dict[str, Any]] = field(default_factory=list)
    file_downloads: list[tuple[str, str | None]] = field(
        default_factory=list
    )  # (path, Authorization)
    history: list[dict[str, Any]] = field(
        default_factory=list
    )  # people's messages (add_user_message)
    not_member_of: set[str] = field(default_factory=set)  # channels the bot was never added to
    # users.info's people, by id (add_user); unknown ids get user_not_found, as in Slack.
    users: dict[str, dict[str, Any]] = field(default_factory=dict)
    # Scopes the app was installed without: methods needing one answer missing_scope.
    withheld_scopes: set[str] = field(default_factory=set)
    delay_seconds: dict[str, float] = field(default_factory=dict)  # method -> wait before answering
    # A workspace without Slack's streaming: chat.startStream answers this error (e.g. unknown_method).
    refuse_streaming: str | None = None
    # A workspace that does not know the `markdown` block: messages carrying one get invalid_blocks.
    refuse_markdown_blocks: bool = False

    def __post_init__(self) -> None:
        self._faults: dict[str, deque[_Fault]] = {}
        self._files: dict[str, tuple[bytes, str]] = {}
        self._file_objects: dict[str, dict[str, Any]] = {}
        self._ts = itertools.count(1)
        self._sockets: list[web.WebSocketResponse] = []
        self._socket_connected = asyncio.Event()

    # --- life cycle ---

    @property
    def base_url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    @property
    def api_url(self) -> str:
        """What SLACK_API_URL is set to (slack_sdk's convention: ends with a slash)."""
        return f"{self.base_url}/api/"

    def _app(self) -> web.Application:
        app = web.Application()
        app.router.add_post("/api/{method}", self._api)
        app.router.add_get("/api/{method}", self._api)  # slack_sdk GETs a few read methods
        app.router.add_get("/files-pri/{path:.*}", self._file)
        app.router.add_post("/commands/{id}", self._response_url)
        app.router.add_get(SOCKET_PATH, self._socket)
        return app

    async def _before_close(self) -> None:
        for socket in self._sockets:
            await socket.close()

    # --- scripting ---

    def fail_next(
        self,
        method: str,
        error: str,
        *,
        times: int = 1,
        status: int = 200,
        retry_after: int | None = None,
    ) -> None:
        """Answer the next `times` calls of `method` with Slack's error (429 + Retry-After for "ratelimited")."""
        queue = self._faults.setdefault(method, deque())
        for _ in range(times):
            queue.append(_Fault(error, status, retry_after))

    def rate_limit_next(self, method: str, *, retry_after: int = 0) -> None:
        self.fail_next(method, "ratelimited", status=429, retry_after=retry_after)

    def add_file(
        self, name: str, data: bytes, mimetype: str, *, file_id: str | None = None
    ) -> dict[str, Any]:
        """Host a private file; the `files` entry of an event that shares it."""
        file_id = file_id or f"F{uuid.uuid4().hex[:10].upper()}"
        path = f"{self.team_id}-{file_id}/{name}"
        self._files[path] = (data, mimetype)
        self._files[f"{self.team_id}-{file_id}/download/{name}"] = (data, mimetype)
        self._file_objects[file_id] = {
            "id": file_id,
            "name": name,
            "title": name,
            "mimetype": mimetype,
            "filetype": name.rsplit(".", 1)[-1],
            "size": len(data),
            "mode": "hosted",
            "is_external": False,
            "url_private": f"{self.base_url}/files-pri/{path}",
            "url_private_download": f"{self.base_url}/files-pri/{self.team_id}-{file_id}/download/{name}",
        }
        return dict(self._file_objects[file_id])

    def add_user_message(
        self,
        channel: str,
        user: str,
        text: str,
        *,
        files: list[dict[str, Any]] | None = None,
        thread_ts: str | None = None,
        ago_seconds: float = 0.0,
    ) -> dict[str, Any]:
        """A person's message in the channel (in a thread with `thread_ts`), sent `ago_seconds`
        ago; the `message` event Slack would send."""
        event: dict[str, Any] = {
            "type": "message",
            "user": user,
            "text": text,
            "ts": self._next_ts(ago_seconds),
            "channel": channel,
            "team": self.team_id,
            "channel_type": "im" if channel.startswith("D") else "channel",
        }
        if files:
            event["files"], event["upload"] = files, True
        if thread_ts:
            event["thread_ts"] = thread_ts
        self.history.append(event)
        return event

    def add_user(
        self, user_id: str, name: str, *, display_name: str = "", real_name: str = ""
    ) -> dict[str, Any]:
        """A person users.info knows: `name` is the username; display and real names are optional."""
        self.users[user_id] = {
            "id": user_id,
            "team_id": self.team_id,
            "name": name,
            "deleted": False,
            "real_name": real_name,
            "is_bot": False,
            "profile": {
                "real_name": real_name,
                "real_name_normalized": real_name,
                "display_name": display_name,
                "display_name_normalized": display_name,
            },
        }
        return self.users[user_id]

    def feedback_action(self, posted: Posted, *, good: bool) -> dict[str, Any]:
        """The `actions` entry Slack sends when someone clicks 👍 (good) or 👎 on a message's buttons.

        Read from the message's own blocks: feedback buttons in a context_actions block, or
        classic buttons in an actions block (the first is good, the second bad).
        """
        for index, block in enumerate(posted.blocks):
            block_id = block.get("block_id") or f"b{index}"
            for element in block.get("elements") or []:
                if element.get("type") == "feedback_buttons":
                    button = element["positive_button" if good else "negative_button"]
                    return {
                        "type": "feedback_buttons",
                        "action_id": element.get("action_id", ""),
                        "block_id": block_id,
                        "text": button["text"],
                        "value": button["value"],
                        "action_ts": f"{time.time():.6f}",
                    }
            buttons = [e for e in block.get("elements") or [] if e.get("type") == "button"]
            if block.get("type") == "actions" and len(buttons) == 2:
                button = buttons[0 if good else 1]
                return {
                    "type": "button",
                    "action_id": button.get("action_id", ""),
                    "block_id": block_id,
                    "text": button["text"],
                    "value": button.get("value", ""),
                    "action_ts": f"{time.time():.6f}",
                }
        raise AssertionError(f"message {posted.ts} has no feedback buttons: {posted.blocks}")

    def response_url(self) -> str:
        return f"{self.base_url}/commands/{uuid.uuid4().hex[:8]}"

    # --- what happened ---

    def calls_to(self, method: str) -> list[ApiCall]:
        return [call for call in self.calls if call.method == method]

    def thread(self, channel: str, thread_ts: str) -> list[Posted]:
        """The bot's live messages in a thread, oldest first."""
        return [
            m
            for m in self.messages
            if m.channel == channel and m.thread_ts == thread_ts and not m.deleted
        ]

    def top_level(self, channel: str) -> list[Posted]:
        return [
            m
            for m in self.messages
            if m.channel == channel and m.thread_ts is None and not m.deleted
        ]

    # --- Socket Mode ---

    async def wait_for_socket(self, timeout_seconds: float = 5.0) -> None:
        await asyncio.wait_for(self._socket_connected.wait(), timeout_seconds)

    async def send_envelope(
        self, payload: dict[str, Any], *, kind: str = "events_api", retry_attempt: int = 0
    ) -> str:
        """Push one Socket Mode envelope to the connected app; its envelope id."""
        envelope_id = str(uuid.uuid4())
        await self._sockets[-1].send_json(
            {
                "envelope_id": envelope_id,
                "type": kind,
                "payload": payload,
                "accepts_response_payload": kind != "events_api",
                "retry_attempt": retry_attempt,
                "retry_reason": "timeout" if retry_attempt else "",
            }
        )
        return envelope_id

    # --- handlers ---

    async def _api(self, request: web.Request) -> web.StreamResponse:
        method = request.match_info["method"]
        args = await _arguments(request)
        self.calls.append(ApiCall(method, args, dict(request.headers)))
        if method in self.delay_seconds:
            await asyncio.sleep(self.delay_seconds[method])
        queue = self._faults.get(method)
        if queue:
            fault = queue.popleft()
            headers = (
                {"Retry-After": str(fault.retry_after)} if fault.retry_after is not None else {}
            )
            return web.json_response(
                {"ok": False, "error": fault.error}, status=fault.status, headers=headers
            )
        expected = self.app_token if method == "apps.connections.open" else self.bot_token
        if request.headers.get("Authorization") != f"Bearer {expected}":
            return web.json_response({"ok": False, "error": "invalid_auth"})
        needed = _needed_scope(method, args)
        if needed in self.withheld_scopes:
            return web.json_response({"ok": False, "error": "missing_scope", "needed": needed})
        handler = getattr(self, "_m_" + method.replace(".", "_"), None)
        if handler is None or (
            method == "chat.startStream" and self.refuse_streaming == "unknown_method"
        ):
            return web.json_response({"ok": False, "error": "unknown_method"}, status=404)
        if (refusal := _undocumented(method, args)) is not None:
            return web.json_response(refusal)
        return web.json_response(handler(args))

    def _m_auth_test(self, args: dict[str, Any]) -> dict[str, Any]:
        return {
            "ok": True,
            "url": "https://glimpse-test.slack.com/",
            "team": "Glimpse Test",
            "user": "glimpse",
            "team_id": self.team_id,
            "user_id": BOT_USER_ID,
            "bot_id": BOT_ID,
            "is_enterprise_install": False,
        }

    def _m_chat_postMessage(self, args: dict[str, Any]) -> dict[str, Any]:
        channel, text = str(args.get("channel", "")), str(args.get("text", ""))
        if (refusal := self._refuse(channel, text) or self._bad_blocks(args)) is not None:
            return refusal
        ts = self._next_ts()
        thread_ts = str(args["thread_ts"]) if args.get("thread_ts") else None
        self.messages.append(Posted(channel, ts, text, thread_ts, blocks=_blocks(args) or []))
        return {
            "ok": True,
            "channel": channel,
            "ts": ts,
            "message": {"text": text, "user": BOT_USER_ID, "ts": ts},
        }

    def _m_chat_update(self, args: dict[str, Any]) -> dict[str, Any]:
        channel, text = str(args.get("channel", "")), str(args.get("text", ""))
        if (refusal := self._refuse(channel, text) or self._bad_blocks(args)) is not None:
            return refusal
        message = self._find(channel, str(args.get("ts")))
        if message is None:
            return {"ok": False, "error": "message_not_found"}
        message.text, message.edits = text, message.edits + 1
        if "blocks" in args:  # left out: the message keeps its blocks ([] removes them)
            message.blocks = _blocks(args) or []
        return {"ok": True, "channel": channel, "ts": message.ts, "text": text}

    def _m_chat_delete(self, args: dict[str, Any]) -> dict[str, Any]:
        message = self._find(str(args.get("channel")), str(args.get("ts")))
        if message is None:
            return {"ok": False, "error": "message_not_found"}
        message.deleted = True
        return {"ok": True, "channel": message.channel, "ts": message.ts}

    def _m_chat_startStream(self, args: dict[str, Any]) -> dict[str, Any]:
        """Slack's streaming: a thread reply, to one person outside DMs, markdown_text or chunks."""
        channel = str(args.get("channel", ""))
        if self.refuse_streaming:
            return {"ok": False, "error": self.refuse_streaming}
        if (refusal := self._refuse(channel, "")) is not None:
            return refusal
        if not args.get("thread_ts"):
            return {"ok": False, "error": "invalid_arguments"}
        if not channel.startswith("D"):
            if not args.get("recipient_user_id"):
                return {"ok": False, "error": "missing_recipient_user_id"}
            if not args.get("recipient_team_id"):
                return {"ok": False, "error": "missing_recipient_team_id"}
        if (refusal := _bad_chunks(args)) is not None:
            return refusal
        ts = self._next_ts()
        posted = Posted(channel, ts, _chunk_text(args), str(args["thread_ts"]), streaming=True)
        self.messages.append(posted)
        return {"ok": True, "channel": channel, "ts": ts}

    def _m_chat_appendStream(self, args: dict[str, Any]) -> dict[str, Any]:
        message = self._find(str(args.get("channel")), str(args.get("ts")))
        if message is None:
            return {"ok": False, "error": "message_not_found"}
        if not message.streaming:
            return {"ok": False, "error": "message_not_in_streaming_state"}
        if not args.get("markdown_text") and not args.get("chunks"):
            return {"ok": False, "error": "markdown_text_or_chunks_required"}
        if (refusal := _bad_chunks(args)) is not None:
            return refusal
        message.text += _chunk_text(args)
        message.edits += 1
        return {"ok": True, "channel": message.channel, "ts": message.ts}

    def _m_chat_stopStream(self, args: dict[str, Any]) -> dict[str, Any]:
        """Ends the stream; `blocks` render under the streamed text."""
        message = self._find(str(args.get("channel")), str(args.get("ts")))
        if message is None:
            return {"ok": False, "error": "message_not_found"}
        if not message.streaming:
            return {"ok": False, "error": "message_not_in_streaming_state"}
        if (refusal := _bad_chunks(args) or self._bad_blocks(args)) is not None:
            return refusal
        message.text += _chunk_text(args)
        message.blocks = _blocks(args) or []
        message.streaming = False
        return {"ok": True, "channel": message.channel, "ts": message.ts}

    def _m_reactions_add(self, args: dict[str, Any]) -> dict[str, Any]:
        names = self.reactions.setdefault(
            (str(args.get("channel")), str(args.get("timestamp"))), set()
        )
        if args.get("name") in names:
            return {"ok": False, "error": "already_reacted"}
        names.add(str(args.get("name")))
        return {"ok": True}

    def _m_reactions_remove(self, args: dict[str, Any]) -> dict[str, Any]:
        names = self.reactions.get((str(args.get("channel")), str(args.get("timestamp"))), set())
        if args.get("name") not in names:
            return {"ok": False, "error": "no_reaction"}
        names.discard(str(args.get("name")))
        return {"ok": True}

    def _m_conversations_replies(self, args: dict[str, Any]) -> dict[str, Any]:
        """A thread oldest first, its first message first, people's and the bot's; `limit` of them."""
        channel, ts = str(args.get("channel")), str(args.get("ts"))
        if channel in self.not_member_of:
            return {"ok": False, "error": "not_in_channel"}
        everything = [m for m in self.history if m["channel"] == channel] + [
            _bot_message(m) for m in self.messages if m.channel == channel and not m.deleted
        ]
        found = next((m for m in everything if m["ts"] == ts), None)
        if found is None:
            return {"ok": False, "error": "thread_not_found"}
        root = str(found.get("thread_ts") or found["ts"])
        thread = sorted(
            (
                m
                for m in everything
                if root in (m["ts"], m.get("thread_ts")) and _in_range(m["ts"], args)
            ),
            key=lambda m: float(m["ts"]),
        )
        limit = int(args.get("limit") or 1000)
        return {"ok": True, "has_more": len(thread) > limit, "messages": thread[:limit]}

    def _m_users_info(self, args: dict[str, Any]) -> dict[str, Any]:
        user = self.users.get(str(args.get("user")))
        return {"ok": True, "user": user} if user else {"ok": False, "error": "user_not_found"}

    def _m_conversations_history(self, args: dict[str, Any]) -> dict[str, Any]:
        channel = str(args.get("channel"))
        if channel in self.not_member_of:
            return {"ok": False, "error": "not_in_channel"}
        people = [
            m
            for m in self.history
            if m["channel"] == channel and m.get("thread_ts") in (None, m["ts"])
        ]
        bots = [
            {"type": "message", "user": m.user, "bot_id": BOT_ID, "text": m.text, "ts": m.ts}
            for m in self.top_level(channel)
        ]
        found = sorted(
            (m for m in people + bots if _in_range(m["ts"], args)),
            key=lambda m: float(m["ts"]),
            reverse=True,
        )
        return {"ok": True, "has_more": False, "messages": found[: int(args.get("limit") or 100)]}

    def _m_files_info(self, args: dict[str, Any]) -> dict[str, Any]:
        file = self._file_objects.get(str(args.get("file")))
        return {"ok": True, "file": file} if file else {"ok": False, "error": "file_not_found"}

    def _m_apps_connections_open(self, args: dict[str, Any]) -> dict[str, Any]:
        return {"ok": True, "url": f"ws://127.0.0.1:{self.port}{SOCKET_PATH}"}

    async def _file(self, request: web.Request) -> web.StreamResponse:
        """Slack's private file host: the bytes only with the bot token; a redirect to the login page otherwise."""
        authorization = request.headers.get("Authorization")
        self.file_downloads.append((request.path, authorization))
        hosted = self._files.get(request.match_info["path"])
        if authorization != f"Bearer {self.bot_token}":
            raise web.HTTPFound(f"/?redir={request.path}")
        if hosted is None:
            raise web.HTTPNotFound()
        data, mimetype = hosted  # any type, parameters included ("text/plain; charset=utf-8")
        return web.Response(body=data, headers={"Content-Type": mimetype or BINARY})

    async def _response_url(self, request: web.Request) -> web.Response:
        self.responses.append(await request.json())
        return web.Response(text="ok")

    async def _socket(self, request: web.Request) -> web.StreamResponse:
        socket = web.WebSocketResponse()
        await socket.prepare(request)
        self._sockets.append(socket)
        await socket.send_json(
            {
                "type": "hello",
                "num_connections": 1,
                "connection_info": {"app_id": APP_ID},
                "debug_info": {"host": "fake", "approximate_connection_time": 3600},
            }
        )
        self._socket_connected.set()
        async for message in socket:
            if message.type == WSMsgType.TEXT:
                self.socket_acks.append(json.loads(message.data))
        return socket

    # --- helpers ---

    def _refuse(self, channel: str, text: str) -> dict[str, Any] | None:
        if channel in self.not_member_of:
            return {"ok": False, "error": "not_in_channel"}
        if not channel.startswith(("C", "D", "G")):
            return {"ok": False, "error": "channel_not_found"}
        if len(text) > MAX_TEXT_CHARS:
            return {"ok": False, "error": "msg_too_long"}
        return None

    def _bad_blocks(self, args: dict[str, Any]) -> dict[str, Any] | None:
        """Block Kit as Slack documents it: the blocks Glimpse sends, checked field by field."""
        blocks = _blocks(args)
        if blocks is None:
            return None
        if not isinstance(blocks, list) or len(blocks) > MAX_BLOCKS:
            return {"ok": False, "error": "invalid_blocks_format"}
        markdown = 0
        for block in blocks:
            kind = block.get("type") if isinstance(block, dict) else None
            if kind == "markdown" and self.refuse_markdown_blocks:
                return {"ok": False, "error": "invalid_blocks"}
            if kind == "markdown":
                markdown += len(str(block.get("text", "")))
            if kind not in _BLOCK_CHECKS or not _BLOCK_CHECKS[kind](block):
                return {"ok": False, "error": "invalid_blocks"}
        if markdown > MARKDOWN_TEXT_CHARS:
            return {"ok": False, "error": "msg_blocks_too_long"}
        return None

    def _find(self, channel: str, ts: str) -> Posted | None:
        return next(
            (m for m in self.messages if m.channel == channel and m.ts == ts and not m.deleted),
            None,
        )

    def _next_ts(self, ago_seconds: float = 0.0) -> str:
        return f"{int(time.time() - ago_seconds)}.{next(self._ts):06d}"


async def _arguments(request: web.Request) -> dict[str, Any]:
    """slack_sdk sends JSON for some methods and form fields for others."""
    args: dict[str, Any] = dict(request.query)
    if request.content_type == "application/json":
        args.update(await request.json())
    elif request.can_read_body:
        args.update({k: str(v) for k, v in (await request.post()).items()})
    return args


def _needed_scope(method: str, args: dict[str, Any]) -> str | None:
    if method in HISTORY_METHODS:
        return HISTORY_SCOPES.get(str(args.get("channel", ""))[:1])
    return METHOD_SCOPES.get(method)


def _bot_message(posted: Posted) -> dict[str, Any]:
    """The bot's post as conversations.* list it."""
    message: dict[str, Any] = {
        "type": "message",
        "user": posted.user,
        "bot_id": BOT_ID,
        "text": posted.text,
        "ts": posted.ts,
    }
    if posted.thread_ts:
        message["thread_ts"] = posted.thread_ts
    return message


def _in_range(ts: str, args: dict[str, Any]) -> bool:
    """Within conversations.*'s `oldest` and `latest` (exclusive unless `inclusive`)."""
    stamp, inclusive = float(ts), str(args.get("inclusive", "")).lower() in ("1", "true")
    oldest, latest = float(args.get("oldest") or 0), float(args.get("latest") or "inf")
    if inclusive:
        return oldest <= stamp <= latest
    return oldest < stamp < latest


def _undocumented(method: str, args: dict[str, Any]) -> dict[str, Any] | None:
    """Slack answers an argument it does not know for a method with invalid_arguments."""
    known = DOCUMENTED_ARGS.get(method)
    if known is None or set(args) <= known:
        return None
    return {"ok": False, "error": "invalid_arguments", "unknown": sorted(set(args) - known)}


def _blocks(args: dict[str, Any]) -> Any:
    """`blocks` as sent: a JSON array (form posts carry it as a string); None if absent."""
    blocks = args.get("blocks")
    if isinstance(blocks, str):
        try:
            return json.loads(blocks)
        except ValueError:
            return "unreadable"
    return blocks


def _bad_chunks(args: dict[str, Any]) -> dict[str, Any] | None:
    if args.get("markdown_text") and args.get("chunks"):
        return {"ok": False, "error": "cannot_provide_both_markdown_text_and_chunks"}
    if len(str(args.get("markdown_text") or "")) > MARKDOWN_TEXT_CHARS:
        return {"ok": False, "error": "invalid_arguments"}
    return None


def _keys(obj: Any, required: set[str], optional: set[str] = frozenset()) -> bool:  # type: ignore[assignment]
    return isinstance(obj, dict) and required <= set(obj) <= required | optional | {"type"}


def _plain_text(obj: Any, limit: int) -> bool:
    return (
        _keys(obj, {"type", "text"}, {"emoji"})
        and obj["type"] == "plain_text"
        and 0 < len(str(obj["text"])) <= limit
    )


def _feedback_button(obj: Any) -> bool:
    """positive_button / negative_button: text (plain_text, ≤ 75), value (≤ 2000), label (≤ 75)."""
    return (
        _keys(obj, {"text", "value"}, {"accessibility_label"})
        and _plain_text(obj["text"], 75)
        and 0 < len(str(obj["value"])) <= 2000
        and len(str(obj.get("accessibility_label", ""))) <= 75
    )


def _feedback_buttons(element: Any) -> bool:
    return (
        _keys(element, {"type", "positive_button", "negative_button"}, {"action_id"})
        and element["type"] == "feedback_buttons"
        and len(str(element.get("action_id", ""))) <= 255
        and _feedback_button(element["positive_button"])
        and _feedback_button(element["negative_button"])
    )


def _button(element: Any) -> bool:
    return (
        _keys(element, {"type", "text"}, {"action_id", "value", "url", "style", "confirm",
                                          "accessibility_label"})
        and element["type"] == "button"
        and _plain_text(element["text"], 75)
        and len(str(element.get("action_id", ""))) <= 255
        and len(str(element.get("value", ""))) <= 2000
        and len(str(element.get("accessibility_label", ""))) <= 75
    )  # fmt: skip


def _markdown_block(block: dict[str, Any]) -> bool:
    return _keys(block, {"type", "text"}, {"block_id"}) and isinstance(block["text"], str)


def _section_block(block: dict[str, Any]) -> bool:
    text = block.get("text")
    return (
        _keys(block, {"type", "text"}, {"block_id"})
        and _keys(text, {"type", "text"}, {"verbatim"})
        and text["type"] in ("mrkdwn", "plain_text")
        and 0 < len(str(text["text"])) <= 3000
    )


def _context_actions_block(block: dict[str, Any]) -> bool:
    """Feedback buttons (or icon buttons, which Glimpse does not send): 1 to 5 elements."""
    elements = block.get("elements")
    return (
        _keys(block, {"type", "elements"}, {"block_id"})
        and isinstance(elements, list)
        and 0 < len(elements) <= 5
        and all(_feedback_buttons(e) for e in elements)
    )


def _actions_block(block: dict[str, Any]) -> bool:
    elements = block.get("elements")
    ids = [e.get("action_id") for e in elements or [] if isinstance(e, dict) and e.get("action_id")]
    return (
        _keys(block, {"type", "elements"}, {"block_id"})
        and isinstance(elements, list)
        and 0 < len(elements) <= 25
        and all(_button(e) for e in elements)
        and len(ids) == len(set(ids))
    )


_BLOCK_CHECKS = {
    "markdown": _markdown_block,
    "section": _section_block,
    "context_actions": _context_actions_block,
    "actions": _actions_block,
}


def _chunk_text(args: dict[str, Any]) -> str:
    chunks = args.get("chunks")
    if isinstance(chunks, str):
        chunks = json.loads(chunks)
    text = str(args.get("markdown_text") or "")
    return text + "".join(
        str(c.get("text", "")) for c in chunks or [] if c.get("type") == "markdown_text"
    )


# --- requests Slack sends to the app ---


def sign(
    body: str, *, secret: str = SIGNING_SECRET, timestamp: int | None = None
) -> dict[str, str]:
    """Slack's request signature headers: v0=HMAC-SHA256(secret, "v0:{timestamp}:{body}")."""
    stamp = str(int(time.time()) if timestamp is None else timestamp)
    digest = hmac.new(secret.encode(), f"v0:{stamp}:{body}".encode(), hashlib.sha256).hexdigest()
    return {"X-Slack-Request-Timestamp": stamp, "X-Slack-Signature": f"v0={digest}"}


def event_body(
    event: dict[str, Any], *, team_id: str = TEAM_ID, event_id: str | None = None
) -> str:
    """An Events API `event_callback` envelope, as JSON text."""
    return json.dumps(
        {
            "token": "legacy-verification-token",
            "team_id": team_id,
            "api_app_id": APP_ID,
            "event": event,
            "type": "event_callback",
            "event_id": event_id or f"Ev{uuid.uuid4().hex[:10].upper()}",
            "event_time": int(time.time()),
            "is_ext_shared_channel": False,
            "authorizations": [
                {
                    "team_id": team_id,
                    "user_id": BOT_USER_ID,
                    "is_bot": True,
                    "is_enterprise_install": False,
                }
            ],
        }
    )


def command_body(
    command: str,
    text: str,
    *,
    channel: str,
    user: str,
    response_url: str,
    team_id: str = TEAM_ID,
    user_name: str = "alice",
) -> str:
    """A slash command invocation, form-encoded as Slack POSTs it."""
    return urlencode(
        {
            "token": "legacy-verification-token",
            "team_id": team_id,
            "team_domain": "glimpse-test",
            "channel_id": channel,
            "channel_name": "directmessage" if channel.startswith("D") else "general",
            "user_id": user,
            "user_name": user_name,
            "command": command,
            "text": text,
            "api_app_id": APP_ID,
            "is_enterprise_install": "false",
            "response_url": response_url,
            "trigger_id": f"{int(time.time())}.{uuid.uuid4().int % 10**12}.fake",
        }
    )


def block_actions_body(
    action: dict[str, Any],
    posted: Posted,
    *,
    user: str,
    response_url: str,
    team_id: str = TEAM_ID,
) -> str:
    """A click on a message's button, as Slack POSTs it: form-encoded `payload` (block_actions)."""
    message: dict[str, Any] = {
        "type": "message",
        "user": posted.user,
        "bot_id": BOT_ID,
        "text": posted.text,
        "ts": posted.ts,
        "blocks": posted.blocks,
    }
    container: dict[str, Any] = {
        "type": "message",
        "message_ts": posted.ts,
        "channel_id": posted.channel,
        "is_ephemeral": False,
    }
    if posted.thread_ts:
        message["thread_ts"] = container["thread_ts"] = posted.thread_ts
    payload = {
        "type": "block_actions",
        "user": {"id": user, "username": "alice", "name": "alice", "team_id": team_id},
        "api_app_id": APP_ID,
        "token": "legacy-verification-token",
        "container": container,
        "trigger_id": f"{int(time.time())}.{uuid.uuid4().int % 10**12}.fake",
        "team": {"id": team_id, "domain": "glimpse-test"},
        "enterprise": None,
        "is_enterprise_install": False,
        "channel": {"id": posted.channel, "name": "general"},
        "message": message,
        "state": {"values": {}},
        "response_url": response_url,
        "actions": [action],
    }
    return urlencode({"payload": json.dumps(payload)})
