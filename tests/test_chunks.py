"""Reading streamed chunks: the text of one network read, and the failure that ends the stream there."""

from __future__ import annotations

import json
from typing import Any

import httpx2
import openai
import pytest

from bot.openrouter import ModelError, _Progress, _take
from bot.sse import EventDecoder

REQUEST = httpx2.Request("POST", "http://127.0.0.1/api/v1/chat/completions")


def event(payload: Any) -> bytes:
    return b"data: " + json.dumps(payload, ensure_ascii=False).encode() + b"\n\n"


def delta(text: str, **fields: Any) -> dict[str, Any]:
    return {"id": "gen-1", "choices": [{"index": 0, "delta": {"content": text}}], **fields}


def take(block: bytes) -> tuple[str, Exception | None, _Progress]:
    progress = _Progress()
    text, failure = _take(EventDecoder(), block, progress, REQUEST)
    return text, failure, progress


def test_one_read_with_several_chunks_is_one_piece_of_text() -> None:
    text, failure, _ = take(event(delta("Hel")) + event(delta("lo")) + event(delta(" 🌍")))
    assert (text, failure) == ("Hello 🌍", None)


def test_fields_glimpse_does_not_read_are_skipped_whatever_they_hold() -> None:
    chunk = delta(
        "ok",
        provider="Fake",
        object="chat.completion.chunk",
        system_fingerprint=None,
        choices=[
            {
                "index": 0,
                "delta": {"role": "assistant", "content": "ok", "reasoning": None},
                "finish_reason": None,
                "native_finish_reason": None,
                "logprobs": {"content": [{"token": "ok", "logprob": -0.1}]},
            }
        ],
    )
    text, failure, _ = take(event(chunk))
    assert (text, failure) == ("ok", None)


def test_the_finish_usage_and_answering_model_are_recorded() -> None:
    finish = {"model": "meta/llama", "choices": [{"delta": {}, "finish_reason": "length"}]}
    usage = {"prompt_tokens": 12, "completion_tokens": 3, "cost": 0.0001}
    tail = {"model": "meta/llama", "choices": [], "usage": usage}
    text, failure, progress = take(event(finish) + event(tail))
    assert (text, failure) == ("", None)
    assert progress.finish_reason == "length"
    assert progress.usage == usage
    assert progress.model == "meta/llama"


def test_null_and_empty_choices_and_deltas_carry_no_text() -> None:
    chunks = [{"choices": None}, {"choices": []}, {"choices": [{"delta": None}]}, {}]
    text, failure, _ = take(b"".join(event(chunk) for chunk in chunks))
    assert (text, failure) == ("", None)


def test_an_error_chunk_ends_the_read_after_the_text_before_it() -> None:
    error = {"code": 502, "message": "Provider disconnected"}
    block = event(delta("partial")) + event({"error": error, "choices": []}) + event(delta("x"))
    text, failure, _ = take(block)
    assert text == "partial"
    assert isinstance(failure, openai.APIError)
    assert failure.message == "Provider disconnected" and failure.body == error


@pytest.mark.parametrize(
    "bad",
    [
        b'data: {"choices": [\n\n',  # cut JSON
        b'data: {"choices": [{"delta": {"content": "\xff"}}]}\n\n',  # not UTF-8
        b"data: [1, 2]\n\n",  # JSON, but not a chunk
        b'data: {"choices": [{"delta": {"content": 7}}]}\n\n',  # text that is not text
        b'data: {"choices": {"delta": {}}}\n\n',  # choices that are not a list
    ],
)
def test_an_unreadable_chunk_is_a_bad_response_after_the_text_before_it(bad: bytes) -> None:
    text, failure, _ = take(event(delta("kept")) + bad + event(delta("lost")))
    assert text == "kept"
    assert isinstance(failure, ModelError) and failure.kind == "bad_response"
    assert failure.retryable
