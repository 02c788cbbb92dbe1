"""Long answers split into platform-sized messages; streamed edits throttled per answer."""

from __future__ import annotations

import asyncio
from typing import Any

import pytest

from adapters.split import split_message
from adapters.streaming import StreamingSink


def _fences_balanced(piece: str) -> bool:
    return sum(1 for line in piece.split("\n") if line.strip().startswith("```")) % 2 == 0


def test_short_text_is_one_piece() -> None:
    assert split_message("hello", 2000) == ["hello"]


def test_paragraphs_are_kept_whole_when_they_fit() -> None:
    paragraphs = [f"Paragraph {i}. " + "word " * 150 for i in range(8)]
    pieces = split_message("\n\n".join(paragraphs), 2000)
    assert all(len(p) <= 2000 for p in pieces)
    assert len(pieces) >= 3
    for piece in pieces:
        assert piece.startswith("Paragraph")
    assert "".join(pieces).replace(" ", "").replace("\n", "") == "".join(paragraphs).replace(
        " ", ""
    ).replace("\n", "")


def test_a_code_block_cut_in_two_is_closed_and_reopened_with_its_language() -> None:
    code = "\n".join(f"print('line {i}')" for i in range(300))
    text = "Here is the script:\n\n```python\n" + code + "\n```\n\nThat's all."
    pieces = split_message(text, 2000)
    assert len(pieces) >= 3
    for piece in pieces:
        assert len(piece) <= 2000
        assert _fences_balanced(piece)
    assert pieces[1].startswith("```python\n")
    body = [line for piece in pieces for line in piece.split("\n") if line.startswith("print(")]
    assert body == code.split("\n")


def test_a_5000_character_answer_splits_in_three_for_discord() -> None:
    text = "\n\n".join(["x" * 900] * 5) + "\n\n```\n" + "y = 1\n" * 20 + "```"
    pieces = split_message(text, 2000)
    assert len(pieces) == 3
    assert all(len(p) <= 2000 and _fences_balanced(p) for p in pieces)


def test_text_without_breaks_is_cut_hard() -> None:
    pieces = split_message("z" * 5000, 2000)
    assert [len(p) for p in pieces] == [1996, 1996, 1008]


class RecordingSink(StreamingSink):
    def __init__(self, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.calls: list[tuple[str, int, str]] = []
        self.notices: list[str] = []

    async def _post(self, text: str) -> int:
        self.calls.append(("post", len(self.calls), text))
        return len(self.calls) - 1

    async def _edit(self, handle: Any, text: str) -> None:
        self.calls.append(("edit", handle, text))

    async def notice(self, text: str) -> None:
        self.notices.append(text)


async def test_fast_streams_are_throttled_and_end_with_the_full_text() -> None:
    sink = RecordingSink(limit=2000, interval_seconds=0.2)
    await sink.start()
    text = ""
    for i in range(50):
        text += f"token{i} "
        await sink.update(text)
        await asyncio.sleep(0.01)
    await sink.finish(text)
    assert len(sink.calls) <= 6  # ~0.5 s of streaming at one edit per 0.2 s, plus the final edit
    assert sink.calls[-1][2] == text
    assert sink.calls[0][0] == "post"


async def test_an_answer_growing_past_the_limit_continues_in_a_new_message() -> None:
    sink = RecordingSink(limit=100, interval_seconds=0)
    await sink.update("a" * 60)
    await sink.update("a" * 60 + "\n\n" + "b" * 60)
    await sink.finish("a" * 60 + "\n\n" + "b" * 60)
    posts = [c for c in sink.calls if c[0] == "post"]
    assert [p[2] for p in posts] == ["a" * 60, "b" * 60]


class FlakySink(RecordingSink):
    def __init__(self, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.failures = 1

    async def _edit(self, handle: Any, text: str) -> None:
        if self.failures:
            self.failures -= 1
            raise RuntimeError("rate limited")
        await super()._edit(handle, text)


async def test_a_failed_mid_stream_edit_is_retried_by_the_next_one() -> None:
    sink = FlakySink(limit=2000, interval_seconds=0)
    await sink.update("one")
    await sink.update("one two")  # this edit fails
    await sink.finish("one two three")
    assert sink.calls[-1] == ("edit", 0, "one two three")


@pytest.mark.parametrize("limit", [40, 200, 4000])
def test_every_piece_respects_the_limit(limit: int) -> None:
    text = "intro\n\n```js\n" + "let a = 1;\n" * 500 + "```\n\n" + "tail " * 300
    assert all(len(p) <= limit for p in split_message(text, limit))
