"""The SSE decoder: OpenRouter's event stream, split anywhere, in any line-ending style."""

from __future__ import annotations

import json

import pytest
from hypothesis import given
from hypothesis import strategies as st

from bot.sse import EventDecoder

CHUNKS = [
    {"id": "gen-1", "choices": [{"delta": {"content": "Hello"}, "finish_reason": None}]},
    {"id": "gen-1", "choices": [{"delta": {"content": " wörld 🌍\nnext"}, "finish_reason": None}]},
    {"id": "gen-1", "choices": [{"delta": {}, "finish_reason": "stop"}]},
    {"id": "gen-1", "choices": [], "usage": {"prompt_tokens": 9, "completion_tokens": 3}},
]


def openrouter_body(newline: str = "\n") -> bytes:
    """A stream as OpenRouter writes it: a keep-alive comment, the chunks, then [DONE]."""
    events = [": OPENROUTER PROCESSING"]
    events += [f"data: {json.dumps(chunk, ensure_ascii=False)}" for chunk in CHUNKS]
    events.append("data: [DONE]")
    return "".join(event + newline * 2 for event in events).encode()


def decode(blocks: list[bytes]) -> tuple[list[object], EventDecoder]:
    """The JSON of every event's data, feeding `blocks` one read at a time."""
    decoder = EventDecoder()
    payloads: list[object] = []
    for block in blocks:
        payloads += [json.loads(data) for data in decoder.feed(block)]
    return payloads, decoder


def split_at(data: bytes, cuts: list[int]) -> list[bytes]:
    points = sorted({min(max(cut, 0), len(data)) for cut in cuts})
    edges = [0, *points, len(data)]
    return [data[start:end] for start, end in zip(edges, edges[1:], strict=False)]


@pytest.mark.parametrize("newline", ["\n", "\r\n", "\r"])
def test_one_read_gives_every_chunk_then_done(newline: str) -> None:
    payloads, decoder = decode([openrouter_body(newline)])
    assert payloads == CHUNKS
    assert decoder.done


@given(
    newline=st.sampled_from(["\n", "\r\n", "\r"]),
    cuts=st.lists(st.integers(min_value=0, max_value=2_000), max_size=40),
)
def test_any_split_between_reads_gives_the_same_chunks(newline: str, cuts: list[int]) -> None:
    body = openrouter_body(newline)
    payloads, decoder = decode(split_at(body, cuts))
    assert payloads == CHUNKS
    assert decoder.done


def test_a_crlf_split_between_reads_is_one_line_ending() -> None:
    body = b'data: {"a": 1}\r\n\r\ndata: {"a": 2}\r\n\r\n'
    blocks = [body[:15], b"", body[15:16], body[16:]]  # ...}\r | (nothing) | \n | \r\n...
    assert blocks[0].endswith(b"\r") and blocks[2] == b"\n"
    assert decode(blocks)[0] == [{"a": 1}, {"a": 2}]


def test_several_data_lines_are_joined_with_newlines() -> None:
    body = b'data: {"text":\ndata: "two lines"}\n\n'
    assert decode([body])[0] == [{"text": "two lines"}]


def test_other_fields_comments_and_empty_events_are_skipped() -> None:
    body = (
        b": keep-alive\n\n"
        b'event: message\nid: 7\nretry: 1000\ndata: {"n": 1}\n\n'
        b"id: 8\n\n"
        b"data:\n\n"
        b"data\n\n"
        b"\n\n\n"
        b'data:{"n": 2}\n\n'
    )
    payloads, decoder = decode([body])
    assert payloads == [{"n": 1}, {"n": 2}]  # "data:" with no space is allowed too
    assert not decoder.done


def test_done_ends_the_stream_and_later_bytes_are_ignored() -> None:
    decoder = EventDecoder()
    assert decoder.feed(b'data: {"n": 1}\n\ndata: [DONE]\n\ndata: {"n": 2}\n\n') == [b'{"n": 1}']
    assert decoder.done
    assert decoder.feed(b'data: {"n": 3}\n\n') == []


def test_an_event_cut_off_by_the_end_of_the_body_is_not_dispatched() -> None:
    payloads, decoder = decode([b'data: {"n": 1}\n\ndata: {"n": 2}'])
    assert payloads == [{"n": 1}]
    assert not decoder.done


def test_data_is_passed_on_as_sent_even_when_it_is_not_json() -> None:
    body = b'data: {"n": 1}\n\ndata: {"n": \n\ndata:  two spaces\n\ndata: \xff\n\n'
    assert EventDecoder().feed(body) == [b'{"n": 1}', b'{"n": ', b" two spaces", b"\xff"]


def reference_events(body: bytes) -> tuple[list[bytes], bool]:
    """The same rules, read a line at a time over the whole body: the data of each event and
    whether `[DONE]` ended the stream (a slow, plain reading to hold the decoder's fast path to)."""
    lines = body.replace(b"\r\n", b"\n").replace(b"\r", b"\n").split(b"\n")
    found: list[bytes] = []
    values: list[bytes] = []
    for line in lines[:-1]:  # the last one has no line ending yet
        if line:
            name, _, value = line.partition(b":")
            if name == b"data":
                values.append(value[1:] if value.startswith(b" ") else value)
            continue
        data, values = b"\n".join(values), []
        if not data:
            continue
        if data.startswith(b"[DONE]"):
            return found, True
        found.append(data)
    return found, False


_TEXTS = st.lists(st.sampled_from(["a", "é", "🌍", " ", "\n", '"', "data: [DONE]", ":"])).map(
    "".join
)
_EVENTS = st.one_of(
    _TEXTS.map(lambda text: "data: " + json.dumps({"content": text}, ensure_ascii=False)),
    _TEXTS.map(lambda text: "data:" + json.dumps({"content": text})),  # no space
    st.just(": OPENROUTER PROCESSING"),
    st.just('data: {"a":\ndata: 1}'),
    st.sampled_from(["data:", "data", "data: ", "id: 7", "event: message", ""]),
    st.just("data: [DONE]"),
)


@given(
    events=st.lists(_EVENTS, max_size=12),
    newline=st.sampled_from(["\n", "\r\n", "\r"]),
    cuts=st.lists(st.integers(min_value=0, max_value=600), max_size=12),
    tail=st.sampled_from(["", "data: {", ": keep", "\n"]),
)
def test_any_stream_split_anywhere_decodes_as_read_a_line_at_a_time(
    events: list[str], newline: str, cuts: list[int], tail: str
) -> None:
    body = ("".join(event + newline * 2 for event in events) + tail).encode()
    decoder = EventDecoder()
    found = [data for block in split_at(body, cuts) for data in decoder.feed(block)]
    assert (found, decoder.done) == reference_events(body)


def test_a_json_string_that_says_data_done_does_not_end_the_stream() -> None:
    body = b'data: {"t": "x\\n\\ndata: [DONE]"}\n\ndata: {"t": "data: [DONE]"}\n\n'
    decoder = EventDecoder()
    assert decoder.feed(body) == [b'{"t": "x\\n\\ndata: [DONE]"}', b'{"t": "data: [DONE]"}']
    assert not decoder.done
