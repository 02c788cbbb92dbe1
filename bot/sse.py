"""Split a server-sent event stream into the data of each event, one network read at a time."""

from __future__ import annotations

__all__ = ["DONE", "EventDecoder"]

DONE = b"[DONE]"  # OpenAI-style end of stream: `data: [DONE]`
_DATA = b"data:"
_DATA_SPACE = b"data: "


class EventDecoder:
    """Incremental SSE decoding (the WHATWG event-stream rules) of a chat-completion stream.

    `feed` takes whatever bytes one read returned and returns the data of every event those
    bytes complete, so a burst of chunks costs one call, not one per event. Line endings may
    be LF, CRLF or CR, split anywhere between reads; comment lines (`: OPENROUTER PROCESSING`)
    and `event:`/`id:`/`retry:` fields are skipped; several `data:` lines in one event are
    joined with newlines. `data: [DONE]` ends the stream: `done` turns true and later bytes
    are ignored. An event cut off by the end of the body is never dispatched.
    """

    __slots__ = ("_after_cr", "_rest", "done")

    def __init__(self) -> None:
        self._rest = b""  # the start of an event not yet complete, line endings already LF
        self._after_cr = False
        self.done = False

    def feed(self, block: bytes) -> list[bytes]:
        """The data of the events completed by `block`, in order (the JSON of each chunk)."""
        if self.done or not block:
            return []
        if self._after_cr and block.startswith(b"\n"):
            block = block[1:]  # the second half of a CRLF split between reads
        buffer = self._rest + block if self._rest else block
        self._after_cr = buffer.endswith(b"\r")
        if b"\r" in buffer:
            buffer = buffer.replace(b"\r\n", b"\n").replace(b"\r", b"\n")
        end = buffer.rfind(b"\n\n")  # where the last complete event ends
        if end < 0:
            self._rest = buffer
            return []
        # The usual read, a few calls rather than a few per event: when every complete event is
        # one `data: ` line, splitting on `\n\ndata: ` gives their data. That holds when the
        # complete part has no newline but those separators' (a chunk's JSON has none).
        plain = buffer.startswith(_DATA_SPACE)
        if plain:
            found = buffer[len(_DATA_SPACE) : end].split(b"\n\ndata: ")
            plain = buffer.count(b"\n", 0, end) == 2 * len(found) - 2 and b"" not in found
        if plain:
            self._rest = buffer[end + 2 :]
        else:  # comments, other fields, several lines, blank lines, "data:" without a space
            found, self._rest = _events(buffer)
        return self._until_done(found) if DONE in buffer else found

    def _until_done(self, found: list[bytes]) -> list[bytes]:
        """The data before `[DONE]`, which ends the stream, if one of `found` is it."""
        for index, data in enumerate(found):
            if data.startswith(DONE):
                self.done = True
                self._rest = b""
                return found[:index]
        return found


def _events(buffer: bytes) -> tuple[list[bytes], bytes]:
    """Any read, an event at a time: the data of every complete event, and the rest."""
    events = buffer.split(b"\n\n")
    rest = events.pop()
    found: list[bytes] = []
    for event in events:
        data = _data_of(event)
        if data:  # no data field, or an empty one: nothing to dispatch
            found.append(data)
    return found, rest


def _data_of(event: bytes) -> bytes | None:
    """The event's data (its `data:` lines joined), or None when it has none (a comment, say)."""
    if b"\n" not in event:  # the usual case: one line
        return _field_value(event) if _is_data(event) else None
    values = [_field_value(line) for line in event.split(b"\n") if _is_data(line)]
    return b"\n".join(values) if values else None


def _is_data(line: bytes) -> bool:
    return line.startswith(_DATA) or line == b"data"  # a bare field name: an empty value


def _field_value(line: bytes) -> bytes:
    value = line[len(_DATA) :]  # b"" for the bare name
    return value[1:] if value.startswith(b" ") else value
