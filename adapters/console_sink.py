"""The terminal's ReplySink: the answer on stdout as it streams, Glimpse's own lines on stderr."""

from __future__ import annotations

import sys
from typing import TextIO

__all__ = ["ERASE_LINE", "THINKING", "ConsoleSink"]

THINKING = "thinking…"
ERASE_LINE = "\r\033[K"  # back to the line's start, clear it: the indicator leaves no trace


class ConsoleSink:
    """Prints the answer to stdout as it streams; notices, errors and the indicator go to stderr."""

    def __init__(self, out: TextIO | None = None, err: TextIO | None = None) -> None:
        self._out = out or sys.stdout
        self._err = err or sys.stderr
        self._printed = ""
        self._thinking = False
        self.told = False  # the user was shown a notice or an error for the current message

    def begin(self) -> None:
        """A message went out: show "thinking…" on a terminal until something is printed."""
        self._printed = ""
        self.told = False
        if self.on_terminal:
            self._err.write(THINKING)
            self._err.flush()
            self._thinking = True

    async def start(self) -> None:
        self._printed = ""

    async def update(self, text: str) -> None:
        self._write_new(text)

    async def finish(self, text: str) -> None:
        self._write_new(text)
        self._out.write("\n")
        self._out.flush()

    async def fail(self, text: str) -> None:
        self._settle()
        if self._printed and text.startswith(self._printed):
            self._out.write("\n")
            self._out.flush()
            text = text[len(self._printed) :].strip()
        self.say(text)
        self.told = True

    async def notice(self, text: str) -> None:
        self.say(text)
        self.told = True

    def stopped(self) -> None:
        """Ctrl-C ended the answer: close its line and say what became of it."""
        self._settle()
        if self._printed:
            self._out.write("\n")
            self._out.flush()
            self.say("stopped; the answer so far is remembered, marked as cut off")
        else:
            self.say("stopped before the answer began")

    @property
    def on_terminal(self) -> bool:
        """Whether stderr is a terminal (a person watching), not a pipe or a file."""
        return self._err.isatty()

    def prompt(self, text: str) -> None:
        """Ask for the next line, on stdout as `input()` does."""
        self._out.write(text)
        self._out.flush()

    def end_prompt(self) -> None:
        """The input ended at the prompt (Ctrl-D, Ctrl-C): move off the prompt's line."""
        self._err.write("\n")
        self._err.flush()

    def say(self, text: str) -> None:
        """One line of Glimpse's own on stderr."""
        self._settle()
        self._err.write(f"glimpse: {text}\n")
        self._err.flush()

    def aside(self, text: str) -> None:
        """A line on stderr without the `glimpse:` prefix (the cost after an answer)."""
        self._settle()
        self._err.write(f"{text}\n")
        self._err.flush()

    def _write_new(self, text: str) -> None:
        self._settle()
        if text.startswith(self._printed):
            self._out.write(text[len(self._printed) :])
        else:  # the text changed under us: print it whole on a fresh line
            self._out.write("\n" + text)
        self._printed = text
        self._out.flush()

    def _settle(self) -> None:
        """Erase the "thinking…" indicator, if it is showing."""
        if self._thinking:
            self._err.write(ERASE_LINE)
            self._err.flush()
            self._thinking = False
