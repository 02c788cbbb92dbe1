"""Provider faults through the Slack HTTP app: the user gets the answer or one clear sentence, others are served."""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import pytest

from adapters.slack_events import conversation_key
from bot.openrouter import USER_MESSAGES
from tests.fakes.openrouter import DEFAULT_REPLY, FakeOpenRouter
from tests.fakes.slack import TEAM_ID
from tests.reliability.checks import user_text
from tests.reliability.harness import CHANNEL, SlackRig, slack_mention, slack_rig, until

FAULTY = "FAULTY"  # only questions with this word meet the scripted fault
OTHER_CHANNEL = "C0RANDOM02"
CUT_OFF = "⚠️ The answer was cut off: "
CHUNKS = 8


@dataclass(frozen=True)
class Fault:
    """A provider fault, what the faulty conversation must end with, and how long it may take."""

    id: str
    inject: Callable[[FakeOpenRouter], None]
    shown: str  # the whole text of the reply the faulty question gets
    answered: bool = False  # the full answer came through (and was remembered)
    min_seconds: float = 0.0  # honoured Retry-After and backoff make it at least this slow
    max_seconds: float = 5.0
    settings: dict[str, Any] = field(default_factory=dict)


def _partial(chunks: int) -> str:
    """The first `chunks` of the fake's reply, as streamed before a fault."""
    size, extra = divmod(len(DEFAULT_REPLY), CHUNKS)
    return DEFAULT_REPLY[: chunks * size + min(chunks, extra)]


FAULTS = [
    Fault(
        "429-storm-then-answer",
        lambda f: f.fail_next(429, times=2, retry_after=0.3),
        DEFAULT_REPLY,
        answered=True,
        min_seconds=0.6,
    ),
    Fault(
        "429-storm-past-the-retries",
        lambda f: f.fail_next(429, times=8, retry_after=0.2),
        "⚠️ " + USER_MESSAGES["rate_limited"],
        min_seconds=0.4,
    ),
    Fault("502-once", lambda f: f.fail_next(502), DEFAULT_REPLY, answered=True),
    Fault(
        "503-throughout",
        lambda f: f.fail_next(503, times=8, retry_after=0.1),
        "⚠️ " + USER_MESSAGES["unavailable"],
    ),
    Fault(
        "hung-connection",
        lambda f: f.hang_next(60),
        "⚠️ " + USER_MESSAGES["timeout"],
        min_seconds=1.0,
        max_seconds=3.0,  # abandoned at request_timeout_seconds, not after 60 s
        settings={"request_timeout_seconds": 1.0, "max_retries": 0},
    ),
    Fault(
        "reset-mid-stream",
        lambda f: f.reset_connection_mid_stream(3),
        f"{_partial(3)}\n\n{CUT_OFF}{USER_MESSAGES['stream_error']}",
    ),
    Fault(
        "error-chunk-mid-stream",
        lambda f: f.error_mid_stream(3),
        f"{_partial(3)}\n\n{CUT_OFF}{USER_MESSAGES['stream_error']}",
    ),
    Fault("error-chunk-before-text", lambda f: f.error_mid_stream(0), DEFAULT_REPLY, answered=True),
    Fault(
        "malformed-chunk",
        lambda f: f.malformed_chunk_next(2),
        f"{_partial(2)}\n\n{CUT_OFF}{USER_MESSAGES['bad_response']}",
    ),
    Fault(
        "stream-ends-early",
        lambda f: f.end_stream_early_next(4),
        f"{_partial(4)}\n\n{CUT_OFF}{USER_MESSAGES['stream_error']}",
    ),
    Fault("401-bad-key", lambda f: f.fail_next(401), "⚠️ " + USER_MESSAGES["auth"]),
    Fault("402-no-credits", lambda f: f.fail_next(402), "⚠️ " + USER_MESSAGES["credits"]),
    Fault("403-moderation", lambda f: f.fail_next(403), "⚠️ " + USER_MESSAGES["forbidden"]),
]


@pytest.mark.parametrize("fault", FAULTS, ids=[fault.id for fault in FAULTS])
async def test_a_provider_fault_gets_a_clear_sentence_while_others_are_answered(
    fault: Fault,
) -> None:
    settings = {"max_retries": 2, "request_timeout_seconds": 5.0, **fault.settings}
    async with slack_rig(**settings) as rig:
        rig.router.chunks = CHUNKS
        rig.router.scripted = lambda body: FAULTY in user_text(body)
        fault.inject(rig.router)
        started = time.monotonic()
        faulty = slack_mention(f"{FAULTY}: what is in the lake?")
        await rig.event(faulty)
        await until(lambda: rig.router.chat_requests, "the faulty question to reach the model")

        healthy = slack_mention("and a healthy question?", channel=OTHER_CHANNEL)
        await rig.event(healthy)
        await until(lambda: rig.thread(healthy["ts"], OTHER_CHANNEL) == [DEFAULT_REPLY], "healthy")
        healthy_done = time.monotonic()
        shown = [_mrkdwn(fault.shown)]
        await until(lambda: rig.thread(faulty["ts"]) == shown, f"the faulty reply to read {shown}")
        faulty_done = time.monotonic()

        await rig.settle()
        assert rig.thread(faulty["ts"]) == shown
        assert fault.min_seconds <= faulty_done - started <= fault.max_seconds
        if fault.min_seconds:  # a slow fault never held the other conversation up
            assert healthy_done < faulty_done
        assert await _remembered(rig, faulty["ts"]) == fault.answered  # no half turn kept


def _mrkdwn(text: str) -> str:
    return text.replace("&", "&amp;").replace("<", "&lt;").replace(">", "&gt;")


async def _remembered(rig: SlackRig, ts: str) -> bool:
    return await rig.conversations.is_active(conversation_key(TEAM_ID, CHANNEL, ts))
