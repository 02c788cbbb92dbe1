"""The core's catch-up: which conversations it reads, what it answers, notices and survives."""

from __future__ import annotations

import time
from collections.abc import Sequence
from dataclasses import dataclass, field

from bot.config import CatchUpSettings
from bot.inbox import OFFLINE_NOTICE, CatchUp, CatchUpReport, InboxEntry, InboxThread, Missed, State
from bot.messages import ConversationKey
from bot.store.base import StoreError
from bot.store.memory import MemoryStore

NOW = time.time()


def key(name: str, platform: str = "chat") -> ConversationKey:
    return ConversationKey(platform, "w", name, name)


async def seen(
    store: MemoryStore, conversation: ConversationKey, message_id: str, ago: float
) -> None:
    """A message of the conversation claimed `ago` seconds ago."""
    entry = InboxEntry(
        event_id=f"{conversation.platform}:w:{message_id}",
        key=conversation,
        message_id=message_id,
        state=State.ANSWERED,
        message="",
        instance="test",
        claimed_at=NOW - ago,
        updated_at=NOW - ago,
    )
    assert await store.inbox_record(entry)


@dataclass
class ScriptedBacklog:
    """Each conversation's missed messages as (id, age in seconds); what was answered and noticed."""

    missed_by: dict[str, list[tuple[str, float]]]
    broken: set[str] = field(default_factory=set)
    read: list[tuple[str, str]] = field(default_factory=list)  # (conversation, after id)
    answered: list[str] = field(default_factory=list)
    noticed: list[tuple[str, str]] = field(default_factory=list)

    async def missed(
        self, thread: InboxThread, limit: int, *, sent_after: float | None = None
    ) -> Sequence[Missed[str]]:
        self.read.append((thread.key.channel, thread.newest_message_id))
        if thread.key.channel in self.broken:
            raise RuntimeError("the platform failed")
        found = self.missed_by.get(thread.key.channel, [])
        return [Missed(i, i, NOW - age) for i, age in found][:limit]

    async def answer(self, item: str) -> None:
        self.answered.append(item)

    async def notice(self, item: str, text: str) -> None:
        self.noticed.append((item, text))


async def test_recent_conversations_are_read_newest_first_within_the_bounds() -> None:
    store = MemoryStore()
    await store.open()
    await seen(store, key("a"), "a1", ago=3 * 3600)
    await seen(store, key("a"), "a2", ago=2 * 3600)  # a's newest
    await seen(store, key("b"), "b1", ago=600)
    await seen(store, key("c"), "c1", ago=60)
    await seen(store, key("too-long-ago"), "x1", ago=30 * 3600)
    await seen(store, key("elsewhere", platform="other"), "e1", ago=60)
    backlog = ScriptedBacklog({})
    settings = CatchUpSettings(within_hours=24, max_threads=2)

    report = await CatchUp(store, settings).run("chat", backlog)

    assert sorted(backlog.read) == [("b", "b1"), ("c", "c1")]  # the two most recent
    assert report == CatchUpReport(checked=2)


async def test_young_ones_are_answered_in_order_old_ones_noticed_once_and_a_failure_is_contained() -> (
    None
):
    store = MemoryStore()
    await store.open()
    for name in ("a", "b", "broken"):
        await seen(store, key(name), f"{name}0", ago=3600)
    backlog = ScriptedBacklog(
        {
            "a": [("a1", 40 * 60), ("a2", 20 * 60), ("a3", 60), ("a4", 5)],
            "b": [("b1", 30)],
        },
        broken={"broken"},
    )
    catch_up = CatchUp(store, CatchUpSettings())

    report = await catch_up.run("chat", backlog)

    assert report == CatchUpReport(checked=2, answered=3, too_old=2, noticed=1, failed=1)
    assert [m for m in backlog.answered if m.startswith("a")] == ["a3", "a4"]
    assert backlog.noticed == [("a2", OFFLINE_NOTICE)]  # under the newest old one
    # The old ones are claimed as dedup claims them: never answered later, never noticed again.
    assert not await store.claim("chat:w:a1", 60)
    again = await catch_up.run("chat", backlog)
    assert (again.too_old, again.noticed) == (0, 0)


async def test_with_the_notice_off_old_ones_get_nothing_and_off_nothing_is_read() -> None:
    store = MemoryStore()
    await store.open()
    await seen(store, key("a"), "a0", ago=3600)
    backlog = ScriptedBacklog({"a": [("a1", 40 * 60)]})

    quiet = await CatchUp(store, CatchUpSettings(offline_notice=False)).run("chat", backlog)
    off = await CatchUp(store, CatchUpSettings(enabled=False)).run("chat", backlog)

    assert quiet == CatchUpReport(checked=1, too_old=1) and backlog.noticed == []
    assert off == CatchUpReport() and len(backlog.read) == 1


async def test_a_store_that_cannot_be_read_ends_the_catch_up_quietly() -> None:
    store = MemoryStore()  # never opened: every call raises StoreError
    report = await CatchUp(store, CatchUpSettings()).run("chat", ScriptedBacklog({}))
    assert report == CatchUpReport()
    try:
        await store.inbox_threads(since=0, limit=1)
    except StoreError:
        pass
    else:
        raise AssertionError("a closed memory store answered")
