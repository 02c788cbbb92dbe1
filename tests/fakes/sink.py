"""A ReplySink standing in for a chat platform: it keeps everything the core sent."""

from __future__ import annotations

__all__ = ["RecordingSink"]


class RecordingSink:
    """A ReplySink that keeps everything the core sent, in order."""

    def __init__(self) -> None:
        self.started = False
        self.updates: list[str] = []
        self.final: str | None = None
        self.failed: str | None = None
        self.notices: list[str] = []

    async def start(self) -> None:
        self.started = True

    async def update(self, text: str) -> None:
        self.updates.append(text)

    async def finish(self, text: str) -> None:
        self.final = text

    async def fail(self, text: str) -> None:
        self.failed = text

    async def notice(self, text: str) -> None:
        self.notices.append(text)

    @property
    def seen(self) -> list[str]:
        """Every text the user was shown: notices, then the answer or the failure."""
        end = [text for text in (self.final, self.failed) if text is not None]
        return [*self.notices, *end]
