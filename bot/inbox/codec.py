"""An IncomingMessage as JSON without secrets (no auth headers, no inline bytes), and back."""

from __future__ import annotations

import json
from collections.abc import Callable, Mapping
from dataclasses import replace
from typing import Any

from bot.inbox.records import MAX_MESSAGE_CHARS
from bot.messages import ConversationKey, ImageRef, IncomingMessage, QuotedMessage

__all__ = ["FORMAT_VERSION", "decode_message", "encode_message", "with_headers"]

FORMAT_VERSION = 1


def encode_message(message: IncomingMessage) -> str:
    """The message as JSON, "" if it would be larger than the inbox keeps.

    Attachments keep their URL as the adapter gave it, never their headers (Slack's carry the bot
    token); one the adapter held as bytes (the terminal's files) is kept by name only.
    """
    body = {
        "v": FORMAT_VERSION,
        "key": list(_key_parts(message.key)),
        "message_id": message.message_id,
        "author_id": message.author_id,
        "text": message.text,
        "author_name": message.author_name,
        **_attachments(message.images, message.files, message.other_files),
        "author_roles": list(message.author_roles),
        "parent_channel": message.parent_channel,
        "is_direct": message.is_direct,
        "shared": message.shared,
        "quoted": [_quote(quote) for quote in message.quoted],
    }
    text = json.dumps(body, separators=(",", ":"))  # ASCII: lone surrogates survive
    return text if len(text) <= MAX_MESSAGE_CHARS else ""


def decode_message(text: str) -> IncomingMessage:
    """The message `encode_message` wrote; ValueError if `text` is not one."""
    try:
        body = json.loads(text)
        if body.get("v") != FORMAT_VERSION:
            raise ValueError(f"an inbox message of format {body.get('v')!r} cannot be read")
        return IncomingMessage(
            key=ConversationKey(*(str(part) for part in body["key"])),
            message_id=str(body["message_id"]),
            author_id=str(body["author_id"]),
            text=str(body["text"]),
            author_name=str(body["author_name"]),
            images=tuple(_ref(ref) for ref in body["images"]),
            files=tuple(_ref(ref) for ref in body["files"]),
            other_files=tuple(str(name) for name in body["other_files"]),
            author_roles=tuple(str(role) for role in body["author_roles"]),
            parent_channel=body["parent_channel"],
            is_direct=bool(body["is_direct"]),
            shared=bool(body["shared"]),
            quoted=tuple(_quote_from(quote) for quote in body["quoted"]),
        )
    except (KeyError, TypeError, AttributeError, json.JSONDecodeError) as exc:
        raise ValueError(f"not an inbox message: {type(exc).__name__}: {exc}") from None


def with_headers(
    message: IncomingMessage, headers: Callable[[str], Mapping[str, str]]
) -> IncomingMessage:
    """The message with `headers(url)` on every attachment again (the adapter's credentials)."""

    def refs(items: tuple[ImageRef, ...]) -> tuple[ImageRef, ...]:
        return tuple(
            replace(ref, headers=dict(headers(ref.url))) if ref.url is not None else ref
            for ref in items
        )

    quoted = tuple(
        replace(quote, images=refs(quote.images), files=refs(quote.files))
        for quote in message.quoted
    )
    return replace(message, images=refs(message.images), files=refs(message.files), quoted=quoted)


def _key_parts(key: ConversationKey) -> tuple[str, str, str, str]:
    return (key.platform, key.workspace, key.channel, key.thread)


def _attachments(
    images: tuple[ImageRef, ...], files: tuple[ImageRef, ...], other_files: tuple[str, ...]
) -> dict[str, Any]:
    """URL attachments as dicts; those held as bytes join `other_files` by name."""
    held = [ref.filename for ref in (*images, *files) if ref.url is None]
    return {
        "images": [_ref_body(ref) for ref in images if ref.url is not None],
        "files": [_ref_body(ref) for ref in files if ref.url is not None],
        "other_files": [*other_files, *held],
    }


def _ref_body(ref: ImageRef) -> dict[str, Any]:
    return {"filename": ref.filename, "url": ref.url, "mime_type": ref.mime_type, "size": ref.size}


def _ref(body: Mapping[str, Any]) -> ImageRef:
    size = body["size"]
    return ImageRef(
        filename=str(body["filename"]),
        url=str(body["url"]),
        mime_type=body["mime_type"],
        size=int(size) if size is not None else None,
    )


def _quote(quote: QuotedMessage) -> dict[str, Any]:
    return {
        "kind": quote.kind,
        "text": quote.text,
        "message_id": quote.message_id,
        "author_id": quote.author_id,
        "author_name": quote.author_name,
        **_attachments(quote.images, quote.files, quote.other_files),
    }


def _quote_from(body: Mapping[str, Any]) -> QuotedMessage:
    kind = body["kind"]
    if kind not in ("reply", "forward"):
        raise TypeError(f"a quoted message's kind is reply or forward, got {kind!r}")
    return QuotedMessage(
        kind=kind,
        text=str(body["text"]),
        message_id=str(body["message_id"]),
        author_id=str(body["author_id"]),
        author_name=str(body["author_name"]),
        images=tuple(_ref(ref) for ref in body["images"]),
        other_files=tuple(str(name) for name in body["other_files"]),
        files=tuple(_ref(ref) for ref in body["files"]),
    )
