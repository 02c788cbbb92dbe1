"""Every attachment, read by its bytes: images to the image pipeline, text inlined, PDFs as their text."""

from __future__ import annotations

from bot.attachments.errors import AttachmentRefused
from bot.attachments.fit import FileFitter, FileText, Fitted, file_room, with_blocks
from bot.attachments.pipeline import AttachmentPipeline, PreparedAttachments
from bot.attachments.sniff import Kind, sniff

__all__ = [
    "AttachmentPipeline",
    "AttachmentRefused",
    "FileFitter",
    "FileText",
    "Fitted",
    "Kind",
    "PreparedAttachments",
    "file_room",
    "sniff",
    "with_blocks",
]
