"""The durable inbox: each claimed message's state in the store, and unfinished answers resumed."""

from bot.inbox.catch_up import OFFLINE_NOTICE, Backlog, CatchUp, CatchUpReport, Missed
from bot.inbox.codec import decode_message, encode_message, with_headers
from bot.inbox.records import (
    OPEN_STATES,
    InboxEntry,
    InboxThread,
    State,
    event_id_of,
    validate_entry,
)
from bot.inbox.service import GIVE_UP_NOTICE, Answerer, Inbox, Reopener
from bot.inbox.sinks import INTERRUPTED_NOTE, ResumedSink, TrackedSink
from bot.inbox.ticket import Ticket

__all__ = [
    "GIVE_UP_NOTICE",
    "INTERRUPTED_NOTE",
    "OFFLINE_NOTICE",
    "OPEN_STATES",
    "Answerer",
    "Backlog",
    "CatchUp",
    "CatchUpReport",
    "Missed",
    "Inbox",
    "Reopener",
    "ResumedSink",
    "Ticket",
    "TrackedSink",
    "InboxEntry",
    "InboxThread",
    "State",
    "decode_message",
    "encode_message",
    "event_id_of",
    "validate_entry",
    "with_headers",
]
