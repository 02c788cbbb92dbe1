"""What can be checked of the Docker image and compose file without a Docker engine."""

from __future__ import annotations

import json
import re
import shlex
import tomllib
from importlib import import_module, metadata
from pathlib import Path
from typing import Any

import pytest
import yaml
from pydantic import BaseModel

from bot.cli import main
from bot.config import Secrets, Settings, load_settings

ROOT = Path(__file__).resolve().parents[1]
HEALTH_URL = re.compile(
    r"http://127\.0\.0\.1:' \+ os\.environ\.get\('GLIMPSE_HEALTH_PORT', '(\d+)'\) \+ '(/\w+)'"
)


def _instructions() -> list[tuple[str, str]]:
    """The Dockerfile as (INSTRUCTION, arguments), continuation lines joined, comments dropped."""
    text = (ROOT / "Dockerfile").read_text(encoding="utf-8")
    lines = [line for line in text.splitlines() if not line.lstrip().startswith("#")]
    joined = re.sub(r"\\\n\s*", " ", "\n".join(lines))
    result = []
    for line in joined.splitlines():
        if line.strip():
            instruction, _, arguments = line.strip().partition(" ")
            result.append((instruction.upper(), arguments.strip()))
    return result


def _all(instruction: str) -> list[str]:
    return [arguments for name, arguments in _instructions() if name == instruction]


def _compose() -> dict[str, Any]:
    return yaml.safe_load((ROOT / "docker-compose.yml").read_text(encoding="utf-8"))


def _default(field: str) -> Any:
    return Settings.model_fields[field].default


def test_the_image_is_multi_stage_on_slim_python_and_runs_as_a_user() -> None:
    stages = _all("FROM")
    assert len(stages) >= 2
    assert all(stage.split()[0] == "python:3.11-slim" for stage in stages)
    [user] = _all("USER")
    assert user not in ("root", "0")
    assert _instructions().index(("USER", user)) > _instructions().index(("FROM", stages[-1]))


def readme_first_lines() -> list[list[list[str]]]:
    """The README's first two lines (install and chat; tests), each as its `&&`-joined commands."""
    readme = (ROOT / "README.md").read_text(encoding="utf-8")
    block = re.search(r"^```sh\n(.*?)^```", readme, re.MULTILINE | re.DOTALL)
    assert block is not None
    lines = block.group(1).splitlines()[:2]
    return [[shlex.split(command) for command in line.split("&&")] for line in lines]


def test_the_image_installs_exactly_as_the_readme_does() -> None:
    [make_venv, activate, install, *_] = readme_first_lines()[0]
    assert make_venv[1:3] == ["-m", "venv"] and activate == [".", f"{make_venv[3]}/bin/activate"]
    assert install == ["pip", "install", "-e", "."]

    [venv_run] = [run for run in _all("RUN") if "-m venv" in run]
    image_venv = shlex.split(venv_run)
    assert image_venv[1:3] == ["-m", "venv"]  # `python` there is the image's only Python
    assert any(f"PATH={image_venv[3]}/bin:" in env for env in _all("ENV"))  # activated
    pip_runs = [shlex.split(run) for run in _all("RUN") if "pip install" in run]
    assert pip_runs == [[word for word in install if word != "-e"]]  # no source tree to edit


def test_the_entrypoint_is_the_console_script_and_cmd_a_command(
    capsys: pytest.CaptureFixture[str],
) -> None:
    scripts = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]["scripts"]
    [entrypoint] = _all("ENTRYPOINT")
    [command] = json.loads(entrypoint)
    module, _, function = scripts[command].partition(":")
    assert getattr(import_module(module), function) is main

    cmd = json.loads(_all("CMD")[-1])
    with pytest.raises(SystemExit) as exit_:
        main([*cmd, "--help"])
    assert exit_.value.code == 0
    assert "--health-port" in capsys.readouterr().out


def test_the_healthcheck_asks_healthz_on_the_default_health_port() -> None:
    [check] = _all("HEALTHCHECK")
    found = HEALTH_URL.search(check)
    assert found is not None, check
    assert (int(found.group(1)), found.group(2)) == (_default("health_port"), "/healthz")
    assert "curl" not in check
    assert [str(_default("health_port"))] == _all("EXPOSE")


def test_compose_runs_glimpse_with_redis_on_an_append_only_volume() -> None:
    services = _compose()["services"]
    assert set(services) == {"glimpse", "redis"}
    redis, glimpse = services["redis"], services["glimpse"]
    assert redis["command"][-2:] == ["--appendonly", "yes"]
    assert any(volume.endswith(":/data") for volume in redis["volumes"])
    assert glimpse["env_file"] == ".env"
    assert "redis://redis:6379" in glimpse["environment"]["GLIMPSE_STORE_URL"]
    assert "redis" in glimpse["depends_on"]
    published = [port.split(":")[-1] for port in glimpse["ports"]]
    assert str(_default("health_port")) in published


def test_compose_waits_longer_than_the_shutdown_timeout_before_killing() -> None:
    grace = _compose()["services"]["glimpse"]["stop_grace_period"]
    assert grace.endswith("s")
    assert float(grace[:-1]) > _default("shutdown_timeout_seconds")


def test_env_example_names_every_variable_and_holds_no_secret() -> None:
    text = (ROOT / ".env.example").read_text(encoding="utf-8")
    values = {
        found.group(1): found.group(2)
        for found in map(re.compile(r"#? ?([A-Z0-9_]+)=(.*)").match, text.splitlines())
        if found is not None
    }
    expected = {name.upper() for name in Secrets.model_fields} | {"GLIMPSE_CONFIG"}
    expected |= {f"GLIMPSE_{name.upper()}" for name in Settings.model_fields} - {"GLIMPSE_BASE_URL"}
    expected |= {"OPENROUTER_BASE_URL"}
    for section, field in Settings.model_fields.items():  # nested settings: one line per field
        if isinstance(field.annotation, type) and issubclass(field.annotation, BaseModel):
            expected -= {f"GLIMPSE_{section.upper()}"}
            expected |= {
                f"GLIMPSE_{section.upper()}__{name.upper()}"
                for name in field.annotation.model_fields
            }
    assert sorted(expected - set(values)) == []
    secrets = ("OPENROUTER_API_KEY", "DISCORD_TOKEN", "SLACK_BOT_TOKEN", "SLACK_SIGNING_SECRET")
    assert all(values[name] == "" for name in (*secrets, "SLACK_APP_TOKEN"))


def test_dockerignore_keeps_what_the_image_copies_and_drops_secrets() -> None:
    ignored = {
        line.strip()
        for line in (ROOT / ".dockerignore").read_text(encoding="utf-8").splitlines()
        if line.strip() and not line.startswith("#")
    }
    copied = {
        source
        for copy in _all("COPY")
        if not copy.startswith("--from")
        for source in copy.split()[:-1]
    }
    assert copied == {"pyproject.toml", "README.md", "bot", "adapters"}
    assert not copied & ignored
    assert {".env", ".git", "*.db"} <= ignored


def test_the_tokenizer_ships_inside_the_llama_models_wheel() -> None:
    files = {str(path) for path in metadata.files("llama-models") or []}
    assert "llama_models/llama3/tokenizer.model" in files


def _env_example() -> dict[str, str]:
    """Every NAME=value of .env.example, commented or not."""
    text = (ROOT / ".env.example").read_text(encoding="utf-8")
    pattern = re.compile(r"#? ?([A-Z0-9_]+)=(.*)")
    return {
        found.group(1): found.group(2) for found in map(pattern.match, text.splitlines()) if found
    }


def test_the_docker_files_point_only_to_docs_that_exist() -> None:
    readme = (ROOT / "README.md").read_text(encoding="utf-8")
    headings = {line.lstrip("#").strip() for line in readme.splitlines() if line.startswith("#")}
    for name in ("Dockerfile", "docker-compose.yml", ".env.example"):
        comments = "\n".join(
            line for line in (ROOT / name).read_text(encoding="utf-8").splitlines() if "#" in line
        )
        for path in re.findall(r"[\w./-]+\.md\b", comments):
            assert (ROOT / path).is_file(), f"{name} points to {path}, which does not exist"
        for section in re.findall(r'"([^"]+)" in README\.md', comments):
            assert section in headings, f"{name} points to a README section {section!r}"
    assert '"Run with Docker" in README.md' in (ROOT / "Dockerfile").read_text(encoding="utf-8")


def test_compose_mounts_the_config_directory_env_example_points_to(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    config_path = Path(_env_example()["GLIMPSE_CONFIG"])
    mounts = [volume.split(":") for volume in _compose()["services"]["glimpse"]["volumes"]]
    [(source, _, mode)] = [m for m in mounts if len(m) == 3 and Path(m[1]) == config_path.parent]
    assert mode == "ro"  # Glimpse only reads its configuration
    assert source.startswith("./") and (ROOT / source / "glimpse.example.toml").is_file()

    # `cp config/glimpse.example.toml config/glimpse.toml`, as the compose file says, then start
    copied = tmp_path / config_path.name
    copied.write_bytes((ROOT / source / "glimpse.example.toml").read_bytes())
    monkeypatch.setenv("GLIMPSE_CONFIG", str(copied))
    assert load_settings().model == _default("model")


def test_env_example_says_which_tokens_the_default_command_needs() -> None:
    text = (ROOT / ".env.example").read_text(encoding="utf-8")
    preamble = text[: text.index("\nOPENROUTER_API_KEY=")]
    [cmd] = [json.loads(command) for command in _all("CMD")]
    assert f"glimpse {' '.join(cmd)}" in preamble
    for name in ("DISCORD_TOKEN", "SLACK_BOT_TOKEN", "SLACK_APP_TOKEN", "SLACK_SIGNING_SECRET"):
        assert name in preamble and _env_example()[name] == ""
    # compose restarts whatever the exit code, so a missing token shows as "Restarting (2)"
    assert _compose()["services"]["glimpse"]["restart"] == "unless-stopped"
