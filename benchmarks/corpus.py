"""A seeded corpus of synthetic conversations: English, code, CJK, emoji and long pastes, of varied lengths."""

from __future__ import annotations

import random
from dataclasses import dataclass

__all__ = ["PROFILES", "Conversation", "make_corpus"]

PROFILES = ("english", "code", "cjk", "emoji", "paste", "mixed")
ENGLISH = (
    "the a an of to in and is it that for on with as this be are was by at from or have not "
    "photo image screenshot error build deploy server request model answer question thread "
    "channel memory token budget latency window button colour shows looks like maybe please "
    "could you explain why does when what which how because after before again still only "
    "release branch review merge config value timeout retry cache queue worker database index"
).split()
HAN = "的一是在不了有和人这中大为上个国我以要他时来用们生到作地于出就分对成会可主发年动同工也能下过子说产种面而方后多定行学法所民得经十三之进着等部度家电力里如水化高自二理起小物现实加量都两体制机当使点从业本去把性好应开它合还因由其些然前外天政四日那社义事平形相全表间样与关各重新线内数正心反你明看原又么利比或但质气第向道命此变条只没结解问意建月公无系军很情者最立代想已通并提直题党程展五果料象员革位入常文总次品式活设及管特件长求老头基资边流路级少图山统接知较将组见计别她手角期根论运农指几九区强放决西被干做必战先回则任取据处理府研质"
KANA = "あいうえおかきくけこさしすせそたちつてとなにぬねのはひふへほまみむめもやゆよらりるれろわをんアイウエオカキクケコサシスセソタチツテト"
EMOJI = (
    "😀 😂 🥲 😍 🤔 🙏 👍 👀 🔥 ✅ ❌ 🎉 🚀 💡 📷 🖼️ 🐈 🐕 🌅 🏔️ 🍕 ☕ ❤️ 💯 "
    "👩‍💻 👨‍👩‍👧 🏳️‍🌈 🇯🇵 🇫🇷 🧑🏽‍🚀 🤷‍♀️ 🙋🏻‍♂️"
).split()
CODE_LINES = (
    "def handle(message: Message, sink: Sink) -> Outcome:",
    "    async with self._lock(message.key):",
    "        history = await store.load(key, limit=200)",
    "    for turn in reversed(history):",
    "        if used + turn.tokens > budget:",
    "            break",
    "    return {'role': turn.role, 'content': turn.text}",
    "const reply = await client.chat.completions.create({ model, messages, stream: true });",
    "SELECT id, created_at FROM turns WHERE conversation = ? ORDER BY id DESC LIMIT 200;",
    '    raise ValueError(f"bad size {width}x{height}: limit is {limit} pixels")',
    'if (err != nil) { return fmt.Errorf("load %s: %w", key, err) }',
    '    logger.info("answered %s in %.2f s", message_id, elapsed)',
)
LOG_LINES = (
    "2026-11-23T10:14:{s:02d}.{ms:03d}Z INFO  worker-{w} request id=req_{h} path=/v1/chat status=200 ms={ms}",
    "2026-11-23T10:14:{s:02d}.{ms:03d}Z WARN  worker-{w} retrying upstream after 429 attempt={w} backoff_ms={ms}",
    '  File "/srv/app/glimpse/bot/conversations.py", line {ms}, in _stream',
    "    answer += event.text",
    "Traceback (most recent call last):",
    "aiohttp.client_exceptions.ClientPayloadError: Response payload is not completed (id={h})",
)


@dataclass(frozen=True, slots=True)
class Conversation:
    """One conversation: earlier (role, text) turns, oldest first, then the new user message."""

    profile: str
    history: tuple[tuple[str, str], ...]
    new_message: str


def _english(rng: random.Random, words: int) -> str:
    text = " ".join(rng.choice(ENGLISH) for _ in range(words))
    return text[0].upper() + text[1:] + "."


def _code(rng: random.Random, lines: int) -> str:
    body = "\n".join(rng.choice(CODE_LINES) for _ in range(lines))
    return f"{_english(rng, rng.randint(6, 20))}\n```python\n{body}\n```"


def _cjk(rng: random.Random, chars: int) -> str:
    pool = KANA + HAN if rng.random() < 0.4 else HAN
    text = "".join(rng.choice(pool) for _ in range(chars))
    return "。".join(text[i : i + 24] for i in range(0, len(text), 24)) + "。"


def _emoji(rng: random.Random, words: int) -> str:
    return " ".join(
        rng.choice(EMOJI) if rng.random() < 0.45 else rng.choice(ENGLISH) for _ in range(words)
    )


def _paste(rng: random.Random, chars: int) -> str:
    lines: list[str] = [_english(rng, rng.randint(5, 15)), "```"]
    while sum(len(line) + 1 for line in lines) < chars:
        template = rng.choice(LOG_LINES)
        values = {"s": rng.randint(0, 59), "ms": rng.randint(0, 999), "w": rng.randint(1, 9)}
        lines.append(template.format(h=f"{rng.getrandbits(48):012x}", **values))
    return "\n".join([*lines, "```"])


def _user_text(rng: random.Random, profile: str) -> str:
    kind = rng.choice(PROFILES[:5]) if profile == "mixed" else profile
    if kind == "code":
        return _code(rng, rng.randint(3, 30))
    if kind == "cjk":
        return _cjk(rng, rng.randint(15, 220))
    if kind == "emoji":
        return _emoji(rng, rng.randint(4, 40))
    if kind == "paste" and rng.random() < 0.5:
        return _paste(rng, rng.randint(1_500, 9_000))
    return _english(rng, rng.randint(6, 70))


def _reply_text(rng: random.Random, profile: str) -> str:
    if profile == "code" or (profile == "mixed" and rng.random() < 0.25):
        return _code(rng, rng.randint(4, 25))
    if profile == "cjk":
        return _cjk(rng, rng.randint(60, 500))
    if profile == "emoji":
        return _emoji(rng, rng.randint(20, 120))
    return _english(rng, rng.randint(30, 320))


def _exchanges(rng: random.Random) -> int:
    roll = rng.random()
    if roll < 0.3:
        return rng.randint(0, 5)
    if roll < 0.7:
        return rng.randint(6, 20)
    return rng.randint(21, 90)


def make_conversation(rng: random.Random, profile: str) -> Conversation:
    history: list[tuple[str, str]] = []
    for _ in range(_exchanges(rng)):
        history += [("user", _user_text(rng, profile)), ("assistant", _reply_text(rng, profile))]
    new = (
        _paste(rng, rng.randint(12_000, 30_000))
        if rng.random() < 0.04
        else _user_text(rng, profile)
    )
    return Conversation(profile, tuple(history), new)


def make_corpus(size: int, seed: int = 6) -> list[Conversation]:
    """`size` conversations, the profiles in turn, reproducible for a seed."""
    rng = random.Random(seed)
    return [make_conversation(rng, PROFILES[index % len(PROFILES)]) for index in range(size)]
