"""What reaches the core and what it sends: the messages adapters hand over, a request's texts and tokens."""

from __future__ import annotations

from typing import Any

from bot.conversations import Conversations, Outcome
from bot.messages import IncomingMessage, ReplySink
from bot.tokens import TokenCounter


def record_handed_over(
    conversations: Conversations, into: list[IncomingMessage] | None = None
) -> list[IncomingMessage]:
    """Keep every IncomingMessage handed to `conversations`, in order; the core still answers them."""
    seen: list[IncomingMessage] = [] if into is None else into
    handle = conversations.handle

    async def recording(incoming: IncomingMessage, sink: ReplySink) -> Outcome:
        seen.append(incoming)
        return await handle(incoming, sink)

    conversations.handle = recording  # type: ignore[method-assign]
    return seen


def message_texts(body: dict[str, Any]) -> list[str]:
    """Each message's text in a chat request body, images left out."""
    out = []
    for message in body["messages"]:
        content = message["content"]
        if isinstance(content, list):
            content = "".join(part.get("text", "") for part in content)
        out.append(content)
    return out


def counted_tokens(body: dict[str, Any], counter: TokenCounter) -> int:
    """The request's prompt tokens counted independently of the builder (one token per image)."""
    total = counter.dialog_overhead()
    for message, text in zip(body["messages"], message_texts(body), strict=True):
        images = 0
        if isinstance(message["content"], list):
            images = sum(part["type"] == "image_url" for part in message["content"])
        total += counter.message(message["role"], text, images=images)
    return total
