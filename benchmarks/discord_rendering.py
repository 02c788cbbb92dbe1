"""Discord answers side by side (issue 19, item 7): split plain messages against components v2 Text Displays.

`python benchmarks/discord_rendering.py` renders the same long answers both ways, exactly as the
adapter and discord.py would send them: `split_message` at 2,000 characters per message `content`
(what Glimpse does), and a `discord.ui.LayoutView` of `TextDisplay`s (component type 10, message
flag IS_COMPONENTS_V2 = 1 << 15) holding at most 4,000 characters per message. It prints, per
answer and rendering, the messages, their characters, the bytes of each message's JSON body, and
whether every code fence opened in a message is closed in it. No network.
"""

from __future__ import annotations

import json
import sys
from dataclasses import dataclass
from pathlib import Path

import discord

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from adapters.split import split_message  # noqa: E402

CONTENT_LIMIT = 2000  # characters of a message's `content`
COMPONENTS_V2_LIMIT = 4000  # display characters across all components of one message
IS_COMPONENTS_V2 = 1 << 15
MAX_OUTPUT_CHARS = 1024 * 4  # the default max_output_tokens (1,024) at ~4 characters a token


@dataclass(frozen=True)
class Rendering:
    name: str
    bodies: list[dict[str, object]]  # one JSON body per message, as sent

    def line(self) -> str:
        sizes = [len(json.dumps(body).encode()) for body in self.bodies]
        chars = [_shown(body) for body in self.bodies]
        fences = all(text.count("```") % 2 == 0 for text in map(_text, self.bodies))
        return (
            f"{self.name:<22} {len(self.bodies)} messages, characters {chars}, "
            f"JSON bytes {sizes}, fences closed in each: {fences}"
        )


def split_rendering(answer: str) -> Rendering:
    """What Glimpse sends: plain `content`, at most 2,000 characters a message."""
    bodies: list[dict[str, object]] = [
        {"content": piece, "allowed_mentions": {"parse": []}}
        for piece in split_message(answer, CONTENT_LIMIT)
    ]
    return Rendering("split content", bodies)


def components_v2_rendering(answer: str) -> Rendering:
    """The same answer as Text Displays: the same splitting, at 4,000 characters a message."""
    bodies: list[dict[str, object]] = []
    for piece in split_message(answer, COMPONENTS_V2_LIMIT):
        view = discord.ui.LayoutView()
        view.add_item(discord.ui.TextDisplay(piece))
        bodies.append(
            {
                "flags": IS_COMPONENTS_V2,
                "components": view.to_components(),
                "allowed_mentions": {"parse": []},
            }
        )
    return Rendering("components v2", bodies)


def long_answers() -> dict[str, str]:
    """A prose answer with a code block, at the default output cap and at twice it."""
    code = (
        "```python\n" + "\n".join(f"value_{i} = {i} * 2  # step {i}" for i in range(70)) + "\n```"
    )
    prose = "\n\n".join(
        f"Paragraph {i}: " + "the harbour light turns slowly " * 12 for i in range(12)
    )
    mixed = prose[:1400] + "\n\n" + code + "\n\n" + prose
    return {
        f"{MAX_OUTPUT_CHARS:,} characters (default cap)": mixed[:MAX_OUTPUT_CHARS],
        f"{2 * MAX_OUTPUT_CHARS:,} characters": mixed[: 2 * MAX_OUTPUT_CHARS],
    }


def main() -> None:
    for title, answer in long_answers().items():
        print(f"answer of {title}")
        for rendering in (split_rendering(answer), components_v2_rendering(answer)):
            print("  " + rendering.line())


def _text(body: dict[str, object]) -> str:
    if "content" in body:
        return str(body["content"])
    components = body["components"]
    assert isinstance(components, list)
    return "".join(str(c.get("content", "")) for c in components)


def _shown(body: dict[str, object]) -> int:
    return len(_text(body))


if __name__ == "__main__":
    main()
