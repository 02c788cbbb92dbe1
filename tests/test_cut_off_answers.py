"""An answer cancelled mid-stream (Ctrl-C in the terminal, a shutdown) keeps what arrived, marked."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from bot.app import build_conversations
from bot.config import Secrets, Settings
from bot.conversations import CUT_OFF_NOTE, Conversations
from bot.messages import ConversationKey, IncomingMessage
from tests.fakes.openrouter import FAKE_API_KEY, FakeOpenRouter
from tests.fakes.sink import RecordingSink

REPLY = "One two three four five six seven eight nine ten eleven twelve."
KEY = ConversationKey("test", "w1", "c1", "t1")


@pytest.fixture
async def fake() -> AsyncIterator[FakeOpenRouter]:
    async with FakeOpenRouter(reply=REPLY, chunks=12, chunk_delay_seconds=0.2) as server:
        yield server


@pytest.fixture
async def service(fake: FakeOpenRouter, tmp_path: Path) -> AsyncIterator[Conversations]:
    settings = Settings(
        base_url=fake.base_url,
        store_url=f"sqlite:///{tmp_path / 'glimpse.db'}",
        user_messages_per_minute=0,
    )
    conversations = build_conversations(settings, Secrets(openrouter_api_key=FAKE_API_KEY))
    await conversations.start()
    yield conversations
    await conversations.close()


class _WatchedSink(RecordingSink):
    """A RecordingSink that says when the answer started and when its first text arrived."""

    def __init__(self) -> None:
        super().__init__()
        self.began = asyncio.Event()
        self.text_arrived = asyncio.Event()

    async def start(self) -> None:
        await super().start()
        self.began.set()

    async def update(self, text: str) -> None:
        await super().update(text)
        self.text_arrived.set()


def _message(text: str, message_id: str) -> IncomingMessage:
    return IncomingMessage(key=KEY, message_id=message_id, author_id="u1", text=text)


async def _cancel_when(service: Conversations, sink: RecordingSink, event: asyncio.Event) -> None:
    task = asyncio.create_task(service.handle(_message("Count to twelve.", "m1"), sink))
    await asyncio.wait_for(event.wait(), timeout=10)
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await task


async def test_a_cancelled_answer_is_remembered_as_far_as_it_got_and_marked(
    service: Conversations, fake: FakeOpenRouter
) -> None:
    sink = _WatchedSink()
    await _cancel_when(service, sink, sink.text_arrived)
    partial = sink.updates[-1]
    assert partial and REPLY.startswith(partial) and partial != REPLY
    assert sink.final is None and sink.failed is None  # the adapter that cancelled says so itself

    await service.handle(_message("Go on.", "m2"), RecordingSink())
    messages = fake.chat_requests[-1].body["messages"]
    assert [m["role"] for m in messages] == ["system", "user", "assistant", "user"]
    assert messages[1]["content"] == "Count to twelve."
    assert messages[2]["content"] == f"{partial}\n\n{CUT_OFF_NOTE}"


async def test_an_answer_cancelled_before_any_text_leaves_no_turns(
    service: Conversations, fake: FakeOpenRouter
) -> None:
    fake.first_token_latency_seconds = 5.0
    sink = _WatchedSink()
    await _cancel_when(service, sink, sink.began)
    assert not sink.updates

    fake.first_token_latency_seconds = 0.0
    await service.handle(_message("Anyone?", "m2"), RecordingSink())
    assert [m["role"] for m in fake.chat_requests[-1].body["messages"]] == ["system", "user"]
