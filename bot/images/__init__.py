"""Images for the model: fetched from allowed hosts only, validated, downscaled, re-encoded, gridded."""

from __future__ import annotations

from bot.images.errors import ImageRefused
from bot.images.pipeline import ImagePipeline, PreparedBatch
from bot.images.prepare import prepare_image

__all__ = ["ImagePipeline", "ImageRefused", "PreparedBatch", "prepare_image"]
