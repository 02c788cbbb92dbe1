"""Shared pytest fixtures (loopback fakes of remote services), and why tests were skipped."""

from __future__ import annotations

from collections import Counter
from collections.abc import AsyncIterator

import pytest

from tests.fakes.openrouter import FakeOpenRouter


@pytest.fixture
async def fake_openrouter() -> AsyncIterator[FakeOpenRouter]:
    """A fresh FakeOpenRouter on 127.0.0.1 (random port); `fake.base_url` is its API base."""
    async with FakeOpenRouter() as fake:
        yield fake


def pytest_terminal_summary(
    terminalreporter: pytest.TerminalReporter, exitstatus: int, config: pytest.Config
) -> None:
    """One line per skip reason with its count (Redis tests skip without a Redis), without `-rs`."""
    chars = config.getoption("reportchars") or ""
    if {"s", "a", "A"} & set(chars):
        return  # pytest lists every skip itself
    reasons = Counter(_skip_reason(report) for report in terminalreporter.stats.get("skipped", []))
    if reasons:
        terminalreporter.write_sep("-", "why tests were skipped")
        for reason, count in reasons.most_common():
            terminalreporter.write_line(f"{count} skipped: {reason}")


def _skip_reason(report: pytest.TestReport) -> str:
    longrepr = report.longrepr
    reason = longrepr[2] if isinstance(longrepr, tuple) else str(longrepr)
    return reason.removeprefix("Skipped: ")
