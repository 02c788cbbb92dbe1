"""P1 through a real adapter: signed Slack Events API requests into the Slack adapter's HTTP app."""

from __future__ import annotations

import asyncio
import gc
from dataclasses import dataclass, field

from benchmarks.common import core_settings
from benchmarks.overhead import Sample, Side
from benchmarks.servers import Servers
from bot.app import build_conversations
from bot.config import Secrets
from tests.fakes.openrouter import FAKE_API_KEY
from tests.fakes.slack import BOT_TOKEN, SIGNING_SECRET

__all__ = ["SlackResult", "run_slack_path"]


@dataclass
class SlackResult:
    """Seconds from each signed POST to the complete answer in the fake Slack, and bare rounds beside them."""

    concurrency: int
    measured: bool = True
    reason: str = ""
    slack: list[float] = field(default_factory=list)
    bare: list[Sample] = field(default_factory=list)


def _adapter_available() -> str:
    """'' when adapters.slack exposes an HTTP app this harness can drive, else why not."""
    try:
        from adapters.slack import SlackAdapter
    except ImportError as exc:
        return f"not measured: adapter not landed ({exc})"
    if not hasattr(SlackAdapter, "serve_http"):
        return "not measured: adapter not landed (no SlackAdapter.serve_http)"
    return ""


async def run_slack_path(
    side: Side, servers: Servers, concurrency: int, rounds: int
) -> SlackResult:
    """`rounds` rounds of `concurrency` mentions, each beside a bare-client round at the same size."""
    reason = _adapter_available()
    if reason:
        return SlackResult(concurrency, measured=False, reason=reason)
    from adapters.slack import SlackAdapter

    settings = core_settings(servers.openrouter)
    secrets = Secrets(
        openrouter_api_key=FAKE_API_KEY,
        slack_bot_token=BOT_TOKEN,
        slack_signing_secret=SIGNING_SECRET,
        slack_api_url=servers.slack_api,
    )
    conversations = build_conversations(settings, secrets)
    await conversations.start()
    adapter = SlackAdapter(conversations, settings, secrets, http=True)
    result = SlackResult(concurrency)
    try:
        port = await adapter.serve_http("127.0.0.1", 0)
        url = f"http://127.0.0.1:{port}/slack/events"
        await servers.slack_round(url, 1, 0)  # warm up: Bolt's auth.test, first connections
        for index in range(rounds):
            if index % 2:
                result.bare += await _bare_round(side, concurrency)
            gc.collect()
            result.slack += await servers.slack_round(url, concurrency, index + 1)
            await adapter.drain()
            if not index % 2:
                result.bare += await _bare_round(side, concurrency)
    finally:
        await adapter.close()
        await conversations.close()
    return result


async def _bare_round(side: Side, concurrency: int) -> list[Sample]:
    gc.collect()
    return list(await asyncio.gather(*(side.bare_answer() for _ in range(concurrency))))
