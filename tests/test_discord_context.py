"""Who said what on Discord: names in shared conversations, replies to people and forwards reach the model."""

from __future__ import annotations

from collections.abc import AsyncIterator
from typing import Any

import pytest
import pytest_asyncio

from bot.config import Settings
from bot.messages import QuotedMessage
from tests.discord_support import (
    DiscordEnv,
    connected_discord,
    content_text,
    open_thread,
    png,
    received,
    requests_mentioning,
    settle,
    texts_in,
)
from tests.fakes.discord import (
    ALICE,
    BOB,
    DM_CHANNEL_ID,
    GUILD_ID,
    OTHER_BOT,
    OTHER_CHANNEL_ID,
    TEXT_CHANNEL_ID,
)
from tests.fakes.openrouter import FakeOpenRouter

pytestmark = pytest.mark.asyncio(loop_scope="module")

Env = DiscordEnv


@pytest_asyncio.fixture(scope="module", loop_scope="module")
async def env() -> AsyncIterator[Env]:
    async with FakeOpenRouter() as router:
        settings = Settings(
            store_url="memory://",
            base_url=router.base_url,
            user_messages_per_minute=0,
            discord={"guild_ids": [str(GUILD_ID)]},
        )
        async with connected_discord(router, settings) as connected:
            yield connected


# --- helpers ---


def user_turns(request: dict[str, Any]) -> list[str]:
    """The text of every user message in a chat request, oldest first."""
    return [content_text(m) for m in request["messages"] if m["role"] == "user"]


def has_image(request: dict[str, Any]) -> bool:
    """Whether any message of the request carries an image part."""
    return any(
        part.get("type") == "image_url"
        for m in request["messages"]
        if isinstance(m["content"], list)
        for part in m["content"]
    )


async def photo_by_bob(
    env: Env, channel_id: int, text: str, name: str, *, author: dict[str, Any] = BOB
) -> dict[str, Any]:
    """Bob (or `author`) posts a photo with a caption; no mention, so the bot does not answer it."""
    picture = env.fake.attachment(name, png("brown"), "image/png")
    return await env.fake.user_message(channel_id, text, author=author, attachments=[picture])


# --- speakers ---


async def test_two_people_in_a_thread_reach_the_model_by_name(env: Env) -> None:
    thread_id = await open_thread(env, "which knot holds best?")
    bobs = await env.fake.user_message(thread_id, "I'd say the bowline", author=BOB)
    await texts_in(env, thread_id, [env.router.reply] * 2)

    follow_up = await received(env, bobs["id"])
    assert follow_up.shared and follow_up.author_name == "Bob"
    [request] = await env.fake.wait_for(lambda: requests_mentioning(env, "the bowline"))
    turns = user_turns(request)
    assert any(t.startswith("Alice: ") and "which knot holds best?" in t for t in turns)
    assert turns[-1].startswith("Bob: ") and "I'd say the bowline" in turns[-1]


async def test_direct_message_is_not_name_prefixed(env: Env) -> None:
    message = await env.fake.user_message(DM_CHANNEL_ID, "just between us", author=ALICE)

    incoming = await received(env, message["id"])
    assert not incoming.shared and incoming.is_direct
    [request] = await env.fake.wait_for(lambda: requests_mentioning(env, "just between us"))
    assert user_turns(request)[-1] == "just between us"


async def test_ask_in_a_server_is_shared(env: Env) -> None:
    question = [{"name": "question", "type": 3, "value": "shared by command?"}]
    interaction = await env.fake.slash("ask", question)

    incoming = await received(env, interaction["id"])
    assert incoming.shared and incoming.author_name == "Alice"


# --- replies ---


async def test_mention_replying_to_someones_photo_brings_it_by_name(env: Env) -> None:
    photo = await photo_by_bob(env, OTHER_CHANNEL_ID, "my dog at the beach", "beach-dog.png")
    question = await env.fake.user_message(
        OTHER_CHANNEL_ID, "what breed is it?", mention_bot=True, reply_to=int(photo["id"])
    )

    incoming = await received(env, question["id"])
    assert incoming.images == ()
    [quote] = incoming.quoted
    assert (quote.kind, quote.text, quote.message_id) == (
        "reply",
        "my dog at the beach",
        photo["id"],
    )
    assert (quote.author_id, quote.author_name) == (BOB["id"], "Bob")
    assert [image.filename for image in quote.images] == ["beach-dog.png"]
    [request] = await env.fake.wait_for(lambda: requests_mentioning(env, "what breed is it?"))
    everything = " ".join(content_text(m) for m in request["messages"])
    assert "Bob" in everything and "my dog at the beach" in everything
    assert has_image(request)


async def test_unresolved_reply_is_fetched_from_the_channel(env: Env) -> None:
    photo = await photo_by_bob(env, OTHER_CHANNEL_ID, "sunset from the pier", "pier.png")
    question = await env.fake.user_message(
        OTHER_CHANNEL_ID,
        "where is this?",
        mention_bot=True,
        reply_to=int(photo["id"]),
        resolve_reply=False,
    )

    incoming = await received(env, question["id"])
    assert [q.text for q in incoming.quoted] == ["sunset from the pier"]
    assert env.fake.calls_to("GET", f"/channels/{OTHER_CHANNEL_ID}/messages/{photo['id']}")


async def test_unreadable_replied_message_is_left_out_and_the_question_answered(env: Env) -> None:
    photo = await photo_by_bob(env, OTHER_CHANNEL_ID, "private picture", "private.png")
    env.fake.fail_next("GET", f"/messages/{photo['id']}", 403)
    question = await env.fake.user_message(
        OTHER_CHANNEL_ID,
        "can you see it?",
        mention_bot=True,
        reply_to=int(photo["id"]),
        resolve_reply=False,
    )

    incoming = await received(env, question["id"])
    assert incoming.quoted == ()
    await texts_in(env, int(question["id"]), [env.router.reply])


async def test_reply_to_a_message_in_another_channel_is_not_fetched(env: Env) -> None:
    photo = await photo_by_bob(env, TEXT_CHANNEL_ID, "elsewhere", "elsewhere.png")
    question = await env.fake.user_message(
        OTHER_CHANNEL_ID,
        "about that one",
        mention_bot=True,
        reply_to=int(photo["id"]),
        resolve_reply=False,
        reply_in=TEXT_CHANNEL_ID,
    )

    incoming = await received(env, question["id"])
    assert incoming.quoted == ()
    assert env.fake.calls_to("GET", f"/messages/{photo['id']}") == []


async def test_reply_to_the_bots_own_message_is_not_quoted(env: Env) -> None:
    thread_id = await open_thread(env, "name a red fruit")
    [answer] = env.fake.bot_messages(thread_id)
    follow_up = await env.fake.user_message(
        thread_id, "and a yellow one?", reply_to=int(answer["id"])
    )

    incoming = await received(env, follow_up["id"])
    assert incoming.quoted == ()
    await texts_in(env, thread_id, [env.router.reply] * 2)


async def test_reply_to_another_bots_image_is_quoted_with_its_name(env: Env) -> None:
    posted = await photo_by_bob(env, OTHER_CHANNEL_ID, "generated art", "art.png", author=OTHER_BOT)
    question = await env.fake.user_message(
        OTHER_CHANNEL_ID, "is that picture real?", mention_bot=True, reply_to=int(posted["id"])
    )

    incoming = await received(env, question["id"])
    assert [q.author_name for q in incoming.quoted] == ["Otherbot"]


# --- forwards ---


async def test_forwarded_photo_into_a_followed_thread_reaches_the_model(env: Env) -> None:
    thread_id = await open_thread(env, "I'll forward you something")
    picture = env.fake.attachment("forwarded-cat.png", png("gray"), "image/png")
    forward = await env.fake.forward(thread_id, "look at this cat", attachments=[picture])

    incoming = await received(env, forward["id"])
    assert incoming.text == ""
    [quote] = incoming.quoted
    assert (quote.kind, quote.text, quote.author_name) == ("forward", "look at this cat", "")
    assert [image.filename for image in quote.images] == ["forwarded-cat.png"]
    [request] = await env.fake.wait_for(lambda: requests_mentioning(env, "look at this cat"))
    assert "[forwarded message]" in content_text(request["messages"][-1])
    assert has_image(request)
    await texts_in(env, thread_id, [env.router.reply] * 2)


async def test_forward_with_a_mentioning_comment_brings_the_forward(env: Env) -> None:
    forward = await env.fake.forward(TEXT_CHANNEL_ID, "the meeting moved to 3 pm")
    comment = await env.fake.user_message(TEXT_CHANNEL_ID, "is this today?", mention_bot=True)

    incoming = await received(env, comment["id"])
    assert incoming.quoted == (
        QuotedMessage(
            kind="forward",
            text="the meeting moved to 3 pm",
            message_id=forward["message_reference"]["message_id"],
        ),
    )
    await texts_in(env, int(comment["id"]), [env.router.reply])
    assert all(m.message_id != forward["id"] for m in env.incoming)  # not answered on its own


async def test_forward_followed_by_someone_elses_mention_stays_out(env: Env) -> None:
    await env.fake.forward(TEXT_CHANNEL_ID, "alice's forwarded note")
    question = await env.fake.user_message(
        TEXT_CHANNEL_ID, "unrelated question", author=BOB, mention_bot=True
    )

    incoming = await received(env, question["id"])
    assert incoming.quoted == ()


async def test_forward_alone_in_a_channel_is_not_answered(env: Env) -> None:
    forward = await env.fake.forward(OTHER_CHANNEL_ID, "nobody asked Glimpse")
    await settle(env)
    assert all(m.message_id != forward["id"] for m in env.incoming)
