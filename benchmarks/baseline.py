"""The usual approach, side by side: an llmcord-style bot reduced to its request path.

What it does, as llmcord and most small bots do: a new `AsyncOpenAI` client for every
message, the last 25 messages as context with no token counting, one edit throttle
shared by every conversation (a global "last edit" time), and the whole answer kept
in a string edited into the platform message. The platform is in memory, as for Glimpse.
"""

from __future__ import annotations

import asyncio
import time
from dataclasses import dataclass, field
from typing import Any

import openai

from benchmarks.probe import start_probe

__all__ = ["MAX_MESSAGES", "UsualBot"]

EDIT_DELAY_SECONDS = 1.0  # llmcord's constant, one clock for the whole process
MAX_MESSAGES = 25  # llmcord's default `max_messages`, the new message included


@dataclass
class _Platform:
    """The in-memory 'platform' message being edited."""

    text: str = ""
    edits: int = 0

    async def edit(self, text: str) -> None:
        self.text = text
        self.edits += 1


@dataclass
class UsualBot:
    """One process of the usual bot: history per conversation, a global edit clock."""

    base_url: str
    api_key: str
    model: str
    system_prompt: str
    history: dict[str, list[dict[str, Any]]] = field(default_factory=dict)
    last_edit_at: float = 0.0

    async def handle(self, conversation: str, text: str) -> tuple[str, float, float]:
        """Answer `text`; the answer, the wall seconds and the seconds outside the SDK."""
        probe = start_probe()
        client = openai.AsyncOpenAI(base_url=self.base_url, api_key=self.api_key, max_retries=0)
        past = self.history.setdefault(conversation, [])
        messages = [{"role": "system", "content": self.system_prompt}]
        messages += past[-(MAX_MESSAGES - 1) :] + [{"role": "user", "content": text}]
        answer = await self._stream(client, messages)
        past += [messages[-1], {"role": "assistant", "content": answer}]
        await (
            client.close()
        )  # llmcord never closes its clients; closing keeps this harness's sockets bounded
        ended = time.perf_counter()
        return answer, ended - probe.started, probe.core_seconds(ended)

    async def _stream(self, client: openai.AsyncOpenAI, messages: list[dict[str, Any]]) -> str:
        platform, answer = _Platform(), ""
        edit: asyncio.Task[None] | None = None
        stream = await client.chat.completions.create(
            model=self.model,
            messages=messages,  # type: ignore[arg-type]
            stream=True,
        )
        async for chunk in stream:
            choice = chunk.choices[0] if chunk.choices else None
            if choice is None:
                continue
            answer += choice.delta.content or ""
            ready = (edit is None or edit.done()) and (
                time.monotonic() - self.last_edit_at >= EDIT_DELAY_SECONDS
            )
            if ready or choice.finish_reason is not None:
                if edit is not None:
                    await edit
                edit = asyncio.create_task(platform.edit(answer))
                self.last_edit_at = time.monotonic()
        if edit is not None:
            await edit
        return answer
