"""The fields Glimpse reads from a streamed chat-completion chunk, decoded straight into structs."""

from __future__ import annotations

from typing import Any

import msgspec

__all__ = ["UNREADABLE_CHUNK", "Chunk", "decode_chunk"]

# Structs without garbage-collector tracking: a chunk holds no reference cycle, and a thousand
# streams make hundreds of thousands of them a minute. Fields not named here are skipped unread.


class Delta(msgspec.Struct, gc=False):
    """What one choice added to the answer."""

    content: str | None = None


class Choice(msgspec.Struct, gc=False):
    """One choice of a chunk (Glimpse asks for one)."""

    delta: Delta | None = None
    finish_reason: str | None = None


class Chunk(msgspec.Struct, gc=False):
    """One `data:` event of the stream: text deltas, the finish, usage, or OpenRouter's error."""

    choices: list[Choice] | None = None
    model: str | None = None
    usage: dict[str, Any] | None = None
    error: Any = None  # OpenRouter's mid-stream error: {"code": ..., "message": ...}


# what decoding raises for data that is not JSON, not UTF-8, or not the shape above
UNREADABLE_CHUNK: tuple[type[Exception], ...] = (msgspec.DecodeError, UnicodeDecodeError)
decode_chunk = msgspec.json.Decoder(Chunk).decode
