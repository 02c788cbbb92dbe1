"""The "Ask Glimpse about this" message shortcut, signed over HTTP and through Socket Mode, against the fakes."""

from __future__ import annotations

import json
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest
import yaml

from adapters.slack import SlackAdapter
from adapters.slack_shortcuts import FILE_QUESTION, IMAGE_QUESTION, intro_text
from bot.app import build_conversations
from bot.config import Secrets, Settings, SlackSettings
from tests.fakes.openrouter import FAKE_API_KEY, FakeOpenRouter
from tests.fakes.slack import APP_TOKEN, BOT_TOKEN, FakeSlack, sign
from tests.fakes.slack_assistant import shortcut_body, shortcut_payload
from tests.test_slack import (
    CHANNEL,
    OTHER_CHANNEL,
    OTHER_USER,
    USER,
    Harness,
    message,
    png,
    running,
    user_texts,
)
from tests.test_slack_modes import until

ROOT = Path(__file__).parent.parent


@pytest.fixture
async def harness() -> AsyncIterator[Harness]:
    async with running() as h:
        yield h


async def shortcut(harness: Harness, target: dict[str, Any], **options: Any) -> int:
    body = shortcut_body(
        target,
        user=USER,
        channel=str(target["channel"]),
        response_url=harness.slack.response_url(),
        **options,
    )
    resp = await harness.post(body, sign(body), "application/x-www-form-urlencoded")
    return resp.status


def bobs_photo(harness: Harness, *, text: str = "", thread_ts: str | None = None) -> dict[str, Any]:
    file = harness.slack.add_file("boat.png", png(), "image/png")
    return harness.slack.add_user_message(
        CHANNEL, OTHER_USER, text, files=[file], thread_ts=thread_ts
    )


async def test_shortcut_on_someones_photo_answers_in_its_thread_and_takes_follow_ups(
    harness: Harness,
) -> None:
    photo = bobs_photo(harness, text="look what I found")
    assert await shortcut(harness, photo) == 200
    await harness.settle()

    intro, answer = harness.slack.thread(CHANNEL, photo["ts"])
    assert intro.text == intro_text(USER)
    assert answer.text == harness.router.reply
    [body] = harness.chat_bodies()
    # Bob's message comes as what is asked about, under his name, with its picture; then Alice's question.
    quoted, asked = user_texts(body)
    assert quoted.startswith("Bob Stone: ") and quoted.endswith("\nlook what I found")
    assert "[the message Alice is replying to]" in quoted
    assert asked == f"Alice: {IMAGE_QUESTION}"
    assert any(part["type"] == "image_url" for part in body["messages"][-2]["content"])
    assert harness.slack.file_downloads[0][1] == f"Bearer {BOT_TOKEN}"

    # The thread is Glimpse's now: a reply there needs no mention.
    await harness.event(message("what colour is it?", thread_ts=photo["ts"]))
    await harness.settle()
    assert len(harness.slack.thread(CHANNEL, photo["ts"])) == 3
    assert user_texts(harness.chat_bodies()[1])[-1] == "Alice: what colour is it?"


async def test_shortcut_on_a_reply_answers_in_the_thread_it_is_in(harness: Harness) -> None:
    root = harness.slack.add_user_message(CHANNEL, OTHER_USER, "deploy failed")
    file = harness.slack.add_file("deploy.log", b"ERROR: disk full\n", "text/plain")
    reply = harness.slack.add_user_message(
        CHANNEL, OTHER_USER, "", files=[file], thread_ts=root["ts"]
    )
    await shortcut(harness, reply)
    await harness.settle()
    assert [m.text for m in harness.slack.thread(CHANNEL, root["ts"])] == [
        intro_text(USER),
        harness.router.reply,
    ]
    assert user_texts(harness.chat_bodies()[0])[-1] == f"Alice: {FILE_QUESTION}"


async def test_shortcut_on_a_message_without_files_explains_only_to_the_asker(
    harness: Harness,
) -> None:
    plain = harness.slack.add_user_message(CHANNEL, OTHER_USER, "just words")
    assert await shortcut(harness, plain) == 200
    await harness.settle()
    [response] = harness.slack.responses
    assert response["response_type"] == "ephemeral" and "no image or file" in response["text"]
    assert harness.slack.calls_to("chat.postMessage") == []
    assert harness.router.chat_requests == []


async def test_shortcut_where_glimpse_cannot_post_tells_the_asker_how_to_add_it(
    harness: Harness,
) -> None:
    harness.slack.not_member_of.add(OTHER_CHANNEL)
    file = harness.slack.add_file("boat.png", png(), "image/png")
    photo = harness.slack.add_user_message(OTHER_CHANNEL, OTHER_USER, "", files=[file])
    await shortcut(harness, photo)
    await harness.settle()
    [response] = harness.slack.responses
    assert "/invite @glimpse" in response["text"] and response["response_type"] == "ephemeral"
    assert harness.router.chat_requests == []


async def test_shortcut_with_another_callback_id_is_not_ours(harness: Harness) -> None:
    photo = bobs_photo(harness)
    await shortcut(harness, photo, callback_id="someone_elses")
    await harness.settle()
    assert harness.slack.calls_to("chat.postMessage") == []


async def test_shortcut_arrives_through_socket_mode_too() -> None:
    async with FakeOpenRouter() as router, FakeSlack() as slack:
        settings = Settings(
            store_url="memory://",
            base_url=router.base_url,
            slack=SlackSettings(update_interval_seconds=0.05),
        )
        secrets = Secrets(
            openrouter_api_key=FAKE_API_KEY,
            slack_bot_token=BOT_TOKEN,
            slack_app_token=APP_TOKEN,
            slack_api_url=slack.api_url,
        )
        conversations = build_conversations(settings, secrets)
        await conversations.start()
        adapter = SlackAdapter(conversations, settings, secrets, http=False)
        try:
            await adapter.connect_socket_mode()
            await slack.wait_for_socket()
            file = slack.add_file("boat.png", png(), "image/png")
            photo = slack.add_user_message(CHANNEL, OTHER_USER, "", files=[file])
            payload = shortcut_payload(
                photo, user=USER, channel=CHANNEL, response_url=slack.response_url()
            )
            envelope = await slack.send_envelope(payload, kind="interactive")
            await until(lambda: len(slack.thread(CHANNEL, photo["ts"])) == 2, "the answer")
            await until(lambda: slack.socket_acks, "the ack")
            await adapter.drain()
        finally:
            await adapter.close()
            await conversations.close()
    assert [ack["envelope_id"] for ack in slack.socket_acks] == [envelope]
    assert slack.thread(CHANNEL, photo["ts"])[1].text == router.reply


def test_both_manifests_offer_the_shortcut_with_interactivity_on() -> None:
    for name in ("slack-manifest.yaml", "slack-manifest-agent.yaml"):
        manifest = yaml.safe_load((ROOT / "config" / name).read_text(encoding="utf-8"))
        [entry] = manifest["features"]["shortcuts"]
        assert entry["type"] == "message"
        assert entry["callback_id"] == SlackSettings().shortcut
        assert len(entry["description"]) <= 150 and entry["name"] == "Ask Glimpse about this"
        assert manifest["settings"]["interactivity"]["is_enabled"] is True
        assert "commands" in manifest["oauth_config"]["scopes"]["bot"]
    assert json.dumps(manifest)  # plain data, no YAML-only types
