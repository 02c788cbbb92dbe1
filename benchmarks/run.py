"""Glimpse's benchmarks: `python benchmarks/run.py` (full, under 10 minutes) or `--quick` (CI, seconds)."""

from __future__ import annotations

import argparse
import asyncio
import logging
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from benchmarks import without_sdk  # noqa: E402
from benchmarks.build_time import measure_build_time  # noqa: E402
from benchmarks.common import BENCH_DIR, FULL_PLAN, QUICK_PLAN, ModelShape, Plan  # noqa: E402
from benchmarks.context_use import measure_context_use  # noqa: E402
from benchmarks.corpus import make_corpus  # noqa: E402
from benchmarks.discord_shards import measure_shards  # noqa: E402
from benchmarks.images import measure_images  # noqa: E402
from benchmarks.machine import load_average, machine_info  # noqa: E402
from benchmarks.memory_recall import measure_memory_recall  # noqa: E402
from benchmarks.memory_use import measure_memory  # noqa: E402
from benchmarks.overhead import request_body, run_level, started_sides  # noqa: E402
from benchmarks.profile import profile_round  # noqa: E402
from benchmarks.report import Results, key_ratios, render, write_plots  # noqa: E402
from benchmarks.request_cost import sdk_request_microseconds  # noqa: E402
from benchmarks.servers import Servers  # noqa: E402
from benchmarks.slack_path import run_slack_path  # noqa: E402
from benchmarks.steady import run_steady  # noqa: E402

PHASES = ("p1", "p2", "p3", "p4", "p5", "p6")
MEMORY_SHAPE = ModelShape(tokens=60, seconds=0.0, first_token_seconds=0.0)


def _say(text: str) -> None:
    print(text, flush=True)


async def _p1(plan: Plan, servers: Servers, results: Results) -> None:
    side = await started_sides(servers.openrouter, servers.pid)
    try:
        for concurrency, rounds in plan.levels:
            started = time.perf_counter()
            results.levels.append(await run_level(side, concurrency, rounds, plan.ratio_rounds))
            _say(
                f"[P1] {concurrency:,} concurrent × {rounds} rounds (+{plan.ratio_rounds} of bare "
                f"and Glimpse): {time.perf_counter() - started:.0f} s"
            )
        concurrency, rounds = plan.steady
        started = time.perf_counter()
        results.steady = await run_steady(side, concurrency, rounds, plan.shape.seconds)
        _say(
            f"[P1] {concurrency:,} concurrent, steady, × {rounds} rounds of bare and Glimpse: "
            f"{time.perf_counter() - started:.0f} s"
        )
        started = time.perf_counter()
        results.what_if = await without_sdk.compare(
            side, plan.levels[-1][0], plan.without_sdk_rounds, concurrency, plan.shape.seconds
        )
        _say(f"[P1] what-if without the SDK's request path: {time.perf_counter() - started:.0f} s")
        results.sdk_request_us = await sdk_request_microseconds(
            request_body(), plan.request_cost_reps
        )
        results.slack = await run_slack_path(side, servers, *plan.slack)
        _say(f"[P1] Slack HTTP path: {'done' if results.slack.measured else results.slack.reason}")
        if plan.profile_answers:
            results.profile = await profile_round(side, plan.profile_answers)
            _say(f"[P1] profiled {plan.profile_answers} concurrent answers")
    finally:
        await side.close()


def _with_servers(plan: Plan, phases: set[str], results: Results) -> None:
    with Servers(plan.shape) as servers:
        if "p1" in phases:
            asyncio.run(_p1(plan, servers, results))
        if "p6" in phases:
            started = time.perf_counter()
            results.shards = asyncio.run(measure_shards(servers, *plan.shards))
            servers.set_shape(plan.shape)
            sizes = ", ".join(str(size) for size in plan.shards[2])
            _say(f"[P6] Discord shards in {sizes} processes: {time.perf_counter() - started:.0f} s")
        if "p5" in phases:
            servers.set_shape(MEMORY_SHAPE)
            conversations, turns = plan.memory
            for kind in ("glimpse", "usual"):
                results.memory.append(
                    measure_memory(kind, servers.openrouter, conversations, turns)
                )
            _say(f"[P5] RSS measured for {conversations:,} conversations × {turns} turns")


def _local_phases(plan: Plan, phases: set[str], results: Results) -> None:
    if "p2" in phases:
        results.image_core, results.images = measure_images(plan.image_scale, plan.image_runs)
        _say(f"[P2] {len(results.images)} images prepared {plan.image_runs} times each")
    if "p3" in phases:
        corpus = make_corpus(plan.corpus_size)
        results.context = measure_context_use(corpus)
        _say(f"[P3] {plan.corpus_size} conversations, 3 strategies")
        started = time.perf_counter()
        results.recall = asyncio.run(measure_memory_recall(corpus[: plan.recall_size]))
        _say(
            f"[P3] {plan.recall_size} conversations replayed end to end, with summaries and "
            f"without: {time.perf_counter() - started:.0f} s"
        )
    if "p4" in phases:
        results.build = asyncio.run(measure_build_time(list(plan.lengths), plan.build_reps))
        _say(f"[P4] build time at {', '.join(f'{n:,}' for n in plan.lengths)} turns")


def _output_folder(plan: Plan, phases: set[str], out: str | None) -> Path:
    """benchmarks/ for a complete full run; a new temporary folder otherwise (or --out)."""
    if out:
        return Path(out)
    if not plan.quick and phases == set(PHASES):
        return BENCH_DIR
    return Path(tempfile.mkdtemp(prefix="glimpse-bench-"))


def _arguments(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument(
        "--quick", action="store_true", help="tiny sizes (CI): checks the harness runs, not speed"
    )
    parser.add_argument(
        "--only", default=",".join(PHASES), help="comma-separated phases: p1,p2,p3,p4,p5,p6"
    )
    parser.add_argument(
        "--out", help="folder for RESULTS.md and plots/ (default: benchmarks/ for a full run)"
    )
    return parser.parse_args(argv)


def main(argv: list[str] | None = None) -> int:
    args = _arguments(argv)
    logging.basicConfig(level=logging.WARNING)
    plan = QUICK_PLAN if args.quick else FULL_PLAN
    phases = {phase.strip().lower() for phase in args.only.split(",") if phase.strip()}
    results = Results(plan, machine_info(), load_before=load_average())
    started = time.perf_counter()
    _local_phases(plan, phases, results)
    if phases & {"p1", "p5", "p6"}:
        _with_servers(plan, phases, results)
    results.seconds = time.perf_counter() - started
    results.load_after = load_average()
    folder = _output_folder(plan, phases, args.out)
    folder.mkdir(parents=True, exist_ok=True)
    write_plots(results, folder)
    (folder / "RESULTS.md").write_text(render(results), encoding="utf-8")
    _say(f"results: {folder / 'RESULTS.md'} ({results.seconds:.0f} s)")
    _say("key ratios:")
    for line in key_ratios(results):
        _say(f"  {line}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
