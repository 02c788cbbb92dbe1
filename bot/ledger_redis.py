"""The cost ledger in Redis: one hash of counters per UTC day and dimension, expiring after 400 days.

Ratings add `good` / `bad` fields to the same hashes; each person's latest rating of an answer is
kept under `{prefix}:votes:…` so a changed rating moves its count instead of adding one.

Hashes written before summaries were recorded have no `summaries` fields (read as 0) and no
`kind` hash: `usage(..., "kind")` takes a day's answers as its totals less its summaries.
"""

from __future__ import annotations

import json
from collections.abc import AsyncIterator, Iterable
from contextlib import asynccontextmanager
from typing import Any

from redis.asyncio import Redis
from redis.exceptions import RedisError

from bot.ledger import (
    DIMENSIONS,
    FORGOTTEN,
    RETENTION_DAYS,
    Dimension,
    LedgerEntry,
    Payer,
    Rating,
    RatingEntry,
    Spend,
    UsageRow,
    day_range,
    sort_rows,
)
from bot.store import StoreError
from bot.store.redis import redis_client, redis_target

__all__ = ["RedisLedger"]

TTL_SECONDS = RETENTION_DAYS * 86400
_METRICS = ("answers", "prompt", "completion", "cost", "images", "summaries", "good", "bad")
Counters = dict[str, float]  # metric -> total
# Hash fields are "<member>|<metric>"; members (ids joined by ":") never contain "|".
_SEPARATOR = "|"

# Move every field of one user (any platform) to that platform's "(forgotten)" member, atomically.
_FORGET = f"""
local moved = 0
local flat = redis.call('HGETALL', KEYS[1])
for i = 1, #flat, 2 do
  local member, metric = string.match(flat[i], '^(.*)|([^|]*)$')
  local platform, user = string.match(member or '', '^([^:]*):(.*)$')
  if user == ARGV[1] then
    local target = platform .. ':{FORGOTTEN}|' .. metric
    if metric == 'cost' then
      redis.call('HINCRBYFLOAT', KEYS[1], target, flat[i + 1])
    else
      redis.call('HINCRBY', KEYS[1], target, flat[i + 1])
    end
    redis.call('HDEL', KEYS[1], flat[i])
    if metric == 'answers' then moved = moved + tonumber(flat[i + 1]) end
  end
end
return moved
"""


class RedisLedger:
    """Counters per day and dimension (HINCRBY / HINCRBYFLOAT), shared by every process.

    Keys are `{prefix}:ledger:{day}:{dimension}`, with the store URL's prefix (`?prefix=`).
    """

    def __init__(self, url: str, *, prefix: str | None = None, client: Redis | None = None) -> None:
        self._target = redis_target(url, prefix)
        self._redis: Redis | None = client
        self._owns_client = (
            client is None
        )  # a client passed in (the store's pool) is closed by its owner

    def __repr__(self) -> str:
        return f"RedisLedger({self._target.where!r}, prefix={self._target.prefix!r})"

    async def open(self) -> None:
        if self._redis is None:
            self._redis = redis_client(self._target)
        async with self._using("connect") as client:
            await client.ping()

    async def close(self) -> None:
        client, self._redis = self._redis, None
        if client is not None and self._owns_client:
            await client.aclose()

    async def record(self, entry: LedgerEntry) -> None:
        async with self._using("record usage") as client:
            pipe = client.pipeline(transaction=True)
            for dimension in DIMENSIONS:
                key = self._key(entry.day, dimension)
                member = entry.group(dimension)
                for metric, amount in _amounts(entry).items():
                    if not amount:
                        continue  # a missing field reads as 0
                    field = f"{member}{_SEPARATOR}{metric}"
                    if isinstance(amount, float):
                        pipe.hincrbyfloat(key, field, amount)
                    else:
                        pipe.hincrby(key, field, amount)
                pipe.expire(key, TTL_SECONDS)
            await pipe.execute()

    async def rate(self, entry: RatingEntry) -> Rating | None:
        r = entry.rater
        vote = f"{self._target.prefix}:votes:{r.platform}:{r.workspace}:{entry.answer_id}:{r.user}"
        kept = json.dumps(
            {"day": entry.day, "channel": r.channel, "model": entry.model, "rating": entry.rating}
        )
        async with self._using("record a rating") as client:
            # SET … GET swaps atomically: each change of a vote is counted exactly once.
            old = await client.set(vote, kept, ex=TTL_SECONDS, get=True)
            previous = _vote(entry, old)
            if previous == entry:
                return previous.rating
            pipe = client.pipeline(transaction=True)
            if previous is not None:
                self._count(pipe, previous, -1)
            self._count(pipe, entry, 1)
            await pipe.execute()
        return previous.rating if previous is not None else None

    def _count(self, pipe: Any, entry: RatingEntry, amount: int) -> None:
        for dimension in DIMENSIONS:
            key = self._key(entry.day, dimension)
            pipe.hincrby(key, f"{entry.group(dimension)}{_SEPARATOR}{entry.rating}", amount)
            pipe.expire(key, TTL_SECONDS)

    async def spend(self, day: str, payer: Payer) -> Spend:
        async with self._using("read today's spend") as client:
            pipe = client.pipeline(transaction=False)
            for dimension in ("user", "channel", "workspace"):
                field = f"{payer.member(dimension)}{_SEPARATOR}cost"
                pipe.hget(self._key(day, dimension), field)
            user, channel, workspace = await pipe.execute()
        return Spend(user=_float(user), channel=_float(channel), workspace=_float(workspace))

    async def usage(self, first_day: str, last_day: str, by: Dimension) -> list[UsageRow]:
        days = day_range(first_day, last_day)
        if by == "kind":
            every_call = _totals(await self._hashes(days, "day"))
            summaries = _totals(await self._hashes(days, "kind")).get("summary", _zero())
            return sort_rows(_kind_rows(every_call.values(), summaries), by)
        totals = _totals(await self._hashes(days, by))
        return sort_rows((_row(member, counters) for member, counters in totals.items()), by)

    async def forget_user(self, user: str) -> int:
        if not user:
            raise ValueError("forget_user needs a user id")
        async with self._using("forget the user's usage") as client:
            script = client.register_script(_FORGET)
            moved = 0
            async for key in client.scan_iter(match=self._key("*", "user"), count=500):
                moved += int(await script(keys=[key], args=[user]))
            votes = f"{self._target.prefix}:votes:*:{_glob_literal(user)}"
            async for key in client.scan_iter(match=votes, count=500):
                await client.delete(key)  # their counts were moved above; who voted is forgotten
            return moved

    async def _hashes(self, days: list[str], dimension: Dimension) -> list[dict[bytes, bytes]]:
        """The hash of `dimension` for each of `days` (empty where nothing was recorded)."""
        async with self._using("read usage") as client:
            pipe = client.pipeline(transaction=False)
            for day in days:
                pipe.hgetall(self._key(day, dimension))
            return list(await pipe.execute())

    def _key(self, day: str, dimension: str) -> str:
        return f"{self._target.prefix}:ledger:{day}:{dimension}"

    @asynccontextmanager
    async def _using(self, action: str) -> AsyncIterator[Redis]:
        if self._redis is None:
            raise StoreError("the Redis ledger is closed")
        try:
            yield self._redis
        except RedisError as exc:
            detail = self._target.scrub(str(exc))
            raise StoreError(
                f"Redis ledger at {self._target.where} could not {action}: {detail}"
            ) from exc


def _amounts(entry: LedgerEntry) -> dict[str, Any]:
    answer = entry.kind == "answer"
    return {
        "answers": int(answer),
        "summaries": int(not answer),
        "prompt": entry.prompt_tokens,
        "completion": entry.completion_tokens,
        "cost": float(entry.cost),
        "images": entry.images,
    }


def _zero() -> Counters:
    return dict.fromkeys(_METRICS, 0.0)


def _totals(hashes: Iterable[dict[bytes, bytes]]) -> dict[str, Counters]:
    """Counters per member, added up over hashes of "<member>|<metric>" fields."""
    totals: dict[str, Counters] = {}
    for fields in hashes:
        for field, value in fields.items():
            member, _, metric = field.decode().rpartition(_SEPARATOR)
            counters = totals.setdefault(member, _zero())
            counters[metric] = counters.get(metric, 0.0) + float(value)
    return totals


def _kind_rows(every_call: Iterable[Counters], summaries: Counters) -> list[UsageRow]:
    """The answer and summary rows: answers are every call less the summaries."""
    answers = _zero()
    for counters in every_call:
        for metric in _METRICS:
            answers[metric] += counters.get(metric, 0.0)
    for metric in _METRICS:
        answers[metric] = max(0.0, answers[metric] - summaries[metric])  # no float residue below 0
    rows = [_row("answer", answers), _row("summary", summaries)]
    return [row for row in rows if row.answers or row.summaries]


def _row(member: str, counters: Counters) -> UsageRow:
    return UsageRow(
        group=member,
        answers=int(counters["answers"]),
        prompt_tokens=int(counters["prompt"]),
        completion_tokens=int(counters["completion"]),
        cost=counters["cost"],
        images=int(counters["images"]),
        summaries=int(counters["summaries"]),
        good=int(counters.get("good", 0)),
        bad=int(counters.get("bad", 0)),
    )


def _float(value: bytes | None) -> float:
    return float(value) if value else 0.0


def _vote(entry: RatingEntry, kept: object) -> RatingEntry | None:
    """The rating a vote key held before `entry` replaced it (same answer and rater)."""
    if not isinstance(kept, bytes | str) or not kept:
        return None
    old = json.loads(kept)
    rater = Payer(entry.rater.platform, entry.rater.workspace, old["channel"], entry.rater.user)
    return RatingEntry(old["day"], rater, entry.answer_id, old["model"], old["rating"])


def _glob_literal(text: str) -> str:
    """`text` matched literally by SCAN's glob pattern."""
    return "".join(f"\\{c}" if c in "*?[]\\" else c for c in text)
