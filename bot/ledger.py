"""The cost ledger: what each model call (answer or summary) used and cost, who pays, how it was rated."""

from __future__ import annotations

import datetime as dt
import time
from collections.abc import Iterable
from dataclasses import dataclass, replace
from typing import TYPE_CHECKING, Literal, Protocol, get_args

if TYPE_CHECKING:
    from redis.asyncio import Redis

__all__ = [
    "FORGOTTEN",
    "KINDS",
    "RETENTION_DAYS",
    "CallKind",
    "Dimension",
    "Ledger",
    "LedgerEntry",
    "RATINGS",
    "Payer",
    "Rating",
    "RatingEntry",
    "Spend",
    "UsageRow",
    "add_rows",
    "day_range",
    "open_ledger",
    "sort_rows",
    "summarise",
    "utc_day",
]

Dimension = Literal["day", "workspace", "channel", "user", "model", "kind"]
DIMENSIONS: tuple[Dimension, ...] = get_args(Dimension)
CallKind = Literal["answer", "summary"]  # an answer to a message, or a summary of older turns
KINDS: tuple[CallKind, ...] = get_args(CallKind)
Rating = Literal["good", "bad"]  # a person's verdict on one answer (the feedback buttons)
RATINGS: tuple[Rating, ...] = get_args(Rating)
FORGOTTEN = "(forgotten)"  # shown instead of the id of a user who asked to be forgotten
RETENTION_DAYS = 400  # usage older than this is dropped (Redis: key TTL; SQLite: on open)


@dataclass(frozen=True, slots=True)
class Payer:
    """Who an answer is charged to: a user, in a channel (a thread's parent), in a workspace."""

    platform: str
    workspace: str
    channel: str
    user: str  # "" once the user has been forgotten

    def member(self, dimension: Dimension) -> str:
        """This payer's name in one dimension (ids are only unique per platform, so it is included)."""
        if dimension == "user":
            return f"{self.platform}:{self.user or FORGOTTEN}"
        if dimension == "channel":
            return f"{self.platform}:{self.workspace}:{self.channel}"
        if dimension == "workspace":
            return f"{self.platform}:{self.workspace}"
        raise ValueError(f"a payer has no {dimension!r} member")


@dataclass(frozen=True, slots=True)
class LedgerEntry:
    """One model call: UTC day, payer, model, tokens, dollars, images sent, and its kind."""

    day: str  # YYYY-MM-DD, UTC
    payer: Payer
    model: str
    prompt_tokens: int
    completion_tokens: int
    cost: float  # US dollars, as OpenRouter reported it
    images: int
    kind: CallKind = "answer"

    def group(self, by: Dimension) -> str:
        """This entry's group in one dimension (its row of `glimpse usage --by`)."""
        if by == "day":
            return self.day
        if by == "model":
            return self.model
        if by == "kind":
            return self.kind
        return self.payer.member(by)


@dataclass(frozen=True, slots=True)
class RatingEntry:
    """One person's rating of one answer; a later rating by the same person of that answer replaces it.

    `rater` holds the answer's platform, workspace and channel, and the id of who rated it.
    """

    day: str  # YYYY-MM-DD, UTC, of the (latest) rating
    rater: Payer
    answer_id: str  # the platform's id of the rated reply (Slack: its message ts)
    model: str
    rating: Rating

    def group(self, by: Dimension) -> str:
        """This rating's group in one dimension; a rating is always of an answer."""
        if by == "day":
            return self.day
        if by == "model":
            return self.model
        if by == "kind":
            return "answer"
        return self.rater.member(by)


@dataclass(frozen=True, slots=True)
class Spend:
    """Dollars already spent on one day by a payer's user, channel and workspace."""

    user: float = 0.0
    channel: float = 0.0
    workspace: float = 0.0


@dataclass(frozen=True, slots=True)
class UsageRow:
    """Totals of one group (a day, a channel, a user, a model…) over a range of days.

    `answers` and `summaries` count the calls of each kind; tokens, cost and images cover both.
    `good` and `bad` count people's ratings of answers (each person's latest, once per answer).
    """

    group: str
    answers: int
    prompt_tokens: int
    completion_tokens: int
    cost: float
    images: int
    summaries: int = 0
    good: int = 0
    bad: int = 0

    @property
    def good_share(self) -> float | None:
        """Good ratings among all ratings (0..1), or None when nobody rated."""
        rated = self.good + self.bad
        return self.good / rated if rated else None


class Ledger(Protocol):
    """Where model calls' usage is recorded; backends raise StoreError when unreachable."""

    async def open(self) -> None: ...

    async def close(self) -> None: ...

    async def record(self, entry: LedgerEntry) -> None:
        """Add one model call's usage (an answer or a summary)."""

    async def rate(self, entry: RatingEntry) -> Rating | None:
        """Record a person's rating of an answer (replacing theirs); their previous rating, if any."""

    async def spend(self, day: str, payer: Payer) -> Spend:
        """What the payer's user, channel and workspace have spent on `day` (every kind of call)."""

    async def usage(self, first_day: str, last_day: str, by: Dimension) -> list[UsageRow]:
        """Totals per group over the days from `first_day` to `last_day`, inclusive."""

    async def forget_user(self, user: str) -> int:
        """Anonymise the user's entries (every kind, and their ratings) everywhere; how many answers."""


def utc_day(at: float | None = None) -> str:
    """The UTC calendar day of a unix time (now by default), as YYYY-MM-DD."""
    return time.strftime("%Y-%m-%d", time.gmtime(time.time() if at is None else at))


def day_range(first_day: str, last_day: str) -> list[str]:
    """Every day from `first_day` to `last_day`, inclusive, oldest first."""
    first = dt.date.fromisoformat(first_day)
    count = (dt.date.fromisoformat(last_day) - first).days + 1
    return [(first + dt.timedelta(days=offset)).isoformat() for offset in range(max(0, count))]


def summarise(
    entries: Iterable[LedgerEntry], by: Dimension, ratings: Iterable[RatingEntry] = ()
) -> list[UsageRow]:
    """Entries (and ratings) added up per group, sorted as `sort_rows` does."""
    totals: dict[str, UsageRow] = {}
    for entry in entries:
        group = entry.group(by)
        totals[group] = add_rows(
            totals.get(group, UsageRow(group, 0, 0, 0, 0.0, 0)), _row_of(entry)
        )
    for rating in ratings:
        group = rating.group(by)
        votes = UsageRow(group, 0, 0, 0, 0.0, 0, good=int(rating.rating == "good"))
        votes = replace(votes, bad=int(rating.rating == "bad"))
        totals[group] = add_rows(totals.get(group, UsageRow(group, 0, 0, 0, 0.0, 0)), votes)
    return sort_rows(totals.values(), by)


def _row_of(entry: LedgerEntry) -> UsageRow:
    """One entry as a row of its own: one answer or one summary."""
    answer = entry.kind == "answer"
    return UsageRow(
        group=entry.group("kind"),
        answers=int(answer),
        prompt_tokens=entry.prompt_tokens,
        completion_tokens=entry.completion_tokens,
        cost=entry.cost,
        images=entry.images,
        summaries=int(not answer),
    )


def add_rows(total: UsageRow, row: UsageRow) -> UsageRow:
    """`row` added to `total`, keeping the group of `total`."""
    return UsageRow(
        group=total.group,
        answers=total.answers + row.answers,
        prompt_tokens=total.prompt_tokens + row.prompt_tokens,
        completion_tokens=total.completion_tokens + row.completion_tokens,
        cost=total.cost + row.cost,
        images=total.images + row.images,
        summaries=total.summaries + row.summaries,
        good=total.good + row.good,
        bad=total.bad + row.bad,
    )


def sort_rows(rows: Iterable[UsageRow], by: Dimension) -> list[UsageRow]:
    """Days in order; anything else by spend, biggest first."""
    if by == "day":
        return sorted(rows, key=lambda row: row.group)
    return sorted(rows, key=lambda row: (-row.cost, row.group))


def open_ledger(url: str, *, redis: Redis | None = None) -> Ledger:
    """The ledger next to the store `url` names: the same SQLite file, Redis server, or memory.

    `redis`: a client to share (the Redis store's pool) instead of opening another.
    """
    from bot.store import sqlite_path

    scheme = url.partition("://")[0].lower()
    if scheme == "sqlite":
        from bot.ledger_sqlite import SQLiteLedger

        return SQLiteLedger(sqlite_path(url))
    if scheme in ("redis", "rediss"):
        from bot.ledger_redis import RedisLedger

        return RedisLedger(url, client=redis)
    if scheme == "memory":
        from bot.ledger_memory import MemoryLedger

        return MemoryLedger()
    raise ValueError(f"no ledger for store URL scheme {scheme!r}")
