"""Turns a run's measurements into RESULTS.md, two PNG plots and the closing lines on stdout."""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from pathlib import Path

from benchmarks.build_time import BuildResult
from benchmarks.common import Plan, summarise
from benchmarks.context_use import StrategyResult
from benchmarks.corpus import PROFILES
from benchmarks.discord_shards import ShardScaling, render_shards
from benchmarks.images import HEIC_QUALITY, HEIC_TILE_PX, PHOTO_QUALITY, ImageResult
from benchmarks.memory_recall import RecallResult
from benchmarks.memory_use import MemoryResult
from benchmarks.overhead import PROBED, RATIO_PAIR, Level, Sample
from benchmarks.profile import ProfileResult
from benchmarks.slack_path import SlackResult
from benchmarks.steady import SteadyResult
from benchmarks.without_sdk import WhatIf

__all__ = ["Results", "key_ratios", "render", "write_plots"]

RATIO_TARGET = 1.02
CORE_P99_TARGET_MS = 5.0
# The busiest level is read as CPU-bound when even the bare client takes this much over the model.
SATURATED_SHARE = 1.05
PHOTO_MS_TARGET = 40.0
PHOTO_BYTES_TARGET = 0.1
HEIC_RATIO_TARGET = 1.5  # a 12 MP HEIC's time ÷ the same photo's as JPEG
BUDGET_USE_TARGET = 0.90
FIRST_FACT_TARGET = 0.90  # with summaries, history over budget
BUILD_MS_TARGET = 2.0
BUILD_TARGET_TURNS = 1000
RSS_TARGET_MB = 200.0
OVERHEAD_PLOT = "plots/overhead_vs_concurrency.png"
BUILD_PLOT = "plots/build_time_vs_memory.png"


@dataclass
class Results:
    """Everything one run measured."""

    plan: Plan
    machine: dict[str, str]
    load_before: str = ""
    load_after: str = ""
    seconds: float = 0.0
    levels: list[Level] = field(default_factory=list)
    slack: SlackResult | None = None
    profile: ProfileResult | None = None
    sdk_request_us: float | None = None  # CPU of one chat request through the SDK alone
    steady: SteadyResult | None = None
    # the what-if: Glimpse's chat request as one raw aiohttp POST (benchmarks/without_sdk.py)
    what_if: WhatIf | None = None
    image_core: int | None = None
    images: list[ImageResult] = field(default_factory=list)
    context: list[StrategyResult] = field(default_factory=list)
    recall: list[RecallResult] = field(default_factory=list)  # P3's memory columns
    build: list[BuildResult] = field(default_factory=list)
    memory: list[MemoryResult] = field(default_factory=list)
    shards: ShardScaling | None = None  # P6: answers per second by Discord shard processes


# --- numbers ---


def _p50(level: Level, approach: str) -> float:
    return summarise([s.seconds for s in level.samples[approach]]).p50


def ratio(level: Level, approach: str) -> float:
    """Median time per answer ÷ the fake model's median time (bare client), same concurrency."""
    return _p50(level, approach) / _p50(level, "bare")


def departure_p50(level: Level, approach: str) -> float | None:
    """Median seconds after its round's start at which a request left (None: not recorded)."""
    left = level.departures[approach]
    return summarise(left).p50 if left else None


def _probed(level: Level, approach: str) -> list[Sample]:
    """`approach`'s samples, which must come from rounds under the probe: no others have a breakdown."""
    if approach not in PROBED:
        raise ValueError(f"{approach!r} rounds run without the probe: they have no breakdown")
    return level.samples[approach]


def core_ms(level: Level, approach: str = "probed") -> tuple[float, float]:
    """A bot's own time per answer (outside the SDK and stream decoding), p50 and p99, in ms."""
    summary = summarise([1000 * s.core_seconds for s in _probed(level, approach)])
    return summary.p50, summary.p99


def decode_ms(level: Level) -> tuple[float, float]:
    """Glimpse's time per answer decoding the model's event stream, p50 and p99, in ms."""
    summary = summarise([1000 * s.decode_seconds for s in _probed(level, "probed")])
    return summary.p50, summary.p99


def build_ms(level: Level) -> float:
    """Glimpse's median time per answer from `handle` to the SDK call, in ms."""
    return summarise([1000 * s.build_seconds for s in _probed(level, "probed")]).p50


def steady_ratio(steady: SteadyResult) -> float:
    """Glimpse's median time per answer ÷ the bare client's, both at the same steady load."""
    return summarise(steady.seconds["glimpse"]).p50 / summarise(steady.seconds["bare"]).p50


def slack_ratio(slack: SlackResult) -> float:
    return summarise(slack.slack).p50 / summarise([s.seconds for s in slack.bare]).p50


def _verdict(met: bool) -> str:
    return "met" if met else "**missed**"


def _pct(value: float) -> str:
    return "n/a" if math.isnan(value) else f"{value:.1%}"


def _fmt(value: float, digits: int = 2) -> str:
    return "n/a" if math.isnan(value) else f"{value:,.{digits}f}"


def _table(header: list[str], rows: list[list[str]]) -> str:
    lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    lines += ["| " + " | ".join(row) + " |" for row in rows]
    return "\n".join(lines)


def _glimpse_result(results: Results) -> StrategyResult | None:
    return next((r for r in results.context if r.name == "glimpse"), None)


def _build_at(results: Results, turns: int) -> BuildResult | None:
    return next((b for b in results.build if b.turns == turns), None)


def _memory(results: Results, kind: str) -> MemoryResult | None:
    return next((m for m in results.memory if m.kind == kind), None)


# --- sections ---


def _summary(results: Results) -> str:
    rows: list[list[str]] = []
    if results.levels:
        top = results.levels[-1]
        worst = max(results.levels, key=lambda level: core_ms(level)[1])
        worst_p99 = core_ms(worst)[1]
        usual_p99 = max(core_ms(level, "usual")[1] for level in results.levels)
        rows.append(
            [
                f"P1 time per answer ÷ model time, {top.concurrency:,} concurrent, all starting at once",
                f"≤ {RATIO_TARGET}",
                _fmt(ratio(top, "glimpse"), 3),
                _fmt(ratio(top, "usual")),
                _verdict(ratio(top, "glimpse") <= RATIO_TARGET),
            ]
        )
        if results.steady is not None:
            steady = steady_ratio(results.steady)
            rows.append(
                [
                    f"P1 time per answer ÷ model time, {results.steady.concurrency:,} concurrent, "
                    "steady (each conversation asks again once answered)",
                    f"≤ {RATIO_TARGET}",
                    _fmt(steady, 3),
                    "n/a",
                    _verdict(steady <= RATIO_TARGET),
                ]
            )
        rows.append(
            [
                "P1 p99 core overhead, no images (worst level; stream decoding apart (2))",
                f"≤ {CORE_P99_TARGET_MS:g} ms",
                f"{_fmt(worst_p99)} ms at {worst.concurrency:,} concurrent "
                f"(decoding p99 {_fmt(decode_ms(worst)[1])} ms)",
                f"{_fmt(usual_p99)} ms (1)",
                _verdict(worst_p99 <= CORE_P99_TARGET_MS),
            ]
        )
    if results.slack is not None and results.slack.measured:
        rows.append(
            [
                f"P1 Slack HTTP, signed requests, {results.slack.concurrency} concurrent",
                "(no target)",
                _fmt(slack_ratio(results.slack)),
                "n/a",
                "—",
            ]
        )
    rows += _image_summary(results) + _context_summary(results) + _recall_summary(results)
    rows += _build_summary(results)
    rows += _memory_summary(results)
    table = _table(["measure", "target", "Glimpse", "usual approach", "verdict"], rows)
    return table + (
        "\n\n(1) The usual bot's time outside the SDK includes building a new client per message "
        "and waiting for its own edit tasks, which its global throttle serialises."
        "\n\n(2) Glimpse reads the model's server-sent events itself (`bot/sse.py` and "
        "`bot/chunks.py`, one call per network read) instead of through the SDK's per-event "
        "decoder, which cost several times the CPU; that decoding is what the SDK's time included "
        "before, so it is timed apart, as its own column in the P1 table, rather than hidden in "
        "either figure."
        if results.levels
        else ""
    )


def _heic(results: Results) -> ImageResult | None:
    return next((i for i in results.images if i.twin_ratio is not None), None)


def _heic_summary(results: Results) -> list[list[str]]:
    heic = _heic(results)
    if heic is None or heic.twin_ratio is None or heic.twin_ms is None:
        return []
    megapixels = heic.size[0] * heic.size[1] / 1e6
    return [
        [
            f"P2 {megapixels:.0f} MP HEIC photo ÷ the same photo as JPEG, through the pipeline, "
            "one core (median)",
            f"≤ {HEIC_RATIO_TARGET:g}",
            f"{_fmt(heic.twin_ratio)} ({_fmt(heic.median_ms, 0)} ms ÷ {_fmt(heic.twin_ms, 1)} ms)",
            "n/a",
            _verdict(heic.twin_ratio <= HEIC_RATIO_TARGET),
        ],
        *_floor_summary(results, heic),
    ]


def _floor_summary(results: Results, heic: ImageResult) -> list[list[str]]:
    """A photo's prepare_image ÷ its own decode floor, the HEIC beside the JPEG photo."""
    if heic.floor_ratio is None or heic.floor_cpu_ratio is None or heic.floor_wall_ms is None:
        return []
    floor_ms = heic.floor_ms if heic.floor_ms is not None else math.nan
    cells = [
        f"HEIC {_fmt(heic.floor_ratio)} ({_fmt(heic.median_ms, 0)} ms ÷ "
        f"{_fmt(heic.floor_wall_ms, 0)} ms; CPU {_fmt(heic.floor_cpu_ratio)}: "
        f"{_fmt(heic.cpu_ms, 0)} ÷ {_fmt(floor_ms, 0)} ms)"
    ]
    photo = next((i for i in results.images if i.name.endswith(".jpg")), None)
    if photo is not None and photo.floor_ratio is not None and photo.floor_cpu_ratio is not None:
        cells.append(
            f"JPEG {_fmt(photo.floor_ratio)} ({_fmt(photo.median_ms, 1)} ms ÷ "
            f"{_fmt(photo.floor_wall_ms or math.nan, 1)} ms; CPU {_fmt(photo.floor_cpu_ratio)})"
        )
    return [
        [
            f"P2 {heic.size[0] * heic.size[1] / 1e6:.0f} MP photo through the pipeline ÷ its "
            "decode floor (HEIC: libheif's decode alone; JPEG: libjpeg-turbo at 1/8 scale), same "
            "runs, one core (median)",
            "(judged against the floor)",
            "; ".join(cells),
            "n/a",
            "—",
        ]
    ]


def _image_summary(results: Results) -> list[list[str]]:
    photo = next((i for i in results.images if i.name.endswith(".jpg")), None)
    if photo is None:
        return _heic_summary(results)
    megapixels = photo.size[0] * photo.size[1] / 1e6
    return [
        [
            f"P2 {megapixels:.0f} MP JPEG photo through the pipeline, one core (median)",
            f"≤ {PHOTO_MS_TARGET:g} ms",
            f"{_fmt(photo.median_ms, 1)} ms",
            f"{_fmt(photo.raw_encode_ms, 1)} ms (base64 only)",
            _verdict(photo.median_ms <= PHOTO_MS_TARGET),
        ],
        [
            "P2 photo bytes sent ÷ raw file base64",
            f"≤ {PHOTO_BYTES_TARGET}",
            _fmt(photo.bytes_ratio, 3),
            "1.000",
            _verdict(photo.bytes_ratio <= PHOTO_BYTES_TARGET),
        ],
        *_heic_summary(results),
    ]


def _context_summary(results: Results) -> list[list[str]]:
    glimpse = _glimpse_result(results)
    if glimpse is None:
        return []
    others = [r for r in results.context if r.name != "glimpse"]
    share = glimpse.median_share(only_exceeding=True)
    return [
        [
            f"P3 overflows of the 4,096 context ({len(glimpse.prompt_tokens)} conversations)",
            "0",
            str(glimpse.overflows),
            ", ".join(f"{r.overflows} ({r.name})" for r in others),
            _verdict(glimpse.overflows == 0),
        ],
        [
            "P3 median share of the budget used, history over budget",
            f"≥ {BUDGET_USE_TARGET:.0%}",
            f"{share:.1%}",
            ", ".join(f"{r.median_share(only_exceeding=True):.1%} ({r.name})" for r in others),
            _verdict(share >= BUDGET_USE_TARGET),
        ],
    ]


def _recall(results: Results, name: str) -> RecallResult | None:
    return next((r for r in results.recall if r.variant.name == name), None)


def _recall_summary(results: Results) -> list[list[str]]:
    with_, without = _recall(results, "summaries"), _recall(results, "no summaries")
    if with_ is None or without is None:
        return []
    first = with_.first_share(only_exceeding=True)
    exceeding = sum(c.exceeds for c in with_.conversations)
    return [
        [
            "P3 first message's fact still in the last request, history over budget "
            f"({exceeding} of {len(with_.conversations)} conversations replayed end to end), "
            "with summaries",
            f"≥ {FIRST_FACT_TARGET:.0%}",
            _pct(first),
            f"{_pct(without.first_share(only_exceeding=True))} (without summaries)",
            _verdict(first >= FIRST_FACT_TARGET),
        ],
        [
            "P3 all earlier messages' facts still in the last request, history over budget",
            "(no target)",
            _pct(with_.fact_share(only_exceeding=True)),
            f"{_pct(without.fact_share(only_exceeding=True))} (without summaries)",
            "—",
        ],
        [
            f"P3 overflows with summaries ({with_.answers:,} answer requests, "
            f"{with_.summary_calls:,} summary requests)",
            "0",
            str(with_.overflows),
            "n/a",
            _verdict(with_.overflows == 0 and with_.failed == 0),
        ],
        [
            "P3 summary calls' tokens per 100 answers (prompt + completion)",
            "(no target)",
            f"{_fmt(with_.per_100_answers(with_.summary_tokens), 0)} "
            f"(${_fmt(with_.summary_usd_per_100(), 4)})",
            f"answers' own: {_fmt(without.per_100_answers(without.answer_tokens), 0)} without "
            f"summaries, {_fmt(with_.per_100_answers(with_.answer_tokens), 0)} with",
            "—",
        ],
    ]


def _build_summary(results: Results) -> list[list[str]]:
    at = _build_at(results, BUILD_TARGET_TURNS)
    if at is None:
        return []
    return [
        [
            f"P4 request build time at {BUILD_TARGET_TURNS:,} turns (median)",
            f"≤ {BUILD_MS_TARGET:g} ms, flat",
            f"{_fmt(at.glimpse.p50, 3)} ms (SQLite: {_fmt(at.glimpse_sqlite.p50, 3)} ms)",
            f"{_fmt(at.recount.p50, 1)} ms (recount every turn)",
            _verdict(at.glimpse.p50 <= BUILD_MS_TARGET),
        ]
    ]


def _memory_summary(results: Results) -> list[list[str]]:
    glimpse, usual = _memory(results, "glimpse"), _memory(results, "usual")
    if glimpse is None:
        return []
    return [
        [
            f"P5 RSS, {glimpse.conversations:,} live conversations × {glimpse.turns_each} turns",
            f"≤ {RSS_TARGET_MB:g} MB",
            f"{_fmt(glimpse.full_mb, 0)} MB",
            f"{_fmt(usual.full_mb, 0)} MB" if usual else "n/a",
            _verdict(glimpse.full_mb <= RSS_TARGET_MB),
        ]
    ]


def _p1_section(results: Results) -> str:
    rows = []
    for level in results.levels:
        p50, p99 = core_ms(level)
        glimpse = summarise([s.seconds for s in level.samples["glimpse"]])
        rows.append(
            [
                f"{level.concurrency:,}",
                str(len(level.samples["glimpse"])),
                _fmt(_p50(level, "bare")),
                f"{_fmt(glimpse.p50)} / {_fmt(glimpse.p99)}",
                f"**{_fmt(ratio(level, 'glimpse'))}**",
                _fmt(ratio(level, "sdk")),
                f"{_fmt(_p50(level, 'usual'))} ({_fmt(ratio(level, 'usual'))})",
                f"{_fmt(p50)} / {_fmt(p99)}",
                "{} / {}".format(*(_fmt(v) for v in decode_ms(level))),
                "{} / {}".format(*(_fmt(v) for v in core_ms(level, "usual"))),
                _fmt(build_ms(level), 2),
                _departures_cell(level),
                _cpu_cell(level),
                _gc_cell(level),
            ]
        )
    header = [
        "concurrent",
        "answers each",
        "model s (bare client, p50)",
        "Glimpse s p50 / p99",
        "Glimpse ÷ model",
        "SDK alone ÷ model",
        "usual s p50 (÷ model)",
        "Glimpse core ms p50 / p99",
        "Glimpse stream decoding ms p50 / p99",
        "usual core ms p50 / p99",
        "Glimpse request build ms p50",
        "request left, s after the start p50: bare / Glimpse",
        "CPU ms per answer: bare / SDK / Glimpse (probed rounds) / usual",
        "GC runs during Glimpse rounds (≥ 1 ms, longest ms)",
    ]
    return (
        _table(header, rows)
        + "\n\n"
        + _saturation_note(results)
        + _steady_lines(results)
        + _without_sdk_lines(results)
        + _slack_lines(results)
        + _profile_lines(results)
    )


def _saturation_note(results: Results) -> str:
    """How to read the busiest level when even the bare client cannot keep the model's pace."""
    top = results.levels[-1] if results.levels else None
    shape = results.plan.shape
    if top is None or _p50(top, "bare") < SATURATED_SHARE * shape.seconds:
        return ""
    chunks = top.concurrency * shape.tokens
    bare_cpu = top.cpu_ms_per_answer("bare")
    fake_cpu = top.fake_cpu_per_round("bare")
    fake = (
        ""
        if fake_cpu is None
        else f"; its process used {_fmt(fake_cpu)} s of CPU per round of the bare client's answers"
    )
    return (
        f"At {top.concurrency:,} concurrent answers neither process has CPU to spare: "
        f"{chunks:,} chunks per round, {chunks / shape.seconds:,.0f} a second. The fake model "
        f"writes them from one pacer task (`benchmarks/paced.py`){fake}. Even the bare client, "
        f"which parses nothing, needs {_fmt(bare_cpu, 1)} ms of CPU per answer, "
        f"{top.concurrency * bare_cpu / 1000:.1f} s per round, so its answers take "
        f"{_fmt(_p50(top, 'bare'))} s instead of {shape.seconds:g} s. "
        f"A client that falls behind reads several chunks per network read, so the ratio at this "
        f"level compares how much CPU each client needs per answer more than what either adds to "
        f"the model's latency.\n\n"
    )


def _departures_cell(level: Level) -> str:
    bare, glimpse = (departure_p50(level, a) for a in RATIO_PAIR)
    if bare is None or glimpse is None:
        return "n/a"
    return f"{_fmt(bare, 3)} / {_fmt(glimpse, 3)}"


def _steady_lines(results: Results) -> str:
    steady, shape = results.steady, results.plan.shape
    if steady is None:
        return ""
    glimpse, bare = (summarise(steady.seconds[a]) for a in ("glimpse", "bare"))
    return (
        f"**Steady load.** {steady.concurrency:,} conversations, their first questions spread "
        f"over the model's {shape.seconds:g} s, each asking again as soon as it is answered: "
        f"{steady.concurrency:,} answers are always streaming "
        f"({steady.concurrency / shape.seconds:,.0f} new ones a second), and no burst of "
        f"requests is built at once. Over the {glimpse.n:,} Glimpse and "
        f"{bare.n:,} bare-client answers started once every conversation was going: "
        f"Glimpse p50 {_fmt(glimpse.p50, 3)} s (p99 {_fmt(glimpse.p99, 3)}), bare client p50 "
        f"{_fmt(bare.p50, 3)} s (p99 {_fmt(bare.p99, 3)}): **{_fmt(steady_ratio(steady), 3)}×** "
        f"the model's time. CPU per answer: bare {_fmt(steady.cpu_ms_per_answer('bare'), 1)} ms, "
        f"Glimpse {_fmt(steady.cpu_ms_per_answer('glimpse'), 1)} ms.\n\n"
    )


def _what_if_ratios(what_if: WhatIf) -> tuple[str, str, str, str]:
    """All at once without and with the SDK, then steady without and with it, formatted."""
    return (
        _fmt(ratio(what_if.without_sdk, "glimpse"), 3),
        _fmt(ratio(what_if.with_sdk, "glimpse"), 3),
        _fmt(steady_ratio(what_if.without_sdk_steady), 3),
        _fmt(steady_ratio(what_if.with_sdk_steady), 3),
    )


def _what_if_split(what_if: WhatIf) -> tuple[str, str, str]:
    """Glimpse's time over the model's, all at once, in three parts from the same rotation:
    reading the stream (the reading client's), Glimpse's own steps, the SDK's request path."""
    reader = ratio(what_if.reader, "glimpse")
    without = ratio(what_if.without_sdk, "glimpse")
    with_sdk = ratio(what_if.with_sdk, "glimpse")
    return _fmt(reader - 1, 3), _fmt(without - reader, 3), _fmt(with_sdk - without, 3)


def _without_sdk_lines(results: Results) -> str:
    what_if = results.what_if
    if what_if is None:
        return ""
    without, with_sdk, steady_without, steady_with = _what_if_ratios(what_if)
    reading, own, sdk = _what_if_split(what_if)
    left = departure_p50(what_if.without_sdk, "glimpse")
    return (
        f"**What the openai SDK's request path costs.** Once the rounds above are done, the same "
        f"loads again, their rounds alternating between Glimpse as it runs and Glimpse with its "
        f"chat request sent as one raw aiohttp POST instead of through the SDK (`without_sdk.py`: "
        f"a what-if patched in for the benchmark, with no retries or error mapping); everything "
        f"else, from `handle` to the sink, as in production. "
        f"{what_if.without_sdk.concurrency:,} all at once: **{without}×** the model's time "
        f"without the SDK (median request left {_fmt(left or math.nan, 3)} s after the start), "
        f"{with_sdk}× with it; steady {what_if.without_sdk_steady.concurrency:,}: "
        f"**{steady_without}×** without, {steady_with}× with it. "
        f"In the same rotation, a client that only reads the stream and decodes every chunk "
        f"with Glimpse's own decoders, then does nothing else (`read_answer`, the least any bot "
        f"must do): **{_fmt(ratio(what_if.reader, 'glimpse'), 3)}×**. So of Glimpse's time "
        f"above the model's, all at once, reading the stream is {reading}, Glimpse's own steps "
        f"{own} and the SDK's request path {sdk}.\n\n"
    )


def _without_sdk_words(results: Results) -> str:
    if results.what_if is None:
        return ""
    without, with_sdk, steady_without, steady_with = _what_if_ratios(results.what_if)
    reading, own, sdk = _what_if_split(results.what_if)
    return (
        f" With the chat request sent by raw aiohttp instead of the SDK (the what-if below the P1 "
        f"table, its rounds alternating with Glimpse's own) the same loads give {without} all at "
        f"once and {steady_without} steady, against {with_sdk} and {steady_with} with it. "
        f"Of the time above the model's all at once, reading the stream (what any bot must do) "
        f"is {reading}, Glimpse's own steps {own}, the SDK's request path {sdk}."
    )


def _cpu_cell(level: Level) -> str:
    """CPU ms per answer of each approach, Glimpse's rounds under the probe in brackets."""
    cpu = {a: _fmt(level.cpu_ms_per_answer(a), 1) for a in level.cpu_seconds}
    return f"{cpu['bare']} / {cpu['sdk']} / {cpu['glimpse']} ({cpu['probed']}) / {cpu['usual']}"


def _gc_cell(level: Level) -> str:
    pauses = level.gc_pauses_ms["glimpse"]
    long = sum(p >= 1.0 for p in pauses)
    return f"{len(pauses)} ({long}, {_fmt(max(pauses, default=math.nan), 1)})"


def _slack_lines(results: Results) -> str:
    slack = results.slack
    if slack is None:
        return ""
    if not slack.measured:
        return f"Slack HTTP path: {slack.reason}.\n\n"
    seconds = summarise(slack.slack)
    bare = summarise([s.seconds for s in slack.bare])
    return (
        f"Through the Slack adapter ({slack.concurrency} concurrent signed `app_mention` events "
        f"POSTed to `/slack/events`, answers edited into the fake Slack): from POST to the "
        f"complete answer in Slack p50 {_fmt(seconds.p50)} s, p99 {_fmt(seconds.p99)} s; "
        f"bare client beside it p50 {_fmt(bare.p50)} s: **{_fmt(slack_ratio(slack))}×** the model's time.\n\n"
    )


def _profile_lines(results: Results) -> str:
    profile = results.profile
    if profile is None or profile.total <= 0:
        return ""
    rows = [
        [layer, f"{seconds:.2f}", f"{seconds / profile.total:.0%}"]
        for layer, seconds in profile.seconds.items()
        if seconds / profile.total >= 0.005
    ]
    intro = (
        f"Where the bot process's time goes, {profile.answers} concurrent Glimpse answers "
        "under pyinstrument (1 ms samples, self time grouped by layer):\n\n"
    )
    return intro + _table(["layer", "sampled s", "share"], rows) + "\n\n"


def _p2_section(results: Results) -> str:
    rows = [
        [
            image.name,
            f"{image.size[0]}×{image.size[1]}, {image.file_bytes / 1e6:.2f} MB",
            f"{image.sent_size[0]}×{image.sent_size[1]} {image.sent_mime}",
            f"**{_fmt(image.median_ms, 1)}** (p90 {_fmt(image.p90_ms, 1)}, CPU {_fmt(image.cpu_ms, 1)})",
            f"{_fmt(image.decode_ms, 1)} / {_fmt(image.decode_image_ms - image.decode_ms, 1)} / {_fmt(image.encode_ms, 1)}",
            _fmt(image.floor_ms, 1) if image.floor_ms is not None else "n/a",
            f"{image.sent_url_chars:,}",
            f"{image.raw_url_chars:,}",
            f"**{_fmt(image.bytes_ratio, 3)}**",
        ]
        for image in results.images
    ]
    header = [
        "image",
        "file",
        "sent as",
        "prepare_image ms",
        "CPU ms: decode / orient+downscale / encode",
        "floor: least decode, CPU ms (JPEG: 1/8 scale; HEIC: libheif alone)",
        "data: URL chars sent",
        "raw file as data: URL",
        "sent ÷ raw",
    ]
    core = f"core {results.image_core}" if results.image_core is not None else "one core"
    return (
        f"Measured in a child process pinned to {core}, {results.images[0].runs if results.images else 0} runs after a warm-up.\n\n"
        + _table(header, rows)
        + _heic_lines(results)
    )


def _heic_lines(results: Results) -> str:
    heic = _heic(results)
    if heic is None or heic.twin_ms is None or heic.twin_cpu_ms is None or heic.twin_bytes is None:
        return ""
    ratio = heic.median_ms / heic.twin_ms
    return (
        f"\n\n{heic.name} is the photo's scene at {heic.size[0]}×{heic.size[1]}, written like an "
        f"iPhone's HEIC (x265 at quality {HEIC_QUALITY}, in {HEIC_TILE_PX}-px grid tiles); its "
        f"twin is the same pixels as a {heic.twin_bytes / 1e6:.2f} MB JPEG (quality "
        f"{PHOTO_QUALITY}). Timed in turns through "
        f"prepare_image: **{_fmt(heic.median_ms, 1)} ms against {_fmt(heic.twin_ms, 1)} ms, "
        f"{_fmt(ratio)}×** (CPU {_fmt(heic.cpu_ms, 1)} against "
        f"{_fmt(heic.twin_cpu_ms, 1)} ms, {_fmt(heic.cpu_ms / heic.twin_cpu_ms)}×)."
        + _floor_lines(heic)
    )


def _floor_lines(heic: ImageResult) -> str:
    if heic.floor_ms is None or heic.floor_wall_ms is None or heic.floor_ratio is None:
        return ""
    return (
        f" In the same turns, libheif's decode alone (to RGB, no Pillow image made) took "
        f"{_fmt(heic.floor_wall_ms, 1)} ms ({_fmt(heic.floor_ms, 1)} ms of CPU): the whole "
        f"prepare is **{_fmt(heic.floor_ratio)}× its decode floor** (CPU "
        f"{_fmt(heic.floor_cpu_ratio or math.nan)}×), Glimpse's own work "
        f"{_fmt(_above_floor(heic), 1)} ms of CPU above it (the median of each turn's "
        f"difference)."
    )


def _p3_section(results: Results) -> str:
    rows = [
        [
            r.name,
            f"{r.median_share():.1%}",
            f"{r.median_share(only_exceeding=True):.1%}",
            str(r.overflows),
            str(r.rejected),
        ]
        for r in results.context
    ]
    exceeding = sum(results.context[0].exceeds) if results.context else 0
    total = len(results.context[0].prompt_tokens) if results.context else 0
    budget = results.context[0].budget if results.context else 0
    intro = (
        f"{total} conversations ({', '.join(PROFILES)}), {exceeding} of them with more history "
        f"than the budget of {budget:,} prompt tokens (4,096 − 1,024 reserved answer − 64 margin). "
        "Every request is counted with the real Llama 3 tokenizer. Overflow: the prompt plus the "
        "1,024 reserved answer tokens exceed 4,096; rejected: the prompt alone does.\n\n"
    )
    header = [
        "strategy",
        "median budget use",
        "median use, history over budget",
        "overflows",
        "rejected",
    ]
    text = (
        (intro + _table(header, rows) + "\n\n" + _per_profile(results)) if results.context else ""
    )
    return text + _recall_section(results)


def _recall_section(results: Results) -> str:
    if not results.recall:
        return ""
    first = results.recall[0]
    facts = sum(c.planted for c in first.conversations)
    exceeding = sum(c.exceeds for c in first.conversations)
    replayed = len(first.conversations)
    which = (
        f"The same {replayed} conversations"
        if results.context and len(results.context[0].prompt_tokens) == replayed
        else f"The first {replayed} conversations of the same corpus"
    )
    intro = (
        f"\n\n### What the last request still holds, with summaries and without\n\n"
        f"{which}, replayed end to end through `Conversations.handle` (memory store, the "
        "openai SDK, the fake OpenRouter in this process, one conversation at a time): the user "
        "messages in order, each earlier one "
        f"opening with a marked fact (`fact-17=teal`; {facts:,} facts in all), each answered with "
        "the corpus's own reply. Asked for a summary (the non-streamed call Glimpse makes after an "
        "answer once the next request would leave turns out), the fake keeps every marked fact it "
        "is shown and nothing else, so these figures measure what Glimpse sends and when, not a "
        "model's summarising: a real model condenses, and may lose what the fake keeps. Scored: "
        "the request of each conversation's last message; a fact counts if it appears anywhere in "
        "it, verbatim in a turn or in the summary inside the system message. History over budget: "
        f"the whole conversation as sent is over the budget ({exceeding} conversations). "
        '"Summaries" sends the next message once the summary is stored '
        '(`await conversations.idle()`); "next message at once" sends it as soon as the answer '
        "is delivered, so the summary call (answered at once by the fake) races it, and that "
        "message's request goes out without the new summary. Tokens are counted with the Llama 3 "
        "tokenizer: answer requests as the context builder counted them, summary requests as "
        "sent; completions are the corpus's replies and the fake's summaries. Overflow: an answer "
        "request over the budget (or over 4,096 with the reserved answer), or a summary request "
        "whose prompt plus its `max_tokens` exceed 4,096.\n\n"
    )
    header = [
        "Glimpse",
        "facts kept",
        "facts kept, history over budget",
        "first fact kept",
        "first fact kept, history over budget",
        "facts kept only by the summary",
        "summary calls per 100 answers",
        "summary tokens per 100 answers (prompt + completion)",
        "answer tokens per 100 answers (prompt + completion)",
        "overflows (answer / summary requests)",
        "run s",
    ]
    rows = [
        [
            r.variant.name,
            _pct(r.fact_share()),
            _pct(r.fact_share(only_exceeding=True)),
            _pct(r.first_share()),
            _pct(r.first_share(only_exceeding=True)),
            _pct(r.summary_share()),
            _fmt(r.per_100_answers(r.summary_calls), 1),
            f"{_fmt(r.per_100_answers(r.summary_prompt_tokens), 0)} + "
            f"{_fmt(r.per_100_answers(r.summary_completion_tokens), 0)}",
            f"{_fmt(r.per_100_answers(r.answer_prompt_tokens), 0)} + "
            f"{_fmt(r.per_100_answers(r.answer_completion_tokens), 0)}",
            f"{r.answer_overflows} / {r.summary_overflows}"
            + (f" ({r.failed} not answered)" if r.failed else ""),
            f"{r.seconds:.0f}",
        ]
        for r in results.recall
    ]
    return intro + _table(header, rows) + _recall_notes(results)


def _recall_notes(results: Results) -> str:
    with_, without = _recall(results, "summaries"), _recall(results, "no summaries")
    if with_ is None or without is None or not with_.summary_calls:
        return ""
    per_100 = with_.per_100_answers
    average = with_.summary_completion_tokens / with_.summary_calls
    text = (
        f"\n\n**Cost.** With summaries, every 100 answers bring "
        f"{_fmt(per_100(with_.summary_calls), 1)} summary calls: "
        f"{_fmt(per_100(with_.summary_prompt_tokens), 0)} prompt and "
        f"{_fmt(per_100(with_.summary_completion_tokens), 0)} completion tokens, beside the "
        f"answers' own {_fmt(without.per_100_answers(without.answer_tokens), 0)} tokens without "
        f"summaries and {_fmt(per_100(with_.answer_tokens), 0)} with them (a fold keeps only half "
        "the room verbatim, so the requests after it are shorter until it fills again). At the "
        f"model's prices, per 100 answers: ${_fmt(without.answer_usd_per_100(), 3)} without "
        f"summaries; ${_fmt(with_.answer_usd_per_100(), 3)} for the answers plus "
        f"${_fmt(with_.summary_usd_per_100(), 3)} for the summary calls with them. The fake's "
        f"summaries are only the list of facts ({average:.0f} tokens on average); a real one may "
        f"run to its cap of {with_.summary_cap} tokens. Were every summary at its cap, the "
        f"summary completions would be at most {_fmt(per_100(with_.summary_max_tokens), 0)} "
        f"tokens per 100 answers, and answers and summary calls together would cost at most "
        f"${_fmt(with_.at_cap_usd_per_100(), 3)} per 100 answers (each request carrying a summary "
        "at most that much longer)."
    )
    misses = with_.misses()
    missed, crowded = with_.first_misses_crowded(only_exceeding=True)
    text += (
        f"\n\n**What is lost with summaries** ({sum(misses.values()):,} facts of "
        f"{sum(c.planted for c in with_.conversations):,}): {misses['crowded out']:,} in "
        "conversations whose last request left out turns no summary covered (a last message so "
        "long that it crowds out the newest turns, which no summary holds yet because until then "
        f"they fit); {misses['summary at its cap']:,} cut from a summary at its cap of "
        f"{with_.summary_cap} tokens (the fake's list of facts grew past it); "
        f"{misses['other']:,} otherwise. The first message's fact is missing in {missed} "
        f"conversations over budget, {crowded} of them crowded out that way."
    )
    at_once = _recall(results, "summaries, next message at once")
    if at_once is not None:
        text += (
            f" Sending each next message at once keeps {_pct(at_once.fact_share())} of the facts "
            f"and {_pct(at_once.first_share(only_exceeding=True))} of the first ones (over budget), "
            f"against {_pct(with_.fact_share())} and "
            f"{_pct(with_.first_share(only_exceeding=True))} when the summary is waited for: the "
            "difference is the lag, a last message sent while the summary it needed was still "
            "being written."
        )
    return text


def _per_profile(results: Results) -> str:
    rows = []
    for strategy in results.context:
        counts = {p: 0 for p in PROFILES}
        for index, tokens in enumerate(strategy.prompt_tokens):
            if tokens + strategy.max_output_tokens > 4096:
                counts[PROFILES[index % len(PROFILES)]] += 1
        rows.append([strategy.name, *(str(counts[p]) for p in PROFILES)])
    return "Overflows by kind of conversation:\n\n" + _table(["strategy", *PROFILES], rows)


def _p4_section(results: Results) -> str:
    rows = [
        [
            f"{b.turns:,}",
            f"{_fmt(b.glimpse.p50, 3)} / {_fmt(b.glimpse.p99, 3)}",
            f"{_fmt(b.glimpse_sqlite.p50, 3)} / {_fmt(b.glimpse_sqlite.p99, 3)}",
            f"{_fmt(b.recount.p50, 2)} (n={b.recount.n})",
        ]
        for b in results.build
    ]
    header = [
        "turns in memory",
        "Glimpse ms p50 / p99 (memory store)",
        "Glimpse ms p50 / p99 (SQLite store)",
        "recount every turn ms p50",
    ]
    return (
        "Load the newest `history_turns` (200) turns and build the budgeted request, the new "
        "message counted, as `Conversations` does; the baseline loads every turn and counts "
        "each one again.\n\n" + _table(header, rows)
    )


def _p5_section(results: Results) -> str:
    rows = [
        [
            m.kind,
            f"{m.conversations:,} × {m.turns_each}",
            _fmt(m.empty_mb, 1),
            f"**{_fmt(m.full_mb, 1)}**",
            _fmt(m.per_conversation_kb, 1),
        ]
        for m in results.memory
    ]
    header = [
        "process",
        "conversations × turns",
        "RSS empty MB",
        "RSS full MB",
        "KB per conversation",
    ]
    return (
        "A fresh child process per row. Glimpse: memory store, 18 earlier turns stored per "
        "conversation, then one real answer each through `Conversations.handle` (20 turns). "
        "Usual: the same text as message dicts in its history.\n\n" + _table(header, rows)
    )


def _limits(results: Results) -> str:
    notes = []
    if results.levels:
        top = results.levels[-1]
        if ratio(top, "glimpse") > RATIO_TARGET:
            notes.append(_p1_note(results, top))
        notes += _core_notes(results)
    if results.steady is not None and steady_ratio(results.steady) > RATIO_TARGET:
        steady = results.steady
        notes.append(
            f"- **P1 at {steady.concurrency:,} concurrent, steady, missed** "
            f"({_fmt(steady_ratio(steady), 3)} vs ≤ {RATIO_TARGET}). No burst here: every answer "
            f"waits for the one core that reads all {steady.concurrency:,} streams, and Glimpse "
            f"keeps it busier, {_fmt(steady.cpu_ms_per_answer('glimpse'), 1)} ms of CPU per "
            f"answer against the bare client's {_fmt(steady.cpu_ms_per_answer('bare'), 1)} ms "
            f"(the request through the SDK, then decoding {results.plan.shape.tokens} chunks), "
            f"so each chunk waits a little longer for its turn." + _without_sdk_words(results)
        )
    photo = next((i for i in results.images if i.name.endswith(".jpg")), None)
    if photo is not None and photo.median_ms > PHOTO_MS_TARGET:
        notes.append(
            f"- **P2 photo time missed** ({_fmt(photo.median_ms, 1)} ms vs ≤ {PHOTO_MS_TARGET:g} ms). "
            f"Decoding the {photo.file_bytes / 1e6:.1f} MB JPEG takes {_fmt(photo.decode_ms, 1)} ms "
            f"of CPU at the DCT-scaled draft Glimpse asks libjpeg-turbo for "
            f"({photo.sent_size[0]}×{photo.sent_size[1]}, sent without resampling): every "
            f"coefficient is still entropy-decoded, so even a 1/8-scale decode costs nearly as "
            f"much{_floor_words(photo)}; the re-encode takes {_fmt(photo.encode_ms, 1)} ms."
        )
    heic = _heic(results)
    if heic is not None and heic.twin_ratio is not None and heic.twin_ratio > HEIC_RATIO_TARGET:
        notes.append(_heic_note(heic, heic.twin_ratio))
    return "\n".join(notes) if notes else "Every target was met in this run."


def _heic_note(heic: ImageResult, ratio: float) -> str:
    floor = heic.floor_ms if heic.floor_ms is not None else math.nan
    return (
        f"- **P2 HEIC ÷ JPEG missed** ({_fmt(ratio)} vs ≤ {HEIC_RATIO_TARGET:g}). "
        f"libheif (libde265) takes {_fmt(floor, 0)} ms of CPU to decode the "
        f"{heic.file_bytes / 1e6:.1f} MB HEIC to RGB, before Glimpse does anything, and no "
        f"decoder can do with less: HEVC has no reduced-size decode like JPEG's DCT scaling, so "
        f"all {heic.size[0]}×{heic.size[1]} pixels are decoded where libjpeg-turbo decodes the "
        f"twin at 1/4 scale. So the HEIC is judged against its decode floor instead, "
        f"{_fmt(heic.floor_ratio or math.nan)}× in this run: Glimpse's own work above the decode "
        f"(the pixels' copy into Pillow, a 4×4 box reduce to "
        f"{heic.sent_size[0]}×{heic.sent_size[1]}, the JPEG encode) is "
        f"{_fmt(_above_floor(heic), 1)} ms of CPU (the median of each turn's difference). "
        f"pillow-heif has no option that saves "
        f"decoding work: its decoding threads (`DECODE_THREADS`) share the one core here, the "
        f"photo is 8-bit (`convert_hdr_to_8bit` changes nothing), only the primary image is "
        f"decoded already, and a phone's embedded thumbnail is a few hundred pixels wide, far "
        f"below the {max(heic.sent_size)} px sent, so thumbnails are not even parsed."
    )


def _above_floor(image: ImageResult) -> float:
    """CPU ms of Glimpse's own work above the decode floor: per turn if known, else of the medians."""
    if image.above_floor_cpu_ms is not None:
        return image.above_floor_cpu_ms
    return image.cpu_ms - image.floor_ms if image.floor_ms is not None else math.nan


def _floor_words(photo: ImageResult) -> str:
    if photo.floor_ms is None:
        return ""
    return (
        f" ({_fmt(photo.floor_ms, 1)} ms in this run, the least any libjpeg-turbo decode of this "
        f"file costs; Glimpse's whole pipeline is {_fmt(_above_floor(photo), 1)} ms of CPU "
        f"above it)"
    )


def _p1_note(results: Results, top: Level) -> str:
    cpu = {a: top.cpu_ms_per_answer(a) for a in ("bare", "sdk", "glimpse")}
    decode_p50 = decode_ms(top)[0]
    text = (
        f"- **P1 at {top.concurrency:,} concurrent missed** ({_fmt(ratio(top, 'glimpse'))} vs ≤ {RATIO_TARGET})."
        + _start_words(results, top)
        + f" The bot process is CPU-bound too: Glimpse used {_fmt(cpu['glimpse'], 1)} ms of CPU per "
        f"answer, a raw aiohttp client that parses nothing {_fmt(cpu['bare'], 1)} ms, the openai "
        f"SDK alone (default client, every chunk parsed and dropped) {_fmt(cpu['sdk'], 1)} ms. "
        f"{top.concurrency:,} answers × {_fmt(cpu['glimpse'], 1)} ms is "
        f"{top.concurrency * cpu['glimpse'] / 1000:.1f} s of CPU on one core, while the bare "
        f"client's answers take {_fmt(_p50(top, 'bare'))} s, not the model's "
        f"{results.plan.shape.seconds:g} s. "
        f"What Glimpse does that the bare client does not: the request through the SDK, its own "
        f"steps, {_fmt(core_ms(top)[0])} ms per answer (p50, under the probe), and decoding "
        f"{results.plan.shape.tokens} JSON chunks, {_fmt(decode_p50)} ms."
    )
    if results.profile is not None and results.profile.total > 0:
        first, seconds = next(iter(results.profile.seconds.items()))
        text += f" The profile puts {seconds / results.profile.total:.0%} of the sampled time in “{first}”."
    return text + _without_sdk_words(results)


def _start_words(results: Results, top: Level) -> str:
    """How much of the miss is the start, when every answer's request is built at once."""
    bare, glimpse = (departure_p50(top, a) for a in RATIO_PAIR)
    if bare is None or glimpse is None:
        return ""
    gap = _p50(top, "glimpse") - _p50(top, "bare")
    allowed = (RATIO_TARGET - 1) * _p50(top, "bare")
    per_request_us = 1e6 * allowed / (top.concurrency / 2)
    share = "Most" if glimpse - bare >= gap / 2 else "Part"
    text = (
        f" {share} of the miss is the start: all {top.concurrency:,} answers begin at once and "
        f"each request is built on the one core before the next leaves, so Glimpse's median "
        f"request left {_fmt(glimpse, 3)} s after the start, the bare client's {_fmt(bare, 3)} s, "
        f"{_fmt(glimpse - bare, 3)} s later; their median answers ended {_fmt(gap, 3)} s apart."
    )
    if results.sdk_request_us is not None:
        text += (
            f" Within ≤ {RATIO_TARGET} the median answer may end only {_fmt(allowed, 3)} s after "
            f"the bare client's, so even with a stream that cost nothing more to read, Glimpse's "
            f"request could cost at most {per_request_us:.0f} µs of CPU more than the bare "
            f"client's raw aiohttp POST; the openai SDK's part alone takes "
            f"{results.sdk_request_us:.0f} µs (timed against a transport that answers at once)."
        )
    return text


def _core_notes(results: Results) -> list[str]:
    """A note for each level whose p99 core overhead misses the target, with what the run saw."""
    busiest = results.levels[-1]
    notes = []
    for level in results.levels:
        p50, p99 = core_ms(level)
        if p99 <= CORE_P99_TARGET_MS:
            continue
        head = (
            f"- **P1 p99 core overhead at {level.concurrency:,} concurrent missed** ({_fmt(p99)} ms "
            f"vs ≤ {CORE_P99_TARGET_MS:g} ms; p50 {_fmt(p50)} ms, {len(level.samples['probed'])} answers). "
        )
        notes.append(
            head
            + (_idle_note(results, level, busiest) if level.concurrency == 1 else _gc_note(level))
        )
    return notes


def _idle_note(results: Results, level: Level, busiest: Level) -> str:
    return (
        f"It is {results.plan.shape.tokens} chunks × Glimpse's per-chunk code (the client's "
        f"generator, the sink's update), each run right after the idle process wakes from the "
        f"model's pause with cold caches: the same code costs {_fmt(core_ms(busiest)[0])} ms per "
        f"answer at {busiest.concurrency:,} concurrent, and even the bare client spends "
        f"{_fmt(level.cpu_ms_per_answer('bare'), 1)} ms of CPU per answer here against "
        f"{_fmt(busiest.cpu_ms_per_answer('bare'), 1)} ms at {busiest.concurrency:,}."
    )


def _gc_note(level: Level) -> str:
    pauses = level.gc_pauses_ms["probed"]
    long = [p for p in pauses if p >= 1.0]
    return (
        f"The tail is the process stopping inside a Glimpse step: during the probed rounds the "
        f"garbage collector ran {len(pauses)} times, {len(long)} of them for 1 ms or more "
        f"(longest {_fmt(max(pauses, default=math.nan), 1)} ms), walking the objects of every "
        f"answer in flight; other processes on this 2-core machine preempt it too."
    )


def render(results: Results) -> str:
    """The whole RESULTS.md."""
    machine = "\n".join(f"- {name}: {value}" for name, value in results.machine.items())
    shape = results.plan.shape
    return f"""# Glimpse benchmark results

Written by `python benchmarks/run.py{" --quick" if results.plan.quick else ""}` (see README.md in this folder); the run took {results.seconds:.0f} s.

{machine}
- load average (1 / 5 / 15 min) before: {results.load_before}; after: {results.load_after}
- fake model: {shape.tokens} streamed tokens in {shape.seconds:g} s (first after {shape.first_token_seconds:g} s), in its own process

Ratios are measured side by side in the same run, so they hold on a busy machine; absolute
times move with the machine's load.

## Summary

{_summary(results)}

## What limits the missed targets

{_limits(results)}

## P1 overhead: time per answer ÷ the model's own time

The model's time is what a bare client (raw aiohttp, the body read as it arrives, nothing parsed) sees from
the same fake at the same concurrency. "SDK alone" is the openai SDK with one shared client,
every chunk parsed and dropped. "Usual" is the llmcord-style bot in `baseline.py` (a new
`AsyncOpenAI` client per message, one global edit throttle, no token counting). Glimpse answers
through `Conversations.handle` into the adapters' streaming sink over an in-memory platform,
with `max_concurrent_answers` raised to 1,000 so every conversation streams at once (the
default, 64, would queue the rest by design).
Core overhead is each answer's wall time minus its time inside the openai SDK and the HTTP
stack (sending the request, and every wait for the body, which Glimpse reads through its own
transport, `bot/transport.py`) and minus Glimpse's decoding of the streamed events
(`bot/sse.py`, `bot/chunks.py`, shown in its own column): what is left is the request build,
the per-chunk handling, the sink and the store. The probe that splits each answer's time (`probe.py`) wraps the SDK's calls and
every network read, and those wrappers cost CPU, so Glimpse's ratio, wall times, CPU and GC
figures come from rounds without it, and its core, decoding and build columns from separate
rounds with it (their CPU in brackets). The usual bot always runs with it, for its core column.
The harness process runs `bot.heap.settle_heap()` once warmed up, as `glimpse run` does, so every
approach runs under the same garbage-collector settings. The five kinds of round (Glimpse with
and without the probe) run in rotated order each round; between them, {results.plan.ratio_rounds}
more rounds of only the bare client and Glimpse, one right after the other, give the headline
ratio more rounds to rest on when the machine's speed drifts.

{_p1_section(results)}
![time per answer ÷ model time against concurrency]({OVERHEAD_PLOT})

## P2 images

{_p2_section(results)}

## P3 context use

{_p3_section(results)}

## P4 request build time against memory length

{_p4_section(results)}

![request build time against memory length]({BUILD_PLOT})

## P5 memory

{_p5_section(results)}

## P6 Discord shards: answers per second with more processes

{render_shards(results.shards)}"""


# --- plots and closing lines ---


def write_plots(results: Results, folder: Path) -> list[Path]:
    """The two PNGs (nothing without matplotlib); the files written."""
    try:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError:
        return []
    written = []
    if results.levels:
        written.append(_overhead_plot(plt, results, folder / OVERHEAD_PLOT))
    if results.build:
        written.append(_build_plot(plt, results, folder / BUILD_PLOT))
    return written


def _overhead_plot(plt: object, results: Results, path: Path) -> Path:
    figure, axes = plt.subplots(figsize=(7, 4.2))  # type: ignore[attr-defined]
    levels = [level.concurrency for level in results.levels]
    for approach, label, style in (
        ("glimpse", "Glimpse", "o-"),
        ("sdk", "openai SDK alone", "s--"),
        ("usual", "usual approach (llmcord-style)", "^:"),
    ):
        axes.plot(levels, [ratio(level, approach) for level in results.levels], style, label=label)
    if results.slack is not None and results.slack.measured:
        axes.plot(
            [results.slack.concurrency],
            [slack_ratio(results.slack)],
            "D",
            label="Glimpse via Slack HTTP",
        )
    axes.axhline(RATIO_TARGET, color="red", linewidth=1, label=f"target ≤ {RATIO_TARGET}")
    axes.set_xscale("log")
    axes.set_xlabel("concurrent conversations")
    axes.set_ylabel("time per answer ÷ model time (p50)")
    axes.set_title("Overhead against concurrency (2 cores, fake model in its own process)")
    axes.grid(True, which="both", alpha=0.3)
    axes.legend(fontsize=8)
    return _save(plt, figure, path)


def _build_plot(plt: object, results: Results, path: Path) -> Path:
    figure, axes = plt.subplots(figsize=(7, 4.2))  # type: ignore[attr-defined]
    turns = [b.turns for b in results.build]
    axes.plot(turns, [b.glimpse.p50 for b in results.build], "o-", label="Glimpse (memory store)")
    axes.plot(
        turns, [b.glimpse_sqlite.p50 for b in results.build], "s--", label="Glimpse (SQLite store)"
    )
    axes.plot(turns, [b.recount.p50 for b in results.build], "^:", label="recount every turn")
    axes.axhline(
        BUILD_MS_TARGET, color="red", linewidth=1, label=f"target ≤ {BUILD_MS_TARGET:g} ms"
    )
    axes.set_xscale("log")
    axes.set_yscale("log")
    axes.set_xlabel("turns in the conversation's memory")
    axes.set_ylabel("request build time, ms (p50)")
    axes.set_title("Request build time against memory length")
    axes.grid(True, which="both", alpha=0.3)
    axes.legend(fontsize=8)
    return _save(plt, figure, path)


def _save(plt: object, figure: object, path: Path) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    figure.tight_layout()  # type: ignore[attr-defined]
    figure.savefig(path, dpi=110)  # type: ignore[attr-defined]
    plt.close(figure)  # type: ignore[attr-defined]
    return path


def key_ratios(results: Results) -> list[str]:
    """The closing lines: the figures people compare, each beside its target."""
    lines = []
    for level in results.levels:
        lines.append(
            f"P1 {level.concurrency:>5,} concurrent: Glimpse ÷ model {ratio(level, 'glimpse'):.3f} "
            f"(target ≤ {RATIO_TARGET} at 1,000), SDK alone {ratio(level, 'sdk'):.3f}, "
            f"usual {ratio(level, 'usual'):.3f}; core p99 {core_ms(level)[1]:.2f} ms (≤ {CORE_P99_TARGET_MS:g})"
        )
    if results.steady is not None:
        lines.append(
            f"P1 {results.steady.concurrency:>5,} steady:     Glimpse ÷ model "
            f"{steady_ratio(results.steady):.3f} (target ≤ {RATIO_TARGET})"
        )
    if results.slack is not None:
        slack = results.slack
        lines.append(
            f"P1 Slack HTTP {slack.concurrency} concurrent: Glimpse ÷ model {slack_ratio(slack):.3f}"
            if slack.measured
            else f"P1 Slack HTTP: {slack.reason}"
        )
    for image in results.images:
        lines.append(
            f"P2 {image.name}: {image.median_ms:.1f} ms (photo target ≤ {PHOTO_MS_TARGET:g}), "
            f"sent ÷ raw {image.bytes_ratio:.3f} (photo target ≤ {PHOTO_BYTES_TARGET})"
        )
        if image.twin_ratio is not None:
            lines.append(
                f"P2 {image.name} ÷ the same photo as JPEG: {image.twin_ratio:.2f} "
                f"(target ≤ {HEIC_RATIO_TARGET:g})"
            )
        if image.floor_ratio is not None:
            lines.append(
                f"P2 {image.name} ÷ its decode floor: {image.floor_ratio:.2f} "
                f"(CPU {image.floor_cpu_ratio or math.nan:.2f})"
            )
    for strategy in results.context:
        lines.append(
            f"P3 {strategy.name}: {strategy.overflows} overflows, median use over budget "
            f"{strategy.median_share(only_exceeding=True):.1%}"
        )
    for recall in results.recall:
        lines.append(
            f"P3 memory, {recall.variant.name}: first fact kept "
            f"{_pct(recall.first_share(only_exceeding=True))} (history over budget; target ≥ "
            f"{FIRST_FACT_TARGET:.0%} with summaries), facts kept {_pct(recall.fact_share())}, "
            f"{recall.overflows} overflows, summary tokens per 100 answers "
            f"{_fmt(recall.per_100_answers(recall.summary_tokens), 0)}"
        )
    for build in results.build:
        lines.append(
            f"P4 {build.turns:>6,} turns: build {build.glimpse.p50:.3f} ms, recount {build.recount.p50:.2f} ms"
        )
    for memory in results.memory:
        lines.append(f"P5 {memory.kind}: {memory.full_mb:.0f} MB RSS (target ≤ {RSS_TARGET_MB:g})")
    shards = results.shards
    if shards is not None and shards.reason:
        lines.append(f"P6 Discord shards: {shards.reason}")
    for row in shards.rows if shards is not None else []:
        lines.append(
            f"P6 {row.processes} shard process{'es' if row.processes > 1 else ''}: "
            f"{row.rate:.1f} answers/s, {shards.linear_share(row):.2f} of linear, "
            f"{row.per_answer(row.round_trips):.1f} Redis round trips per answer, "
            f"{row.duplicates} duplicates"
        )
    return lines
