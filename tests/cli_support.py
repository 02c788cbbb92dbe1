"""`python -m bot.cli` as a test's child process: a clean environment, a run to the end, its result."""

from __future__ import annotations

import asyncio
import os
import sys
from dataclasses import dataclass
from pathlib import Path

from tests.fakes.openrouter import FAKE_API_KEY, FakeOpenRouter

ROOT = Path(__file__).resolve().parents[1]
# Settings of the developer's own shell that must not leak into a test's glimpse.
OWN_SETTINGS = ("GLIMPSE_", "OPENROUTER_", "DISCORD_", "SLACK_")
RUN_TIMEOUT_SECONDS = 60.0


@dataclass(frozen=True, slots=True)
class Run:
    """How a glimpse process ended: its exit code and what it printed."""

    code: int
    out: str
    err: str


def clean_environ() -> dict[str, str]:
    """This process's environment without any Glimpse, OpenRouter, Discord or Slack setting."""
    return {k: v for k, v in os.environ.items() if not k.startswith(OWN_SETTINGS)}


def glimpse_env(router: FakeOpenRouter, *, store_url: str, **extra: str) -> dict[str, str]:
    """A clean environment for glimpse against the fake OpenRouter, one retry, the given store."""
    env = clean_environ()
    env.update(
        OPENROUTER_API_KEY=FAKE_API_KEY,
        OPENROUTER_BASE_URL=router.base_url,
        GLIMPSE_STORE_URL=store_url,
        GLIMPSE_MAX_RETRIES="1",
        USER="tester",
        PYTHONPATH=str(ROOT),
    )
    env.update(extra)
    return env


async def run_glimpse(
    *args: str | bytes,
    env: dict[str, str],
    stdin: str = "",
    cwd: Path = ROOT,
    seconds: float = RUN_TIMEOUT_SECONDS,
) -> Run:
    """Run `python -m bot.cli ARGS` with `stdin` to the end; its exit code, stdout and stderr."""
    process = await asyncio.create_subprocess_exec(
        sys.executable,
        "-m",
        "bot.cli",
        *args,
        stdin=asyncio.subprocess.PIPE,
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
        env=env,
        cwd=cwd,
    )
    out, err = await asyncio.wait_for(process.communicate(stdin.encode()), timeout=seconds)
    assert process.returncode is not None
    return Run(process.returncode, out.decode(errors="replace"), err.decode(errors="replace"))
