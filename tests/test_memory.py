"""Memory people can feel, end to end: speakers, summaries of what no longer fits, image captions,
quoted replies and forwards — the real core and openai SDK against the fake OpenRouter."""

from __future__ import annotations

import asyncio
import io
import json
import re
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest
from PIL import Image

from bot.app import build_conversations
from bot.config import Secrets, Settings
from bot.context import SUMMARY_HEADER
from bot.conversations import Conversations, Status
from bot.ledger import open_ledger, utc_day
from bot.memory.speakers import SPEAKERS_NOTE
from bot.messages import ConversationKey, ImageRef, IncomingMessage, QuotedMessage
from bot.tokens import TokenCounter
from tests.core_support import counted_tokens, message_texts
from tests.fakes.openrouter import FAKE_API_KEY, FakeOpenRouter
from tests.fakes.sink import RecordingSink
from tests.redis_support import delete_prefix, require_redis, store_url, unique_prefix

KEY = ConversationKey("test", "w1", "c1", "t1")
CONTEXT = 1024
MAX_OUTPUT = 128
MARGIN = 16
FACT = re.compile(r"fact-\d+ is \w+")
_ids = iter(range(10**9))


def _settings(fake: FakeOpenRouter, store: str, **overrides: Any) -> Settings:
    values: dict[str, Any] = {
        "base_url": fake.base_url,
        "store_url": store,
        "max_retries": 0,
        "request_timeout_seconds": 5,
        "user_messages_per_minute": 0,
        "context_length": CONTEXT,
        "max_output_tokens": MAX_OUTPUT,
        "safety_margin_tokens": MARGIN,
    }
    values.update(overrides)
    return Settings(**values)


def _summariser(body: dict[str, Any]) -> str:
    """The fake model: answers "Noted …"; asked for a summary, it keeps every marked fact it is shown."""
    if body.get("stream"):
        return "Noted. " + "I will keep that in mind for later questions. " * 3
    shown = json.dumps(body["messages"], ensure_ascii=False)
    return "Known facts: " + "; ".join(sorted(set(FACT.findall(shown)))) + "."


@pytest.fixture
async def fake() -> AsyncIterator[FakeOpenRouter]:
    async with FakeOpenRouter() as server:
        server.responder = _summariser
        yield server


async def _service(settings: Settings) -> Conversations:
    service = build_conversations(settings, Secrets(openrouter_api_key=FAKE_API_KEY))
    await service.start()
    return service


@pytest.fixture
async def service(fake: FakeOpenRouter, tmp_path: Path) -> AsyncIterator[Conversations]:
    conversations = await _service(_settings(fake, f"sqlite:///{tmp_path / 'g.db'}"))
    yield conversations
    await conversations.close()


def _message(text: str, *, user: str = "u1", name: str = "", **extra: Any) -> IncomingMessage:
    return IncomingMessage(
        key=extra.pop("key", KEY),
        message_id=f"m{next(_ids)}",
        author_id=user,
        author_name=name,
        text=text,
        **extra,
    )


def _jpeg(colour: str = "blue") -> bytes:
    buffer = io.BytesIO()
    Image.new("RGB", (320, 240), colour).save(buffer, "JPEG")
    return buffer.getvalue()


def _answers(fake: FakeOpenRouter) -> list[dict[str, Any]]:
    return [r.body for r in fake.chat_requests if r.body.get("stream")]


def _summaries(fake: FakeOpenRouter) -> list[dict[str, Any]]:
    return [r.body for r in fake.chat_requests if not r.body.get("stream")]


def _fact_message(i: int) -> str:
    colour = ["red", "teal", "amber", "violet", "olive"][i % 5]
    return f"Remember this: fact-{i} is {colour}. " + "Some chatter around it, nothing more. " * 6


# --- speakers ---


async def test_two_people_in_a_thread_both_reach_the_model_by_name(
    service: Conversations, fake: FakeOpenRouter
) -> None:
    await service.handle(
        _message("I think it's a heron", user="u1", name="alice", shared=True), RecordingSink()
    )
    await service.handle(
        _message("No, an egret", user="u2", name="Bob <@U999>\nevil", shared=True), RecordingSink()
    )

    texts = message_texts(_answers(fake)[-1])
    assert SPEAKERS_NOTE.strip() in texts[0]
    assert "alice: I think it's a heron" in texts
    assert texts[-1] == "Bob evil: No, an egret"  # one line, no mention syntax


async def test_names_are_not_sent_in_a_one_person_conversation(
    service: Conversations, fake: FakeOpenRouter
) -> None:
    await service.handle(_message("hello there", name="alice"), RecordingSink())
    texts = message_texts(_answers(fake)[-1])
    assert texts[-1] == "hello there" and SPEAKERS_NOTE.strip() not in texts[0]


async def test_speakers_survive_a_restart(fake: FakeOpenRouter, tmp_path: Path) -> None:
    settings = _settings(fake, f"sqlite:///{tmp_path / 'g.db'}")
    first = await _service(settings)
    await first.handle(_message("the boat is red", name="alice", shared=True), RecordingSink())
    await first.close()
    second = await _service(settings)
    try:
        await second.handle(_message("and the sail?", name="bob", shared=True), RecordingSink())
    finally:
        await second.close()
    assert "alice: the boat is red" in message_texts(_answers(fake)[-1])


# --- summaries ---


async def test_a_long_conversation_keeps_its_first_fact_in_a_summary_and_never_overflows(
    service: Conversations, fake: FakeOpenRouter
) -> None:
    counter = TokenCounter()
    for i in range(20):
        outcome = await service.handle(_message(_fact_message(i)), RecordingSink())
        assert outcome.status is Status.ANSWERED
        assert outcome.request is not None
        assert outcome.request.prompt_tokens <= outcome.request.budget
        await service.idle()

    for body in _answers(fake):
        assert counted_tokens(body, counter) + MAX_OUTPUT + MARGIN <= CONTEXT
    for body in _summaries(fake):
        assert counted_tokens(body, counter) + body["max_tokens"] + MARGIN <= CONTEXT
        assert body["stream"] is False and "stream_options" not in body

    last = _answers(fake)[-1]
    first_turn_sent = any("fact-0 is red" in text for text in message_texts(last)[1:])
    assert not first_turn_sent, "the first turns should have been dropped by now"
    assert SUMMARY_HEADER.strip() in last["messages"][0]["content"]
    assert "fact-0 is red" in last["messages"][0]["content"]
    all_text = "\n".join(message_texts(last))
    assert all(f"fact-{i} is" in all_text for i in range(20))
    # Several answers per summary call, not one each.
    assert 1 <= len(_summaries(fake)) <= 8


async def test_no_answer_waits_for_a_summary(service: Conversations, fake: FakeOpenRouter) -> None:
    for i in range(8):
        await service.handle(_message(_fact_message(i)), RecordingSink())
        await service.idle()
    made = len(_summaries(fake))
    fake.hang_next(30)  # the next request hangs: it is the summary the next answer leaves behind
    fake.scripted = lambda body: not body.get("stream")
    for i in range(8, 12):
        outcome = await asyncio.wait_for(
            service.handle(_message(_fact_message(i)), RecordingSink()), timeout=5
        )
        assert outcome.status is Status.ANSWERED
    assert len(_summaries(fake)) == made + 1  # hung, and no second fold started meanwhile


async def test_a_failed_summary_call_leaves_the_answer_alone_and_is_tried_again(
    service: Conversations, fake: FakeOpenRouter, caplog: pytest.LogCaptureFixture
) -> None:
    fake.scripted = lambda body: not body.get("stream")
    fake.fail_next(500, times=50)
    for i in range(10):
        sink = RecordingSink()
        outcome = await service.handle(_message(_fact_message(i)), sink)
        assert outcome.status is Status.ANSWERED and sink.final and sink.final.startswith("Noted")
        await service.idle()
    assert _summaries(fake), "a fold was due"
    assert "summary of test:w1:c1:t1 skipped: the model call failed" in caplog.text
    assert SUMMARY_HEADER.strip() not in _answers(fake)[-1]["messages"][0]["content"]
    metrics = service.metrics.render().decode()
    assert 'glimpse_summaries_total{result="failed"}' in metrics


async def test_the_summary_survives_a_restart_and_goes_with_reset(
    fake: FakeOpenRouter, tmp_path: Path
) -> None:
    settings = _settings(fake, f"sqlite:///{tmp_path / 'g.db'}")
    first = await _service(settings)
    for i in range(10):
        await first.handle(_message(_fact_message(i)), RecordingSink())
        await first.idle()
    await first.close()
    assert _summaries(fake)

    second = await _service(settings)
    try:
        await second.handle(_message("What was fact-0?"), RecordingSink())
        assert "fact-0 is red" in _answers(fake)[-1]["messages"][0]["content"]
        assert await second.reset(KEY)
        await second.handle(_message("What was fact-0?"), RecordingSink())
        assert _answers(fake)[-1]["messages"][0]["content"] == settings.system_prompt
        assert len(_answers(fake)[-1]["messages"]) == 2
    finally:
        await second.close()


async def test_summaries_can_be_turned_off(fake: FakeOpenRouter, tmp_path: Path) -> None:
    service = await _service(_settings(fake, f"sqlite:///{tmp_path / 'g.db'}", summaries=False))
    try:
        for i in range(12):
            await service.handle(_message(_fact_message(i)), RecordingSink())
            await service.idle()
    finally:
        await service.close()
    assert not _summaries(fake)
    assert SUMMARY_HEADER.strip() not in _answers(fake)[-1]["messages"][0]["content"]


async def test_a_summary_is_charged_as_its_own_kind_of_call(
    service: Conversations, fake: FakeOpenRouter, tmp_path: Path
) -> None:
    for i in range(10):
        await service.handle(_message(_fact_message(i)), RecordingSink())
        await service.idle()
    ledger = open_ledger(f"sqlite:///{tmp_path / 'g.db'}")
    await ledger.open()
    try:
        rows = {row.group: row for row in await ledger.usage(utc_day(), utc_day(), "kind")}
    finally:
        await ledger.close()
    assert rows["answer"].answers == 10 and rows["answer"].summaries == 0
    assert rows["summary"].summaries == len(_summaries(fake)) >= 1
    assert rows["summary"].answers == 0 and rows["summary"].prompt_tokens > 0
    metrics = service.metrics.render().decode()
    assert 'glimpse_summaries_total{result="made"} ' in metrics
    made = re.search(r'glimpse_summaries_total\{result="made"\} (\S+)', metrics)
    assert made is not None and float(made.group(1)) >= 1
    assert re.search(r'glimpse_prompt_tokens_total\{[^}]*kind="summary"[^}]*\} [1-9]', metrics)


async def test_two_processes_on_one_redis_make_one_summary(fake: FakeOpenRouter) -> None:
    require_redis()
    prefix = unique_prefix()
    settings = _settings(fake, store_url(prefix))
    first, second = await _service(settings), await _service(settings)
    try:
        fake.scripted = lambda body: not body.get("stream")
        fake.hang_next(1.0)  # the first fold is slow: the other process's fold comes meanwhile
        i = 0
        while not _summaries(fake):
            assert i < 20, "a fold should have been due by now"
            await first.handle(_message(_fact_message(i)), RecordingSink())
            await asyncio.sleep(0.1)
            i += 1
        await second.handle(_message(_fact_message(i)), RecordingSink())
        await asyncio.gather(first.idle(), second.idle())
        assert len(_summaries(fake)) == 1
        skipped = second.metrics.render().decode()
        assert re.search(r'glimpse_summaries_total\{result="skipped"\} 1\.0', skipped)
        await second.handle(_message("What was fact-0?"), RecordingSink())
        assert "fact-0 is red" in _answers(fake)[-1]["messages"][0]["content"]
    finally:
        await first.close()
        await second.close()
        await delete_prefix(prefix)


# --- images in words ---


async def test_an_older_image_is_described_by_what_the_model_said_about_it(
    service: Conversations, fake: FakeOpenRouter
) -> None:
    fake.responder = lambda body: "A blue square on white." if body.get("stream") else "x"
    first = ImageRef(filename="first.jpg", data=_jpeg("blue"), mime_type="image/jpeg")
    await service.handle(_message("What is this?", images=(first,)), RecordingSink())
    fake.responder = lambda body: "A red square." if body.get("stream") else "x"
    second = ImageRef(filename="second.jpg", data=_jpeg("red"), mime_type="image/jpeg")
    await service.handle(_message("And this?", images=(second,)), RecordingSink())
    await service.handle(_message("And the first photo?"), RecordingSink())

    texts = message_texts(_answers(fake)[-1])
    older = next(text for text in texts if "first.jpg" in text)
    assert 'no longer visible. What you said about it then: "A blue square on white."' in older


# --- quoted replies and forwards ---


async def test_a_reply_to_someones_photo_brings_it_with_its_author(
    service: Conversations, fake: FakeOpenRouter
) -> None:
    photo = ImageRef(filename="cat.jpg", data=_jpeg("orange"), mime_type="image/jpeg")
    quoted = QuotedMessage(
        kind="reply",
        text="look at my cat",
        message_id="q1",
        author_id="u2",
        author_name="bob",
        images=(photo,),
    )
    message = _message("what breed is it?", name="alice", shared=True, quoted=(quoted,))
    assert (await service.handle(message, RecordingSink())).status is Status.ANSWERED

    body = _answers(fake)[-1]
    texts = message_texts(body)
    assert texts[-2] == (
        "bob: [attached image: cat.jpg]\n[the message alice is replying to]\nlook at my cat"
    )
    assert texts[-1] == "alice: what breed is it?"
    assert body["messages"][-2]["content"][0]["type"] == "image_url"

    # Quoting the same message again does not bring it in twice.
    again = _message("and its age?", name="alice", shared=True, quoted=(quoted,))
    await service.handle(again, RecordingSink())
    assert sum("look at my cat" in text for text in message_texts(_answers(fake)[-1])) == 1


async def test_a_bare_mention_replying_to_a_message_asks_about_it(
    service: Conversations, fake: FakeOpenRouter
) -> None:
    quoted = QuotedMessage(kind="reply", text="the build fails on arm64", author_name="bob")
    outcome = await service.handle(_message("", quoted=(quoted,)), RecordingSink())
    assert outcome.status is Status.ANSWERED
    texts = message_texts(_answers(fake)[-1])
    assert texts[-2] == "[the message I am replying to, from bob]\nthe build fails on arm64"
    assert texts[-1] == "What can you tell me about this message?"


async def test_a_forwarded_photo_is_part_of_the_forwarders_turn(
    service: Conversations, fake: FakeOpenRouter
) -> None:
    photo = ImageRef(filename="receipt.jpg", data=_jpeg("white"), mime_type="image/jpeg")
    forward = QuotedMessage(kind="forward", text="total 42 EUR", images=(photo,))
    message = _message("", name="carol", shared=True, quoted=(forward,))
    assert (await service.handle(message, RecordingSink())).status is Status.ANSWERED

    body = _answers(fake)[-1]
    assert body["messages"][-1]["content"][0]["type"] == "image_url"
    assert message_texts(body)[-1] == (
        "carol: [attached image: receipt.jpg]\n[forwarded message]\ntotal 42 EUR"
    )
