"""Which of a conversation's oldest turns to fold into its summary, so the next request keeps the rest."""

from __future__ import annotations

from collections.abc import Callable, Sequence

from bot.turns import Summary, Turn

__all__ = ["FOLD_DOWN_TO", "covered", "turns_to_fold", "uncovered"]

# A fold keeps this share of the room verbatim, so the next few answers need no summary call:
# folding a little after every answer would cost a summary request per answer.
FOLD_DOWN_TO = 0.5


def covered(turn: Turn, summary: Summary | None) -> bool:
    """Whether the summary stands for this turn (created at or before what it covers)."""
    return summary is not None and turn.created_at <= summary.through


def uncovered(turns: Sequence[Turn], summary: Summary | None) -> list[Turn]:
    """The turns the summary does not cover, oldest first."""
    return [turn for turn in turns if not covered(turn, summary)]


def turns_to_fold(
    turns: Sequence[Turn], summary: Summary | None, *, room: int, cost: Callable[[Turn], int]
) -> list[Turn]:
    """Oldest uncovered turns to fold, oldest first; [] while every uncovered turn fits in `room`.

    When they do not all fit, the newest turns that fit in FOLD_DOWN_TO of the room stay
    verbatim and everything older is folded. Turns made at the same moment (a message's
    image turns and its text) are folded together, since the summary's `through` is a time.
    """
    candidates = uncovered(turns, summary)
    costs = [cost(turn) for turn in candidates]
    if sum(costs) <= room:
        return []
    target = room * FOLD_DOWN_TO
    kept, keep_from = 0, len(candidates)
    while keep_from > 0 and kept + costs[keep_from - 1] <= target:
        keep_from -= 1
        kept += costs[keep_from]
    if keep_from == 0:  # pragma: no cover - the sum above exceeds room >= target
        return []
    through = candidates[keep_from - 1].created_at
    return [turn for turn in candidates if turn.created_at <= through]
