"""The cost ledger as one row per model call in a `ledger` table of the store's SQLite file (ratings in `ratings`)."""

from __future__ import annotations

import asyncio
import datetime as dt
import os
import sqlite3
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import replace
from pathlib import Path

import aiosqlite

from bot.ledger import (
    FORGOTTEN,
    RETENTION_DAYS,
    Dimension,
    LedgerEntry,
    Payer,
    Rating,
    RatingEntry,
    Spend,
    UsageRow,
    sort_rows,
    utc_day,
)
from bot.store import StoreError

__all__ = ["SQLiteLedger"]

BUSY_TIMEOUT_MS = 5000

# Its own table, created if missing: the store's schema version (PRAGMA user_version) is untouched.
_SCHEMA = (
    """CREATE TABLE IF NOT EXISTS ledger (
        id INTEGER PRIMARY KEY AUTOINCREMENT,
        day TEXT NOT NULL,
        platform TEXT NOT NULL,
        workspace TEXT NOT NULL,
        channel TEXT NOT NULL,
        user_id TEXT NOT NULL,
        model TEXT NOT NULL,
        prompt_tokens INTEGER NOT NULL,
        completion_tokens INTEGER NOT NULL,
        cost REAL NOT NULL,
        images INTEGER NOT NULL,
        kind TEXT NOT NULL DEFAULT 'answer'
    )""",
    "CREATE INDEX IF NOT EXISTS ledger_by_day ON ledger (day, platform, workspace, channel)",
    "CREATE INDEX IF NOT EXISTS ledger_by_user ON ledger (user_id)",
    # One row per person and answer (`voter`: the user id, or a unique stand-in once forgotten).
    """CREATE TABLE IF NOT EXISTS ratings (
        id INTEGER PRIMARY KEY AUTOINCREMENT,
        day TEXT NOT NULL,
        platform TEXT NOT NULL,
        workspace TEXT NOT NULL,
        channel TEXT NOT NULL,
        user_id TEXT NOT NULL,
        voter TEXT NOT NULL,
        answer_id TEXT NOT NULL,
        model TEXT NOT NULL,
        rating TEXT NOT NULL
    )""",
    "CREATE UNIQUE INDEX IF NOT EXISTS ratings_once ON ratings (platform, workspace, answer_id, voter)",
    "CREATE INDEX IF NOT EXISTS ratings_by_day ON ratings (day)",
)
# A table made before summaries were recorded lacks `kind`: its rows were all answers.
_ADD_KIND = "ALTER TABLE ledger ADD COLUMN kind TEXT NOT NULL DEFAULT 'answer'"
_INSERT = (
    "INSERT INTO ledger (day, platform, workspace, channel, user_id, model, prompt_tokens, "
    "completion_tokens, cost, images, kind) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)"
)
_PREVIOUS_RATING = "SELECT rating FROM ratings WHERE platform = ? AND workspace = ? AND answer_id = ? AND voter = ?"
_RATE = """INSERT INTO ratings
    (day, platform, workspace, channel, user_id, voter, answer_id, model, rating)
    VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?)
    ON CONFLICT (platform, workspace, answer_id, voter) DO UPDATE SET
    day = excluded.day, channel = excluded.channel, model = excluded.model, rating = excluded.rating"""
_SPEND = """SELECT
    COALESCE(SUM(CASE WHEN platform = ? AND user_id = ? THEN cost END), 0),
    COALESCE(SUM(CASE WHEN platform = ? AND workspace = ? AND channel = ? THEN cost END), 0),
    COALESCE(SUM(CASE WHEN platform = ? AND workspace = ? THEN cost END), 0)
    FROM ledger WHERE day = ?"""
_GROUPS: dict[str, str] = {
    "day": "day",
    "workspace": "platform || ':' || workspace",
    "channel": "platform || ':' || workspace || ':' || channel",
    "user": f"platform || ':' || CASE WHEN user_id = '' THEN '{FORGOTTEN}' ELSE user_id END",
    "model": "model",
    "kind": "kind",
}
_RATING_GROUPS: dict[str, str] = {"kind": "'answer'"}  # the rest as in the ledger
_FORGET_RATER = f"UPDATE ratings SET user_id = '', voter = '{FORGOTTEN}#' || id WHERE user_id = ?"


class SQLiteLedger:
    """Ledger rows in the SQLite file the store uses (its own connection; WAL shares the file)."""

    def __init__(self, path: str | os.PathLike[str]) -> None:
        self.path = Path(path).expanduser()
        self._db: aiosqlite.Connection | None = None
        self._rating = asyncio.Lock()  # the previous rating is read and replaced as one step

    def __repr__(self) -> str:
        return f"SQLiteLedger({str(self.path)!r})"

    async def open(self) -> None:
        if self._db is not None:
            return
        try:
            self.path.parent.mkdir(parents=True, exist_ok=True)
            db = await aiosqlite.connect(self.path, isolation_level=None)
        except (OSError, sqlite3.Error) as exc:
            raise StoreError(f"SQLite ledger cannot open {self.path}: {exc}") from exc
        try:
            await _prepare(db)
        except sqlite3.Error as exc:
            await db.close()
            raise StoreError(f"SQLite ledger cannot prepare {self.path}: {exc}") from exc
        self._db = db

    async def close(self) -> None:
        db, self._db = self._db, None
        if db is not None:
            await db.close()

    async def record(self, entry: LedgerEntry) -> None:
        payer = entry.payer
        row = (
            entry.day,
            payer.platform,
            payer.workspace,
            payer.channel,
            payer.user,
            entry.model,
            entry.prompt_tokens,
            entry.completion_tokens,
            entry.cost,
            entry.images,
            entry.kind,
        )
        async with self._using("record usage") as db:
            await db.execute(_INSERT, row)

    async def rate(self, entry: RatingEntry) -> Rating | None:
        r = entry.rater
        where = (r.platform, r.workspace, entry.answer_id, r.user)
        row = (entry.day, r.platform, r.workspace, r.channel, r.user, r.user, entry.answer_id)
        async with self._rating, self._using("record a rating") as db:
            previous = list(await db.execute_fetchall(_PREVIOUS_RATING, where))
            await db.execute(_RATE, (*row, entry.model, entry.rating))
        return previous[0][0] if previous else None

    async def spend(self, day: str, payer: Payer) -> Spend:
        p = payer
        params = (p.platform, p.user, p.platform, p.workspace, p.channel, p.platform, p.workspace)
        async with self._using("read today's spend") as db:
            rows = list(await db.execute_fetchall(_SPEND, (*params, day)))
        user, channel, workspace = rows[0]
        return Spend(user=float(user), channel=float(channel), workspace=float(workspace))

    async def usage(self, first_day: str, last_day: str, by: Dimension) -> list[UsageRow]:
        group = _GROUPS[by]
        query = (
            f"SELECT {group}, SUM(kind = 'answer'), SUM(prompt_tokens), SUM(completion_tokens), "
            f"SUM(cost), SUM(images), SUM(kind = 'summary') "
            f"FROM ledger WHERE day BETWEEN ? AND ? GROUP BY 1"
        )
        votes = (
            f"SELECT {_RATING_GROUPS.get(by, group)}, SUM(rating = 'good'), SUM(rating = 'bad') "
            f"FROM ratings WHERE day BETWEEN ? AND ? GROUP BY 1"
        )
        async with self._using("read usage") as db:
            rows = await db.execute_fetchall(query, (first_day, last_day))
            rated = await db.execute_fetchall(votes, (first_day, last_day))
        totals = {
            str(g): UsageRow(str(g), int(a), int(p), int(c), float(cost), int(i), summaries=int(s))
            for g, a, p, c, cost, i, s in rows
        }
        for g, good, bad in rated:
            total = totals.get(str(g), UsageRow(str(g), 0, 0, 0, 0.0, 0))
            totals[str(g)] = replace(total, good=int(good), bad=int(bad))
        return sort_rows(totals.values(), by)

    async def forget_user(self, user: str) -> int:
        if not user:
            raise ValueError("forget_user needs a user id")
        forget = "UPDATE ledger SET user_id = '' WHERE user_id = ?"
        async with self._using("forget the user's usage") as db:
            answers = await db.execute(f"{forget} AND kind = 'answer'", (user,))
            await db.execute(forget, (user,))  # the other kinds: anonymised, not counted
            await db.execute(_FORGET_RATER, (user,))
            return answers.rowcount

    @asynccontextmanager
    async def _using(self, action: str) -> AsyncIterator[aiosqlite.Connection]:
        if self._db is None:
            raise StoreError("the SQLite ledger is closed")
        try:
            yield self._db
        except sqlite3.Error as exc:
            raise StoreError(f"SQLite ledger could not {action}: {exc}") from exc


async def _prepare(db: aiosqlite.Connection) -> None:
    """Settings, the table (and its `kind` column) if missing, rows past the retention dropped."""
    await db.execute(f"PRAGMA busy_timeout = {BUSY_TIMEOUT_MS}")
    await db.execute_fetchall("PRAGMA journal_mode = WAL")
    await db.execute("BEGIN IMMEDIATE")  # one process at a time creates or migrates the table
    try:
        for statement in _SCHEMA:
            await db.execute(statement)
        await _add_kind(db)
    except BaseException:
        await db.rollback()
        raise
    await db.commit()
    oldest = dt.date.fromisoformat(utc_day()) - dt.timedelta(days=RETENTION_DAYS)
    await db.execute("DELETE FROM ledger WHERE day < ?", (oldest.isoformat(),))
    await db.execute("DELETE FROM ratings WHERE day < ?", (oldest.isoformat(),))


async def _add_kind(db: aiosqlite.Connection) -> None:
    """Give a ledger table made before summaries its `kind` column (its rows are answers)."""
    columns = {str(row[1]) for row in await db.execute_fetchall("PRAGMA table_info(ledger)")}
    if "kind" not in columns:
        await db.execute(_ADD_KIND)
