"""Slack payloads to IncomingMessage, and the model's Markdown to mrkdwn that never pings anyone."""

from __future__ import annotations

from typing import Any

import pytest

from adapters.slack_events import (
    conversation_key,
    from_command,
    from_event,
    ignore_reason,
    mentions,
)
from adapters.slack_format import from_slack, is_reset, to_mrkdwn, to_native_markdown
from adapters.slack_sink import question_text

BOT = "U0GLIMPSE"
TOKEN = "xoxb-test.token"


# --- Markdown out ---


@pytest.mark.parametrize(
    "markdown, mrkdwn",
    [
        ("**bold** and *italic* and ~~gone~~", "*bold* and _italic_ and ~gone~"),
        ("## A heading", "*A heading*"),
        (
            "see [the docs](https://example.com/a?b=1&c=2)",
            "see <https://example.com/a?b=1&amp;c=2|the docs>",
        ),
        ("2 * 3 * 4 = 24", "2 * 3 * 4 = 24"),
        ("a < b && c > d", "a &lt; b &amp;&amp; c &gt; d"),
        ("`**not bold**`", "`**not bold**`"),
        (
            "```python\nif a < b:\n    print('**x**')\n```",
            "```\nif a &lt; b:\n    print('**x**')\n```",
        ),
    ],
)
def test_markdown_becomes_mrkdwn(markdown: str, mrkdwn: str) -> None:
    assert to_mrkdwn(markdown) == mrkdwn


@pytest.mark.parametrize(
    "ping",
    [
        "<!channel>",
        "<!here>",
        "<!everyone>",
        "<@U0BOB0002>",
        "<!subteam^S123|@team>",
        "<#C0GENERAL1>",
    ],
)
def test_no_ping_markup_survives_in_mrkdwn_or_in_code(ping: str) -> None:
    for text in (
        f"hey {ping} look",
        f"`{ping}`",
        f"```\n{ping}\n```",
        f"**{ping}**",
        f"[x]({ping})",
    ):
        rendered = to_mrkdwn(text)
        assert "<!" not in rendered and "<@" not in rendered and "<#" not in rendered


def test_native_markdown_defuses_pings_but_keeps_markdown() -> None:
    rendered = to_native_markdown("**hi** <!channel> <@U1> a < b")
    assert "<!" not in rendered and "<@" not in rendered
    assert rendered.startswith("**hi**") and rendered.endswith("a < b")


# --- Slack text in ---


def test_slack_markup_becomes_plain_text_without_the_bots_mention() -> None:
    text = f"<@{BOT}> what about <@U0BOB0002|bob> in <#C1|general>? <https://a.example|site> &lt;3 &amp; <!here>"
    assert (
        from_slack(text, bot_user_id=BOT)
        == "what about @bob in #general? site (https://a.example) <3 & @here"
    )


def test_question_text_mentions_the_asker_only_and_escapes_the_rest() -> None:
    assert question_text("U0ALICE01", "is <!channel> & me ok?") == (
        "*<@U0ALICE01> asks:* is &lt;!channel&gt; &amp; me ok?"
    )


@pytest.mark.parametrize(
    "text, expected",
    [
        ("reset", True),
        (" Reset! ", True),
        ("/reset", True),
        ("reset the router", False),
        ("", False),
    ],
)
def test_reset_words(text: str, expected: bool) -> None:
    assert is_reset(text) is expected


# --- events to IncomingMessage ---


def _event(**extra: Any) -> dict[str, Any]:
    return {
        "type": "message",
        "user": "U0ALICE01",
        "text": f"<@{BOT}> what is this?",
        "ts": "1700000000.000300",
        "channel": "C0GENERAL1",
        "channel_type": "channel",
        **extra,
    }


def test_a_top_level_mention_starts_a_conversation_keyed_by_its_own_ts() -> None:
    message = from_event(_event(), team_id="T1", bot_user_id=BOT, bot_token=TOKEN)
    assert message.key == conversation_key("T1", "C0GENERAL1", "1700000000.000300")
    assert message.message_id == "C0GENERAL1:1700000000.000300"
    assert (
        message.text == "what is this?"
        and message.author_id == "U0ALICE01"
        and not message.is_direct
    )


def test_a_reply_belongs_to_its_threads_conversation_and_keeps_its_own_id() -> None:
    message = from_event(
        _event(thread_ts="1700000000.000100"), team_id="T1", bot_user_id=BOT, bot_token=TOKEN
    )
    assert message.key.thread == "1700000000.000100"
    assert message.message_id == "C0GENERAL1:1700000000.000300"


def test_images_and_files_carry_the_bearer_token_and_files_without_a_url_are_named() -> None:
    files = [
        {
            "id": "F1",
            "name": "cat.png",
            "mimetype": "image/png",
            "size": 1234,
            "url_private": "https://files.slack.com/files-pri/T1-F1/cat.png",
            "url_private_download": "https://files.slack.com/files-pri/T1-F1/download/cat.png",
        },
        {
            "id": "F2",
            "name": "notes.pdf",
            "mimetype": "application/pdf",
            "url_private": "https://files.slack.com/x",
        },
        {"id": "F3", "name": "gone.png", "mimetype": "image/png", "mode": "tombstone"},
    ]
    message = from_event(_event(files=files), team_id="T1", bot_user_id=BOT, bot_token=TOKEN)
    [image] = message.images
    assert image.url == "https://files.slack.com/files-pri/T1-F1/download/cat.png"
    assert image.headers == {"Authorization": f"Bearer {TOKEN}"}
    assert (image.mime_type, image.size, image.filename) == ("image/png", 1234, "cat.png")
    assert TOKEN not in repr(image)
    [notes] = message.files
    assert (notes.filename, notes.url, notes.mime_type, notes.size) == (
        "notes.pdf",
        "https://files.slack.com/x",
        "application/pdf",
        None,
    )
    assert notes.headers == {"Authorization": f"Bearer {TOKEN}"}
    assert message.other_files == ("gone.png",)


def test_a_direct_message_is_direct() -> None:
    message = from_event(
        _event(channel="D0DM", channel_type="im", text="hi"),
        team_id="T1",
        bot_user_id=BOT,
        bot_token=TOKEN,
    )
    assert message.is_direct and message.text == "hi"


@pytest.mark.parametrize(
    "extra, ignored",
    [
        ({}, False),
        ({"subtype": "file_share"}, False),
        ({"subtype": "thread_broadcast"}, False),
        ({"subtype": "message_changed"}, True),
        ({"subtype": "message_deleted"}, True),
        ({"subtype": "channel_join"}, True),
        ({"subtype": "bot_message", "bot_id": "B1"}, True),
        ({"bot_id": "B0GLIMPSE"}, True),
        ({"user": None}, True),
    ],
)
def test_only_people_talking_are_not_ignored(extra: dict[str, Any], ignored: bool) -> None:
    assert (ignore_reason(_event(**extra)) is not None) is ignored


def test_mentions_sees_only_the_bots_own_mention() -> None:
    assert mentions(_event(), BOT)
    assert not mentions(_event(text="<@U0BOB0002> hi"), BOT)
    assert not mentions(_event(), None)


def test_an_ask_command_is_answered_in_the_thread_of_the_posted_question() -> None:
    command = {
        "team_id": "T1",
        "channel_id": "C0GENERAL1",
        "user_id": "U0ALICE01",
        "user_name": "alice",
    }
    message = from_command(command, question_ts="1700000000.000900", text="why?")
    assert message.key == conversation_key("T1", "C0GENERAL1", "1700000000.000900")
    assert message.message_id == "C0GENERAL1:1700000000.000900"
    assert (message.author_id, message.author_name, message.text) == ("U0ALICE01", "alice", "why?")
