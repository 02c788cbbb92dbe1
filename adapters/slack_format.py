"""Text across the Slack boundary: Slack markup to plain text in, model Markdown to safe mrkdwn out."""

from __future__ import annotations

import html
import re
from collections.abc import Mapping

__all__ = ["escape", "from_slack", "is_reset", "to_mrkdwn", "to_native_markdown"]

# <@U123>, <@U123|name>, <#C123|name>, <!here>, <!subteam^S1|@team>, <https://x|label>
_ANGLE = re.compile(r"<([^<>\n]+)>")
_FENCE = re.compile(r"```[^\n`]*\n?.*?(?:```|\Z)", re.DOTALL)
_INLINE_CODE = re.compile(r"`[^`\n]+`")
_LINK = re.compile(r"\[([^\]\n]+)\]\(((?:https?|mailto):[^\s()|<>]+)\)")
_BOLD = re.compile(r"\*\*(?=\S)(.+?)(?<=\S)\*\*")
_ITALIC = re.compile(r"(?<![*\w])\*(?=[^\s*])([^*\n]+?)(?<=\S)\*(?![*\w])")
_STRIKE = re.compile(r"~~(?=\S)(.+?)(?<=\S)~~")
_HEADING = re.compile(r"^#{1,6}[ \t]+(.+?)[ \t#]*$", re.MULTILINE)
_BOLD_MARK = "\x00"
# Markup that pings people in Slack's Markdown, defused with a zero-width space after "<".
_PING = re.compile(r"<(?=[!@#])")
_RESET_WORDS = frozenset({"reset", "/reset"})


def from_slack(
    text: str, *, bot_user_id: str | None = None, names: Mapping[str, str] | None = None
) -> str:
    """What a person typed, as plain text for the model: the bot's own mention removed, markup resolved.

    `names` (user id -> display name) turns other people's `<@U…>` into `@Name`; without one,
    `@label` or `@U…`. Plain `@Name` text pings nobody, whatever the model repeats of it.
    """
    plain = _ANGLE.sub(lambda match: _resolve(match.group(1), bot_user_id, names or {}), text)
    plain = html.unescape(plain)
    return re.sub(r"[ \t]{2,}", " ", plain).strip()


def _resolve(inner: str, bot_user_id: str | None, names: Mapping[str, str]) -> str:
    target, _, label = inner.partition("|")
    if target.startswith("@"):
        if bot_user_id and target[1:] == bot_user_id:
            return ""
        return f"@{names.get(target[1:]) or label or target[1:]}"
    if target.startswith("#"):
        return f"#{label or target[1:]}"
    if target.startswith("!"):
        name = target[1:].split("^", 1)[0]
        return label or f"@{name}"
    return f"{label} ({target})" if label and label != target else target


def escape(text: str) -> str:
    """Slack's three control characters as entities: no `<!channel>`, `<@U…>` or link can survive."""
    return text.replace("&", "&amp;").replace("<", "&lt;").replace(">", "&gt;")


def to_mrkdwn(markdown: str) -> str:
    """The model's Markdown as Slack mrkdwn, escaped so it can never ping anyone."""
    out: list[str] = []
    for code, chunk in _segments(markdown):
        out.append(_code(chunk) if code else _prose(chunk))
    return "".join(out)


def to_native_markdown(markdown: str) -> str:
    """Markdown for Slack's streaming API (which renders Markdown itself), with ping markup defused."""
    return _PING.sub("<\u200b", markdown)


def is_reset(text: str) -> bool:
    """Whether a message (bot mention already stripped) asks to forget the conversation."""
    return text.strip().strip(".!").lower() in _RESET_WORDS


def _segments(text: str) -> list[tuple[bool, str]]:
    """(is_code, chunk) pieces: fenced blocks and inline code are left alone by the prose rules."""
    pieces: list[tuple[bool, str]] = []
    at = 0
    for match in _FENCE.finditer(text):
        pieces.extend(_inline_segments(text[at : match.start()]))
        pieces.append((True, match.group(0)))
        at = match.end()
    pieces.extend(_inline_segments(text[at:]))
    return pieces


def _inline_segments(text: str) -> list[tuple[bool, str]]:
    pieces: list[tuple[bool, str]] = []
    at = 0
    for match in _INLINE_CODE.finditer(text):
        pieces.append((False, text[at : match.start()]))
        pieces.append((True, match.group(0)))
        at = match.end()
    pieces.append((False, text[at:]))
    return [piece for piece in pieces if piece[1]]


def _code(chunk: str) -> str:
    if chunk.startswith("```"):
        # Slack shows a fence's language name as code; drop it.
        chunk = re.sub(r"^```[^\n`]*\n", "```\n", chunk, count=1)
    return escape(chunk)


def _prose(chunk: str) -> str:
    text = escape(chunk)
    text = _HEADING.sub(lambda m: f"{_BOLD_MARK}{m.group(1)}{_BOLD_MARK}", text)
    text = _BOLD.sub(lambda m: f"{_BOLD_MARK}{m.group(1)}{_BOLD_MARK}", text)
    text = _ITALIC.sub(r"_\1_", text)
    text = _STRIKE.sub(r"~\1~", text)
    text = _LINK.sub(lambda m: f"<{m.group(2)}|{m.group(1)}>", text)
    return text.replace(_BOLD_MARK, "*")
