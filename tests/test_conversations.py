"""The Conversations service end to end: real openai SDK, fake OpenRouter, real stores and images."""

from __future__ import annotations

import asyncio
import io
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest
from PIL import Image

from bot.app import build_conversations
from bot.config import Secrets, Settings
from bot.conversations import Conversations, Status
from bot.messages import ConversationKey, ImageRef, IncomingMessage
from bot.store import StoreError
from tests import images_corpus as corpus
from tests.fakes.openrouter import FAKE_API_KEY, FakeOpenRouter
from tests.fakes.sink import RecordingSink


def _settings(fake: FakeOpenRouter, tmp_path: Path, **overrides: Any) -> Settings:
    values: dict[str, Any] = {
        "base_url": fake.base_url,
        "store_url": f"sqlite:///{tmp_path / 'glimpse.db'}",
        "max_retries": 2,
        "request_timeout_seconds": 5,
        "user_messages_per_minute": 0,
    }
    values.update(overrides)
    return Settings(**values)


def _secrets() -> Secrets:
    return Secrets(openrouter_api_key=FAKE_API_KEY)


@pytest.fixture
async def fake() -> AsyncIterator[FakeOpenRouter]:
    async with FakeOpenRouter() as server:
        server.responder = lambda body: f"You said: {_last_user_text(body)}"
        yield server


@pytest.fixture
async def service(fake: FakeOpenRouter, tmp_path: Path) -> AsyncIterator[Conversations]:
    conversations = build_conversations(_settings(fake, tmp_path), _secrets())
    await conversations.start()
    yield conversations
    await conversations.close()


def _last_user_text(body: dict[str, Any]) -> str:
    content = body["messages"][-1]["content"]
    if isinstance(content, list):
        return " ".join(part["text"] for part in content if part["type"] == "text")
    return content


_counter = iter(range(10**9))


def _message(
    text: str,
    *,
    thread: str = "t1",
    channel: str = "c1",
    user: str = "u1",
    images: tuple[ImageRef, ...] = (),
    message_id: str | None = None,
    **extra: Any,
) -> IncomingMessage:
    return IncomingMessage(
        key=ConversationKey("test", "w1", channel, thread),
        message_id=message_id or f"m{next(_counter)}",
        author_id=user,
        text=text,
        images=images,
        **extra,
    )


def _jpeg(size: tuple[int, int] = (640, 480), colour: str = "blue") -> bytes:
    buffer = io.BytesIO()
    Image.new("RGB", size, colour).save(buffer, "JPEG")
    return buffer.getvalue()


def _image_parts(body: dict[str, Any]) -> list[dict[str, Any]]:
    return [
        part
        for message in body["messages"]
        if isinstance(message["content"], list)
        for part in message["content"]
        if part["type"] == "image_url"
    ]


async def test_a_message_with_an_image_is_streamed_and_remembered(
    service: Conversations, fake: FakeOpenRouter
) -> None:
    sink = RecordingSink()
    photo = ImageRef(filename="photo.jpg", data=_jpeg(), mime_type="image/jpeg")
    outcome = await service.handle(_message("What is in this image?", images=(photo,)), sink)

    assert outcome.status is Status.ANSWERED
    assert (
        sink.started
        and sink.updates
        and sink.final == "You said: [attached image: photo.jpg]\nWhat is in this image?"
    )
    body = fake.chat_requests[-1].body
    assert body["stream"] is True and body["max_tokens"] == 1024
    user = body["messages"][-1]["content"]
    assert user[0]["type"] == "image_url" and user[0]["image_url"]["url"].startswith(
        "data:image/jpeg;base64,"
    )
    assert user[1]["type"] == "text"
    assert outcome.usage is not None and outcome.usage.cost > 0

    await service.handle(_message("what colour is it?"), RecordingSink())
    follow_up = fake.chat_requests[-1].body
    assert [m["role"] for m in follow_up["messages"]] == ["system", "user", "assistant", "user"]
    assert len(_image_parts(follow_up)) == 1  # the text-only follow-up still sees the image


async def test_two_conversations_never_see_each_others_turns(
    service: Conversations, fake: FakeOpenRouter
) -> None:
    await service.handle(_message("secret plan A", thread="a"), RecordingSink())
    await service.handle(_message("hello from B", thread="b"), RecordingSink())
    body = fake.chat_requests[-1].body
    assert "secret plan A" not in str(body["messages"])


async def test_a_duplicate_message_is_answered_once(
    service: Conversations, fake: FakeOpenRouter
) -> None:
    first = await service.handle(_message("hi", message_id="same"), RecordingSink())
    second = await service.handle(_message("hi", message_id="same"), RecordingSink())
    assert (first.status, second.status) == (Status.ANSWERED, Status.DUPLICATE)
    assert len(fake.chat_requests) == 1


async def test_messages_in_one_thread_are_answered_in_order(
    service: Conversations, fake: FakeOpenRouter
) -> None:
    fake.chunk_delay_seconds = 0.01
    sinks = [RecordingSink() for _ in range(5)]
    await asyncio.gather(*(service.handle(_message(f"n{i}"), sink) for i, sink in enumerate(sinks)))
    # Each request saw all the earlier questions of the thread.
    seen = [_last_user_text(r.body) for r in fake.chat_requests]
    assert seen == [f"n{i}" for i in range(5)]
    assert len(fake.chat_requests[-1].body["messages"]) == 1 + 2 * 4 + 1


async def test_different_threads_run_concurrently(
    service: Conversations, fake: FakeOpenRouter
) -> None:
    fake.first_token_latency_seconds = 0.3
    loop = asyncio.get_running_loop()
    started = loop.time()
    await asyncio.gather(
        *(service.handle(_message("hi", thread=f"t{i}"), RecordingSink()) for i in range(10))
    )
    assert loop.time() - started < 2.0  # ten sequential answers would take over 3 s


async def test_mid_stream_error_shows_what_arrived_plus_a_note(
    service: Conversations, fake: FakeOpenRouter
) -> None:
    fake.responder = None
    fake.reply = "one two three four five six"
    fake.chunks = 6
    fake.error_mid_stream(after_chunks=3)
    sink = RecordingSink()
    outcome = await service.handle(_message("go"), sink)
    assert outcome.status is Status.FAILED
    assert sink.final is None and sink.failed is not None
    assert sink.failed.startswith("one two three")
    assert "cut off" in sink.failed
    assert not await service.is_active(_message("x").key)  # nothing half-finished was remembered


async def test_a_wrong_key_is_a_clear_sentence(fake: FakeOpenRouter, tmp_path: Path) -> None:
    service = build_conversations(
        _settings(fake, tmp_path), Secrets(openrouter_api_key="sk-or-v1-wrong")
    )
    await service.start()
    sink = RecordingSink()
    try:
        outcome = await service.handle(_message("hi"), sink)
    finally:
        await service.close()
    assert outcome.status is Status.FAILED
    assert sink.failed is not None and "key is invalid" in sink.failed


async def test_retries_after_429s_then_answers(
    service: Conversations, fake: FakeOpenRouter
) -> None:
    fake.fail_next(429, times=2, retry_after=0.05)
    sink = RecordingSink()
    outcome = await service.handle(_message("hi"), sink)
    assert outcome.status is Status.ANSWERED
    assert fake.request_count >= 3


async def test_a_broken_image_gets_a_clear_answer_and_the_question_is_still_answered(
    service: Conversations, fake: FakeOpenRouter
) -> None:
    broken = ImageRef(filename="broken.jpg", data=_jpeg()[:200], mime_type="image/jpeg")
    sink = RecordingSink()
    outcome = await service.handle(_message("and this?", images=(broken,)), sink)
    assert outcome.status is Status.ANSWERED
    assert any("broken.jpg" in n for n in sink.notices)
    assert _image_parts(fake.chat_requests[-1].body) == []


async def test_an_image_alone_that_is_refused_is_not_sent_to_the_model(
    service: Conversations, fake: FakeOpenRouter
) -> None:
    # Text labelled as an image is read as text now; binary that is no image is still refused.
    archive = ImageRef(filename="notes.jpg", data=corpus.zip_bytes(), mime_type="image/jpeg")
    sink = RecordingSink()
    outcome = await service.handle(_message("", images=(archive,)), sink)
    assert outcome.status is Status.REJECTED
    assert sink.notices and "notes.jpg is a ZIP archive" in sink.notices[0]
    assert fake.chat_requests == []


async def test_an_empty_mention_gets_a_hint(service: Conversations, fake: FakeOpenRouter) -> None:
    sink = RecordingSink()
    outcome = await service.handle(_message("   "), sink)
    assert outcome.status is Status.REJECTED
    assert "Ask me" in sink.notices[0]
    assert fake.chat_requests == []


async def test_an_image_without_text_gets_a_default_question(
    service: Conversations, fake: FakeOpenRouter
) -> None:
    photo = ImageRef(filename="p.jpg", data=_jpeg(), mime_type="image/jpeg")
    outcome = await service.handle(_message("", images=(photo,)), RecordingSink())
    assert outcome.status is Status.ANSWERED
    assert "What is in this image?" in _last_user_text(fake.chat_requests[-1].body)


async def test_several_images_become_one_labelled_grid(
    service: Conversations, fake: FakeOpenRouter
) -> None:
    images = tuple(
        ImageRef(filename=f"{c}.jpg", data=_jpeg(colour=c)) for c in ("red", "green", "blue")
    )
    await service.handle(_message("compare them", images=images), RecordingSink())
    body = fake.chat_requests[-1].body
    assert len(_image_parts(body)) == 1
    text = _last_user_text(body)
    assert "red.jpg" in text and "green.jpg" in text and "blue.jpg" in text


async def test_non_image_files_get_a_note(service: Conversations) -> None:
    sink = RecordingSink()
    await service.handle(_message("summarise", other_files=("report.pdf",)), sink)
    assert any("report.pdf" in n for n in sink.notices)


async def test_blocked_users_and_rate_limits_are_polite(
    fake: FakeOpenRouter, tmp_path: Path
) -> None:
    service = build_conversations(
        _settings(fake, tmp_path, block_users=["bad"], user_messages_per_minute=2), _secrets()
    )
    await service.start()
    try:
        blocked = RecordingSink()
        assert (await service.handle(_message("hi", user="bad"), blocked)).status is Status.DENIED
        assert blocked.notices
        statuses = [
            (await service.handle(_message("hi", thread=str(i)), RecordingSink())).status
            for i in range(3)
        ]
    finally:
        await service.close()
    assert statuses == [Status.ANSWERED, Status.ANSWERED, Status.RATE_LIMITED]
    assert len(fake.chat_requests) == 2


async def test_history_far_beyond_the_context_never_overflows(
    service: Conversations, fake: FakeOpenRouter
) -> None:
    fake.responder = lambda body: "A fairly long answer about llamas and their habits. " * 30
    for i in range(30):
        await service.handle(_message(f"Tell me more, part {i}. " * 20), RecordingSink())
    for request in fake.chat_requests:
        # The fake counts prompt tokens the same way; the budget is 4096 - 1024 - 64.
        assert request.body["max_tokens"] + _prompt_tokens(request.body) <= 4096
    assert len(fake.chat_requests[-1].body["messages"]) < 61


def _prompt_tokens(body: dict[str, Any]) -> int:
    from bot.tokens import TokenCounter

    counter = TokenCounter()
    total = counter.dialog_overhead()
    for message in body["messages"]:
        content = message["content"]
        if isinstance(content, list):
            text = "".join(p["text"] for p in content if p["type"] == "text")
            total += counter.message(message["role"], text, images=len(content) - 1)
        else:
            total += counter.message(message["role"], content)
    return total


async def test_a_restart_keeps_memory(fake: FakeOpenRouter, tmp_path: Path) -> None:
    first = build_conversations(_settings(fake, tmp_path), _secrets())
    await first.start()
    await first.handle(_message("remember the number 42"), RecordingSink())
    await first.close()

    second = build_conversations(_settings(fake, tmp_path), _secrets())
    await second.start()
    await second.handle(_message("what number?"), RecordingSink())
    await second.close()
    assert "remember the number 42" in str(fake.chat_requests[-1].body["messages"])


async def test_reset_forgets_the_conversation(service: Conversations, fake: FakeOpenRouter) -> None:
    await service.handle(_message("first"), RecordingSink())
    assert await service.reset(_message("x").key)
    await service.handle(_message("second"), RecordingSink())
    assert len(fake.chat_requests[-1].body["messages"]) == 2


class BrokenStore:
    """A store whose every call fails, as when the disk is full or Redis is down."""

    async def open(self) -> None: ...
    async def close(self) -> None: ...

    async def _fail(self, *args: Any, **kwargs: Any) -> Any:
        raise StoreError("database is locked")

    ping = load = append = reset = claim = prune = forget_user = _fail
    load_summary = save_summary = get_channel_model = set_channel_model = channel_models = _fail
    inbox_record = inbox_get = inbox_update = inbox_take = inbox_unfinished = _fail
    inbox_threads = inbox_prune = _fail


async def test_a_store_outage_still_answers_and_says_it_cannot_remember(
    fake: FakeOpenRouter, tmp_path: Path
) -> None:
    service = build_conversations(_settings(fake, tmp_path), _secrets())
    service._store = BrokenStore()  # type: ignore[assignment]
    await service.start()
    sink = RecordingSink()
    try:
        outcome = await service.handle(_message("hi"), sink)
    finally:
        await service.close()
    assert outcome.status is Status.ANSWERED
    assert sink.final == "You said: hi"
    assert any("memory" in n for n in sink.notices)
    assert any("remember" in n for n in sink.notices)


async def test_a_sink_that_breaks_does_not_crash_the_service(service: Conversations) -> None:
    class Exploding(RecordingSink):
        async def update(self, text: str) -> None:
            raise RuntimeError("platform down")

    outcome = await service.handle(_message("hi"), Exploding())
    assert outcome.status is Status.FAILED
    assert (await service.handle(_message("again"), RecordingSink())).status is Status.ANSWERED


async def test_the_model_request_goes_out_while_the_platform_signal_is_still_on_its_way(
    service: Conversations, fake: FakeOpenRouter
) -> None:
    calls: list[str] = []
    requested = asyncio.Event()
    answer = fake.responder

    def responder(body: dict[str, Any]) -> str:
        requested.set()
        return answer(body)

    fake.responder = responder

    class SlowStart(RecordingSink):
        """A platform whose 'working' signal lands only once the model has the request."""

        async def start(self) -> None:
            calls.append("start")
            await asyncio.wait_for(requested.wait(), 5)
            await asyncio.sleep(0.05)  # the model's first chunks arrive meanwhile
            calls.append("started")
            await super().start()

        async def update(self, text: str) -> None:
            calls.append("update")
            await super().update(text)

        async def finish(self, text: str) -> None:
            calls.append("finish")
            await super().finish(text)

    sink = SlowStart()
    outcome = await service.handle(_message("hi"), sink)
    assert outcome.status is Status.ANSWERED and sink.final == "You said: hi"
    assert calls[:2] == ["start", "started"]  # the sink is used again only once it started
    assert calls[-1] == "finish" and "update" in calls


async def test_a_sink_whose_start_fails_fails_the_answer_and_the_service_carries_on(
    service: Conversations, fake: FakeOpenRouter
) -> None:
    class NoStart(RecordingSink):
        async def start(self) -> None:
            await asyncio.sleep(0.01)
            raise RuntimeError("platform down")

    sink = NoStart()
    outcome = await service.handle(_message("hi"), sink)
    assert outcome.status is Status.FAILED
    assert sink.updates == [] and sink.final is None
    assert (await service.handle(_message("again"), RecordingSink())).status is Status.ANSWERED


async def test_turns_older_than_the_retention_are_pruned(
    fake: FakeOpenRouter, tmp_path: Path
) -> None:
    import time as clock

    from bot.store import open_store
    from bot.turns import Turn

    settings = _settings(fake, tmp_path, retention_days=1)
    store = open_store(settings.resolved_store_url())
    await store.open()
    key = _message("x").key
    old = Turn(role="user", text="ancient", tokens=5, created_at=clock.time() - 3 * 86400)
    recent = Turn(role="user", text="fresh", tokens=5, created_at=clock.time())
    await store.append(key, [old, recent])
    await store.close()

    service = build_conversations(settings, _secrets())
    await service.start()
    try:
        for _ in range(100):
            await asyncio.sleep(0.01)
            await service.handle(_message("now?", message_id=None), RecordingSink())
            if "ancient" not in str(fake.chat_requests[-1].body["messages"]):
                break
        messages = str(fake.chat_requests[-1].body["messages"])
    finally:
        await service.close()
    assert "ancient" not in messages and "fresh" in messages


async def test_each_answer_is_logged_with_its_usage(
    service: Conversations, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level("INFO", logger="glimpse.conversations")
    await service.handle(_message("hi"), RecordingSink())
    line = next(r.getMessage() for r in caplog.records if r.getMessage().startswith("answered"))
    assert "prompt tokens" in line and "$0.0000" in line
