"""What the model remembers of a conversation: who said what, quotes, image captions, summaries."""

from __future__ import annotations

from bot.memory.new_turns import TurnMaker, forwarded_text
from bot.memory.speakers import SPEAKERS_NOTE, speaker_name
from bot.memory.summarizer import Summarizer

__all__ = ["SPEAKERS_NOTE", "Summarizer", "TurnMaker", "forwarded_text", "speaker_name"]
