"""Security: image fetches stay on allowed hosts, bad Slack signatures are refused, secrets stay out of logs,
and no conversation ever sees another's turns."""

from __future__ import annotations

import asyncio
import hashlib
import hmac
import logging
import re
import sys
import time
from collections.abc import AsyncIterator, Callable
from typing import Any

import pytest
from aiohttp import web
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from pydantic import SecretStr

from bot.app import build_conversations
from bot.config import Secrets
from bot.messages import ConversationKey, IncomingMessage
from bot.store import StoreError
from tests.fakes.openrouter import FAKE_API_KEY, FakeOpenRouter
from tests.fakes.slack import BOT_TOKEN, SIGNING_SECRET, command_body, event_body, sign
from tests.reliability.checks import echo
from tests.reliability.harness import (
    CHANNEL,
    USER,
    RecordingSink,
    core_settings,
    running_core,
    slack_mention,
    slack_rig,
)
from tests.reliability.secrets_watch import REDIS_PASSWORD, WATCH, SecretWatch

# --- image fetches: only the platform's file host (here the fake Slack on 127.0.0.1) ---


class Trap:
    """An HTTP server on another loopback address that should never be reached."""

    def __init__(self) -> None:
        self.hits: list[str] = []
        self.port = 0

    async def handle(self, request: web.Request) -> web.Response:
        self.hits.append(request.path)
        return web.Response(body=b"\x89PNG secret", content_type="image/png")


@pytest.fixture
async def trap() -> AsyncIterator[Trap]:
    if sys.platform != "linux":
        pytest.skip("127.0.0.2 is a loopback address on Linux only")
    found = Trap()
    app = web.Application()
    app.router.add_get("/{tail:.*}", found.handle)
    runner = web.AppRunner(app, access_log=None)
    await runner.setup()
    await web.TCPSite(runner, "127.0.0.2", 0).start()
    found.port = runner.addresses[0][1]
    try:
        yield found
    finally:
        await runner.cleanup()


URL_TRICKS: list[tuple[str, str]] = [
    ("other-loopback-address", "http://127.0.0.2:{trap}/cat.png"),
    ("localhost-by-name", "http://localhost:{trap}/cat.png"),
    ("ipv6-loopback", "http://[::1]:{trap}/cat.png"),
    ("all-zeros", "http://0.0.0.0:{trap}/cat.png"),
    ("decimal-ip", "http://2130706434:{trap}/cat.png"),
    ("cloud-metadata", "http://169.254.169.254/latest/meta-data/iam"),
    ("private-lan", "http://10.0.0.1/cat.png"),
    ("userinfo-trick", "https://files.slack.com@127.0.0.2:{trap}/cat.png"),
    ("suffix-trick", "https://files.slack.com.127.0.0.2.nip.io/cat.png"),
    ("external-host", "https://evil.example/cat.png"),
    ("file-scheme", "file:///etc/passwd"),
    ("data-scheme", "data:image/png;base64,iVBORw0KGgo="),
    ("ftp-scheme", "ftp://127.0.0.2/cat.png"),
    ("no-host", "https:///cat.png"),
]


@pytest.mark.parametrize("url", [u for _, u in URL_TRICKS], ids=[i for i, _ in URL_TRICKS])
async def test_an_image_link_off_the_platforms_file_host_is_refused_and_never_fetched(
    url: str, trap: Trap
) -> None:
    async with slack_rig() as rig:
        link = url.format(trap=trap.port)
        file = {"id": "F0TRICK", "name": "cat.png", "mimetype": "image/png", "size": 100}
        event = slack_mention("what is this?", files=[{**file, "url_private": link}])
        await rig.event(event)
        await rig.settle()
        refusal, answer = rig.thread(event["ts"])
        assert refusal.startswith("cat.png ") and answer == rig.router.reply
        assert trap.hits == []
        assert "image_url" not in str(rig.router.chat_requests[0].body)


async def test_a_redirect_from_the_file_host_to_elsewhere_is_not_followed(trap: Trap) -> None:
    # A file host on the trusted address (127.0.0.1, SLACK_API_URL's host) that sends the bot away.
    target = f"http://127.0.0.2:{trap.port}/latest/meta-data"

    async def send_away(_: web.Request) -> web.Response:
        raise web.HTTPFound(target)

    app = web.Application()
    app.router.add_get("/files-pri/{tail:.*}", send_away)
    runner = web.AppRunner(app, access_log=None)
    await runner.setup()
    await web.TCPSite(runner, "127.0.0.1", 0).start()
    try:
        async with slack_rig() as rig:
            link = f"http://127.0.0.1:{runner.addresses[0][1]}/files-pri/T1-F1/cat.png"
            file = {"id": "F1", "name": "cat.png", "mimetype": "image/png", "url_private": link}
            event = slack_mention("what is this?", files=[file])
            await rig.event(event)
            await rig.settle()
            refusal, answer = rig.thread(event["ts"])
    finally:
        await runner.cleanup()
    assert "redirect, which is not followed" in refusal and answer.startswith("The picture")
    assert trap.hits == []


# --- Slack signatures ---


def _signed(body: str, *, secret: str = SIGNING_SECRET, stamp: str | None = None) -> dict[str, str]:
    stamp = stamp if stamp is not None else str(int(time.time()))
    digest = hmac.new(secret.encode(), f"v0:{stamp}:{body}".encode(), hashlib.sha256).hexdigest()
    return {"X-Slack-Request-Timestamp": stamp, "X-Slack-Signature": f"v0={digest}"}


SIGNATURE_ATTACKS: list[tuple[str, Callable[[str], tuple[str, dict[str, str]]]]] = [
    ("future-timestamp", lambda b: (b, _signed(b, stamp=str(int(time.time()) + 6 * 60)))),
    ("body-changed-after-signing", lambda b: (b.replace("sneaky", "SNEAKY"), sign(b))),
    (
        "v1-scheme",
        lambda b: (
            b,
            {**sign(b), "X-Slack-Signature": sign(b)["X-Slack-Signature"].replace("v0=", "v1=")},
        ),
    ),
    ("timestamp-not-a-number", lambda b: (b, _signed(b, stamp="soon"))),
    ("empty-signature", lambda b: (b, {**sign(b), "X-Slack-Signature": ""})),
    ("signature-only", lambda b: (b, {"X-Slack-Signature": sign(b)["X-Slack-Signature"]})),
    ("signed-with-the-bot-token", lambda b: (b, _signed(b, secret=BOT_TOKEN))),
    (
        "stale-replay-of-a-valid-request",
        lambda b: (b, _signed(b, stamp=str(int(time.time()) - 301))),
    ),
]


@pytest.mark.parametrize(
    "attack", [a for _, a in SIGNATURE_ATTACKS], ids=[i for i, _ in SIGNATURE_ATTACKS]
)
async def test_a_badly_signed_slack_request_gets_401_and_no_model_call(
    attack: Callable[[str], tuple[str, dict[str, str]]],
) -> None:
    async with slack_rig() as rig:
        event_request = attack(event_body(slack_mention("sneaky")))
        command = command_body(
            "/ask", "sneaky", channel=CHANNEL, user=USER, response_url=rig.slack.response_url()
        )
        command_request = attack(command)
        assert await rig.post(*event_request) == 401
        assert await rig.post(*command_request, "application/x-www-form-urlencoded") == 401
        await rig.settle()
        assert rig.router.chat_requests == [] and rig.slack.calls_to("chat.postMessage") == []


# --- secrets in logs ---


def test_the_watch_finds_a_secret_in_a_log_line_and_a_traceback() -> None:
    watch = SecretWatch()
    logger = logging.getLogger("glimpse.test.watch")
    logger.addHandler(watch)
    logger.propagate = False  # planted secrets must not reach the suite's own watch
    try:
        logger.error("calling with key %s", FAKE_API_KEY)
        try:
            raise RuntimeError(f"token={BOT_TOKEN}")
        except RuntimeError:
            logger.exception("failed")
        logger.info("nothing to see")
    finally:
        logger.removeHandler(watch)
        logger.propagate = True
    assert [leak.source for leak in watch.leaks] == ["glimpse.test.watch"] * 2
    assert watch.records == 3


async def test_error_paths_that_handle_secrets_log_none_of_them(
    fake_openrouter: FakeOpenRouter,
) -> None:
    leaks_before = len(WATCH.leaks)
    fake_openrouter.fail_next(401, message=f"Invalid key {FAKE_API_KEY} for Bearer {FAKE_API_KEY}")
    async with running_core(core_settings(fake_openrouter, max_retries=0)) as conversations:
        sink = RecordingSink()
        await conversations.handle(_message("hello", ConversationKey("t", "w", "c", "x")), sink)
        assert FAKE_API_KEY not in " ".join(sink.seen)
    broken = core_settings(fake_openrouter, store_url=f"redis://:{REDIS_PASSWORD}@127.0.0.1:9/0")
    conversations = build_conversations(broken, Secrets(openrouter_api_key=SecretStr(FAKE_API_KEY)))
    with pytest.raises(StoreError) as caught:
        await conversations.start()
    assert REDIS_PASSWORD not in str(caught.value)
    await conversations.close()
    assert WATCH.records > 0 and WATCH.leaks[leaks_before:] == []


# --- no conversation sees another's turns (a property over random interleavings) ---

# Keys that collide if anything joins their parts naively, differ only in case or a space.
KEYS = (
    ConversationKey("slack", "T1", "C1", "t1"),
    ConversationKey("slack", "T1", "C1:t1", ""),
    ConversationKey("slack", "T1:C1", "t1", ""),
    ConversationKey("discord", "T1", "C1", "t1"),
    ConversationKey("slack", "T1", "C1", "t1 "),
    ConversationKey("slack", "t1", "c1", "T1"),
)
NOTE = re.compile(r"N(\d+)x")

# Each message: (which conversation, which wave); a wave's messages are sent all at once.
scripts = st.lists(
    st.tuples(st.integers(0, len(KEYS) - 1), st.integers(0, 3)), min_size=2, max_size=14
)


@settings(max_examples=25, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(script=scripts)
def test_no_conversation_ever_sees_another_conversations_turns(
    script: list[tuple[int, int]],
) -> None:
    owners = asyncio.run(_play(script))
    requests, owner_of = owners
    assert len(requests) == len(script)
    for body in requests:
        notes = [
            int(n) for message in body["messages"] for n in NOTE.findall(str(message["content"]))
        ]
        mine = owner_of[notes[-1]]  # the newest note is the question being asked
        assert {owner_of[n] for n in notes} == {mine}, (body, script)


async def _play(script: list[tuple[int, int]]) -> tuple[list[dict[str, Any]], dict[int, int]]:
    owner_of = {n: conversation for n, (conversation, _) in enumerate(script)}
    async with FakeOpenRouter(responder=echo) as fake:
        async with running_core(core_settings(fake)) as conversations:
            for wave in sorted({w for _, w in script}):
                batch = [
                    conversations.handle(_message(f"note N{n}x", KEYS[c]), RecordingSink())
                    for n, (c, w) in enumerate(script)
                    if w == wave
                ]
                await asyncio.gather(*batch)
        return [r.body for r in fake.chat_requests], owner_of


def _message(text: str, key: ConversationKey) -> IncomingMessage:
    return IncomingMessage(key=key, message_id=f"{text}-{id(key)}", author_id="u1", text=text)
