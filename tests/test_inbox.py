"""The inbox in the core: what an entry keeps (no secrets), how an answer marks it, resuming and giving up."""

from __future__ import annotations

import time
from dataclasses import replace

from adapters.discord_translate import root_key
from bot.config import InboxSettings
from bot.inbox import (
    GIVE_UP_NOTICE,
    INTERRUPTED_NOTE,
    InboxEntry,
    State,
    decode_message,
    encode_message,
    event_id_of,
    with_headers,
)
from bot.messages import ConversationKey, ImageRef, IncomingMessage, QuotedMessage
from bot.store import Store
from tests.discord_support import content_text, open_thread, texts_in
from tests.fakes.discord import GUILD_ID
from tests.fakes.openrouter import FakeOpenRouter
from tests.fakes.slack import BOT_TOKEN, TEAM_ID
from tests.reliability.harness import (
    CHANNEL,
    USER,
    SlackRig,
    discord_env,
    eventually,
    slack_mention,
    slack_rig,
    until,
)

SECRET_HEADERS = {"Authorization": f"Bearer {BOT_TOKEN}"}
# Nothing resumes behind a test's back: it calls resume_unfinished itself.
QUIET = InboxSettings(resume_after_seconds=1, check_interval_seconds=3600)


def slack_message(text: str, ts: str) -> IncomingMessage:
    return IncomingMessage(
        key=ConversationKey("slack", TEAM_ID, CHANNEL, ts),
        message_id=f"{CHANNEL}:{ts}",
        author_id=USER,
        text=text,
    )


def abandoned(message: IncomingMessage, *, reply_id: str = "", attempts: int = 1) -> InboxEntry:
    """An entry a process that died left open ten seconds ago."""
    then = time.time() - 10
    return InboxEntry(
        event_id=event_id_of("slack", TEAM_ID, message.message_id),
        key=message.key,
        message_id=message.message_id,
        state=State.ANSWERING if reply_id else State.CLAIMED,
        message=encode_message(message),
        instance="dead-host:1:abc",
        claimed_at=then,
        updated_at=then,
        attempts=attempts,
        reply_id=reply_id,
    )


def store_of(rig: SlackRig) -> Store:
    return rig.conversations._store


# --- what an entry keeps ---


def test_a_message_is_kept_without_headers_and_read_back_whole() -> None:
    image = ImageRef(
        "cat.png", url="https://files.slack.com/cat.png", size=12, headers=SECRET_HEADERS
    )
    held = ImageRef("local.txt", data=b"held in memory")
    quote = QuotedMessage("reply", "earlier", message_id="C1:1.0", images=(image,))
    message = IncomingMessage(
        key=ConversationKey("slack", "T1", "C1", "1.0"),
        message_id="C1:2.0",
        author_id="U1",
        text="what is this? \ud800",  # a lone surrogate survives
        images=(image,),
        files=(held,),
        quoted=(quote,),
        shared=True,
        author_roles=("r1",),
    )
    kept = encode_message(message)
    assert BOT_TOKEN not in kept and "Authorization" not in kept and "held in memory" not in kept
    back = decode_message(kept)
    assert back.images == (replace(image, headers={}),) and back.files == ()
    assert back.other_files == ("local.txt",)
    assert back == replace(message, images=back.images, files=(), other_files=("local.txt",),
                           quoted=(replace(quote, images=back.images),))  # fmt: skip
    again = with_headers(back, lambda url: SECRET_HEADERS)
    assert again.images[0].headers == SECRET_HEADERS == again.quoted[0].images[0].headers


def test_a_message_too_large_to_keep_is_kept_empty() -> None:
    assert encode_message(slack_message("x" * 300_000, "1.0")) == ""


# --- answering and resuming, through the Slack adapter and the fakes ---


async def test_an_answered_message_leaves_an_answered_entry_naming_its_reply() -> None:
    async with slack_rig(inbox=QUIET) as rig:
        mention = slack_mention("hello there")
        await rig.event(mention)
        await rig.settle()
        [answer] = rig.slack.thread(CHANNEL, mention["ts"])
        entry = await store_of(rig).inbox_get(f"slack:{TEAM_ID}:{CHANNEL}:{mention['ts']}")
        assert entry is not None
        assert (entry.state, entry.reply_id, entry.attempts) == (State.ANSWERED, answer.ts, 1)
        assert entry.instance == rig.conversations.inbox.instance
        assert decode_message(entry.message).text == "hello there"


async def test_an_abandoned_answer_is_given_again_in_its_own_message_marked() -> None:
    async with slack_rig(inbox=QUIET) as rig:
        question = slack_mention("tell me about cats")
        half = await rig.adapter.client.chat_postMessage(
            channel=CHANNEL, thread_ts=question["ts"], text="Cats are"
        )
        message = slack_message("tell me about cats", question["ts"])
        await store_of(rig).inbox_record(abandoned(message, reply_id=half["ts"]))
        await rig.conversations.inbox.resume_unfinished()
        entry_id = event_id_of("slack", TEAM_ID, message.message_id)

        async def done() -> bool:
            entry = await store_of(rig).inbox_get(entry_id)
            return entry is not None and entry.state is State.ANSWERED

        await eventually(done, "the answer given again")
        [answer] = rig.slack.thread(CHANNEL, question["ts"])
        assert answer.ts == half["ts"]  # the half answer's message, edited
        assert answer.text.startswith("_(I was interrupted")
        assert answer.text.endswith(rig.router.reply)
        entry = await store_of(rig).inbox_get(entry_id)
        assert entry is not None and entry.attempts == 2
        assert await rig.conversations.inbox.resume_unfinished() == 0  # nothing left
        assert len(rig.router.chat_requests) == 1


async def test_a_message_tried_max_attempts_times_is_given_up_with_one_notice() -> None:
    async with slack_rig(inbox=QUIET) as rig:
        question = slack_mention("poison")
        half = await rig.adapter.client.chat_postMessage(
            channel=CHANNEL, thread_ts=question["ts"], text="Poi"
        )
        message = slack_message("poison", question["ts"])
        entry = abandoned(message, reply_id=half["ts"], attempts=QUIET.max_attempts)
        await store_of(rig).inbox_record(entry)
        assert await rig.conversations.inbox.resume_unfinished() == 1
        await until(lambda: rig.slack.thread(CHANNEL, question["ts"])[0].text != "Poi", "notice")
        [notice] = rig.slack.thread(CHANNEL, question["ts"])
        assert notice.text == GIVE_UP_NOTICE and notice.ts == half["ts"]
        assert rig.router.chat_requests == []
        await rig.conversations.inbox.close()
        kept = await store_of(rig).inbox_get(entry.event_id)
        assert kept is not None and kept.state is State.FAILED


async def test_an_answer_cut_short_before_anything_was_posted_is_posted_in_the_thread() -> None:
    async with slack_rig(inbox=QUIET) as rig:
        question = slack_mention("quick one")
        message = slack_message("quick one", question["ts"])
        await store_of(rig).inbox_record(abandoned(message))
        await rig.conversations.inbox.resume_unfinished()
        await until(lambda: rig.slack.thread(CHANNEL, question["ts"]), "the answer")
        await rig.conversations.inbox.close()
        [answer] = rig.slack.thread(CHANNEL, question["ts"])
        assert answer.text.endswith(rig.router.reply)


async def test_discord_gives_an_abandoned_answer_again_by_editing_its_message() -> None:
    async with FakeOpenRouter() as router, discord_env(router, inbox=QUIET) as env:
        thread_id = await open_thread(env, "describe the sky")
        [half] = env.fake.bot_messages(thread_id)
        message = IncomingMessage(
            key=root_key(GUILD_ID, thread_id),
            message_id="999",
            author_id="1",
            text="and the sea?",
            shared=True,
        )
        entry = replace(
            abandoned(message, reply_id=f"{thread_id}/{half['id']}"),
            event_id=event_id_of("discord", str(GUILD_ID), "999"),
        )
        await env.conversations._store.inbox_record(entry)
        await env.conversations.inbox.resume_unfinished()
        expected = f"{INTERRUPTED_NOTE}\n\n{router.reply}"
        [answer] = await texts_in(env, thread_id, [expected])
        assert answer["id"] == half["id"]  # edited, not posted again
        assert "and the sea?" in content_text(router.chat_requests[-1].body["messages"][-1])


async def test_a_later_message_waits_for_the_earlier_one_a_dead_process_left() -> None:
    async with slack_rig(inbox=QUIET) as rig:
        question = slack_mention("first question")
        half = await rig.adapter.client.chat_postMessage(
            channel=CHANNEL, thread_ts=question["ts"], text="The fir"
        )
        message = slack_message("first question", question["ts"])
        await store_of(rig).inbox_record(abandoned(message, reply_id=half["ts"]))
        await rig.event(slack_mention("second question", thread_ts=question["ts"]))
        await rig.settle()
        first, second = (r.body["messages"] for r in rig.router.chat_requests)
        assert "first question" in content_text(first[-1])
        assert "second question" in content_text(second[-1])
        assert any("first question" in content_text(m) for m in second[:-1])  # it remembers
        resumed, answer = rig.slack.thread(CHANNEL, question["ts"])
        assert resumed.ts == half["ts"] and resumed.text.startswith("_(I was interrupted")
        assert answer.text == rig.router.reply


async def test_a_message_the_access_rules_refuse_is_not_answered_again() -> None:
    async with slack_rig(inbox=QUIET, allow_users=["U0SOMEONE"]) as rig:
        question = slack_mention("let me in")
        message = slack_message("let me in", question["ts"])
        entry = abandoned(message)
        await store_of(rig).inbox_record(entry)
        assert await rig.conversations.inbox.resume_unfinished() == 1

        async def ended() -> bool:
            kept = await store_of(rig).inbox_get(entry.event_id)
            return kept is not None and not kept.is_open

        await eventually(ended, "the entry to end")
        assert rig.router.chat_requests == [] and rig.slack.thread(CHANNEL, question["ts"]) == []


async def test_slacks_own_streaming_notes_the_streamed_message_as_the_reply() -> None:
    async with slack_rig(inbox=QUIET, slack_options={"native_streaming": True}) as rig:
        mention = slack_mention("stream it")
        await rig.event(mention)
        await rig.settle()
        [answer] = rig.slack.thread(CHANNEL, mention["ts"])
        entry = await store_of(rig).inbox_get(f"slack:{TEAM_ID}:{CHANNEL}:{mention['ts']}")
        assert entry is not None and (entry.state, entry.reply_id) == (State.ANSWERED, answer.ts)
