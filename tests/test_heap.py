"""settle_heap: start-up objects frozen, young collections less frequent (in a child process)."""

from __future__ import annotations

import subprocess
import sys

from bot.heap import YOUNG_COLLECTION_THRESHOLD

PROBE = """
import gc
from bot.heap import settle_heap
before = gc.get_threshold()
settle_heap()
print(before[1:] == gc.get_threshold()[1:], gc.get_threshold()[0], gc.get_freeze_count())
"""


def test_settle_heap_freezes_start_up_objects_and_raises_the_young_threshold() -> None:
    done = subprocess.run(
        [sys.executable, "-c", PROBE], capture_output=True, text=True, check=True, timeout=60
    )
    kept_older_thresholds, young, frozen = done.stdout.split()
    assert kept_older_thresholds == "True"
    assert int(young) == YOUNG_COLLECTION_THRESHOLD > 700  # CPython's default is 700
    assert int(frozen) > 1_000  # the modules imported so far, at least
