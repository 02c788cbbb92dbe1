"""Glimpse's log lines held while an answer streams, then shown less what the user was told."""

from __future__ import annotations

import contextlib
import logging
from collections.abc import Iterator

__all__ = ["MODEL_LOGGER", "HeldLogs"]

MODEL_LOGGER = "glimpse.openrouter"


class HeldLogs(logging.Filter):
    """While an answer is under way Glimpse's log lines wait: dropped if the user was told, else shown.

    The terminal's user sees every refusal and error as one sentence; the log line about the same
    thing would only repeat it (and land in the middle of the streamed answer). Errors pass at once.
    """

    def __init__(self) -> None:
        super().__init__()
        self._held: list[logging.LogRecord] | None = None

    def filter(self, record: logging.LogRecord) -> bool:
        if self._held is None or record.levelno >= logging.ERROR:
            return True
        if not record.name.startswith("glimpse"):
            return True
        if not any(held is record for held in self._held):  # each handler asks about it
            self._held.append(record)
        return False

    def hold(self) -> None:
        """Start holding Glimpse's log lines below ERROR."""
        self._held = []

    def release(self, *, told: bool) -> None:
        """Stop holding; show what was held, less what the user's sentence already said.

        Once the user was told, INFO lines (refusals) and the model client's warnings go: the
        sentence names the same thing. Other warnings stay, since they carry a cause the sentence
        leaves out (the disk is full, the store is unreachable).
        """
        held, self._held = self._held or [], None
        for record in held:
            if told and (record.levelno < logging.WARNING or record.name == MODEL_LOGGER):
                continue
            logging.getLogger(record.name).handle(record)

    @contextlib.contextmanager
    def installed(self) -> Iterator[HeldLogs]:
        """On the root logger's handlers for the duration."""
        handlers = list(logging.getLogger().handlers)
        for handler in handlers:
            handler.addFilter(self)
        try:
            yield self
        finally:
            for handler in handlers:
                handler.removeFilter(self)
