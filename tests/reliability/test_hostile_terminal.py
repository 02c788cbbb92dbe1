"""Hostile input through the terminal: `glimpse chat -m` as a real process, with bad files and bad bytes."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from tests.fakes.openrouter import FakeOpenRouter
from tests.reliability.checks import ANSWER_PREFIX, echo, image_parts, user_text
from tests.reliability.corpus import CASES, Case
from tests.reliability.harness import glimpse, glimpse_env

BROKEN_IMAGES = ("truncated-jpeg", "bomb-png", "corrupt-jpeg", "png-header-only")
NOT_IMAGES = ("svg-as-png", "pdf-as-png", "text-as-jpeg", "empty-file")  # for the core to judge
HINT = "Ask me a question"


@pytest.fixture
def env(fake_openrouter: FakeOpenRouter, tmp_path: Path) -> dict[str, str]:
    fake_openrouter.responder = echo
    store = f"sqlite:///{tmp_path / 'glimpse.db'}"
    return glimpse_env(fake_openrouter, store_url=store, GLIMPSE_IMAGES_PER_MESSAGE="8")


async def test_each_broken_image_is_refused_by_name_before_anything_is_sent(
    env: dict[str, str], fake_openrouter: FakeOpenRouter, tmp_path: Path
) -> None:
    cases = [case for case in CASES if case.id in BROKEN_IMAGES]
    paths = [_write(tmp_path, case) for case in cases]
    undecodable = _write_undecodable(tmp_path, cases[0].files[0].data)
    for case, path in [*zip(cases, paths, strict=True), (cases[0], undecodable)]:
        run = await glimpse("chat", "-m", "what is this?", "--attach", path, env=env)
        # The terminal's rule: a file that cannot be used stops `-m` with one line, exit 1.
        assert run.code == 1, (case.id, run.err)
        refusals = [line for line in run.err.splitlines() if line.startswith("glimpse: ")]
        assert len(refusals) == 1 and "Traceback" not in run.err, (case.id, run.err)
        if path is undecodable:
            assert "caf -" in refusals[0] and ".jpg" in refusals[0], run.err
        else:
            assert Path(path).name in refusals[0], (case.id, run.err)
    assert fake_openrouter.chat_requests == []


async def test_a_file_that_is_not_an_image_by_its_bytes_is_left_to_the_core(
    env: dict[str, str], fake_openrouter: FakeOpenRouter, tmp_path: Path
) -> None:
    cases = [case for case in CASES if case.id in NOT_IMAGES]
    for case in cases:
        path = _write(tmp_path, case)
        run = await glimpse("chat", "-m", "what is this?", "--image", path, env=env)
        # Named like a photo, but not one: the terminal sends it; the core says what it makes of it.
        assert run.code == 0 and "Traceback" not in run.err, (case.id, run.err)
        assert run.out.startswith(ANSWER_PREFIX), (case.id, run.out)
    assert len(fake_openrouter.chat_requests) == len(cases)


async def test_an_invalid_utf8_question_is_answered_with_replacement_characters(
    env: dict[str, str], fake_openrouter: FakeOpenRouter
) -> None:
    run = await glimpse("chat", "-m", b"caf\xe9 au lait? \xff", env=env)
    assert run.code == 0, run.err
    assert run.out.startswith(ANSWER_PREFIX) and "caf\ufffd au lait? \ufffd" in run.out
    [request] = fake_openrouter.chat_requests
    assert image_parts(request.body) == []


async def test_a_message_of_only_zero_width_characters_gets_the_hint_and_no_model_call(
    env: dict[str, str], fake_openrouter: FakeOpenRouter
) -> None:
    run = await glimpse("chat", "-m", "\u200b\u200d\u2060\ufeff", env=env)
    assert run.code == 1
    assert HINT in run.err and run.out == ""
    assert fake_openrouter.chat_requests == []


async def test_100_kb_of_text_with_overrides_and_pings_is_shortened_and_answered(
    env: dict[str, str], fake_openrouter: FakeOpenRouter
) -> None:
    text = "\u202e@everyone <!channel> " + "why is the sky blue? " * 4_800
    run = await glimpse("chat", "-m", text, env=env)
    assert run.code == 0, run.err
    assert "too long for the model" in run.err
    # The answer's own (streamed) call; a summary call may follow it, as the context is full.
    [request] = [r for r in fake_openrouter.chat_requests if r.body.get("stream")]
    assert len(user_text(request.body)) < len(text)
    assert run.out.startswith(ANSWER_PREFIX)


def _write(tmp_path: Path, case: Case) -> str:
    [file] = case.files
    path = tmp_path / file.name
    path.write_bytes(file.data)
    return str(path)


def _write_undecodable(tmp_path: Path, data: bytes) -> bytes:
    """A file whose name is not UTF-8 (a Latin-1 name on disk); its path as bytes."""
    path = os.fsencode(tmp_path) + b"/caf\xe9-\xff.jpg"
    Path(os.fsdecode(path)).write_bytes(data)
    return path
