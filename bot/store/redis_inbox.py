"""The inbox in Redis: a hash per claimed message, sorted sets to find open work and recent threads."""

from __future__ import annotations

import time
from typing import cast
from urllib.parse import quote, unquote

from redis.asyncio import Redis

from bot.inbox.records import InboxEntry, InboxThread, State, validate_entry
from bot.messages import ConversationKey
from bot.store.base import StoreError
from bot.store.codec import INBOX_COLUMNS

__all__ = ["DEFAULT_INBOX_TTL_SECONDS", "RedisInbox"]

DEFAULT_INBOX_TTL_SECONDS = 7 * 86400  # an entry's own expiry; the inbox prunes sooner by settings
FORMAT_VERSION = b"1"

_OPEN_LUA_TEST = "(s == 'claimed' or s == 'answering')"

# KEYS: entry, all, open, threads, newest. ARGV: event id, conversation, claimed_at, updated_at,
# ttl ms, message id, is open ("1"/"0"), then the hash's field, value pairs. 1 if recorded.
_RECORD_LUA = """
if redis.call('EXISTS', KEYS[1]) == 1 then return 0 end
redis.call('HSET', KEYS[1], unpack(ARGV, 8))
if tonumber(ARGV[5]) > 0 then redis.call('PEXPIRE', KEYS[1], ARGV[5]) end
redis.call('ZADD', KEYS[2], ARGV[3], ARGV[1])
if ARGV[7] == '1' then redis.call('ZADD', KEYS[3], ARGV[4], ARGV[1]) end
local last = redis.call('ZSCORE', KEYS[4], ARGV[2])
if not last or tonumber(last) <= tonumber(ARGV[3]) then
  redis.call('ZADD', KEYS[4], ARGV[3], ARGV[2])
  redis.call('HSET', KEYS[5], ARGV[2], ARGV[6])
end
return 1
"""

# KEYS: entry, open. ARGV: event id, instance, state, reply id, now. 1 if updated.
_UPDATE_LUA = f"""
local found = redis.call('HMGET', KEYS[1], 'state', 'instance')
local s = found[1]
if not {_OPEN_LUA_TEST} or found[2] ~= ARGV[2] then return 0 end
redis.call('HSET', KEYS[1], 'state', ARGV[3], 'updated_at', ARGV[5])
if ARGV[4] ~= '' then redis.call('HSET', KEYS[1], 'reply_id', ARGV[4]) end
s = ARGV[3]
if {_OPEN_LUA_TEST} then
  redis.call('ZADD', KEYS[2], ARGV[5], ARGV[1])
else
  redis.call('ZREM', KEYS[2], ARGV[1])
end
return 1
"""

# KEYS: entry, open. ARGV: event id, attempts expected, instance, now. 1 if taken.
_TAKE_LUA = f"""
local found = redis.call('HMGET', KEYS[1], 'state', 'attempts')
local s = found[1]
if not {_OPEN_LUA_TEST} or tonumber(found[2]) ~= tonumber(ARGV[2]) then return 0 end
redis.call('HSET', KEYS[1], 'state', 'claimed', 'attempts', tostring(tonumber(ARGV[2]) + 1),
  'instance', ARGV[3], 'updated_at', ARGV[4])
redis.call('ZADD', KEYS[2], ARGV[4], ARGV[1])
return 1
"""


class RedisInbox:
    """`P:inbox:{event id}` a hash per entry (expiring); `P:inbox-all` (by claimed_at) and
    `P:inbox-open` (open entries, by updated_at) sorted sets of event ids; `P:inbox-threads`
    conversations by their newest claim and `P:inbox-newest` that claim's message id."""

    def __init__(
        self, client: Redis, prefix: str, *, ttl_seconds: float = DEFAULT_INBOX_TTL_SECONDS
    ) -> None:
        self._client = client
        self._prefix = prefix
        self._ttl_ms = max(0, int(ttl_seconds * 1000))
        self._all = f"{prefix}:inbox-all"
        self._open = f"{prefix}:inbox-open"
        self._threads = f"{prefix}:inbox-threads"
        self._newest = f"{prefix}:inbox-newest"
        self._record = client.register_script(_RECORD_LUA)
        self._update = client.register_script(_UPDATE_LUA)
        self._take = client.register_script(_TAKE_LUA)

    async def record(self, entry: InboxEntry) -> bool:
        validate_entry(entry)
        values = {
            "event_id": entry.event_id,
            "platform": entry.key.platform,
            "workspace": entry.key.workspace,
            "channel": entry.key.channel,
            "thread": entry.key.thread,
            "message_id": entry.message_id,
            "state": entry.state.value,
            "message": entry.message,
            "instance": entry.instance,
            "claimed_at": repr(float(entry.claimed_at)),
            "updated_at": repr(float(entry.updated_at)),
            "attempts": str(entry.attempts),
            "reply_id": entry.reply_id,
        }
        pairs: list[str | bytes] = ["v", FORMAT_VERSION]
        for field in INBOX_COLUMNS:
            pairs += [field, values[field].encode("utf-8", "surrogatepass")]
        args: list[str | bytes] = [
            entry.event_id,
            _conversation(entry.key),
            values["claimed_at"],
            values["updated_at"],
            str(self._ttl_ms),
            entry.message_id,
            "1" if entry.is_open else "0",
            *pairs,
        ]
        keys = [self._entry(entry.event_id), self._all, self._open, self._threads, self._newest]
        return bool(await self._record(keys=keys, args=args))

    async def get(self, event_id: str) -> InboxEntry | None:
        fields = cast(dict[bytes, bytes], await self._client.hgetall(self._entry(event_id)))
        return _entry_from(fields) if fields else None

    async def update(self, event_id: str, *, instance: str, state: State, reply_id: str) -> bool:
        args = [event_id, instance, State(state).value, reply_id, repr(_now())]
        keys = [self._entry(event_id), self._open]
        return bool(await self._update(keys=keys, args=args))

    async def take(self, event_id: str, *, attempts: int, instance: str) -> bool:
        args = [event_id, str(attempts), instance, repr(_now())]
        return bool(await self._take(keys=[self._entry(event_id), self._open], args=args))

    async def unfinished(
        self, *, updated_before: float, claimed_after: float, limit: int
    ) -> list[InboxEntry]:
        # An entry is updated no earlier than it was claimed: `claimed_after` bounds the range too.
        ids = cast(
            list[bytes],
            await self._client.zrangebyscore(
                self._open, f"({float(claimed_after)!r}", f"({float(updated_before)!r}"
            ),
        )
        found: list[InboxEntry] = []
        gone: list[bytes] = []
        for event_id, entry in zip(ids, await self._entries(ids), strict=True):
            if entry is None or not entry.is_open:
                gone.append(event_id)
            elif entry.claimed_at > claimed_after and entry.updated_at < updated_before:
                found.append(entry)
        if gone:
            await self._client.zrem(self._open, *gone)
        return sorted(found, key=lambda entry: entry.claimed_at)[: max(0, limit)]

    async def threads(self, *, since: float, limit: int, platform: str | None) -> list[InboxThread]:
        if limit <= 0:
            return []
        scored = cast(
            list[tuple[bytes, float]],
            await self._client.zrevrangebyscore(
                self._threads, "+inf", repr(float(since)), withscores=True
            ),
        )
        chosen = [
            (member, score)
            for member, score in scored
            if platform is None or _key_of(member).platform == platform
        ][:limit]
        if not chosen:
            return []
        ids = cast(
            list[bytes | None], await self._client.hmget(self._newest, [m for m, _ in chosen])
        )
        return [
            InboxThread(
                _key_of(member), (message_id or b"").decode("utf-8", "surrogatepass"), score
            )
            for (member, score), message_id in zip(chosen, ids, strict=True)
        ]

    async def prune(self, *, older_than: float, keep: int | None) -> int:
        """Entries claimed before `older_than`, and all but the newest `keep` (None: any number)."""
        doomed = set(
            cast(
                list[bytes],
                await self._client.zrangebyscore(self._all, "-inf", f"({float(older_than)!r}"),
            )
        )
        old_threads = cast(
            list[bytes],
            await self._client.zrangebyscore(self._threads, "-inf", f"({float(older_than)!r}"),
        )
        if keep is not None:
            count = int(await self._client.zcard(self._all))
            if count > keep:
                doomed.update(
                    cast(list[bytes], await self._client.zrange(self._all, 0, count - keep - 1))
                )
            threads = int(await self._client.zcard(self._threads))
            if threads > keep:
                old_threads += cast(
                    list[bytes], await self._client.zrange(self._threads, 0, threads - keep - 1)
                )
        async with self._client.pipeline(transaction=True) as pipe:
            for event_id in doomed:
                pipe.delete(self._entry(event_id.decode("utf-8", "surrogatepass")))
            if doomed:
                pipe.zrem(self._all, *doomed)
                pipe.zrem(self._open, *doomed)
            if old_threads:
                pipe.zrem(self._threads, *old_threads)
                pipe.hdel(self._newest, *old_threads)
            await pipe.execute()
        return len(doomed)

    async def _entries(self, ids: list[bytes]) -> list[InboxEntry | None]:
        if not ids:
            return []
        async with self._client.pipeline(transaction=False) as pipe:
            for event_id in ids:
                pipe.hgetall(self._entry(event_id.decode("utf-8", "surrogatepass")))
            rows = cast(list[dict[bytes, bytes]], await pipe.execute())
        return [_entry_from(fields) if fields else None for fields in rows]

    def _entry(self, event_id: str) -> str:
        return f"{self._prefix}:inbox:{quote(event_id, safe='')}"


def _entry_from(fields: dict[bytes, bytes]) -> InboxEntry:
    if fields.get(b"v") != FORMAT_VERSION:
        raise StoreError(
            f"an inbox entry has format {fields.get(b'v')!r}, which this Glimpse does not read; "
            "upgrade Glimpse"
        )
    text = {
        field: fields[field.encode("ascii")].decode("utf-8", "surrogatepass")
        for field in INBOX_COLUMNS
    }
    return InboxEntry(
        event_id=text["event_id"],
        key=ConversationKey(text["platform"], text["workspace"], text["channel"], text["thread"]),
        message_id=text["message_id"],
        state=State(text["state"]),
        message=text["message"],
        instance=text["instance"],
        claimed_at=float(text["claimed_at"]),
        updated_at=float(text["updated_at"]),
        attempts=int(text["attempts"]),
        reply_id=text["reply_id"],
    )


def _conversation(key: ConversationKey) -> str:
    return ":".join(
        quote(part, safe="") for part in (key.platform, key.workspace, key.channel, key.thread)
    )


def _key_of(member: bytes) -> ConversationKey:
    platform, workspace, channel, thread = (
        unquote(part) for part in member.decode("ascii").split(":")
    )
    return ConversationKey(platform, workspace, channel, thread)


def _now() -> float:
    return time.time()
