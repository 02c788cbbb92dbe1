"""The turns a new message adds: its text and images, the message it replies to, what it forwards."""

from __future__ import annotations

import time
from collections.abc import Collection, Sequence
from dataclasses import replace

from bot.context import rendered
from bot.memory.captions import caption_from
from bot.memory.speakers import speaker_name
from bot.messages import IncomingMessage, QuotedMessage
from bot.tokens import TokenCounter
from bot.turns import PreparedImage, Turn, Usage

__all__ = ["QUOTE_MAX_TOKENS", "TurnMaker", "forwarded_text"]

QUOTE_MAX_TOKENS = 600  # a quoted message is context, not the question: it never crowds the budget
FORWARD_HEADER = "[forwarded message]"
QUOTE_MARK = " […]"


def forwarded_text(text: str, message: IncomingMessage) -> str:
    """The message's own text, then each forwarded message's text under a header (own text first,
    so a cut for length takes the forward's end, never the question)."""
    blocks = [
        f"{FORWARD_HEADER}\n{quote.text}".rstrip()
        for quote in message.quoted
        if quote.kind == "forward"
    ]
    return "\n\n".join(part for part in (text, *blocks) if part)


class TurnMaker:
    """Makes turns with their token counts, counted once, as the context builder will send them."""

    def __init__(self, counter: TokenCounter) -> None:
        self._counter = counter

    def user_turns(
        self,
        message: IncomingMessage,
        text: str,
        images: Sequence[PreparedImage],
        replies: Sequence[tuple[QuotedMessage, Sequence[PreparedImage]]] = (),
        *,
        known_ids: Collection[str] = (),
        reply_files: Sequence[str] = (),
    ) -> list[Turn]:
        """Quoted replies first (each its author's turn), then the message: its last turn is the new one.

        `reply_files`: for each reply, the file blocks that follow its (shortened) text.
        """
        now = time.time()
        speaker = speaker_name(message.author_name) if message.shared else ""
        turns: list[Turn] = []
        files = [*reply_files, *[""] * (len(replies) - len(reply_files))]
        for (quote, quote_images), blocks in zip(replies, files, strict=True):
            if quote.message_id and quote.message_id in known_ids:
                continue  # the conversation already holds it
            turns += self._turns(
                "\n\n".join(part for part in (self._quote_text(quote, message), blocks) if part),
                quote_images,
                speaker=speaker_name(quote.author_name) if message.shared else "",
                author_id=quote.author_id,
                message_id=quote.message_id or message.message_id,
                created_at=now,
            )
        turns += self._turns(
            text,
            images,
            speaker=speaker,
            author_id=message.author_id,
            message_id=message.message_id,
            created_at=now,
        )
        return turns

    def assistant_turn(self, text: str, usage: Usage | None) -> Turn:
        return Turn(
            role="assistant",
            text=text,
            tokens=self._counter.message("assistant", text),
            created_at=time.time(),
            usage=usage,
        )

    @staticmethod
    def with_captions(
        turns: Sequence[Turn], answer: str, shown: Sequence[PreparedImage]
    ) -> list[Turn]:
        """The turns whose image the model saw get the answer's opening as that image's caption."""
        caption = caption_from(answer)
        return [
            replace(turn, image=replace(turn.image, caption=caption))
            if turn.image is not None
            and not turn.image.caption
            and any(turn.image is image for image in shown)
            else turn
            for turn in turns
        ]

    def _turns(
        self,
        text: str,
        images: Sequence[PreparedImage],
        *,
        speaker: str,
        author_id: str,
        message_id: str,
        created_at: float,
    ) -> list[Turn]:
        """One turn per image (models that read several), the text on the last; one turn without images."""
        bodies: list[tuple[str, PreparedImage | None]] = [("", image) for image in images[:-1]]
        bodies.append((text, images[-1] if images else None))
        turns = []
        for body, image in bodies:
            turn = Turn(
                role="user",
                text=body,
                tokens=0,
                created_at=created_at,
                author_id=author_id,
                message_id=message_id,
                image=image,
                speaker=speaker,
            )
            tokens = self._counter.message("user", rendered(turn, body, visible=False))
            turns.append(replace(turn, tokens=tokens))
        return turns

    def _quote_text(self, quote: QuotedMessage, message: IncomingMessage) -> str:
        """The quoted message's text under a header saying whose it is and who replies to it."""
        if message.shared:
            header = f"[the message {speaker_name(message.author_name)} is replying to]"
        else:
            header = f"[the message I am replying to, from {speaker_name(quote.author_name)}]"
        text = quote.text.strip()
        if self._counter.text(text) > QUOTE_MAX_TOKENS:
            text = self._counter.truncate(text, QUOTE_MAX_TOKENS) + QUOTE_MARK
        return f"{header}\n{text}".rstrip()
