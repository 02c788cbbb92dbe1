"""The conversation the model sees on Slack: who said what, and the thread a question was asked in."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import AsyncIterator
from typing import Any

import pytest

from adapters import slack_context, slack_people
from adapters.slack_events import message_id, parent_author, quotable
from adapters.slack_format import from_slack
from adapters.slack_lookups import LookupCache
from adapters.slack_people import display_name
from tests.core_support import record_handed_over
from tests.fakes.slack import BOT_ID, BOT_TOKEN, BOT_USER_ID, Posted
from tests.test_slack import (
    CHANNEL,
    DM,
    OTHER_USER,
    USER,
    Harness,
    mention,
    message,
    next_ts,
    png,
    running,
    user_texts,
)

GROUP_DM = "G0ALICEBOB"  # a group DM (mpim): several people, so shared


@pytest.fixture
async def harness() -> AsyncIterator[Harness]:
    async with running() as h:
        yield h


def user_contents(body: dict[str, Any]) -> list[Any]:
    return [m["content"] for m in body["messages"] if m["role"] == "user"]


def warnings_about(caplog: pytest.LogCaptureFixture, text: str) -> list[str]:
    return [
        r.getMessage()
        for r in caplog.records
        if r.levelno == logging.WARNING and text in r.getMessage()
    ]


# --- speakers ---


async def test_two_people_in_one_thread_reach_the_model_by_their_display_names(
    harness: Harness,
) -> None:
    seen = record_handed_over(harness.conversations)
    first = mention("is this mushroom edible?")
    await harness.event(first)
    await harness.settle()
    await harness.event(message("I would not eat it", thread_ts=first["ts"], user=OTHER_USER))
    await harness.settle()

    assert [(m.author_name, m.shared) for m in seen] == [("Alice", True), ("Bob Stone", True)]
    assert user_texts(harness.chat_bodies()[-1]) == [
        "Alice: is this mushroom edible?",
        "Bob Stone: I would not eat it",
    ]
    assert harness.slack.calls_to("conversations.replies") == []  # a thread we answered in


async def test_without_users_read_people_are_named_by_id_and_one_warning_says_the_fix(
    harness: Harness, caplog: pytest.LogCaptureFixture
) -> None:
    harness.slack.withheld_scopes.add("users:read")  # installed from the old manifest
    first = mention("hello")
    with caplog.at_level("DEBUG", logger="glimpse.slack"):
        await harness.event(first)
        await harness.settle()
        await harness.event(message("hi both", thread_ts=first["ts"], user=OTHER_USER))
        await harness.settle()

    assert user_texts(harness.chat_bodies()[-1]) == [f"{USER}: hello", f"{OTHER_USER}: hi both"]
    assert len(harness.slack.thread(CHANNEL, first["ts"])) == 2  # both answered
    [warning] = warnings_about(caplog, "users.info")
    assert "users:read" in warning and "reinstall" in warning


async def test_a_direct_message_is_not_name_prefixed(harness: Harness) -> None:
    seen = record_handed_over(harness.conversations)
    await harness.event(message("hi, what can you do?", channel=DM, channel_type="im"))
    await harness.settle()
    [incoming] = seen
    assert (incoming.shared, incoming.is_direct, incoming.author_name) == (False, True, "Alice")
    assert user_texts(harness.chat_bodies()[0]) == ["hi, what can you do?"]


async def test_a_group_dm_is_name_prefixed(harness: Harness) -> None:
    seen = record_handed_over(harness.conversations)
    await harness.event(
        {**mention("hi both", channel=GROUP_DM, kind="message"), "channel_type": "mpim"}
    )
    await harness.event(mention("and you?", channel=GROUP_DM))  # app_mention: no channel_type
    await harness.settle()
    assert [(m.shared, m.is_direct) for m in seen] == [(True, False), (True, False)]
    assert user_texts(harness.chat_bodies()[-1]) == ["Alice: and you?"]


async def test_names_are_looked_up_once_per_person(harness: Harness) -> None:
    first = mention("first")
    await harness.event(first)
    await harness.settle()
    for user, text in [(OTHER_USER, "second"), (USER, "third"), (OTHER_USER, "fourth")]:
        await harness.event(message(text, thread_ts=first["ts"], user=user))
        await harness.settle()
    # A mention arrives twice (app_mention and message) at once: the two share one look-up.
    await asyncio.gather(
        harness.event(mention("<@U0CAROL03> look", ts=(ts := next_ts()))),
        harness.event(mention("<@U0CAROL03> look", ts=ts, kind="message")),
    )
    await harness.settle()

    looked_up = [call.args["user"] for call in harness.slack.calls_to("users.info")]
    assert sorted(looked_up) == sorted([USER, OTHER_USER, "U0CAROL03"])
    assert len(harness.router.chat_requests) == 5


async def test_slash_command_askers_are_named_by_display_name(harness: Harness) -> None:
    seen = record_handed_over(harness.conversations)
    await harness.command("what is a lighthouse?")
    await harness.settle()
    [incoming] = seen
    assert (incoming.author_name, incoming.shared) == ("Alice", True)


async def test_slash_command_falls_back_to_the_commands_user_name(harness: Harness) -> None:
    harness.slack.withheld_scopes.add("users:read")
    seen = record_handed_over(harness.conversations)
    await harness.command("what is a lighthouse?", channel=DM)
    await harness.settle()
    [incoming] = seen
    assert (incoming.author_name, incoming.shared) == ("alice", False)


async def test_other_peoples_mentions_become_names_and_pings_stay_out_of_answers(
    harness: Harness,
) -> None:
    harness.router.reply = "Ask <@U0BOB0002> or @Bob Stone"
    event = mention("what does <@U0BOB0002> think, and <@U0NOBODY9>?")
    await harness.event(event)
    await harness.settle()
    assert user_texts(harness.chat_bodies()[0]) == [
        "Alice: what does @Bob Stone think, and @U0NOBODY9?"
    ]
    [answer] = harness.slack.thread(CHANNEL, event["ts"])
    assert "<@" not in answer.text


async def test_a_slow_users_info_costs_the_name_not_the_answer(
    harness: Harness, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(slack_people, "LOOKUP_TIMEOUT_SECONDS", 0.1)
    harness.slack.delay_seconds["users.info"] = 1.0
    await harness.event(mention("still there?"))
    await harness.settle()
    assert user_texts(harness.chat_bodies()[0]) == [f"{USER}: still there?"]


# --- the thread a question is asked in ---


async def test_a_mention_in_someone_elses_thread_brings_its_first_message_and_photo(
    harness: Harness,
) -> None:
    seen = record_handed_over(harness.conversations)
    photo = harness.slack.add_file("cat.png", png("orange"), "image/png")
    parent = harness.slack.add_user_message(
        CHANNEL, OTHER_USER, "look at my cat, <@U0ALICE01>", files=[photo]
    )
    event = mention("what breed is it?", thread_ts=parent["ts"])
    await harness.event(event)
    await harness.settle()

    [call] = harness.slack.calls_to("conversations.replies")
    assert (call.args["ts"], call.args["limit"]) == (parent["ts"], "1")
    [quote] = seen[0].quoted
    assert (quote.kind, quote.message_id, quote.author_id, quote.author_name) == (
        "reply",
        message_id(CHANNEL, parent["ts"]),
        OTHER_USER,
        "Bob Stone",
    )
    assert quote.text == "look at my cat, @Alice"
    assert quote.images[0].headers == {"Authorization": f"Bearer {BOT_TOKEN}"}
    [(path, authorization)] = harness.slack.file_downloads
    assert path.endswith("/cat.png") and authorization == f"Bearer {BOT_TOKEN}"

    [body] = harness.chat_bodies()
    texts = user_texts(body)
    assert any("Bob Stone" in t and "look at my cat, @Alice" in t for t in texts)
    assert texts[-1] == "Alice: what breed is it?"
    parts = [p for c in user_contents(body) if isinstance(c, list) for p in c]
    assert [p["type"] for p in parts].count("image_url") == 1
    assert len(harness.slack.thread(CHANNEL, parent["ts"])) == 1


async def test_the_thread_is_read_once_for_a_mention_delivered_twice(harness: Harness) -> None:
    parent = harness.slack.add_user_message(CHANNEL, OTHER_USER, "deploy failed again")
    ts = next_ts()
    await asyncio.gather(
        harness.event(mention("why?", ts=ts, thread_ts=parent["ts"])),
        harness.event(mention("why?", ts=ts, thread_ts=parent["ts"], kind="message")),
    )
    await harness.settle()
    assert len(harness.slack.calls_to("conversations.replies")) == 1
    assert len(harness.router.chat_requests) == 1


async def test_a_thread_we_already_answered_in_is_not_read_again(harness: Harness) -> None:
    parent = harness.slack.add_user_message(CHANNEL, OTHER_USER, "deploy failed again")
    await harness.event(mention("why?", thread_ts=parent["ts"]))
    await harness.settle()
    await harness.event(mention("and now?", thread_ts=parent["ts"]))
    await harness.settle()
    assert len(harness.slack.calls_to("conversations.replies")) == 1
    texts = user_texts(harness.chat_bodies()[-1])
    assert sum("deploy failed again" in t for t in texts) == 1


async def test_a_thread_under_the_bots_own_message_brings_nothing(harness: Harness) -> None:
    ours = Posted(CHANNEL, next_ts(), "*<@U0ALICE01> asks:* what is a lighthouse?", None)
    harness.slack.messages.append(ours)
    seen = record_handed_over(harness.conversations)
    await harness.event(mention("and a windmill?", thread_ts=ours.ts))
    await harness.settle()
    assert seen[0].quoted == ()
    assert user_texts(harness.chat_bodies()[0]) == ["Alice: and a windmill?"]


@pytest.mark.parametrize("failure", ["missing_scope", "not_in_channel", "timeout"])
async def test_an_unreadable_thread_loses_only_its_first_message(
    harness: Harness,
    caplog: pytest.LogCaptureFixture,
    monkeypatch: pytest.MonkeyPatch,
    failure: str,
) -> None:
    parent = harness.slack.add_user_message(CHANNEL, OTHER_USER, "deploy failed again")
    if failure == "missing_scope":
        harness.slack.withheld_scopes.add("channels:history")
    elif failure == "timeout":
        monkeypatch.setattr(slack_context, "PARENT_TIMEOUT_SECONDS", 0.1)
        harness.slack.delay_seconds["conversations.replies"] = 1.0
    else:
        harness.slack.fail_next("conversations.replies", failure)
    event = mention("why?", thread_ts=parent["ts"])
    with caplog.at_level("WARNING", logger="glimpse.slack"):
        await harness.event(event)
        await harness.settle()
    assert user_texts(harness.chat_bodies()[0]) == ["Alice: why?"]
    assert len(harness.slack.thread(CHANNEL, parent["ts"])) == 1
    [warning] = warnings_about(caplog, "first message")
    assert ("channels:history" in warning) is (failure == "missing_scope")


# --- the pieces ---


def test_display_name_prefers_display_then_real_then_user_name() -> None:
    assert display_name({"name": "al", "profile": {"display_name": "Al", "real_name": "A L"}}) == (
        "Al"
    )
    assert display_name({"name": "al", "profile": {"display_name": " ", "real_name": "A L"}}) == (
        "A L"
    )
    assert display_name({"name": "al", "real_name": "", "profile": {}}) == "al"
    assert display_name({"name": "al\nx", "profile": {"display_name": "x" * 200}}) == "x" * 80


def test_from_slack_names_people_but_drops_the_bots_own_mention() -> None:
    text = f"<@{BOT_USER_ID}> ask <@U0BOB0002> and <@U0CAROL03|carol>"
    names = {"U0BOB0002": "Bob Stone"}
    assert from_slack(text, bot_user_id=BOT_USER_ID, names=names) == "ask @Bob Stone and @carol"


def _reply(**extra: Any) -> dict[str, Any]:
    return {"ts": "2.0", "thread_ts": "1.0", **extra}


@pytest.mark.parametrize(
    "parent, expected",
    [
        ({"ts": "1.0", "user": OTHER_USER, "text": "hi"}, True),
        ({"ts": "1.0", "bot_id": "B0ALERTS", "subtype": "bot_message", "text": "alert"}, True),
        ({"ts": "1.0", "user": OTHER_USER, "text": "", "files": [{"id": "F1"}]}, True),
        ({"ts": "1.0", "user": BOT_USER_ID, "bot_id": BOT_ID, "text": "ours"}, False),
        ({"ts": "1.0", "bot_id": BOT_ID, "subtype": "bot_message", "text": "ours"}, False),
        ({"ts": "1.0", "user": OTHER_USER, "subtype": "tombstone", "text": "deleted"}, False),
        ({"ts": "1.0", "user": OTHER_USER, "text": ""}, False),
        ({"ts": "0.5", "user": OTHER_USER, "text": "another thread"}, False),
    ],
)
def test_which_first_messages_come_along(parent: dict[str, Any], expected: bool) -> None:
    assert quotable(parent, _reply(), bot_user_id=BOT_USER_ID, bot_id=BOT_ID) is expected


def test_the_mention_itself_is_never_its_own_parent() -> None:
    top = {"ts": "1.0", "thread_ts": "1.0", "user": USER, "text": "hi"}
    assert not quotable(top, top, bot_user_id=BOT_USER_ID, bot_id=BOT_ID)


def test_a_bots_first_message_is_attributed_to_the_bot() -> None:
    alert = {"bot_id": "B0ALERTS", "bot_profile": {"name": "PagerBot"}, "text": "down"}
    assert parent_author(alert) == ("B0ALERTS", "PagerBot")
    assert parent_author({"user": OTHER_USER}) == (OTHER_USER, "")


async def test_lookup_cache_shares_calls_expires_and_stays_bounded() -> None:
    now = [0.0]
    calls: list[str] = []

    async def load(key: str) -> tuple[str, float]:
        calls.append(key)
        await asyncio.sleep(0.01)
        return key.upper(), 10.0

    cache: LookupCache[str, str] = LookupCache(load, limit=2, clock=lambda: now[0])
    assert await asyncio.gather(cache.get("a"), cache.get("a")) == ["A", "A"]
    assert calls == ["a"]
    now[0] = 11.0  # expired
    assert await cache.get("a") == "A" and calls == ["a", "a"]
    await cache.get("b")
    await cache.get("c")  # "a" is the least recently used: dropped
    assert len(cache) == 2
    await cache.get("a")
    assert calls == ["a", "a", "b", "c", "a"]
