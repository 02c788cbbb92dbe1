"""The Slack HTTP load run: many conversations at a steady rate against `glimpse run` with a slow fake model."""

from __future__ import annotations

import asyncio
import re
import statistics
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import aiohttp

from tests.fakes.openrouter import FakeOpenRouter
from tests.fakes.slack import BOT_TOKEN, SIGNING_SECRET, FakeSlack, event_body, sign
from tests.reliability.checks import user_text
from tests.reliability.harness import CHANNEL, glimpse_env, glimpse_slack_server, slack_mention

__all__ = ["LoadPlan", "LoadReport", "run_load"]

MODEL_SECONDS = 1.0  # the fake model: first token after 0.25 s, then three more chunks 0.25 s apart
CHUNKS = 4
RETRY_SHARE = 20  # every 20th message is delivered again as a Slack retry (same event id)
MARKER = re.compile(r"c(\d+)-m(\d+)")
POLL_SECONDS = 0.05
DRAIN_TIMEOUT_SECONDS = 90.0


@dataclass(frozen=True, slots=True)
class LoadPlan:
    conversations: int
    per_conversation: int
    seconds: float  # messages are spread evenly over this long
    max_concurrent_answers: int

    @property
    def messages(self) -> int:
        return self.conversations * self.per_conversation


@dataclass
class LoadReport:
    plan: LoadPlan
    sent: int = 0
    retries_sent: int = 0
    send_seconds: float = 0.0
    drain_seconds: float = 0.0
    model_calls: int = 0
    peak_streams: int = 0
    answers: dict[str, int] = field(default_factory=dict)  # marker -> answers posted
    order_kept: bool = True
    latencies: list[float] = field(default_factory=list)  # sent -> answer complete, seconds
    busy: int = 0

    def summary(self) -> str:
        p = self.plan
        lat = sorted(self.latencies) or [0.0]
        p95 = lat[int(0.95 * (len(lat) - 1))]
        return (
            f"{self.sent} messages (+{self.retries_sent} Slack retries) over {p.conversations} "
            f"conversations in {self.send_seconds:.1f} s; all answered after {self.drain_seconds:.1f} s; "
            f"{self.model_calls} model calls; peak {self.peak_streams} concurrent "
            f"(bound {p.max_concurrent_answers}); dropped {self.dropped}, twice {self.twice}, "
            f"busy {self.busy}; latency median {statistics.median(lat):.2f} s, p95 {p95:.2f} s, "
            f"max {lat[-1]:.2f} s; per-thread order kept: {self.order_kept}"
        )

    @property
    def dropped(self) -> int:
        return self.plan.messages - len(self.answers)

    @property
    def twice(self) -> int:
        return sum(1 for count in self.answers.values() if count > 1)


def _answer(body: dict[str, Any]) -> str:
    found = MARKER.search(user_text(body))
    return f"answer to {found.group(0) if found else '?'}"


async def run_load(plan: LoadPlan, tmp_path: Path) -> LoadReport:
    """Start the fakes and `glimpse run --platform slack --http`, send the plan, wait for every answer."""
    router = FakeOpenRouter(
        responder=_answer,
        chunks=CHUNKS,
        first_token_latency_seconds=MODEL_SECONDS / CHUNKS,
        chunk_delay_seconds=MODEL_SECONDS / CHUNKS,
        record_requests=True,
    )
    async with router, FakeSlack() as slack:
        env = glimpse_env(
            router,
            store_url=f"sqlite:///{tmp_path / 'glimpse.db'}",
            SLACK_BOT_TOKEN=BOT_TOKEN,
            SLACK_SIGNING_SECRET=SIGNING_SECRET,
            SLACK_API_URL=slack.api_url,
            GLIMPSE_USER_MESSAGES_PER_MINUTE="0",
            GLIMPSE_MAX_CONCURRENT_ANSWERS=str(plan.max_concurrent_answers),
        )
        async with glimpse_slack_server(env, tmp_path / "load.log", log_level="INFO") as server:
            report = LoadReport(plan)
            sent_at: dict[str, float] = {}
            watcher = asyncio.create_task(_watch(slack, sent_at, report))
            started = time.monotonic()
            roots = await _send_all(server.url, plan, sent_at, report)
            report.send_seconds = time.monotonic() - started
            await _until_all_answered(slack, plan, report)
            report.drain_seconds = time.monotonic() - started
            watcher.cancel()
        _tally(slack, router, roots, report)
        return report


async def _send_all(
    url: str, plan: LoadPlan, sent_at: dict[str, float], report: LoadReport
) -> list[str]:
    """Mention the bot in each conversation's thread, round robin, at an even rate."""
    interval = plan.seconds / plan.messages
    roots = [slack_mention("start").get("ts", "") for _ in range(plan.conversations)]
    connector = aiohttp.TCPConnector(limit=200)
    async with aiohttp.ClientSession(connector=connector) as http:
        tasks = []
        started = time.monotonic()
        for index in range(plan.messages):
            k, c = divmod(index, plan.conversations)
            await asyncio.sleep(max(0.0, started + index * interval - time.monotonic()))
            marker = f"c{c}-m{k}"
            event = slack_mention(f"question {marker}", thread_ts=None if k == 0 else roots[c])
            if k == 0:
                event["ts"] = roots[c]
            body = event_body(event, event_id=f"Ev{index:08d}")
            sent_at[marker] = time.monotonic()
            tasks.append(asyncio.create_task(_post(http, url, body, retry=False)))
            if index % RETRY_SHARE == RETRY_SHARE - 1:
                tasks.append(asyncio.create_task(_post(http, url, body, retry=True)))
                report.retries_sent += 1
            report.sent += 1
        statuses = await asyncio.gather(*tasks)
    assert set(statuses) == {200}, statuses
    return roots


async def _post(http: aiohttp.ClientSession, url: str, body: str, *, retry: bool) -> int:
    if retry:
        await asyncio.sleep(0.2)  # Slack resends when our ack was slow
    headers = {**sign(body), "Content-Type": "application/json"}
    if retry:
        headers.update({"X-Slack-Retry-Num": "1", "X-Slack-Retry-Reason": "http_timeout"})
    async with http.post(url, data=body, headers=headers) as response:
        await response.read()
        return response.status


async def _watch(slack: FakeSlack, sent_at: dict[str, float], report: LoadReport) -> None:
    """Note when each answer is complete on Slack (its message reads the whole reply)."""
    done: set[str] = set()
    while True:
        now = time.monotonic()
        for posted in slack.messages:
            found = MARKER.search(posted.text)
            if found and posted.text.startswith("answer to") and found.group(0) not in done:
                if posted.text == f"answer to {found.group(0)}":
                    done.add(found.group(0))
                    report.latencies.append(now - sent_at[found.group(0)])
        await asyncio.sleep(POLL_SECONDS)


async def _until_all_answered(slack: FakeSlack, plan: LoadPlan, report: LoadReport) -> None:
    deadline = time.monotonic() + DRAIN_TIMEOUT_SECONDS
    while len(report.latencies) < plan.messages and time.monotonic() < deadline:
        if any("busy" in posted.text for posted in slack.messages):
            break  # a busy answer is a result too; stop waiting for the rest
        await asyncio.sleep(POLL_SECONDS)
    await asyncio.sleep(0.5)  # anything answered twice would show by now


def _tally(slack: FakeSlack, router: FakeOpenRouter, roots: list[str], report: LoadReport) -> None:
    report.model_calls = len(router.chat_requests)
    report.peak_streams = router.peak_streams
    for c, root in enumerate(roots):
        texts = [m.text for m in slack.thread(CHANNEL, root)]
        report.busy += sum("busy right now" in text for text in texts)
        ks = [int(found.group(2)) for text in texts if (found := MARKER.search(text))]
        report.order_kept &= ks == sorted(ks)
        for k in ks:
            marker = f"c{c}-m{k}"
            report.answers[marker] = report.answers.get(marker, 0) + 1
    report.order_kept &= _histories_in_order(router)


def _histories_in_order(router: FakeOpenRouter) -> bool:
    """Each request carries exactly its conversation's earlier questions, in order (none lost, none foreign)."""
    for request in router.chat_requests:
        markers = [
            found.group(0)
            for message in request.body["messages"]
            if message["role"] == "user" and (found := MARKER.search(str(message["content"])))
        ]
        c, k = MARKER.fullmatch(markers[-1]).groups()  # type: ignore[union-attr]
        if markers != [f"c{c}-m{i}" for i in range(int(k) + 1)]:
            return False
    return True
