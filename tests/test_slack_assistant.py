"""Slack's agent/assistant surface end to end: signed events in, assistant.threads.* calls out, answers through the core."""

from __future__ import annotations

import json
import logging
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest
import yaml
from slack_sdk.errors import SlackApiError
from slack_sdk.web.async_client import AsyncWebClient

from adapters.slack import SlackAdapter
from adapters.slack_assistant import (
    PROMPTS_TITLE,
    STATUS_FILE,
    STATUS_IMAGE,
    STATUS_THINKING,
    title_for,
)
from bot.app import build_conversations
from bot.config import DEFAULT_SUGGESTED_PROMPTS, Secrets, Settings, SlackSettings, load_settings
from bot.messages import ConversationKey, ImageRef, IncomingMessage
from tests.fakes.openrouter import FAKE_API_KEY, FakeOpenRouter
from tests.fakes.slack import APP_TOKEN, BOT_TOKEN, FakeSlack, event_body, sign
from tests.fakes.slack_assistant import (
    app_home_opened,
    assistant_thread_started,
    context_changed,
    shortcut_body,
)
from tests.test_slack import (
    CHANNEL,
    DM,
    USER,
    Harness,
    mention,
    message,
    next_ts,
    png,
    running,
)
from tests.test_slack_modes import until

ROOT = Path(__file__).parent.parent
DEFAULT_PROMPTS = [{"title": p.title, "message": p.message} for p in DEFAULT_SUGGESTED_PROMPTS]
ASSISTANT_METHODS = (
    "assistant.threads.setStatus",
    "assistant.threads.setSuggestedPrompts",
    "assistant.threads.setTitle",
)


@pytest.fixture
async def harness() -> AsyncIterator[Harness]:
    async with running(assistant=True) as h:
        yield h


def dm(text: str, *, thread_ts: str | None = None, **extra: Any) -> dict[str, Any]:
    return message(text, channel=DM, channel_type="im", thread_ts=thread_ts, **extra)


def statuses(harness: Harness) -> list[tuple[str, str]]:
    return [
        (c.args["thread_ts"], c.args["status"])
        for c in harness.slack.calls_to("assistant.threads.setStatus")
    ]


def assistant_calls(slack: FakeSlack) -> list[str]:
    return [c.method for c in slack.calls if c.method in ASSISTANT_METHODS]


# --- a new thread: suggested prompts ---


async def test_a_new_assistant_thread_gets_the_suggested_prompts_in_that_thread(
    harness: Harness,
) -> None:
    root = next_ts()
    assert await harness.event(assistant_thread_started(USER, DM, root)) == 200
    await harness.settle()
    [call] = harness.slack.calls_to("assistant.threads.setSuggestedPrompts")
    assert call.args == {
        "channel_id": DM,
        "thread_ts": root,
        "prompts": DEFAULT_PROMPTS,
        "title": PROMPTS_TITLE,
    }


async def test_opening_the_messages_tab_in_agent_view_offers_prompts_to_the_dm_itself() -> None:
    prompts = [{"title": "Receipt", "message": "Total the receipt I'm about to upload."}]
    async with running(assistant=True, suggested_prompts=prompts) as harness:
        assert await harness.event(app_home_opened(USER, DM)) == 200
        assert await harness.event(app_home_opened(USER, DM, tab="home")) == 200
        await harness.settle()
        # No thread_ts: Slack drops prompts sent with one to an agent_view app.
        [call] = harness.slack.calls_to("assistant.threads.setSuggestedPrompts")
        assert call.args == {"channel_id": DM, "prompts": prompts, "title": PROMPTS_TITLE}


async def test_moving_around_with_the_pane_open_calls_nothing(harness: Harness) -> None:
    calls = len(harness.slack.calls)
    assert await harness.event(context_changed(USER, DM, next_ts())) == 200
    await harness.settle()
    # Bolt's default would store the context through conversations.replies and chat.update.
    assert [c.method for c in harness.slack.calls[calls:] if c.method != "auth.test"] == []


# --- a question: title, status, answer ---


async def test_a_question_in_an_assistant_thread_gets_a_title_a_status_and_the_answer(
    harness: Harness,
) -> None:
    root = next_ts()
    file = harness.slack.add_file("boat.png", png(), "image/png")
    first = dm("  what   boat\nis this?  ", thread_ts=root, files=[file])
    assert await harness.event(first) == 200
    await harness.settle()

    [answer] = harness.slack.thread(DM, root)
    assert answer.text == harness.router.reply
    [title] = harness.slack.calls_to("assistant.threads.setTitle")
    assert title.args == {"channel_id": DM, "thread_ts": root, "title": "what boat is this?"}
    assert statuses(harness) == [(root, STATUS_IMAGE), (root, "")]
    # The status was set before the answer was posted and cleared after it.
    methods = [c.method for c in harness.slack.calls]
    set_at, cleared_at = [i for i, m in enumerate(methods) if m == "assistant.threads.setStatus"]
    answered_at = methods.index("chat.startStream")  # native streaming, the default
    assert set_at < answered_at < cleared_at
    assert harness.slack.calls_to("reactions.add") == []  # the status replaces :eyes:

    await harness.event(dm("and its colour?", thread_ts=root))
    await harness.settle()
    assert len(harness.slack.thread(DM, root)) == 2
    assert len(harness.slack.calls_to("assistant.threads.setTitle")) == 1  # first question only
    assert statuses(harness)[2:] == [(root, STATUS_THINKING), (root, "")]
    assert len(harness.chat_bodies()[1]["messages"]) > len(harness.chat_bodies()[0]["messages"])


async def test_agent_view_question_is_a_top_level_dm_answered_in_its_own_thread(
    harness: Harness,
) -> None:
    file = harness.slack.add_file("error.log", b"Traceback: boom\n", "text/plain")
    question = dm("", files=[file])
    await harness.event(question)
    await harness.settle()
    ts = question["ts"]
    assert [m.text for m in harness.slack.thread(DM, ts)] == [harness.router.reply]
    assert statuses(harness) == [(ts, STATUS_FILE), (ts, "")]
    [title] = harness.slack.calls_to("assistant.threads.setTitle")
    assert title.args["title"] == "About error.log"


@pytest.mark.parametrize(
    "refusal", ["not_allowed_token_type", "unknown_method", "feature_not_enabled"]
)
async def test_a_workspace_without_the_assistant_features_still_gets_answers_and_one_log_line(
    caplog: pytest.LogCaptureFixture, refusal: str
) -> None:
    async with running(assistant=True) as harness:
        harness.slack.withheld_scopes.add("assistant:write")  # installed from the classic manifest
        harness.slack.fail_next("assistant.threads.setStatus", refusal)
        root = next_ts()
        with caplog.at_level(logging.WARNING, logger="glimpse.slack"):
            await harness.event(assistant_thread_started(USER, DM, root))
            for text in ("first question", "second question"):
                await harness.event(dm(text, thread_ts=root))
                await harness.settle()
        assert len(harness.slack.thread(DM, root)) == 2
        # Each method was tried once, refused, logged once, and left alone afterwards.
        assert assistant_calls(harness.slack) == [
            "assistant.threads.setSuggestedPrompts",
            "assistant.threads.setTitle",
            "assistant.threads.setStatus",
        ]
        warnings = [r.getMessage() for r in caplog.records if "assistant.threads" in r.getMessage()]
        assert len(warnings) == 3
        assert any(refusal in w for w in warnings)
        # Without Slack's status, the :eyes: reaction says Glimpse is working.
        assert len(harness.slack.calls_to("reactions.add")) == 2


async def test_without_the_setting_the_assistant_surface_is_left_alone() -> None:
    async with running() as harness:
        root = next_ts()
        await harness.event(assistant_thread_started(USER, DM, root))
        await harness.event(app_home_opened(USER, DM))
        await harness.event(dm("hello", thread_ts=root))
        await harness.settle()
        assert assistant_calls(harness.slack) == []
        assert len(harness.slack.thread(DM, root)) == 1
        assert harness.slack.calls_to("reactions.add")


# --- titles ---


def _message(text: str, images: tuple[str, ...] = ()) -> IncomingMessage:
    refs = tuple(ImageRef(filename=name, url=f"https://files.example/{name}") for name in images)
    key = ConversationKey("slack", "T", DM, "1.1")
    return IncomingMessage(key=key, message_id="m", author_id=USER, text=text, images=refs)


@pytest.mark.parametrize(
    "text, images, title",
    [
        ("What is this?", (), "What is this?"),
        (" two\n\nlines ", (), "two lines"),
        ("x" * 80, (), "x" * 59 + "…"),
        ("", ("boat.png", "car.png"), "About boat.png"),
        ("", (), "A question"),
    ],
)
def test_the_title_is_the_first_question_on_one_short_line(
    text: str, images: tuple[str, ...], title: str
) -> None:
    assert title_for(_message(text, images)) == title


# --- the fake answers as Slack documents ---


@pytest.mark.parametrize(
    "method, args",
    [
        (
            "assistant_threads_setSuggestedPrompts",
            {"prompts": DEFAULT_PROMPTS + DEFAULT_PROMPTS[:1]},
        ),
        ("assistant_threads_setSuggestedPrompts", {"prompts": [{"title": "no message"}]}),
        ("assistant_threads_setSuggestedPrompts", {"prompts": []}),
        ("assistant_threads_setSuggestedPrompts", {"prompts": DEFAULT_PROMPTS, "colour": "red"}),
        ("assistant_threads_setStatus", {"thread_ts": "1.2", "status": "x", "emoji": ":x:"}),
        ("assistant_threads_setTitle", {"thread_ts": "1.2", "title": "x", "colour": "red"}),
        ("assistant_threads_setTitle", {"thread_ts": "yesterday", "title": "x"}),
    ],
)
async def test_the_fake_refuses_what_slack_does_not_document(
    method: str, args: dict[str, Any]
) -> None:
    async with FakeSlack() as slack:
        client = AsyncWebClient(token=BOT_TOKEN, base_url=slack.api_url)
        with pytest.raises(SlackApiError) as refused:
            await getattr(client, method)(channel_id=DM, **args)
        assert refused.value.response["error"] in {"invalid_arguments", "invalid_thread_ts"}


async def test_the_fake_takes_what_slack_documents() -> None:
    async with FakeSlack() as slack:
        client = AsyncWebClient(token=BOT_TOKEN, base_url=slack.api_url)
        await client.assistant_threads_setSuggestedPrompts(channel_id=DM, prompts=DEFAULT_PROMPTS)
        await client.assistant_threads_setStatus(channel_id=DM, thread_ts="1.2", status="")
        await client.assistant_threads_setTitle(channel_id=DM, thread_ts="1.2", title="Boats")
        assert len(slack.calls) == 3


# --- settings and the manifest ---


def test_suggested_prompts_are_at_most_four_titled_messages() -> None:
    assert SlackSettings().suggested_prompts == list(DEFAULT_SUGGESTED_PROMPTS)
    with pytest.raises(ValueError, match="suggested_prompts"):
        SlackSettings(suggested_prompts=DEFAULT_PROMPTS + DEFAULT_PROMPTS[:1])  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="message"):
        SlackSettings(suggested_prompts=[{"title": "only a title"}])  # type: ignore[list-item]


def test_the_prompts_and_the_switch_come_from_the_environment(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setenv("GLIMPSE_SLACK__ASSISTANT", "true")
    monkeypatch.setenv(
        "GLIMPSE_SLACK__SUGGESTED_PROMPTS", '[{"title": "Receipt", "message": "Total it."}]'
    )
    slack = load_settings().slack
    assert slack.assistant is True
    assert [(p.title, p.message) for p in slack.suggested_prompts] == [("Receipt", "Total it.")]


def _manifest(name: str) -> dict[str, Any]:
    loaded = yaml.safe_load((ROOT / "config" / name).read_text(encoding="utf-8"))
    assert isinstance(loaded, dict)
    return loaded


def test_the_agent_manifest_is_the_classic_one_plus_exactly_the_agent_surface() -> None:
    classic, agent = _manifest("slack-manifest.yaml"), _manifest("slack-manifest-agent.yaml")
    scopes = {
        m: set(m_["oauth_config"]["scopes"]["bot"]) for m, m_ in (("c", classic), ("a", agent))
    }
    assert scopes["a"] - scopes["c"] == {"assistant:write"} and scopes["c"] <= scopes["a"]
    events = {
        m: set(m_["settings"]["event_subscriptions"]["bot_events"])
        for m, m_ in (("c", classic), ("a", agent))
    }
    assert events["a"] - events["c"] == {
        "app_home_opened",
        "assistant_thread_started",
        "assistant_thread_context_changed",
    }
    assert events["c"] <= events["a"] and "message.im" in events["c"]
    assert set(agent["features"]) - set(classic["features"]) == {"agent_view"}
    view = agent["features"]["agent_view"]
    assert len(view["agent_description"]) <= 300
    assert view["suggested_prompts"] == DEFAULT_PROMPTS
    # Everything else is the classic manifest's.
    for section in ("display_information", "_metadata"):
        assert agent[section] == classic[section]
    for feature in classic["features"]:
        assert agent["features"][feature] == classic["features"][feature]
    assert {k: v for k, v in agent["settings"].items() if k != "event_subscriptions"} == {
        k: v for k, v in classic["settings"].items() if k != "event_subscriptions"
    }


async def test_channel_mentions_keep_their_reaction_and_get_no_assistant_calls(
    harness: Harness,
) -> None:
    question = mention("what is this?")
    await harness.event(question)
    await harness.settle()
    assert len(harness.slack.thread(CHANNEL, question["ts"])) == 1
    assert assistant_calls(harness.slack) == []
    assert harness.slack.calls_to("reactions.add")


async def test_a_new_thread_through_socket_mode_gets_its_prompts() -> None:
    async with FakeOpenRouter() as router, FakeSlack() as slack:
        settings = Settings(
            store_url="memory://", base_url=router.base_url, slack=SlackSettings(assistant=True)
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
            root = next_ts()
            payload = json.loads(event_body(assistant_thread_started(USER, DM, root)))
            envelope = await slack.send_envelope(payload)
            await until(lambda: slack.calls_to("assistant.threads.setSuggestedPrompts"), "prompts")
            await until(lambda: slack.socket_acks, "the ack")
            await adapter.drain()
        finally:
            await adapter.close()
            await conversations.close()
    assert [ack["envelope_id"] for ack in slack.socket_acks] == [envelope]
    [call] = slack.calls_to("assistant.threads.setSuggestedPrompts")
    assert call.args["thread_ts"] == root


async def test_an_empty_shortcut_setting_registers_no_shortcut() -> None:
    async with running(shortcut="") as harness:
        file = harness.slack.add_file("boat.png", png(), "image/png")
        photo = harness.slack.add_user_message(CHANNEL, USER, "", files=[file])
        body = shortcut_body(
            photo, user=USER, channel=CHANNEL, response_url=harness.slack.response_url()
        )
        await harness.post(body, sign(body), "application/x-www-form-urlencoded")
        await harness.settle()
        assert harness.slack.calls_to("chat.postMessage") == []
        assert harness.router.chat_requests == []
