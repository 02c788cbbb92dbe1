"""Block Kit for answers: the `markdown` block, the feedback buttons, and reading a click on them."""

from __future__ import annotations

import re
from collections.abc import Mapping
from typing import Any

__all__ = [
    "FEEDBACK_ACTION",
    "MARKDOWN_BLOCK_CHARS",
    "feedback_blocks",
    "markdown_block",
    "rating_buttons",
    "read_rating",
]

# Slack: "The cumulative limit for all markdown blocks in a single payload is 12,000 characters."
MARKDOWN_BLOCK_CHARS = 12_000
FEEDBACK_ACTION = "glimpse_feedback"  # action_id of the feedback buttons (one per button below)
FEEDBACK_ACTIONS = re.compile(rf"^{FEEDBACK_ACTION}(_good|_bad)?$")  # what the listener matches
GOOD_LABEL, BAD_LABEL = "👍", "👎"
BUTTON_TEXT_CHARS = 75
BUTTON_VALUE_CHARS = 2_000
_VALUE = re.compile(r"^(good|bad):(.+)$", re.DOTALL)  # "good:<model id>"


def markdown_block(markdown: str) -> dict[str, Any]:
    """Slack's `markdown` block: standard Markdown that Slack renders itself (headings, lists, quotes)."""
    return {"type": "markdown", "text": markdown}


def feedback_blocks(model: str) -> list[dict[str, Any]]:
    """The feedback buttons under an answer: a `context_actions` block, as chat.stopStream takes it.

    Each button's value carries the model that wrote the answer, so a click needs no lookup.
    """
    return [
        {
            "type": "context_actions",
            "elements": [
                {
                    "type": "feedback_buttons",
                    "action_id": FEEDBACK_ACTION,
                    "positive_button": _button("good", model, "This answer was good"),
                    "negative_button": _button("bad", model, "This answer was bad"),
                }
            ],
        }
    ]


def rating_buttons(model: str) -> dict[str, Any]:
    """The same two ratings as classic buttons in an `actions` block, for answers sent with chat.update."""
    return {
        "type": "actions",
        "elements": [
            {
                "type": "button",
                "action_id": f"{FEEDBACK_ACTION}_{rating}",
                **_button(rating, model, label),
            }
            for rating, label in (("good", "This answer was good"), ("bad", "This answer was bad"))
        ],
    }


def read_rating(action: Mapping[str, Any]) -> tuple[str, str] | None:
    """(rating, model) from one `block_actions` action on our buttons; None if it is not one."""
    if not FEEDBACK_ACTIONS.match(str(action.get("action_id") or "")):
        return None
    match = _VALUE.match(str(action.get("value") or ""))
    return (match.group(1), match.group(2)) if match else None


def _button(rating: str, model: str, label: str) -> dict[str, Any]:
    value = f"{rating}:{model}"[:BUTTON_VALUE_CHARS]
    return {
        "text": {"type": "plain_text", "text": GOOD_LABEL if rating == "good" else BAD_LABEL},
        "value": value,
        "accessibility_label": label,
    }
