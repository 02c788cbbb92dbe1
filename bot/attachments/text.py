"""A text file for the prompt: decoded, checked all the way through, and fenced under its name."""

from __future__ import annotations

import re
from pathlib import PurePosixPath

from bot.attachments.errors import AttachmentRefused, not_text
from bot.attachments.sniff import is_text

__all__ = ["decode_text", "fenced", "language", "named_as_text", "tidy"]

MIN_FENCE = 3
PLAIN = "text"
# The fence label only: what a file is comes from its bytes, never from this.
LANGUAGES = {
    ".c": "c",
    ".cc": "cpp",
    ".cfg": "ini",
    ".conf": "ini",
    ".cpp": "cpp",
    ".cs": "csharp",
    ".css": "css",
    ".csv": "csv",
    ".diff": "diff",
    ".go": "go",
    ".h": "c",
    ".hpp": "cpp",
    ".html": "html",
    ".ini": "ini",
    ".java": "java",
    ".js": "javascript",
    ".json": "json",
    ".jsx": "jsx",
    ".kt": "kotlin",
    ".log": "log",
    ".lua": "lua",
    ".md": "markdown",
    ".patch": "diff",
    ".php": "php",
    ".ps1": "powershell",
    ".py": "python",
    ".rb": "ruby",
    ".rs": "rust",
    ".sh": "bash",
    ".sql": "sql",
    ".svg": "xml",
    ".swift": "swift",
    ".toml": "toml",
    ".ts": "typescript",
    ".tsv": "tsv",
    ".tsx": "tsx",
    ".xml": "xml",
    ".yaml": "yaml",
    ".yml": "yaml",
}
# Names that promise text without a language of their own (only the wording of a refusal uses them).
PLAIN_SUFFIXES = frozenset({".txt", ".text", ".out", ".err", ".env", ".rst", ".adoc", ".tex"})
# Terminal colours and titles (ESC [ … m, ESC ] … BEL): tokens that mean nothing to the model.
_ANSI = re.compile(r"\x1b\[[0-?]*[ -/]*[@-~]|\x1b\][^\x07\x1b]*(?:\x07|\x1b\\)?")
_CONTROLS = re.compile("[\x00-\x08\x0b\x0e-\x1f\x7f-\x9f]")
_BACKTICKS = re.compile("`+")


def decode_text(data: bytes, encoding: str, name: str) -> str:
    """All of the file as text with \\n line ends; AttachmentRefused if it is not text after all."""
    text = data.decode(encoding, errors="replace")
    if not is_text(text):  # the sniffed start was text; a binary rest is caught here
        raise not_text(name)
    text = tidy(text)
    if not text:
        raise AttachmentRefused(f"{name} is empty.", reason="empty")
    return text


def tidy(text: str) -> str:
    """\\n line ends, no terminal colours or other control characters, no blank start or end."""
    text = _ANSI.sub("", text).replace("\r\n", "\n").replace("\r", "\n").removeprefix("\ufeff")
    text = _CONTROLS.sub("", text)
    return text.strip("\n") if text.strip() else ""


def language(name: str) -> str:
    """The fence's language label, from the name's extension ("text" when unknown)."""
    return LANGUAGES.get(PurePosixPath(name).suffix.lower(), PLAIN)


def named_as_text(name: str) -> bool:
    """Whether the name promises text (notes.txt, app.py): binary bytes under it get their own sentence."""
    suffix = PurePosixPath(name).suffix.lower()
    return suffix in LANGUAGES or suffix in PLAIN_SUFFIXES


def fenced(name: str, text: str) -> str:
    """```lang name … ``` with a fence longer than any backtick run inside, so nothing closes it early."""
    longest = max((len(run) for run in _BACKTICKS.findall(text)), default=0)
    fence = "`" * max(MIN_FENCE, longest + 1)
    title = name.replace("`", "'")  # a backtick fence's info string may not hold one
    return f"{fence}{language(name)} {title}\n{text}\n{fence}"
