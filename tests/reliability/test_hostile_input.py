"""Hostile input through the core and the Slack HTTP app: every case gets a clear answer, none crashes."""

from __future__ import annotations

import copy
import hashlib
import hmac
import json
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any
from urllib.parse import parse_qsl, urlencode

import pytest

from bot.messages import FileRef, IncomingMessage
from tests.fakes.openrouter import FakeOpenRouter
from tests.fakes.slack import SIGNING_SECRET, FakeSlack, command_body, event_body, sign
from tests.reliability.checks import ANSWER_PREFIX, assert_clear_answer, echo, slack_pings
from tests.reliability.corpus import CASES, MB, PING_ATTEMPTS, Case, File
from tests.reliability.harness import (
    CHANNEL,
    USER,
    RecordingSink,
    SlackRig,
    core_settings,
    incoming,
    running_core,
    slack_mention,
    slack_rig,
)

pytestmark = pytest.mark.filterwarnings("ignore:Corrupt EXIF data")

HINT = "Ask me a question"


# --- the core, with the SQLite store ---


@pytest.mark.parametrize("case", CASES, ids=[case.id for case in CASES])
async def test_the_core_answers_each_hostile_message_clearly(
    case: Case, fake_openrouter: FakeOpenRouter, tmp_path: Path
) -> None:
    fake_openrouter.responder = echo
    settings = core_settings(fake_openrouter, store_url=f"sqlite:///{tmp_path / 'glimpse.db'}")
    async with running_core(settings) as conversations:
        sink = RecordingSink()
        outcome = await conversations.handle(_core_message(case), sink)
        bodies = [request.body for request in fake_openrouter.chat_requests]
        assert_clear_answer(case, sink.seen, bodies)
        if outcome.request is not None:  # what was sent is what was counted, within the budget
            room = 4096 - settings.max_output_tokens - settings.safety_margin_tokens
            assert outcome.request.prompt_tokens <= room
        # Whatever was answered was remembered, and is read back without error.
        assert await conversations.is_active(_core_message(case).key) == case.asks_model


def _core_message(case: Case) -> IncomingMessage:
    """As the adapters hand files over: images by their MIME type, everything else as files."""
    refs = [
        (FileRef(filename=f.name, data=f.data, mime_type=f.mime, size=f.declared_size), f.is_image)
        for f in case.files
    ]
    images = tuple(ref for ref, is_image in refs if is_image)
    files = tuple(ref for ref, is_image in refs if not is_image)
    return incoming(case.text, images=images, files=files, thread=case.id)


# --- the Slack app over HTTP, with signed requests ---


@pytest.mark.parametrize("case", CASES, ids=[case.id for case in CASES])
async def test_slack_answers_each_hostile_message_clearly(case: Case) -> None:
    async with slack_rig() as rig:
        rig.router.responder = echo
        files = [_host(rig.slack, file, index) for index, file in enumerate(case.files)]
        event = slack_mention(case.text, files=files or None)
        assert await rig.event(event) == 200
        await rig.settle()
        shown = rig.thread(event["ts"])
        assert_clear_answer(case, shown, [r.body for r in rig.router.chat_requests])
        assert slack_pings([posted.text for posted in rig.everything_posted()]) == []


def _host(slack: FakeSlack, file: File, index: int) -> dict[str, Any]:
    """Host the bytes under a plain URL (Slack percent-encodes names); show the hostile name."""
    hosted = slack.add_file(f"upload-{index}.bin", file.data, file.mime)
    hosted.update(name=file.name, title=file.name)
    if file.declared_size is not None:
        hosted["size"] = file.declared_size
    return hosted


async def test_a_30_mb_file_that_claims_1_kb_is_refused_by_its_real_length() -> None:
    async with slack_rig(image_max_bytes=2 * MB) as rig:
        lying = File("small.jpg", b"\xff\xd8\xff" + b"\x00" * (30 * MB), "image/jpeg", 1024)
        event = slack_mention("what is this?", files=[_host(rig.slack, lying, 0)])
        await rig.event(event)
        await rig.settle()
        refusal, answer = rig.thread(event["ts"])
        assert refusal == "small.jpg is 30 MB; the limit is 2 MB."  # from Content-Length, unread
        assert answer == rig.router.reply
        assert len(rig.slack.file_downloads) == 1


async def test_pings_in_the_question_are_never_pings_in_any_reply() -> None:
    async with slack_rig() as rig:
        rig.router.responder = echo
        await rig.event(slack_mention(PING_ATTEMPTS))
        assert await _ask(rig, PING_ATTEMPTS) == 200
        await rig.settle()
        texts = [posted.text for posted in rig.everything_posted()]
        asker = f"*<@{USER}> asks:* "
        [question] = [text for text in texts if text.startswith(asker)]
        others = [text for text in texts if text != question]
        # The /ask echo names its asker on purpose (one person, no channel-wide ping); nothing else pings.
        assert slack_pings([question.removeprefix(asker), *others]) == []
        assert sum(text.startswith(ANSWER_PREFIX) for text in others) == 2


async def _ask(rig: SlackRig, text: str) -> int:
    body = command_body(
        "/ask", text, channel=CHANNEL, user=USER, response_url=rig.slack.response_url()
    )
    return await rig.post(body, sign(body), "application/x-www-form-urlencoded")


# --- Slack payloads with missing or broken parts ---


def _without(event: dict[str, Any], *keys: str) -> str:
    return event_body({k: v for k, v in event.items() if k not in keys})


def _envelope_without(*keys: str) -> Callable[[dict[str, Any]], str]:
    def body(event: dict[str, Any]) -> str:
        envelope = json.loads(event_body(event))
        return json.dumps({k: v for k, v in envelope.items() if k not in keys})

    return body


# (id, body from a fresh mention event, HTTP statuses accepted, what the user must see or None for silence)
PAYLOADS: list[tuple[str, Callable[[dict[str, Any]], str], tuple[int, ...], str | None]] = [
    ("event-without-user", lambda e: _without(e, "user"), (200,), None),
    ("event-without-ts", lambda e: _without(e, "ts"), (200,), None),
    ("event-without-channel", lambda e: _without(e, "channel"), (200,), None),
    ("event-without-text", lambda e: _without(e, "text"), (200,), HINT),
    ("event-without-type", lambda e: _without(e, "type"), (404,), None),
    (
        "file-without-any-field",
        lambda e: event_body({**e, "files": [{"id": "F0BARE"}]}),
        (200,),
        "F0BARE",
    ),
    ("envelope-without-event", _envelope_without("event"), (404,), None),
    (
        "envelope-without-team",
        _envelope_without("team_id", "authorizations"),
        (200,),
        ANSWER_PREFIX,
    ),
    ("envelope-without-type", _envelope_without("type"), (404,), None),
    ("not-json", lambda e: "{nope", (400,), None),
    ("json-null", lambda e: "null", (400,), None),
    ("json-list", lambda e: "[1, 2, 3]", (400,), None),
    ("nested-100000-deep", lambda e: "[" * 100_000 + "]" * 100_000, (400,), None),
]


@pytest.mark.parametrize(
    "make_body, statuses, shown", [p[1:] for p in PAYLOADS], ids=[p[0] for p in PAYLOADS]
)
async def test_a_broken_slack_payload_is_refused_or_answered_and_the_app_keeps_serving(
    make_body: Callable[[dict[str, Any]], str], statuses: tuple[int, ...], shown: str | None
) -> None:
    async with slack_rig() as rig:
        rig.router.responder = echo
        event = slack_mention("are you there?")
        body = make_body(copy.deepcopy(event))
        assert await rig.post(body, sign(body)) in statuses
        await rig.settle()
        texts = rig.thread(event["ts"])
        if shown is None:
            assert texts == [] and rig.router.chat_requests == []
        else:
            assert any(shown in text for text in texts), texts
        await _still_answers(rig)


async def test_signed_bytes_that_are_not_utf8_get_400_and_the_app_keeps_serving() -> None:
    async with slack_rig() as rig:
        raw = b'{"type": "event_callback", "event": {"text": "caf\xe9 \xff\xfe"}}'
        status = await rig.post(raw, _sign_bytes(raw))
        assert status == 400 and rig.router.chat_requests == []
        await _still_answers(rig)


async def test_an_oversized_body_gets_413_before_any_parsing() -> None:
    async with slack_rig() as rig:
        body = json.dumps({"type": "event_callback", "padding": "x" * (3 * MB)})
        assert await rig.post(body, sign(body)) == 413
        await _still_answers(rig)


@pytest.mark.parametrize("missing", ["channel_id", "user_id", "team_id", "command"])
async def test_a_slash_command_missing_a_field_is_acked_and_the_app_keeps_serving(
    missing: str,
) -> None:
    async with slack_rig() as rig:
        form = dict(
            parse_qsl(
                command_body(
                    "/ask", "hi", channel=CHANNEL, user=USER, response_url=rig.slack.response_url()
                )
            )
        )
        form.pop(missing)
        body = urlencode(form)
        assert await rig.post(body, sign(body), "application/x-www-form-urlencoded") in (200, 404)
        await rig.settle()
        assert rig.router.chat_requests == []  # such a command is never answered…
        await _still_answers(rig)  # …and costs nothing else


async def _still_answers(rig: SlackRig) -> None:
    rig.router.responder = echo
    before = len(rig.router.chat_requests)
    event = slack_mention("still there?")
    assert await rig.event(event) == 200
    await rig.settle()
    assert rig.thread(event["ts"])[-1].startswith(ANSWER_PREFIX)
    assert len(rig.router.chat_requests) == before + 1


def _sign_bytes(raw: bytes) -> dict[str, str]:
    """Slack's signature over raw bytes (the fake's `sign` takes text)."""
    stamp = str(int(time.time()))
    digest = hmac.new(SIGNING_SECRET.encode(), b"v0:" + stamp.encode() + b":" + raw, hashlib.sha256)
    return {"X-Slack-Request-Timestamp": stamp, "X-Slack-Signature": f"v0={digest.hexdigest()}"}
