"""Who said what: a display name made safe to prefix a user turn, and the system prompt's note on it."""

from __future__ import annotations

import re
import unicodedata

__all__ = ["SPEAKERS_NOTE", "SPEAKER_MAX_CHARS", "UNKNOWN_SPEAKER", "speaker_name"]

SPEAKER_MAX_CHARS = 40
UNKNOWN_SPEAKER = "someone"
SPEAKERS_NOTE = (
    "\n\nSeveral people may write in this conversation. Each of their messages starts with the "
    'sender\'s name and a colon, like "alice: …"; use the names to tell people apart and to '
    "address them. Do not start your reply with a name and a colon."
)

# Platform mention syntax (<@U123>, <#C1|general>, <!here>, <@&role>) and bare broadcast words.
_MARKUP = re.compile(r"<[@#!][^>]*>|@+(?=everyone|here|channel)")
_SPACES = re.compile(r"\s+")


def speaker_name(display_name: str) -> str:
    """One line, no mention syntax, no colon, at most SPEAKER_MAX_CHARS; "someone" if nothing is left."""
    text = _MARKUP.sub("", display_name)
    text = "".join(
        " " if ch.isspace() else ch
        for ch in text
        if ch.isspace() or unicodedata.category(ch) not in ("Cc", "Cf")
    )
    text = text.replace(":", " ").replace("@", "").replace("<", "").replace(">", "")
    text = _SPACES.sub(" ", text).strip()
    if len(text) > SPEAKER_MAX_CHARS:
        text = text[:SPEAKER_MAX_CHARS].rstrip()
    return text or UNKNOWN_SPEAKER
