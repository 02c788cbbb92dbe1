"""An in-process cost ledger in a list, for `memory://` stores and tests."""

from __future__ import annotations

from dataclasses import replace

from bot.ledger import (
    FORGOTTEN,
    Dimension,
    LedgerEntry,
    Payer,
    Rating,
    RatingEntry,
    Spend,
    UsageRow,
    summarise,
)
from bot.store import StoreError

__all__ = ["MemoryLedger"]


class MemoryLedger:
    """The Ledger contract in a list (lost when the process ends); raises StoreError while closed."""

    def __init__(self) -> None:
        self.entries: list[LedgerEntry] = []
        # (platform, workspace, answer, rater) -> that person's latest rating of that answer
        self.ratings: dict[tuple[str, str, str, str], RatingEntry] = {}
        self._forgotten = 0  # keeps forgotten raters' ratings apart from each other
        self._open = False

    async def open(self) -> None:
        self._open = True

    async def close(self) -> None:
        self._open = False

    async def record(self, entry: LedgerEntry) -> None:
        self._require_open()
        self.entries.append(entry)

    async def rate(self, entry: RatingEntry) -> Rating | None:
        self._require_open()
        r = entry.rater
        previous = self.ratings.get((r.platform, r.workspace, entry.answer_id, r.user))
        self.ratings[(r.platform, r.workspace, entry.answer_id, r.user)] = entry
        return previous.rating if previous is not None else None

    async def spend(self, day: str, payer: Payer) -> Spend:
        self._require_open()
        today = [entry for entry in self.entries if entry.day == day]
        return Spend(
            user=_cost(today, "user", payer),
            channel=_cost(today, "channel", payer),
            workspace=_cost(today, "workspace", payer),
        )

    async def usage(self, first_day: str, last_day: str, by: Dimension) -> list[UsageRow]:
        self._require_open()
        return summarise(
            (e for e in self.entries if first_day <= e.day <= last_day),
            by,
            (r for r in self.ratings.values() if first_day <= r.day <= last_day),
        )

    async def forget_user(self, user: str) -> int:
        self._require_open()
        if not user:
            raise ValueError("forget_user needs a user id")
        forgotten = 0
        for index, entry in enumerate(self.entries):
            if entry.payer.user == user:
                self.entries[index] = replace(entry, payer=replace(entry.payer, user=""))
                forgotten += int(entry.kind == "answer")
        for key, rating in list(self.ratings.items()):
            if rating.rater.user == user:
                del self.ratings[key]
                self._forgotten += 1
                anonymous = replace(rating, rater=replace(rating.rater, user=""))
                self.ratings[(*key[:3], f"{FORGOTTEN}#{self._forgotten}")] = anonymous
        return forgotten

    def _require_open(self) -> None:
        if not self._open:
            raise StoreError("the in-memory ledger is closed")


def _cost(entries: list[LedgerEntry], dimension: Dimension, payer: Payer) -> float:
    member = payer.member(dimension)
    return sum(entry.cost for entry in entries if entry.payer.member(dimension) == member)
