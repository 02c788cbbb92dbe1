"""Token counting against Meta's ChatFormat, and the budgeted context builder."""

from __future__ import annotations

import io

import pytest
from llama_models.datatypes import RawMediaItem, RawMessage, RawTextItem
from llama_models.llama3.chat_format import ChatFormat
from llama_models.llama3.tokenizer import Tokenizer
from PIL import Image

from bot.context import Budget, ContextBuilder, ContextError
from bot.tokens import TokenCounter
from bot.turns import PreparedImage, Turn


@pytest.fixture(scope="module")
def counter() -> TokenCounter:
    return TokenCounter()


def _png() -> bytes:
    buffer = io.BytesIO()
    Image.new("RGB", (8, 8), "red").save(buffer, "PNG")
    return buffer.getvalue()


def _image(label: str = "photo.jpg") -> PreparedImage:
    return PreparedImage(data=_png(), mime_type="image/png", width=8, height=8, label=label)


def _turn(counter: TokenCounter, role: str, text: str, image: PreparedImage | None = None) -> Turn:
    return Turn(
        role=role, text=text, tokens=counter.message(role, text), created_at=0.0, image=image
    )  # type: ignore[arg-type]


def _counted_like_chat_format(counter: TokenCounter, request_messages: list[dict]) -> int:
    """Our count of a built request, recomputed from its messages alone."""
    total = counter.dialog_overhead()
    for message in request_messages:
        content = message["content"]
        if isinstance(content, str):
            total += counter.message(message["role"], content)
        else:
            text = "".join(part["text"] for part in content if part["type"] == "text")
            images = sum(1 for part in content if part["type"] == "image_url")
            total += counter.message(message["role"], text, images=images)
    return total


DIALOGS = [
    [("system", "You are helpful."), ("user", "Hello!")],
    [
        ("system", "Be brief."),
        ("user", "What is 2+2?"),
        ("assistant", "4."),
        ("user", "And times 3?"),
    ],
    [("user", "emoji 🦙 and right-to-left ‮ text, and <|eot_id|> typed by a user")],
    [
        ("system", ""),
        ("user", "   leading spaces\n\nand\tTabs\r\n"),
        ("assistant", "```python\nprint('x')\n```"),
    ],
]


@pytest.mark.parametrize("dialog", DIALOGS)
def test_dialog_count_matches_meta_chat_format(
    counter: TokenCounter, dialog: list[tuple[str, str]]
) -> None:
    formatter = ChatFormat(Tokenizer.get_instance())
    expected = len(
        formatter.encode_dialog_prompt([RawMessage(role=r, content=t) for r, t in dialog]).tokens
    )
    ours = counter.dialog_overhead() + sum(counter.message(role, text) for role, text in dialog)
    assert ours == expected


def test_image_message_count_matches_meta_chat_format(counter: TokenCounter) -> None:
    formatter = ChatFormat(Tokenizer.get_instance())
    content = [RawMediaItem(data=_png()), RawTextItem(text="What is in this image?")]
    expected = len(
        formatter.encode_dialog_prompt([RawMessage(role="user", content=content)]).tokens
    )
    assert (
        counter.dialog_overhead() + counter.message("user", "What is in this image?", images=1)
        == expected
    )


def test_truncate_keeps_a_prefix_within_the_limit(counter: TokenCounter) -> None:
    text = "word " * 1000
    cut = counter.truncate(text, 50)
    assert text.startswith(cut)
    assert counter.text(cut) <= 50
    assert counter.text(cut) >= 45


def test_history_far_beyond_the_context_is_trimmed_newest_first(counter: TokenCounter) -> None:
    budget = Budget(context_length=4096, max_output_tokens=1024, safety_margin=64)
    builder = ContextBuilder(counter, budget)
    history = []
    for i in range(400):
        history.append(
            _turn(counter, "user", f"Question number {i}: tell me about llamas, please. " * 3)
        )
        history.append(
            _turn(counter, "assistant", f"Answer {i}: llamas are camelids from South America. " * 4)
        )
    new = _turn(counter, "user", "And what do they eat?")
    request = builder.build("You are helpful.", history, new)

    assert request.prompt_tokens <= budget.prompt_tokens
    assert request.prompt_tokens == _counted_like_chat_format(counter, request.messages)
    # The budget is well used: the next older turn would not have fitted.
    next_older = history[len(history) - request.history_turns - 1]
    assert request.prompt_tokens + next_older.tokens > budget.prompt_tokens
    assert request.prompt_tokens > budget.prompt_tokens - 200
    # The kept turns are the newest ones, in order, with the new turn last.
    assert request.messages[0] == {"role": "system", "content": "You are helpful."}
    assert request.messages[-1] == {"role": "user", "content": "And what do they eat?"}
    assert request.messages[-2]["content"] == history[-1].text
    assert request.history_dropped == len(history) - request.history_turns


def test_a_new_turn_too_big_alone_is_shortened_and_flagged(counter: TokenCounter) -> None:
    budget = Budget(context_length=4096, max_output_tokens=1024, safety_margin=64)
    builder = ContextBuilder(counter, budget)
    huge = "lorem ipsum dolor sit amet " * 5000
    history = [_turn(counter, "user", "earlier"), _turn(counter, "assistant", "reply")]
    request = builder.build("You are helpful.", history, _turn(counter, "user", huge))

    assert request.user_text_shortened
    assert request.prompt_tokens <= budget.prompt_tokens
    assert request.prompt_tokens == _counted_like_chat_format(counter, request.messages)
    assert request.messages[-1]["content"].endswith("[…]")
    assert request.history_turns == 0


def test_only_the_newest_image_is_sent_and_older_ones_become_text(counter: TokenCounter) -> None:
    budget = Budget(context_length=4096, max_output_tokens=512, safety_margin=64)
    builder = ContextBuilder(counter, budget, images_per_request=1)
    old = _turn(counter, "user", "What is this?", _image("cat.jpg"))
    newer = _turn(counter, "user", "And this one?", _image("dog.jpg"))
    history = [
        old,
        _turn(counter, "assistant", "A cat."),
        newer,
        _turn(counter, "assistant", "A dog."),
    ]
    request = builder.build("sys", history, _turn(counter, "user", "What colour is it?"))

    image_parts = [
        part
        for m in request.messages
        if isinstance(m["content"], list)
        for part in m["content"]
        if part["type"] == "image_url"
    ]
    assert len(image_parts) == 1
    assert request.images == (newer.image,)
    dog = request.messages[3]["content"]
    assert dog[0]["type"] == "image_url"  # the image comes before its text (Meta's format)
    assert "dog.jpg" in dog[1]["text"]
    assert (
        "cat.jpg" in request.messages[1]["content"]
        and "no longer visible" in request.messages[1]["content"]
    )
    assert request.prompt_tokens == _counted_like_chat_format(counter, request.messages)


def test_a_new_image_wins_over_history_images(counter: TokenCounter) -> None:
    builder = ContextBuilder(counter, Budget(4096, 512, 64))
    history = [
        _turn(counter, "user", "this?", _image("old.png")),
        _turn(counter, "assistant", "ok"),
    ]
    new = _turn(counter, "user", "and now?", _image("new.png"))
    request = builder.build("sys", history, new)
    assert request.images == (new.image,)
    assert isinstance(request.messages[1]["content"], str)


def test_models_reading_several_images_get_the_newest_ones(counter: TokenCounter) -> None:
    builder = ContextBuilder(counter, Budget(128_000, 1024, 64), images_per_request=2)
    a, b, c = (_turn(counter, "user", f"img {n}", _image(f"{n}.png")) for n in "abc")
    request = builder.build("sys", [a, b], c)
    assert request.images == (c.image, b.image)


def test_a_system_prompt_that_leaves_no_room_is_an_error(counter: TokenCounter) -> None:
    builder = ContextBuilder(counter, Budget(512, 256, 64))
    with pytest.raises(ContextError):
        builder.build("very long system prompt " * 100, [], _turn(counter, "user", "hi"))
