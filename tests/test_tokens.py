"""Token counts: the same as Meta's tokenizer gives, whichever way a text is handed to tiktoken."""

from __future__ import annotations

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from llama_models.llama3.tokenizer import MAX_NO_WHITESPACES_CHARS, Tokenizer

from bot.tokens import TokenCounter

_PIECES = st.sampled_from(
    [
        "a",
        "lake",
        " ",
        "  ",
        "\n",
        "\t",
        "é",
        "湖",
        "🌍",
        "```py\n",
        "<|eot_id|>",
        "<|begin_of_text|>",
    ]
)


@pytest.fixture(scope="module")
def counter() -> TokenCounter:
    return TokenCounter()


def meta_tokens(text: str) -> list[int]:
    return Tokenizer.get_instance().encode(text, bos=False, eos=False)


@settings(max_examples=300)
@given(pieces=st.lists(_PIECES, max_size=60))
def test_a_short_text_counts_as_meta_s_tokenizer_counts_it(pieces: list[str]) -> None:
    text = "".join(pieces)
    counter = TokenCounter()
    assert counter._encode(text) == meta_tokens(text)
    assert counter.text(text) == len(meta_tokens(text))


@pytest.mark.parametrize(
    "text",
    [
        "a" * (MAX_NO_WHITESPACES_CHARS + 7),  # one run Meta's tokenizer cuts in two
        " " * (MAX_NO_WHITESPACES_CHARS + 1) + "end",
        ("word " * 6000) + "x" * (MAX_NO_WHITESPACES_CHARS + 3),
    ],
)
def test_a_text_with_a_run_too_long_for_one_piece_is_cut_as_meta_cuts_it(
    counter: TokenCounter, text: str
) -> None:
    assert counter._encode(text) == meta_tokens(text)


def test_only_a_text_longer_than_one_piece_goes_through_meta_s_character_walk(
    counter: TokenCounter, monkeypatch: pytest.MonkeyPatch
) -> None:
    walked: list[int] = []
    walk = Tokenizer._split_whitespaces_or_nonwhitespaces

    def counted(text: str, limit: int):  # type: ignore[no-untyped-def]
        walked.append(len(text))
        return walk(text, limit)

    monkeypatch.setattr(Tokenizer, "_split_whitespaces_or_nonwhitespaces", staticmethod(counted))
    counter._encode("an answer of a thousand characters " * 30)
    counter._encode("x" * MAX_NO_WHITESPACES_CHARS)
    assert walked == []
    counter._encode("x" * (MAX_NO_WHITESPACES_CHARS + 1))
    assert walked == [MAX_NO_WHITESPACES_CHARS + 1]


@pytest.mark.parametrize("budget", [1, 2, 3, 37, 38, 39])
def test_truncation_keeps_a_real_beginning_of_the_text_that_fits(
    counter: TokenCounter, budget: int
) -> None:
    text = "🌍 lake 湖 " * 500  # emoji and CJK: tokens that end inside a character
    cut = counter.truncate(text, budget)
    assert text.startswith(cut)  # no U+FFFD where a character was split (the emoji is 3 tokens)
    assert len(meta_tokens(cut)) <= budget
    assert len(meta_tokens(text[: len(cut) + 5])) > budget  # and not much shorter than it may be
