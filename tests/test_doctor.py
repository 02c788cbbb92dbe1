"""`glimpse doctor` in-process: every check, and nothing secret in its report."""

from __future__ import annotations

import io

from bot.config import Secrets, Settings
from bot.doctor import DISCORD_PERMISSIONS, discord_invite_url, run_checks
from tests.fakes.openrouter import FAKE_API_KEY, FakeOpenRouter


async def test_a_store_password_never_appears_in_the_report(
    fake_openrouter: FakeOpenRouter,
) -> None:
    out = io.StringIO()
    settings = Settings(
        base_url=fake_openrouter.base_url, store_url="redis://:hunter2-password@127.0.0.1:1/0"
    )
    await run_checks(settings, Secrets(openrouter_api_key=FAKE_API_KEY), out=out)
    report = out.getvalue()
    assert "store:" in report
    assert "hunter2-password" not in report


async def test_platform_lines_say_what_is_configured(
    fake_openrouter: FakeOpenRouter, tmp_path
) -> None:
    out = io.StringIO()
    settings = Settings(
        base_url=fake_openrouter.base_url,
        store_url=f"sqlite:///{tmp_path / 'g.db'}",
        discord={"application_id": "123456789"},
    )
    secrets = Secrets(openrouter_api_key=FAKE_API_KEY, discord_token="x", slack_bot_token="xoxb-1")
    code = await run_checks(settings, secrets, out=out)
    report = out.getvalue()
    assert code == 1  # Slack has neither an app token nor a signing secret
    assert discord_invite_url("123456789") in report
    assert "FAIL slack:" in report and "SLACK_APP_TOKEN" in report


def test_the_invite_asks_for_what_the_bot_uses() -> None:
    send_messages, create_public_threads, send_in_threads = 1 << 11, 1 << 35, 1 << 38
    assert DISCORD_PERMISSIONS & send_messages and DISCORD_PERMISSIONS & create_public_threads
    assert DISCORD_PERMISSIONS & send_in_threads
    assert DISCORD_PERMISSIONS & (1 << 3) == 0  # never administrator
    assert "scope=bot%20applications.commands" in discord_invite_url("1")
