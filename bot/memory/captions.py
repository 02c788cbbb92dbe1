"""What the model said about an image while it could see it, kept as the image's caption."""

from __future__ import annotations

import re

__all__ = ["CAPTION_MAX_CHARS", "caption_from"]

CAPTION_MAX_CHARS = 300
_SPACES = re.compile(r"\s+")
_SENTENCE_END = re.compile(r"[.!?](?=\s)")
_MARKDOWN = re.compile(r"[*_`#>|]+")


def caption_from(answer: str) -> str:
    """The answer's opening, one line without Markdown marks, cut at a sentence end where one fits."""
    text = _SPACES.sub(" ", _MARKDOWN.sub("", answer)).strip()
    if len(text) <= CAPTION_MAX_CHARS:
        return text
    head = text[:CAPTION_MAX_CHARS]
    ends = [match.end() for match in _SENTENCE_END.finditer(head + " ")]
    if ends and ends[-1] >= CAPTION_MAX_CHARS // 3:
        return head[: ends[-1]]
    return head.rsplit(" ", 1)[0].rstrip(",;:") + " …"
