"""The SQLite store: the store contract, plus restarts, other processes, WAL, locks and failures."""

from __future__ import annotations

import asyncio
import json
import os
import sqlite3
import sys
from collections.abc import AsyncIterator, Iterator
from contextlib import closing
from dataclasses import replace
from pathlib import Path

import pytest

from bot.store import (
    SQLiteStore,
    StoreError,
    is_relative_sqlite,
    open_store,
    sqlite_path,
    store_location,
)
from bot.store import codec as store_codec
from bot.store.sqlite import SCHEMA_VERSION
from bot.turns import PreparedImage, Summary, Turn, Usage
from tests.store_contract import KEY, OTHER, StoreContract, numbered, texts, turn
from tests.store_contract import entry as inbox_entry

REPO = Path(__file__).resolve().parents[1]
KEY_V1 = (KEY.platform, KEY.workspace, KEY.channel, KEY.thread)


class TestSQLiteStoreContract(StoreContract):
    @pytest.fixture
    async def store(self, tmp_path: Path) -> AsyncIterator[SQLiteStore]:
        store = SQLiteStore(tmp_path / "glimpse.db")
        await store.open()
        yield store
        await store.close()


@pytest.fixture
def db_path(tmp_path: Path) -> Path:
    return tmp_path / "data" / "glimpse.db"


@pytest.fixture
async def store(db_path: Path) -> AsyncIterator[SQLiteStore]:
    store = SQLiteStore(db_path, busy_timeout=0.05)
    await store.open()
    yield store
    await store.close()


@pytest.fixture
def raw(db_path: Path, store: SQLiteStore) -> Iterator[sqlite3.Connection]:
    """A second, plain sqlite3 connection to the store's file (autocommit)."""
    conn = sqlite3.connect(db_path, isolation_level=None, timeout=0.05)
    yield conn
    conn.close()


def count(conn: sqlite3.Connection, table: str) -> int:
    return int(conn.execute(f"SELECT count(*) FROM {table}").fetchone()[0])


# --- files, restarts, other processes ---


async def test_open_creates_parent_directories(tmp_path: Path) -> None:
    path = tmp_path / "a" / "b" / "glimpse.db"
    store = SQLiteStore(path)
    await store.open()
    await store.close()
    assert path.is_file()


async def test_memory_survives_a_restart(db_path: Path, store: SQLiteStore) -> None:
    await store.append(KEY, numbered(3))
    assert await store.claim("ev", 60) is True
    assert await store.save_summary(KEY, Summary("cats", 1, 1.5, 2.5), replacing=None)
    await store.close()

    again = SQLiteStore(db_path)
    await again.open()
    try:
        assert texts(await again.load(KEY, 10)) == ["turn 0", "turn 1", "turn 2"]
        assert await again.claim("ev", 60) is False
        assert await again.load_summary(KEY) == Summary("cats", 1, 1.5, 2.5)
    finally:
        await again.close()


CHILD = """
import asyncio, json, sys
from bot.messages import ConversationKey
from bot.store import open_store
from bot.turns import Turn

async def main():
    store = open_store(sys.argv[1])
    await store.open()
    key = ConversationKey(*sys.argv[2:6])
    seen = [t.text for t in await store.load(key, 10)]
    await store.append(key, [Turn("assistant", "from the child", 3, 1718000100.0)])
    won = await store.claim("child-event", 60)
    await store.close()
    print(json.dumps({"seen": seen, "won": won}))

asyncio.run(main())
"""


async def test_another_process_shares_the_file(db_path: Path, store: SQLiteStore) -> None:
    await store.append(KEY, [turn("from the parent")])
    assert await store.claim("child-event", 60) is True
    env = {**os.environ, "PYTHONPATH": str(REPO)}
    proc = await asyncio.create_subprocess_exec(
        sys.executable,
        "-c",
        CHILD,
        f"sqlite:///{db_path}",
        *str(KEY).split(":"),
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
        env=env,
    )
    out, err = await asyncio.wait_for(proc.communicate(), timeout=20)
    assert proc.returncode == 0, err.decode()
    assert json.loads(out) == {"seen": ["from the parent"], "won": False}
    assert texts(await store.load(KEY, 10)) == ["from the parent", "from the child"]


# --- schema and settings ---


async def test_wal_journal_and_schema_version(raw: sqlite3.Connection) -> None:
    assert raw.execute("PRAGMA journal_mode").fetchone()[0] == "wal"
    assert raw.execute("PRAGMA user_version").fetchone()[0] == SCHEMA_VERSION == 4


async def test_connection_settings(store: SQLiteStore) -> None:
    db = store._db
    assert db is not None
    assert list(await db.execute_fetchall("PRAGMA synchronous")) == [(1,)]  # NORMAL
    assert list(await db.execute_fetchall("PRAGMA busy_timeout")) == [(50,)]


# The schema as version 1 shipped it, copied (not imported) so a change to it is caught here.
SCHEMA_V1 = (
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
)
V1_ROWS = [
    (*KEY_V1, "user", "look", 7, 1000.0, "U1", "m1", b"\xff\xd8", "image/jpeg", 4, 3, "cat.jpg")
    + (None,) * 4,
    (*KEY_V1, "assistant", "A cat.", 4, 1001.0, "", "m2", None, None, None, None, None)
    + ("model", 10, 2, 0.5),
]


def make_v1_database(path: Path) -> None:
    """A database as Glimpse with schema version 1 left it: two turns and a live claim."""
    with closing(sqlite3.connect(path)) as conn, conn:
        for statement in SCHEMA_V1:
            conn.execute(statement)
        conn.executemany(
            "INSERT INTO turns (platform, workspace, channel, thread, role, text, tokens, "
            "created_at, author_id, message_id, image, image_mime, image_width, image_height, "
            "image_label, usage_model, usage_prompt_tokens, usage_completion_tokens, usage_cost) "
            f"VALUES ({', '.join('?' * 19)})",
            V1_ROWS,
        )
        conn.execute("INSERT INTO claims VALUES ('ev', 1e12)")
        conn.execute("PRAGMA user_version = 1")


async def test_a_version_1_database_is_migrated_and_its_turns_still_read(tmp_path: Path) -> None:
    path = tmp_path / "v1.db"
    make_v1_database(path)
    store = SQLiteStore(path)
    await store.open()
    try:
        image = PreparedImage(b"\xff\xd8", "image/jpeg", 4, 3, "cat.jpg", caption="")
        assert await store.load(KEY, 10) == [
            Turn("user", "look", 7, 1000.0, "U1", "m1", image=image, speaker=""),
            Turn("assistant", "A cat.", 4, 1001.0, "", "m2", usage=Usage("model", 10, 2, 0.5)),
        ]
        assert await store.claim("ev", 60) is False
        assert await store.load_summary(KEY) is None
        await store.append(KEY, [replace(turn("new"), speaker="Ada")])
        assert await store.save_summary(KEY, Summary("cats", 2, 1001.0, 1002.0), replacing=None)
        assert await store.forget_user("U1") == 2
        assert await store.load_summary(KEY) is None
    finally:
        await store.close()
    with closing(sqlite3.connect(path)) as conn:
        assert conn.execute("PRAGMA user_version").fetchone()[0] == SCHEMA_VERSION


async def test_a_migrated_database_has_the_schema_of_a_new_one(tmp_path: Path) -> None:
    make_v1_database(tmp_path / "v1.db")
    for name in ("v1.db", "new.db"):
        store = SQLiteStore(tmp_path / name)
        await store.open()
        await store.close()
    with (
        closing(sqlite3.connect(tmp_path / "v1.db")) as old,
        closing(sqlite3.connect(tmp_path / "new.db")) as new,
    ):
        for table in ("turns", "summaries", "claims", "channel_models"):
            query = f"PRAGMA table_info({table})"
            assert old.execute(query).fetchall() == new.execute(query).fetchall()
        indexes = "SELECT name FROM sqlite_master WHERE type = 'index' ORDER BY name"
        assert old.execute(indexes).fetchall() == new.execute(indexes).fetchall()


async def test_a_version_2_database_gains_channel_models_and_keeps_its_data(
    tmp_path: Path,
) -> None:
    path = tmp_path / "v2.db"
    make_v1_database(path)
    store = SQLiteStore(path)
    await store.open()  # to the newest version; then back to how version 2 left it
    await store.save_summary(KEY, Summary("cats", 2, 1001.0, 1002.0), replacing=None)
    await store.close()
    with closing(sqlite3.connect(path)) as conn, conn:
        conn.execute("DROP TABLE inbox")
        conn.execute("DROP TABLE channel_models")
        conn.execute("PRAGMA user_version = 2")
    store = SQLiteStore(path)
    await store.open()
    try:
        assert texts(await store.load(KEY, 10)) == ["look", "A cat."]
        assert await store.load_summary(KEY) == Summary("cats", 2, 1001.0, 1002.0)
        assert await store.get_channel_model("discord", "g", "c") is None
        await store.set_channel_model("discord", "g", "c", "acme/vision")
        assert await store.get_channel_model("discord", "g", "c") == "acme/vision"
    finally:
        await store.close()
    with closing(sqlite3.connect(path)) as conn:
        assert conn.execute("PRAGMA user_version").fetchone()[0] == SCHEMA_VERSION == 4


async def test_a_version_3_database_gains_the_inbox_and_keeps_its_data(tmp_path: Path) -> None:
    path = tmp_path / "v3.db"
    make_v1_database(path)
    store = SQLiteStore(path)
    await store.open()  # to version 4; then back to how version 3 left it
    await store.set_channel_model("discord", "g", "c", "acme/vision")
    await store.close()
    with closing(sqlite3.connect(path)) as conn, conn:
        conn.execute("DROP TABLE inbox")
        conn.execute("PRAGMA user_version = 3")
    store = SQLiteStore(path)
    await store.open()
    try:
        assert texts(await store.load(KEY, 10)) == ["look", "A cat."]
        assert await store.get_channel_model("discord", "g", "c") == "acme/vision"
        assert await store.inbox_record(inbox_entry())
        assert await store.inbox_get(inbox_entry().event_id) == inbox_entry()
    finally:
        await store.close()
    with closing(sqlite3.connect(path)) as conn:
        assert conn.execute("PRAGMA user_version").fetchone()[0] == SCHEMA_VERSION == 4


async def test_a_newer_schema_is_refused(tmp_path: Path) -> None:
    path = tmp_path / "future.db"
    with sqlite3.connect(path) as conn:
        conn.execute("PRAGMA user_version = 99")
    conn.close()
    store = SQLiteStore(path)
    with pytest.raises(StoreError, match="version 99"):
        await store.open()
    with pytest.raises(StoreError, match="closed"):
        await store.ping()


async def test_a_file_that_is_not_a_database_is_a_store_error(tmp_path: Path) -> None:
    path = tmp_path / "junk.db"
    path.write_bytes(b"this is not a database" * 100)
    with pytest.raises(StoreError, match="not a database"):
        await SQLiteStore(path).open()


async def test_a_path_under_a_file_is_a_store_error(tmp_path: Path) -> None:
    (tmp_path / "file").write_text("x")
    with pytest.raises(StoreError, match="cannot create the directory"):
        await SQLiteStore(tmp_path / "file" / "glimpse.db").open()


# --- locks and failures ---


async def test_a_locked_database_is_a_store_error_until_released(
    store: SQLiteStore, raw: sqlite3.Connection
) -> None:
    await store.append(KEY, [turn("before the lock")])
    raw.execute("BEGIN EXCLUSIVE")
    raw.execute("INSERT INTO claims VALUES ('held', 1e12)")
    try:
        with pytest.raises(StoreError, match="locked"):
            await store.append(KEY, [turn("while locked")])
        with pytest.raises(StoreError, match="locked"):
            await store.claim("ev", 60)
        assert texts(await store.load(KEY, 10)) == ["before the lock"]  # WAL: reads go on
    finally:
        raw.execute("ROLLBACK")
    await store.append(KEY, [turn("after the lock")])
    assert await store.claim("ev", 60) is True
    assert texts(await store.load(KEY, 10)) == ["before the lock", "after the lock"]


async def test_a_failure_mid_append_rolls_back(store: SQLiteStore, raw: sqlite3.Connection) -> None:
    # The second INSERT fails inside SQLite, after the first one succeeded.
    raw.execute(
        "CREATE TRIGGER boom BEFORE INSERT ON turns WHEN NEW.text = 'boom' "
        "BEGIN SELECT RAISE(ABORT, 'disk I/O error (simulated)'); END"
    )
    with pytest.raises(StoreError, match="simulated"):
        await store.append(KEY, [turn("first"), turn("boom"), turn("third")])
    assert await store.load(KEY, 10) == []
    assert count(raw, "turns") == 0
    await store.append(KEY, [turn("later")])
    assert texts(await store.load(KEY, 10)) == ["later"]


async def test_a_codec_failure_on_the_second_turn_stores_nothing(
    store: SQLiteStore, monkeypatch: pytest.MonkeyPatch
) -> None:
    real = store_codec.turn_to_row
    calls = []

    def flaky(key, t):  # type: ignore[no-untyped-def]
        calls.append(t)
        if len(calls) == 2:
            raise ValueError("cannot encode")
        return real(key, t)

    monkeypatch.setattr("bot.store.sqlite.turn_to_row", flaky)
    with pytest.raises(ValueError, match="cannot encode"):
        await store.append(KEY, [turn("first"), turn("second")])
    monkeypatch.undo()
    assert await store.load(KEY, 10) == []
    await store.append(KEY, [turn("later")])
    assert texts(await store.load(KEY, 10)) == ["later"]


async def test_a_cancelled_append_leaves_no_transaction_behind(
    store: SQLiteStore, raw: sqlite3.Connection
) -> None:
    task = asyncio.create_task(store.append(KEY, numbered(500)))
    await asyncio.sleep(0)  # the task takes the lock and waits for BEGIN IMMEDIATE
    assert store._lock.locked()
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await task
    assert await store.load(KEY, 1000) == []
    await store.append(OTHER, [turn("next")])  # no "transaction within a transaction"
    assert count(raw, "turns") == 1


async def test_an_interrupted_rollback_is_finished_by_the_next_operation(
    store: SQLiteStore, raw: sqlite3.Connection, monkeypatch: pytest.MonkeyPatch
) -> None:
    raw.execute(
        "CREATE TRIGGER boom BEFORE INSERT ON turns WHEN NEW.text = 'boom' "
        "BEGIN SELECT RAISE(ABORT, 'simulated'); END"
    )

    async def cancelled_again() -> None:
        raise asyncio.CancelledError

    assert store._db is not None
    monkeypatch.setattr(
        store._db, "rollback", cancelled_again
    )  # as if cancelled while rolling back
    with pytest.raises(asyncio.CancelledError):
        await store.append(KEY, [turn("first"), turn("boom")])
    monkeypatch.undo()
    await store.append(KEY, [turn("later")])
    assert texts(await store.load(KEY, 10)) == ["later"]


async def test_expired_claims_are_swept(tmp_path: Path) -> None:
    store = SQLiteStore(tmp_path / "g.db", claim_sweep_seconds=0)
    await store.open()
    try:
        for i in range(20):
            await store.claim(f"ev{i}", 0.01)
        await asyncio.sleep(0.03)
        await store.claim("last", 60)
        conn = sqlite3.connect(tmp_path / "g.db")
        assert [r[0] for r in conn.execute("SELECT event_id FROM claims")] == ["last"]
        conn.close()
    finally:
        await store.close()


async def test_prune_drops_expired_claims(store: SQLiteStore, raw: sqlite3.Connection) -> None:
    await store.claim("short", 0.01)
    await store.claim("long", 60)
    await asyncio.sleep(0.03)
    await store.prune(0)
    assert [r[0] for r in raw.execute("SELECT event_id FROM claims")] == ["long"]


async def test_ping_on_a_closed_store(store: SQLiteStore) -> None:
    await store.ping()
    await store.close()
    with pytest.raises(StoreError, match="closed"):
        await store.ping()
    await store.open()  # and it can be opened again
    await store.ping()


# --- URLs ---


@pytest.mark.parametrize(
    ("url", "path"),
    [
        ("sqlite:///glimpse.db", "glimpse.db"),
        ("sqlite:///data/glimpse.db", "data/glimpse.db"),
        ("sqlite:////var/lib/glimpse/glimpse.db", "/var/lib/glimpse/glimpse.db"),
        ("SQLite:////tmp/x.db", "/tmp/x.db"),
    ],
)
def test_sqlite_urls(url: str, path: str) -> None:
    assert sqlite_path(url) == path


def test_four_slashes_are_absolute_three_are_relative_to_the_working_directory(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.chdir(tmp_path)
    assert is_relative_sqlite("sqlite:///tmp/x.db")
    assert store_location("sqlite:///tmp/x.db") == f"SQLite file {tmp_path / 'tmp' / 'x.db'}"
    assert not is_relative_sqlite("sqlite:////tmp/x.db")
    assert store_location("sqlite:////tmp/x.db") == "SQLite file /tmp/x.db"
    assert not is_relative_sqlite(f"sqlite:///{tmp_path / 'g.db'}")  # an absolute path: 4 slashes
    for other in ("memory://", "redis://localhost/0", "sqlite://"):
        assert not is_relative_sqlite(other)


def test_a_redis_location_names_the_server_and_prefix_but_no_password() -> None:
    where = store_location("redis://:s3cret@cache.internal:6380/2?prefix=team-a")
    assert where == "Redis at cache.internal:6380/2, keys prefixed team-a:"
    assert store_location("memory://").startswith("in-process memory")


@pytest.mark.parametrize("url", ["sqlite://", "sqlite:///", "sqlite://host/glimpse.db"])
def test_bad_sqlite_urls(url: str) -> None:
    with pytest.raises(ValueError, match="sqlite:///"):
        open_store(url)


async def test_open_store_sqlite_url_with_relative_path(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.chdir(tmp_path)
    store = open_store("sqlite:///nested/dir/glimpse.db")
    await store.open()
    await store.append(KEY, [turn("here")])
    await store.close()
    assert (tmp_path / "nested" / "dir" / "glimpse.db").is_file()
