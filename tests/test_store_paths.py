"""Where the memory store is: `glimpse run` logs it and refuses a relative SQLite path, chat says it."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from tests.cli_support import ROOT, clean_environ, run_glimpse
from tests.fakes.openrouter import FAKE_API_KEY, FakeOpenRouter


async def _glimpse(*args: str, cwd: Path, **env: str) -> tuple[int, str]:
    """Run `glimpse` in `cwd` with only the given Glimpse settings; its exit code and stderr."""
    run = await run_glimpse(*args, env={**clean_environ(), "PYTHONPATH": str(ROOT), **env}, cwd=cwd)
    return run.code, run.err


async def test_run_refuses_a_relative_sqlite_path_in_one_line(tmp_path: Path) -> None:
    code, err = await _glimpse(
        "run", cwd=tmp_path, GLIMPSE_STORE_URL="sqlite:///tmp/x.db", DISCORD_TOKEN="x"
    )
    assert (code, len(err.splitlines())) == (2, 1), err
    assert err.startswith("glimpse: GLIMPSE_STORE_URL sqlite:///tmp/x.db is relative: ")
    assert f"resolves to {tmp_path / 'tmp' / 'x.db'}" in err
    assert "for /tmp/x.db write sqlite:////tmp/x.db" in err
    assert not (tmp_path / "tmp").exists()  # nothing was created where it pointed


async def test_run_refuses_a_relative_data_dir(tmp_path: Path) -> None:
    code, err = await _glimpse("run", cwd=tmp_path, GLIMPSE_DATA_DIR="state", DISCORD_TOKEN="x")
    assert (code, len(err.splitlines())) == (2, 1), err
    assert f"resolves to {tmp_path / 'state' / 'glimpse.db'}" in err
    assert "set GLIMPSE_DATA_DIR to an absolute directory" in err


async def test_run_logs_the_absolute_store_it_uses(tmp_path: Path) -> None:
    store = tmp_path / "glimpse.db"
    # Four slashes: tmp_path is absolute. No key: run stops right after the store line.
    code, err = await _glimpse(
        "run", cwd=tmp_path, GLIMPSE_STORE_URL=f"sqlite:///{store}", DISCORD_TOKEN="x"
    )
    assert code == 2 and "OPENROUTER_API_KEY" in err, err
    assert f"glimpse.cli: memory store: SQLite file {store}" in err


async def test_chat_keeps_a_relative_path_and_says_where_the_file_is(
    fake_openrouter: FakeOpenRouter, tmp_path: Path
) -> None:
    code, err = await _glimpse(
        "chat",
        "-m",
        "hi",
        cwd=tmp_path,
        GLIMPSE_STORE_URL="sqlite:///data/g.db",
        OPENROUTER_API_KEY=FAKE_API_KEY,
        OPENROUTER_BASE_URL=fake_openrouter.base_url,
    )
    assert code == 0, err
    assert err.startswith(
        f"glimpse: memory store: GLIMPSE_STORE_URL sqlite:///data/g.db is relative: "
        f"it resolves to {tmp_path / 'data' / 'g.db'}"
    )
    assert (tmp_path / "data" / "g.db").is_file()


@pytest.mark.parametrize("name", ["README.md", "config/glimpse.example.toml", ".env.example"])
def test_every_sqlite_example_does_what_it_looks_like(name: str) -> None:
    text = (Path(__file__).parents[1] / name).read_text(encoding="utf-8")
    for relative in re.finditer(r"sqlite:///(?!/)[^\s`'\")]+", text):
        around = text[max(0, relative.start() - 120) : relative.end() + 120]
        assert "relative" in around, f"{name}: {relative.group()} reads as absolute but is not"
