"""`glimpse doctor` in-process: every check, and nothing secret in its report."""

from __future__ import annotations

import datetime as dt
import io
import socket
from pathlib import Path

import pytest

from bot.config import Secrets, Settings
from bot.context import MIN_USER_TEXT_TOKENS, Budget, ContextBuilder, ContextError
from bot.doctor import (
    DISCORD_PERMISSIONS,
    discord_invite_url,
    discord_user_install_url,
    run_checks,
)
from bot.memory import SPEAKERS_NOTE
from bot.store import open_store
from bot.tokens import TokenCounter
from bot.turns import Turn
from tests.fakes.openrouter import (
    FAKE_API_KEY,
    LLAMA_VISION_MODEL,
    QWEN_VISION_MODEL,
    FakeOpenRouter,
)


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
    assert (
        "install to a user account: https://discord.com/oauth2/authorize?client_id=123456789"
        "&integration_type=1&scope=applications.commands"
    ) in report
    assert "FAIL slack:" in report and "SLACK_APP_TOKEN" in report


def test_the_invite_asks_for_what_the_bot_uses() -> None:
    send_messages, create_public_threads, send_in_threads = 1 << 11, 1 << 35, 1 << 38
    assert DISCORD_PERMISSIONS & send_messages and DISCORD_PERMISSIONS & create_public_threads
    assert DISCORD_PERMISSIONS & send_in_threads
    assert DISCORD_PERMISSIONS & (1 << 3) == 0  # never administrator
    assert "scope=bot%20applications.commands" in discord_invite_url("1")


def test_the_user_install_asks_for_commands_only() -> None:
    url = discord_user_install_url("42")
    assert "integration_type=1" in url and url.endswith("&scope=applications.commands")
    assert "permissions=" not in url and "bot" not in url


# --- what breaks every chat, worded for the operator ---


async def _report(settings: Settings, **secrets: str) -> tuple[int, str]:
    out = io.StringIO()
    code = await run_checks(
        settings, Secrets(**{"openrouter_api_key": FAKE_API_KEY, **secrets}), out=out
    )
    return code, out.getvalue()


def _line(report: str, name: str) -> str:
    return next(line for line in report.splitlines() if line[5:].startswith(f"{name}:"))


async def test_an_output_reserve_that_leaves_no_room_for_a_question_fails(
    fake_openrouter: FakeOpenRouter, tmp_path: Path
) -> None:
    settings = Settings(
        base_url=fake_openrouter.base_url,
        store_url=f"sqlite:///{tmp_path / 'g.db'}",
        max_output_tokens=4000,
    )
    code, report = await _report(settings)
    line = _line(report, "budget")
    assert code == 1
    assert line.startswith("FAIL budget: 4,096-token context − max_output_tokens 4,000")
    assert "safety_margin_tokens 64 = 32 prompt tokens" in line
    assert "`glimpse run` and `glimpse chat` refuse to start" in line
    assert "lower max_output_tokens (GLIMPSE_MAX_OUTPUT_TOKENS) to" in line


async def test_the_budget_check_is_the_services_own_arithmetic(
    fake_openrouter: FakeOpenRouter, tmp_path: Path
) -> None:
    settings = Settings(
        base_url=fake_openrouter.base_url,
        store_url=f"sqlite:///{tmp_path / 'g.db'}",
        max_output_tokens=3000,
        channel_prompts={"C-long": "Answer in full detail. " * 250},
    )
    counter = TokenCounter()
    builder = ContextBuilder(counter, Budget(4096, 3000, 64))
    room = builder.question_room(settings.channel_prompts["C-long"] + SPEAKERS_NOTE)
    assert room < MIN_USER_TEXT_TOKENS
    with pytest.raises(ContextError):  # what the service does with a message in that channel
        builder.build(settings.channel_prompts["C-long"], [], _question(counter, "x " * 40))

    code, report = await _report(settings)
    line = _line(report, "budget")
    assert code == 1 and line.startswith("FAIL budget:")
    assert "channel C-long's prompt" in line
    assert "shorten channel C-long's prompt" in line


async def test_a_budget_that_fits_says_what_is_left(
    fake_openrouter: FakeOpenRouter, tmp_path: Path
) -> None:
    settings = Settings(
        base_url=fake_openrouter.base_url, store_url=f"sqlite:///{tmp_path / 'g.db'}"
    )
    code, report = await _report(settings)
    assert code == 0, report
    line = _line(report, "budget")
    assert line.startswith("ok   budget: 4,096-token context − max_output_tokens 1,024")
    assert "= 3,008 prompt tokens" in line


async def test_an_unlisted_model_is_named_not_blamed_on_the_network(
    fake_openrouter: FakeOpenRouter, tmp_path: Path
) -> None:
    settings = Settings(
        base_url=fake_openrouter.base_url,
        store_url=f"sqlite:///{tmp_path / 'g.db'}",
        model="meta-llama/llama-3.2-90b-vision-instruc",
    )
    code, report = await _report(settings)
    line = _line(report, "model")
    assert code == 1
    assert line.startswith(
        "FAIL model: model meta-llama/llama-3.2-90b-vision-instruc is not listed by OpenRouter "
        "(GET /models)"
    )
    assert "https://openrouter.ai/models" in line
    assert "network" not in line


async def test_a_dead_base_url_is_reported_as_the_url_not_the_key(tmp_path: Path) -> None:
    with socket.socket() as probe:  # a port nothing listens on
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    base = f"http://127.0.0.1:{port}/api/v1"
    settings = Settings(base_url=base, store_url=f"sqlite:///{tmp_path / 'g.db'}", max_retries=0)
    code, report = await _report(settings)
    assert code == 1
    line = _line(report, "openrouter")
    assert line.startswith(f"FAIL openrouter: cannot reach OPENROUTER_BASE_URL ({base}): ")
    assert "refused" in line.lower()
    assert "key:" not in report and "model:" not in report
    assert "operator" not in report  # no sentence written for chat users


async def test_a_refused_key_is_worded_for_the_operator(
    fake_openrouter: FakeOpenRouter, tmp_path: Path
) -> None:
    settings = Settings(
        base_url=fake_openrouter.base_url, store_url=f"sqlite:///{tmp_path / 'g.db'}"
    )
    code, report = await _report(settings, openrouter_api_key="sk-or-v1-not-this-one")
    line = _line(report, "key")
    assert code == 1
    assert line.startswith("FAIL key: OpenRouter refused OPENROUTER_API_KEY (401")
    assert "https://openrouter.ai/keys" in line
    assert "An operator needs to fix it" not in report
    assert "sk-or-v1-not-this-one" not in report
    assert _line(report, "model").startswith("ok   model:")  # GET /models needs no key


async def test_a_relative_sqlite_path_is_called_out_with_where_it_resolves(
    fake_openrouter: FakeOpenRouter, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.chdir(tmp_path)
    settings = Settings(base_url=fake_openrouter.base_url, store_url="sqlite:///tmp/x.db")
    code, report = await _report(settings)
    line = _line(report, "store")
    assert code == 0  # `glimpse chat` works with it
    assert line.startswith(
        f"WARN store: GLIMPSE_STORE_URL sqlite:///tmp/x.db is relative: it resolves to "
        f"{tmp_path / 'tmp' / 'x.db'}"
    )
    assert "for /tmp/x.db write sqlite:////tmp/x.db" in line

    code, report = await _report(settings, discord_token="x")
    assert code == 1  # `glimpse run` would refuse it
    assert _line(report, "store").startswith("FAIL store:")


async def test_the_store_line_names_the_absolute_file_and_a_redis_server_without_secrets(
    fake_openrouter: FakeOpenRouter, tmp_path: Path
) -> None:
    settings = Settings(
        base_url=fake_openrouter.base_url, store_url=f"sqlite:///{tmp_path / 'g.db'}"
    )
    _, report = await _report(settings)
    assert _line(report, "store") == f"ok   store: SQLite file {tmp_path / 'g.db'}"
    settings = Settings(
        base_url=fake_openrouter.base_url,
        store_url="redis://:hunter2@127.0.0.1:1/3?prefix=team",
    )
    _, report = await _report(settings)
    line = _line(report, "store")
    assert line.startswith("FAIL store: Redis at 127.0.0.1:1/3, keys prefixed team:")
    assert "hunter2" not in report


def _question(counter: TokenCounter, text: str) -> Turn:
    return Turn(role="user", text=text, tokens=counter.message("user", text), created_at=0.0)


# --- the health of every model in use ---


async def test_models_that_expire_soon_or_have_expired_are_warned_about(
    fake_openrouter: FakeOpenRouter, tmp_path: Path
) -> None:
    today = dt.datetime.now(dt.UTC).date()
    fake_openrouter.expire(LLAMA_VISION_MODEL, (today + dt.timedelta(days=12)).isoformat())
    fake_openrouter.expire(QWEN_VISION_MODEL, (today - dt.timedelta(days=3)).isoformat())
    store_url = f"sqlite:///{tmp_path / 'g.db'}"
    store = open_store(store_url)
    await store.open()
    await store.set_channel_model("discord", "g1", "c9", QWEN_VISION_MODEL)
    await store.close()
    settings = Settings(
        base_url=fake_openrouter.base_url,
        store_url=store_url,
        channel_models={"C1": QWEN_VISION_MODEL, "C2": "acme/retired"},
    )
    code, report = await _report(settings)
    line = _line(report, "models")
    assert code == 0 and line.startswith("WARN models:")
    in_12_days = (today + dt.timedelta(days=12)).isoformat()
    assert (
        f"the model (GLIMPSE_MODEL) {LLAMA_VISION_MODEL} expires on {in_12_days} (in 12 days)"
        in line
    )
    assert f"channel C1's model (channel_models) {QWEN_VISION_MODEL} expired on" in line
    assert f"discord channel c9's model (set by an admin) {QWEN_VISION_MODEL} expired on" in line
    assert "channel C2's model (channel_models) acme/retired is not listed" in line
    assert "set fallback_models" in line


async def test_models_far_from_expiry_pass(fake_openrouter: FakeOpenRouter, tmp_path: Path) -> None:
    far = (dt.datetime.now(dt.UTC).date() + dt.timedelta(days=31)).isoformat()
    fake_openrouter.expire(LLAMA_VISION_MODEL, far)
    settings = Settings(
        base_url=fake_openrouter.base_url,
        store_url=f"sqlite:///{tmp_path / 'g.db'}",
        channel_models={"C1": QWEN_VISION_MODEL},
    )
    _, report = await _report(settings)
    assert (
        _line(report, "models") == "ok   models: 2 in use, all listed, none expiring within 30 days"
    )
