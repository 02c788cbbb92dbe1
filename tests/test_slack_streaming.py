"""Slack answers as Slack's AI apps show them: native streaming with feedback buttons, the markdown
block, their fallbacks (chat.update, mrkdwn), and a click on the buttons recorded through the core."""

from __future__ import annotations

from typing import Any

import pytest
from slack_sdk.errors import SlackApiError
from slack_sdk.web.async_client import AsyncWebClient

from adapters.slack_blocks import FEEDBACK_ACTION
from adapters.slack_format import to_mrkdwn
from bot.config import DEFAULT_MODEL
from bot.ledger import utc_day
from tests.fakes.slack import (
    BOT_TOKEN,
    TEAM_ID,
    FakeSlack,
    Posted,
    block_actions_body,
    sign,
)
from tests.test_slack import CHANNEL, OTHER_USER, USER, Harness, mention, running

FORM = "application/x-www-form-urlencoded"


async def _ask(h: Harness, text: str = "what is this?") -> list[Posted]:
    event = mention(text)
    await h.event(event)
    await h.settle()
    return h.slack.thread(CHANNEL, event["ts"])


async def _click(h: Harness, posted: Posted, *, good: bool, user: str = USER) -> int:
    action = h.slack.feedback_action(posted, good=good)
    body = block_actions_body(action, posted, user=user, response_url=h.slack.response_url())
    resp = await h.post(body, sign(body), FORM)
    await h.settle()
    return resp.status


async def _ratings(h: Harness) -> dict[str, tuple[int, int]]:
    rows = await h.conversations.feedback._ledger.usage(utc_day(), utc_day(), "model")  # type: ignore[attr-defined]
    return {row.group: (row.good, row.bad) for row in rows if row.good or row.bad}


def _counted(h: Harness, rating: str) -> float:
    value = h.conversations.metrics.registry.get_sample_value(
        "glimpse_feedback_total", {"model": DEFAULT_MODEL, "rating": rating}
    )
    return value or 0.0


# --- native streaming ---


async def test_native_streaming_is_the_default_and_ends_with_feedback_buttons() -> None:
    async with running() as h:
        h.router.reply = "## Result\n\n- a **cat**\n- on a mat"
        [answer] = await _ask(h)

        [start] = h.slack.calls_to("chat.startStream")
        assert start.args["thread_ts"] == answer.thread_ts
        assert (start.args["recipient_user_id"], start.args["recipient_team_id"]) == (USER, TEAM_ID)
        [stop] = h.slack.calls_to("chat.stopStream")
        [block] = stop.args["blocks"]
        [buttons] = block["elements"]
        assert (block["type"], buttons["type"], buttons["action_id"]) == (
            "context_actions",
            "feedback_buttons",
            FEEDBACK_ACTION,
        )
        assert buttons["positive_button"]["value"] == f"good:{DEFAULT_MODEL}"
        assert buttons["negative_button"]["value"] == f"bad:{DEFAULT_MODEL}"
        assert answer.text == h.router.reply and not answer.streaming
        assert not h.slack.calls_to("chat.postMessage") and not h.slack.calls_to("chat.update")


async def test_native_streaming_off_answers_with_chat_update() -> None:
    async with running(native_streaming=False) as h:
        [answer] = await _ask(h)
        assert not h.slack.calls_to("chat.startStream")
        assert answer.text == h.router.reply


async def test_a_workspace_without_native_streaming_falls_back_at_once_and_is_remembered(
    caplog: pytest.LogCaptureFixture,
) -> None:
    async with running() as h:
        h.slack.refuse_streaming = "unknown_method"
        first = await _ask(h, "first")
        second = await _ask(h, "second")

        assert len(h.slack.calls_to("chat.startStream")) == 1  # the second answer did not try
        assert [m.text for m in first + second] == [h.router.reply, h.router.reply]
        assert all(m.blocks[0]["type"] == "markdown" for m in first + second)
        assert "refused native streaming (unknown_method)" in caplog.text


async def test_a_refusal_for_one_message_is_not_remembered_for_the_workspace() -> None:
    async with running() as h:
        h.slack.fail_next("chat.startStream", "restricted_action_thread_locked")
        [first] = await _ask(h, "first")
        [second] = await _ask(h, "second")
        assert len(h.slack.calls_to("chat.startStream")) == 2
        assert first.text == second.text == h.router.reply
        assert not second.streaming and second.blocks[0]["type"] == "context_actions"


async def test_a_stream_that_breaks_midway_goes_on_without_losing_or_repeating_text() -> None:
    async with running() as h:
        h.router.reply = " ".join(f"w{i}" for i in range(300))
        h.router.chunks = 20
        h.router.chunk_delay_seconds = 0.02
        h.slack.fail_next("chat.appendStream", "message_limit_exceeded")
        streamed, *rest = await _ask(h)

        assert streamed.text and rest and not streamed.streaming  # ended where it broke
        shown = " ".join([streamed.text, *(m.text for m in rest)]).split()
        assert shown == h.router.reply.split()
        assert rest[-1].blocks[-1]["type"] == "actions"  # the rest still ends with the buttons


async def test_a_stop_whose_buttons_are_refused_still_ends_the_stream_with_the_whole_answer() -> (
    None
):
    async with running() as h:
        h.slack.fail_next("chat.stopStream", "invalid_blocks")
        [answer] = await _ask(h)

        first, second = h.slack.calls_to("chat.stopStream")
        assert "blocks" in first.args and "blocks" not in second.args
        assert answer.text == h.router.reply and not answer.streaming and not answer.blocks


async def test_an_answer_stopped_in_slack_ends_there() -> None:
    async with running() as h:
        h.router.reply = " ".join(f"w{i}" for i in range(300))
        h.router.chunks = 20
        h.router.chunk_delay_seconds = 0.02
        h.slack.fail_next("chat.appendStream", "stopped_by_user")
        [answer] = await _ask(h)

        assert len(h.slack.calls_to("chat.appendStream")) == 1
        assert not h.slack.calls_to("chat.stopStream") and not h.slack.calls_to("chat.postMessage")
        assert h.router.reply.startswith(answer.text)


# --- feedback ---


async def test_a_click_on_the_feedback_buttons_is_recorded_once_per_person_last_one_wins() -> None:
    async with running() as h:
        [answer] = await _ask(h)

        assert await _click(h, answer, good=True) == 200
        assert await _ratings(h) == {DEFAULT_MODEL: (1, 0)}
        assert await _click(h, answer, good=True) == 200
        assert await _click(h, answer, good=False) == 200
        assert await _click(h, answer, good=True, user=OTHER_USER) == 200

        assert await _ratings(h) == {DEFAULT_MODEL: (1, 1)}
        assert (_counted(h, "good"), _counted(h, "bad")) == (2, 1)


async def test_an_unsigned_click_is_refused_and_not_recorded() -> None:
    async with running() as h:
        [answer] = await _ask(h)
        action = h.slack.feedback_action(answer, good=True)
        body = block_actions_body(action, answer, user=USER, response_url=h.slack.response_url())

        resp = await h.post(body, sign(body, secret="not-the-signing-secret"), FORM)
        await h.settle()

        assert resp.status == 401
        assert await _ratings(h) == {}


async def test_a_click_whose_value_is_not_a_rating_is_acked_and_ignored(
    caplog: pytest.LogCaptureFixture,
) -> None:
    async with running() as h:
        [answer] = await _ask(h)
        action = {**h.slack.feedback_action(answer, good=True), "value": "excellent"}
        body = block_actions_body(action, answer, user=USER, response_url=h.slack.response_url())

        resp = await h.post(body, sign(body), FORM)
        await h.settle()

        assert resp.status == 200
        assert await _ratings(h) == {}
        assert "feedback click without a rating" in caplog.text


async def test_the_chat_update_fallback_ends_with_rating_buttons_that_count_the_same() -> None:
    async with running(native_streaming=False) as h:
        h.router.reply = "One paragraph.\n\nAnother."
        [answer] = await _ask(h)

        markdown, buttons = answer.blocks
        assert markdown == {"type": "markdown", "text": h.router.reply}
        assert [b["action_id"] for b in buttons["elements"]] == [
            f"{FEEDBACK_ACTION}_good",
            f"{FEEDBACK_ACTION}_bad",
        ]
        assert await _click(h, answer, good=False) == 200
        assert await _ratings(h) == {DEFAULT_MODEL: (0, 1)}


# --- the markdown block ---


async def test_answers_are_markdown_blocks_with_the_mrkdwn_conversion_as_their_notification() -> (
    None
):
    async with running(native_streaming=False) as h:
        h.router.reply = "# Heading\n\n> quoted **bold** <!channel>\n\n1. one\n2. two"
        [answer] = await _ask(h)

        assert answer.blocks[0]["type"] == "markdown"
        assert answer.blocks[0]["text"] == h.router.reply.replace("<!", "<\u200b!")
        assert answer.text == to_mrkdwn(h.router.reply)


async def test_a_long_answer_goes_in_markdown_blocks_within_slacks_12000_characters() -> None:
    async with running(native_streaming=False) as h:
        h.router.reply = "\n\n".join(f"Paragraph {i}: " + "lorem ipsum " * 90 for i in range(20))
        posted = await _ask(h)

        texts = [m.blocks[0]["text"] for m in posted]
        assert len(posted) == 2 and all(len(t) <= 12_000 for t in texts)
        assert "\n\n".join(texts) == h.router.reply
        assert all(len(m.text) <= 3_000 for m in posted)  # notifications: the start of each


async def test_a_workspace_refusing_the_markdown_block_gets_mrkdwn_from_then_on(
    caplog: pytest.LogCaptureFixture,
) -> None:
    async with running(native_streaming=False) as h:
        h.slack.refuse_markdown_blocks = True
        h.router.reply = "**bold** and _it_"
        [first] = await _ask(h, "first")
        posts = len(h.slack.calls_to("chat.postMessage"))
        [second] = await _ask(h, "second")

        assert first.text == second.text == "*bold* and _it_"
        assert first.blocks[0] == {
            "type": "section",
            "text": {"type": "mrkdwn", "text": first.text},
        }
        assert len(h.slack.calls_to("chat.postMessage")) == posts + 1  # no second refusal
        assert "refused markdown block (invalid_blocks)" in caplog.text


# --- the fake holds Slack's line ---


async def _client(slack: FakeSlack) -> AsyncWebClient:
    return AsyncWebClient(token=BOT_TOKEN, base_url=slack.api_url)


@pytest.mark.parametrize(
    ("method", "args", "error"),
    [
        ("chat_startStream", {"channel": CHANNEL, "thread_ts": "1.1", "colour": "red"}, "invalid_arguments"),
        ("chat_startStream", {"channel": CHANNEL, "thread_ts": "1.1"}, "missing_recipient_user_id"),
        ("chat_postMessage", {"channel": CHANNEL, "text": "x", "blocks": [{"type": "markdown"}]}, "invalid_blocks"),
        ("chat_postMessage", {"channel": CHANNEL, "text": "x", "blocks": [{"type": "markdown", "text": "a" * 12_001}]}, "msg_blocks_too_long"),
        ("chat_postMessage", {"channel": CHANNEL, "text": "x", "blocks": [{"type": "context_actions", "elements": [{"type": "feedback_buttons", "positive_button": {"text": {"type": "plain_text", "text": "👍"}, "value": "g"}}]}]}, "invalid_blocks"),
        ("chat_postMessage", {"channel": CHANNEL, "text": "x", "blocks": [{"type": "actions", "elements": [{"type": "button", "text": {"type": "mrkdwn", "text": "*x*"}}]}]}, "invalid_blocks"),
    ],
)  # fmt: skip
async def test_the_fake_refuses_what_slack_refuses(
    method: str, args: dict[str, Any], error: str
) -> None:
    async with FakeSlack() as slack:
        client = await _client(slack)
        with pytest.raises(SlackApiError) as caught:
            await getattr(client, method)(**args)
        assert caught.value.response["error"] == error


async def test_the_fake_streams_only_between_start_and_stop() -> None:
    async with FakeSlack() as slack:
        client = await _client(slack)
        started = await client.chat_startStream(
            channel=CHANNEL, thread_ts="1.1", recipient_user_id=USER, recipient_team_id=TEAM_ID
        )
        await client.chat_appendStream(channel=CHANNEL, ts=started["ts"], markdown_text="**hi**")
        await client.chat_stopStream(channel=CHANNEL, ts=started["ts"])
        with pytest.raises(SlackApiError) as caught:
            await client.chat_appendStream(channel=CHANNEL, ts=started["ts"], markdown_text="more")
        assert caught.value.response["error"] == "message_not_in_streaming_state"
