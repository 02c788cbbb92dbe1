"""Cheap checks of the benchmark harness's measuring parts (the run itself is `benchmarks/run.py --quick`)."""

from __future__ import annotations

from benchmarks.common import ModelShape, percentile
from benchmarks.context_use import measure_context_use
from benchmarks.corpus import PROFILES, make_corpus


def test_the_corpus_is_reproducible_and_covers_every_kind() -> None:
    first, second = make_corpus(12), make_corpus(12)
    assert first == second
    assert {conversation.profile for conversation in first} == set(PROFILES)


def test_glimpse_trimming_never_overflows_where_the_usual_ways_do() -> None:
    results = {r.name: r for r in measure_context_use(make_corpus(18))}
    assert results["glimpse"].overflows == 0
    assert all(tokens <= results["glimpse"].budget for tokens in results["glimpse"].prompt_tokens)
    assert results["last 25 messages"].overflows > 0


def test_the_fake_model_shape_spreads_its_tokens_over_its_time() -> None:
    shape = ModelShape(tokens=200, seconds=2.0, first_token_seconds=0.4)
    assert abs(shape.first_token_seconds + 199 * shape.chunk_delay_seconds - 2.0) < 1e-9
    assert shape.reply().endswith("END.")


def test_percentiles_interpolate() -> None:
    assert percentile([1, 2, 3, 4], 50) == 2.5
    assert percentile([5.0], 99) == 5.0
