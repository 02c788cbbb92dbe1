"""What a conversation remembers: turns, the image a turn carried, and what a reply cost."""

from __future__ import annotations

import base64
from dataclasses import dataclass, field
from typing import Literal

__all__ = ["PreparedImage", "Role", "Summary", "Turn", "Usage"]

Role = Literal["user", "assistant"]


@dataclass(frozen=True, slots=True)
class PreparedImage:
    """An image validated, oriented, downscaled and re-encoded, ready to send to the model."""

    data: bytes = field(repr=False)
    mime_type: str  # image/jpeg or image/png
    width: int
    height: int
    # What the image is, in words, for when it is no longer sent ("photo.jpg", "grid of 1: a.png, 2: b.jpg").
    label: str
    # What the model said about the image while it could see it (a short excerpt of its answer),
    # so the image stays represented in words once it is no longer sent.
    caption: str = ""

    def data_url(self) -> str:
        return f"data:{self.mime_type};base64,{base64.b64encode(self.data).decode('ascii')}"


@dataclass(frozen=True, slots=True)
class Usage:
    """Tokens and money one model call used, as OpenRouter reported them."""

    model: str
    prompt_tokens: int = 0
    completion_tokens: int = 0
    cost: float = 0.0  # US dollars


@dataclass(frozen=True, slots=True)
class Turn:
    """One stored message of a conversation, with its token count computed once."""

    role: Role
    text: str
    tokens: int  # chat-template tokens of this message, text only (header + content + end of turn)
    created_at: float  # unix seconds
    author_id: str = ""
    message_id: str = ""
    image: PreparedImage | None = None
    usage: Usage | None = None
    # The author's sanitised display name, sent as "speaker: text" in shared conversations and
    # counted in `tokens`; "" when the turn is sent without a name (assistant, DM, terminal).
    speaker: str = ""


@dataclass(frozen=True, slots=True)
class Summary:
    """A model-written summary of a conversation's oldest turns, sent instead of them."""

    text: str
    tokens: int  # tokens of `text` alone (the builder counts it inside the system message)
    through: float  # created_at of the newest turn it covers: turns at or before it are covered
    updated_at: float  # unix seconds, for retention
