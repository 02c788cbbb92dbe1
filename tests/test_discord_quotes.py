"""The recent-forwards memory: a comment sent with a forward, and nothing else, takes the forward."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from types import SimpleNamespace
from typing import Any

from adapters.discord_quotes import FORWARD_COMMENT_SECONDS, RecentForwards
from bot.messages import QuotedMessage


def _message(message_id: int, author: int, channel: int, at: datetime) -> Any:
    """What RecentForwards reads of a discord.Message."""
    return SimpleNamespace(
        id=message_id,
        author=SimpleNamespace(id=author),
        channel=SimpleNamespace(id=channel),
        created_at=at,
    )


FORWARDED = (QuotedMessage(kind="forward", text="forwarded"),)
START = datetime(2026, 1, 1, tzinfo=UTC)


def test_a_comment_within_the_window_takes_the_forward_once() -> None:
    forwards = RecentForwards()
    assert forwards.see(_message(1, 7, 100, START), FORWARDED) == ()
    comment = _message(2, 7, 100, START + timedelta(seconds=FORWARD_COMMENT_SECONDS))
    assert forwards.see(comment, ()) == FORWARDED
    assert forwards.see(_message(3, 7, 100, START), ()) == ()


def test_a_late_comment_or_a_message_in_between_does_not_take_it() -> None:
    forwards = RecentForwards()
    forwards.see(_message(1, 7, 100, START), FORWARDED)
    late = START + timedelta(seconds=FORWARD_COMMENT_SECONDS + 1)
    assert forwards.see(_message(2, 7, 100, late), ()) == ()

    forwards.see(_message(3, 7, 100, START), FORWARDED)
    forwards.see(_message(4, 8, 100, START), ())  # someone else spoke in between
    assert forwards.see(_message(5, 7, 100, START), ()) == ()


def test_the_memory_keeps_only_the_newest_channels() -> None:
    forwards = RecentForwards(capacity=2)
    for channel in (100, 101, 102):
        forwards.see(_message(channel, 7, channel, START), FORWARDED)
    assert forwards.see(_message(200, 7, 100, START), ()) == ()
    assert forwards.see(_message(201, 7, 102, START), ()) == FORWARDED
