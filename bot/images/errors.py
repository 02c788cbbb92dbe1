"""The refusal every image step raises, and the wording of sizes and names in its sentences."""

from __future__ import annotations

import unicodedata

__all__ = ["ImageRefused", "display_name", "format_bytes", "too_large"]

BYTES_PER_KIB = 1024
BYTES_PER_MIB = 1024 * 1024
MAX_NAME_CHARS = 80


class ImageRefused(Exception):
    """An image that will not be sent: `user_message` says why, `reason` is a short code for the log."""

    def __init__(self, user_message: str, *, reason: str = "refused") -> None:
        super().__init__(user_message)
        self.user_message = user_message
        self.reason = reason


def display_name(filename: str) -> str:
    """A filename made safe to show and to put in a prompt: one line, no control characters, short."""
    cleaned = "".join(" " if unicodedata.category(ch).startswith("C") else ch for ch in filename)
    cleaned = " ".join(cleaned.split())
    if len(cleaned) > MAX_NAME_CHARS:
        cleaned = cleaned[: MAX_NAME_CHARS - 1] + "…"
    return cleaned or "image"


def format_bytes(size: int) -> str:
    """A size as people read it: "31 MB", "1.5 MB", "300 KB", "12 bytes" (binary units)."""
    for unit_bytes, unit in ((BYTES_PER_MIB, "MB"), (BYTES_PER_KIB, "KB")):
        if size >= unit_bytes:
            value = size / unit_bytes
            text = f"{value:.1f}" if value < 10 else f"{value:.0f}"
            return f"{text.removesuffix('.0')} {unit}"
    return f"{size} bytes"


def too_large(name: str, limit_bytes: int, size_bytes: int | None = None) -> ImageRefused:
    """The refusal for a file over the byte limit; never says "20 MB; the limit is 20 MB"."""
    limit = format_bytes(limit_bytes)
    size = format_bytes(size_bytes) if size_bytes is not None else None
    if size is None or size == limit:
        return ImageRefused(f"{name} is larger than the {limit} limit.", reason="too_large")
    return ImageRefused(f"{name} is {size}; the limit is {limit}.", reason="too_large")
