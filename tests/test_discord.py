"""The Discord adapter end to end: real discord.py against the loopback Discord and OpenRouter fakes."""

from __future__ import annotations

from collections.abc import AsyncIterator
from typing import Any

import aiohttp
import pytest
import pytest_asyncio

from adapters.discord_commands import RESET_DONE
from adapters.discord_menus import ASK_ABOUT, DESCRIBE
from adapters.discord_translate import ReplyChains, root_key
from adapters.split import split_message
from bot.access import REFUSAL
from bot.config import DEFAULT_MODEL, Settings
from bot.models.commands import NOT_ADMIN
from tests.discord_support import (
    DiscordEnv,
    connected_discord,
    content_text,
    open_thread,
    png,
    remembered,
    requests_mentioning,
    settle,
    texts_in,
)
from tests.fakes.discord import (
    ALICE,
    BOB,
    BOT_ID,
    DM_CHANNEL_ID,
    GUILD_ID,
    LOCKED_CHANNEL_ID,
    OTHER_BOT,
    OTHER_CHANNEL_ID,
    TEXT_CHANNEL_ID,
    VOICE_CHANNEL_ID,
    make_user,
)
from tests.fakes.openrouter import QWEN_VISION_MODEL, TEXT_ONLY_MODEL, FakeOpenRouter

pytestmark = pytest.mark.asyncio(loop_scope="module")

MALLORY = make_user("mallory")
MESSAGE_CONTENT_INTENT = 1 << 15
NO_MENTIONS = {"parse": []}


Env = DiscordEnv


@pytest_asyncio.fixture(scope="module", loop_scope="module")
async def env() -> AsyncIterator[Env]:
    async with FakeOpenRouter() as router:
        settings = Settings(
            store_url="memory://",
            base_url=router.base_url,
            block_users=[MALLORY["id"]],
            admins=[ALICE["id"]],
            user_messages_per_minute=0,
            discord={"guild_ids": [str(GUILD_ID)]},
        )
        async with connected_discord(router, settings) as connected:
            yield connected


# --- behaviour ---


async def test_mention_opens_a_thread_and_answers_there_with_the_image(env: Env) -> None:
    picture = env.fake.attachment("boat.png", png(), "image/png")
    message = await env.fake.user_message(
        TEXT_CHANNEL_ID, "what is this?", mention_bot=True, attachments=[picture]
    )
    thread_id = int(message["id"])

    await texts_in(env, thread_id, [env.router.reply])

    [thread_call] = env.fake.calls_to("POST", f"/messages/{thread_id}/threads")
    assert thread_call.body["name"] == "what is this?"
    [request] = requests_mentioning(env, "what is this?")
    parts = request["messages"][-1]["content"]
    kinds = [part["type"] for part in parts]
    assert kinds[0] == "image_url" and "text" in kinds
    assert parts[0]["image_url"]["url"].startswith("data:image/")
    assert f"<@{BOT_ID}>" not in content_text(request["messages"][-1])
    assert env.fake.bot_messages(TEXT_CHANNEL_ID) == []  # nothing in the channel itself
    # The typing indicator showed in the thread until the first words.
    assert env.fake.calls_to("POST", f"/channels/{thread_id}/typing")


async def test_image_embed_and_replied_to_picture_reach_the_model(env: Env) -> None:
    env.fake.attachment("linked.png", png("green"), "image/png")
    link = env.fake.attachment_url("linked.png")
    embed = {"type": "image", "url": link, "thumbnail": {"url": link, "proxy_url": link}}
    await env.fake.user_message(TEXT_CHANNEL_ID, f"look {link}", mention_bot=True, embeds=[embed])
    picture = env.fake.attachment("dog.png", png("brown"), "image/png")
    posted = await env.fake.user_message(OTHER_CHANNEL_ID, "my dog", attachments=[picture])
    await env.fake.user_message(
        OTHER_CHANNEL_ID, "what breed?", mention_bot=True, reply_to=int(posted["id"])
    )

    [request] = await env.fake.wait_for(lambda: requests_mentioning(env, "look "))
    assert request["messages"][-1]["content"][0]["type"] == "image_url"
    # The replied-to picture comes as its author's turn, just before the question.
    [request] = await env.fake.wait_for(lambda: requests_mentioning(env, "what breed?"))
    replied = request["messages"][-2]
    assert replied["content"][0]["type"] == "image_url" and "my dog" in content_text(replied)


async def test_follow_up_in_the_thread_without_mention_keeps_memory(env: Env) -> None:
    thread_id = await open_thread(env, "describe the boat")

    await env.fake.user_message(thread_id, "and what colour is it?", author=BOB)
    await texts_in(env, thread_id, [env.router.reply, env.router.reply])

    [request] = requests_mentioning(env, "what colour is it?")
    history = [(m["role"], content_text(m)) for m in request["messages"]]
    assert ("user", "Alice: describe the boat") in history  # several people: turns carry names
    assert ("assistant", env.router.reply) in history


async def test_message_in_an_unrelated_channel_without_mention_is_ignored(env: Env) -> None:
    requests = len(env.router.chat_requests)
    await env.fake.user_message(OTHER_CHANNEL_ID, "just chatting about boats")

    await settle(env)

    assert requests_mentioning(env, "just chatting") == []
    assert len(env.router.chat_requests) == requests + 1  # only the DM that settled the queue
    assert env.fake.bot_messages(OTHER_CHANNEL_ID) == []


async def test_other_bots_are_ignored_even_when_they_mention(env: Env) -> None:
    await env.fake.user_message(TEXT_CHANNEL_ID, "bots talking", author=OTHER_BOT, mention_bot=True)
    await settle(env)
    assert requests_mentioning(env, "bots talking") == []


async def test_ask_with_an_attachment_answers_in_a_new_thread(env: Env) -> None:
    picture = env.fake.attachment("lake.png", png("blue"), "image/png")
    options = [
        {"name": "question", "type": 3, "value": "what's in the picture?"},
        {"name": "image", "type": 11, "value": picture["id"]},
    ]
    interaction = await env.fake.slash("ask", options, attachments={picture["id"]: picture})

    original = await env.fake.wait_for(lambda: env.fake.original_response(interaction))
    thread_id = int(original["id"])
    await texts_in(env, thread_id, [env.router.reply])

    callback = env.fake.calls_to("POST", f"/interactions/{interaction['id']}/")[0]
    assert callback.body["type"] == 5  # deferred at once, before any model work
    assert original["content"] == "> what's in the picture?\n📎 lake.png"
    [request] = requests_mentioning(env, "what's in the picture?")
    assert request["messages"][-1]["content"][0]["type"] == "image_url"


async def test_ask_by_a_blocked_user_gets_only_an_ephemeral_note(env: Env) -> None:
    question = [{"name": "question", "type": 3, "value": "blocked asking by command"}]
    interaction = await env.fake.slash("ask", question, user=MALLORY)

    original = await env.fake.wait_for(lambda: env.fake.original_response(interaction))
    await env.fake.wait_for(lambda: original.get("deleted"))
    [note] = env.fake.calls_to(
        "POST", f"/webhooks/{env.client.application_id}/{interaction['token']}"
    )
    assert note.body["content"] == REFUSAL and note.body["flags"] == 64
    assert requests_mentioning(env, "blocked asking by command") == []


async def test_replayed_interaction_is_answered_once(env: Env) -> None:
    question = [{"name": "question", "type": 3, "value": "one command, twice delivered"}]
    interaction = await env.fake.slash("ask", question)
    original = await env.fake.wait_for(lambda: env.fake.original_response(interaction))
    await texts_in(env, int(original["id"]), [env.router.reply])

    await env.fake.dispatch("INTERACTION_CREATE", interaction)
    await env.fake.wait_for(
        lambda: len(env.fake.calls_to("POST", f"/interactions/{interaction['id']}/")) == 2
    )
    await settle(env)

    assert len(requests_mentioning(env, "one command, twice delivered")) == 1
    assert len(env.fake.bot_messages(int(original["id"]))) == 1


async def test_reset_forgets_the_thread(env: Env) -> None:
    thread_id = await open_thread(env, "remember the lighthouse")
    key = root_key(GUILD_ID, thread_id)
    assert await env.conversations.is_active(key)

    interaction = await env.fake.slash("reset", channel_id=thread_id, user=BOB)
    call = await env.fake.wait_for(
        lambda: env.fake.calls_to("POST", f"/interactions/{interaction['id']}/")
    )
    assert call[0].body["type"] == 4
    assert call[0].body["data"]["content"] == RESET_DONE
    assert call[0].body["data"]["flags"] == 64  # ephemeral
    assert not await env.conversations.is_active(key)

    await env.fake.user_message(thread_id, "what did I ask before?")
    await texts_in(env, thread_id, [env.router.reply, env.router.reply])
    [request] = requests_mentioning(env, "what did I ask before?")
    assert all("lighthouse" not in content_text(m) for m in request["messages"])


async def test_long_answer_is_split_in_three_without_breaking_a_code_block(env: Env) -> None:
    code = (
        "```python\n" + "\n".join(f"value_{i} = {i} * 2  # step {i}" for i in range(70)) + "\n```"
    )
    prose = "\n\n".join(f"Paragraph {i}: " + "lorem ipsum dolor sit amet " * 12 for i in range(8))
    answer = (prose[:1400] + "\n\n" + code + "\n\n" + prose)[:5000]
    assert len(answer) == 5000
    env.router.reply_next(answer)

    message = await env.fake.user_message(
        TEXT_CHANNEL_ID, "write me a long answer", mention_bot=True
    )
    pieces = split_message(answer, 2000)
    messages = await texts_in(env, int(message["id"]), pieces)

    assert len(messages) == 3
    for piece in messages:
        assert len(piece["content"]) <= 2000
        # every fence opened in a message is closed in it
        assert piece["content"].count("```") % 2 == 0


async def test_replayed_message_create_is_answered_once_after_a_resume(env: Env) -> None:
    message = await env.fake.user_message(TEXT_CHANNEL_ID, "answer me only once", mention_bot=True)
    await texts_in(env, int(message["id"]), [env.router.reply])

    assert env.conversations.readiness.snapshot() == {"discord": True}
    sessions = len(env.fake.connections)
    await env.fake.reconnect()
    await env.fake.wait_for(
        lambda: len(env.fake.connections) > sessions and env.fake.connections[-1].hello_op == 6
    )
    await env.fake.replay(message)
    await settle(env)
    assert env.conversations.readiness.snapshot() == {"discord": True}  # back after the resume

    assert len(env.fake.bot_messages(int(message["id"]))) == 1
    assert len(requests_mentioning(env, "answer me only once")) == 1
    assert len(env.fake.calls_to("POST", f"/messages/{message['id']}/threads")) == 1


async def test_blocked_user_gets_no_answer_and_no_thread(env: Env) -> None:
    message = await env.fake.user_message(
        TEXT_CHANNEL_ID, "let me in", author=MALLORY, mention_bot=True
    )
    replies = await env.fake.wait_for(
        lambda: [
            m
            for m in env.fake.bot_messages(TEXT_CHANNEL_ID)
            if (m.get("message_reference") or {}).get("message_id") == message["id"]
        ]
    )

    assert [m["content"] for m in replies] == [REFUSAL]  # the short note, replying in place
    assert requests_mentioning(env, "let me in") == []
    assert env.fake.calls_to("POST", f"/messages/{message['id']}/threads") == []


async def test_thread_creation_forbidden_falls_back_to_replies_that_continue(env: Env) -> None:
    first = await env.fake.user_message(LOCKED_CHANNEL_ID, "why no threads?", mention_bot=True)
    [reply] = await texts_in(env, LOCKED_CHANNEL_ID, [env.router.reply])
    assert reply["message_reference"]["message_id"] == first["id"]
    assert env.fake.calls_to("POST", f"/messages/{first['id']}/threads")  # tried, got 403

    second = await env.fake.user_message(
        LOCKED_CHANNEL_ID, "tell me more", author=BOB, reply_to=int(reply["id"])
    )
    replies = await texts_in(env, LOCKED_CHANNEL_ID, [env.router.reply] * 2)
    assert replies[1]["message_reference"]["message_id"] == second["id"]

    # After a restart the bot finds the chain again by walking up the replies.
    env.client._chains = ReplyChains()
    await env.fake.user_message(
        LOCKED_CHANNEL_ID, "and after a restart?", reply_to=int(replies[1]["id"])
    )
    await texts_in(env, LOCKED_CHANNEL_ID, [env.router.reply] * 3)

    assert env.fake.calls_to("GET", f"/channels/{LOCKED_CHANNEL_ID}/messages/")
    [request] = requests_mentioning(env, "and after a restart?")
    history = [content_text(m) for m in request["messages"]]
    assert "Alice: why no threads?" in history and "Bob: tell me more" in history


async def test_mention_in_a_voice_channel_chat_is_answered_by_reply(env: Env) -> None:
    message = await env.fake.user_message(VOICE_CHANNEL_ID, "can you hear me?", mention_bot=True)
    [reply] = await texts_in(env, VOICE_CHANNEL_ID, [env.router.reply])
    assert reply["message_reference"]["message_id"] == message["id"]
    assert env.fake.calls_to("POST", f"/messages/{message['id']}/threads") == []


async def test_direct_messages_are_one_conversation(env: Env) -> None:
    await env.fake.user_message(DM_CHANNEL_ID, "my name is Ada", author=ALICE)
    await env.fake.wait_for(lambda: requests_mentioning(env, "my name is Ada"))
    await settle(env)
    [request] = requests_mentioning(env, "ping")[-1:]
    assert any("my name is Ada" in content_text(m) for m in request["messages"])


async def test_mention_in_a_members_thread_answers_there_and_then_follows_it(env: Env) -> None:
    thread_id = await env.fake.user_thread(TEXT_CHANNEL_ID, "boat club")
    await env.fake.user_message(thread_id, "anyone here likes sailing?")
    await settle(env)
    assert (
        env.fake.bot_messages(thread_id) == []
    )  # not the bot's thread, no mention: not its business

    await env.fake.user_message(thread_id, "what knot is this?", mention_bot=True)
    await texts_in(env, thread_id, [env.router.reply])
    await remembered(env, thread_id)
    await env.fake.user_message(thread_id, "and how do I tie it?", author=BOB)
    await texts_in(env, thread_id, [env.router.reply] * 2)

    [request] = requests_mentioning(env, "how do I tie it?")
    assert any("what knot is this?" in content_text(m) for m in request["messages"])
    assert env.fake.calls_to("POST", f"/messages/{thread_id}/threads") == []


async def test_ask_inside_a_thread_answers_in_place(env: Env) -> None:
    thread_id = await open_thread(env, "first question")
    question = [{"name": "question", "type": 3, "value": "second question by command"}]
    interaction = await env.fake.slash("ask", question, channel_id=thread_id)

    await texts_in(
        env, thread_id, [env.router.reply, "> second question by command", env.router.reply]
    )
    original = env.fake.original_response(interaction)
    assert original is not None and int(original["channel_id"]) == thread_id
    [request] = requests_mentioning(env, "second question by command")
    assert any("first question" in content_text(m) for m in request["messages"])


async def test_a_file_glimpse_cannot_read_is_named_in_a_note(env: Env) -> None:
    blob = env.fake.attachment("data.bin", bytes(range(256)) * 4, "application/octet-stream")
    message = await env.fake.user_message(
        TEXT_CHANNEL_ID, "what is this file?", mention_bot=True, attachments=[blob]
    )
    thread_id = int(message["id"])
    messages = await env.fake.wait_for(
        lambda: (
            (found := env.fake.bot_messages(thread_id))
            and found[-1]["content"] == env.router.reply
            and found
        )
    )
    assert "data.bin" in messages[0]["content"]  # the core's note comes first, in the thread


async def test_commands_are_synced_to_the_configured_guild(env: Env) -> None:
    assert {c["name"] for c in env.fake.commands[str(GUILD_ID)]} == {
        "ask",
        "reset",
        "model",
        DESCRIBE,
        ASK_ABOUT,
    }
    assert "global" not in env.fake.commands


async def test_url_overrides_reach_the_fake_and_survive_the_resume_url(env: Env) -> None:
    assert env.fake.calls_to("GET", "/users/@me")
    first = env.fake.connections[0]
    assert first.hello_op == 2 and first.query.get("v") == "10"
    assert first.payload["intents"] & MESSAGE_CONTENT_INTENT
    # READY named an unreachable resume host; every later connection still came here.
    assert all(c.hello_op in (2, 6) for c in env.fake.connections)


async def test_json_responses_say_exactly_application_json(env: Env) -> None:
    headers = {"Authorization": f"Bot {env.fake.token}"}
    async with (
        aiohttp.ClientSession() as session,
        session.get(f"{env.fake.api_base}/users/@me", headers=headers) as r,
    ):
        assert r.headers["Content-Type"] == "application/json"


async def test_no_message_sent_by_the_bot_allows_mentions(env: Env) -> None:
    # Its own traffic of every kind (so it runs alone too); in the module it also checks all above.
    answer = "@everyone @here <@&" + str(GUILD_ID) + "> <@" + ALICE["id"] + "> " + "ping " * 500
    env.router.reply_next(answer)
    await env.fake.user_message(LOCKED_CHANNEL_ID, "<@" + BOB["id"] + "> hi", mention_bot=True)
    pieces = split_message(answer, 2000)
    await env.fake.wait_for(
        lambda: [m["content"] for m in env.fake.bot_messages(LOCKED_CHANNEL_ID)][-2:] == pieces
    )
    interaction = await env.fake.slash(
        "ask", [{"name": "question", "type": 3, "value": "@everyone"}]
    )
    original = await env.fake.wait_for(lambda: env.fake.original_response(interaction))
    await texts_in(env, int(original["id"]), [env.router.reply])

    checked = 0
    for call in env.fake.calls:
        if call.method not in ("POST", "PATCH") or not isinstance(call.body, dict):
            continue
        payload = call.body.get("data") or {} if call.path.endswith("/callback") else call.body
        if payload.get("content"):
            assert payload.get("allowed_mentions") == NO_MENTIONS, call
            checked += 1
    assert checked >= 4


# --- /model ---

NO_PERMISSIONS = "0"
AUTOCOMPLETE = 4  # interaction type


def _model_name(name: str) -> list[dict[str, Any]]:
    return [{"name": "name", "type": 3, "value": name}]


async def _model_reply(env: Env, interaction: dict[str, Any]) -> dict[str, Any]:
    """The ephemeral follow-up `/model` answered with (after deferring ephemerally)."""
    path = f"/webhooks/{env.client.application_id}/{interaction['token']}"
    [reply] = await env.fake.wait_for(lambda: env.fake.calls_to("POST", path))
    [callback] = env.fake.calls_to("POST", f"/interactions/{interaction['id']}/")
    assert callback.body["type"] == 5 and callback.body["data"]["flags"] == 64
    assert reply.body["flags"] == 64
    return reply.body


async def test_an_admin_sets_the_channels_model_and_the_next_answer_uses_it(env: Env) -> None:
    chosen = await env.fake.slash(
        "model",
        _model_name(QWEN_VISION_MODEL),
        channel_id=OTHER_CHANNEL_ID,
        user=ALICE,  # in `admins`, though without Manage Server
        permissions=NO_PERMISSIONS,
    )
    assert QWEN_VISION_MODEL in (await _model_reply(env, chosen))["content"]
    try:
        message = await env.fake.user_message(
            OTHER_CHANNEL_ID, "which model answers here?", mention_bot=True
        )
        thread_id = int(message["id"])
        await texts_in(env, thread_id, [env.router.reply])
        [request] = requests_mentioning(env, "which model answers here?")
        assert request["model"] == QWEN_VISION_MODEL

        shown = await env.fake.slash("model", channel_id=thread_id, user=BOB)  # its parent's
        assert QWEN_VISION_MODEL in (await _model_reply(env, shown))["content"]
    finally:
        cleared = await env.fake.slash(
            "model", _model_name("default"), channel_id=OTHER_CHANNEL_ID, user=ALICE
        )
        content = (await _model_reply(env, cleared))["content"]
    assert "back to" in content and QWEN_VISION_MODEL not in content
    back = await env.conversations.channel_model("discord", str(GUILD_ID), str(OTHER_CHANNEL_ID))
    assert back == DEFAULT_MODEL


async def test_model_is_refused_to_members_without_manage_server_or_admin(env: Env) -> None:
    before = await env.conversations.channel_model("discord", str(GUILD_ID), str(OTHER_CHANNEL_ID))
    refused = await env.fake.slash(
        "model",
        _model_name(QWEN_VISION_MODEL),
        channel_id=OTHER_CHANNEL_ID,
        user=BOB,
        permissions=NO_PERMISSIONS,
    )
    assert (await _model_reply(env, refused))["content"] == NOT_ADMIN
    after = await env.conversations.channel_model("discord", str(GUILD_ID), str(OTHER_CHANNEL_ID))
    assert after == before != QWEN_VISION_MODEL


async def test_model_without_a_name_describes_the_channels_model(env: Env) -> None:
    shown = await env.fake.slash("model", channel_id=TEXT_CHANNEL_ID, user=BOB)
    current = await env.conversations.channel_model("discord", str(GUILD_ID), str(TEXT_CHANNEL_ID))
    assert current in (await _model_reply(env, shown))["content"]


async def test_model_autocomplete_offers_matching_vision_models(env: Env) -> None:
    interaction = env.fake._interaction(  # noqa: SLF001 - the fake has no autocomplete helper
        "model", [], OTHER_CHANNEL_ID, BOB, {}
    )
    interaction["type"] = AUTOCOMPLETE
    interaction["data"]["options"] = [{"name": "name", "type": 3, "value": "QWEN", "focused": True}]
    await env.fake.dispatch("INTERACTION_CREATE", interaction)
    [callback] = await env.fake.wait_for(
        lambda: env.fake.calls_to("POST", f"/interactions/{interaction['id']}/")
    )
    assert callback.body["type"] == 8
    offered = [choice["value"] for choice in callback.body["data"]["choices"]]
    assert offered == [QWEN_VISION_MODEL]

    interaction = env.fake._interaction("model", [], OTHER_CHANNEL_ID, BOB, {})  # noqa: SLF001
    interaction["type"] = AUTOCOMPLETE
    interaction["data"]["options"] = [{"name": "name", "type": 3, "value": "", "focused": True}]
    await env.fake.dispatch("INTERACTION_CREATE", interaction)
    [callback] = await env.fake.wait_for(
        lambda: env.fake.calls_to("POST", f"/interactions/{interaction['id']}/")
    )
    offered = [choice["value"] for choice in callback.body["data"]["choices"]]
    assert "default" in offered and QWEN_VISION_MODEL in offered
    assert TEXT_ONLY_MODEL not in offered and len(offered) <= 25
