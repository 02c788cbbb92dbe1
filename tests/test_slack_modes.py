"""Both ways Slack reaches the bot: `run_slack` over HTTP, and Socket Mode over a loopback websocket."""

from __future__ import annotations

import asyncio
import json
import socket
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager, suppress
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs

import aiohttp
import pytest

from adapters.slack import SlackAdapter, api_base_url, run_slack
from bot.app import build_conversations
from bot.config import ConfigError, Secrets, Settings, SlackSettings
from bot.conversations import Conversations
from tests.fakes.openrouter import FAKE_API_KEY, FakeOpenRouter
from tests.fakes.slack import (
    APP_TOKEN,
    BOT_TOKEN,
    BOT_USER_ID,
    SIGNING_SECRET,
    TEAM_ID,
    FakeSlack,
    Posted,
    block_actions_body,
    command_body,
    event_body,
    sign,
)

ROOT = Path(__file__).parent.parent
CHANNEL = "C0GENERAL1"
USER = "U0ALICE01"
WAIT_SECONDS = 5.0
POLL_SECONDS = 0.02


@asynccontextmanager
async def core(router: FakeOpenRouter) -> AsyncIterator[Conversations]:
    settings = Settings(store_url="memory://", base_url=router.base_url)
    conversations = build_conversations(settings, Secrets(openrouter_api_key=FAKE_API_KEY))
    await conversations.start()
    try:
        yield conversations
    finally:
        await conversations.close()


def secrets_for(slack: FakeSlack, **overrides: Any) -> Secrets:
    values: dict[str, Any] = {
        "openrouter_api_key": FAKE_API_KEY,
        "slack_bot_token": BOT_TOKEN,
        "slack_signing_secret": SIGNING_SECRET,
        "slack_app_token": APP_TOKEN,
        "slack_api_url": slack.api_url,
        **overrides,
    }
    return Secrets(**values)


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


async def until(condition: Callable[[], object], what: str) -> None:
    for _ in range(int(WAIT_SECONDS / POLL_SECONDS)):
        if condition():
            return
        await asyncio.sleep(POLL_SECONDS)
    raise AssertionError(f"gave up waiting for {what}")


async def stop(task: asyncio.Task[None]) -> None:
    task.cancel()
    with suppress(asyncio.CancelledError):
        await task


async def test_run_slack_serves_http_on_the_given_port_until_cancelled() -> None:
    port = free_port()
    async with FakeOpenRouter() as router, FakeSlack() as slack, core(router) as conversations:
        settings = Settings(store_url="memory://", base_url=router.base_url)
        task = asyncio.create_task(
            run_slack(
                conversations, settings, secrets_for(slack), http=True, port=port, host="127.0.0.1"
            )
        )
        url = f"http://127.0.0.1:{port}/slack/events"
        body = command_body(
            "/ask", "hello over http", channel=CHANNEL, user=USER, response_url=slack.response_url()
        )
        async with aiohttp.ClientSession() as http:
            status = await _post_when_up(http, url, body)
            assert status == 200
            assert conversations.readiness.snapshot() == {"slack": True}
            await until(lambda: _answers(slack), "the answer")
            await stop(task)
            assert conversations.readiness.snapshot() == {"slack": False}
            with pytest.raises(aiohttp.ClientConnectionError):
                await http.post(url, data=body)
        [question] = slack.top_level(CHANNEL)
        assert _answers(slack)[0].thread_ts == question.ts


async def _post_when_up(http: aiohttp.ClientSession, url: str, body: str) -> int:
    async with asyncio.timeout(WAIT_SECONDS):
        while True:
            try:
                headers = {**sign(body), "Content-Type": "application/x-www-form-urlencoded"}
                async with http.post(url, data=body, headers=headers) as resp:
                    return resp.status
            except aiohttp.ClientConnectionError:
                await asyncio.sleep(0.02)


def _answers(slack: FakeSlack) -> list[Posted]:
    return [m for m in slack.messages if m.thread_ts is not None]


async def test_socket_mode_receives_events_over_the_websocket_acks_them_and_answers_once() -> None:
    async with FakeOpenRouter() as router, FakeSlack() as slack, core(router) as conversations:
        settings = Settings(store_url="memory://", base_url=router.base_url)
        secrets = secrets_for(slack, slack_signing_secret=None)
        task = asyncio.create_task(run_slack(conversations, settings, secrets))
        await slack.wait_for_socket()
        event = {
            "type": "app_mention",
            "user": USER,
            "text": f"<@{BOT_USER_ID}> over the socket",
            "ts": "1700000000.000200",
            "channel": CHANNEL,
            "team": TEAM_ID,
        }
        payload = json.loads(event_body(event, event_id="Ev0SOCKET1"))
        first = await slack.send_envelope(payload)
        await until(lambda: slack.thread(CHANNEL, event["ts"]), "the answer")
        await until(lambda: conversations.readiness.snapshot().get("slack"), "readiness reported")
        retry = await slack.send_envelope(payload, retry_attempt=1)
        await until(lambda: len(slack.socket_acks) >= 2, "both acks")
        await stop(task)
    assert {ack["envelope_id"] for ack in slack.socket_acks} == {first, retry}
    assert [call.headers["Authorization"] for call in slack.calls_to("apps.connections.open")] == [
        f"Bearer {APP_TOKEN}"
    ]
    assert len(router.chat_requests) == 1 and len(slack.thread(CHANNEL, event["ts"])) == 1


async def test_a_feedback_click_over_socket_mode_is_acked_and_recorded() -> None:
    async with FakeOpenRouter() as router, FakeSlack() as slack, core(router) as conversations:
        settings = Settings(store_url="memory://", base_url=router.base_url)
        task = asyncio.create_task(run_slack(conversations, settings, secrets_for(slack)))
        await slack.wait_for_socket()
        event = {
            "type": "app_mention",
            "user": USER,
            "text": f"<@{BOT_USER_ID}> rate me",
            "ts": "1700000000.000300",
            "channel": CHANNEL,
            "team": TEAM_ID,
        }
        await slack.send_envelope(json.loads(event_body(event)))
        await until(lambda: [m for m in _answers(slack) if m.blocks], "the finished answer")
        [answer] = slack.thread(CHANNEL, event["ts"])
        action = slack.feedback_action(answer, good=False)
        form = block_actions_body(action, answer, user=USER, response_url=slack.response_url())
        click = await slack.send_envelope(
            json.loads(parse_qs(form)["payload"][0]), kind="interactive"
        )
        await until(lambda: any(a["envelope_id"] == click for a in slack.socket_acks), "the ack")
        ledger = conversations.feedback._ledger  # type: ignore[attr-defined]
        await until(lambda: ledger.ratings, "the rating recorded")
        await stop(task)
    [rating] = ledger.ratings.values()
    assert (rating.answer_id, rating.rating, rating.rater.user) == (answer.ts, "bad", USER)


async def test_socket_mode_handler_uses_the_app_token_and_the_overridden_api_url() -> None:
    async with FakeOpenRouter() as router, FakeSlack() as slack, core(router) as conversations:
        adapter = SlackAdapter(
            conversations, Settings(base_url=router.base_url), secrets_for(slack), http=False
        )
        try:
            handler = adapter.socket_mode_handler()
            assert handler.app_token == APP_TOKEN
            assert handler.client.web_client.base_url == slack.api_url
            assert handler.app is adapter.app
        finally:
            await adapter.close()


@pytest.mark.parametrize(
    "overrides, http, missing",
    [
        ({"slack_bot_token": None}, True, "SLACK_BOT_TOKEN"),
        ({"slack_signing_secret": None}, True, "SLACK_SIGNING_SECRET"),
        ({"slack_app_token": None}, False, "SLACK_APP_TOKEN"),
    ],
)
async def test_a_missing_slack_secret_is_a_clear_config_error(
    overrides: dict[str, Any], http: bool, missing: str
) -> None:
    async with FakeOpenRouter() as router, FakeSlack() as slack, core(router) as conversations:
        settings = Settings(base_url=router.base_url, slack=SlackSettings())
        with pytest.raises(ConfigError, match=missing):
            await run_slack(
                conversations,
                settings,
                secrets_for(slack, **overrides),
                http=http,
                port=free_port(),
                host="127.0.0.1",
            )


async def test_a_refused_bot_token_stops_start_up_with_a_clear_error() -> None:
    async with FakeOpenRouter() as router, FakeSlack() as slack, core(router) as conversations:
        secrets = secrets_for(slack, slack_bot_token="xoxb-wrong.token")
        with pytest.raises(ConfigError, match="invalid_auth"):
            await run_slack(
                conversations,
                Settings(base_url=router.base_url),
                secrets,
                http=True,
                port=free_port(),
                host="127.0.0.1",
            )


@pytest.mark.parametrize(
    "given, expected",
    [
        ("", "https://slack.com/api/"),
        ("http://127.0.0.1:8080/api", "http://127.0.0.1:8080/api/"),
        ("https://proxy.example/slack/api/", "https://proxy.example/slack/api/"),
    ],
)
def test_api_base_url_always_ends_with_a_slash(given: str, expected: str) -> None:
    assert api_base_url(given) == expected


def test_the_manifest_asks_for_what_the_adapter_uses() -> None:
    yaml = pytest.importorskip("yaml")
    manifest = yaml.safe_load((ROOT / "config" / "slack-manifest.yaml").read_text(encoding="utf-8"))
    defaults = SlackSettings()
    commands = {c["command"] for c in manifest["features"]["slash_commands"]}
    assert commands == {defaults.command, defaults.reset_command}
    events = set(manifest["settings"]["event_subscriptions"]["bot_events"])
    assert {
        "app_mention",
        "message.channels",
        "message.groups",
        "message.im",
        "message.mpim",
    } <= events
    scopes = set(manifest["oauth_config"]["scopes"]["bot"])
    needed = {
        "app_mentions:read",
        "chat:write",
        "commands",
        "files:read",
        "reactions:write",
        "users:read",
    }
    assert needed | {"channels:history", "groups:history", "im:history", "mpim:history"} <= scopes
    assert manifest["settings"]["socket_mode_enabled"] is True
    assert manifest["features"]["app_home"]["messages_tab_enabled"] is True
