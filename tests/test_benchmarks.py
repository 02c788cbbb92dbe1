"""Cheap checks of the benchmark harness's measuring parts (the run itself is `benchmarks/run.py --quick`)."""

from __future__ import annotations

import asyncio
import dataclasses
import math
import os
import subprocess
import sys
import time
from collections import defaultdict
from collections.abc import Awaitable, Callable
from typing import Any

import openai
import pytest
from aiohttp.client_reqrep import ClientRequest

from benchmarks import overhead, probe, without_sdk
from benchmarks.common import QUICK_PLAN, ModelShape, percentile
from benchmarks.context_use import measure_context_use
from benchmarks.corpus import PROFILES, make_corpus
from benchmarks.images import make_heic_pair, measure_image
from benchmarks.machine import process_cpu_seconds
from benchmarks.memory_recall import FACT, measure_memory_recall, plant_facts
from benchmarks.overhead import (
    APPROACHES,
    RATIO_PAIR,
    Level,
    Sample,
    run_level,
    started_sides,
)
from benchmarks.report import (
    Results,
    core_ms,
    departure_p50,
    key_ratios,
    ratio,
    render,
    steady_ratio,
)
from benchmarks.request_cost import sdk_request_microseconds
from benchmarks.servers import BenchSlack
from benchmarks.steady import SteadyResult, run_steady
from bot import openrouter
from bot.tokens import TokenCounter
from tests.fakes.openrouter import FakeOpenRouter

# What the probe patches, as (owner, attribute).
PATCHED = (
    (openai.resources.chat.AsyncCompletions, "create"),
    (openai.AsyncOpenAI, "post"),
    (openai.AsyncStream, "__aiter__"),
    (openai.AsyncStream, "close"),
    (openrouter._BodyStream, "blocks"),
    (openrouter, "_take"),
)
ABSENT = object()
TAKE = openrouter._take
SEND = ClientRequest.send


def test_the_corpus_is_reproducible_and_covers_every_kind() -> None:
    first, second = make_corpus(12), make_corpus(12)
    assert first == second
    assert {conversation.profile for conversation in first} == set(PROFILES)


def test_glimpse_trimming_never_overflows_where_the_usual_ways_do() -> None:
    results = {r.name: r for r in measure_context_use(make_corpus(18))}
    assert results["glimpse"].overflows == 0
    assert all(tokens <= results["glimpse"].budget for tokens in results["glimpse"].prompt_tokens)
    assert results["last 25 messages"].overflows > 0


def test_every_earlier_message_opens_with_its_own_fact() -> None:
    corpus = make_corpus(6)
    planted = plant_facts(corpus, TokenCounter(), budget=3008)
    facts = [fact for conversation in planted for fact in conversation.facts]
    assert len(facts) == len(set(facts)) == sum(len(c.history) // 2 for c in corpus)
    for conversation, original in zip(planted, corpus, strict=True):
        assert conversation.messages[-1] == original.new_message  # the question carries none
        for message, fact in zip(conversation.messages, conversation.facts, strict=False):
            assert message.startswith(f"{fact} ") and FACT.fullmatch(fact)


async def test_summaries_keep_the_first_facts_that_trimming_alone_drops() -> None:
    results = {r.variant.name: r for r in await measure_memory_recall(make_corpus(4))}
    without, with_ = results["no summaries"], results["summaries"]
    assert sum(c.exceeds for c in with_.conversations) > 0
    assert with_.first_share(only_exceeding=True) > without.first_share(only_exceeding=True)
    assert with_.fact_share() > without.fact_share() and with_.summary_share() > 0
    assert without.summary_calls == 0 < with_.summary_calls
    for result in results.values():
        assert result.failed == 0 and result.overflows == 0
        assert result.answers == sum(len(c.history) // 2 + 1 for c in make_corpus(4))
    run = Results(QUICK_PLAN, {}, recall=list(results.values()))
    text = render(run)
    row = next(line for line in text.splitlines() if "first message's fact" in line)
    assert _cells(row)[2:] == [
        f"{with_.first_share(only_exceeding=True):.1%}",
        f"{without.first_share(only_exceeding=True):.1%} (without summaries)",
        "met" if with_.first_share(only_exceeding=True) >= 0.9 else "**missed**",
    ]
    assert "What the last request still holds" in text and "**Cost.**" in text
    assert sum(line.startswith("P3 memory") for line in key_ratios(run)) == len(results)


def test_the_fake_model_shape_spreads_its_tokens_over_its_time() -> None:
    shape = ModelShape(tokens=200, seconds=2.0, first_token_seconds=0.4)
    assert abs(shape.first_token_seconds + 199 * shape.chunk_delay_seconds - 2.0) < 1e-9
    assert shape.reply().endswith("END.")


def test_another_processs_cpu_time_is_read_from_proc() -> None:
    if not os.path.exists(f"/proc/{os.getpid()}/stat"):
        pytest.skip("no /proc on this system")
    child = subprocess.Popen(
        [sys.executable, "-c", "sum(range(30_000_000)); input()"], stdin=subprocess.PIPE
    )
    try:
        seconds = None
        for _ in range(100):  # until the child has burnt its loop
            seconds = process_cpu_seconds(child.pid)
            if seconds and seconds >= 0.2:
                break
            time.sleep(0.05)
        assert seconds is not None and seconds >= 0.2
    finally:
        child.kill()
        child.wait()
    assert process_cpu_seconds(child.pid) is None  # gone: unknown, not zero


def test_percentiles_interpolate() -> None:
    assert percentile([1, 2, 3, 4], 50) == 2.5
    assert percentile([5.0], 99) == 5.0


def _own_attributes() -> list[object]:
    """What each patched owner itself holds under each name (ABSENT if it only inherits it)."""
    return [vars(owner).get(name, ABSENT) for owner, name in PATCHED]


def test_the_probe_puts_back_exactly_what_it_replaced_and_nests() -> None:
    before = _own_attributes()
    with probe.installed():
        inside = _own_attributes()
        assert all(now is not then for now, then in zip(inside, before, strict=True))
        with probe.installed():
            assert _own_attributes() == inside  # a nested block wraps nothing twice
        assert _own_attributes() == inside  # and leaving it keeps the outer block's wrappers
    assert _own_attributes() == before
    assert "post" not in vars(openai.AsyncOpenAI)  # inherited before: not left shadowed
    with pytest.raises(RuntimeError), probe.installed():
        raise RuntimeError("an answer failed")
    assert _own_attributes() == before
    with probe.installed():  # again, after use: wrapped afresh around the originals
        assert all(now is not then for now, then in zip(_own_attributes(), before, strict=True))
    assert _own_attributes() == before


def _noting_runner(side: overhead.Side, probed: dict[str, set[bool]]) -> Callable[[str], Any]:
    """`side.runner` that notes, for each answer, whether the probe was installed."""
    runner = side.runner

    def noting(approach: str) -> Callable[[], Awaitable[Sample]]:
        run = runner(approach)

        async def noted() -> Sample:
            probed[approach].add(openrouter._take is not TAKE)
            return await run()

        return noted

    return noting


async def _quick_levels(
    fake: FakeOpenRouter, monkeypatch: pytest.MonkeyPatch
) -> tuple[list[Level], dict[str, set[bool]]]:
    """The quick plan's P1 levels against `fake`; and, per approach, whether the probe was in."""
    shape = QUICK_PLAN.shape
    fake.reply, fake.chunks = shape.reply(), shape.tokens
    fake.chunk_delay_seconds = shape.chunk_delay_seconds
    fake.first_token_latency_seconds = shape.first_token_seconds
    monkeypatch.setattr(overhead, "settle_heap", lambda: None)  # keep pytest's GC settings
    side = await started_sides(fake.base_url)
    probed: dict[str, set[bool]] = defaultdict(set)
    monkeypatch.setattr(side, "runner", _noting_runner(side, probed))
    try:
        levels = [
            await run_level(side, c, rounds, QUICK_PLAN.ratio_rounds)
            for c, rounds in QUICK_PLAN.levels
        ]
    finally:
        await side.close()
    return levels, probed


def _p1_row(markdown: str, concurrency: int) -> dict[str, str]:
    """The P1 table's row for `concurrency`, cell by column header."""
    lines = markdown.splitlines()
    top = next(i for i, line in enumerate(lines) if line.startswith("| concurrent |"))
    row = next(line for line in lines[top:] if line.startswith(f"| {concurrency:,} |"))
    return dict(zip(_cells(lines[top]), _cells(row), strict=True))


def _cells(line: str) -> list[str]:
    return [cell.strip() for cell in line.strip().strip("|").split("|")]


async def test_p1_takes_ratios_from_unprobed_rounds_and_the_breakdown_from_probed_ones(
    fake_openrouter: FakeOpenRouter, monkeypatch: pytest.MonkeyPatch
) -> None:
    levels, probed = await _quick_levels(fake_openrouter, monkeypatch)
    assert probed == {
        "bare": {False},
        "sdk": {False},
        "glimpse": {False},
        "probed": {True},
        "usual": {True},
    }
    assert openrouter._take is TAKE
    assert ClientRequest.send is SEND  # the departures' timer is gone
    for level, (concurrency, rounds) in zip(levels, QUICK_PLAN.levels, strict=True):
        extra = QUICK_PLAN.ratio_rounds
        assert {a: len(level.samples[a]) for a in APPROACHES} == {
            a: concurrency * (rounds + (extra if a in RATIO_PAIR else 0)) for a in APPROACHES
        }
        assert all(s.core_seconds == s.decode_seconds == 0 for s in level.samples["glimpse"])
        assert all(s.core_seconds > 0 and s.decode_seconds > 0 for s in level.samples["probed"])
        assert all(s.core_seconds > 0 for s in level.samples["usual"])
        # every aiohttp request's departure is timed (the SDK-alone and usual clients use httpx2's)
        for approach in APPROACHES:
            aiohttp_client = approach in ("bare", "glimpse", "probed")
            expected = len(level.samples[approach]) if aiohttp_client else 0
            assert len(level.departures[approach]) == expected, approach
        slowest = max(s.seconds for s in level.samples["glimpse"])
        assert all(0 < left < slowest for left in level.departures["glimpse"])
        with pytest.raises(ValueError, match="without the probe"):
            core_ms(level, "glimpse")
    top = levels[-1]
    cells = _p1_row(render(Results(QUICK_PLAN, {}, levels=levels)), top.concurrency)
    core = cells["Glimpse core ms p50 / p99"]
    assert core == "{:,.2f} / {:,.2f}".format(*core_ms(top, "probed"))
    assert core != "0.00 / 0.00"
    assert cells["Glimpse ÷ model"] == f"**{ratio(top, 'glimpse'):,.2f}**"
    left = cells["request left, s after the start p50: bare / Glimpse"]
    assert left == f"{departure_p50(top, 'bare'):,.3f} / {departure_p50(top, 'glimpse'):,.3f}"


def _synthetic_level(concurrency: int, bare_seconds: float, glimpse_seconds: float) -> Level:
    level = Level(concurrency)
    for approach in APPROACHES:
        seconds = bare_seconds if approach == "bare" else glimpse_seconds
        core = 0.0 if approach in ("bare", "sdk", "glimpse") else 0.001
        level.samples[approach] = [Sample(seconds, core, 0.0001, core)] * 3
    return level


@pytest.mark.parametrize(("bare_seconds", "explained"), [(0.205, False), (0.6, True)])
def test_a_model_slowed_by_the_load_is_explained_beside_the_p1_table(
    bare_seconds: float, explained: bool
) -> None:
    levels = [_synthetic_level(1, 0.2, 0.2), _synthetic_level(10, bare_seconds, 0.55)]
    text = render(Results(QUICK_PLAN, {}, levels=levels))
    note = "neither process has CPU to spare"
    assert (note in text) is explained
    if explained:
        assert "10 concurrent answers" in text and "instead of 0.2 s" in text


def test_the_start_is_weighed_against_what_the_target_leaves_per_request() -> None:
    top = _synthetic_level(1000, 2.2, 2.4)
    top.departures["bare"] = [0.05] * 3
    top.departures["glimpse"] = [0.19] * 3
    results = Results(QUICK_PLAN, {}, levels=[_synthetic_level(1, 0.2, 0.2), top])
    results.sdk_request_us = 190.0
    text = render(results)
    assert _p1_row(text, 1000)["request left, s after the start p50: bare / Glimpse"] == (
        "0.050 / 0.190"
    )
    assert (
        "Glimpse's median request left 0.190 s after the start, the bare client's 0.050 s" in text
    )
    assert "0.140 s later; their median answers ended 0.200 s apart" in text
    assert "Most of the miss is the start" in text
    # 2 % of 2.2 s, spread over the 500 requests built before the median one: 88 µs each
    assert "at most 88 µs of CPU more" in text and "SDK's part alone takes 190 µs" in text


async def test_the_sdks_request_cost_is_timed_without_a_network() -> None:
    # its transport answers itself: a request that reached for 127.0.0.1:9 would fail
    assert await sdk_request_microseconds(overhead.request_body(), 20) > 0


async def test_steady_load_keeps_every_conversation_streaming_and_counts_after_the_ramp() -> None:
    model_seconds, concurrency = 0.1, 8
    in_flight, peak, starts = 0, 0, []
    began = time.perf_counter()

    class Stub:
        def runner(self, approach: str) -> Callable[[], Awaitable[Sample]]:
            async def answer() -> Sample:
                nonlocal in_flight, peak
                starts.append(time.perf_counter() - began)
                in_flight += 1
                peak = max(peak, in_flight)
                await asyncio.sleep(model_seconds)
                in_flight -= 1
                return Sample(model_seconds if approach == "bare" else 1.5 * model_seconds)

            return answer

    result = await run_steady(Stub(), concurrency, 1, model_seconds)  # type: ignore[arg-type]
    assert peak == concurrency  # one answer at a time per conversation, all of them going
    # each conversation answers back to back for the ramp plus the window: ~3 model times
    assert 2.5 * concurrency <= result.answers["bare"] <= 3.5 * concurrency
    # the first model time's answers (the ramp) are not counted
    assert 0 < len(result.seconds["bare"]) < result.answers["bare"]
    first = sorted(starts)[:concurrency]  # every conversation's first question, spread
    assert model_seconds / 2 < first[-1] - first[0] < model_seconds
    assert steady_ratio(result) == pytest.approx(1.5)


@pytest.mark.parametrize(("glimpse_seconds", "missed"), [(2.03, False), (2.1, True)])
def test_the_steady_load_has_its_own_row_and_a_note_when_missed(
    glimpse_seconds: float, missed: bool
) -> None:
    steady = SteadyResult(1000)
    steady.seconds = {"bare": [2.0] * 5, "glimpse": [glimpse_seconds] * 5}
    steady.cpu_seconds, steady.answers = (
        {"bare": 2.0, "glimpse": 2.5},
        {"bare": 1000, "glimpse": 1000},
    )
    results = Results(QUICK_PLAN, {}, levels=[_synthetic_level(10, 0.2, 0.2)], steady=steady)
    text = render(results)
    row = next(line for line in text.splitlines() if "steady (each conversation" in line)
    assert _cells(row)[2:] == [
        f"{glimpse_seconds / 2:.3f}",  # the ratio
        "n/a",
        "**missed**" if missed else "met",
    ]
    assert ("steady, missed" in text) is missed
    assert "2.5 ms of CPU per answer against the bare client's 2.0 ms" in text or not missed


async def test_the_what_if_without_the_sdk_alternates_with_glimpse_and_is_undone(
    fake_openrouter: FakeOpenRouter, monkeypatch: pytest.MonkeyPatch
) -> None:
    open_stream = openrouter.OpenRouterClient._open_stream
    posts = 0
    sdk_post = openai.AsyncOpenAI.post

    async def counted_post(*args: Any, **kwargs: Any) -> Any:
        nonlocal posts
        posts += 1
        return await sdk_post(*args, **kwargs)

    shape = QUICK_PLAN.shape
    fake_openrouter.reply, fake_openrouter.chunks = shape.reply(), shape.tokens
    fake_openrouter.chunk_delay_seconds = shape.chunk_delay_seconds
    monkeypatch.setattr(overhead, "settle_heap", lambda: None)
    side = await started_sides(fake_openrouter.base_url)
    try:
        monkeypatch.setattr(openai.AsyncOpenAI, "post", counted_post)
        what_if = await without_sdk.compare(side, 3, 2, 3, shape.seconds)
        assert openrouter.OpenRouterClient._open_stream is open_stream
        assert "glimpse_answer" not in vars(side)  # the reading client is swapped out again
    finally:
        await side.close()
    levels = (what_if.with_sdk, what_if.without_sdk, what_if.reader)
    assert [len(level.samples["glimpse"]) for level in levels] == [6, 6, 6]
    assert [len(level.samples["bare"]) for level in levels] == [6, 6, 6]
    # only Glimpse's own rounds went through the SDK (not the what-if's, not the reading client's)
    assert posts == 6 + what_if.with_sdk_steady.answers["glimpse"]
    assert what_if.without_sdk_steady.answers["glimpse"] > 0
    results = Results(QUICK_PLAN, {}, levels=[what_if.with_sdk], what_if=what_if)
    text = render(results)
    assert "What the openai SDK's request path costs" in text
    without = ratio(what_if.without_sdk, "glimpse")
    assert f"3 all at once: **{without:.3f}×** the model's time without the SDK" in text
    reader = ratio(what_if.reader, "glimpse")
    assert f"(`read_answer`, the least any bot must do): **{reader:.3f}×**" in text
    with_sdk = ratio(what_if.with_sdk, "glimpse")
    assert (
        f"reading the stream is {reader - 1:.3f}, Glimpse's own steps {without - reader:.3f} "
        f"and the SDK's request path {with_sdk - without:.3f}." in text
    )


def test_a_heic_is_timed_in_turns_beside_the_same_photo_as_jpeg_and_reported() -> None:
    heic, jpeg = make_heic_pair((256, 192))
    assert heic[4:12] == b"ftypheic" and jpeg.startswith(b"\xff\xd8\xff")
    result = measure_image("photo.heic", heic, "image/heic", 2, twin=jpeg)
    assert result.size == (256, 192) and result.sent_mime == "image/jpeg"
    assert result.twin_bytes == len(jpeg) and result.twin_ms is not None
    assert result.twin_ratio == pytest.approx(result.median_ms / result.twin_ms)
    assert result.floor_ms is not None  # libheif's own decode, timed in the same turns
    assert result.floor_wall_ms is not None and result.above_floor_cpu_ms is not None

    slow = dataclasses.replace(result, median_ms=15.0, twin_ms=1.0, floor_ms=12.0, cpu_ms=14.0)
    for image, verdict in ((slow, "**missed**"), (dataclasses.replace(slow, median_ms=1.4), "met")):
        text = render(Results(QUICK_PLAN, {}, images=[image]))
        row = next(line for line in text.splitlines() if "HEIC photo ÷ the same photo" in line)
        assert _cells(row)[1:] == [
            "≤ 1.5",
            f"{image.median_ms:.2f} ({image.median_ms:.0f} ms ÷ 1.0 ms)",
            "n/a",
            verdict,
        ]
        assert ("P2 HEIC ÷ JPEG missed" in text) is (verdict != "met")
        floor_row = next(line for line in text.splitlines() if "÷ its decode floor" in line)
        floor_ratio = image.median_ms / (result.floor_wall_ms or math.nan)
        assert _cells(floor_row)[2].startswith(f"HEIC {floor_ratio:.2f} (")
        assert f"CPU {14.0 / 12.0:.2f}: 14 ÷ 12 ms)" in _cells(floor_row)[2]
        assert any(
            line.startswith("P2 photo.heic ÷ the same photo as JPEG")
            for line in key_ratios(Results(QUICK_PLAN, {}, images=[image]))
        )


@pytest.mark.parametrize("native", [True, False], ids=["slack-streaming", "chat-update"])
async def test_the_slack_bench_sees_the_complete_answer_however_it_is_streamed(
    native: bool,
) -> None:
    """Glimpse streams with Slack's own methods by default: the P1 Slack round must see those too."""
    slack = BenchSlack()
    thread = "1700000000.000001"
    done: asyncio.Future[float] = asyncio.get_running_loop().create_future()
    slack.watched[thread] = done
    if native:
        opened = slack._m_chat_startStream(
            {
                "channel": "C1",
                "thread_ts": thread,
                "recipient_user_id": "U1",
                "recipient_team_id": "T1",
                "markdown_text": "The lake is",
            }
        )
        slack._m_chat_appendStream({"channel": "C1", "ts": opened["ts"], "markdown_text": " calm"})
        assert not done.done()
        slack._m_chat_stopStream({"channel": "C1", "ts": opened["ts"], "markdown_text": " END."})
    else:
        opened = slack._m_chat_postMessage({"channel": "C1", "thread_ts": thread, "text": "The"})
        assert not done.done()
        slack._m_chat_update({"channel": "C1", "ts": opened["ts"], "text": "The lake. END."})
    assert opened["ok"] and done.done()
