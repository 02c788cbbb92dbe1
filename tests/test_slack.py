"""The Slack adapter end to end: signed HTTP requests in, the fake Web API and the fake OpenRouter out."""

from __future__ import annotations

import asyncio
import io
import json
import time
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from dataclasses import dataclass
from typing import Any

import aiohttp
import pytest
from PIL import Image
from slack_sdk.signature import SignatureVerifier

from adapters.slack import SlackAdapter
from adapters.slack_events import conversation_key
from bot.app import build_conversations
from bot.config import DEFAULT_MODEL, Secrets, Settings, SlackSettings
from bot.conversations import Conversations
from bot.messages import ConversationKey
from bot.models.commands import NOT_ADMIN
from tests.fakes.openrouter import FAKE_API_KEY, QWEN_VISION_MODEL, FakeOpenRouter
from tests.fakes.slack import (
    BOT_ID,
    BOT_TOKEN,
    BOT_USER_ID,
    SIGNING_SECRET,
    TEAM_ID,
    FakeSlack,
    command_body,
    event_body,
    sign,
)

USER = "U0ALICE01"
OTHER_USER = "U0BOB0002"
CHANNEL = "C0GENERAL1"
OTHER_CHANNEL = "C0RANDOM02"
DM = "D0ALICEDM1"
_ts_counter = iter(range(500_000, 600_000))  # the fake Slack numbers its own messages from 1


def next_ts() -> str:
    return f"{int(time.time())}.{next(_ts_counter):06d}"


def png(color: str = "red", size: tuple[int, int] = (64, 48)) -> bytes:
    buffer = io.BytesIO()
    Image.new("RGB", size, color).save(buffer, "PNG")
    return buffer.getvalue()


@dataclass
class Harness:
    """The adapter served over real HTTP on 127.0.0.1, wired to the real core and both fakes."""

    slack: FakeSlack
    router: FakeOpenRouter
    adapter: SlackAdapter
    conversations: Conversations
    url: str
    http: aiohttp.ClientSession

    async def post(
        self, body: str, headers: dict[str, str], content_type: str
    ) -> aiohttp.ClientResponse:
        async with self.http.post(
            self.url, data=body, headers={**headers, "Content-Type": content_type}
        ) as resp:
            await resp.read()
            return resp

    async def event(
        self,
        event: dict[str, Any],
        *,
        event_id: str | None = None,
        headers: dict[str, str] | None = None,
    ) -> int:
        body = event_body(event, event_id=event_id)
        resp = await self.post(body, {**sign(body), **(headers or {})}, "application/json")
        return resp.status

    async def command(
        self, text: str, *, command: str = "/ask", channel: str = CHANNEL, user: str = USER
    ) -> tuple[int, str, float]:
        """POST a slash command; (status, response body, seconds until Slack got its answer)."""
        body = command_body(
            command, text, channel=channel, user=user, response_url=self.slack.response_url()
        )
        started = time.perf_counter()
        async with self.http.post(
            self.url,
            data=body,
            headers={**sign(body), "Content-Type": "application/x-www-form-urlencoded"},
        ) as resp:
            text_body = await resp.text()
        return resp.status, text_body, time.perf_counter() - started

    async def settle(self) -> None:
        await asyncio.wait_for(self.adapter.drain(), timeout=10)

    def chat_bodies(self) -> list[dict[str, Any]]:
        return [request.body for request in self.router.chat_requests]


def mention(
    text: str,
    *,
    channel: str = CHANNEL,
    ts: str | None = None,
    thread_ts: str | None = None,
    files: list[dict[str, Any]] | None = None,
    kind: str = "app_mention",
) -> dict[str, Any]:
    event: dict[str, Any] = {
        "type": kind,
        "user": USER,
        "text": f"<@{BOT_USER_ID}> {text}",
        "ts": ts or next_ts(),
        "channel": channel,
        "team": TEAM_ID,
        "client_msg_id": "6d1b3c1e-0000-4000-8000-000000000001",
    }
    if kind == "message":
        event["channel_type"] = "channel"
    if thread_ts:
        event["thread_ts"] = thread_ts
    if files:
        event["files"] = files
    return event


def message(
    text: str,
    *,
    channel: str = CHANNEL,
    thread_ts: str | None = None,
    user: str = USER,
    channel_type: str = "channel",
    **extra: Any,
) -> dict[str, Any]:
    event: dict[str, Any] = {
        "type": "message",
        "user": user,
        "text": text,
        "ts": next_ts(),
        "channel": channel,
        "channel_type": channel_type,
        "team": TEAM_ID,
        **extra,
    }
    if thread_ts:
        event["thread_ts"] = thread_ts
    return event


@asynccontextmanager
async def running(**slack_options: Any) -> AsyncIterator[Harness]:
    async with FakeOpenRouter() as router, FakeSlack() as slack:
        slack.add_user(USER, "alice", display_name="Alice")
        slack.add_user(OTHER_USER, "bob", real_name="Bob Stone")
        options = {"update_interval_seconds": 0.05, **slack_options}
        settings = Settings(
            store_url="memory://",
            base_url=router.base_url,
            admins=[USER],
            slack=SlackSettings(**options),
        )
        secrets = Secrets(
            openrouter_api_key=FAKE_API_KEY,
            slack_bot_token=BOT_TOKEN,
            slack_signing_secret=SIGNING_SECRET,
            slack_api_url=slack.api_url,
        )
        conversations = build_conversations(settings, secrets)
        await conversations.start()
        adapter = SlackAdapter(conversations, settings, secrets, http=True)
        await adapter.check_auth()
        port = await adapter.serve_http("127.0.0.1", 0)
        try:
            async with aiohttp.ClientSession() as http:
                yield Harness(
                    slack,
                    router,
                    adapter,
                    conversations,
                    f"http://127.0.0.1:{port}/slack/events",
                    http,
                )
        finally:
            await adapter.close()
            await conversations.close()


@pytest.fixture
async def harness() -> AsyncIterator[Harness]:
    async with running() as h:
        yield h


@pytest.fixture
async def mrkdwn() -> AsyncIterator[Harness]:
    """Answers edited in with chat.update in a workspace that refused the markdown block: mrkdwn."""
    async with running(native_streaming=False) as h:
        h.adapter.listeners.features.refuse(TEAM_ID, "markdown block", "invalid_blocks")
        yield h


def user_texts(body: dict[str, Any]) -> list[str]:
    """Every user text the model was sent, in order."""
    texts = []
    for msg in body["messages"]:
        if msg["role"] != "user":
            continue
        content = msg["content"]
        parts = (
            [content]
            if isinstance(content, str)
            else [p["text"] for p in content if p["type"] == "text"]
        )
        texts.extend(parts)
    return texts


# --- /ask ---


async def test_slash_command_is_acked_at_once_and_answered_in_the_questions_thread(
    harness: Harness,
) -> None:
    harness.router.first_token_latency_seconds = 0.8  # a slow model: the ack must not wait for it
    status, body, seconds = await harness.command("what is a lighthouse?")
    assert status == 200 and body == "" and seconds < 0.5
    await harness.settle()

    [question] = harness.slack.top_level(CHANNEL)
    assert question.text == f"*<@{USER}> asks:* what is a lighthouse?"
    [answer] = harness.slack.thread(CHANNEL, question.ts)
    assert answer.text == harness.router.reply
    assert user_texts(harness.chat_bodies()[0]) == ["Alice: what is a lighthouse?"]
    # The :eyes: reaction went on the question while the model worked, and is gone now.
    assert [c.args["name"] for c in harness.slack.calls_to("reactions.add")] == ["eyes"]
    assert harness.slack.calls_to("reactions.add")[0].args["timestamp"] == question.ts
    assert harness.slack.reactions[(CHANNEL, question.ts)] == set()


async def test_ask_reads_the_image_the_asker_just_uploaded_to_the_channel(harness: Harness) -> None:
    file = harness.slack.add_file("boat.png", png(), "image/png")
    upload = harness.slack.add_user_message(CHANNEL, USER, "", files=[file])
    harness.slack.add_user_message(CHANNEL, OTHER_USER, "unrelated chatter")
    assert await harness.event(upload) == 200  # an upload without a mention is not a question
    await harness.command("what colour is the boat?")
    await harness.settle()

    [question] = [m for m in harness.slack.top_level(CHANNEL) if "asks:" in m.text]
    assert question.text == f"*<@{USER}> asks:* what colour is the boat? _(about boat.png)_"
    [body] = harness.chat_bodies()
    content = body["messages"][-1]["content"]
    assert [part["type"] for part in content] == ["image_url", "text"]
    assert harness.slack.file_downloads[0][1] == f"Bearer {BOT_TOKEN}"
    assert len(harness.slack.thread(CHANNEL, question.ts)) == 1


async def test_ask_ignores_images_uploaded_by_someone_else(harness: Harness) -> None:
    file = harness.slack.add_file("theirs.png", png("blue"), "image/png")
    harness.slack.add_user_message(CHANNEL, OTHER_USER, "", files=[file])
    await harness.command("what is this?")
    await harness.settle()
    assert harness.slack.file_downloads == []
    assert isinstance(harness.chat_bodies()[0]["messages"][-1]["content"], str)


async def test_empty_ask_gets_a_usage_hint_and_no_model_call(harness: Harness) -> None:
    status, body, _ = await harness.command("   ")
    await harness.settle()
    assert status == 200
    assert json.loads(body)["response_type"] == "ephemeral"
    assert "/ask what does this error mean?" in json.loads(body)["text"]
    assert harness.router.chat_requests == []
    assert harness.slack.calls_to("chat.postMessage") == []


async def test_ask_in_a_channel_without_the_bot_tells_the_user_how_to_add_it(
    harness: Harness,
) -> None:
    harness.slack.not_member_of.add(OTHER_CHANNEL)
    await harness.command("hello?", channel=OTHER_CHANNEL)
    await harness.settle()
    assert harness.router.chat_requests == []
    [response] = harness.slack.responses
    assert "/invite @glimpse" in response["text"] and response["response_type"] == "ephemeral"


# --- mentions and images ---


async def test_mention_with_an_image_downloads_it_with_the_bot_token_and_sends_one_image_first(
    harness: Harness,
) -> None:
    file = harness.slack.add_file("boat.png", png(), "image/png")
    event = mention("what colour is this boat?", files=[file])
    assert await harness.event(event) == 200
    await harness.settle()

    [(path, authorization)] = harness.slack.file_downloads
    assert path.endswith("/download/boat.png") and authorization == f"Bearer {BOT_TOKEN}"
    [body] = harness.chat_bodies()
    content = body["messages"][-1]["content"]
    assert [part["type"] for part in content] == ["image_url", "text"]
    assert content[0]["image_url"]["url"].startswith("data:image/")
    assert content[1]["text"].endswith("what colour is this boat?")
    [answer] = harness.slack.thread(CHANNEL, event["ts"])
    assert answer.text == harness.router.reply


async def test_a_slack_connect_stub_file_is_looked_up_with_files_info(harness: Harness) -> None:
    file = harness.slack.add_file("shared.png", png("green"), "image/png")
    stub = {"id": file["id"], "mode": "hosted", "file_access": "check_file_info"}
    await harness.event(mention("what is this?", files=[stub]))
    await harness.settle()
    assert [call.args["file"] for call in harness.slack.calls_to("files.info")] == [file["id"]]
    [body] = harness.chat_bodies()
    assert body["messages"][-1]["content"][0]["type"] == "image_url"


async def test_an_image_on_the_file_host_without_the_token_is_refused_by_the_fake() -> None:
    async with FakeSlack() as slack, aiohttp.ClientSession() as http:
        file = slack.add_file("cat.png", png(), "image/png")
        async with http.get(file["url_private"], allow_redirects=False) as resp:
            assert resp.status == 302 and "redir" in resp.headers["Location"]
        async with http.get(
            file["url_private"], headers={"Authorization": f"Bearer {BOT_TOKEN}"}
        ) as resp:
            assert resp.status == 200 and await resp.read() == png()


async def test_a_file_glimpse_cannot_read_gets_a_note(harness: Harness) -> None:
    blob = harness.slack.add_file("data.bin", bytes(range(256)) * 4, "application/octet-stream")
    event = mention("what is this file?", files=[blob])
    await harness.event(event)
    await harness.settle()
    texts = [m.text for m in harness.slack.thread(CHANNEL, event["ts"])]
    assert any("data.bin" in text for text in texts)
    [(_, authorization)] = harness.slack.file_downloads  # sniffed: downloaded with the token
    assert authorization == f"Bearer {BOT_TOKEN}"


async def test_a_mention_sent_as_app_mention_and_as_message_is_answered_once(
    harness: Harness,
) -> None:
    event = mention("hello there")
    await harness.event(event)
    await harness.event({**mention("hello there", ts=event["ts"], kind="message")})
    await harness.settle()
    assert len(harness.router.chat_requests) == 1
    assert len(harness.slack.thread(CHANNEL, event["ts"])) == 1


async def test_a_retried_event_is_answered_once(harness: Harness) -> None:
    event = mention("are you there?")
    await harness.event(event, event_id="Ev0RETRY01")
    await harness.event(
        event,
        event_id="Ev0RETRY01",
        headers={"X-Slack-Retry-Num": "1", "X-Slack-Retry-Reason": "http_timeout"},
    )
    await harness.settle()
    assert len(harness.router.chat_requests) == 1
    assert len(harness.slack.thread(CHANNEL, event["ts"])) == 1


# --- threads and memory ---


async def test_a_follow_up_in_the_thread_without_mention_remembers_the_conversation(
    harness: Harness,
) -> None:
    harness.router.responder = lambda body: f"answer {len(body['messages'])}"
    first = mention("my name is Alice")
    await harness.event(first)
    await harness.settle()
    await harness.event(message("what is my name?", thread_ts=first["ts"]))
    await harness.settle()

    bodies = harness.chat_bodies()
    assert len(bodies) == 2
    assert user_texts(bodies[1]) == ["Alice: my name is Alice", "Alice: what is my name?"]
    assert any(
        m["role"] == "assistant" and m["content"] == "answer 2" for m in bodies[1]["messages"]
    )
    assert [m.text for m in harness.slack.thread(CHANNEL, first["ts"])] == ["answer 2", "answer 4"]


async def test_messages_in_threads_the_bot_never_answered_are_ignored(harness: Harness) -> None:
    await harness.event(message("just chatting", thread_ts=next_ts()))
    await harness.event(message("top-level chatter"))
    await harness.settle()
    assert harness.router.chat_requests == []
    assert harness.slack.calls_to("chat.postMessage") == []


async def test_bots_own_messages_edits_and_joins_are_ignored(harness: Harness) -> None:
    first = mention("hi")
    await harness.event(first)
    await harness.settle()
    thread = first["ts"]
    ignored = [
        message("I am the bot", thread_ts=thread, user=BOT_USER_ID, bot_id=BOT_ID),
        message(
            "another bot",
            thread_ts=thread,
            user="U0OTHERBOT",
            bot_id="B0OTHER",
            subtype="bot_message",
        ),
        message("", thread_ts=thread, subtype="message_changed", message={"text": "edited"}),
        message("", thread_ts=thread, subtype="message_deleted"),
        message("<@U0BOB0002> has joined the channel", subtype="channel_join"),
    ]
    for event in ignored:
        assert await harness.event(event) == 200
    await harness.settle()
    assert len(harness.router.chat_requests) == 1


async def test_two_channels_never_share_memory(harness: Harness) -> None:
    harness.router.responder = lambda body: "ok"
    thread = "1700000000.000100"  # the same thread ts in two channels
    await harness.event(mention("the secret word is pineapple", channel=CHANNEL, ts=thread))
    await harness.settle()
    await harness.event(mention("what is the secret word?", channel=OTHER_CHANNEL, ts=thread))
    await harness.settle()
    await harness.event(message("and in here?", channel=CHANNEL, thread_ts=thread))
    await harness.settle()
    first, other, same = harness.chat_bodies()
    assert user_texts(other) == ["Alice: what is the secret word?"]
    assert user_texts(same) == ["Alice: the secret word is pineapple", "Alice: and in here?"]


async def test_direct_messages_are_answered_without_mention(harness: Harness) -> None:
    event = message("hi, what can you do?", channel=DM, channel_type="im")
    await harness.event(event)
    await harness.settle()
    assert len(harness.slack.thread(DM, event["ts"])) == 1


# --- reset ---


async def test_reset_in_a_thread_forgets_it(harness: Harness) -> None:
    first = mention("remember the number 42")
    await harness.event(first)
    await harness.settle()
    await harness.event(message("reset", thread_ts=first["ts"]))
    await harness.settle()
    assert "forgotten" in harness.slack.thread(CHANNEL, first["ts"])[-1].text
    assert not await harness.conversations.is_active(_key(CHANNEL, first["ts"]))
    # The thread is no longer ours: a plain follow-up is ignored, a mention starts afresh.
    await harness.event(message("what was the number?", thread_ts=first["ts"]))
    await harness.event(mention("what was the number?", thread_ts=first["ts"]))
    await harness.settle()
    assert len(harness.router.chat_requests) == 2
    assert user_texts(harness.chat_bodies()[-1]) == ["Alice: what was the number?"]


@pytest.mark.parametrize("command, text", [("/reset", ""), ("/ask", "reset")])
async def test_reset_command_forgets_the_users_latest_conversation_here(
    harness: Harness, command: str, text: str
) -> None:
    await harness.command("remember the number 42")
    await harness.settle()
    [question] = harness.slack.top_level(CHANNEL)
    assert await harness.conversations.is_active(_key(CHANNEL, question.ts))
    status, _, _ = await harness.command(text, command=command)
    await harness.settle()
    assert status == 200
    assert not await harness.conversations.is_active(_key(CHANNEL, question.ts))
    assert "forgotten" in harness.slack.responses[-1]["text"]


# --- /ask model ---


async def _model_command(harness: Harness, text: str, *, user: str = USER) -> dict[str, Any]:
    """`/ask TEXT`'s ephemeral answer, with no question posted and no model call."""
    calls = len(harness.router.chat_requests)
    status, body, _ = await harness.command(text, user=user)
    await harness.settle()
    assert status == 200 and body == ""
    assert len(harness.router.chat_requests) == calls
    response = harness.slack.responses[-1]
    assert response["response_type"] == "ephemeral"
    return response


async def test_an_admin_sets_the_channels_model_and_the_next_answer_uses_it(
    harness: Harness,
) -> None:
    set_reply = await _model_command(harness, f"model {QWEN_VISION_MODEL}")
    assert QWEN_VISION_MODEL in set_reply["text"]
    assert harness.slack.top_level(CHANNEL) == []  # answered to the admin alone

    await harness.command("which model answers here?")
    await harness.settle()
    assert harness.chat_bodies()[-1]["model"] == QWEN_VISION_MODEL
    shown = await _model_command(harness, "model", user=OTHER_USER)
    assert QWEN_VISION_MODEL in shown["text"]

    cleared = await _model_command(harness, "model default")
    assert "back to" in cleared["text"]
    await harness.command("and now?")
    await harness.settle()
    assert harness.chat_bodies()[-1]["model"] == DEFAULT_MODEL


async def test_model_is_refused_to_someone_not_in_admins(harness: Harness) -> None:
    refused = await _model_command(harness, f"model {QWEN_VISION_MODEL}", user=OTHER_USER)
    assert refused["text"] == NOT_ADMIN
    await harness.command("which model answers here?", user=OTHER_USER)
    await harness.settle()
    assert harness.chat_bodies()[-1]["model"] == DEFAULT_MODEL


async def test_model_shows_the_channels_model_and_a_question_about_models_is_still_asked(
    harness: Harness,
) -> None:
    shown = await _model_command(harness, "model")
    assert DEFAULT_MODEL in shown["text"]
    await harness.command("model of this car?")
    await harness.settle()
    assert user_texts(harness.chat_bodies()[-1]) == ["Alice: model of this car?"]


async def test_reset_command_without_a_conversation_explains_where_to_reset(
    harness: Harness,
) -> None:
    await harness.command("", command="/reset")
    await harness.settle()
    assert "`reset`" in harness.slack.responses[-1]["text"]


def _key(channel: str, thread: str) -> ConversationKey:
    return conversation_key(TEAM_ID, channel, thread)


# --- signatures ---


@pytest.mark.parametrize(
    "make_headers",
    [
        lambda body: sign(body, secret="not-the-signing-secret"),
        lambda body: sign(body, timestamp=int(time.time()) - 6 * 60),
        lambda body: {},
    ],
    ids=["bad-signature", "stale-timestamp", "unsigned"],
)
async def test_bad_or_stale_signatures_get_401_and_no_model_call(
    harness: Harness, make_headers: Callable[[str], dict[str, str]]
) -> None:
    body = event_body(mention("sneaky"))
    resp = await harness.post(body, make_headers(body), "application/json")
    command = command_body(
        "/ask", "sneaky", channel=CHANNEL, user=USER, response_url=harness.slack.response_url()
    )
    resp_command = await harness.post(
        command, make_headers(command), "application/x-www-form-urlencoded"
    )
    await harness.settle()
    assert resp.status == 401 and resp_command.status == 401
    assert harness.router.chat_requests == [] and harness.slack.calls_to("chat.postMessage") == []


def test_the_fakes_signatures_are_the_ones_slack_sdk_verifies() -> None:
    body = event_body(mention("x"))
    headers = sign(body)
    verifier = SignatureVerifier(SIGNING_SECRET)
    assert verifier.is_valid(
        body, headers["X-Slack-Request-Timestamp"], headers["X-Slack-Signature"]
    )
    bad = sign(body, secret="other")
    assert not verifier.is_valid(body, bad["X-Slack-Request-Timestamp"], bad["X-Slack-Signature"])


# --- the answer's shape ---


async def test_a_6000_character_answer_is_split_in_two_on_a_paragraph_boundary(
    mrkdwn: Harness,
) -> None:
    paragraphs = [f"Paragraph {i}: " + "lorem ipsum dolor " * 54 for i in range(6)]
    answer = "\n\n".join(p.strip() for p in paragraphs)
    assert 5_900 <= len(answer) <= 6_100
    mrkdwn.router.reply = answer
    event = mention("tell me a long story")
    await mrkdwn.event(event)
    await mrkdwn.settle()
    posted = mrkdwn.slack.thread(CHANNEL, event["ts"])
    assert len(posted) == 2
    assert all(len(m.text) <= 3_900 for m in posted)
    assert posted[0].text.endswith(paragraphs[2].strip()) and posted[1].text.startswith(
        "Paragraph 3:"
    )
    assert "\n\n".join(m.text for m in posted) == answer


async def test_streaming_edits_the_reply_in_place(harness: Harness) -> None:
    harness.router.chunks = 20
    harness.router.chunk_delay_seconds = 0.02
    harness.router.reply = "word " * 200
    event = mention("stream please")
    await harness.event(event)
    await harness.settle()
    [answer] = harness.slack.thread(CHANNEL, event["ts"])
    assert answer.text == harness.router.reply
    assert 2 <= answer.edits < 20  # edited as the text arrived, but throttled: not once per chunk


async def test_channel_pings_in_the_answer_are_escaped(mrkdwn: Harness) -> None:
    mrkdwn.router.reply = (
        "Hey <!channel> and <!here> and <@U0BOB0002>: **done** & [docs](https://example.com)"
    )
    event = mention("ping everyone")
    await mrkdwn.event(event)
    await mrkdwn.settle()
    [answer] = mrkdwn.slack.thread(CHANNEL, event["ts"])
    assert (
        "<!channel>" not in answer.text
        and "<!here>" not in answer.text
        and "<@U0BOB0002>" not in answer.text
    )
    assert answer.text == (
        "Hey &lt;!channel&gt; and &lt;!here&gt; and &lt;@U0BOB0002&gt;: *done* &amp; <https://example.com|docs>"
    )


async def test_an_answer_that_escaping_makes_too_long_is_split_smaller(mrkdwn: Harness) -> None:
    mrkdwn.router.reply = "\n".join(
        "R&D <-> Q&A " * 8 for _ in range(34)
    )  # 3,300 characters, 5,000 escaped
    event = mention("lots of ampersands")
    await mrkdwn.event(event)
    await mrkdwn.settle()
    posted = mrkdwn.slack.thread(CHANNEL, event["ts"])
    assert len(posted) >= 2 and all(len(m.text) <= 3_900 for m in posted)
    assert "\n".join(m.text for m in posted).count("R&amp;D &lt;-&gt; Q&amp;A") == 8 * 34


# --- Slack API errors ---


async def test_a_rate_limited_post_is_retried_after_retry_after(mrkdwn: Harness) -> None:
    mrkdwn.slack.rate_limit_next("chat.postMessage", retry_after=0)
    event = mention("hello")
    await mrkdwn.event(event)
    await mrkdwn.settle()
    assert len(mrkdwn.slack.calls_to("chat.postMessage")) == 2
    assert len(mrkdwn.slack.thread(CHANNEL, event["ts"])) == 1


async def test_msg_too_long_splits_smaller(mrkdwn: Harness) -> None:
    mrkdwn.router.reply = "\n\n".join(f"Part {i}. " + "abc " * 200 for i in range(4))
    mrkdwn.slack.fail_next("chat.postMessage", "msg_too_long")
    event = mention("long one")
    await mrkdwn.event(event)
    await mrkdwn.settle()
    posted = mrkdwn.slack.thread(CHANNEL, event["ts"])
    assert len(posted) >= 2
    assert "\n\n".join(m.text for m in posted) == mrkdwn.router.reply


async def test_not_in_channel_is_logged_and_skipped(
    mrkdwn: Harness, caplog: pytest.LogCaptureFixture
) -> None:
    mrkdwn.slack.fail_next("chat.postMessage", "not_in_channel", times=5)
    event = mention("hello")
    with caplog.at_level("WARNING", logger="glimpse.slack"):
        await mrkdwn.event(event)
        await mrkdwn.settle()
    assert any(
        "cannot post in" in r.getMessage() and "not_in_channel" in r.getMessage()
        for r in caplog.records
    )
    assert mrkdwn.slack.thread(CHANNEL, event["ts"]) == []


# --- native streaming ---


async def test_native_streaming_uses_slacks_stream_methods() -> None:
    async with running(native_streaming=True) as h:
        h.router.reply = "Native <!channel> **answer**"
        event = mention("stream natively")
        await h.event(event)
        await h.settle()
        assert h.slack.calls_to("chat.startStream") and h.slack.calls_to("chat.stopStream")
        assert h.slack.calls_to("chat.startStream")[0].args["recipient_user_id"] == USER
        [answer] = h.slack.thread(CHANNEL, event["ts"])
        assert answer.text.replace("\u200b", "") == h.router.reply
        assert "<!channel>" not in answer.text


async def test_native_streaming_falls_back_to_chat_update_when_slack_refuses_it() -> None:
    async with running(native_streaming=True) as h:
        h.slack.fail_next("chat.startStream", "feature_not_enabled", times=3)
        event = mention("stream natively")
        await h.event(event)
        await h.settle()
        [answer] = h.slack.thread(CHANNEL, event["ts"])
        assert answer.text == h.router.reply
