"""The durable inbox: each claimed message's state in the store, and unfinished answers resumed."""

from bot.inbox.codec import decode_message, encode_message, with_headers
from bot.inbox.records import (
    OPEN_STATES,
    InboxEntry,
    InboxThread,
    State,
    event_id_of,
    validate_entry,
)

__all__ = [
    "OPEN_STATES",
    "InboxEntry",
    "InboxThread",
    "State",
    "decode_message",
    "encode_message",
    "event_id_of",
    "validate_entry",
    "with_headers",
]
