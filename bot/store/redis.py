"""The shared memory store: turns, claimed event ids and an author index in one Redis."""

from __future__ import annotations

import json
import logging
import re
from collections.abc import AsyncIterator, Sequence
from contextlib import asynccontextmanager
from dataclasses import dataclass
from typing import cast
from urllib.parse import parse_qsl, quote, unquote, urlencode, urlsplit, urlunsplit

from redis.asyncio import BlockingConnectionPool, Redis
from redis.asyncio.client import Pipeline
from redis.asyncio.retry import Retry
from redis.backoff import ExponentialWithJitterBackoff
from redis.exceptions import RedisError

from bot.inbox.records import InboxEntry, InboxThread, State
from bot.messages import ConversationKey
from bot.store.base import StoreError
from bot.store.codec import (
    KEY_COLUMNS,
    TURN_COLUMNS,
    key_params,
    row_to_turn,
    turn_to_row,
    validate_model_id,
    validate_replacing,
    validate_summary,
)
from bot.store.redis_inbox import RedisInbox
from bot.turns import Summary, Turn

__all__ = [
    "DEFAULT_PREFIX",
    "RedisStore",
    "RedisTarget",
    "conversation_part",
    "decode_summary",
    "decode_turn",
    "encode_summary",
    "encode_turn",
    "is_redis_url",
    "redis_client",
    "redis_target",
]

log = logging.getLogger("glimpse.store.redis")

DEFAULT_PREFIX = "glimpse"
DEFAULT_RETENTION_SECONDS = 30 * 86400
DEFAULT_MAX_TURNS = 1000  # per conversation; more than any request can use (history_turns is 200)
INDEX_GRACE_SECONDS = 86400  # the author index outlives its turns by this, so forget finds them
CONNECT_TIMEOUT_SECONDS = 2.0
COMMAND_TIMEOUT_SECONDS = 5.0
# Connections per process. A burst needing more waits for a free one (up to the command timeout):
# redis-py's default pool (100) refuses the 101st at once, which read as Redis being down.
MAX_CONNECTIONS = 200
RETRIES = 2  # after a dropped connection: reconnect and try again, then give up (StoreError)
RETRY_BASE_SECONDS = 0.05
RETRY_CAP_SECONDS = 0.5
HEALTH_CHECK_INTERVAL_SECONDS = 30
SCAN_BATCH = 500
FORMAT_VERSION = 1

_PREFIX_PATTERN = re.compile(r"[A-Za-z0-9_.:-]{1,100}")

# A stored turn is three parts joined by b"\n": a JSON header that Lua reads (created_at,
# author_id), a JSON body with the rest, and the image's raw bytes (empty without an image).
# JSON is ASCII-only (ensure_ascii), so the first two newlines are always the separators.
_HEADER = ("created_at", "author_id")
_BODY = tuple(c for c in TURN_COLUMNS if c not in _HEADER and c != "image")
# Body fields added after FORMAT_VERSION 1 first shipped, with their value in turns stored before.
_BODY_DEFAULTS = {"speaker": "", "image_caption": None}

# A summary is a hash of these fields (numbers as text, `through` and `updated_at` as Python's
# float repr, which reads back exactly); the text is UTF-8 (lone surrogates passed through).
_SUMMARY_FIELDS = (b"v", b"text", b"tokens", b"through", b"updated_at")

# The compare-and-set on `through`: store ARGV[3..] (field, value pairs) only if the stored
# summary's through equals ARGV[1] (or none is stored and ARGV[1] is ""); then expire the key
# after ARGV[2] ms (0: never). Returns 1 if stored.
_SAVE_SUMMARY_LUA = """
local key, replacing, ttl = KEYS[1], ARGV[1], tonumber(ARGV[2])
local current = redis.call('HGET', key, 'through')
if replacing == '' then
  if current then return 0 end
elseif not current or tonumber(current) ~= tonumber(replacing) then
  return 0
end
redis.call('HSET', key, unpack(ARGV, 3))
if ttl > 0 then
  redis.call('PEXPIRE', key, ttl)
else
  redis.call('PERSIST', key)
end
return 1
"""

# Delete the summary KEYS[1] if it was last updated before ARGV[1] (a save in between keeps it).
_PRUNE_SUMMARY_LUA = """
local updated = redis.call('HGET', KEYS[1], 'updated_at')
if updated and tonumber(updated) < tonumber(ARGV[1]) then
  return redis.call('DEL', KEYS[1])
end
return 0
"""

# Remove the turns of one list that match: ARGV[1] is "before" (created_at < ARGV[2]) or
# "author" (author_id == ARGV[2]). Reads the list in small windows, marks doomed turns with
# a tombstone (ARGV[3]) and removes them with one LREM: atomic, and never the whole list in memory.
_FILTER_LUA = """
local key, mode, value, tombstone = KEYS[1], ARGV[1], ARGV[2], ARGV[3]
local cutoff = tonumber(value)
local length = redis.call('LLEN', key)
local removed = 0
for start = 0, length - 1, 64 do
  local items = redis.call('LRANGE', key, start, start + 63)
  for i, item in ipairs(items) do
    local stop = string.find(item, '\\n', 1, true)
    local header = cjson.decode(string.sub(item, 1, stop - 1))
    local doomed
    if mode == 'before' then
      doomed = header.created_at < cutoff
    else
      doomed = header.author_id == value
    end
    if doomed then
      redis.call('LSET', key, start + i - 1, tombstone)
      removed = removed + 1
    end
  end
end
if removed > 0 then
  redis.call('LREM', key, 0, tombstone)
end
return removed
"""
_TOMBSTONE = b"\x00glimpse-removed\x00"  # never a stored turn: those start with "{"


@dataclass(frozen=True, slots=True)
class RedisTarget:
    """Where a redis:// URL points, split into what redis-py needs and what Glimpse adds."""

    url: str  # for redis-py: the URL without Glimpse's own `prefix` parameter
    prefix: str  # every key starts with `{prefix}:`
    where: str  # host:port/db, safe to log (no user name, no password)
    password: str | None

    def scrub(self, text: str) -> str:
        """`text` with the password blanked out, wherever an error message might echo it."""
        if self.password:
            for form in {self.password, quote(self.password, safe="")}:
                text = text.replace(form, "***")
        return text


def is_redis_url(url: str) -> bool:
    return url.lower().startswith(("redis://", "rediss://"))


def redis_target(url: str, prefix: str | None = None) -> RedisTarget:
    """Parse a `redis://[:password@]host[:port][/db][?prefix=name]` URL; raise ValueError if it is not one."""
    if not is_redis_url(url):
        raise ValueError("a Redis store URL starts with redis:// or rediss://")
    parts = urlsplit(url)
    query = parse_qsl(parts.query, keep_blank_values=True)
    named = [value for name, value in query if name == "prefix"]
    chosen = prefix or (named[-1] if named else DEFAULT_PREFIX)
    if not _PREFIX_PATTERN.fullmatch(chosen):
        raise ValueError(
            f"a Redis key prefix is 1-100 letters, digits and . _ - : characters (got {chosen!r})"
        )
    rest = urlencode([(name, value) for name, value in query if name != "prefix"])
    return RedisTarget(
        url=urlunsplit(parts._replace(query=rest)),
        prefix=chosen,
        where=_where(parts.hostname, parts.netloc, parts.path),
        password=parts.password,
    )


def redis_client(target: RedisTarget) -> Redis:
    """A client with its own connection pool (connections open lazily, reconnect by themselves).

    At most MAX_CONNECTIONS at once; more wait for one to be free rather than fail.
    """
    pool = BlockingConnectionPool.from_url(
        target.url,
        max_connections=MAX_CONNECTIONS,
        timeout=COMMAND_TIMEOUT_SECONDS,
        decode_responses=False,
        socket_connect_timeout=CONNECT_TIMEOUT_SECONDS,
        socket_timeout=COMMAND_TIMEOUT_SECONDS,
        retry=Retry(ExponentialWithJitterBackoff(RETRY_CAP_SECONDS, RETRY_BASE_SECONDS), RETRIES),
        health_check_interval=HEALTH_CHECK_INTERVAL_SECONDS,
        client_name=target.prefix,
    )
    return Redis.from_pool(pool)


def conversation_part(key: ConversationKey) -> str:
    """The conversation's part of a key name: each key part percent-escaped (so ':' never collides)."""
    return ":".join(quote(part, safe="") for part in key_params(key))


def encode_turn(key: ConversationKey, turn: Turn) -> bytes:
    """Validate the turn; the bytes a conversation list holds for it."""
    values = dict(zip(KEY_COLUMNS + TURN_COLUMNS, turn_to_row(key, turn), strict=True))
    header = {"v": FORMAT_VERSION, **{column: values[column] for column in _HEADER}}
    body = {column: values[column] for column in _BODY}
    return b"\n".join(
        (_json(header).encode("ascii"), _json(body).encode("ascii"), values["image"] or b"")
    )


def decode_turn(item: bytes) -> Turn:
    header_bytes, body_bytes, image = item.split(b"\n", 2)
    header = json.loads(header_bytes)
    if header.get("v") != FORMAT_VERSION:
        raise StoreError(
            f"a stored turn has format {header.get('v')!r}, which this Glimpse does not read; "
            "upgrade Glimpse"
        )
    values = {**_BODY_DEFAULTS, **header, **json.loads(body_bytes), "image": image}
    return row_to_turn([values[column] for column in TURN_COLUMNS])


def encode_summary(summary: Summary) -> list[bytes]:
    """Validate the summary; its hash as field, value, field, value… (in _SUMMARY_FIELDS order)."""
    validate_summary(summary)
    values = (
        str(FORMAT_VERSION).encode("ascii"),
        summary.text.encode("utf-8", "surrogatepass"),
        str(summary.tokens).encode("ascii"),
        repr(float(summary.through)).encode("ascii"),
        repr(float(summary.updated_at)).encode("ascii"),
    )
    return [part for pair in zip(_SUMMARY_FIELDS, values, strict=True) for part in pair]


def decode_summary(fields: dict[bytes, bytes]) -> Summary:
    """The Summary a stored hash holds."""
    if fields.get(b"v") != str(FORMAT_VERSION).encode("ascii"):
        raise StoreError(
            f"a stored summary has format {fields.get(b'v')!r}, which this Glimpse does not read; "
            "upgrade Glimpse"
        )
    return Summary(
        text=fields[b"text"].decode("utf-8", "surrogatepass"),
        tokens=int(fields[b"tokens"]),
        through=float(fields[b"through"]),
        updated_at=float(fields[b"updated_at"]),
    )


class RedisStore:
    """The Store contract in Redis, shared by every Glimpse process that uses the same URL and prefix.

    Keys (`P` is the prefix, parts percent-escaped): `P:conv:{platform}:{workspace}:{channel}:{thread}`
    a list of turns, oldest first; `P:summary:{same parts}` the conversation's summary (a hash,
    expiring with the list); `P:claim:{event id}` a claimed event id (SET NX PX);
    `P:author:{author id}` the set of conversation lists an author wrote in (for forget_user);
    `P:models` a hash of channels' models set by admins (field `{platform}:{workspace}:{channel}`,
    parts percent-escaped; never expires); the inbox's keys are described in `RedisInbox`.
    """

    def __init__(
        self,
        url: str,
        *,
        prefix: str | None = None,
        retention_seconds: float = DEFAULT_RETENTION_SECONDS,
        max_turns: int = DEFAULT_MAX_TURNS,
    ) -> None:
        self.target = redis_target(url, prefix)
        self.client = redis_client(self.target)  # one pool; the rate limiter and leases share it
        self._retention_ms = max(0, int(retention_seconds * 1000))
        self._max_turns = max(0, max_turns)
        self._filter = self.client.register_script(_FILTER_LUA)
        self._save_summary = self.client.register_script(_SAVE_SUMMARY_LUA)
        self._prune_summary = self.client.register_script(_PRUNE_SUMMARY_LUA)
        self._inbox = RedisInbox(self.client, self.target.prefix)
        self._open = False

    def __repr__(self) -> str:
        return f"RedisStore({self.target.where!r}, prefix={self.target.prefix!r})"

    # --- lifecycle ---

    async def open(self) -> None:
        if self._open:
            return
        try:
            await self.client.ping()
        except (RedisError, OSError) as exc:
            await self._disconnect_quietly()
            raise self._error("connect", exc) from None
        self._open = True

    async def close(self) -> None:
        if not self._open:
            return
        self._open = False
        try:
            await self.client.aclose()
        except (RedisError, OSError) as exc:
            raise self._error("close its connections", exc) from None

    async def ping(self) -> None:
        async with self._using("answer a ping") as client:
            await client.ping()

    # --- turns ---

    async def load(self, key: ConversationKey, limit: int) -> list[Turn]:
        async with self._using("load turns") as client:
            if limit <= 0:
                return []
            items = cast(list[bytes], await client.lrange(self._conversation(key), -limit, -1))
        return [decode_turn(item) for item in items]

    async def append(self, key: ConversationKey, turns: Sequence[Turn]) -> None:
        items = [encode_turn(key, turn) for turn in turns]
        if not items:
            return
        name = self._conversation(key)
        authors = sorted({turn.author_id for turn in turns if turn.author_id})
        async with self._using("store turns") as client:
            async with client.pipeline(transaction=True) as pipe:  # MULTI … EXEC
                pipe.rpush(name, *items)
                if self._max_turns:
                    pipe.ltrim(name, -self._max_turns, -1)
                self._expire(pipe, name, self._retention_ms)
                if self._retention_ms:  # the summary lives as long as its turns
                    pipe.pexpire(self._summary(key), self._retention_ms)
                for author in authors:
                    index = self._author(author)
                    pipe.sadd(index, name)
                    self._expire(pipe, index, self._index_ms)
                await pipe.execute()

    async def reset(self, key: ConversationKey) -> None:
        async with self._using("forget the conversation") as client:
            await client.delete(self._conversation(key), self._summary(key))

    async def load_summary(self, key: ConversationKey) -> Summary | None:
        async with self._using("load the summary") as client:
            fields = cast(dict[bytes, bytes], await client.hgetall(self._summary(key)))
        return decode_summary(fields) if fields else None

    async def save_summary(
        self, key: ConversationKey, summary: Summary, *, replacing: float | None
    ) -> bool:
        fields = encode_summary(summary)
        validate_replacing(replacing)
        expected = "" if replacing is None else repr(float(replacing))
        async with self._using("store the summary"):
            stored = await self._save_summary(
                keys=[self._summary(key)], args=[expected, self._retention_ms, *fields]
            )
        return bool(stored)

    async def prune(self, older_than: float) -> int:
        """Remove turns older than the cutoff (TTL drops idle lists whole), and summaries updated before it."""
        cutoff = repr(float(older_than))
        removed = 0
        async with self._using("prune old turns") as client:
            async for name in client.scan_iter(
                match=f"{self.target.prefix}:conv:*", count=SCAN_BATCH, _type="list"
            ):
                removed += await self._remove(name, "before", cutoff)
            async for name in client.scan_iter(
                match=f"{self.target.prefix}:summary:*", count=SCAN_BATCH, _type="hash"
            ):
                await self._prune_summary(keys=[name], args=[cutoff])
            await self._inbox.prune(older_than=older_than, keep=None)
        return removed

    async def forget_user(self, author_id: str) -> int:
        if not author_id:
            raise ValueError(
                "forget_user needs an author id (an empty one would match every bot turn)"
            )
        index = self._author(author_id)
        async with self._using("forget the user") as client:
            names = cast(list[bytes], list(await client.smembers(index)))
            removed = 0
            for name in names:
                removed += await self._remove(name, "author", author_id)
            if names:
                await client.delete(*(self._summary_of(name) for name in names))
                await client.srem(index, *names)
        return removed

    # --- claims ---

    async def claim(self, event_id: str, ttl_seconds: float) -> bool:
        name = f"{self.target.prefix}:claim:{quote(event_id, safe='')}"
        async with self._using("claim the event") as client:
            won = await client.set(name, b"1", nx=True, px=max(1, int(ttl_seconds * 1000)))
        return bool(won)

    # --- channel models ---

    async def get_channel_model(self, platform: str, workspace: str, channel: str) -> str | None:
        field = _channel_field(platform, workspace, channel)
        async with self._using("load the channel's model") as client:
            value = cast(bytes | None, await client.hget(self._models, field))
        return value.decode("utf-8") if value is not None else None

    async def set_channel_model(
        self, platform: str, workspace: str, channel: str, model: str | None
    ) -> None:
        validate_model_id(model)
        field = _channel_field(platform, workspace, channel)
        async with self._using("store the channel's model") as client:
            if model is None:
                await client.hdel(self._models, field)
            else:
                await client.hset(self._models, field, model.encode("utf-8"))

    async def channel_models(self) -> dict[tuple[str, str, str], str]:
        async with self._using("load the channels' models") as client:
            fields = cast(dict[bytes, bytes], await client.hgetall(self._models))
        return {_channel_of(field): model.decode("utf-8") for field, model in fields.items()}

    # --- the inbox ---

    async def inbox_record(self, entry: InboxEntry) -> bool:
        async with self._using("record the message in the inbox"):
            return await self._inbox.record(entry)

    async def inbox_get(self, event_id: str) -> InboxEntry | None:
        async with self._using("read the inbox"):
            return await self._inbox.get(event_id)

    async def inbox_update(
        self, event_id: str, *, instance: str, state: State, reply_id: str = ""
    ) -> bool:
        async with self._using("update the inbox"):
            return await self._inbox.update(
                event_id, instance=instance, state=state, reply_id=reply_id
            )

    async def inbox_take(self, event_id: str, *, attempts: int, instance: str) -> bool:
        async with self._using("take over an inbox entry"):
            return await self._inbox.take(event_id, attempts=attempts, instance=instance)

    async def inbox_unfinished(
        self, *, updated_before: float, claimed_after: float, limit: int
    ) -> list[InboxEntry]:
        async with self._using("read the inbox"):
            return await self._inbox.unfinished(
                updated_before=updated_before, claimed_after=claimed_after, limit=limit
            )

    async def inbox_threads(
        self, *, since: float, limit: int, platform: str | None = None
    ) -> list[InboxThread]:
        async with self._using("read the inbox"):
            return await self._inbox.threads(since=since, limit=limit, platform=platform)

    async def inbox_prune(self, *, older_than: float, keep: int) -> int:
        async with self._using("prune the inbox"):
            return await self._inbox.prune(older_than=older_than, keep=max(0, keep))

    # --- helpers ---

    @property
    def _models(self) -> str:
        return f"{self.target.prefix}:models"

    @property
    def _index_ms(self) -> int:
        """The author index's expiry: a little longer than the turns' (0: neither expires)."""
        return self._retention_ms + INDEX_GRACE_SECONDS * 1000 if self._retention_ms else 0

    def _conversation(self, key: ConversationKey) -> str:
        return f"{self.target.prefix}:conv:{conversation_part(key)}"

    def _summary(self, key: ConversationKey) -> str:
        return f"{self.target.prefix}:summary:{conversation_part(key)}"

    def _summary_of(self, conversation: bytes) -> bytes:
        """The summary key of a conversation list's key (as the author index holds it)."""
        part = conversation.removeprefix(f"{self.target.prefix}:conv:".encode("ascii"))
        return f"{self.target.prefix}:summary:".encode("ascii") + part

    def _author(self, author_id: str) -> str:
        return f"{self.target.prefix}:author:{quote(author_id, safe='')}"

    async def _remove(self, name: bytes | str, mode: str, value: str) -> int:
        return int(await self._filter(keys=[name], args=[mode, value, _TOMBSTONE]))

    @staticmethod
    def _expire(pipe: Pipeline, name: str, milliseconds: int) -> None:
        if milliseconds:
            pipe.pexpire(name, milliseconds)
        else:
            pipe.persist(name)

    @asynccontextmanager
    async def _using(self, action: str) -> AsyncIterator[Redis]:
        """The client, if the store is open; Redis and socket errors become StoreError."""
        if not self._open:
            raise StoreError("the Redis store is closed")
        try:
            yield self.client
        except (RedisError, OSError) as exc:
            raise self._error(action, exc) from None

    def _error(self, action: str, exc: BaseException) -> StoreError:
        detail = self.target.scrub(str(exc) or type(exc).__name__)
        return StoreError(f"Redis store at {self.target.where} could not {action}: {detail}")

    async def _disconnect_quietly(self) -> None:
        try:
            await self.client.aclose()
        except (RedisError, OSError) as exc:
            log.debug("closing the Redis pool after a failed connect: %s", type(exc).__name__)


def _channel_field(platform: str, workspace: str, channel: str) -> str:
    """A channel's field in the models hash: each part percent-escaped (so ':' never collides)."""
    return ":".join(quote(part, safe="") for part in (platform, workspace, channel))


def _channel_of(field: bytes) -> tuple[str, str, str]:
    """The (platform, workspace, channel) a models-hash field names."""
    platform, workspace, channel = (unquote(part) for part in field.decode("ascii").split(":"))
    return platform, workspace, channel


def _json(value: object) -> str:
    return json.dumps(value, separators=(",", ":"), ensure_ascii=True, allow_nan=False)


def _where(hostname: str | None, netloc: str, path: str) -> str:
    host_port = netloc.rpartition("@")[2] or hostname or "localhost"
    return f"{host_port}{path or '/0'}"
