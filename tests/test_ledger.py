"""The cost ledger on every backend (memory, SQLite, Redis), and `glimpse forget` as an operator runs it."""

from __future__ import annotations

import asyncio
import os
import sqlite3
import sys
from collections.abc import AsyncIterator
from contextlib import closing
from dataclasses import replace
from pathlib import Path

import pytest
import redis.asyncio as aioredis

from bot.ledger import (
    RETENTION_DAYS,
    Ledger,
    LedgerEntry,
    Payer,
    RatingEntry,
    Spend,
    day_range,
    open_ledger,
    utc_day,
)
from bot.ledger_memory import MemoryLedger
from bot.ledger_redis import RedisLedger
from bot.ledger_sqlite import SQLiteLedger
from bot.messages import ConversationKey
from bot.store import SQLiteStore, StoreError
from bot.store.sqlite import SCHEMA_VERSION
from tests.redis_support import delete_prefix, require_redis, store_url, unique_prefix
from tests.store_contract import turn

DAY = "2025-03-14"
ALICE = Payer("slack", "T1", "C1", "U_ALICE")
BOB = Payer("slack", "T1", "C1", "U_BOB")
ALICE_ON_DISCORD = Payer("discord", "G1", "555", "U_ALICE")
ELSEWHERE = Payer("slack", "T2", "C9", "U_CAROL")


def entry(
    payer: Payer = ALICE, *, day: str = DAY, cost: float = 0.25, **extra: object
) -> LedgerEntry:
    values: dict[str, object] = {
        "day": day,
        "payer": payer,
        "model": "meta-llama/llama-3.2-90b-vision-instruct",
        "prompt_tokens": 100,
        "completion_tokens": 20,
        "cost": cost,
        "images": 1,
    }
    values.update(extra)
    return LedgerEntry(**values)  # type: ignore[arg-type]


@pytest.fixture(params=["memory", "sqlite", "redis"])
async def ledger(request: pytest.FixtureRequest, tmp_path: Path) -> AsyncIterator[Ledger]:
    backend: Ledger
    if request.param == "memory":
        backend = MemoryLedger()
    elif request.param == "sqlite":
        backend = SQLiteLedger(tmp_path / "glimpse.db")
    else:
        prefix = unique_prefix()
        backend = RedisLedger(require_redis(), prefix=prefix)
    await backend.open()
    yield backend
    await backend.close()
    if request.param == "redis":
        await delete_prefix(prefix)


# --- the contract ---


async def test_usage_adds_up_answers_per_group(ledger: Ledger) -> None:
    await ledger.record(entry(ALICE, cost=0.25))
    await ledger.record(entry(ALICE, cost=0.5, prompt_tokens=300, images=0))
    await ledger.record(entry(BOB, cost=1.0, model="other/model"))

    by_user = await ledger.usage(DAY, DAY, "user")
    assert [(r.group, r.answers) for r in by_user] == [("slack:U_BOB", 1), ("slack:U_ALICE", 2)]
    alice = by_user[1]
    assert (alice.prompt_tokens, alice.completion_tokens, alice.images) == (400, 40, 1)
    assert alice.cost == pytest.approx(0.75)

    [channel] = await ledger.usage(DAY, DAY, "channel")
    assert (channel.group, channel.answers, channel.cost) == ("slack:T1:C1", 3, pytest.approx(1.75))
    models = {r.group: r.answers for r in await ledger.usage(DAY, DAY, "model")}
    assert models == {"meta-llama/llama-3.2-90b-vision-instruct": 2, "other/model": 1}
    [workspace] = await ledger.usage(DAY, DAY, "workspace")
    assert workspace.group == "slack:T1"


async def test_usage_by_day_covers_only_the_range_in_order(ledger: Ledger) -> None:
    for day in ("2025-03-12", "2025-03-14", "2025-03-13", "2025-03-15"):
        await ledger.record(entry(day=day))
    rows = await ledger.usage("2025-03-13", "2025-03-14", "day")
    assert [r.group for r in rows] == ["2025-03-13", "2025-03-14"]


async def test_spend_counts_the_day_for_the_user_channel_and_workspace(ledger: Ledger) -> None:
    await ledger.record(entry(ALICE, cost=0.25))
    await ledger.record(entry(BOB, cost=1.0))
    await ledger.record(entry(ALICE_ON_DISCORD, cost=4.0))  # same id, other platform
    await ledger.record(entry(ELSEWHERE, cost=8.0))
    await ledger.record(entry(ALICE, cost=16.0, day="2025-03-13"))  # yesterday

    spend = await ledger.spend(DAY, ALICE)
    assert spend.user == pytest.approx(0.25)
    assert spend.channel == pytest.approx(1.25)
    assert spend.workspace == pytest.approx(1.25)
    assert await ledger.spend("2025-03-15", ALICE) == Spend()


async def test_forget_user_anonymises_entries_but_keeps_the_totals(ledger: Ledger) -> None:
    await ledger.record(entry(ALICE, cost=0.25))
    await ledger.record(entry(ALICE, cost=0.25, day="2025-03-13"))
    await ledger.record(entry(ALICE_ON_DISCORD, cost=1.0))
    await ledger.record(entry(BOB, cost=2.0))

    assert await ledger.forget_user("U_ALICE") == 3

    users = {r.group: (r.answers, r.cost) for r in await ledger.usage("2025-03-13", DAY, "user")}
    assert users == {
        "slack:U_BOB": (1, pytest.approx(2.0)),
        "slack:(forgotten)": (2, pytest.approx(0.5)),
        "discord:(forgotten)": (1, pytest.approx(1.0)),
    }
    spend = await ledger.spend(DAY, ALICE)
    assert spend.user == 0.0 and spend.channel == pytest.approx(2.25)
    assert await ledger.forget_user("U_ALICE") == 0
    with pytest.raises(ValueError):
        await ledger.forget_user("")


async def test_a_summary_costs_and_counts_toward_budgets_but_is_not_an_answer(
    ledger: Ledger,
) -> None:
    await ledger.record(entry(ALICE, cost=0.25))
    await ledger.record(entry(ALICE, cost=0.5, kind="summary", prompt_tokens=900, images=0))

    assert (await ledger.spend(DAY, ALICE)).user == pytest.approx(0.75)
    [day] = await ledger.usage(DAY, DAY, "day")
    assert (day.answers, day.summaries) == (1, 1)
    assert (day.prompt_tokens, day.completion_tokens, day.images) == (1000, 40, 1)
    assert day.cost == pytest.approx(0.75)
    [user] = await ledger.usage(DAY, DAY, "user")
    assert (user.group, user.answers, user.summaries) == ("slack:U_ALICE", 1, 1)


async def test_usage_by_kind_has_one_row_per_kind_of_call(ledger: Ledger) -> None:
    await ledger.record(entry(ALICE, cost=0.25))
    await ledger.record(entry(BOB, cost=0.25, day="2025-03-13"))
    await ledger.record(entry(ALICE, cost=1.0, kind="summary", prompt_tokens=900, images=0))

    rows = await ledger.usage("2025-03-13", DAY, "kind")

    kinds = [(r.group, r.answers, r.summaries, r.prompt_tokens, r.images) for r in rows]
    assert kinds == [("summary", 0, 1, 900, 0), ("answer", 2, 0, 200, 2)]  # biggest cost first
    assert [r.cost for r in rows] == [pytest.approx(1.0), pytest.approx(0.5)]
    assert await ledger.usage("2025-03-15", "2025-03-15", "kind") == []


async def test_forget_user_anonymises_summaries_too_and_counts_answers(ledger: Ledger) -> None:
    await ledger.record(entry(ALICE, cost=0.25))
    await ledger.record(entry(ALICE, cost=0.5, kind="summary"))

    assert await ledger.forget_user("U_ALICE") == 1

    [user] = await ledger.usage(DAY, DAY, "user")
    assert (user.group, user.answers, user.summaries) == ("slack:(forgotten)", 1, 1)
    assert (await ledger.spend(DAY, ALICE)).user == 0.0


def rating(
    rater: Payer = ALICE, answer: str = "1700000000.000100", verdict: str = "good", **extra: object
) -> RatingEntry:
    values: dict[str, object] = {
        "day": DAY,
        "rater": rater,
        "answer_id": answer,
        "model": "meta-llama/llama-3.2-90b-vision-instruct",
        "rating": verdict,
    }
    values.update(extra)
    return RatingEntry(**values)  # type: ignore[arg-type]


async def test_ratings_count_once_per_person_and_answer_and_the_last_one_wins(
    ledger: Ledger,
) -> None:
    await ledger.record(entry(ALICE))
    assert await ledger.rate(rating(ALICE, verdict="good")) is None
    assert await ledger.rate(rating(ALICE, verdict="good")) == "good"  # the same click again
    assert await ledger.rate(rating(ALICE, verdict="bad")) == "good"  # changed her mind
    assert await ledger.rate(rating(BOB, verdict="good")) is None
    assert await ledger.rate(rating(BOB, answer="1700000000.000200", verdict="good")) is None

    [model] = await ledger.usage(DAY, DAY, "model")
    assert (model.group, model.answers, model.good, model.bad) == (
        "meta-llama/llama-3.2-90b-vision-instruct",
        1,
        2,
        1,
    )
    assert model.good_share == pytest.approx(2 / 3)
    users = {r.group: (r.good, r.bad) for r in await ledger.usage(DAY, DAY, "user")}
    assert users == {"slack:U_ALICE": (0, 1), "slack:U_BOB": (2, 0)}
    [day] = await ledger.usage(DAY, DAY, "day")
    assert (day.good, day.bad) == (2, 1)
    [answers] = await ledger.usage(DAY, DAY, "kind")
    assert (answers.group, answers.good, answers.bad) == ("answer", 2, 1)


async def test_ratings_are_grouped_by_the_model_that_wrote_each_answer(ledger: Ledger) -> None:
    await ledger.rate(rating(ALICE, answer="1.1", model="qwen/qwen2.5-vl-72b-instruct"))
    await ledger.rate(rating(ALICE, answer="1.2", verdict="bad"))
    await ledger.rate(rating(ELSEWHERE, answer="1.1", model="qwen/qwen2.5-vl-72b-instruct"))

    models = {r.group: (r.answers, r.good, r.bad) for r in await ledger.usage(DAY, DAY, "model")}

    assert models == {
        "qwen/qwen2.5-vl-72b-instruct": (0, 2, 0),
        "meta-llama/llama-3.2-90b-vision-instruct": (0, 0, 1),
    }
    assert await ledger.usage("2025-03-15", "2025-03-15", "model") == []


async def test_forget_user_forgets_who_rated_but_keeps_the_ratings(ledger: Ledger) -> None:
    await ledger.rate(rating(ALICE, answer="1.1"))
    await ledger.rate(rating(BOB, answer="1.1", verdict="bad"))
    await ledger.rate(rating(ALICE, answer="1.2", verdict="bad"))

    await ledger.forget_user("U_ALICE")

    users = {r.group: (r.good, r.bad) for r in await ledger.usage(DAY, DAY, "user")}
    assert users == {"slack:U_BOB": (0, 1), "slack:(forgotten)": (1, 1)}
    [model] = await ledger.usage(DAY, DAY, "model")
    assert (model.good, model.bad) == (1, 2)


async def test_a_closed_ledger_raises_store_error(ledger: Ledger) -> None:
    await ledger.close()
    with pytest.raises(StoreError):
        await ledger.record(entry())
    with pytest.raises(StoreError):
        await ledger.spend(DAY, ALICE)


# --- backends ---


async def test_sqlite_ledger_shares_the_store_file_without_touching_its_schema(
    tmp_path: Path,
) -> None:
    path = tmp_path / "data" / "glimpse.db"
    store, ledger = SQLiteStore(path), open_ledger(f"sqlite:///{path}")
    await store.open()
    await ledger.open()
    try:
        key = ConversationKey("slack", "T1", "C1", "1.0")
        await store.append(key, [turn("hi")])
        await ledger.record(entry(day=utc_day()))
        assert [t.text for t in await store.load(key, 10)] == ["hi"]
    finally:
        await ledger.close()
        await store.close()
    reopened = SQLiteLedger(path)
    await reopened.open()
    try:
        assert [r.answers for r in await reopened.usage(utc_day(), utc_day(), "day")] == [1]
    finally:
        await reopened.close()
    with closing(sqlite3.connect(path)) as db:  # the ledger leaves the store's schema version alone
        assert db.execute("PRAGMA user_version").fetchone()[0] == SCHEMA_VERSION


async def test_a_sqlite_ledger_made_before_summaries_opens_with_its_rows_as_answers(
    tmp_path: Path,
) -> None:
    path = tmp_path / "glimpse.db"
    with closing(sqlite3.connect(path)) as db, db:  # the table as Glimpse made it before kinds
        db.execute(
            "CREATE TABLE ledger (id INTEGER PRIMARY KEY AUTOINCREMENT, day TEXT NOT NULL, "
            "platform TEXT NOT NULL, workspace TEXT NOT NULL, channel TEXT NOT NULL, "
            "user_id TEXT NOT NULL, model TEXT NOT NULL, prompt_tokens INTEGER NOT NULL, "
            "completion_tokens INTEGER NOT NULL, cost REAL NOT NULL, images INTEGER NOT NULL)"
        )
        db.execute(
            "INSERT INTO ledger (day, platform, workspace, channel, user_id, model, "
            "prompt_tokens, completion_tokens, cost, images) "
            "VALUES (?, 'slack', 'T1', 'C1', 'U_ALICE', 'm', 100, 20, 0.25, 1)",
            (utc_day(),),
        )
    for _ in range(2):  # the second open finds the column already added
        ledger = SQLiteLedger(path)
        await ledger.open()
        await ledger.record(entry(day=utc_day(), kind="summary", cost=0.5))
        await ledger.close()

    await ledger.open()
    try:
        [day] = await ledger.usage(utc_day(), utc_day(), "day")
        kinds = {
            r.group: (r.answers, r.summaries)
            for r in await ledger.usage(utc_day(), utc_day(), "kind")
        }
        spend = await ledger.spend(utc_day(), ALICE)
    finally:
        await ledger.close()
    assert (day.answers, day.summaries, day.cost) == (1, 2, pytest.approx(1.25))
    assert kinds == {"answer": (1, 0), "summary": (0, 2)}
    assert spend.user == pytest.approx(1.25)


async def test_sqlite_ledger_drops_entries_past_the_retention_on_open(tmp_path: Path) -> None:
    ledger = SQLiteLedger(tmp_path / "glimpse.db")
    await ledger.open()
    await ledger.record(entry(day="2000-01-01"))
    await ledger.record(entry(day=utc_day()))
    await ledger.close()
    await ledger.open()
    try:
        rows = await ledger.usage("1999-01-01", utc_day(), "day")
    finally:
        await ledger.close()
    assert [r.group for r in rows] == [utc_day()]


async def test_redis_ledger_keys_expire_after_the_retention() -> None:
    prefix, url = unique_prefix(), require_redis()
    ledger = RedisLedger(store_url(prefix))  # the prefix comes from the store URL
    await ledger.open()
    client = aioredis.from_url(url)
    try:
        await ledger.record(entry())
        keys = [key async for key in client.scan_iter(match=f"{prefix}:ledger:*")]
        assert len(keys) == 6  # one hash per dimension: day, workspace, channel, user, model, kind
        for key in keys:
            ttl = await client.ttl(key)
            assert RETENTION_DAYS * 86400 - 60 < ttl <= RETENTION_DAYS * 86400
    finally:
        await client.aclose()
        await ledger.close()
        await delete_prefix(prefix)


async def test_redis_days_recorded_before_summaries_read_as_answers() -> None:
    prefix, url = unique_prefix(), require_redis()
    ledger = RedisLedger(url, prefix=prefix)
    await ledger.open()
    client = aioredis.from_url(url)
    old = {"answers": 2, "prompt": 200, "completion": 40, "cost": 0.5, "images": 1}
    members = {"day": DAY, "user": "slack:U_ALICE", "model": "m"}  # as written before kinds
    try:
        for dimension, member in members.items():
            fields = {f"{member}|{metric}": value for metric, value in old.items()}
            key = f"{prefix}:ledger:{DAY}:{dimension}"
            await client.hset(key, mapping=fields)  # type: ignore[arg-type]
        await ledger.record(entry(ALICE, cost=0.25, kind="summary", prompt_tokens=300))

        [day] = await ledger.usage(DAY, DAY, "day")
        kinds = await ledger.usage(DAY, DAY, "kind")
        spend = await ledger.spend(DAY, ALICE)
    finally:
        await client.aclose()
        await ledger.close()
        await delete_prefix(prefix)
    assert (day.answers, day.summaries, day.prompt_tokens, day.cost) == (2, 1, 500, 0.75)
    rows = [(r.group, r.answers, r.summaries, r.prompt_tokens, r.cost) for r in kinds]
    assert rows == [("answer", 2, 0, 200, 0.5), ("summary", 0, 1, 300, 0.25)]
    assert spend.user == pytest.approx(0.75)


async def test_an_unreachable_redis_is_a_store_error() -> None:
    ledger = RedisLedger("redis://127.0.0.1:1/0")
    with pytest.raises(StoreError):
        await ledger.open()
    await ledger.close()


def test_the_ledger_follows_the_store_url(tmp_path: Path) -> None:
    assert isinstance(open_ledger(f"sqlite:///{tmp_path}/g.db"), SQLiteLedger)
    assert isinstance(open_ledger("memory://"), MemoryLedger)
    assert isinstance(open_ledger("redis://127.0.0.1:6379/0"), RedisLedger)


def test_days_are_utc_calendar_days() -> None:
    assert utc_day(1_700_000_000) == "2023-11-14"  # 22:13 UTC; already the 15th east of UTC+2
    assert day_range("2024-02-28", "2024-03-01") == ["2024-02-28", "2024-02-29", "2024-03-01"]
    assert day_range("2024-03-01", "2024-02-28") == []


# --- `glimpse forget` ---


async def _glimpse(*args: str, store_url: str) -> tuple[int, str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("GLIMPSE_", "OPENROUTER_"))}
    env["GLIMPSE_STORE_URL"] = store_url
    process = await asyncio.create_subprocess_exec(
        sys.executable,
        "-m",
        "bot.cli",
        *args,
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
        env=env,
    )
    out, err = await asyncio.wait_for(process.communicate(), timeout=60)
    return int(process.returncode or 0), out.decode(), err.decode()


async def test_forget_user_deletes_their_turns_and_anonymises_their_usage(tmp_path: Path) -> None:
    url = f"sqlite:///{tmp_path / 'glimpse.db'}"
    key = ConversationKey("slack", "T1", "C1", "1.0")
    store, ledger = SQLiteStore(tmp_path / "glimpse.db"), SQLiteLedger(tmp_path / "glimpse.db")
    await store.open()
    await ledger.open()
    await store.append(key, [turn("mine", author_id="U_ALICE"), turn("theirs", author_id="U_BOB")])
    await ledger.record(entry(ALICE, day=utc_day()))
    await ledger.record(entry(BOB, day=utc_day()))

    code, out, err = await _glimpse("forget", "--user", "U_ALICE", store_url=url)

    assert code == 0, err
    assert "Deleted 1 stored messages written by U_ALICE" in out
    assert "Anonymised 1 answers" in out
    assert [t.text for t in await store.load(key, 10)] == ["theirs"]
    users = {r.group for r in await ledger.usage(utc_day(), utc_day(), "user")}
    assert users == {"slack:U_BOB", "slack:(forgotten)"}
    await store.close()
    await ledger.close()


async def test_forget_conversation_deletes_exactly_that_conversation(tmp_path: Path) -> None:
    url = f"sqlite:///{tmp_path / 'glimpse.db'}"
    gone, kept = (
        ConversationKey("slack", "T1", "C1", "1.0"),
        ConversationKey("slack", "T1", "C1", "2.0"),
    )
    store = SQLiteStore(tmp_path / "glimpse.db")
    await store.open()
    await store.append(gone, [turn("a"), turn("b")])
    await store.append(kept, [turn("c")])
    await store.close()

    code, out, err = await _glimpse("forget", "--conversation", str(gone), store_url=url)
    bad = await _glimpse("forget", "--conversation", "not-a-key", store_url=url)

    assert code == 0, err
    assert out.strip() == "Deleted 2 stored messages of conversation slack:T1:C1:1.0."
    assert bad[0] == 2 and "four parts" in bad[2]
    await store.open()
    assert await store.load(gone, 10) == []
    assert [t.text for t in await store.load(kept, 10)] == ["c"]
    await store.close()


def test_entries_are_values() -> None:
    assert replace(entry(), cost=1.0) != entry()


def test_a_redis_store_shares_its_connection_pool_with_limits_leases_and_ledger() -> None:
    from bot.app import build_conversations
    from bot.config import Secrets, Settings

    settings = Settings(store_url="redis://127.0.0.1:6379/15?prefix=pool-check")
    conversations = build_conversations(settings, Secrets(openrouter_api_key="sk-or-v1-test.key"))
    pool = conversations._store.client  # type: ignore[attr-defined]
    assert conversations._budgets.ledger._redis is pool  # type: ignore[attr-defined]
    assert conversations._limiter._client is pool  # type: ignore[attr-defined]
