"""Check a Turn or Summary before it is stored, and turn a Turn into a flat row (and back)."""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import Any

from bot.messages import ConversationKey
from bot.turns import PreparedImage, Summary, Turn, Usage

__all__ = [
    "KEY_COLUMNS",
    "TURN_COLUMNS",
    "key_params",
    "row_to_turn",
    "turn_to_row",
    "validate_model_id",
    "validate_replacing",
    "validate_summary",
    "validate_turn",
]

ROLES = ("user", "assistant")
MAX_MODEL_ID_CHARS = 200

# The conversation a row belongs to, in ConversationKey field order.
KEY_COLUMNS = ("platform", "workspace", "channel", "thread")
# An inbox entry's fields, as SQLite columns and Redis hash fields (bot/inbox/records.py).
INBOX_COLUMNS = (
    "event_id",
    *KEY_COLUMNS,
    "message_id",
    "state",
    "message",
    "instance",
    "claimed_at",
    "updated_at",
    "attempts",
    "reply_id",
)

# Everything a Turn holds, flattened; `row_to_turn` reads rows selected in this order.
TURN_COLUMNS = (
    "role",
    "text",
    "tokens",
    "created_at",
    "author_id",
    "message_id",
    "speaker",
    "image",
    "image_mime",
    "image_width",
    "image_height",
    "image_label",
    "image_caption",
    "usage_model",
    "usage_prompt_tokens",
    "usage_completion_tokens",
    "usage_cost",
)


def validate_turn(turn: Turn) -> None:
    """Raise ValueError if the turn cannot be stored faithfully by every backend."""
    if not isinstance(turn, Turn):
        raise ValueError(f"expected a Turn, got {type(turn).__name__}")
    if turn.role not in ROLES:
        raise ValueError(f"a turn's role is 'user' or 'assistant', got {turn.role!r}")
    if not isinstance(turn.text, str):
        raise ValueError("a turn's text must be a str")
    if not _is_int(turn.tokens) or turn.tokens < 0:
        raise ValueError(f"a turn's tokens must be an int >= 0, got {turn.tokens!r}")
    if not _is_number(turn.created_at) or not math.isfinite(turn.created_at):
        raise ValueError(
            f"a turn's created_at must be finite unix seconds, got {turn.created_at!r}"
        )
    if not all(isinstance(value, str) for value in (turn.author_id, turn.message_id, turn.speaker)):
        raise ValueError("a turn's author_id, message_id and speaker must be str")
    _validate_image(turn.image)
    _validate_usage(turn.usage)


def validate_summary(summary: Summary) -> None:
    """Raise ValueError if the summary cannot be stored faithfully by every backend."""
    if not isinstance(summary, Summary) or not isinstance(summary.text, str):
        raise ValueError("expected a Summary with a str text")
    if not _is_int(summary.tokens) or summary.tokens < 0:
        raise ValueError(f"a summary's tokens must be an int >= 0, got {summary.tokens!r}")
    if not (_is_finite(summary.through) and _is_finite(summary.updated_at)):
        raise ValueError("a summary's through and updated_at must be finite unix seconds")


def validate_replacing(replacing: float | None) -> None:
    """Raise ValueError unless `replacing` is None or a finite `through`."""
    if replacing is not None and not _is_finite(replacing):
        raise ValueError(f"replacing is None or a finite through, got {replacing!r}")


def validate_model_id(model: str | None) -> None:
    """A channel's model id: None (clear) or a non-empty string without control characters."""
    if model is None:
        return
    if not isinstance(model, str) or not model.strip() or len(model) > MAX_MODEL_ID_CHARS:
        raise ValueError(
            f"a model id is a non-empty string of at most {MAX_MODEL_ID_CHARS} characters"
        )
    if any(ord(ch) < 32 or ord(ch) == 127 or 0xD800 <= ord(ch) <= 0xDFFF for ch in model):
        raise ValueError("a model id has no control characters or lone surrogates")


def key_params(key: ConversationKey) -> tuple[str, str, str, str]:
    """The key's parts in KEY_COLUMNS order."""
    return (key.platform, key.workspace, key.channel, key.thread)


def turn_to_row(key: ConversationKey, turn: Turn) -> tuple[Any, ...]:
    """Validate the turn; its row in KEY_COLUMNS + TURN_COLUMNS order."""
    validate_turn(turn)
    return key_params(key) + _turn_values(turn)


def row_to_turn(row: Sequence[Any]) -> Turn:
    """The Turn a row selected in TURN_COLUMNS order holds."""
    values = dict(zip(TURN_COLUMNS, row, strict=True))
    return Turn(
        role=values["role"],
        text=values["text"],
        tokens=int(values["tokens"]),
        created_at=float(values["created_at"]),
        author_id=values["author_id"],
        message_id=values["message_id"],
        image=_image_from(values),
        usage=_usage_from(values),
        speaker=values["speaker"],
    )


def _turn_values(turn: Turn) -> tuple[Any, ...]:
    image, usage = turn.image, turn.usage
    return (
        turn.role,
        turn.text,
        turn.tokens,
        float(turn.created_at),
        turn.author_id,
        turn.message_id,
        turn.speaker,
        bytes(image.data) if image else None,
        image.mime_type if image else None,
        image.width if image else None,
        image.height if image else None,
        image.label if image else None,
        image.caption if image else None,
        usage.model if usage else None,
        usage.prompt_tokens if usage else None,
        usage.completion_tokens if usage else None,
        float(usage.cost) if usage else None,
    )


def _image_from(values: dict[str, Any]) -> PreparedImage | None:
    if values["image_mime"] is None:
        return None
    return PreparedImage(
        data=bytes(values["image"] or b""),
        mime_type=values["image_mime"],
        width=int(values["image_width"]),
        height=int(values["image_height"]),
        label=values["image_label"],
        caption=values["image_caption"] or "",  # NULL in rows stored before captions
    )


def _usage_from(values: dict[str, Any]) -> Usage | None:
    if values["usage_model"] is None:
        return None
    return Usage(
        model=values["usage_model"],
        prompt_tokens=int(values["usage_prompt_tokens"]),
        completion_tokens=int(values["usage_completion_tokens"]),
        cost=float(values["usage_cost"]),
    )


def _validate_image(image: PreparedImage | None) -> None:
    if image is None:
        return
    if not isinstance(image, PreparedImage) or not isinstance(image.data, bytes | bytearray):
        raise ValueError("a turn's image must be a PreparedImage holding bytes")
    if not all(isinstance(value, str) for value in (image.mime_type, image.label, image.caption)):
        raise ValueError("an image's mime_type, label and caption must be str")
    if not (_is_int(image.width) and _is_int(image.height)):
        raise ValueError("an image's width and height must be ints")


def _validate_usage(usage: Usage | None) -> None:
    if usage is None:
        return
    if not isinstance(usage, Usage) or not isinstance(usage.model, str):
        raise ValueError("a turn's usage must be a Usage with a str model")
    if not (_is_int(usage.prompt_tokens) and _is_int(usage.completion_tokens)):
        raise ValueError("usage token counts must be ints")
    if not _is_number(usage.cost) or not math.isfinite(usage.cost):
        raise ValueError(f"usage cost must be a finite number, got {usage.cost!r}")


def _is_int(value: object) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)


def _is_number(value: object) -> bool:
    return isinstance(value, int | float) and not isinstance(value, bool)


def _is_finite(value: object) -> bool:
    return isinstance(value, int | float) and not isinstance(value, bool) and math.isfinite(value)
