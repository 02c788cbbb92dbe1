"""Assertions the hostile-input tests share: a clear answer, nothing unsafe shown, nothing pinged."""

from __future__ import annotations

import re
import unicodedata
from collections.abc import Sequence
from typing import Any

from bot.conversations import INTERNAL_ERROR
from tests.reliability.corpus import Case

__all__ = [
    "ANSWER_PREFIX",
    "assert_clear_answer",
    "assert_nothing_unsafe_shown",
    "echo",
    "image_parts",
    "slack_pings",
    "user_text",
]

ANSWER_PREFIX = "You asked: "
# Slack markup that notifies people: <!channel>, <!here>, <!everyone>, <!subteam^…>, <@U…>.
_SLACK_PING = re.compile(r"<[!@]")
_ALLOWED_CONTROLS = "\n\t"


def user_text(body: dict[str, Any]) -> str:
    """The text of the newest user message of a chat request."""
    content = body["messages"][-1]["content"]
    if isinstance(content, str):
        return content
    return " ".join(part["text"] for part in content if part["type"] == "text")


def echo(body: dict[str, Any]) -> str:
    """The fake model repeats the question, so anything hostile in it comes back in the answer."""
    return ANSWER_PREFIX + user_text(body)[:300]


def image_parts(body: dict[str, Any]) -> list[dict[str, Any]]:
    """The image parts of the newest user message of a chat request."""
    content = body["messages"][-1]["content"]
    return (
        [part for part in content if part["type"] == "image_url"]
        if isinstance(content, list)
        else []
    )


def slack_pings(texts: Sequence[str]) -> list[str]:
    return [text for text in texts if _SLACK_PING.search(text)]


def assert_nothing_unsafe_shown(texts: Sequence[str]) -> None:
    """No broken UTF-8, direction override or control character reaches the user."""
    for text in texts:
        bad = [ch for ch in text if _unsafe(ch)]
        assert not bad, f"unsafe characters {bad!r} shown in {text[:120]!r}"


def _unsafe(ch: str) -> bool:
    category = unicodedata.category(ch)
    if category == "Cs" or ch in "\u202a\u202b\u202c\u202d\u202e\u2066\u2067\u2068\u2069":
        return True
    return category == "Cc" and ch not in _ALLOWED_CONTROLS


def assert_clear_answer(case: Case, shown: Sequence[str], bodies: Sequence[dict[str, Any]]) -> None:
    """The user got every sentence the case calls for, and the model exactly the request it should."""
    everything = " ".join(shown)
    assert shown, f"{case.id}: the user was told nothing"
    assert INTERNAL_ERROR not in everything, f"{case.id}: {everything[:300]}"
    for words in case.says:
        assert words.casefold() in everything.casefold(), (
            f"{case.id}: {words!r} not in {everything[:400]!r}"
        )
    # A summary of what no longer fits may follow the answer (a non-streamed call of its own).
    bodies = [body for body in bodies if body.get("stream")]
    assert len(bodies) == int(case.asks_model), f"{case.id}: {len(bodies)} answer calls"
    if case.asks_model:
        assert len(image_parts(bodies[0])) == case.images_sent, case.id
        assert not any(unicodedata.category(ch) == "Cs" for ch in user_text(bodies[0]))
    # The bot's own sentences (refusals, notes) are clean; the model's echo of the question is its own.
    assert_nothing_unsafe_shown([text for text in shown if not text.startswith(ANSWER_PREFIX)])
