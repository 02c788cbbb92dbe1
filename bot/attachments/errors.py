"""The refusal every attachment step raises, with the sentence the user reads."""

from __future__ import annotations

__all__ = ["AttachmentRefused", "not_text"]


class AttachmentRefused(Exception):
    """An attachment that will not be read: `user_message` says why, `reason` is a short code for the log."""

    def __init__(self, user_message: str, *, reason: str = "refused") -> None:
        super().__init__(user_message)
        self.user_message = user_message
        self.reason = reason


def not_text(name: str) -> AttachmentRefused:
    """The refusal for bytes that look like text at first but are not (binary data)."""
    return AttachmentRefused(f"{name} is not text (binary data), so I skipped it.", reason="binary")
