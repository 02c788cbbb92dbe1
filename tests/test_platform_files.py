"""Every file people post reaches the core: Discord attachments and Slack files, not only images.

The adapters hand the core each attachment with a URL, an image (by the platform's word) as an
ImageRef and anything else as a FileRef; the core sniffs the bytes and reads what it can.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from typing import Any

import pytest
import pytest_asyncio

from adapters.discord_translate import thread_name
from bot.config import Settings
from bot.messages import FileRef, ImageRef
from tests.core_support import record_handed_over
from tests.discord_support import (
    DiscordEnv,
    connected_discord,
    content_text,
    png,
    received,
    requests_mentioning,
)
from tests.fakes.discord import BOB, GUILD_ID, OTHER_CHANNEL_ID, TEXT_CHANNEL_ID, FakeDiscord
from tests.fakes.openrouter import FakeOpenRouter
from tests.fakes.slack import BOT_TOKEN
from tests.test_slack import (
    CHANNEL,
    OTHER_USER,
    USER,
    Harness,
    mention,
    message,
    running,
    user_texts,
)

LOG = (
    b"2026-12-03 22:10:04 INFO worker 3 starting\n"
    b"2026-12-03 22:10:05 ERROR disk quota exceeded on /var/lib/glimpse\n"
)
LOG_LINE = "disk quota exceeded on /var/lib/glimpse"
PDF = b"%PDF-1.4\n%\xe2\xe3\xcf\xd3\n1 0 obj << /Type /Catalog >> endobj\ntrailer << >>\n%%EOF\n"
BEARER = {"Authorization": f"Bearer {BOT_TOKEN}"}

on_discord = pytest.mark.asyncio(loop_scope="module")  # one Discord connection for the module


@pytest_asyncio.fixture(scope="module", loop_scope="module")
async def discord_env() -> AsyncIterator[DiscordEnv]:
    async with FakeOpenRouter() as router:
        settings = Settings(
            store_url="memory://",
            base_url=router.base_url,
            user_messages_per_minute=0,
            discord={"guild_ids": [str(GUILD_ID)]},
        )
        async with connected_discord(router, settings) as connected:
            yield connected


@pytest.fixture
async def slack() -> AsyncIterator[Harness]:
    async with running() as h:
        yield h


def cdn_ref(fake: FakeDiscord, name: str, mime_type: str | None, size: int) -> FileRef:
    """What the Discord adapter should hand over for an attachment the fake hosts."""
    return FileRef(name, url=fake.attachment_url(name), mime_type=mime_type, size=size)


def slack_ref(file: dict[str, Any]) -> FileRef:
    """What the Slack adapter should hand over for a file the fake hosts."""
    return FileRef(
        filename=file["name"],
        url=file["url_private_download"],
        mime_type=file["mimetype"],
        size=file["size"],
        headers=BEARER,
    )


# --- Discord ---


@on_discord
async def test_discord_log_and_pdf_attachments_reach_the_core_as_files(
    discord_env: DiscordEnv,
) -> None:
    fake = discord_env.fake
    log = fake.attachment("error.log", LOG, "text/plain; charset=utf-8")
    pdf = fake.attachment("invoice.pdf", PDF, "application/pdf")
    blob = fake.attachment("dump", b"\x00\x01\x02", None)  # Discord could not tell its type
    photo = fake.attachment("boat.png", png(), "image/png")
    posted = await fake.user_message(
        TEXT_CHANNEL_ID,
        "why does this fail?",
        mention_bot=True,
        attachments=[log, pdf, blob, photo],
    )

    incoming = await received(discord_env, posted["id"])
    assert incoming.files == (
        cdn_ref(fake, "error.log", "text/plain; charset=utf-8", len(LOG)),
        cdn_ref(fake, "invoice.pdf", "application/pdf", len(PDF)),
        cdn_ref(fake, "dump", None, 3),
    )
    assert [image.filename for image in incoming.images] == ["boat.png"]
    assert incoming.other_files == ()


@on_discord
async def test_discord_reply_to_someones_log_carries_it_in_the_quote(
    discord_env: DiscordEnv,
) -> None:
    fake = discord_env.fake
    log = fake.attachment("deploy.log", LOG, "text/plain")
    posted = await fake.user_message(
        OTHER_CHANNEL_ID, "deploy failed again", author=BOB, attachments=[log]
    )
    question = await fake.user_message(
        OTHER_CHANNEL_ID, "what went wrong?", mention_bot=True, reply_to=int(posted["id"])
    )

    incoming = await received(discord_env, question["id"])
    assert incoming.files == ()
    [quote] = incoming.quoted
    assert (quote.kind, quote.author_name, quote.text) == ("reply", "Bob", "deploy failed again")
    assert quote.files == (cdn_ref(fake, "deploy.log", "text/plain", len(LOG)),)


@on_discord
async def test_discord_forwarded_pdf_is_a_file_of_the_forward(discord_env: DiscordEnv) -> None:
    fake = discord_env.fake
    pdf = fake.attachment("forwarded-invoice.pdf", PDF, "application/pdf")
    await fake.forward(TEXT_CHANNEL_ID, "the invoice", attachments=[pdf])
    comment = await fake.user_message(TEXT_CHANNEL_ID, "is this paid?", mention_bot=True)

    incoming = await received(discord_env, comment["id"])
    [quote] = incoming.quoted
    assert quote.kind == "forward"
    assert [(f.filename, f.url) for f in quote.files] == [
        ("forwarded-invoice.pdf", fake.attachment_url("forwarded-invoice.pdf"))
    ]


@on_discord
async def test_discord_ask_takes_a_text_file(discord_env: DiscordEnv) -> None:
    fake = discord_env.fake
    [ask] = [c for c in fake.commands[str(GUILD_ID)] if c["name"] == "ask"]
    [option] = [o for o in ask["options"] if o["name"] == "image"]
    assert option["description"] == "An image, a text file or a PDF to ask about"

    log = fake.attachment("ask-error.log", LOG, "text/plain")
    options = [
        {"name": "question", "type": 3, "value": "what's wrong in this log?"},
        {"name": "image", "type": 11, "value": log["id"]},
    ]
    interaction = await fake.slash("ask", options, attachments={log["id"]: log})

    incoming = await received(discord_env, interaction["id"])
    assert incoming.files == (cdn_ref(fake, "ask-error.log", "text/plain", len(LOG)),)
    assert (incoming.images, incoming.other_files) == ((), ())
    original = await fake.wait_for(lambda: fake.original_response(interaction))
    assert original["content"] == "> what's wrong in this log?\n📎 ask-error.log"


@on_discord
async def test_discord_attached_logs_text_reaches_the_model(discord_env: DiscordEnv) -> None:
    log = discord_env.fake.attachment("worker.log", LOG, "text/plain")
    await discord_env.fake.user_message(
        TEXT_CHANNEL_ID, "why does the worker stop?", mention_bot=True, attachments=[log]
    )

    [request] = await discord_env.fake.wait_for(
        lambda: requests_mentioning(discord_env, "why does the worker stop?")
    )
    turn = content_text(request["messages"][-1])
    assert LOG_LINE in turn and "worker.log" in turn


def test_a_thread_without_a_question_is_named_after_the_first_image_else_the_first_file() -> None:
    log = FileRef("crash.log", url="https://cdn.example/crash.log")
    photo = ImageRef("cat.png", url="https://cdn.example/cat.png")
    assert thread_name("", (), (log,)) == "File: crash.log"
    assert thread_name("", (photo,), (log,)) == "Image: cat.png"
    assert thread_name("why?", (photo,), (log,)) == "why?"


# --- Slack ---


async def test_slack_mention_with_a_text_file_hands_it_over_with_the_bearer_token(
    slack: Harness,
) -> None:
    seen = record_handed_over(slack.conversations)
    log = slack.slack.add_file("error.log", LOG, "text/plain")
    photo = slack.slack.add_file("boat.png", png(), "image/png")
    await slack.event(mention("why does this fail?", files=[log, photo]))
    await slack.settle()

    [incoming] = seen
    assert incoming.files == (slack_ref(log),)
    assert [(i.filename, i.headers) for i in incoming.images] == [("boat.png", BEARER)]
    assert BOT_TOKEN not in repr(incoming.files)


async def test_slack_thread_first_message_brings_its_file(slack: Harness) -> None:
    seen = record_handed_over(slack.conversations)
    pdf = slack.slack.add_file("invoice.pdf", PDF, "application/pdf")
    parent = slack.slack.add_user_message(CHANNEL, OTHER_USER, "the invoice", files=[pdf])
    await slack.event(mention("is this paid?", thread_ts=parent["ts"]))
    await slack.settle()

    [quote] = seen[0].quoted
    assert (quote.kind, quote.text, quote.author_name) == ("reply", "the invoice", "Bob Stone")
    assert quote.files == (slack_ref(pdf),)


async def test_slack_file_without_a_url_is_only_named(slack: Harness) -> None:
    seen = record_handed_over(slack.conversations)
    gone = {"id": "F0GONE", "name": "gone.log", "mimetype": "text/plain", "mode": "tombstone"}
    event = mention("what was in it?", files=[gone])
    await slack.event(event)
    await slack.settle()

    assert (seen[0].files, seen[0].other_files) == ((), ("gone.log",))
    texts = [m.text for m in slack.slack.thread(CHANNEL, event["ts"])]
    assert any("gone.log" in text for text in texts)  # the core's note names it
    assert slack.slack.file_downloads == []


async def test_slack_ask_reads_the_log_the_asker_just_uploaded(slack: Harness) -> None:
    seen = record_handed_over(slack.conversations)
    log = slack.slack.add_file("error.log", LOG, "text/plain")
    slack.slack.add_user_message(CHANNEL, USER, "", files=[log])
    await slack.command("what's wrong in this log?")
    await slack.settle()

    [question] = [m for m in slack.slack.top_level(CHANNEL) if "asks:" in m.text]
    assert question.text == f"*<@{USER}> asks:* what's wrong in this log? _(about error.log)_"
    [incoming] = seen
    assert (incoming.files, incoming.images) == ((slack_ref(log),), ())


async def test_slack_ask_looks_up_a_slack_connect_upload(slack: Harness) -> None:
    seen = record_handed_over(slack.conversations)
    log = slack.slack.add_file("shared.log", LOG, "text/plain")
    stub = {"id": log["id"], "mode": "hosted", "file_access": "check_file_info"}
    slack.slack.add_user_message(CHANNEL, USER, "", files=[stub])
    await slack.command("what does this say?")
    await slack.settle()

    assert [call.args["file"] for call in slack.slack.calls_to("files.info")] == [log["id"]]
    assert seen[0].files == (slack_ref(log),)


async def test_slack_reset_with_a_file_is_a_question_not_a_reset(slack: Harness) -> None:
    first = mention("remember the number 42")
    await slack.event(first)
    await slack.settle()
    log = slack.slack.add_file("reset.log", LOG, "text/plain")
    await slack.event(message("reset", thread_ts=first["ts"], files=[log]))
    await slack.settle()

    assert len(slack.router.chat_requests) == 2
    assert all("forgotten" not in m.text for m in slack.slack.thread(CHANNEL, first["ts"]))


async def test_slack_uploaded_logs_text_reaches_the_model(slack: Harness) -> None:
    log = slack.slack.add_file("error.log", LOG, "text/plain")
    await slack.event(mention("why does this fail?", files=[log]))
    await slack.settle()

    [(path, authorization)] = slack.slack.file_downloads
    assert path.endswith("/download/error.log") and authorization == BEARER["Authorization"]
    [body] = slack.chat_bodies()
    assert LOG_LINE in user_texts(body)[-1] and "error.log" in user_texts(body)[-1]
