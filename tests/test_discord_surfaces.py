"""Discord's own AI surfaces: the user-installed app and the message menus, end to end against the fakes."""

from __future__ import annotations

from collections.abc import AsyncIterator
from typing import Any

import aiohttp
import pytest
import pytest_asyncio

from adapters.discord_interactions import CUT_MARK, MAX_FOLLOWUPS
from adapters.discord_menus import ASK_ABOUT, DESCRIBE, NO_IMAGE
from adapters.split import split_message
from bot.access import REFUSAL
from bot.config import Settings
from bot.messages import ConversationKey
from tests.discord_support import (
    DiscordEnv,
    connected_discord,
    content_text,
    png,
    requests_mentioning,
    texts_in,
)
from tests.fakes.discord import (
    ALICE,
    APP_ID,
    FOREIGN_CHANNEL_ID,
    FOREIGN_GUILD_ID,
    PRIVATE_CHANNEL_ID,
    TEXT_CHANNEL_ID,
    make_user,
)
from tests.fakes.openrouter import FakeOpenRouter

pytestmark = pytest.mark.asyncio(loop_scope="module")

MALLORY = make_user("mallory")
EPHEMERAL = 64
VIEW_CHANNEL, READ_MESSAGE_HISTORY = 1 << 10, 1 << 16
EVERYWHERE = [0, 1, 2]  # contexts: guild, bot DM, private channel
BOTH_INSTALLS = [0, 1]  # integration_types: guild install, user install

Env = DiscordEnv


@pytest_asyncio.fixture(scope="module", loop_scope="module")
async def env() -> AsyncIterator[Env]:
    async with FakeOpenRouter() as router:
        settings = Settings(  # no guild_ids: commands are global, as user installs need
            store_url="memory://",
            base_url=router.base_url,
            block_users=[MALLORY["id"]],
            user_messages_per_minute=0,
        )
        async with connected_discord(router, settings) as connected:
            yield connected


# --- helpers ---


def ask(question: str) -> list[dict[str, Any]]:
    return [{"name": "question", "type": 3, "value": question}]


async def answered_in_place(env: Env, interaction: dict[str, Any]) -> dict[str, Any]:
    """The deferred response, once it reads as a finished answer (the reply under the question)."""
    return await env.fake.wait_for(
        lambda: (
            (original := env.fake.original_response(interaction)) is not None
            and original["content"].endswith(env.router.reply)
            and original
        )
    )


def followups(env: Env, interaction: dict[str, Any]) -> list[Any]:
    return env.fake.calls_to("POST", f"/webhooks/{APP_ID}/{interaction['token']}")


def bot_calls_to_channel(env: Env, channel_id: int) -> list[Any]:
    return [c for c in env.fake.calls if c.path.startswith(f"/channels/{channel_id}")]


async def put_commands(env: Env, commands: list[dict[str, Any]]) -> tuple[int, dict[str, Any]]:
    headers = {"Authorization": f"Bot {env.fake.token}"}
    url = f"{env.fake.api_base}/applications/{APP_ID}/commands"
    async with (
        aiohttp.ClientSession() as session,
        session.put(url, json=commands, headers=headers) as r,
    ):
        return r.status, await r.json()


# --- registration ---


async def test_ask_reset_and_both_menus_install_to_users_and_work_everywhere(env: Env) -> None:
    commands = {(c["name"], c["type"]): c for c in env.fake.commands["global"]}
    for name, kind in (("ask", 1), ("reset", 1), (DESCRIBE, 3), (ASK_ABOUT, 3)):
        assert commands[name, kind]["integration_types"] == BOTH_INSTALLS
        assert commands[name, kind]["contexts"] == EVERYWHERE
    assert commands["model", 1]["integration_types"] is None  # a server's setting: servers only


@pytest.mark.parametrize(
    ("command", "problem"),
    [
        ({"name": "ask", "description": "d", "integration_types": [2]}, "integration_types"),
        ({"name": "ask", "description": "d", "contexts": [0, 3]}, "contexts"),
        ({"name": "ask", "description": "d", "contexts": []}, "contexts"),
        ({"name": "Look", "type": 3, "description": "no"}, "description"),
        ({"name": "Look", "type": 3, "options": [{"type": 3, "name": "x"}]}, "options"),
        ({"name": "ask", "description": "d", "installable": True}, "undocumented"),
        ({"name": "Ask Me", "description": "d"}, "name"),
    ],
)
async def test_the_fake_refuses_command_shapes_discord_does_not_document(
    env: Env, command: dict[str, Any], problem: str
) -> None:
    status, body = await put_commands(env, [command])
    assert status == 400 and body["code"] == 50035
    assert problem in body["message"]


async def test_the_fake_takes_a_message_command_for_users_everywhere(env: Env) -> None:
    saved = env.fake.commands["global"]
    menu = {"name": "Look", "type": 3, "integration_types": [1], "contexts": EVERYWHERE}
    try:
        status, body = await put_commands(env, [menu])
    finally:
        env.fake.commands["global"] = saved
    assert status == 200 and body[0]["integration_types"] == [1]


# --- /ask where the bot is not ---


async def test_ask_in_a_server_the_bot_is_not_in_answers_in_the_response(env: Env) -> None:
    interaction = await env.fake.slash(
        "ask", ask("what is a lighthouse?"), channel_id=FOREIGN_CHANNEL_ID
    )

    original = await answered_in_place(env, interaction)

    [callback] = env.fake.calls_to("POST", f"/interactions/{interaction['id']}/")
    assert callback.body["type"] == 5  # deferred at once, before any model work
    assert original["content"] == f"> what is a lighthouse?\n{env.router.reply}"
    assert not original.get("deleted") and not original["flags"] & EPHEMERAL
    assert followups(env, interaction) == []  # short: one message
    # The bot never tried to post, read or open a thread where it is not.
    assert bot_calls_to_channel(env, FOREIGN_CHANNEL_ID) == []


async def test_the_channel_is_one_conversation_with_memory(env: Env) -> None:
    first = await env.fake.slash("ask", ask("my cat is called Miso"), channel_id=FOREIGN_CHANNEL_ID)
    await answered_in_place(env, first)
    second = await env.fake.slash(
        "ask", ask("what is my cat called?"), channel_id=FOREIGN_CHANNEL_ID
    )
    await answered_in_place(env, second)

    [request] = requests_mentioning(env, "what is my cat called?")
    history = [content_text(m) for m in request["messages"]]
    assert any("my cat is called Miso" in text for text in history)
    [message] = [m for m in env.incoming if m.message_id == second["id"]]
    assert message.key.workspace == str(FOREIGN_GUILD_ID)
    assert message.key.channel == message.key.thread == str(FOREIGN_CHANNEL_ID)
    assert message.shared and not message.is_direct


async def test_a_long_answer_continues_in_follow_ups(env: Env) -> None:
    answer = "\n\n".join(f"Paragraph {i}: " + "the light turns slowly " * 20 for i in range(10))
    env.router.reply_next(answer)
    interaction = await env.fake.slash(
        "ask", ask("tell me everything"), channel_id=FOREIGN_CHANNEL_ID
    )

    header = "> tell me everything\n"
    pieces = split_message(answer, 2000 - max(len(header), len(CUT_MARK)))

    def shown() -> list[str] | None:
        texts = [m["content"] for m in env.fake.responses(interaction)]
        return texts if texts == [header + pieces[0], *pieces[1:]] else None

    texts = await env.fake.wait_for(shown)

    assert len(texts) > 1 and all(len(text) <= 2000 for text in texts)
    assert all(call.body.get("flags", 0) == 0 for call in followups(env, interaction))


async def test_ask_in_a_dm_between_people_answers_in_the_response(env: Env) -> None:
    interaction = await env.fake.slash(
        "ask", ask("is this a heron?"), channel_id=PRIVATE_CHANNEL_ID
    )

    await answered_in_place(env, interaction)

    [message] = [m for m in env.incoming if m.message_id == interaction["id"]]
    assert message.key.channel == str(PRIVATE_CHANNEL_ID) and message.shared
    assert bot_calls_to_channel(env, PRIVATE_CHANNEL_ID) == []


async def test_a_refusal_where_the_bot_is_not_reaches_only_the_asker(env: Env) -> None:
    interaction = await env.fake.slash(
        "ask", ask("blocked far away"), channel_id=FOREIGN_CHANNEL_ID, user=MALLORY
    )

    original = await env.fake.wait_for(lambda: env.fake.original_response(interaction))
    await env.fake.wait_for(lambda: original.get("deleted"))
    [note] = await env.fake.wait_for(lambda: followups(env, interaction))
    assert note.body["content"] == REFUSAL and note.body["flags"] == EPHEMERAL
    assert requests_mentioning(env, "blocked far away") == []


async def test_reset_where_the_bot_is_not_forgets_the_channel(env: Env) -> None:
    first = await env.fake.slash("ask", ask("remember the red kite"), channel_id=PRIVATE_CHANNEL_ID)
    await answered_in_place(env, first)

    reset = await env.fake.slash("reset", channel_id=PRIVATE_CHANNEL_ID)
    [callback] = await env.fake.wait_for(
        lambda: env.fake.calls_to("POST", f"/interactions/{reset['id']}/")
    )

    assert callback.body["data"]["flags"] == EPHEMERAL
    [message] = [m for m in env.incoming if m.message_id == first["id"]]
    assert not await env.conversations.is_active(message.key)


# --- the message menus ---


async def test_describe_in_a_server_the_bot_is_in_answers_in_a_thread(env: Env) -> None:
    picture = env.fake.attachment("harbour.png", png("navy"), "image/png")
    posted = await env.fake.user_message(TEXT_CHANNEL_ID, "our harbour", attachments=[picture])

    interaction = await env.fake.message_command(DESCRIBE, posted)

    original = await env.fake.wait_for(lambda: env.fake.original_response(interaction))
    await texts_in(env, int(original["id"]), [env.router.reply])
    assert original["content"].startswith("> Describe this image.\n↪ https://discord.com/channels/")
    [request] = await env.fake.wait_for(lambda: requests_mentioning(env, "Describe this image."))
    quoted = request["messages"][-2]  # the message described, as its author's turn
    assert quoted["content"][0]["type"] == "image_url" and "our harbour" in content_text(quoted)


async def test_describe_a_forwarded_image_where_the_bot_is_not(env: Env) -> None:
    picture = env.fake.attachment("gull.png", png("white"), "image/png")
    forward = env.fake.message_elsewhere(FOREIGN_CHANNEL_ID, forwarded=[picture])
    before = len(env.router.chat_requests)

    interaction = await env.fake.message_command(DESCRIBE, forward)

    await answered_in_place(env, interaction)
    [message] = [m for m in env.incoming if m.message_id == interaction["id"]]
    assert [ref.filename for quote in message.quoted for ref in quote.images] == ["gull.png"]
    where = str(FOREIGN_CHANNEL_ID)
    assert message.key == ConversationKey("discord", str(FOREIGN_GUILD_ID), where, where)
    [request] = [r.body for r in env.router.chat_requests[before:]]
    assert _has_image(request) and "Describe this image." in content_text(request["messages"][-1])
    assert bot_calls_to_channel(env, FOREIGN_CHANNEL_ID) == []


async def test_a_menu_on_a_message_without_an_image_gets_a_short_private_answer(env: Env) -> None:
    words = env.fake.message_elsewhere(FOREIGN_CHANNEL_ID, "just words here")
    requests = len(env.router.chat_requests)

    for name in (DESCRIBE, ASK_ABOUT):
        interaction = await env.fake.message_command(name, words)
        [callback] = await env.fake.wait_for(
            lambda i=interaction: env.fake.calls_to("POST", f"/interactions/{i['id']}/")
        )
        assert callback.body["type"] == 4
        assert callback.body["data"]["content"] == NO_IMAGE
        assert callback.body["data"]["flags"] == EPHEMERAL
    assert len(env.router.chat_requests) == requests


async def test_ask_about_an_image_opens_a_question_box_then_answers(env: Env) -> None:
    picture = env.fake.attachment("sign.png", png("yellow"), "image/png")
    posted = env.fake.message_elsewhere(PRIVATE_CHANNEL_ID, "look at this", attachments=[picture])

    menu = await env.fake.message_command(ASK_ABOUT, posted, user=ALICE)
    modal = await env.fake.wait_for(lambda: env.fake.modal_shown(menu))
    assert modal["title"] == ASK_ABOUT
    submit = await env.fake.submit_modal(menu, "what colour is the sign?")

    original = await answered_in_place(env, submit)
    assert original["content"].startswith("> what colour is the sign?\n↪ ")
    [request] = requests_mentioning(env, "what colour is the sign?")
    assert _has_image(request)
    assert "look at this" in content_text(request["messages"][-2])


# --- helpers that read requests ---


def _has_image(request: dict[str, Any]) -> bool:
    return any(
        isinstance(m["content"], list) and any(p["type"] == "image_url" for p in m["content"])
        for m in request["messages"]
    )


async def test_past_five_follow_ups_the_answer_is_cut_with_a_mark(env: Env) -> None:
    answer = "\n\n".join(f"Part {i}: " + "waves on the pier " * 30 for i in range(40))
    env.router.reply_next(answer)
    interaction = await env.fake.slash(
        "ask", ask("an endless answer"), channel_id=PRIVATE_CHANNEL_ID
    )

    def cut() -> list[str] | None:
        shown = [m["content"] for m in env.fake.responses(interaction)]
        return shown if shown and shown[-1].endswith(CUT_MARK) else None

    texts = await env.fake.wait_for(cut)

    assert len(texts) == 1 + MAX_FOLLOWUPS  # the response and Discord's five follow-ups
    assert all(len(text) <= 2000 for text in texts)
    header = "> an endless answer"
    pieces = split_message(answer, 2000 - max(len(header) + 1, len(CUT_MARK)))
    assert texts == [f"{header}\n{pieces[0]}", *pieces[1:5], pieces[5] + CUT_MARK]


async def test_a_replayed_menu_interaction_is_answered_once(env: Env) -> None:
    picture = env.fake.attachment("twice.png", png("teal"), "image/png")
    posted = env.fake.message_elsewhere(
        FOREIGN_CHANNEL_ID, "the same picture", attachments=[picture]
    )
    before = len(env.router.chat_requests)
    interaction = await env.fake.message_command(DESCRIBE, posted)
    await answered_in_place(env, interaction)

    await env.fake.dispatch("INTERACTION_CREATE", interaction)
    await env.fake.wait_for(
        lambda: len(env.fake.calls_to("POST", f"/interactions/{interaction['id']}/")) == 2
    )
    asked = [
        r
        for r in env.router.chat_requests[before:]
        if "Describe this image." in content_text(r.body["messages"][-1])
    ]
    assert len(asked) == 1  # other requests here may be the channel's memory being summarised
    assert len(env.fake.responses(interaction)) == 1


async def test_where_the_bot_may_not_send_messages_it_answers_in_the_response(env: Env) -> None:
    interaction = env.fake._interaction(  # noqa: SLF001 - app_permissions as a channel override leaves them
        "ask", ask("muted here?"), TEXT_CHANNEL_ID, ALICE, {}
    )
    interaction["app_permissions"] = str(VIEW_CHANNEL | READ_MESSAGE_HISTORY)
    await env.fake.dispatch("INTERACTION_CREATE", interaction)

    original = await answered_in_place(env, interaction)

    assert original["content"] == f"> muted here?\n{env.router.reply}"
    assert env.fake.calls_to("POST", f"/messages/{original['id']}/threads") == []
    [message] = [m for m in env.incoming if m.message_id == interaction["id"]]
    assert message.key.channel == message.key.thread == str(TEXT_CHANNEL_ID)


@pytest.mark.parametrize(
    ("body", "problem"),
    [
        ({"content": "hi", "flags": 1 << 15}, "IS_COMPONENTS_V2"),
        ({"content": "hi", "flags": 1 << 3}, "flags"),
        ({"content": "x" * 2001}, "content"),
        ({"content": "hi", "thread_id": "1"}, "undocumented"),
    ],
)
async def test_the_fake_refuses_follow_ups_discord_would_refuse(
    env: Env, body: dict[str, Any], problem: str
) -> None:
    interaction = await env.fake.slash(
        "ask", ask("a follow-up test"), channel_id=PRIVATE_CHANNEL_ID
    )
    await answered_in_place(env, interaction)
    url = f"{env.fake.api_base}/webhooks/{APP_ID}/{interaction['token']}"
    async with aiohttp.ClientSession() as session, session.post(url, json=body) as r:
        status, answer = r.status, await r.json()
    assert status == 400 and answer["code"] == 50035 and problem in answer["message"]
