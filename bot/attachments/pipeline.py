"""The one attachment path: fetch each file once, sniff its bytes, and route it to what reads it."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Sequence
from dataclasses import dataclass, field

from bot.attachments.errors import AttachmentRefused, not_text
from bot.attachments.fit import FileText
from bot.attachments.pdf import PdfExtractor
from bot.attachments.sniff import Kind, sniff
from bot.attachments.text import decode_text, named_as_text
from bot.config import Settings
from bot.images import ImagePipeline, ImageRefused
from bot.images.errors import display_name, too_large
from bot.images.fetch import safe_url_for_log
from bot.messages import FileRef, ImageRef
from bot.turns import PreparedImage

__all__ = ["AttachmentPipeline", "PreparedAttachments"]

log = logging.getLogger("glimpse.attachments")

NAMES_LISTED = 5  # skipped files named in a note; the rest are counted


@dataclass(frozen=True)
class PreparedAttachments:
    """What one message's attachments became: images to send, texts to inline, sentences for the user."""

    images: tuple[PreparedImage, ...]
    texts: tuple[FileText, ...]
    refusals: tuple[str, ...]


@dataclass(frozen=True, slots=True)
class _Fetched:
    name: str
    data: bytes
    from_images: bool  # the platform called it an image


class AttachmentPipeline:
    """Sniffs every attachment's bytes (never its name or MIME type) and reads it as what it is."""

    def __init__(self, settings: Settings, images: ImagePipeline) -> None:
        self._settings = settings
        self._images = images
        self._pdf = PdfExtractor(
            max_pages=settings.pdf_max_pages, timeout_seconds=settings.pdf_timeout_seconds
        )

    async def prepare(
        self, images: Sequence[ImageRef], files: Sequence[FileRef] = ()
    ) -> PreparedAttachments:
        """Images (by the platform's word) and other files, each fetched once and read by its bytes."""
        image_cap, file_cap = self._settings.images_per_message, self._settings.files_per_message
        refs = [(ref, True) for ref in images[:image_cap]]
        refs += [(ref, False) for ref in files[:file_cap]]
        fetched = await asyncio.gather(*(self._fetch(ref, is_image) for ref, is_image in refs))
        refusals = [item.user_message for item in fetched if isinstance(item, ImageRefused)]
        routes = await _route([item for item in fetched if isinstance(item, _Fetched)])
        refusals += routes.refusals
        skipped = [display_name(ref.filename) for ref in files[file_cap:]]
        skipped += [item.name for item, _, _ in routes.to_read[file_cap:]]
        batch, read = await asyncio.gather(
            self._images.prepare_loaded(
                routes.to_images, [display_name(ref.filename) for ref in images[image_cap:]]
            ),
            asyncio.gather(*(self._read(*job) for job in routes.to_read[:file_cap])),
        )
        refusals += batch.refusals
        refusals += [sentence for _, sentences in read for sentence in sentences]
        if routes.unreadable:
            names = _listed(routes.unreadable)
            refusals.append(f"I can only read images, text files and PDFs, so I skipped {names}.")
        if skipped:
            refusals.append(_skipped_note(file_cap, skipped))
        texts = tuple(text for text, _ in read if text is not None)
        return PreparedAttachments(batch.images, texts, tuple(refusals))

    async def close(self) -> None:
        """Stop the PDF workers (the image pipeline is closed by its owner)."""
        await self._pdf.close()

    async def _fetch(self, ref: ImageRef, is_image: bool) -> _Fetched | ImageRefused:
        name = display_name(ref.filename)
        cap = self._settings.image_max_bytes if is_image else self._settings.file_max_bytes
        try:
            data = await self._images.fetch(ref, max_bytes=cap)
        except ImageRefused as refusal:
            log.info(
                "attachment refused: file=%r source=%s reason=%s",
                name,
                safe_url_for_log(ref.url),
                refusal.reason,
            )
            return refusal
        except Exception:
            log.exception(
                "attachment failed unexpectedly: file=%r source=%s", name, safe_url_for_log(ref.url)
            )
            return ImageRefused(
                f"{name} could not be read because of an internal error.", reason="internal"
            )
        if not data:
            return ImageRefused(f"{name} is empty.", reason="empty")
        return _Fetched(name, data, is_image)

    async def _read(
        self, item: _Fetched, kind: Kind, encoding: str
    ) -> tuple[FileText | None, list[str]]:
        """A text file or a PDF as text, and any sentence for the user (page cap, refusal)."""
        name = item.name
        try:
            if len(item.data) > self._settings.file_max_bytes:  # fetched under the image cap
                raise too_large(name, self._settings.file_max_bytes, len(item.data))
            if kind is Kind.TEXT:
                text = await asyncio.to_thread(decode_text, item.data, encoding, name)
                return FileText(name, text), []
            found = await self._pdf.read(item.data, name)
        except (AttachmentRefused, ImageRefused) as refusal:
            log.info("attachment refused: file=%r reason=%s", name, refusal.reason)
            return None, [refusal.user_message]
        except Exception:
            log.exception("attachment failed unexpectedly: file=%r", name)
            return None, [f"{name} could not be read because of an internal error."]
        notes = []
        cap = self._settings.pdf_max_pages
        if found.pages_total > cap:
            notes.append(f"{name} has {found.pages_total} pages; I read the first {cap}.")
        return FileText(name, found.text), notes


@dataclass(slots=True)
class _Routes:
    """Where each fetched file goes, by what its bytes are."""

    to_images: list[tuple[str, bytes]] = field(default_factory=list)
    to_read: list[tuple[_Fetched, Kind, str]] = field(default_factory=list)  # text and PDFs
    unreadable: list[str] = field(default_factory=list)  # named in one note
    refusals: list[str] = field(default_factory=list)


async def _route(loaded: Sequence[_Fetched]) -> _Routes:
    """Sniff each file's bytes (off the event loop) and sort it to the step that reads it."""
    kinds = await asyncio.gather(*(asyncio.to_thread(sniff, item.data) for item in loaded))
    routes = _Routes()
    for item, sniffed in zip(loaded, kinds, strict=True):
        if sniffed.kind is Kind.IMAGE or (sniffed.kind is Kind.OTHER and item.from_images):
            routes.to_images.append((item.name, item.data))  # its refusal says what the bytes are
        elif sniffed.kind is Kind.OTHER and named_as_text(item.name):
            routes.refusals.append(not_text(item.name).user_message)  # notes.txt full of binary
        elif sniffed.kind is Kind.OTHER:
            routes.unreadable.append(item.name)
        else:
            routes.to_read.append((item, sniffed.kind, sniffed.encoding))
    return routes


def _listed(names: Sequence[str]) -> str:
    shown = ", ".join(names[:NAMES_LISTED])  # 50 attachments: a note short enough to post
    return shown + (f" and {len(names) - NAMES_LISTED} more" if len(names) > NAMES_LISTED else "")


def _skipped_note(limit: int, names: Sequence[str]) -> str:
    log.info("files skipped: files=%r reason=over the limit of %d read", names, limit)
    first = "Only the first file is" if limit == 1 else f"Only the first {limit} files are"
    return f"{first} read; skipped {_listed(names)}."
