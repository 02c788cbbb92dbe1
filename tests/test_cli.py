"""The `glimpse` command as a user runs it: a real process against the fake OpenRouter."""

from __future__ import annotations

import io
import re
import socket
import time
from collections.abc import AsyncIterator
from pathlib import Path

import pytest
from PIL import Image

import bot.cli
from bot.config import ConfigError, StartupError
from tests.cli_support import Run, glimpse_env, run_glimpse
from tests.fakes.discord import FakeDiscord
from tests.fakes.openrouter import FakeOpenRouter


@pytest.fixture
async def fake() -> AsyncIterator[FakeOpenRouter]:
    async with FakeOpenRouter() as server:
        yield server


def _env(fake: FakeOpenRouter, tmp_path: Path, **extra: str) -> dict[str, str]:
    return glimpse_env(fake, store_url=f"sqlite:///{tmp_path / 'glimpse.db'}", **extra)


_glimpse = run_glimpse


def _photo(tmp_path: Path) -> Path:
    path = tmp_path / "photo.jpg"
    buffer = io.BytesIO()
    Image.new("RGB", (1600, 1200), "orange").save(buffer, "JPEG")
    path.write_bytes(buffer.getvalue())
    return path


async def test_chat_with_an_image_answers_and_a_follow_up_remembers(
    fake: FakeOpenRouter, tmp_path: Path
) -> None:
    fake.reply = "An orange square."
    env = _env(fake, tmp_path)
    first = await _glimpse(
        "chat", "--image", str(_photo(tmp_path)), "-m", "What is in this image?", env=env
    )
    assert (first.code, first.out.strip()) == (0, "An orange square."), first.err
    parts = fake.chat_requests[-1].body["messages"][-1]["content"]
    assert parts[0]["type"] == "image_url"

    second = await _glimpse("chat", "-m", "What colour is it?", env=env)
    assert second.code == 0, second.err
    messages = fake.chat_requests[-1].body["messages"]
    assert [m["role"] for m in messages] == ["system", "user", "assistant", "user"]
    assert messages[2]["content"] == "An orange square."

    fresh = await _glimpse("chat", "--new", "-m", "Hello?", env=env)
    assert fresh.code == 0
    assert len(fake.chat_requests[-1].body["messages"]) == 2


async def test_named_conversations_are_separate(fake: FakeOpenRouter, tmp_path: Path) -> None:
    env = _env(fake, tmp_path)
    await _glimpse("chat", "--conversation", "work", "-m", "project falcon", env=env)
    await _glimpse("chat", "--conversation", "home", "-m", "groceries", env=env)
    assert "project falcon" not in str(fake.chat_requests[-1].body["messages"])


async def test_a_wrong_key_exits_non_zero_with_one_clear_line(
    fake: FakeOpenRouter, tmp_path: Path
) -> None:
    run = await _glimpse(
        "chat", "-m", "hi", env=_env(fake, tmp_path, OPENROUTER_API_KEY="sk-or-v1-nope")
    )
    assert run.code == 1
    assert "key is invalid" in run.err
    assert "Traceback" not in run.err and "sk-or-v1-nope" not in run.err + run.out


async def test_a_missing_key_says_how_to_get_one(fake: FakeOpenRouter, tmp_path: Path) -> None:
    env = _env(fake, tmp_path)
    del env["OPENROUTER_API_KEY"]
    run = await _glimpse("chat", "-m", "hi", env=env)
    assert run.code == 2
    assert "OPENROUTER_API_KEY is not set" in run.err
    assert "Traceback" not in run.err


async def test_bad_images_are_refused_in_a_sentence(fake: FakeOpenRouter, tmp_path: Path) -> None:
    cut = tmp_path / "cut.jpg"
    cut.write_bytes(_photo(tmp_path).read_bytes()[:2000])
    env = _env(fake, tmp_path)
    run = await _glimpse("chat", "--image", str(cut), "-m", "", env=env)
    assert run.code == 1 and "cut.jpg" in run.err and "Traceback" not in run.err
    missing = await _glimpse("chat", "--image", str(tmp_path / "nope.png"), "-m", "hi", env=env)
    assert missing.code == 1 and "nope.png" in missing.err
    assert fake.chat_requests == []


async def test_an_oversized_file_is_refused_before_reading(
    fake: FakeOpenRouter, tmp_path: Path
) -> None:
    big = tmp_path / "big.jpg"
    big.write_bytes(b"\xff\xd8\xff" + b"\xff" * 3_000_000)  # a JPEG's first bytes: an image
    run = await _glimpse(
        "chat",
        "--image",
        str(big),
        "-m",
        "hi",
        env=_env(fake, tmp_path, GLIMPSE_IMAGE_MAX_BYTES="1000000"),
    )
    assert run.code == 1 and "limit" in run.err


async def test_a_bad_config_value_is_one_clear_message(
    fake: FakeOpenRouter, tmp_path: Path
) -> None:
    run = await _glimpse(
        "chat", "-m", "hi", env=_env(fake, tmp_path, GLIMPSE_TEMPERATURE="scorching")
    )
    assert (run.code, len(run.err.splitlines())) == (2, 1), run.err
    assert "temperature" in run.err and "Traceback" not in run.err


async def test_interactive_chat_takes_images_and_commands(
    fake: FakeOpenRouter, tmp_path: Path
) -> None:
    fake.responder = lambda body: f"seen {len(body['messages'])} messages"
    photo = _photo(tmp_path)
    script = f"hello\n/image {photo}\nwhat is this?\n/reset\nagain\n/quit\n"
    run = await _glimpse("chat", env=_env(fake, tmp_path), stdin=script)
    assert run.code == 0, run.err
    assert run.out.count("seen") == 3
    requests = fake.chat_requests
    assert len(requests) == 3
    assert requests[1].body["messages"][-1]["content"][0]["type"] == "image_url"
    assert len(requests[2].body["messages"]) == 2  # /reset forgot the first two exchanges


async def test_doctor_reports_each_check(fake: FakeOpenRouter, tmp_path: Path) -> None:
    run = await _glimpse("doctor", env=_env(fake, tmp_path))
    assert run.code == 0, run.out + run.err
    lines = run.out.splitlines()
    assert any(line.startswith("ok   key: valid") for line in lines)
    assert any(
        line.startswith("ok   model: meta-llama/llama-3.2-90b-vision-instruct: 4,096-token context")
        for line in lines
    )
    assert any(line.startswith("ok   store:") for line in lines)


async def test_doctor_says_what_to_fix(fake: FakeOpenRouter, tmp_path: Path) -> None:
    env = _env(
        fake, tmp_path, GLIMPSE_MODEL="example/text-only-model", OPENROUTER_API_KEY="sk-or-v1-bad"
    )
    run = await _glimpse("doctor", env=env)
    assert run.code == 1
    assert any(line.startswith("FAIL key:") and "fix:" in line for line in run.out.splitlines())
    assert "sk-or-v1-bad" not in run.out + run.err


async def test_run_without_a_platform_explains(fake: FakeOpenRouter, tmp_path: Path) -> None:
    run = await _glimpse("run", env=_env(fake, tmp_path))
    assert run.code == 2 and "DISCORD_TOKEN" in run.err


async def test_a_store_that_cannot_open_is_one_clear_line(
    fake: FakeOpenRouter, tmp_path: Path
) -> None:
    env = _env(fake, tmp_path, GLIMPSE_STORE_URL="redis://:pw-in-url@127.0.0.1:1/0")
    run = await _glimpse("chat", "-m", "hi", env=env)
    assert run.code == 2
    assert "cannot open the memory store" in run.err and "GLIMPSE_STORE_URL" in run.err
    assert "Traceback" not in run.err and "pw-in-url" not in run.err
    assert fake.chat_requests == []


def _one_line(run: Run, code: int) -> str:
    """The single stderr line of a refused start, after checking the exit code."""
    assert (run.code, len(run.err.splitlines())) == (code, 1), run.err
    assert "Traceback" not in run.err
    return run.err


def _closed_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


async def test_version_prints_the_name_and_version(fake: FakeOpenRouter, tmp_path: Path) -> None:
    run = await _glimpse("--version", env=_env(fake, tmp_path))
    assert run.code == 0, run.err
    assert re.fullmatch(r"glimpse \d+\.\d+\S*", run.out.strip())


async def test_lists_in_the_environment_are_comma_separated(
    fake: FakeOpenRouter, tmp_path: Path
) -> None:
    env = _env(fake, tmp_path, GLIMPSE_DISCORD__GUILD_IDS="1,2", GLIMPSE_ALLOW_USERS="U1, U2")
    run = await _glimpse("doctor", env=env)
    assert run.code == 0, run.out + run.err
    assert "Traceback" not in run.err


@pytest.mark.parametrize(
    ("name", "value"),
    [
        ("GLIMPSE_PROVIDER", "order=together"),
        ("GLIMPSE_CHANNEL_PROMPTS", "{C1: pirate}"),
        ("GLIMPSE_DISCORD", "guild_ids=1"),
    ],
)
async def test_bad_json_in_a_dict_setting_is_one_line_naming_the_variable(
    fake: FakeOpenRouter, tmp_path: Path, name: str, value: str
) -> None:
    run = await _glimpse("doctor", env=_env(fake, tmp_path, **{name: value}))
    line = _one_line(run, 2)
    assert name in line and "must be a JSON object" in line and "e.g." in line


async def test_a_typo_is_unknown_with_a_suggestion_and_config_goes_before_or_after_the_command(
    fake: FakeOpenRouter, tmp_path: Path
) -> None:
    config = tmp_path / "glimpse.toml"
    config.write_text("max_output_token = 700\n[discord]\nguild_id = ['1']\n", encoding="utf-8")
    env = _env(fake, tmp_path)
    for args in (("--config", str(config), "doctor"), ("doctor", "--config", str(config))):
        line = _one_line(await _glimpse(*args, env=env), 2)
        assert "max_output_token: unknown setting (did you mean max_output_tokens?)" in line
        assert "discord.guild_id: unknown setting (did you mean discord.guild_ids?)" in line
        assert "environment only" not in line


async def test_global_options_work_before_and_after_the_command(
    fake: FakeOpenRouter, tmp_path: Path
) -> None:
    config = tmp_path / "glimpse.toml"
    config.write_text('model = "example/text-only-model"\n', encoding="utf-8")
    env = _env(fake, tmp_path)
    before = await _glimpse("--config", str(config), "--log-format", "json", "doctor", env=env)
    after = await _glimpse("doctor", "--log-level", "ERROR", "--config", str(config), env=env)
    for run in (before, after):
        assert "example/text-only-model" in run.out, run.out + run.err


async def test_unreachable_discord_api_is_one_line_and_exit_1(
    fake: FakeOpenRouter, tmp_path: Path
) -> None:
    port = _closed_port()
    env = _env(
        fake,
        tmp_path,
        DISCORD_TOKEN="dummy-token",
        DISCORD_API_BASE=f"http://127.0.0.1:{port}/api/v10",
        DISCORD_GATEWAY_URL=f"ws://127.0.0.1:{port}/",
        GLIMPSE_HEALTH_PORT="0",
    )
    began = time.monotonic()
    run = await _glimpse("run", "--platform", "discord", "--log-level", "WARNING", env=env)
    line = _one_line(run, 1)
    assert "DISCORD_API_BASE" in line and "dummy-token" not in line
    assert time.monotonic() - began < 30


async def test_unreachable_slack_api_is_one_line_and_exit_1(
    fake: FakeOpenRouter, tmp_path: Path
) -> None:
    env = _env(
        fake,
        tmp_path,
        SLACK_BOT_TOKEN="xoxb-dummy-token",
        SLACK_SIGNING_SECRET="dummy-secret",
        SLACK_API_URL=f"http://127.0.0.1:{_closed_port()}/api/",
        GLIMPSE_HEALTH_PORT="0",
    )
    run = await _glimpse(
        "run", "--platform", "slack", "--http", "--port", "0", "--log-level", "WARNING", env=env
    )
    line = _one_line(run, 1)
    assert "cannot reach Slack" in line and "SLACK_API_URL" in line
    assert "xoxb-dummy-token" not in line


async def test_unreachable_discord_gateway_is_one_line_and_exit_1(
    fake: FakeOpenRouter, tmp_path: Path
) -> None:
    async with FakeDiscord() as discord:
        env = _env(
            fake,
            tmp_path,
            DISCORD_TOKEN=discord.token,
            DISCORD_API_BASE=discord.api_base,
            DISCORD_GATEWAY_URL=f"ws://127.0.0.1:{_closed_port()}/",
            GLIMPSE_HEALTH_PORT="0",
        )
        run = await _glimpse("--log-level", "WARNING", "run", "--platform", "discord", env=env)
    line = _one_line(run, 1)
    assert "DISCORD_GATEWAY_URL" in line


@pytest.mark.parametrize(
    ("error", "code"),
    [
        (ConfigError("temperature: too hot"), 2),
        (StartupError("cannot reach Discord's API: check the network or DISCORD_API_BASE"), 1),
        (RuntimeError("something nobody expected"), 1),
    ],
)
def test_every_failure_is_one_line_with_its_exit_code(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str], error: Exception, code: int
) -> None:
    def fail(*_: object) -> None:
        raise error

    monkeypatch.setattr(bot.cli, "setup_logging", lambda *_: None)
    monkeypatch.setattr(bot.cli, "load_settings", fail)
    assert bot.cli.main(["doctor"]) == code
    err = capsys.readouterr().err
    assert len(err.splitlines()) == 1 and str(error) in err and "Traceback" not in err


def test_a_wrong_option_is_one_line_pointing_to_help(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as exit_:
        bot.cli.main(["doctor", "--colour", "blue"])
    err = capsys.readouterr().err
    assert exit_.value.code == 2 and len(err.splitlines()) == 1
    assert "--colour" in err and "--help`" in err


async def test_a_budget_with_no_room_for_a_question_stops_start_up_in_one_line(
    fake: FakeOpenRouter, tmp_path: Path
) -> None:
    env = _env(fake, tmp_path, GLIMPSE_MAX_OUTPUT_TOKENS="4000")
    line = _one_line(await _glimpse("chat", "-m", "hello?", env=env), 2)
    assert "leaves 0 tokens for a question under the system prompt" in line
    assert "lower max_output_tokens" in line
    assert not [r for r in fake.chat_requests]
