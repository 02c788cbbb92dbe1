"""Operator commands on stored data: `glimpse usage` (spend tables) and `glimpse forget`."""

from __future__ import annotations

import datetime as dt
import sys
from collections.abc import Sequence

from bot.ledger import Dimension, UsageRow, add_rows, open_ledger, utc_day
from bot.messages import ConversationKey
from bot.store import StoreError, open_store

__all__ = ["forget_conversation", "forget_user", "format_usage", "show_usage"]

EVERY_TURN = 1_000_000  # "load everything" when counting a conversation's turns before forgetting
_GOOD_HEADER = "rated good"
_HEADERS = ("answers", "summaries", "prompt tokens", "completion tokens", "images", "cost (USD)")


async def show_usage(store_url: str, *, days: int, by: Dimension) -> int:
    """Print spend and tokens of the last `days` UTC days (today included), grouped `by`."""
    last = utc_day()
    first = (dt.date.fromisoformat(last) - dt.timedelta(days=days - 1)).isoformat()
    ledger = open_ledger(store_url)
    try:
        await ledger.open()
        rows = await ledger.usage(first, last, by)
    except StoreError as exc:
        return _failed(exc)
    finally:
        await ledger.close()
    print(f"Usage from {first} to {last} (UTC), by {by}:")
    print(format_usage(rows, by) if rows else "No model calls recorded in this period.")
    return 0


def format_usage(rows: Sequence[UsageRow], by: str) -> str:
    """An aligned table: one line per group, then the total; by model, the share of good ratings."""
    total = UsageRow("total", 0, 0, 0, 0.0, 0)
    for row in rows:
        total = add_rows(total, row)
    rated = by == "model"
    headers = (*_HEADERS, _GOOD_HEADER) if rated else _HEADERS
    lines = [(by, *headers)] + [_cells(row, rated=rated) for row in [*rows, total]]
    widths = [max(len(line[i]) for line in lines) for i in range(len(lines[0]))]
    rendered = [
        "  ".join(
            [line[0].ljust(widths[0])]
            + [c.rjust(w) for c, w in zip(line[1:], widths[1:], strict=True)]
        )
        for line in lines
    ]
    rule = "-" * len(rendered[0])
    return "\n".join([rendered[0], rule, *rendered[1:-1], rule, rendered[-1]])


async def forget_user(store_url: str, user: str) -> int:
    """Delete the user's stored turns and anonymise their ledger entries; print both counts."""
    store, ledger = open_store(store_url), open_ledger(store_url)
    try:
        await store.open()
        turns = await store.forget_user(user)
        await ledger.open()
        answers = await ledger.forget_user(user)
    except StoreError as exc:
        return _failed(exc)
    finally:
        await store.close()
        await ledger.close()
    print(f"Deleted {turns} stored messages written by {user} (on every platform).")
    print(
        f"Anonymised {answers} answers to {user} in the usage ledger "
        "(their cost still counts in channel and workspace totals)."
    )
    return 0


async def forget_conversation(store_url: str, key_text: str) -> int:
    """Delete every stored turn of one conversation; print how many."""
    try:
        key = ConversationKey.parse(key_text)
    except ValueError as exc:
        print(f"glimpse: {exc}", file=sys.stderr)
        return 2
    store = open_store(store_url)
    try:
        await store.open()
        turns = len(await store.load(key, EVERY_TURN))
        await store.reset(key)
    except StoreError as exc:
        return _failed(exc)
    finally:
        await store.close()
    print(f"Deleted {turns} stored messages of conversation {key}.")
    return 0


def _cells(row: UsageRow, *, rated: bool = False) -> tuple[str, ...]:
    cells = (
        row.group,
        f"{row.answers:,}",
        f"{row.summaries:,}",
        f"{row.prompt_tokens:,}",
        f"{row.completion_tokens:,}",
        f"{row.images:,}",
        f"${row.cost:,.6f}",
    )
    return (*cells, _good_share(row)) if rated else cells


def _good_share(row: UsageRow) -> str:
    """ "83% of 12": good ratings among the ratings of the group's answers; "-" when none."""
    share = row.good_share
    return "-" if share is None else f"{share:.0%} of {row.good + row.bad:,}"


def _failed(exc: StoreError) -> int:
    print(f"glimpse: {exc}", file=sys.stderr)
    return 1
