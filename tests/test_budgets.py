"""Costs and daily budgets through the real core and fake OpenRouter, and the `glimpse usage` table."""

from __future__ import annotations

import asyncio
import io
import logging
import os
import sys
import time
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest
from PIL import Image

from bot.app import build_conversations
from bot.budgets import CHANNEL_OVER, USER_OVER, WORKSPACE_OVER, Budgets
from bot.config import Secrets, Settings
from bot.conversations import Conversations, Status
from bot.images import ImagePipeline
from bot.ledger import CallKind, LedgerEntry, Payer, RatingEntry, utc_day
from bot.ledger_memory import MemoryLedger
from bot.ledger_sqlite import SQLiteLedger
from bot.messages import ConversationKey, ImageRef, IncomingMessage
from bot.openrouter import OpenRouterClient
from bot.store import MemoryStore, StoreError
from bot.turns import Usage
from tests.fakes.openrouter import FAKE_API_KEY, FakeOpenRouter
from tests.test_conversations import RecordingSink

MODEL = "meta-llama/llama-3.2-90b-vision-instruct"
_ids = iter(range(10**9))


def _settings(fake: FakeOpenRouter, tmp_path: Path, **overrides: Any) -> Settings:
    values: dict[str, Any] = {
        "base_url": fake.base_url,
        "store_url": f"sqlite:///{tmp_path / 'glimpse.db'}",
        "max_retries": 0,
        "user_messages_per_minute": 0,
    }
    return Settings(**{**values, **overrides})


def _message(
    text: str = "hi",
    *,
    user: str = "u1",
    channel: str = "c1",
    workspace: str = "w1",
    thread: str = "t1",
    **extra: Any,
) -> IncomingMessage:
    return IncomingMessage(
        key=ConversationKey("test", workspace, channel, thread),
        message_id=f"m{next(_ids)}",
        author_id=user,
        text=text,
        **extra,
    )


def _spent(
    cost: float,
    *,
    user: str = "u9",
    channel: str = "c1",
    workspace: str = "w1",
    day: str = "",
    kind: CallKind = "answer",
) -> LedgerEntry:
    payer = Payer("test", workspace, channel, user)
    return LedgerEntry(day or utc_day(), payer, MODEL, 1000, 100, cost, 0, kind)


@pytest.fixture
async def fake() -> AsyncIterator[FakeOpenRouter]:
    async with FakeOpenRouter() as server:
        yield server


@pytest.fixture
async def ledger(tmp_path: Path) -> AsyncIterator[SQLiteLedger]:
    """The ledger in the store's file, as a second process (the operator's `glimpse usage`) sees it."""
    ledger = SQLiteLedger(tmp_path / "glimpse.db")
    await ledger.open()
    yield ledger
    await ledger.close()


async def _service(fake: FakeOpenRouter, tmp_path: Path, **overrides: Any) -> Conversations:
    settings = _settings(fake, tmp_path, **overrides)
    service = build_conversations(settings, Secrets(openrouter_api_key=FAKE_API_KEY))
    await service.start()
    return service


def _jpeg() -> bytes:
    buffer = io.BytesIO()
    Image.new("RGB", (64, 48), "green").save(buffer, "JPEG")
    return buffer.getvalue()


async def test_an_answer_is_recorded_with_its_cost_tokens_and_images(
    fake: FakeOpenRouter, tmp_path: Path, ledger: SQLiteLedger
) -> None:
    service = await _service(fake, tmp_path)
    photo = ImageRef(filename="p.jpg", data=_jpeg(), mime_type="image/jpeg")
    try:
        outcome = await service.handle(
            _message("what is it?", thread="root-1", images=(photo,), parent_channel="c-parent"),
            RecordingSink(),
        )
    finally:
        await service.close()

    assert outcome.status is Status.ANSWERED and outcome.usage is not None
    [row] = await ledger.usage(utc_day(), utc_day(), "channel")
    assert row.group == "test:w1:c-parent"  # a thread is charged to its parent channel
    assert (row.answers, row.images) == (1, 1)
    assert (row.prompt_tokens, row.completion_tokens) == (
        outcome.usage.prompt_tokens,
        outcome.usage.completion_tokens,
    )
    assert row.cost == pytest.approx(outcome.usage.cost) and row.cost > 0
    assert [r.group for r in await ledger.usage(utc_day(), utc_day(), "user")] == ["test:u1"]


async def test_a_user_over_budget_is_told_politely_and_no_model_call_is_made(
    fake: FakeOpenRouter, tmp_path: Path, ledger: SQLiteLedger
) -> None:
    await ledger.record(_spent(0.5, user="u1"))
    service = await _service(fake, tmp_path, daily_budget_user_usd=0.5)
    sink = RecordingSink()
    try:
        refused = await service.handle(_message(user="u1"), sink)
        other = await service.handle(_message(user="u2"), RecordingSink())
    finally:
        await service.close()

    assert (refused.status, refused.text) == (Status.OVER_BUDGET, USER_OVER)
    assert sink.notices == [USER_OVER] and not sink.started
    assert other.status is Status.ANSWERED
    assert len(fake.chat_requests) == 1  # only u2's


async def test_a_channel_over_budget_stops_everyone_in_it_and_its_threads(
    fake: FakeOpenRouter, tmp_path: Path, ledger: SQLiteLedger
) -> None:
    await ledger.record(_spent(1.0, user="u9", channel="c1"))
    service = await _service(fake, tmp_path, daily_budget_channel_usd=1.0)
    try:
        in_thread = await service.handle(
            _message(user="u1", channel="root-7", parent_channel="c1"), RecordingSink()
        )
        elsewhere = await service.handle(_message(user="u1", channel="c2"), RecordingSink())
    finally:
        await service.close()

    assert in_thread.text == (
        "This channel has used today's budget for Glimpse; it resets at midnight UTC."
    )
    assert in_thread.text == CHANNEL_OVER and in_thread.status is Status.OVER_BUDGET
    assert elsewhere.status is Status.ANSWERED


async def test_a_workspace_budget_counts_every_channel_of_the_workspace(
    fake: FakeOpenRouter, tmp_path: Path, ledger: SQLiteLedger
) -> None:
    await ledger.record(_spent(0.3, channel="c1"))
    await ledger.record(_spent(0.3, channel="c2"))
    await ledger.record(_spent(5.0, workspace="w2"))
    service = await _service(fake, tmp_path, daily_budget_workspace_usd=0.6)
    try:
        refused = await service.handle(_message(channel="c3"), RecordingSink())
        other = await service.handle(_message(workspace="w3"), RecordingSink())
    finally:
        await service.close()
    assert refused.text == WORKSPACE_OVER
    assert other.status is Status.ANSWERED


async def test_yesterdays_spend_does_not_count_today(
    fake: FakeOpenRouter, tmp_path: Path, ledger: SQLiteLedger
) -> None:
    await ledger.record(_spent(100.0, user="u1", day=utc_day(time.time() - 86400)))
    service = await _service(fake, tmp_path, daily_budget_user_usd=1.0)
    try:
        outcome = await service.handle(_message(user="u1"), RecordingSink())
    finally:
        await service.close()
    assert outcome.status is Status.ANSWERED


async def test_answers_themselves_use_up_the_budget(fake: FakeOpenRouter, tmp_path: Path) -> None:
    service = await _service(fake, tmp_path, daily_budget_user_usd=1e-9)
    try:
        first = await service.handle(_message(thread="a"), RecordingSink())
        second = await service.handle(_message(thread="b"), RecordingSink())
    finally:
        await service.close()
    assert (first.status, second.status) == (Status.ANSWERED, Status.OVER_BUDGET)
    assert len(fake.chat_requests) == 1


async def test_a_summary_is_recorded_as_its_own_kind_and_uses_up_the_budget() -> None:
    ledger = MemoryLedger()
    await ledger.open()
    budgets = Budgets(Settings(daily_budget_user_usd=0.5), ledger)
    message = _message(user="u1")

    await budgets.record(message, Usage(MODEL, 800, 60, 0.5), 0, kind="summary")

    [entry] = ledger.entries
    assert (entry.kind, entry.cost, entry.payer.user) == ("summary", 0.5, "u1")
    assert await budgets.refusal(message) == USER_OVER


class _UnreachableLedger(MemoryLedger):
    async def spend(self, day: str, payer: Payer) -> Any:
        raise StoreError("ledger down")


async def test_an_unreachable_ledger_does_not_stop_answers(
    fake: FakeOpenRouter, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    settings = _settings(fake, tmp_path, daily_budget_user_usd=1.0, store_url="memory://")
    service = Conversations(
        settings,
        store=MemoryStore(),
        client=OpenRouterClient(settings, FAKE_API_KEY),
        images=ImagePipeline(settings),
        ledger=_UnreachableLedger(),
    )
    await service.start()
    try:
        with caplog.at_level(logging.WARNING, logger="glimpse.budgets"):
            outcome = await service.handle(_message(), RecordingSink())
    finally:
        await service.close()
    assert outcome.status is Status.ANSWERED
    assert "budgets unchecked (ledger down)" in caplog.text


async def _glimpse_usage(tmp_path: Path, *args: str) -> list[str]:
    """`glimpse usage ARGS` on the store in tmp_path, as an operator runs it; its output lines."""
    env = {k: v for k, v in os.environ.items() if not k.startswith(("GLIMPSE_", "OPENROUTER_"))}
    env["GLIMPSE_STORE_URL"] = f"sqlite:///{tmp_path / 'glimpse.db'}"
    process = await asyncio.create_subprocess_exec(
        sys.executable, "-m", "bot.cli", "usage", *args,
        stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE, env=env,
    )  # fmt: skip
    out, err = await asyncio.wait_for(process.communicate(), timeout=60)
    assert process.returncode == 0, err.decode()
    return out.decode().splitlines()


async def test_usage_prints_an_aligned_table_of_the_recent_days(
    tmp_path: Path, ledger: SQLiteLedger
) -> None:
    await ledger.record(_spent(0.125, user="u1"))
    await ledger.record(_spent(0.25, user="u2", day=utc_day(time.time() - 2 * 86400)))
    await ledger.record(_spent(9.0, user="u3", day=utc_day(time.time() - 30 * 86400)))

    title, *table = await _glimpse_usage(tmp_path, "--days", "7", "--by", "user")

    assert title.startswith("Usage from ") and title.endswith(f"{utc_day()} (UTC), by user:")
    assert len({len(line) for line in table}) == 1, table  # every line equally wide
    assert table[0].split()[:3] == ["user", "answers", "summaries"]
    assert [line.split()[0] for line in table[2:-2]] == ["test:u2", "test:u1"]  # biggest first
    assert table[-1].split() == ["total", "2", "0", "2,000", "200", "0", "$0.375000"]


async def test_usage_by_kind_shows_answers_and_summaries_apart(
    tmp_path: Path, ledger: SQLiteLedger
) -> None:
    await ledger.record(_spent(0.125, user="u1"))
    await ledger.record(_spent(0.25, user="u1", kind="summary"))

    title, *table = await _glimpse_usage(tmp_path, "--days", "1", "--by", "kind")

    assert title.endswith("(UTC), by kind:")
    assert [line.split() for line in table[2:-2]] == [
        ["summary", "0", "1", "1,000", "100", "0", "$0.250000"],
        ["answer", "1", "0", "1,000", "100", "0", "$0.125000"],
    ]
    assert table[-1].split() == ["total", "1", "1", "2,000", "200", "0", "$0.375000"]


async def test_usage_by_model_shows_the_share_of_good_ratings(
    tmp_path: Path, ledger: SQLiteLedger
) -> None:
    await ledger.record(_spent(0.125, user="u1"))
    await ledger.record(_spent(0.25, user="u2"))
    for user, answer, verdict in [
        ("u1", "1.1", "good"),
        ("u2", "1.1", "bad"),
        ("u3", "1.2", "good"),
    ]:
        await ledger.rate(
            RatingEntry(utc_day(), Payer("test", "w1", "c1", user), answer, MODEL, verdict)
        )  # type: ignore[arg-type]
    await ledger.rate(RatingEntry(utc_day(), Payer("test", "w1", "c1", "u2"), "1.1", MODEL, "good"))

    title, *table = await _glimpse_usage(tmp_path, "--days", "1", "--by", "model")
    by_user = await _glimpse_usage(tmp_path, "--days", "1", "--by", "user")

    assert title.endswith("(UTC), by model:")
    assert len({len(line) for line in table}) == 1, table
    assert table[0].split()[-2:] == ["rated", "good"]
    assert table[2].split()[0] == MODEL and table[2].endswith("100% of 3")  # u2 changed to good
    assert table[-1].endswith("100% of 3")
    assert "rated good" not in by_user[1]  # only by model


async def test_usage_by_model_shows_a_dash_where_nobody_rated(
    tmp_path: Path, ledger: SQLiteLedger
) -> None:
    await ledger.record(_spent(0.125, user="u1"))
    await ledger.rate(RatingEntry(utc_day(), Payer("test", "w1", "c1", "u1"), "1.1", MODEL, "bad"))
    await ledger.record(
        LedgerEntry(
            utc_day(),
            Payer("test", "w1", "c1", "u1"),
            "qwen/qwen2.5-vl-72b-instruct",
            10,
            1,
            0.5,
            0,
        )
    )

    _, *table = await _glimpse_usage(tmp_path, "--days", "1", "--by", "model")

    assert table[2].startswith("qwen/qwen2.5-vl-72b-instruct") and table[2].endswith("-")
    assert table[3].startswith(MODEL) and table[3].endswith("0% of 1")
