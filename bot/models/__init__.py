"""Models per channel: which one answers, its budget and counter, its health, the admin command."""

from __future__ import annotations

from bot.models.commands import ModelCommands
from bot.models.estimate import EstimatingCounter, UndercountWatch, counter_for, is_llama3
from bot.models.health import ModelHealth, expiry_lines, expiry_problem
from bot.models.resolve import ChannelModels, Resolved, is_listed, models_in_use
from bot.models.service import ModelChoice, Models

__all__ = [
    "ChannelModels",
    "EstimatingCounter",
    "ModelChoice",
    "ModelCommands",
    "ModelHealth",
    "Models",
    "Resolved",
    "UndercountWatch",
    "counter_for",
    "expiry_lines",
    "expiry_problem",
    "is_listed",
    "is_llama3",
    "models_in_use",
]
