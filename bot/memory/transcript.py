"""The summary request: instructions, the old summary and the turns to fold, counted to fit exactly."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from bot.context import spoken
from bot.tokens import TokenCounter
from bot.turns import Summary, Turn

__all__ = ["SUMMARY_INSTRUCTIONS", "request_cost", "summary_messages", "turn_line"]

SUMMARY_INSTRUCTIONS = (
    "You keep the running summary of a chat between people and an AI assistant. The older "
    "messages are about to be dropped from the assistant's memory; the summary is all it will "
    "have of them. Fold the new messages into the current summary. Keep who said what (names), "
    "facts, numbers, names of things, decisions, open questions, and what images showed. Drop "
    "greetings and repetition. Write plain sentences or short bullet points in the conversation's "
    "language, at most {words} words. Reply with the updated summary only."
)
LINE_MARK = " […]"
MIN_LINE_TOKENS = 8


def turn_line(turn: Turn) -> str:
    """One turn as a transcript line: the speaker, then what an image showed, then the text."""
    if turn.role == "assistant":
        return f"assistant: {turn.text}"
    text = turn.text
    if turn.image is not None:
        shown = f": {turn.image.caption}" if turn.image.caption else ""
        text = f"[image {turn.image.label}{shown}] {text}".rstrip()
    return spoken(turn.speaker or "user", text)


def summary_messages(
    old: Summary | None,
    turns: Sequence[Turn],
    counter: TokenCounter,
    *,
    words: int,
    prompt_tokens: int,
) -> list[dict[str, Any]]:
    """The request's messages, fitted to `prompt_tokens` as counted (`request_cost` says what they cost).

    Lines that do not fit are shortened evenly, longest first (a quarter less each pass); once
    every line is down to a few tokens, the oldest lines go.
    """
    system = SUMMARY_INSTRUCTIONS.format(words=words)
    originals = [turn_line(turn) for turn in turns]
    lines = originals
    messages = _messages(system, old, lines)
    share = max((counter.text(line) for line in lines), default=0)
    while request_cost(counter, messages) > prompt_tokens and originals:
        if share > MIN_LINE_TOKENS:
            share = max(MIN_LINE_TOKENS, share * 3 // 4)
        else:
            originals = originals[1:]
        lines = [_shorten(counter, line, share) for line in originals]
        messages = _messages(system, old, lines)
    return messages


def _messages(system: str, old: Summary | None, lines: Sequence[str]) -> list[dict[str, Any]]:
    current = old.text if old is not None else "(none yet)"
    user = f"Current summary:\n{current}\n\nNew messages to fold in:\n" + "\n".join(lines)
    return [{"role": "system", "content": system}, {"role": "user", "content": user}]


def request_cost(counter: TokenCounter, messages: Sequence[dict[str, Any]]) -> int:
    """Prompt tokens of text-only messages in the Llama 3 chat format."""
    return counter.dialog_overhead() + sum(
        counter.message(message["role"], message["content"]) for message in messages
    )


def _shorten(counter: TokenCounter, line: str, tokens: int) -> str:
    if counter.text(line) <= tokens:
        return line
    return counter.truncate(line, max(1, tokens - 2)) + LINE_MARK
