"""The behaviour every memory store backend must show; a backend's test module subclasses StoreContract."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from dataclasses import replace

import pytest

from bot.inbox import InboxEntry, InboxThread, State, event_id_of
from bot.messages import ConversationKey
from bot.store import Store, StoreError
from bot.turns import PreparedImage, Summary, Turn, Usage

KEY = ConversationKey("discord", "guild-1", "channel-1", "thread-1")
OTHER = ConversationKey("slack", "T1", "C1", "1718000000.000100")

# Every byte value, so no backend can get away with treating the image as text.
IMAGE_BYTES = bytes(range(256)) * 4 + b"\x00\xff\x00"
UNICODE_TEXT = "Что на фото? 🐱‍👤👍🏽 — مرحبا بالعالم שלום 漢字 e\u0301 tab\tnewline\nnul\x00end"


def turn(
    text: str = "hello",
    *,
    role: str = "user",
    created_at: float = 1_718_000_000.0,
    author_id: str = "U1",
    message_id: str = "",
    tokens: int = 5,
) -> Turn:
    return Turn(
        role=role,  # type: ignore[arg-type]
        text=text,
        tokens=tokens,
        created_at=created_at,
        author_id=author_id,
        message_id=message_id,
    )


def numbered(count: int, *, start: int = 0) -> list[Turn]:
    return [
        turn(
            f"turn {i}", role="user" if i % 2 == 0 else "assistant", created_at=1_718_000_000.0 + i
        )
        for i in range(start, start + count)
    ]


def texts(turns: list[Turn]) -> list[str]:
    return [t.text for t in turns]


def summary(text: str = "They talked about cats.", *, through: float = 1_718_000_010.0) -> Summary:
    return Summary(text=text, tokens=6, through=through, updated_at=1_718_000_020.0)


def entry(
    message_id: str = "m1",
    *,
    key: ConversationKey = KEY,
    claimed_at: float = 1_718_000_000.0,
    updated_at: float | None = None,
    state: State = State.CLAIMED,
    instance: str = "host-a:1",
) -> InboxEntry:
    return InboxEntry(
        event_id=event_id_of(key.platform, key.workspace, message_id),
        key=key,
        message_id=message_id,
        state=state,
        message='{"text":"what is this?"}',
        instance=instance,
        claimed_at=claimed_at,
        updated_at=claimed_at if updated_at is None else updated_at,
    )


class StoreContract:
    """Subclass with a `store` fixture yielding an opened backend; it is closed by the fixture."""

    @pytest.fixture
    async def store(self) -> AsyncIterator[Store]:
        raise NotImplementedError("a backend's test class provides the `store` fixture")
        yield  # pragma: no cover

    # --- append and load ---

    async def test_unknown_conversation_is_empty(self, store: Store) -> None:
        assert await store.load(KEY, 10) == []

    async def test_load_returns_turns_oldest_first(self, store: Store) -> None:
        await store.append(KEY, numbered(2))
        await store.append(KEY, numbered(3, start=2))
        assert texts(await store.load(KEY, 10)) == [f"turn {i}" for i in range(5)]

    async def test_load_limit_keeps_the_newest(self, store: Store) -> None:
        await store.append(KEY, numbered(10))
        assert texts(await store.load(KEY, 3)) == ["turn 7", "turn 8", "turn 9"]
        assert texts(await store.load(KEY, 1)) == ["turn 9"]
        assert len(await store.load(KEY, 100)) == 10

    async def test_load_limit_zero_or_less_is_empty(self, store: Store) -> None:
        await store.append(KEY, numbered(4))
        assert await store.load(KEY, 0) == []
        assert await store.load(KEY, -1) == []

    async def test_append_nothing_is_a_no_op(self, store: Store) -> None:
        await store.append(KEY, [])
        assert await store.load(KEY, 10) == []

    async def test_every_turn_field_round_trips(self, store: Store) -> None:
        image = PreparedImage(IMAGE_BYTES, "image/png", 1120, 747, "grid of 1: ☕.png, 2: b.jpg")
        usage = Usage("meta-llama/llama-3.2-90b-vision-instruct", 1234, 56, 0.001079123456789)
        stored = [
            Turn("user", UNICODE_TEXT, 42, 1_718_000_000.123456, "U-αβ", "m:1", image=image),
            Turn("assistant", "", 0, 1_718_000_001.5, "", "m:2", usage=usage),
            Turn("user", "plain", 7, 1_718_000_002.0),
            Turn("assistant", "zero usage", 3, 1_718_000_003.0, usage=Usage("m")),
        ]
        await store.append(KEY, stored)
        loaded = await store.load(KEY, 10)
        assert loaded == stored
        assert loaded[0].image is not None and loaded[0].image.data == IMAGE_BYTES
        assert isinstance(loaded[1].usage.cost, float)  # type: ignore[union-attr]
        assert type(loaded[2].tokens) is int and type(loaded[2].created_at) is float

    async def test_speaker_and_image_caption_round_trip(self, store: Store) -> None:
        captioned = PreparedImage(IMAGE_BYTES, "image/jpeg", 640, 480, "cat.jpg", "A grey cat 🐱.")
        uncaptioned = PreparedImage(b"\xff\xd8", "image/jpeg", 1, 1, "dot.jpg")
        first, third = turn("what is it?", author_id="U1"), turn("and this?", author_id="U2")
        stored = [
            replace(first, image=captioned, speaker="Zoë 🌸"),
            turn("A cat.", role="assistant", author_id=""),
            replace(third, image=uncaptioned, speaker="李 O'Brien\t«ℤ»"),
            turn("no name", author_id="U3"),
        ]
        await store.append(KEY, stored)
        loaded = await store.load(KEY, 10)
        assert loaded == stored
        assert [t.speaker for t in loaded] == ["Zoë 🌸", "", "李 O'Brien\t«ℤ»", ""]
        assert [t.image.caption if t.image else None for t in loaded] == [
            "A grey cat 🐱.",
            None,
            "",
            None,
        ]

    @pytest.mark.parametrize(
        "bad",
        [
            replace(turn(), speaker=None),  # type: ignore[arg-type]
            replace(turn(), image=PreparedImage(b"", "image/png", 1, 1, "a", None)),  # type: ignore[arg-type]
        ],
        ids=["speaker", "caption"],
    )
    async def test_a_turn_with_a_non_str_speaker_or_caption_is_refused(
        self, store: Store, bad: Turn
    ) -> None:
        with pytest.raises(ValueError):
            await store.append(KEY, [bad])
        assert await store.load(KEY, 10) == []

    # --- summaries ---

    async def test_a_new_conversation_has_no_summary(self, store: Store) -> None:
        assert await store.load_summary(KEY) is None
        await store.append(KEY, numbered(2))
        assert await store.load_summary(KEY) is None

    async def test_a_saved_summary_loads_back(self, store: Store) -> None:
        first = Summary(UNICODE_TEXT, 42, 1_718_000_010.123456, 1_718_000_020.654321)
        assert await store.save_summary(KEY, first, replacing=None) is True
        loaded = await store.load_summary(KEY)
        assert loaded == first
        assert loaded is not None and type(loaded.tokens) is int
        assert type(loaded.through) is float and type(loaded.updated_at) is float
        assert await store.load_summary(OTHER) is None

    async def test_a_summary_replaces_only_the_one_it_was_based_on(self, store: Store) -> None:
        first, second = summary("first", through=10.0), summary("second", through=20.0)
        assert await store.save_summary(KEY, first, replacing=None) is True
        assert await store.save_summary(KEY, summary("again"), replacing=None) is False
        assert await store.save_summary(KEY, summary("stale"), replacing=9.0) is False
        assert await store.load_summary(KEY) == first
        assert await store.save_summary(KEY, second, replacing=10.0) is True
        assert await store.save_summary(KEY, summary("old base"), replacing=10.0) is False
        assert await store.load_summary(KEY) == second

    async def test_replacing_a_summary_that_is_not_there_stores_nothing(self, store: Store) -> None:
        assert await store.save_summary(KEY, summary(), replacing=1_718_000_005.0) is False
        assert await store.load_summary(KEY) is None

    async def test_concurrent_first_summaries_have_one_winner(self, store: Store) -> None:
        candidates = [summary(f"fold {i}") for i in range(2)]
        results = await asyncio.gather(
            *(store.save_summary(KEY, s, replacing=None) for s in candidates)
        )
        assert sorted(results) == [False, True]
        assert await store.load_summary(KEY) == candidates[results.index(True)]

    async def test_concurrent_folds_of_one_summary_have_one_winner(self, store: Store) -> None:
        await store.save_summary(KEY, summary("base", through=10.0), replacing=None)
        candidates = [summary(f"fold {i}", through=20.0 + i) for i in range(10)]
        results = await asyncio.gather(
            *(store.save_summary(KEY, s, replacing=10.0) for s in candidates)
        )
        assert results.count(True) == 1
        assert await store.load_summary(KEY) == candidates[results.index(True)]

    @pytest.mark.parametrize(
        "bad",
        [
            Summary("x", -1, 1.0, 1.0),
            Summary("x", 1, float("nan"), 1.0),
            Summary("x", 1, 1.0, float("inf")),
            Summary(None, 1, 1.0, 1.0),  # type: ignore[arg-type]
        ],
        ids=["negative-tokens", "nan-through", "inf-updated-at", "no-text"],
    )
    async def test_an_invalid_summary_is_refused(self, store: Store, bad: Summary) -> None:
        with pytest.raises(ValueError):
            await store.save_summary(KEY, bad, replacing=None)
        assert await store.load_summary(KEY) is None

    async def test_reset_forgets_the_summary_too(self, store: Store) -> None:
        await store.append(KEY, numbered(2))
        await store.save_summary(KEY, summary("mine"), replacing=None)
        await store.save_summary(OTHER, summary("theirs"), replacing=None)
        await store.reset(KEY)
        assert await store.load_summary(KEY) is None
        assert await store.load_summary(OTHER) == summary("theirs")
        assert await store.save_summary(KEY, summary("fresh"), replacing=None) is True

    async def test_prune_removes_summaries_updated_before_the_cutoff(self, store: Store) -> None:
        stale = Summary("stale", 1, 10.0, updated_at=1999.0)
        edge = Summary("edge", 1, 10.0, updated_at=2000.0)
        third = ConversationKey("discord", "guild-1", "channel-1", "thread-3")
        await store.save_summary(KEY, stale, replacing=None)
        await store.save_summary(OTHER, edge, replacing=None)
        await store.save_summary(third, summary("fresh"), replacing=None)
        assert await store.prune(2000) == 0  # it counts turns
        assert await store.load_summary(KEY) is None
        assert await store.load_summary(OTHER) == edge
        assert await store.load_summary(third) == summary("fresh")

    async def test_forget_user_removes_the_summaries_of_their_conversations(
        self, store: Store
    ) -> None:
        third = ConversationKey("discord", "guild-1", "channel-1", "thread-3")
        await store.append(
            KEY, [turn("a", author_id="U1"), turn("b", role="assistant", author_id="")]
        )
        await store.append(OTHER, [turn("c", author_id="U2")])
        await store.append(third, [turn("d", author_id="U2"), turn("e", author_id="U1")])
        for key in (KEY, OTHER, third):
            await store.save_summary(key, summary(f"about {key.thread}"), replacing=None)
        assert await store.forget_user("U1") == 2
        assert await store.load_summary(KEY) is None
        assert await store.load_summary(third) is None
        assert await store.load_summary(OTHER) == summary(f"about {OTHER.thread}")
        assert texts(await store.load(third, 10)) == ["d"]

    async def test_summaries_survive_closing_and_opening_the_store(self, store: Store) -> None:
        await store.append(KEY, [turn("kept")])
        await store.save_summary(KEY, summary(), replacing=None)
        await store.close()
        await store.open()
        assert await store.load_summary(KEY) == summary()
        later = summary("later", through=1_718_000_030.0)
        assert await store.save_summary(KEY, later, replacing=summary().through) is True
        assert texts(await store.load(KEY, 10)) == ["kept"]

    # --- isolation ---

    @pytest.mark.parametrize(
        "other",
        [
            ConversationKey("slack", "guild-1", "channel-1", "thread-1"),
            ConversationKey("discord", "guild-2", "channel-1", "thread-1"),
            ConversationKey("discord", "guild-1", "channel-2", "thread-1"),
            ConversationKey("discord", "guild-1", "channel-1", "thread-2"),
            ConversationKey("discord", "guild-1", "channel-1", ""),
        ],
        ids=["platform", "workspace", "channel", "thread", "empty-thread"],
    )
    async def test_keys_differing_in_one_part_are_separate(
        self, store: Store, other: ConversationKey
    ) -> None:
        await store.append(KEY, [turn("mine")])
        await store.append(other, [turn("theirs")])
        assert texts(await store.load(KEY, 10)) == ["mine"]
        assert texts(await store.load(other, 10)) == ["theirs"]

    async def test_keys_with_colons_do_not_collide(self, store: Store) -> None:
        # All three print as "a:b:c:d:e"; a backend joining the parts with ':' would mix them up.
        keys = [
            ConversationKey("a:b", "c", "d", "e"),
            ConversationKey("a", "b:c", "d", "e"),
            ConversationKey("a", "b", "c", "d:e"),
        ]
        for i, key in enumerate(keys):
            await store.append(key, [turn(f"key {i}")])
        for i, key in enumerate(keys):
            assert texts(await store.load(key, 10)) == [f"key {i}"]

    async def test_reset_forgets_only_that_conversation(self, store: Store) -> None:
        await store.append(KEY, numbered(3))
        await store.append(OTHER, numbered(2))
        await store.reset(KEY)
        assert await store.load(KEY, 10) == []
        assert texts(await store.load(OTHER, 10)) == ["turn 0", "turn 1"]
        await store.append(KEY, [turn("fresh start")])
        assert texts(await store.load(KEY, 10)) == ["fresh start"]

    async def test_reset_of_unknown_conversation_is_harmless(self, store: Store) -> None:
        await store.reset(KEY)
        assert await store.load(KEY, 10) == []

    # --- claims ---

    async def test_claim_is_true_once(self, store: Store) -> None:
        assert await store.claim("slack:Ev1", 60) is True
        assert await store.claim("slack:Ev1", 60) is False
        assert await store.claim("slack:Ev1", 60) is False
        assert await store.claim("slack:Ev2", 60) is True

    async def test_claim_can_be_taken_again_after_its_ttl(self, store: Store) -> None:
        assert await store.claim("ev", 0.2) is True
        assert await store.claim("ev", 0.2) is False
        await asyncio.sleep(0.25)
        assert await store.claim("ev", 60) is True
        assert await store.claim("ev", 60) is False

    async def test_concurrent_claims_of_one_id_have_one_winner(self, store: Store) -> None:
        results = await asyncio.gather(*(store.claim("discord:123", 60) for _ in range(50)))
        assert results.count(True) == 1
        assert results.count(False) == 49

    # --- prune and forget ---

    async def test_prune_removes_only_turns_older_than_the_cutoff(self, store: Store) -> None:
        await store.append(KEY, [turn("old", created_at=1000), turn("edge", created_at=2000)])
        await store.append(OTHER, [turn("older", created_at=500), turn("new", created_at=3000)])
        assert await store.prune(2000) == 2
        assert texts(await store.load(KEY, 10)) == ["edge"]
        assert texts(await store.load(OTHER, 10)) == ["new"]
        assert await store.prune(2000) == 0

    async def test_prune_keeps_live_claims(self, store: Store) -> None:
        assert await store.claim("ev", 60) is True
        await store.prune(1e12)
        assert await store.claim("ev", 60) is False

    async def test_forget_user_deletes_their_turns_everywhere(self, store: Store) -> None:
        await store.append(
            KEY, [turn("a", author_id="U1"), turn("b", role="assistant", author_id="")]
        )
        await store.append(OTHER, [turn("c", author_id="U2"), turn("d", author_id="U1")])
        assert await store.forget_user("U1") == 2
        assert texts(await store.load(KEY, 10)) == ["b"]
        assert texts(await store.load(OTHER, 10)) == ["c"]
        assert await store.forget_user("U1") == 0

    async def test_forget_user_refuses_an_empty_id(self, store: Store) -> None:
        await store.append(KEY, [turn("bot", role="assistant", author_id="")])
        with pytest.raises(ValueError):
            await store.forget_user("")
        assert texts(await store.load(KEY, 10)) == ["bot"]

    # --- atomicity and concurrency ---

    async def test_append_with_an_invalid_turn_stores_nothing(self, store: Store) -> None:
        await store.append(KEY, [turn("before")])
        with pytest.raises(ValueError):
            await store.append(KEY, [turn("first of the pair"), turn("bad role", role="system")])
        assert texts(await store.load(KEY, 10)) == ["before"]

    async def test_concurrent_appends_are_all_stored_unmixed(self, store: Store) -> None:
        async def exchange(i: int) -> None:
            await store.append(KEY, [turn(f"q{i}"), turn(f"a{i}", role="assistant")])

        await asyncio.gather(*(exchange(i) for i in range(100)))
        stored = texts(await store.load(KEY, 1000))
        assert len(stored) == 200
        pairs = list(zip(stored[::2], stored[1::2], strict=True))
        assert all(q[1:] == a[1:] and q[0] == "q" and a[0] == "a" for q, a in pairs)
        assert sorted(q for q, _ in pairs) == sorted(f"q{i}" for i in range(100))

    async def test_concurrent_loads_and_appends_never_see_half_an_exchange(
        self, store: Store
    ) -> None:
        async def exchange(i: int) -> None:
            await store.append(KEY, [turn(f"q{i}"), turn(f"a{i}", role="assistant")])

        async def reader() -> list[int]:
            return [len(await store.load(KEY, 1000)) for _ in range(20)]

        reading = asyncio.create_task(reader())
        await asyncio.gather(*(exchange(i) for i in range(30)))
        counts = await reading
        assert all(count % 2 == 0 for count in counts)

    # --- channel models ---

    async def test_a_channel_without_a_model_has_none(self, store: Store) -> None:
        assert await store.get_channel_model("discord", "guild-1", "channel-1") is None
        assert await store.channel_models() == {}

    async def test_a_channel_model_is_set_replaced_and_cleared(self, store: Store) -> None:
        await store.set_channel_model("discord", "guild-1", "channel-1", "acme/vision-1")
        assert await store.get_channel_model("discord", "guild-1", "channel-1") == "acme/vision-1"
        await store.set_channel_model("discord", "guild-1", "channel-1", "acme/vision-2:nitro")
        assert await store.get_channel_model("discord", "guild-1", "channel-1") == (
            "acme/vision-2:nitro"
        )
        await store.set_channel_model("discord", "guild-1", "channel-1", None)
        assert await store.get_channel_model("discord", "guild-1", "channel-1") is None
        await store.set_channel_model("discord", "guild-1", "channel-1", None)  # harmless twice

    @pytest.mark.parametrize(
        "other",
        [("slack", "guild-1", "channel-1"), ("discord", "guild-2", "channel-1")]
        + [("discord", "guild-1", "channel-2"), ("discord:guild-1", "channel-1", "")],
        ids=["platform", "workspace", "channel", "colons"],
    )
    async def test_channel_models_are_kept_per_platform_workspace_and_channel(
        self, store: Store, other: tuple[str, str, str]
    ) -> None:
        await store.set_channel_model("discord", "guild-1", "channel-1", "acme/mine")
        await store.set_channel_model(*other, "acme/theirs")
        assert await store.get_channel_model("discord", "guild-1", "channel-1") == "acme/mine"
        assert await store.get_channel_model(*other) == "acme/theirs"
        assert await store.channel_models() == {
            ("discord", "guild-1", "channel-1"): "acme/mine",
            other: "acme/theirs",
        }
        await store.set_channel_model(*other, None)
        assert await store.get_channel_model("discord", "guild-1", "channel-1") == "acme/mine"
        assert await store.channel_models() == {("discord", "guild-1", "channel-1"): "acme/mine"}

    @pytest.mark.parametrize("bad", ["", "  ", "acme/\nmodel", "a\ud800b", "x" * 201])
    async def test_a_bad_model_id_is_refused(self, store: Store, bad: str) -> None:
        with pytest.raises(ValueError):
            await store.set_channel_model("discord", "guild-1", "channel-1", bad)
        assert await store.get_channel_model("discord", "guild-1", "channel-1") is None

    async def test_channel_models_outlive_reset_prune_and_forget(self, store: Store) -> None:
        await store.set_channel_model("discord", "guild-1", "channel-1", "acme/kept")
        await store.append(KEY, [turn("hi", author_id="U1", created_at=1.0)])
        await store.reset(KEY)
        await store.prune(1e12)
        await store.forget_user("U1")
        await store.close()
        await store.open()
        assert await store.get_channel_model("discord", "guild-1", "channel-1") == "acme/kept"

    # --- the inbox ---

    async def test_an_unknown_event_has_no_inbox_entry(self, store: Store) -> None:
        assert await store.inbox_get(event_id_of("discord", "guild-1", "nope")) is None

    async def test_an_inbox_entry_round_trips(self, store: Store) -> None:
        kept = replace(
            entry("m:1/ü", key=ConversationKey("slack", "T:1", "C 1", "17.5")),
            message=UNICODE_TEXT,
            reply_id="1718000000.000200",
            attempts=2,
            claimed_at=1_718_000_000.125,
            updated_at=1_718_000_001.5,
            state=State.ANSWERING,
        )
        assert await store.inbox_record(kept)
        assert await store.inbox_get(kept.event_id) == kept

    async def test_a_message_is_recorded_once(self, store: Store) -> None:
        first = entry(instance="first")
        assert await store.inbox_record(first)
        assert not await store.inbox_record(replace(first, instance="second"))
        assert await store.inbox_get(first.event_id) == first

    async def test_the_owner_moves_an_entry_from_claimed_to_answered(self, store: Store) -> None:
        kept = entry()
        await store.inbox_record(kept)
        owner = kept.instance
        assert await store.inbox_update(
            kept.event_id, instance=owner, state=State.ANSWERING, reply_id="r1"
        )
        answering = await store.inbox_get(kept.event_id)
        assert answering is not None
        assert (answering.state, answering.reply_id) == (State.ANSWERING, "r1")
        assert answering.updated_at > kept.updated_at
        assert await store.inbox_update(kept.event_id, instance=owner, state=State.ANSWERED)
        done = await store.inbox_get(kept.event_id)
        assert done is not None and (done.state, done.reply_id) == (State.ANSWERED, "r1")
        # A finished entry stays finished.
        assert not await store.inbox_update(kept.event_id, instance=owner, state=State.FAILED)
        assert not await store.inbox_update("slack:T1:unknown", instance=owner, state=State.FAILED)

    async def test_another_instance_cannot_update_an_entry(self, store: Store) -> None:
        kept = entry(instance="a")
        await store.inbox_record(kept)
        assert not await store.inbox_update(kept.event_id, instance="b", state=State.ANSWERED)
        assert await store.inbox_get(kept.event_id) == kept

    async def test_a_take_over_has_one_winner_and_counts_the_attempt(self, store: Store) -> None:
        kept = replace(entry(instance="dead"), state=State.ANSWERING, reply_id="r1")
        await store.inbox_record(kept)
        won = await asyncio.gather(
            *(store.inbox_take(kept.event_id, attempts=1, instance=f"i{n}") for n in range(8))
        )
        assert sorted(won) == [False] * 7 + [True]
        taken = await store.inbox_get(kept.event_id)
        assert taken is not None
        assert (taken.state, taken.attempts, taken.reply_id) == (State.CLAIMED, 2, "r1")
        assert taken.instance == f"i{won.index(True)}"
        assert not await store.inbox_take(kept.event_id, attempts=1, instance="late")
        assert not await store.inbox_update(kept.event_id, instance="dead", state=State.ANSWERED)
        assert await store.inbox_update(kept.event_id, instance=taken.instance, state=State.FAILED)
        assert not await store.inbox_take(kept.event_id, attempts=2, instance="after")

    async def test_unfinished_lists_open_entries_in_the_window_oldest_claim_first(
        self, store: Store
    ) -> None:
        t = 1_718_000_000.0
        await store.inbox_record(entry("too-old", claimed_at=t - 100))
        await store.inbox_record(entry("late", claimed_at=t + 20, updated_at=t + 40))
        await store.inbox_record(entry("second", claimed_at=t + 10, updated_at=t + 11))
        await store.inbox_record(entry("first", claimed_at=t + 1, updated_at=t + 12))
        await store.inbox_record(entry("fresh", claimed_at=t + 30, updated_at=t + 60))
        await store.inbox_record(entry("done", claimed_at=t + 2, state=State.ANSWERED))
        await store.inbox_record(entry("gave-up", claimed_at=t + 3, state=State.FAILED))
        found = await store.inbox_unfinished(updated_before=t + 50, claimed_after=t, limit=10)
        assert [e.message_id for e in found] == ["first", "second", "late"]
        first_two = await store.inbox_unfinished(updated_before=t + 50, claimed_after=t, limit=2)
        assert [e.message_id for e in first_two] == ["first", "second"]
        finished = await store.inbox_get(event_id_of("discord", "guild-1", "second"))
        assert finished is not None
        await store.inbox_update(
            finished.event_id, instance=finished.instance, state=State.ANSWERED
        )
        found = await store.inbox_unfinished(updated_before=t + 50, claimed_after=t, limit=10)
        assert [e.message_id for e in found] == ["first", "late"]

    async def test_recent_threads_come_newest_first_with_their_newest_message(
        self, store: Store
    ) -> None:
        t = 1_718_000_000.0
        dm = ConversationKey("discord", "@me", "dm-1", "dm-1")
        await store.inbox_record(entry("k1", key=KEY, claimed_at=t + 1))
        await store.inbox_record(entry("o1", key=OTHER, claimed_at=t + 2))
        await store.inbox_record(entry("k2", key=KEY, claimed_at=t + 3, state=State.ANSWERED))
        await store.inbox_record(entry("d1", key=dm, claimed_at=t + 4))
        await store.inbox_record(entry("gone", key=dm, claimed_at=t - 50))
        assert await store.inbox_threads(since=t, limit=10) == [
            InboxThread(dm, "d1", t + 4),
            InboxThread(KEY, "k2", t + 3),
            InboxThread(OTHER, "o1", t + 2),
        ]
        assert await store.inbox_threads(since=t, limit=10, platform="discord") == [
            InboxThread(dm, "d1", t + 4),
            InboxThread(KEY, "k2", t + 3),
        ]
        assert await store.inbox_threads(since=t, limit=1) == [InboxThread(dm, "d1", t + 4)]
        assert await store.inbox_threads(since=t + 3.5, limit=10) == [InboxThread(dm, "d1", t + 4)]
        assert await store.inbox_threads(since=t, limit=0) == []

    async def test_inbox_prune_bounds_age_and_count(self, store: Store) -> None:
        t = 1_718_000_000.0
        for n in range(6):
            await store.inbox_record(entry(f"m{n}", claimed_at=t + n, state=State.ANSWERED))
        assert await store.inbox_prune(older_than=t + 1, keep=3) == 3  # m0 by age, m1 m2 by count
        kept = [await store.inbox_get(event_id_of("discord", "guild-1", f"m{n}")) for n in range(6)]
        assert [e is not None for e in kept] == [False, False, False, True, True, True]
        assert await store.inbox_unfinished(updated_before=t + 10, claimed_after=0, limit=9) == []
        assert await store.inbox_prune(older_than=t + 100, keep=10) == 3
        assert await store.inbox_threads(since=0, limit=10) == []

    async def test_prune_removes_inbox_entries_claimed_before_the_cutoff(
        self, store: Store
    ) -> None:
        t = 1_718_000_000.0
        await store.inbox_record(entry("old", claimed_at=t - 10))
        await store.inbox_record(entry("new", claimed_at=t + 10))
        await store.prune(t)
        assert await store.inbox_get(event_id_of("discord", "guild-1", "old")) is None
        assert await store.inbox_get(event_id_of("discord", "guild-1", "new")) is not None
        found = await store.inbox_unfinished(updated_before=t + 100, claimed_after=0, limit=9)
        assert [e.message_id for e in found] == ["new"]

    async def test_an_invalid_inbox_entry_is_refused(self, store: Store) -> None:
        with pytest.raises(ValueError):
            await store.inbox_record(replace(entry(), attempts=-1))
        with pytest.raises(ValueError):
            await store.inbox_record(replace(entry(), claimed_at=float("nan")))
        with pytest.raises(ValueError):
            await store.inbox_record(replace(entry(), state="done"))  # type: ignore[arg-type]

    # --- lifecycle ---

    async def test_ping_on_an_open_store(self, store: Store) -> None:
        await store.ping()

    async def test_open_again_is_harmless(self, store: Store) -> None:
        await store.append(KEY, [turn("kept")])
        await store.open()
        assert texts(await store.load(KEY, 10)) == ["kept"]

    async def test_a_closed_store_raises_store_error(self, store: Store) -> None:
        await store.close()
        await store.close()  # closing twice is harmless
        with pytest.raises(StoreError):
            await store.ping()
        with pytest.raises(StoreError):
            await store.load(KEY, 10)
        with pytest.raises(StoreError):
            await store.append(KEY, [turn()])
        with pytest.raises(StoreError):
            await store.claim("ev", 60)
        with pytest.raises(StoreError):
            await store.load_summary(KEY)
        with pytest.raises(StoreError):
            await store.save_summary(KEY, summary(), replacing=None)
        with pytest.raises(StoreError):
            await store.get_channel_model("discord", "guild-1", "channel-1")
        with pytest.raises(StoreError):
            await store.set_channel_model("discord", "guild-1", "channel-1", "acme/model")
        with pytest.raises(StoreError):
            await store.channel_models()
        with pytest.raises(StoreError):
            await store.inbox_record(entry())
        with pytest.raises(StoreError):
            await store.inbox_get("discord:guild-1:m1")
        with pytest.raises(StoreError):
            await store.inbox_unfinished(updated_before=0, claimed_after=0, limit=1)
