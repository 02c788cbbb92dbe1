"""Shared pytest fixtures (loopback fakes of remote services), why tests were skipped, the secret watch's count."""

from __future__ import annotations

from collections import Counter
from collections.abc import AsyncIterator

import pytest

from tests.fakes.openrouter import FakeOpenRouter
from tests.reliability.secrets_watch import WATCH


@pytest.fixture
async def fake_openrouter() -> AsyncIterator[FakeOpenRouter]:
    """A fresh FakeOpenRouter on 127.0.0.1 (random port); `fake.base_url` is its API base."""
    async with FakeOpenRouter() as fake:
        yield fake


def pytest_terminal_summary(
    terminalreporter: pytest.TerminalReporter, exitstatus: int, config: pytest.Config
) -> None:
    """The secret watch's line; one line per skip reason with its count, without `-rs`."""
    _secret_watch_summary(terminalreporter)
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


def _secret_watch_summary(terminalreporter: pytest.TerminalReporter) -> None:
    """One line with how much the reliability suite's secret watch read (RELIABILITY.md quotes it)."""
    if WATCH.records:
        leaks = len(WATCH.leaks) + WATCH.leaked_elsewhere
        terminalreporter.write_line(
            f"reliability: {WATCH.records} log records at DEBUG and {WATCH.outputs} process "
            f"outputs checked for {len(WATCH.secrets)} test secrets; {leaks} showed one"
        )


def pytest_sessionfinish(session: pytest.Session) -> None:
    """Under pytest-xdist, a worker hands its secret watch's counts to the controller."""
    workeroutput = getattr(session.config, "workeroutput", None)
    if workeroutput is not None:
        workeroutput["secret_watch"] = (WATCH.records, WATCH.outputs, len(WATCH.leaks))


@pytest.hookimpl(optionalhook=True)
def pytest_testnodedown(node: object, error: object) -> None:
    """Under pytest-xdist, add a finished worker's secret watch counts to the controller's."""
    records, outputs, leaks = getattr(node, "workeroutput", {}).get("secret_watch", (0, 0, 0))
    WATCH.records += records
    WATCH.outputs += outputs
    WATCH.leaked_elsewhere += leaks
