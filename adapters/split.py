"""Splits a long answer into platform-sized messages on paragraph and line breaks, keeping code fences whole."""

from __future__ import annotations

__all__ = ["split_message"]

FENCE = "```"
CLOSE_FENCE = "\n" + FENCE
# A break this far into the allowed room or further is good enough; earlier ones make ragged messages.
MIN_FILL = 0.5


def split_message(text: str, limit: int) -> list[str]:
    """Pieces of `text`, each at most `limit` characters.

    Breaks at paragraphs, then lines, then spaces; a fenced code block cut in two
    is closed at the end of one piece and reopened (with its language) in the next.
    """
    if limit < 32:
        raise ValueError("limit must be at least 32 characters")
    pieces: list[str] = []
    rest = text
    fence: str | None = None  # the opening fence line in force where `rest` starts
    while rest:
        prefix = fence + "\n" if fence else ""
        if len(prefix) + len(rest) <= limit:
            pieces.append(prefix + rest)
            break
        room = limit - len(prefix) - len(CLOSE_FENCE)
        cut = _best_cut(rest, room)
        piece = rest[:cut]
        fence = _fence_after(piece, fence)
        pieces.append(prefix + piece.rstrip("\n") + (CLOSE_FENCE if fence else ""))
        rest = rest[cut:]
        if not fence:
            rest = rest.lstrip("\n")
    return [piece for piece in pieces if piece.strip()] or [text[:limit]]


def _best_cut(text: str, room: int) -> int:
    """Where to end the next piece: the last paragraph break, line break or space that fills it enough."""
    window = text[:room]
    for separator in ("\n\n", "\n", " "):
        at = window.rfind(separator)
        if at >= room * MIN_FILL:
            return at + len(separator)
    return room


def _fence_after(piece: str, fence: str | None) -> str | None:
    """The fence still open at the end of `piece`, given the one open at its start."""
    for line in piece.split("\n"):
        stripped = line.strip()
        if stripped.startswith(FENCE):
            fence = None if fence else stripped
    return fence
