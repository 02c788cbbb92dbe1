"""What the README claims about commands and behaviour, checked against the files and the code."""

from __future__ import annotations

import math
import re
import shlex
from pathlib import Path

from bot.config import Settings
from bot.images import prepare_image
from bot.images.prepare import JPEG_DRAFT_MIN_SHARE
from tests import images_corpus as corpus
from tests.test_docker_files import readme_first_lines

ROOT = Path(__file__).resolve().parents[1]
README = (ROOT / "README.md").read_text(encoding="utf-8")
PHONE_PHOTO_PX = (4032, 3024)  # a 12 MP phone camera's JPEG


def test_the_first_two_lines_make_a_venv_and_work_in_it() -> None:
    chat, tests = readme_first_lines()
    assert chat[:2] == tests[:2]  # the same venv, made if missing, then activated
    assert chat[0][0] == "python3" and chat[0][1:3] == ["-m", "venv"]
    assert chat[2] == ["pip", "install", "-e", "."]
    assert chat[3][-2:] == ["glimpse", "chat"] and chat[3][0].startswith("OPENROUTER_API_KEY=")
    assert tests[2] == ["pip", "install", "-e", ".[dev]"]
    assert tests[3] == ["python", "-m", "pytest"]


def test_ci_runs_the_readmes_test_command_in_a_venv_made_the_same_way() -> None:
    _, tests = readme_first_lines()
    script = [
        shlex.split(line)
        for line in (ROOT / ".ci" / "run").read_text(encoding="utf-8").splitlines()
        if line.strip() and not line.lstrip().startswith("#")
    ]
    assert tests[0] in script and tests[1] in script  # python3 -m venv .venv; . .venv/bin/activate
    assert tests[3] in script  # python -m pytest, as is
    [install] = [line for line in script if line[-2:-1] == ["-e"] and "install" in line]
    extras = set(install[-1].removeprefix(".[").removesuffix("]").split(","))
    assert "dev" in extras  # CI installs what the README's test line installs (and the benchmarks)


def test_the_readme_points_to_nothing_outside_the_repository() -> None:
    assert "../" not in README
    for target in re.findall(r"\]\(([^)#:]+)\)", README):  # relative Markdown links
        assert (ROOT / target).exists(), target


def test_a_12mp_phone_photo_goes_out_at_the_size_the_readme_gives() -> None:
    max_side = Settings().image_max_side
    prepared = prepare_image(
        corpus.jpeg_bytes(PHONE_PHOTO_PX), "phone.jpg", max_pixels=50_000_000, max_side=max_side
    )
    # libjpeg decodes it at 1/4 scale, which is within JPEG_DRAFT_MIN_SHARE of the limit
    assert (prepared.width, prepared.height) == (1008, 756)
    assert max_side * JPEG_DRAFT_MIN_SHARE <= max(prepared.width, prepared.height) <= max_side
    width, height = PHONE_PHOTO_PX
    text = " ".join(README.split())
    assert f"({width}×{height}) goes out at {prepared.width}×{prepared.height}" in text
    assert f"at most the model's useful {max_side} px on the long side" in text
    low, share = math.ceil(max_side * JPEG_DRAFT_MIN_SHARE), round(JPEG_DRAFT_MIN_SHARE * 100)
    assert f"to {low}–{max_side} px ({share} % of the limit or more)" in text
