"""Load: a steady stream of Slack messages over many threads, a bounded number of model calls, and "busy"."""

from __future__ import annotations

import asyncio
import os
import time
from pathlib import Path

import pytest

from bot.admission import BUSY_NOTICE, Admission, Busy
from tests.fakes.openrouter import DEFAULT_REPLY
from tests.reliability.harness import slack_mention, slack_rig, until
from tests.reliability.load import LoadPlan, LoadReport, run_load

SCALED = LoadPlan(conversations=50, per_conversation=6, seconds=3.0, max_concurrent_answers=32)
FULL = LoadPlan(conversations=100, per_conversation=10, seconds=10.0, max_concurrent_answers=64)


def assert_nothing_lost(report: LoadReport) -> None:
    print(f"\nload: {report.summary()}")
    assert report.sent == report.plan.messages
    assert report.dropped == 0 and report.twice == 0 and report.busy == 0
    assert report.model_calls == report.plan.messages  # Slack's retries were not answered again
    assert report.order_kept
    assert report.peak_streams == report.plan.max_concurrent_answers  # reached, never passed


async def test_300_slack_messages_in_3_s_over_50_threads_are_each_answered_once_in_order(
    tmp_path: Path,
) -> None:
    assert_nothing_lost(await run_load(SCALED, tmp_path))


@pytest.mark.skipif(
    os.environ.get("GLIMPSE_FULL_LOAD") != "1",
    reason="the full 1,000-message run: GLIMPSE_FULL_LOAD=1",
)
async def test_1000_slack_messages_in_10_s_over_100_threads_are_each_answered_once_in_order(
    tmp_path: Path,
) -> None:
    assert_nothing_lost(await run_load(FULL, tmp_path))


# --- the bound, and "busy" instead of an endless queue ---


async def test_past_the_bound_for_too_long_a_message_gets_the_busy_answer_then_service_resumes() -> (
    None
):
    async with slack_rig(max_concurrent_answers=2, busy_after_seconds=0.5) as rig:
        rig.router.first_token_latency_seconds = 1.5  # every answer holds its slot 1.5 s
        events = [slack_mention(f"question {i}", channel=f"C0LOAD{i:04d}") for i in range(6)]
        started = time.monotonic()
        await asyncio.gather(*(rig.event(event) for event in events))

        def busy() -> int:
            return sum(rig.thread(e["ts"], e["channel"]) == [BUSY_NOTICE] for e in events)

        await until(lambda: busy() == 4, "four busy answers")
        assert time.monotonic() - started < 1.4  # told after 0.5 s, not when a slot freed (1.5 s)
        await rig.settle()
        threads = [rig.thread(e["ts"], e["channel"]) for e in events]
        assert sorted(threads) == [[BUSY_NOTICE]] * 4 + [[DEFAULT_REPLY]] * 2
        assert rig.router.peak_streams == 2 and len(rig.router.chat_requests) == 2
        assert rig.conversations.admission.turned_away == 4

        again = slack_mention("and now?", channel="C0LOAD0000")
        await rig.event(again)
        await rig.settle()
        assert rig.thread(again["ts"], "C0LOAD0000") == [DEFAULT_REPLY]


async def test_the_admission_bound_holds_for_many_callers_and_serves_them_in_order() -> None:
    admission = Admission(3, busy_after_seconds=5)
    order: list[int] = []

    async def call(index: int) -> None:
        async with admission.slot():
            order.append(index)
            await asyncio.sleep(0.02)

    await asyncio.gather(*(call(i) for i in range(20)))
    assert admission.peak == 3 and admission.active == 0 and order == list(range(20))


async def test_a_caller_that_waited_too_long_is_turned_away_and_leaks_no_slot() -> None:
    admission = Admission(1, busy_after_seconds=0.1)
    async with admission.slot():
        with pytest.raises(Busy):
            async with admission.slot():
                pass
        waiter = asyncio.create_task(_enter(admission))
        await asyncio.sleep(0.02)
        waiter.cancel()  # a message abandoned while it waited (shutdown, client gone)
        with pytest.raises(asyncio.CancelledError):
            await waiter
    async with asyncio.timeout(1):  # the slot is free again: nothing kept it
        async with admission.slot():
            assert admission.active == 1 and admission.waiting == 0
    assert admission.turned_away == 1


async def _enter(admission: Admission) -> None:
    async with admission.slot():
        pass
