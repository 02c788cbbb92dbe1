"""A loopback fake of Discord: REST under /api/v10 plus a gateway websocket, driving the real discord.py.

Sharding as Discord does it: a session that identified as shard `[id, count]` gets the events of
the guilds with `(guild_id >> 22) % count == id` (direct messages: shard 0 only), and an IDENTIFY
sooner than `identify_window_seconds` after the previous one of its bucket (`id % max_concurrency`)
is closed with 4008 and recorded in `identify_violations`.
"""

from __future__ import annotations

import asyncio
import itertools
import json
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any, ClassVar, TypeVar

from aiohttp import WSMsgType, web

from tests.fakes.discord_rules import (
    MESSAGE_COMMAND,
    MODAL_RESPONSE,
    callback_problem,
    commands_problem,
    edit_problem,
    followup_problem,
)
from tests.fakes.server import LoopbackServer

__all__ = [
    "ALICE",
    "APP_ID",
    "BOB",
    "BOT_ID",
    "BOT_ROLE_ID",
    "DM_CHANNEL_ID",
    "FOREIGN_CHANNEL_ID",
    "FOREIGN_GUILD_ID",
    "PRIVATE_CHANNEL_ID",
    "VOICE_CHANNEL_ID",
    "GUILD_ID",
    "LOCKED_CHANNEL_ID",
    "MEMBER_ROLE_ID",
    "OTHER_BOT",
    "OTHER_CHANNEL_ID",
    "TEXT_CHANNEL_ID",
    "FakeDiscord",
    "GatewayConnection",
    "IdentifyViolation",
    "RestCall",
    "guild_shard",
    "make_user",
    "snowflake",
]

T = TypeVar("T")

API_PREFIX = "/api/v10"
DISCORD_EPOCH_MS = 1420070400000
HEARTBEAT_INTERVAL_MS = 41250
WAIT_POLL_SECONDS = 0.01
# READY points resumes at another host, as the real gateway does; a client must not follow it past a proxy.
UNREACHABLE_RESUME_URL = "wss://gateway-resume.invalid/"
ALL_PERMISSIONS = str((1 << 50) - 1)
EPHEMERAL_FLAG = 64
LOADING_FLAG = 128
HAS_SNAPSHOT_FLAG = 1 << 14
REPLY_REFERENCE, FORWARD_REFERENCE = 0, 1  # message_reference.type
MODAL_SUBMIT = 5  # interaction type
TEXT_INPUT = 4  # component type
INVALID_FORM_BODY = 50035
# Follow-ups an interaction may have when only a user install authorized it (the app is not in
# the server, or it is a DM between people).
USER_APP_FOLLOWUPS = 5
# What app_permissions holds in a DM between people: EMBED_LINKS | ATTACH_FILES | MENTION_EVERYONE.
USER_APP_PERMISSIONS = str((1 << 14) | (1 << 15) | (1 << 17))
AUTOCOMPLETE_RESULT = 8  # interaction callback type
IDENTIFY_WINDOW_SECONDS = 5.0  # one IDENTIFY per concurrency bucket per window
RATE_LIMITED_CLOSE, INVALID_SHARD_CLOSE = 4008, 4010
UNSHARDED = (0, 1)
HISTORY_QUERY = frozenset({"around", "before", "after", "limit"})  # Get Channel Messages
DEFAULT_HISTORY_LIMIT, MAX_HISTORY_LIMIT = 50, 100

_counter = itertools.count(1)
_last_snowflake = 0


def snowflake(at: float | None = None) -> int:
    """A fresh, increasing Discord id whose timestamp is now; or, given `at` (unix seconds), an id
    of that moment (unique, ordered among ids of other moments)."""
    global _last_snowflake
    if at is not None:
        return ((int(at * 1000) - DISCORD_EPOCH_MS) << 22) | (next(_counter) & 0x3FFFFF)
    value = ((int(time.time() * 1000) - DISCORD_EPOCH_MS) << 22) | (next(_counter) & 0x3FFFFF)
    _last_snowflake = max(value, _last_snowflake + 1)
    return _last_snowflake


def guild_shard(guild_id: int, shard_count: int) -> int:
    """The shard Discord sends a guild's events to."""
    return (guild_id >> 22) % shard_count


def make_user(name: str, *, bot: bool = False, user_id: int | None = None) -> dict[str, Any]:
    """A Discord user object."""
    user_id = user_id or snowflake()
    return {
        "id": str(user_id),
        "username": name,
        "global_name": name.title(),
        "discriminator": "0",
        "avatar": None,
        "bot": bot,
        "public_flags": 0,
    }


BOT_ID = snowflake()
APP_ID = BOT_ID
GUILD_ID = snowflake()
TEXT_CHANNEL_ID = snowflake()
OTHER_CHANNEL_ID = snowflake()
LOCKED_CHANNEL_ID = snowflake()  # creating threads here answers 403
VOICE_CHANNEL_ID = snowflake()  # a voice channel's text chat: no threads possible
DM_CHANNEL_ID = snowflake()
MEMBER_ROLE_ID = snowflake()
# Where a user who installed the app uses it but the bot is not: a server it never joined, and a
# DM between two people. Interactions come from there; the bot's own REST calls are refused.
FOREIGN_GUILD_ID = snowflake()
FOREIGN_CHANNEL_ID = snowflake()
PRIVATE_CHANNEL_ID = snowflake()
BOT_ROLE_ID = snowflake()
ALICE = make_user("alice")
BOB = make_user("bob")
OTHER_BOT = make_user("otherbot", bot=True)
BOT_USER = make_user("glimpse", bot=True, user_id=BOT_ID)
ELSEWHERE = frozenset({FOREIGN_CHANNEL_ID, PRIVATE_CHANNEL_ID})  # the bot cannot post or read here


def _now() -> str:
    return datetime.now(UTC).isoformat()


def _json(data: Any, status: int = 200) -> web.Response:
    """Discord's JSON responses: Content-Type exactly `application/json` (discord.py compares it verbatim)."""
    return web.Response(
        status=status, body=json.dumps(data).encode(), headers={"Content-Type": "application/json"}
    )


def _error(status: int, code: int, message: str) -> web.Response:
    return _json({"message": message, "code": code}, status)


@dataclass(frozen=True, slots=True)
class RestCall:
    """One REST request: method, path under /api/v10, query and JSON body."""

    method: str
    path: str
    query: dict[str, str]
    body: Any


@dataclass
class GatewayConnection:
    """One websocket the client opened, and how it introduced itself (IDENTIFY or RESUME)."""

    query: dict[str, str]
    hello_op: int | None = None
    payload: dict[str, Any] = field(default_factory=dict)
    shard: tuple[int, int] = UNSHARDED  # (id, count) from IDENTIFY; a RESUME keeps its session's
    ready: bool = False  # READY and GUILD_CREATE sent: events after them find the guild


@dataclass(frozen=True, slots=True)
class IdentifyViolation:
    """An IDENTIFY that came too soon after the previous one of its bucket (closed with 4008)."""

    shard: tuple[int, int]
    bucket: int
    seconds_after_previous: float


@dataclass
class FakeDiscord(LoopbackServer):
    """Discord on 127.0.0.1. `api_base` for `Route.BASE`, `gateway_url` for `DEFAULT_GATEWAY`."""

    RUNNER_OPTIONS: ClassVar[dict[str, Any]] = {"handler_cancellation": True}

    token: str = "fake-discord-token"
    refuse_intents: bool = False  # close the gateway with 4014 after IDENTIFY
    shard_count: int = 1  # what GET /gateway/bot recommends
    max_concurrency: int = 1  # GET /gateway/bot's session_start_limit.max_concurrency
    identify_window_seconds: float = IDENTIFY_WINDOW_SECONDS
    identify_violations: list[IdentifyViolation] = field(default_factory=list)
    guilds: dict[int, str] = field(default_factory=lambda: {GUILD_ID: "Fake Guild"})
    resume_gateway_url: str = UNREACHABLE_RESUME_URL
    forbid_threads: set[int] = field(default_factory=lambda: {LOCKED_CHANNEL_ID})
    calls: list[RestCall] = field(default_factory=list)
    connections: list[GatewayConnection] = field(default_factory=list)
    messages: dict[int, dict[str, Any]] = field(default_factory=dict)
    channels: dict[int, dict[str, Any]] = field(default_factory=dict)
    commands: dict[str, list[dict[str, Any]]] = field(
        default_factory=dict
    )  # "global" or guild id -> commands
    files: dict[str, tuple[bytes, str | None]] = field(
        default_factory=dict
    )  # attachment name -> (bytes, type)
    # Added to the clock new messages are stamped with (their id's time and `timestamp`): < 0
    # makes a conversation that happened that long ago.
    clock_offset_seconds: float = 0.0

    def __post_init__(self) -> None:
        self._sessions: dict[web.WebSocketResponse, tuple[int, int]] = {}  # live: ws -> shard
        self._sockets: list[web.WebSocketResponse] = []
        self._sequences: dict[web.WebSocketResponse, int] = {}
        self._identified_at: dict[int, float] = {}  # bucket -> loop time of its last IDENTIFY
        self._session_shards: dict[str, tuple[int, int]] = {}  # session id -> its shard, for RESUME
        self._send_lock = asyncio.Lock()
        self._originals: dict[str, int] = {}  # interaction token -> original response message id
        self._responded: set[str] = set()
        self._interaction_channels: dict[str, int] = {}  # interaction token -> channel id
        self._faults: list[tuple[str, str, int, float]] = []  # method, path part, status, wait
        self._modals: dict[str, dict[str, Any]] = {}  # interaction token -> the modal shown
        self._followups: dict[str, list[int]] = {}  # interaction token -> follow-up message ids
        self._user_only: set[str] = (
            set()
        )  # tokens of interactions authorized by a user install only
        for channel in _guild_channels():
            self.channels[int(channel["id"])] = channel

    # --- lifecycle ---

    @property
    def base_url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    @property
    def api_base(self) -> str:
        return self.base_url + API_PREFIX

    @property
    def gateway_url(self) -> str:
        return f"ws://127.0.0.1:{self.port}/gateway"

    def attachment_url(self, name: str) -> str:
        return f"{self.base_url}/attachments/{name}"

    def _app(self) -> web.Application:
        app = web.Application()
        app.router.add_get("/gateway", self._gateway)
        app.router.add_get("/attachments/{name}", self._attachment)
        app.router.add_route("*", API_PREFIX + "/{tail:.*}", self._rest)
        return app

    async def _before_close(self) -> None:
        for ws in self._sockets:
            await ws.close()

    # --- what tests drive ---

    async def dispatch(
        self, event: str, data: dict[str, Any], *, to: web.WebSocketResponse | None = None
    ) -> int:
        """Send one DISPATCH (op 0) to every live session of the shard owning `data`'s guild (a DM:
        shard 0), or `to` one socket; each with its next sequence number. Waits for a live session.
        """
        guild = data.get("guild_id")
        shard_of = (lambda count: guild_shard(int(guild), count)) if guild else (lambda _: 0)

        def targets() -> list[web.WebSocketResponse]:
            if to is not None:
                return [to]
            return [
                ws
                for ws, (shard, count) in self._sessions.items()
                if not ws.closed and shard == shard_of(count)
            ]

        await self.wait_for(targets)
        sequence = 0
        async with self._send_lock:
            for ws in targets():
                sequence = self._sequences[ws] = self._sequences.get(ws, 0) + 1
                await ws.send_str(json.dumps({"op": 0, "t": event, "s": sequence, "d": data}))
        return sequence

    def add_guild(self, name: str, *, shard: tuple[int, int] = UNSHARDED) -> tuple[int, int]:
        """A guild whose events go to shard `(id, count)`, with one text channel: (guild id, channel id).

        Sessions that are live already do not hear of it; add guilds before clients connect.
        """
        shard_id, count = shard
        guild_id = snowflake()
        while guild_shard(guild_id, count) != shard_id:
            guild_id += 1 << 22  # the next millisecond: the shard is the timestamp modulo count
        channel_id = snowflake()
        self.guilds[guild_id] = name
        self.channels[channel_id] = _text_channel(guild_id, channel_id, "general", 0)
        return guild_id, channel_id

    def guild_of(self, channel_id: int) -> int | None:
        channel = self.channels.get(channel_id)
        return int(channel["guild_id"]) if channel else None

    async def user_message(
        self,
        channel_id: int,
        content: str,
        *,
        author: dict[str, Any] = ALICE,
        mention_bot: bool = False,
        attachments: list[dict[str, Any]] | None = None,
        embeds: list[dict[str, Any]] | None = None,
        reply_to: int | None = None,
        resolve_reply: bool = True,
        reply_in: int | None = None,
        roles: list[int] | None = None,
    ) -> dict[str, Any]:
        """A member's message: stored, then dispatched as MESSAGE_CREATE. Returns the payload.

        `reply_to` makes it a reply (type 19) carrying the replied message as `referenced_message`,
        unless `resolve_reply` is False (Discord did not resolve it; the client may GET it);
        `reply_in` names the replied message's channel when it is not this one.
        """
        if mention_bot:
            content = f"<@{BOT_ID}> {content}"
        message = self._message(
            channel_id,
            content,
            author,
            attachments or [],
            reply_to,
            embeds=embeds or [],
            resolve_reply=resolve_reply,
            reply_in=reply_in,
        )
        if mention_bot:
            message["mentions"] = [BOT_USER]
        if "guild_id" in message:
            message["member"] = _member(roles or [MEMBER_ROLE_ID])
        await self.dispatch("MESSAGE_CREATE", message)
        return message

    async def forward(
        self,
        channel_id: int,
        content: str = "",
        *,
        attachments: list[dict[str, Any]] | None = None,
        embeds: list[dict[str, Any]] | None = None,
        author: dict[str, Any] = ALICE,
        roles: list[int] | None = None,
    ) -> dict[str, Any]:
        """A member forwards a message from elsewhere: a type 0 message with no content of its own,
        a FORWARD `message_reference` and one `message_snapshots` entry (no author, as Discord sends it).

        The Discord client sends a forward's optional comment as a separate message right after
        it: send that with `user_message`. Returns the forward's payload.
        """
        message = self._forwarded(channel_id, content, attachments or [], embeds or [], author)
        if "guild_id" in message:
            message["member"] = _member(roles or [MEMBER_ROLE_ID])
        await self.dispatch("MESSAGE_CREATE", message)
        return message

    def message_elsewhere(
        self,
        channel_id: int,
        content: str = "",
        *,
        attachments: list[dict[str, Any]] | None = None,
        forwarded: list[dict[str, Any]] | None = None,
        author: dict[str, Any] = BOB,
    ) -> dict[str, Any]:
        """A message the bot never receives (a server it is not in, a DM between people): only stored.

        `forwarded` makes it a forward carrying these attachments in its snapshot. Returns the payload,
        for `message_command` to resolve.
        """
        if forwarded is not None:
            message = self._forwarded(channel_id, content, forwarded, [], author)
        else:
            message = self._message(channel_id, content, author, attachments or [], None)
        if channel_id == FOREIGN_CHANNEL_ID:
            message["guild_id"] = str(FOREIGN_GUILD_ID)
        return message

    async def message_command(
        self,
        name: str,
        target: dict[str, Any],
        *,
        user: dict[str, Any] = ALICE,
    ) -> dict[str, Any]:
        """A message context menu command used on `target` (in the target's channel), dispatched.

        As Discord sends it: type 2, `data.type` 3, `data.target_id` and the message itself in
        `data.resolved.messages`.
        """
        channel_id = int(target["channel_id"])
        interaction = self._interaction(
            name, [], channel_id, user, {}, command_type=MESSAGE_COMMAND
        )
        data = interaction["data"]
        del data["options"]
        data.update(target_id=target["id"], resolved={"messages": {target["id"]: target}})
        await self.dispatch("INTERACTION_CREATE", interaction)
        return interaction

    def modal_shown(self, interaction: dict[str, Any]) -> dict[str, Any] | None:
        """The modal the bot answered `interaction` with (callback type 9), if any."""
        return self._modals.get(interaction["token"])

    async def submit_modal(self, interaction: dict[str, Any], *values: str) -> dict[str, Any]:
        """The person fills in the modal shown for `interaction` (its text inputs in order): type 5."""
        modal = self._modals[interaction["token"]]
        inputs = [
            item
            for row in modal["components"]
            for item in (row.get("components") or [row.get("component") or row])
            if item.get("type") == TEXT_INPUT
        ]
        rows = [
            {
                "type": 1,
                "components": [{"type": TEXT_INPUT, "custom_id": i["custom_id"], "value": v}],
            }
            for i, v in zip(inputs, values, strict=True)
        ]
        token = f"interaction-token-{snowflake()}"
        self._interaction_channels[token] = self._interaction_channels[interaction["token"]]
        if interaction["token"] in self._user_only:
            self._user_only.add(token)
        submit = {
            **interaction,
            "id": str(snowflake()),
            "type": MODAL_SUBMIT,
            "token": token,
            "data": {"custom_id": modal["custom_id"], "components": rows},
        }
        await self.dispatch("INTERACTION_CREATE", submit)
        return submit

    async def replay(self, message: dict[str, Any]) -> None:
        """Dispatch a MESSAGE_CREATE again, as the gateway does when it replays events after a resume."""
        await self.dispatch("MESSAGE_CREATE", message)

    async def slash(
        self,
        name: str,
        options: list[dict[str, Any]] | None = None,
        *,
        channel_id: int = TEXT_CHANNEL_ID,
        user: dict[str, Any] = ALICE,
        attachments: dict[str, dict[str, Any]] | None = None,
        permissions: str = ALL_PERMISSIONS,
    ) -> dict[str, Any]:
        """An application command invocation, dispatched as INTERACTION_CREATE. Returns the payload.

        `permissions`: the member's resolved permissions in the channel, as Discord sends them.
        """
        interaction = self._interaction(
            name, options or [], channel_id, user, attachments or {}, permissions
        )
        await self.dispatch("INTERACTION_CREATE", interaction)
        return interaction

    async def user_thread(self, parent_id: int, name: str, *, owner: dict[str, Any] = ALICE) -> int:
        """A thread a member opened (not the bot), announced with THREAD_CREATE. Returns its id."""
        thread_id = snowflake()
        self.channels[thread_id] = _thread(
            thread_id, parent_id, int(owner["id"]), name, self.channels[parent_id]["guild_id"]
        )
        await self.dispatch("THREAD_CREATE", {**self.channels[thread_id], "newly_created": True})
        return thread_id

    def posted_while_down(
        self,
        channel_id: int,
        content: str,
        *,
        ago_seconds: float = 0.0,
        author: dict[str, Any] = ALICE,
        mention_bot: bool = False,
    ) -> dict[str, Any]:
        """A member's message sent `ago_seconds` ago while the bot had no session: kept (channel
        history serves it) but never dispatched. Returns the payload."""
        if mention_bot:
            content = f"<@{BOT_ID}> {content}"
        message = self._message(channel_id, content, author, [], None, at=time.time() - ago_seconds)
        if mention_bot:
            message["mentions"] = [BOT_USER]
        return message

    async def fresh_session(self) -> None:
        """Invalidate every session (op 9, not resumable): each client IDENTIFYs again and gets READY."""
        sessions, self._sessions = self._sessions, {}
        for ws in sessions:
            await ws.send_str(json.dumps({"op": 9, "d": False, "s": None, "t": None}))

    async def reconnect(self) -> None:
        """Ask every client to reconnect (op 7); each should RESUME on this fake."""
        sessions, self._sessions = self._sessions, {}
        for ws in sessions:
            await ws.send_str(json.dumps({"op": 7, "d": None, "s": None, "t": None}))

    def fail_next(
        self, method: str, path_part: str, status: int, *, times: int = 1, retry_after: float = 0.0
    ) -> None:
        """Answer the next `times` REST calls matching `method` and `path_part` with `status`.

        429 comes as Discord sends it (JSON `retry_after`, a `Via` header), so discord.py waits and retries.
        """
        self._faults.extend([(method, path_part, status, retry_after)] * times)

    def attachment(self, name: str, data: bytes, content_type: str | None) -> dict[str, Any]:
        """Host a file of any type and describe it as a Discord attachment object.

        Like Discord, only an image has a width and height, and a file whose type Discord could
        not tell (`content_type=None`) has no `content_type` at all.
        """
        self.files[name] = (data, content_type)
        found: dict[str, Any] = {
            "id": str(snowflake()),
            "filename": name,
            "size": len(data),
            "url": self.attachment_url(name),
            "proxy_url": self.attachment_url(name),
        }
        if content_type is not None:
            found["content_type"] = content_type
        if content_type is not None and content_type.startswith("image/"):
            found.update(width=8, height=8)
        return found

    async def wait_for(self, predicate: Callable[[], T | None], within: float = 10.0) -> T:
        """Poll until `predicate()` is truthy; return its value (TimeoutError after `within` s)."""
        async with asyncio.timeout(within):
            while not (value := predicate()):  # noqa: ASYNC110 - state changes in many places; polling is simplest
                await asyncio.sleep(WAIT_POLL_SECONDS)
            return value

    # --- what tests inspect ---

    def bot_messages(self, channel_id: int) -> list[dict[str, Any]]:
        """Messages everyone sees that the bot posted in a channel (current text after edits), oldest first."""
        return [
            m
            for m in self.messages.values()
            if int(m["channel_id"]) == channel_id
            and m["author"]["id"] == str(BOT_ID)
            and not int(m.get("flags") or 0) & EPHEMERAL_FLAG
            and not m.get("deleted")
        ]

    def calls_to(self, method: str, path_part: str) -> list[RestCall]:
        return [c for c in self.calls if c.method == method and path_part in c.path]

    def responses(self, interaction: dict[str, Any]) -> list[dict[str, Any]]:
        """The interaction's original response, then its follow-ups, as they read now (deleted left out)."""
        token = interaction["token"]
        ids = [self._originals.get(token), *self._followups.get(token, [])]
        return [
            self.messages[i] for i in ids if i is not None and not self.messages[i].get("deleted")
        ]

    def original_response(self, interaction: dict[str, Any]) -> dict[str, Any] | None:
        message_id = self._originals.get(interaction["token"])
        return self.messages.get(message_id) if message_id else None

    # --- gateway ---

    async def _gateway(self, request: web.Request) -> web.WebSocketResponse:
        ws = web.WebSocketResponse()
        await ws.prepare(request)
        self._sockets.append(ws)
        connection = GatewayConnection(query=dict(request.query))
        self.connections.append(connection)
        await ws.send_str(
            json.dumps(
                {"op": 10, "d": {"heartbeat_interval": HEARTBEAT_INTERVAL_MS}, "s": None, "t": None}
            )
        )
        try:
            async for frame in ws:
                if frame.type != WSMsgType.TEXT:
                    break
                payload = json.loads(frame.data)
                await self._on_gateway_op(ws, connection, payload)
        finally:
            self._sessions.pop(ws, None)
        return ws

    async def _on_gateway_op(
        self, ws: web.WebSocketResponse, connection: GatewayConnection, payload: dict[str, Any]
    ) -> None:
        op = payload.get("op")
        if op == 1:
            await ws.send_str(json.dumps({"op": 11, "d": None, "s": None, "t": None}))
        elif op == 2:
            connection.hello_op, connection.payload = op, payload["d"]
            if self.refuse_intents:
                await ws.close(code=4014, message=b"Disallowed intent(s).")
                return
            asked = payload["d"].get("shard")
            shard = await self._admit_identify(ws, asked)
            if shard is None:
                return
            connection.shard = shard
            await self._take_over(ws, shard)
            await self.dispatch("READY", self._ready(shard, echo_shard=asked is not None), to=ws)
            for guild_id in self._guilds_of(shard):
                await self.dispatch("GUILD_CREATE", self._guild(guild_id), to=ws)
            connection.ready = True
        elif op == 6:
            connection.hello_op, connection.payload = op, payload["d"]
            shard = self._session_shards.get(payload["d"].get("session_id"), UNSHARDED)
            connection.shard = shard
            await self._take_over(ws, shard)
            await self.dispatch("RESUMED", {}, to=ws)

    async def _admit_identify(
        self, ws: web.WebSocketResponse, shard: Any
    ) -> tuple[int, int] | None:
        """The IDENTIFY's (shard id, count), or None after closing a bad shard or a too-early IDENTIFY."""
        if shard is None:
            shard = list(UNSHARDED)
        if not (
            isinstance(shard, list)
            and len(shard) == 2
            and all(isinstance(n, int) for n in shard)
            and 0 <= shard[0] < shard[1]
        ):
            await ws.close(code=INVALID_SHARD_CLOSE, message=b"Invalid shard.")
            return None
        bucket = shard[0] % self.max_concurrency
        now = asyncio.get_running_loop().time()
        last = self._identified_at.get(bucket)
        if last is not None and now - last < self.identify_window_seconds:
            self.identify_violations.append(
                IdentifyViolation((shard[0], shard[1]), bucket, now - last)
            )
            await ws.close(code=RATE_LIMITED_CLOSE, message=b"You are being rate limited.")
            return None
        self._identified_at[bucket] = now
        return shard[0], shard[1]

    async def _take_over(self, ws: web.WebSocketResponse, shard: tuple[int, int]) -> None:
        """`ws` is the live session of `shard`; an older one of the same shard no longer gets events."""
        async with self._send_lock:
            for old in [w for w, s in self._sessions.items() if s == shard]:
                del self._sessions[old]
            self._sessions[ws] = shard

    def _guilds_of(self, shard: tuple[int, int]) -> list[int]:
        return [g for g in self.guilds if guild_shard(g, shard[1]) == shard[0]]

    def _ready(self, shard: tuple[int, int], *, echo_shard: bool) -> dict[str, Any]:
        session_id = f"fake-session-{shard[0]}-of-{shard[1]}-{snowflake()}"
        self._session_shards[session_id] = shard
        ready = {
            "v": 10,
            "user": BOT_USER,
            "guilds": [{"id": str(g), "unavailable": True} for g in self._guilds_of(shard)],
            "session_id": session_id,
            "resume_gateway_url": self.resume_gateway_url,
            "application": {"id": str(APP_ID), "flags": 0},
            "private_channels": [],
            "relationships": [],
        }
        if echo_shard:  # READY carries `shard` when IDENTIFY did
            ready["shard"] = list(shard)
        return ready

    def _guild(self, guild_id: int) -> dict[str, Any]:
        return {
            "id": str(guild_id),
            "name": self.guilds[guild_id],
            "icon": None,
            "owner_id": ALICE["id"],
            "unavailable": False,
            "roles": _roles(guild_id),
            "emojis": [],
            "stickers": [],
            "features": [],
            "member_count": 3,
            "large": False,
            "members": [{**_member([BOT_ROLE_ID]), "user": BOT_USER}],
            "presences": [],
            "voice_states": [],
            "channels": [
                c
                for c in self.channels.values()
                if c.get("type") in (0, 2) and c["guild_id"] == str(guild_id)
            ],
            "threads": [
                c
                for c in self.channels.values()
                if c.get("type") == 11 and c["guild_id"] == str(guild_id)
            ],
            "stage_instances": [],
            "guild_scheduled_events": [],
            "soundboard_sounds": [],
            "joined_at": _now(),
            "verification_level": 0,
            "default_message_notifications": 0,
            "explicit_content_filter": 0,
            "mfa_level": 0,
            "system_channel_id": None,
            "premium_tier": 0,
            "preferred_locale": "en-US",
            "nsfw_level": 0,
            "afk_timeout": 300,
        }

    # --- REST ---

    async def _rest(self, request: web.Request) -> web.StreamResponse:
        body = await _read_body(request)
        path = "/" + request.match_info["tail"]
        self.calls.append(RestCall(request.method, path, dict(request.query), body))
        if request.headers.get("Authorization") != f"Bot {self.token}" and not path.startswith(
            ("/webhooks/", "/interactions/")
        ):
            return _error(401, 0, "401: Unauthorized")
        if (fault := self._take_fault(request.method, path)) is not None:
            return fault
        parts = path.strip("/").split("/")
        handler = self._route(request.method, parts)
        if handler is None:
            return _error(404, 0, f"404: Not Found ({request.method} {path})")
        return await handler(parts, body, request)

    def _take_fault(self, method: str, path: str) -> web.Response | None:
        for index, (fault_method, part, status, retry_after) in enumerate(self._faults):
            if fault_method == method and part in path:
                del self._faults[index]
                if status != 429:
                    return _error(status, 0, f"{status}: scripted failure")
                response = _json(
                    {
                        "message": "You are being rate limited.",
                        "retry_after": retry_after,
                        "global": False,
                    },
                    429,
                )
                response.headers.update({"Via": "1.1 google", "Retry-After": str(retry_after)})
                return response
        return None

    def _route(self, method: str, parts: list[str]) -> Callable[..., Any] | None:
        routes: list[tuple[str, tuple[str, ...], Callable[..., Any]]] = [
            ("GET", ("gateway",), self._get_gateway),
            ("GET", ("gateway", "bot"), self._get_gateway_bot),
            ("GET", ("users", "@me"), self._get_me),
            ("GET", ("oauth2", "applications", "@me"), self._get_application),
            ("GET", ("applications", "@me"), self._get_application),
            ("PUT", ("applications", "*", "commands"), self._put_commands),
            ("PUT", ("applications", "*", "guilds", "*", "commands"), self._put_commands),
            ("GET", ("channels", "*"), self._get_channel),
            ("POST", ("channels", "*", "typing"), self._typing),
            ("POST", ("channels", "*", "messages"), self._post_message),
            ("GET", ("channels", "*", "messages"), self._history),
            ("GET", ("channels", "*", "messages", "*"), self._get_message),
            ("PATCH", ("channels", "*", "messages", "*"), self._patch_message),
            ("POST", ("channels", "*", "messages", "*", "threads"), self._start_thread),
            ("POST", ("interactions", "*", "*", "callback"), self._callback),
            ("POST", ("webhooks", "*", "*"), self._followup),
            ("GET", ("webhooks", "*", "*", "messages", "*"), self._webhook_message),
            ("PATCH", ("webhooks", "*", "*", "messages", "*"), self._webhook_message),
            ("DELETE", ("webhooks", "*", "*", "messages", "*"), self._webhook_message),
        ]
        for route_method, pattern, handler in routes:
            if (
                route_method == method
                and len(pattern) == len(parts)
                and all(p in ("*", part) for p, part in zip(pattern, parts, strict=True))
            ):
                return handler
        return None

    async def _get_me(self, *_: Any) -> web.Response:
        return _json(BOT_USER)

    async def _get_application(self, *_: Any) -> web.Response:
        return _json(_application())

    async def _typing(self, parts: list[str], *_: Any) -> web.Response:
        return _missing_access() if int(parts[1]) in ELSEWHERE else web.Response(status=204)

    async def _get_gateway(self, *_: Any) -> web.Response:
        return _json({"url": self.gateway_url})

    async def _get_gateway_bot(self, *_: Any) -> web.Response:
        return _json(
            {
                "url": self.gateway_url,
                "shards": self.shard_count,
                "session_start_limit": {
                    "total": 1000,
                    "remaining": 999,
                    "reset_after": 14400000,
                    "max_concurrency": self.max_concurrency,
                },
            }
        )

    async def _put_commands(self, parts: list[str], body: Any, _: web.Request) -> web.Response:
        scope = parts[3] if len(parts) == 5 else "global"
        if (problem := commands_problem(body)) is not None:
            return _error(400, INVALID_FORM_BODY, f"Invalid Form Body ({problem})")
        stored = [
            {
                **command,
                "id": str(snowflake()),
                "application_id": str(APP_ID),
                "version": str(snowflake()),
                "type": command.get("type", 1),
                "description": command.get("description", ""),
                "default_member_permissions": None,
                "dm_permission": True,
                "nsfw": False,
            }
            for command in body
        ]
        if scope != "global":
            for command in stored:  # installs and contexts apply to global commands only
                command.update(guild_id=scope, integration_types=None, contexts=None)
        self.commands[scope] = stored
        return _json(stored)

    async def _get_channel(self, parts: list[str], *_: Any) -> web.Response:
        if int(parts[1]) in ELSEWHERE:
            return _missing_access()
        channel = self.channels.get(int(parts[1]))
        return _json(channel) if channel else _error(404, 10003, "Unknown Channel")

    async def _post_message(self, parts: list[str], body: Any, _: web.Request) -> web.Response:
        channel_id = int(parts[1])
        if channel_id in ELSEWHERE:
            return _missing_access()
        reference = (body.get("message_reference") or {}).get("message_id")
        message = self._message(
            channel_id,
            body.get("content") or "",
            BOT_USER,
            [],
            int(reference) if reference else None,
        )
        message["allowed_mentions"] = body.get("allowed_mentions")
        await self.dispatch("MESSAGE_CREATE", message)  # Discord echoes the bot's own messages
        return _json(message)

    async def _history(self, parts: list[str], _: Any, request: web.Request) -> web.Response:
        """Get Channel Messages: `around`, `before` or `after` (one at most) and `limit` 1-100;
        newest first, as Discord returns them, without `member` (a gateway-only field)."""
        channel_id = int(parts[1])
        if channel_id in ELSEWHERE:
            return _missing_access()
        if channel_id not in self.channels and channel_id != DM_CHANNEL_ID:
            return _error(404, 10003, "Unknown Channel")
        query = dict(request.query)
        if problem := _history_problem(query):
            return _error(400, INVALID_FORM_BODY, f"Invalid Form Body ({problem})")
        limit = int(query.get("limit", DEFAULT_HISTORY_LIMIT))
        found = sorted(
            (
                m
                for m in self.messages.values()
                if int(m["channel_id"]) == channel_id and not m.get("deleted")
            ),
            key=lambda m: int(m["id"]),
        )
        if "after" in query:
            found = [m for m in found if int(m["id"]) > int(query["after"])][:limit]
        elif "before" in query:
            found = [m for m in found if int(m["id"]) < int(query["before"])][-limit:]
        elif "around" in query:
            middle = sum(1 for m in found if int(m["id"]) < int(query["around"]))
            start = max(0, middle - limit // 2)
            found = found[start : start + limit]
        else:
            found = found[-limit:]
        return _json([_without_member(m) for m in reversed(found)])

    async def _get_message(self, parts: list[str], *_: Any) -> web.Response:
        if int(parts[1]) in ELSEWHERE:
            return _missing_access()
        message = self.messages.get(int(parts[3]))
        if message is None or message["channel_id"] != parts[1] or message.get("deleted"):
            return _error(404, 10008, "Unknown Message")
        return _json(message)

    async def _patch_message(self, parts: list[str], body: Any, _: web.Request) -> web.Response:
        message = self.messages.get(int(parts[3]))
        if message is None:
            return _error(404, 10008, "Unknown Message")
        return _json(_apply_edit(message, body))

    async def _start_thread(self, parts: list[str], body: Any, _: web.Request) -> web.Response:
        channel_id, message_id = int(parts[1]), int(parts[3])
        if channel_id in ELSEWHERE:
            return _missing_access()
        if channel_id in self.forbid_threads:
            return _error(403, 50013, "Missing Permissions")
        if message_id in self.channels:
            return _error(400, 160004, "A thread has already been created for this message")
        guild_id = self.channels[channel_id]["guild_id"]
        thread = _thread(message_id, channel_id, BOT_ID, body["name"], guild_id)
        self.channels[message_id] = thread
        await self.dispatch("THREAD_CREATE", {**thread, "newly_created": True})
        return _json(thread, 201)

    async def _callback(self, parts: list[str], body: Any, _: web.Request) -> web.Response:
        interaction_id, token = parts[1], parts[2]
        if (problem := callback_problem(body)) is not None:
            return _error(400, INVALID_FORM_BODY, f"Invalid Form Body ({problem})")
        if token in self._responded:
            return _error(400, 40060, "Interaction has already been acknowledged.")
        self._responded.add(token)
        data = body.get("data") or {}
        flags = int(data.get("flags") or 0)
        kind = body["type"]
        if kind in (MODAL_RESPONSE, AUTOCOMPLETE_RESULT):  # no message of its own
            if kind == MODAL_RESPONSE:
                self._modals[token] = data
            return _json(
                {"interaction": {"id": interaction_id, "type": 2}, "resource": {"type": kind}}
            )
        channel_id = self._interaction_channels[token]
        content = data.get("content") or ""
        message = self._message(
            channel_id,
            content,
            BOT_USER,
            [],
            None,
            flags=flags | (LOADING_FLAG if kind == 5 else 0),
        )
        message.update(type=20, webhook_id=str(APP_ID), application_id=str(APP_ID))
        message["allowed_mentions"] = data.get("allowed_mentions")
        self._originals[token] = int(message["id"])
        return _json(
            {
                "interaction": {
                    "id": interaction_id,
                    "type": 2,
                    "response_message_id": message["id"],
                    "response_message_loading": kind == 5,
                    "response_message_ephemeral": bool(flags & EPHEMERAL_FLAG),
                },
                "resource": {"type": kind, "message": message},
            }
        )

    async def _followup(self, parts: list[str], body: Any, request: web.Request) -> web.Response:
        token = parts[2]
        if (problem := followup_problem(body)) is not None:
            return _error(400, INVALID_FORM_BODY, f"Invalid Form Body ({problem})")
        if token not in self._responded:
            return _error(404, 10015, "Unknown Webhook")
        original = self.messages.get(self._originals.get(token) or 0)
        if original and not original.get("deleted") and original["flags"] & LOADING_FLAG:
            # Right after a deferred response a follow-up edits the loading message (Discord keeps
            # this for compatibility): no new message, and the defer's ephemeral state stays.
            _apply_edit(original, body)
            original["flags"] &= ~LOADING_FLAG
            return _json(original)
        if token in self._user_only and len(self._followups.get(token, [])) >= USER_APP_FOLLOWUPS:
            return _error(400, 0, f"{USER_APP_FOLLOWUPS} follow-ups at most for this interaction")
        channel_id = self._interaction_channels[token]
        message = self._message(
            channel_id,
            body.get("content") or "",
            BOT_USER,
            [],
            None,
            flags=int(body.get("flags") or 0),
        )
        message.update(
            webhook_id=str(APP_ID),
            application_id=str(APP_ID),
            allowed_mentions=body.get("allowed_mentions"),
        )
        self._followups.setdefault(token, []).append(int(message["id"]))
        return (
            _json(message) if request.query.get("wait") in ("true", "1", "True") else _ok(None, 204)
        )

    async def _webhook_message(
        self, parts: list[str], body: Any, request: web.Request
    ) -> web.Response:
        token, which = parts[2], parts[4]
        message_id = self._originals.get(token) if which == "@original" else int(which)
        message = self.messages.get(message_id) if message_id else None
        if message is None:
            return _error(404, 10008, "Unknown Message")
        if request.method == "DELETE":
            message["deleted"] = True
            return _ok(None, 204)
        if request.method == "PATCH":
            if (problem := edit_problem(body)) is not None:
                return _error(400, INVALID_FORM_BODY, f"Invalid Form Body ({problem})")
            _apply_edit(message, body)
            message["flags"] = int(message.get("flags", 0)) & ~LOADING_FLAG
        return _json(message)

    async def _attachment(self, request: web.Request) -> web.Response:
        found = self.files.get(request.match_info["name"])
        if found is None:
            return web.Response(status=404)
        data, content_type = found
        served = content_type or "application/octet-stream"
        return web.Response(body=data, headers={"Content-Type": served})

    # --- payloads ---

    def _message(
        self,
        channel_id: int,
        content: str,
        author: dict[str, Any],
        attachments: list[dict[str, Any]],
        reply_to: int | None,
        *,
        embeds: list[dict[str, Any]] | None = None,
        flags: int = 0,
        resolve_reply: bool = True,
        reply_in: int | None = None,
        at: float | None = None,
    ) -> dict[str, Any]:
        if at is None and self.clock_offset_seconds:
            at = time.time() + self.clock_offset_seconds
        message: dict[str, Any] = {
            "id": str(snowflake(at)),
            "channel_id": str(channel_id),
            "author": author,
            "content": content,
            "timestamp": _now() if at is None else datetime.fromtimestamp(at, UTC).isoformat(),
            "edited_timestamp": None,
            "tts": False,
            "mention_everyone": False,
            "mentions": [],
            "mention_roles": [],
            "attachments": attachments,
            "embeds": embeds or [],
            "pinned": False,
            "type": 19 if reply_to else 0,
            "flags": flags,
        }
        if channel_id in self.channels:
            message["guild_id"] = self.channels[channel_id]["guild_id"]
        if reply_to is not None:
            message["message_reference"] = {
                "type": REPLY_REFERENCE,
                "message_id": str(reply_to),
                "channel_id": str(reply_in or channel_id),
            }
            if resolve_reply and reply_to in self.messages:  # one level deep, as Discord sends it
                replied = self.messages[reply_to]
                message["referenced_message"] = {
                    k: v for k, v in replied.items() if k != "referenced_message"
                }
        self.messages[int(message["id"])] = message
        return message

    def _forwarded(
        self,
        channel_id: int,
        content: str,
        attachments: list[dict[str, Any]],
        embeds: list[dict[str, Any]],
        author: dict[str, Any],
    ) -> dict[str, Any]:
        """A forward: no content of its own, a FORWARD reference and one snapshot (no author)."""
        snapshot = {
            "type": 0,
            "content": content,
            "mentions": [],
            "mention_roles": [],
            "attachments": attachments,
            "embeds": embeds,
            "timestamp": _now(),
            "edited_timestamp": None,
            "flags": 0,
            "components": [],
        }
        message = self._message(channel_id, "", author, [], None, flags=HAS_SNAPSHOT_FLAG)
        message["message_reference"] = {
            "type": FORWARD_REFERENCE,
            "message_id": str(snowflake()),
            "channel_id": str(snowflake()),
            "guild_id": str(snowflake()),
        }
        message["message_snapshots"] = [{"message": snapshot}]
        return message

    def _interaction(
        self,
        name: str,
        options: list[dict[str, Any]],
        channel_id: int,
        user: dict[str, Any],
        attachments: dict[str, dict[str, Any]],
        permissions: str = ALL_PERMISSIONS,
        *,
        command_type: int = 1,
    ) -> dict[str, Any]:
        token = f"interaction-token-{snowflake()}"
        self._interaction_channels[token] = channel_id
        in_guild = channel_id in self.channels and str(GUILD_ID) in self.commands
        scope = str(GUILD_ID) if in_guild else "global"
        command = next(
            (
                c
                for c in self.commands.get(scope, [])
                if c["name"] == name and c["type"] == command_type
            ),
            {"id": str(snowflake())},
        )
        data: dict[str, Any] = {
            "id": command["id"],
            "name": name,
            "type": command_type,
            "options": options,
        }
        if attachments:
            data["resolved"] = {"attachments": attachments}
        interaction: dict[str, Any] = {
            "id": str(snowflake()),
            "application_id": str(APP_ID),
            "type": 2,
            "data": data,
            "token": token,
            "version": 1,
            "channel_id": str(channel_id),
            "locale": "en-US",
            "app_permissions": ALL_PERMISSIONS,
            "entitlements": [],
            "attachment_size_limit": 10 * 1024 * 1024,
        }
        channel = self.channels.get(channel_id)
        if channel is not None:
            if scope != "global":
                data["guild_id"] = scope
            interaction.update(
                guild_id=str(GUILD_ID),
                guild_locale="en-US",
                context=0,
                channel=channel,
                member={**_member([MEMBER_ROLE_ID]), "user": user, "permissions": permissions},
                authorizing_integration_owners={"0": str(GUILD_ID)},
            )
        elif channel_id == FOREIGN_CHANNEL_ID:  # installed by the user; the bot is not a member
            interaction.update(
                guild_id=str(FOREIGN_GUILD_ID),
                guild={"id": str(FOREIGN_GUILD_ID), "locale": "en-US", "features": []},
                guild_locale="en-US",
                context=0,
                channel=_foreign_channel(),
                member={**_member([]), "user": user, "permissions": permissions},
                authorizing_integration_owners={"1": user["id"]},
                app_permissions=USER_APP_PERMISSIONS,
            )
        elif channel_id == PRIVATE_CHANNEL_ID:  # a DM between two people
            interaction.update(
                user=user,
                context=2,
                authorizing_integration_owners={"1": user["id"]},
                channel={"id": str(channel_id), "type": 1, "recipients": [BOB]},
                app_permissions=USER_APP_PERMISSIONS,
            )
        else:
            interaction.update(
                user=user,
                context=1,  # the bot's DM
                authorizing_integration_owners={"1": user["id"]},
                channel={"id": str(channel_id), "type": 1, "recipients": [user]},
            )
        if list(interaction["authorizing_integration_owners"]) == ["1"]:
            self._user_only.add(token)
        return interaction


def _missing_access() -> web.Response:
    return _error(403, 50001, "Missing Access")


def _ok(data: Any, status: int = 200) -> web.Response:
    if status == 204:
        return web.Response(status=204)
    return _json(data, status)


def _apply_edit(message: dict[str, Any], body: Any) -> dict[str, Any]:
    if "content" in body:
        message["content"] = body["content"] or ""
    if "allowed_mentions" in body:
        message.setdefault("edit_allowed_mentions", []).append(body["allowed_mentions"])
    message["edited_timestamp"] = _now()
    return message


async def _read_body(request: web.Request) -> Any:
    if not request.can_read_body:
        return None
    if request.content_type.startswith("multipart/"):
        form = await request.post()
        payload = form.get("payload_json")
        return json.loads(str(payload)) if payload else {}
    return await request.json()


def _history_problem(query: dict[str, str]) -> str | None:
    """Why Discord would refuse these Get Channel Messages parameters, or None."""
    unknown = sorted(set(query) - HISTORY_QUERY)
    if unknown:
        return f"unknown query parameters {unknown}"
    if sum(name in query for name in ("around", "before", "after")) > 1:
        return "around, before and after are mutually exclusive"
    for name in ("around", "before", "after"):
        if name in query and not query[name].isdigit():
            return f"{name} is a snowflake"
    limit = query.get("limit", str(DEFAULT_HISTORY_LIMIT))
    if not limit.isdigit() or not 1 <= int(limit) <= MAX_HISTORY_LIMIT:
        return f"limit must be 1-{MAX_HISTORY_LIMIT}"
    return None


def _without_member(message: dict[str, Any]) -> dict[str, Any]:
    return {k: v for k, v in message.items() if k != "member"}


def _thread(
    thread_id: int, parent_id: int, owner_id: int, name: str, guild_id: str
) -> dict[str, Any]:
    return {
        "id": str(thread_id),
        "type": 11,
        "guild_id": guild_id,
        "parent_id": str(parent_id),
        "owner_id": str(owner_id),
        "name": name,
        "last_message_id": None,
        "message_count": 0,
        "member_count": 1,
        "rate_limit_per_user": 0,
        "flags": 0,
        "thread_metadata": {
            "archived": False,
            "auto_archive_duration": 1440,
            "archive_timestamp": _now(),
            "locked": False,
        },
    }


def _member(roles: list[int]) -> dict[str, Any]:
    return {
        "roles": [str(r) for r in roles],
        "joined_at": _now(),
        "deaf": False,
        "mute": False,
        "nick": None,
        "flags": 0,
    }


def _roles(guild_id: int) -> list[dict[str, Any]]:
    base = {
        "color": 0,
        "hoist": False,
        "position": 0,
        "managed": False,
        "mentionable": False,
        "flags": 0,
    }
    return [
        {**base, "id": str(guild_id), "name": "@everyone", "permissions": ALL_PERMISSIONS},
        {**base, "id": str(MEMBER_ROLE_ID), "name": "members", "position": 1, "permissions": "0"},
        {
            **base,
            "id": str(BOT_ROLE_ID),
            "name": "Glimpse",
            "position": 2,
            "permissions": ALL_PERMISSIONS,
            "managed": True,
            "tags": {"bot_id": str(BOT_ID)},
        },
    ]


def _text_channel(guild_id: int, channel_id: int, name: str, position: int) -> dict[str, Any]:
    return {
        "id": str(channel_id),
        "type": 0,
        "guild_id": str(guild_id),
        "name": name,
        "position": position,
        "permission_overwrites": [],
        "nsfw": False,
        "parent_id": None,
        "topic": None,
        "last_message_id": None,
        "rate_limit_per_user": 0,
        "flags": 0,
    }


def _guild_channels() -> list[dict[str, Any]]:
    def text(channel_id: int, name: str, position: int) -> dict[str, Any]:
        return _text_channel(GUILD_ID, channel_id, name, position)

    voice = {
        **text(VOICE_CHANNEL_ID, "voice", 3),
        "type": 2,
        "bitrate": 64000,
        "user_limit": 0,
        "rtc_region": None,
    }
    return [
        text(TEXT_CHANNEL_ID, "general", 0),
        text(OTHER_CHANNEL_ID, "random", 1),
        text(LOCKED_CHANNEL_ID, "no-threads", 2),
        voice,
    ]


def _foreign_channel() -> dict[str, Any]:
    """The channel object an interaction carries from a server the bot is not in."""
    return {
        "id": str(FOREIGN_CHANNEL_ID),
        "type": 0,
        "guild_id": str(FOREIGN_GUILD_ID),
        "name": "elsewhere",
        "position": 0,
        "permission_overwrites": [],
        "nsfw": False,
        "parent_id": None,
        "topic": None,
        "last_message_id": None,
        "rate_limit_per_user": 0,
        "flags": 0,
    }


def _application() -> dict[str, Any]:
    return {
        "id": str(APP_ID),
        "name": "Glimpse",
        "icon": None,
        "description": "",
        "bot_public": True,
        "bot_require_code_grant": False,
        "owner": ALICE,
        "verify_key": "00" * 32,
        "flags": 0,
        "summary": "",
        "team": None,
        "bot": BOT_USER,
    }
