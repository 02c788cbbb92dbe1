"""Files as fenced blocks in the user turn, each shortened to its share of the room the request has left.

A pure step: no I/O, counted exactly with the TokenCounter.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Sequence
from dataclasses import dataclass

from bot.attachments.text import fenced
from bot.context import ContextBuilder
from bot.tokens import TokenCounter
from bot.turns import Turn

__all__ = ["JOIN", "FileFitter", "FileText", "Fitted", "file_room", "is_log", "with_blocks"]

JOIN = "\n\n"  # between the turn's own text and each file block
# Tokens can merge differently where a block meets the text before it; this much is kept spare.
JOIN_SLACK_TOKENS = 2
HISTORY_SHARE = 0.25  # earlier turns keep up to this share of the budget, if there are that many
# Below this a file is skipped: a fence and a mark alone tell the model nothing.
MIN_FILE_TOKENS = 48
# A log keeps its start (how the run was set up) and, mostly, its end (where it failed).
LOG_HEAD_SHARE = 0.2
LOG_PROBE_LINES = 200
LOG_TIMESTAMPED_SHARE = 0.5
# The longest Llama 3 token is 128 bytes: text longer than 128·N characters is more than N tokens.
MAX_CHARS_PER_TOKEN = 128

_MONTH = r"(?:Jan|Feb|Mar|Apr|May|Jun|Jul|Aug|Sep|Oct|Nov|Dec)"
_TIMESTAMP = re.compile(
    r"\s*(?:[A-Z]{3,8}[:\s]+)?[\[(]?\s*(?:"
    r"\d{4}[-/.]\d{2}[-/.]\d{2}[T ]\d{1,2}:\d{2}"  # 2026-12-03 22:10:04, 2026-12-03T22:10
    r"|\d{1,2}:\d{2}:\d{2}"  # 22:10:04
    rf"|{_MONTH} [ \d]\d \d{{2}}:\d{{2}}"  # syslog: Dec  3 22:10:04
    rf"|\d{{2}}/{_MONTH}/\d{{4}}:\d{{2}}"  # 03/Dec/2026:22:10:04
    r"|\d{10}(?:\.\d+)?\b"  # unix seconds
    r")"
)


@dataclass(frozen=True, slots=True)
class FileText:
    """A file's text, decoded and checked: `name` is safe to show (display_name)."""

    name: str
    text: str


@dataclass(frozen=True, slots=True)
class Fitted:
    """One text per group of files (their blocks joined, "" for none), and what the user is told."""

    blocks: tuple[str, ...]
    notices: tuple[str, ...]


def with_blocks(text: str, blocks: str) -> str:
    """A turn's text with its file blocks after it, so a cut for length never takes the question."""
    return JOIN.join(part for part in (text, blocks) if part)


def file_room(
    builder: ContextBuilder,
    system: str,
    turns: Sequence[Turn],
    history: Sequence[Turn],
    *,
    image_tokens: int,
    files: int,
) -> int:
    """Tokens the files may use: budget − system message − the new turns − a little history."""
    budget = builder.budget.prompt_tokens
    used = builder.fixed_cost(system) + sum(
        builder.history_cost(turn) + (image_tokens if turn.image is not None else 0)
        for turn in turns
    )
    room = budget - used
    earlier = sum(builder.history_cost(turn) for turn in history)
    reserve = min(int(budget * HISTORY_SHARE), earlier, room - MIN_FILE_TOKENS * files)
    return max(0, room - max(0, reserve))


def is_log(name: str, lines: Sequence[str]) -> bool:
    """A `.log` file, or text where most lines start with a timestamp."""
    if name.lower().endswith(".log"):
        return True
    probe = [line for line in lines[: LOG_PROBE_LINES * 2] if line.strip()][:LOG_PROBE_LINES]
    stamped = sum(1 for line in probe if _TIMESTAMP.match(line))
    return len(probe) >= 3 and stamped >= LOG_TIMESTAMPED_SHARE * len(probe)


class FileFitter:
    """Shares the room among files and shortens each to its share, with a mark and a notice."""

    def __init__(self, counter: TokenCounter) -> None:
        self._counter = counter

    def fit(self, groups: Sequence[Sequence[FileText]], room: int) -> Fitted:
        """The blocks of each group (a turn's files) within `room` tokens in all."""
        files = [file for group in groups for file in group]
        needs = [self._need(file, room) for file in files]
        blocks: list[str] = []
        notices: list[str] = []
        for file, need, share in zip(files, needs, _shares(needs, room), strict=True):
            if need <= share:
                blocks.append(fenced(file.name, file.text))
                continue
            block, notice = self._shorten(file, share)
            notices.append(notice)
            blocks.append(block)
        grouped: list[str] = []
        taken = iter(blocks)
        for group in groups:
            grouped.append(JOIN.join(b for b in (next(taken) for _ in group) if b))
        return Fitted(tuple(grouped), tuple(notices))

    def cost(self, block: str) -> int:
        """What a block adds to the turn it is joined to."""
        return self._counter.text(JOIN + block) + JOIN_SLACK_TOKENS

    def _need(self, file: FileText, room: int) -> int:
        """The whole block's cost, or more than `room` when it cannot fit (without counting it all)."""
        block = fenced(file.name, file.text)
        if len(block) > MAX_CHARS_PER_TOKEN * (room + 1):
            return room + 1
        return self.cost(block)

    def _shorten(self, file: FileText, share: int) -> tuple[str, str]:
        lines = file.text.split("\n")
        if share < MIN_FILE_TOKENS:
            return "", f"{file.name} did not fit in what the model can read, so I skipped it."
        room = share - self.cost(fenced(file.name, _mark(len(lines), partial=True, middle=False)))
        log = is_log(file.name, lines)
        head = self._take(lines, int(room * LOG_HEAD_SHARE) if log else room)
        tail = self._take(reversed(lines[len(head) :]), room - self._sum(head)) if log else []
        tail.reverse()
        partial = ""
        if not head and not tail:  # one line longer than the whole share (minified JSON…)
            partial = self._counter.truncate(lines[0][: MAX_CHARS_PER_TOKEN * (room + 1)], room)
        block = self._render(file.name, lines, head, tail, partial)
        while self.cost(block) > share and (head or tail or partial):
            if partial:
                partial = partial[: len(partial) * 9 // 10]
            elif len(tail) > len(head) / LOG_HEAD_SHARE - len(head):
                tail.pop(0)
            else:
                head.pop()
            block = self._render(file.name, lines, head, tail, partial)
        return block, _notice(file.name, len(head), len(tail), log=log)

    def _take(self, lines: Iterable[str], room: int) -> list[str]:
        """Lines, in the order given, while their tokens fit in `room` (counted line by line)."""
        taken: list[str] = []
        used = 0
        for line in lines:
            if len(line) > MAX_CHARS_PER_TOKEN * (room + 1):
                break
            used += self._counter.text(line + "\n")
            if used > room:
                break
            taken.append(line)
        return taken

    def _sum(self, lines: Sequence[str]) -> int:
        return sum(self._counter.text(line + "\n") for line in lines)

    @staticmethod
    def _render(
        name: str, lines: Sequence[str], head: list[str], tail: list[str], partial: str
    ) -> str:
        hidden = len(lines) - len(head) - len(tail)
        shown = [partial] if partial else head
        mark = _mark(hidden - (1 if partial else 0), partial=bool(partial), middle=bool(tail))
        return fenced(name, "\n".join([*shown, mark, *tail]))


def _shares(needs: Sequence[int], room: int) -> list[int]:
    """Each file's share: small files get what they need, the rest split what is left evenly."""
    shares = [0] * len(needs)
    left, count = room, len(needs)
    for index in sorted(range(len(needs)), key=lambda i: needs[i]):
        shares[index] = min(needs[index], left // count)
        left -= shares[index]
        count -= 1
    return shares


def _mark(hidden: int, *, partial: bool, middle: bool) -> str:
    """The visible line where text was cut: `[… N more lines not shown …]`."""
    lines = "line" if hidden == 1 else "lines"
    if partial:
        return f"[… the rest of this line and {hidden} more {lines} not shown …]"
    if middle:
        return f"[… {hidden} {lines} not shown …]"
    return f"[… {hidden} more {lines} not shown …]"


def _notice(name: str, head: int, tail: int, *, log: bool) -> str:
    start = f"{name} was too long for the model, so I read"
    if log and tail:
        return f"{start} its first {head} and last {tail} lines."
    if head:
        return f"{start} its first {head} lines." if head > 1 else f"{start} its first line."
    return f"{start} only the start of it."
