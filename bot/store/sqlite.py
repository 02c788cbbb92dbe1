"""The embedded memory store: one SQLite file (WAL) through one aiosqlite connection."""

from __future__ import annotations

import asyncio
import os
import sqlite3
import time
from collections.abc import AsyncIterator, Sequence
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

import aiosqlite

from bot.inbox.records import InboxEntry, InboxThread, State, validate_entry
from bot.messages import ConversationKey
from bot.store.base import StoreError
from bot.store.codec import (
    INBOX_COLUMNS,
    KEY_COLUMNS,
    TURN_COLUMNS,
    key_params,
    row_to_turn,
    turn_to_row,
    validate_model_id,
    validate_replacing,
    validate_summary,
)
from bot.turns import Summary, Turn

__all__ = ["SCHEMA_VERSION", "SQLiteStore"]

SCHEMA_VERSION = 4

# Statements that take the schema from version N-1 to N; `PRAGMA user_version` records N.
_MIGRATIONS: dict[int, tuple[str, ...]] = {
    1: (
        """CREATE TABLE turns (
            id INTEGER PRIMARY KEY AUTOINCREMENT,
            platform TEXT NOT NULL,
            workspace TEXT NOT NULL,
            channel TEXT NOT NULL,
            thread TEXT NOT NULL,
            role TEXT NOT NULL CHECK (role IN ('user', 'assistant')),
            text TEXT NOT NULL,
            tokens INTEGER NOT NULL,
            created_at REAL NOT NULL,
            author_id TEXT NOT NULL DEFAULT '',
            message_id TEXT NOT NULL DEFAULT '',
            image BLOB,
            image_mime TEXT,
            image_width INTEGER,
            image_height INTEGER,
            image_label TEXT,
            usage_model TEXT,
            usage_prompt_tokens INTEGER,
            usage_completion_tokens INTEGER,
            usage_cost REAL
        )""",
        "CREATE INDEX turns_by_conversation ON turns (platform, workspace, channel, thread, id)",
        "CREATE INDEX turns_by_created_at ON turns (created_at)",
        "CREATE INDEX turns_by_author ON turns (author_id)",
        "CREATE TABLE claims (event_id TEXT PRIMARY KEY, expires_at REAL NOT NULL) WITHOUT ROWID",
        "CREATE INDEX claims_by_expiry ON claims (expires_at)",
    ),
    2: (
        "ALTER TABLE turns ADD COLUMN speaker TEXT NOT NULL DEFAULT ''",
        "ALTER TABLE turns ADD COLUMN image_caption TEXT",
        """CREATE TABLE summaries (
            platform TEXT NOT NULL,
            workspace TEXT NOT NULL,
            channel TEXT NOT NULL,
            thread TEXT NOT NULL,
            text TEXT NOT NULL,
            tokens INTEGER NOT NULL,
            through REAL NOT NULL,
            updated_at REAL NOT NULL,
            PRIMARY KEY (platform, workspace, channel, thread)
        ) WITHOUT ROWID""",
        "CREATE INDEX summaries_by_updated_at ON summaries (updated_at)",
    ),
    3: (
        """CREATE TABLE channel_models (
            platform TEXT NOT NULL,
            workspace TEXT NOT NULL,
            channel TEXT NOT NULL,
            model TEXT NOT NULL,
            updated_at REAL NOT NULL,
            PRIMARY KEY (platform, workspace, channel)
        ) WITHOUT ROWID""",
    ),
    4: (
        """CREATE TABLE inbox (
            event_id TEXT PRIMARY KEY,
            platform TEXT NOT NULL,
            workspace TEXT NOT NULL,
            channel TEXT NOT NULL,
            thread TEXT NOT NULL,
            message_id TEXT NOT NULL,
            state TEXT NOT NULL CHECK (state IN ('claimed', 'answering', 'answered', 'failed')),
            message TEXT NOT NULL,
            instance TEXT NOT NULL,
            claimed_at REAL NOT NULL,
            updated_at REAL NOT NULL,
            attempts INTEGER NOT NULL,
            reply_id TEXT NOT NULL
        ) WITHOUT ROWID""",
        "CREATE INDEX inbox_by_state ON inbox (state, updated_at)",
        "CREATE INDEX inbox_by_claimed_at ON inbox (claimed_at)",
    ),
}

_KEY_MATCH = " AND ".join(f"{column} = ?" for column in KEY_COLUMNS)
_INSERT_TURN = (
    f"INSERT INTO turns ({', '.join(KEY_COLUMNS + TURN_COLUMNS)}) "
    f"VALUES ({', '.join('?' for _ in KEY_COLUMNS + TURN_COLUMNS)})"
)
_SELECT_NEWEST = (
    f"SELECT {', '.join(TURN_COLUMNS)} FROM turns WHERE {_KEY_MATCH} ORDER BY id DESC LIMIT ?"
)
_SUMMARY_COLUMNS = ("text", "tokens", "through", "updated_at")
_SELECT_SUMMARY = f"SELECT {', '.join(_SUMMARY_COLUMNS)} FROM summaries WHERE {_KEY_MATCH}"
# The compare-and-set on `through`: a first summary is inserted only if there is none; a later
# one replaces only the summary it was based on. changes() is 1 exactly when it is stored.
_INSERT_FIRST_SUMMARY = (
    f"INSERT INTO summaries ({', '.join(KEY_COLUMNS + _SUMMARY_COLUMNS)}) "
    f"VALUES ({', '.join('?' for _ in KEY_COLUMNS + _SUMMARY_COLUMNS)}) ON CONFLICT DO NOTHING"
)
_REPLACE_SUMMARY = (
    f"UPDATE summaries SET {', '.join(f'{column} = ?' for column in _SUMMARY_COLUMNS)} "
    f"WHERE {_KEY_MATCH} AND through = ?"
)
# The summaries of every conversation the author wrote in (run before their turns are deleted).
_DELETE_AUTHOR_SUMMARIES = (
    f"DELETE FROM summaries WHERE ({', '.join(KEY_COLUMNS)}) IN "
    f"(SELECT {', '.join(KEY_COLUMNS)} FROM turns WHERE author_id = ?)"
)
# Insert the claim, or take over one that has expired; changes() is 1 exactly when the claim is won.
_CLAIM = (
    "INSERT INTO claims (event_id, expires_at) VALUES (?, ?) "
    "ON CONFLICT (event_id) DO UPDATE SET expires_at = excluded.expires_at "
    "WHERE claims.expires_at <= ?"
)
_DELETE_EXPIRED_CLAIMS = "DELETE FROM claims WHERE expires_at <= ?"
_CHANNEL_MATCH = "platform = ? AND workspace = ? AND channel = ?"
_SELECT_CHANNEL_MODEL = f"SELECT model FROM channel_models WHERE {_CHANNEL_MATCH}"
_SET_CHANNEL_MODEL = (
    "INSERT INTO channel_models (platform, workspace, channel, model, updated_at) "
    "VALUES (?, ?, ?, ?, ?) ON CONFLICT (platform, workspace, channel) "
    "DO UPDATE SET model = excluded.model, updated_at = excluded.updated_at"
)
_CLEAR_CHANNEL_MODEL = f"DELETE FROM channel_models WHERE {_CHANNEL_MATCH}"
_SELECT_CHANNEL_MODELS = "SELECT platform, workspace, channel, model FROM channel_models"
_OPEN = "state IN ('claimed', 'answering')"
_INSERT_INBOX = (
    f"INSERT INTO inbox ({', '.join(INBOX_COLUMNS)}) "
    f"VALUES ({', '.join('?' for _ in INBOX_COLUMNS)}) ON CONFLICT DO NOTHING"
)
_SELECT_INBOX = f"SELECT {', '.join(INBOX_COLUMNS)} FROM inbox"
_UPDATE_INBOX = (
    "UPDATE inbox SET state = ?, updated_at = ?, reply_id = CASE WHEN ? = '' THEN reply_id "
    f"ELSE ? END WHERE event_id = ? AND instance = ? AND {_OPEN}"
)
_TAKE_INBOX = (
    "UPDATE inbox SET state = 'claimed', attempts = attempts + 1, instance = ?, updated_at = ? "
    f"WHERE event_id = ? AND attempts = ? AND {_OPEN}"
)
_SELECT_UNFINISHED = (
    f"{_SELECT_INBOX} WHERE {_OPEN} AND updated_at < ? AND claimed_at > ? "
    "ORDER BY claimed_at LIMIT ?"
)
# The newest claimed message of each conversation (SQLite takes the bare columns from the max row).
_SELECT_INBOX_THREADS = (
    f"SELECT {', '.join(KEY_COLUMNS)}, message_id, max(claimed_at) AS last FROM inbox "
    "WHERE claimed_at >= ? AND (? IS NULL OR platform = ?) "
    f"GROUP BY {', '.join(KEY_COLUMNS)} ORDER BY last DESC LIMIT ?"
)
_PRUNE_INBOX = (
    "DELETE FROM inbox WHERE claimed_at < ? OR event_id IN "
    "(SELECT event_id FROM inbox ORDER BY claimed_at DESC LIMIT -1 OFFSET ?)"
)


class SQLiteStore:
    """Turns, summaries and claimed event ids in one SQLite file, safe for one process's asyncio tasks.

    Every operation runs under one asyncio.Lock, so a multi-statement transaction
    never interleaves with another task's statements on the shared connection.
    Other processes may open the same file (WAL lets them read while one writes).
    """

    def __init__(
        self,
        path: str | os.PathLike[str],
        *,
        busy_timeout: float = 5.0,
        claim_sweep_seconds: float = 60.0,
    ) -> None:
        self.path = Path(path).expanduser()
        self._busy_timeout_ms = max(0, int(busy_timeout * 1000))
        self._claim_sweep_seconds = claim_sweep_seconds
        self._last_sweep = time.time()
        self._db: aiosqlite.Connection | None = None
        self._lock = asyncio.Lock()
        # True while a transaction may be open: a task cancelled twice may leave one behind.
        self._maybe_in_transaction = False

    def __repr__(self) -> str:
        return f"SQLiteStore({str(self.path)!r})"

    # --- lifecycle ---

    async def open(self) -> None:
        async with self._lock:
            if self._db is not None:
                return
            self._make_parent_dir()
            db = await self._connect()
            try:
                await self._configure(db)
                await _migrate(db)
            except BaseException as exc:
                await _close_quietly(db)
                if isinstance(exc, sqlite3.Error):
                    raise _store_error("open the database", exc) from exc
                raise
            self._db = db

    async def close(self) -> None:
        async with self._lock:
            db, self._db = self._db, None
            if db is None:
                return
            try:
                await db.close()
            except sqlite3.Error as exc:
                raise _store_error("close the database", exc) from exc

    async def ping(self) -> None:
        async with self._using("answer a ping") as db:
            await db.execute_fetchall("SELECT count(*) FROM sqlite_master")

    # --- turns ---

    async def load(self, key: ConversationKey, limit: int) -> list[Turn]:
        async with self._using("load turns") as db:
            if limit <= 0:
                return []
            rows = await db.execute_fetchall(_SELECT_NEWEST, (*key_params(key), limit))
        return [row_to_turn(row) for row in reversed(list(rows))]

    async def append(self, key: ConversationKey, turns: Sequence[Turn]) -> None:
        rows = [turn_to_row(key, turn) for turn in turns]
        if not rows:
            return
        async with self._transaction("store turns") as db:
            await db.executemany(_INSERT_TURN, rows)

    async def reset(self, key: ConversationKey) -> None:
        async with self._transaction("forget the conversation") as db:
            await db.execute(f"DELETE FROM turns WHERE {_KEY_MATCH}", key_params(key))
            await db.execute(f"DELETE FROM summaries WHERE {_KEY_MATCH}", key_params(key))

    async def prune(self, older_than: float) -> int:
        async with self._transaction("prune old turns") as db:
            cursor = await db.execute("DELETE FROM turns WHERE created_at < ?", (older_than,))
            await db.execute("DELETE FROM summaries WHERE updated_at < ?", (older_than,))
            await db.execute(_DELETE_EXPIRED_CLAIMS, (time.time(),))
            await db.execute("DELETE FROM inbox WHERE claimed_at < ?", (older_than,))
            return cursor.rowcount

    async def forget_user(self, author_id: str) -> int:
        if not author_id:
            raise ValueError(
                "forget_user needs an author id (an empty one would match every bot turn)"
            )
        async with self._transaction("forget the user") as db:
            await db.execute(_DELETE_AUTHOR_SUMMARIES, (author_id,))
            cursor = await db.execute("DELETE FROM turns WHERE author_id = ?", (author_id,))
            return cursor.rowcount

    # --- summaries ---

    async def load_summary(self, key: ConversationKey) -> Summary | None:
        async with self._using("load the summary") as db:
            rows = list(await db.execute_fetchall(_SELECT_SUMMARY, key_params(key)))
        if not rows:
            return None
        text, tokens, through, updated_at = rows[0]
        return Summary(text, int(tokens), float(through), float(updated_at))

    async def save_summary(
        self, key: ConversationKey, summary: Summary, *, replacing: float | None
    ) -> bool:
        validate_summary(summary)
        validate_replacing(replacing)
        values = (summary.text, summary.tokens, float(summary.through), float(summary.updated_at))
        async with self._using("store the summary") as db:
            if replacing is None:
                cursor = await db.execute(_INSERT_FIRST_SUMMARY, key_params(key) + values)
            else:
                params = (*values, *key_params(key), float(replacing))
                cursor = await db.execute(_REPLACE_SUMMARY, params)
            return cursor.rowcount == 1

    # --- claims ---

    async def claim(self, event_id: str, ttl_seconds: float) -> bool:
        async with self._using("claim the event") as db:
            now = time.time()
            cursor = await db.execute(_CLAIM, (event_id, now + ttl_seconds, now))
            won = cursor.rowcount == 1
            if now - self._last_sweep >= self._claim_sweep_seconds:
                self._last_sweep = now
                await db.execute(_DELETE_EXPIRED_CLAIMS, (now,))
            return won

    # --- channel models ---

    async def get_channel_model(self, platform: str, workspace: str, channel: str) -> str | None:
        async with self._using("load the channel's model") as db:
            rows = list(
                await db.execute_fetchall(_SELECT_CHANNEL_MODEL, (platform, workspace, channel))
            )
        return str(rows[0][0]) if rows else None

    async def set_channel_model(
        self, platform: str, workspace: str, channel: str, model: str | None
    ) -> None:
        validate_model_id(model)
        async with self._using("store the channel's model") as db:
            if model is None:
                await db.execute(_CLEAR_CHANNEL_MODEL, (platform, workspace, channel))
            else:
                await db.execute(
                    _SET_CHANNEL_MODEL, (platform, workspace, channel, model, time.time())
                )

    async def channel_models(self) -> dict[tuple[str, str, str], str]:
        async with self._using("load the channels' models") as db:
            rows = await db.execute_fetchall(_SELECT_CHANNEL_MODELS)
        return {(str(p), str(w), str(c)): str(model) for p, w, c, model in rows}

    # --- the inbox ---

    async def inbox_record(self, entry: InboxEntry) -> bool:
        validate_entry(entry)
        row = (
            entry.event_id,
            *key_params(entry.key),
            entry.message_id,
            entry.state.value,
            entry.message,
            entry.instance,
            float(entry.claimed_at),
            float(entry.updated_at),
            entry.attempts,
            entry.reply_id,
        )
        async with self._using("record the message in the inbox") as db:
            cursor = await db.execute(_INSERT_INBOX, row)
            return cursor.rowcount == 1

    async def inbox_get(self, event_id: str) -> InboxEntry | None:
        async with self._using("read the inbox") as db:
            rows = list(
                await db.execute_fetchall(f"{_SELECT_INBOX} WHERE event_id = ?", (event_id,))
            )
        return _inbox_entry(rows[0]) if rows else None

    async def inbox_update(
        self, event_id: str, *, instance: str, state: State, reply_id: str = ""
    ) -> bool:
        params = (State(state).value, time.time(), reply_id, reply_id, event_id, instance)
        async with self._using("update the inbox") as db:
            cursor = await db.execute(_UPDATE_INBOX, params)
            return cursor.rowcount == 1

    async def inbox_take(self, event_id: str, *, attempts: int, instance: str) -> bool:
        async with self._using("take over an inbox entry") as db:
            cursor = await db.execute(_TAKE_INBOX, (instance, time.time(), event_id, attempts))
            return cursor.rowcount == 1

    async def inbox_unfinished(
        self, *, updated_before: float, claimed_after: float, limit: int
    ) -> list[InboxEntry]:
        params = (float(updated_before), float(claimed_after), max(0, limit))
        async with self._using("read the inbox") as db:
            rows = await db.execute_fetchall(_SELECT_UNFINISHED, params)
        return [_inbox_entry(row) for row in rows]

    async def inbox_threads(
        self, *, since: float, limit: int, platform: str | None = None
    ) -> list[InboxThread]:
        params = (float(since), platform, platform, max(0, limit))
        async with self._using("read the inbox") as db:
            rows = await db.execute_fetchall(_SELECT_INBOX_THREADS, params)
        return [
            InboxThread(ConversationKey(p, w, c, t), str(message_id), float(last))
            for p, w, c, t, message_id, last in rows
        ]

    async def inbox_prune(self, *, older_than: float, keep: int) -> int:
        async with self._transaction("prune the inbox") as db:
            cursor = await db.execute(_PRUNE_INBOX, (float(older_than), max(0, keep)))
            return cursor.rowcount

    # --- helpers ---

    def _make_parent_dir(self) -> None:
        try:
            self.path.parent.mkdir(parents=True, exist_ok=True)
        except OSError as exc:
            raise StoreError(
                f"SQLite store cannot create the directory {self.path.parent}: {exc.strerror or exc}"
            ) from exc

    async def _connect(self) -> aiosqlite.Connection:
        try:
            # isolation_level=None: autocommit, transactions are explicit (BEGIN IMMEDIATE).
            return await aiosqlite.connect(self.path, isolation_level=None)
        except sqlite3.Error as exc:
            raise _store_error(f"open {self.path}", exc) from exc

    async def _configure(self, db: aiosqlite.Connection) -> None:
        await db.execute(f"PRAGMA busy_timeout = {self._busy_timeout_ms}")
        await db.execute_fetchall("PRAGMA journal_mode = WAL")
        await db.execute("PRAGMA synchronous = NORMAL")

    @asynccontextmanager
    async def _using(self, action: str) -> AsyncIterator[aiosqlite.Connection]:
        """The open connection, held by this task alone; sqlite errors become StoreError."""
        async with self._lock:
            if self._db is None:
                raise StoreError("the SQLite store is closed")
            try:
                if self._maybe_in_transaction:
                    await self._db.rollback()  # no-op unless a cancelled task left one open
                    self._maybe_in_transaction = False
                yield self._db
            except sqlite3.Error as exc:
                raise _store_error(action, exc) from exc

    @asynccontextmanager
    async def _transaction(self, action: str) -> AsyncIterator[aiosqlite.Connection]:
        """Like `_using`, inside BEGIN IMMEDIATE … COMMIT; rolled back on any error or cancellation."""
        async with self._using(action) as db:
            self._maybe_in_transaction = True
            try:
                await db.execute("BEGIN IMMEDIATE")
                yield db
                await db.commit()
            except BaseException:
                await db.rollback()
                self._maybe_in_transaction = False
                raise
            self._maybe_in_transaction = False


def _inbox_entry(row: Sequence[Any]) -> InboxEntry:
    values = dict(zip(INBOX_COLUMNS, row, strict=True))
    return InboxEntry(
        event_id=str(values["event_id"]),
        key=ConversationKey(*(str(values[column]) for column in KEY_COLUMNS)),
        message_id=str(values["message_id"]),
        state=State(values["state"]),
        message=str(values["message"]),
        instance=str(values["instance"]),
        claimed_at=float(values["claimed_at"]),
        updated_at=float(values["updated_at"]),
        attempts=int(values["attempts"]),
        reply_id=str(values["reply_id"]),
    )


async def _migrate(db: aiosqlite.Connection) -> None:
    """Bring the schema to SCHEMA_VERSION in one transaction (other processes may race us)."""
    if await _user_version(db) == SCHEMA_VERSION:
        return
    await db.execute("BEGIN IMMEDIATE")
    try:
        version = await _user_version(db)
        if version > SCHEMA_VERSION:
            raise StoreError(
                f"the database schema is version {version}, newer than this Glimpse "
                f"understands ({SCHEMA_VERSION}); upgrade Glimpse"
            )
        for target in range(version + 1, SCHEMA_VERSION + 1):
            for statement in _MIGRATIONS[target]:
                await db.execute(statement)
        await db.execute(f"PRAGMA user_version = {SCHEMA_VERSION}")
        await db.commit()
    except BaseException:
        await db.rollback()
        raise


async def _user_version(db: aiosqlite.Connection) -> int:
    rows = list(await db.execute_fetchall("PRAGMA user_version"))
    return int(rows[0][0])


async def _close_quietly(db: aiosqlite.Connection) -> None:
    try:
        await db.close()
    except sqlite3.Error:
        pass


def _store_error(action: str, exc: sqlite3.Error) -> StoreError:
    return StoreError(f"SQLite store could not {action}: {exc}")
