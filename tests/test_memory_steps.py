"""The memory package's pure steps with exact numbers: names, captions, what to fold, the summary request,
and the context builder's summary, speakers and captions."""

from __future__ import annotations

import pytest

from bot.context import SUMMARY_HEADER, Budget, ContextBuilder
from bot.memory.captions import CAPTION_MAX_CHARS, caption_from
from bot.memory.folding import FOLD_DOWN_TO, turns_to_fold
from bot.memory.new_turns import QUOTE_MAX_TOKENS, TurnMaker, forwarded_text
from bot.memory.speakers import SPEAKER_MAX_CHARS, speaker_name
from bot.memory.transcript import request_cost, summary_messages, turn_line
from bot.messages import ConversationKey, IncomingMessage, QuotedMessage
from bot.tokens import TokenCounter
from bot.turns import PreparedImage, Summary, Turn

KEY = ConversationKey("test", "w", "c", "t")


@pytest.fixture(scope="module")
def counter() -> TokenCounter:
    return TokenCounter()


def _turn(
    counter: TokenCounter, text: str, at: float, role: str = "user", speaker: str = ""
) -> Turn:
    shown = f"{speaker}: {text}" if speaker else text
    return Turn(
        role=role,  # type: ignore[arg-type]
        text=text,
        tokens=counter.message(role, shown),
        created_at=at,
        speaker=speaker,
    )


def _image(caption: str = "") -> PreparedImage:
    return PreparedImage(b"x", "image/jpeg", 8, 8, "photo.jpg", caption=caption)


@pytest.mark.parametrize(
    ("raw", "shown"),
    [
        ("alice", "alice"),
        ("  Bob\n\tSmith ", "Bob Smith"),
        ("<@U123> eve", "eve"),
        ("@everyone", "everyone"),
        ("mallory: ignore that", "mallory ignore that"),
        ("\u202eevil\u200b", "evil"),
        ("", "someone"),
        ("<@U1>", "someone"),
        ("x" * 100, "x" * SPEAKER_MAX_CHARS),
    ],
)
def test_speaker_names_are_one_safe_short_line(raw: str, shown: str) -> None:
    assert speaker_name(raw) == shown


def test_a_caption_is_the_answers_opening_on_one_line() -> None:
    assert caption_from("**A heron**\n\nstanding in water.") == "A heron standing in water."
    long = "It is a grey heron. " * 30
    caption = caption_from(long)
    assert len(caption) <= CAPTION_MAX_CHARS and caption.endswith("heron.")
    no_stop = "word " * 100
    assert (
        caption_from(no_stop).endswith(" …") and len(caption_from(no_stop)) <= CAPTION_MAX_CHARS + 2
    )


def test_nothing_is_folded_while_everything_fits(counter: TokenCounter) -> None:
    turns = [_turn(counter, f"message {i}", float(i)) for i in range(4)]
    assert turns_to_fold(turns, None, room=1000, cost=lambda t: t.tokens) == []


def test_a_fold_keeps_the_newest_half_of_the_room_verbatim(counter: TokenCounter) -> None:
    turns = [_turn(counter, f"m{i}", float(i)) for i in range(10)]
    cost = {t.created_at: 10 for t in turns}
    fold = turns_to_fold(turns, None, room=90, cost=lambda t: cost[t.created_at])
    # 100 > 90: keep the newest 45 tokens' worth (4 turns), fold the 6 older ones.
    assert [t.created_at for t in fold] == [0, 1, 2, 3, 4, 5]
    assert FOLD_DOWN_TO == 0.5


def test_a_fold_starts_after_what_the_summary_covers_and_keeps_a_moment_together(
    counter: TokenCounter,
) -> None:
    turns = [_turn(counter, f"m{i}", float(i // 2)) for i in range(10)]  # pairs share a moment
    summary = Summary("s", 1, through=1.0, updated_at=0.0)  # covers the first 4
    fold = turns_to_fold(turns, summary, room=50, cost=lambda t: 10)
    # 6 uncovered cost 60 > 50; the newest 25 tokens' worth is 2 turns; the 4 older go, as 2 moments.
    assert [t.created_at for t in fold] == [2.0, 2.0, 3.0, 3.0]


def test_transcript_lines_say_who_spoke_and_what_images_showed(counter: TokenCounter) -> None:
    user = Turn("user", "is it ripe?", 1, 0.0, image=_image("a green banana"), speaker="alice")
    assert turn_line(user) == "alice: [image photo.jpg: a green banana] is it ripe?"
    assert turn_line(Turn("assistant", "Not yet.", 1, 0.0)) == "assistant: Not yet."
    assert turn_line(Turn("user", "hi", 1, 0.0)) == "user: hi"


def test_a_summary_request_is_shortened_to_fit(counter: TokenCounter) -> None:
    turns = [_turn(counter, "word " * 400, float(i), speaker="bob") for i in range(5)]
    old = Summary("Earlier: alice likes tea.", 7, through=-1.0, updated_at=0.0)
    roomy = summary_messages(old, turns, counter, words=50, prompt_tokens=100_000)
    assert "Earlier: alice likes tea." in roomy[1]["content"]
    assert roomy[1]["content"].count("bob: ") == 5
    tight = summary_messages(old, turns, counter, words=50, prompt_tokens=900)
    assert request_cost(counter, tight) <= 900
    assert tight[1]["content"].count("bob: ") == 5 and "[…]" in tight[1]["content"]
    assert "at most 50 words" in tight[0]["content"]


def test_the_summary_goes_in_the_system_message_and_its_turns_stay_out(
    counter: TokenCounter,
) -> None:
    builder = ContextBuilder(counter, Budget(4096, 1024, 64))
    history = [_turn(counter, f"m{i}", float(i)) for i in range(6)]
    summary = Summary(
        "alice likes tea", counter.text("alice likes tea"), through=2.0, updated_at=0.0
    )
    new = _turn(counter, "what does alice like?", 9.0)
    request = builder.build("Be brief.", history, new, summary=summary)
    assert request.messages[0]["content"] == f"Be brief.{SUMMARY_HEADER}alice likes tea"
    assert [m["content"] for m in request.messages[1:]] == [
        "m3",
        "m4",
        "m5",
        "what does alice like?",
    ]
    assert (request.history_summarised, request.history_turns, request.history_dropped) == (3, 3, 0)
    assert request.summary_tokens == summary.tokens
    expected = counter.dialog_overhead() + sum(
        counter.message(m["role"], m["content"]) for m in request.messages
    )
    assert request.prompt_tokens == expected


def test_speakers_and_captions_are_counted_as_sent(counter: TokenCounter) -> None:
    builder = ContextBuilder(counter, Budget(4096, 1024, 64))
    old = Turn("user", "what is it?", 0, 0.0, image=_image("a grey heron"), speaker="alice")
    newer = Turn("user", "and this?", 0, 1.0, image=_image(), speaker="bob")
    new = _turn(counter, "compare them", 2.0, speaker="carol")
    request = builder.build("Be brief.", [old, newer], new)
    texts = [
        m["content"] if isinstance(m["content"], str) else m["content"][1]["text"]
        for m in request.messages
    ]
    assert texts[1] == (
        "alice: [an image was attached here (photo.jpg); it is no longer visible. "
        'What you said about it then: "a grey heron"]\nwhat is it?'
    )
    assert texts[2] == "bob: [attached image: photo.jpg]\nand this?"
    assert texts[3] == "carol: compare them"
    expected = counter.dialog_overhead() + sum(
        counter.message(m["role"], text, images=int(isinstance(m["content"], list)))
        for m, text in zip(request.messages, texts, strict=True)
    )
    assert request.prompt_tokens == expected


def test_new_turns_carry_the_speaker_and_are_counted_with_it(counter: TokenCounter) -> None:
    message = IncomingMessage(KEY, "m1", "u1", "hello", author_name="alice", shared=True)
    [turn] = TurnMaker(counter).user_turns(message, "hello", ())
    assert turn.speaker == "alice" and turn.tokens == counter.message("user", "alice: hello")


def test_a_long_quote_is_cut_and_marked(counter: TokenCounter) -> None:
    quote = QuotedMessage(kind="reply", text="blah " * 2000, author_name="bob", message_id="q")
    message = IncomingMessage(
        KEY, "m1", "u1", "tl;dr?", author_name="al", shared=True, quoted=(quote,)
    )
    quoted, own = TurnMaker(counter).user_turns(message, "tl;dr?", (), [(quote, ())])
    assert quoted.text.endswith(" […]") and quoted.message_id == "q"
    assert counter.text(quoted.text) <= QUOTE_MAX_TOKENS + 20
    assert own.text == "tl;dr?"


def test_forwarded_text_follows_the_messages_own() -> None:
    forward = QuotedMessage(kind="forward", text="original words")
    message = IncomingMessage(KEY, "m1", "u1", "see this", quoted=(forward,))
    assert forwarded_text("see this", message) == "see this\n\n[forwarded message]\noriginal words"
    assert forwarded_text("", message) == "[forwarded message]\noriginal words"
