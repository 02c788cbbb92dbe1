"""The image pipeline the core calls: fetch a message's images concurrently, prepare them, grid them."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Iterable, Sequence
from dataclasses import dataclass

import aiohttp
from PIL import Image

from bot.config import Settings
from bot.images.errors import ImageRefused, display_name
from bot.images.fetch import fetch_bytes, safe_url_for_log
from bot.images.grid import compose_grid, grid_label
from bot.images.hosts import GuardedResolver, HostPolicy
from bot.images.prepare import decode_image, encode_image
from bot.messages import ImageRef
from bot.turns import PreparedImage

__all__ = ["ImagePipeline", "PreparedBatch"]

log = logging.getLogger("glimpse.images")

# A 50-megapixel RGBA PNG needs ~200 MB while it decodes; two at a time bounds the process's peak.
MAX_CONCURRENT_DECODES = 2
MAX_CONNECTIONS = 16
NAMES_LISTED = 5  # skipped files named in a note; the rest are counted


@dataclass(frozen=True)
class PreparedBatch:
    """What one message's images became: images to send, and one sentence per image refused."""

    images: tuple[PreparedImage, ...]
    refusals: tuple[str, ...]


@dataclass(frozen=True, slots=True)
class _Decoded:
    name: str
    image: Image.Image


class ImagePipeline:
    """Fetches (allowed hosts only), validates, downscales and re-encodes the images of a message."""

    def __init__(
        self,
        settings: Settings,
        *,
        trusted_hosts: Iterable[str] = (),
        session: aiohttp.ClientSession | None = None,
    ) -> None:
        self._settings = settings
        self._policy = HostPolicy([*trusted_hosts, *settings.image_hosts])
        self._session = session
        self._owns_session = session is None
        self._resolver: GuardedResolver | None = None
        self._decode_slots = asyncio.Semaphore(MAX_CONCURRENT_DECODES)

    async def prepare(self, refs: Sequence[ImageRef]) -> PreparedBatch:
        """Prepared images (one grid when the model reads one image per request) and refusal sentences."""
        per_message = self._settings.images_per_message
        taken, skipped = list(refs[:per_message]), list(refs[per_message:])
        outcomes = await asyncio.gather(*(self._load(ref) for ref in taken))
        return await self._batch(outcomes, skipped)

    async def prepare_loaded(
        self, loaded: Sequence[tuple[str, bytes]], skipped: Sequence[str] = ()
    ) -> PreparedBatch:
        """Like `prepare`, for images already fetched: (name, bytes) pairs; `skipped`: names not fetched."""
        per_message = self._settings.images_per_message
        names = [name for name, _ in loaded[per_message:]] + list(skipped)
        outcomes = await asyncio.gather(
            *(self._decode(name, data) for name, data in loaded[:per_message])
        )
        return await self._batch(outcomes, names)

    async def fetch(self, ref: ImageRef, *, max_bytes: int) -> bytes:
        """A file's bytes from the adapter or an allowed host (ImageRefused with a sentence if not)."""
        return await fetch_bytes(
            ref,
            session=self._http,
            policy=self._policy,
            max_bytes=max_bytes,
            timeout_seconds=self._settings.image_fetch_timeout_seconds,
        )

    async def _batch(
        self,
        outcomes: Sequence[_Decoded | ImageRefused],
        skipped: Sequence[ImageRef] | Sequence[str],
    ) -> PreparedBatch:
        per_message = self._settings.images_per_message
        decoded = [outcome for outcome in outcomes if isinstance(outcome, _Decoded)]
        refusals = [
            outcome.user_message for outcome in outcomes if isinstance(outcome, ImageRefused)
        ]
        if skipped:
            refusals.append(self._skipped_note(per_message, skipped, "read"))
        if not decoded:
            return PreparedBatch((), tuple(refusals))
        try:
            images, note = await asyncio.to_thread(self._assemble, decoded)
        except Exception:
            log.exception(
                "images failed unexpectedly while encoding: files=%r", [d.name for d in decoded]
            )
            refusals.append("The images could not be prepared because of an internal error.")
            return PreparedBatch((), tuple(refusals))
        if note:
            refusals.append(note)
        return PreparedBatch(tuple(images), tuple(refusals))

    async def close(self) -> None:
        """Close the HTTP session this pipeline created (a session passed in is left to its owner)."""
        if self._owns_session and self._session is not None:
            await self._session.close()
            self._session = None
        if self._resolver is not None:
            await self._resolver.close()
            self._resolver = None

    async def _load(self, ref: ImageRef) -> _Decoded | ImageRefused:
        name = display_name(ref.filename)
        try:
            data = await self.fetch(ref, max_bytes=self._settings.image_max_bytes)
        except ImageRefused as refusal:
            return _logged(refusal, name, ref.url)
        except Exception:
            return _internal_error(name, ref.url)
        return await self._decode(name, data, source=ref.url)

    async def _decode(
        self, name: str, data: bytes, *, source: str | None = None
    ) -> _Decoded | ImageRefused:
        try:
            async with self._decode_slots:
                image = await asyncio.to_thread(
                    decode_image,
                    data,
                    name,
                    max_pixels=self._settings.image_max_pixels,
                    max_side=self._settings.image_max_side,
                )
        except ImageRefused as refusal:
            return _logged(refusal, name, source)
        except Exception:
            return _internal_error(name, source)
        return _Decoded(name, image)

    def _assemble(self, decoded: list[_Decoded]) -> tuple[list[PreparedImage], str | None]:
        """Encode separately (up to images_per_request) or, for one image per request, as one grid."""
        per_request = self._settings.images_per_request
        if len(decoded) == 1:
            return [encode_image(decoded[0].image, decoded[0].name)], None
        if per_request == 1:
            grid = compose_grid([item.image for item in decoded], self._settings.image_max_side)
            return [encode_image(grid, grid_label([item.name for item in decoded]))], None
        sent, dropped = decoded[:per_request], decoded[per_request:]
        note = None
        if dropped:
            note = self._skipped_note(
                per_request, [item.name for item in dropped], "sent to the model"
            )
        return [encode_image(item.image, item.name) for item in sent], note

    @staticmethod
    def _skipped_note(limit: int, skipped: Sequence[ImageRef] | Sequence[str], verb: str) -> str:
        names = [
            display_name(item.filename) if isinstance(item, ImageRef) else item for item in skipped
        ]
        first = "only the first image is" if limit == 1 else f"only the first {limit} images are"
        log.info("images skipped: files=%r reason=over the limit of %d %s", names, limit, verb)
        listed = ", ".join(names[:NAMES_LISTED])  # 50 attachments: a note short enough to post
        more = f" and {len(names) - NAMES_LISTED} more" if len(names) > NAMES_LISTED else ""
        return f"{first[0].upper()}{first[1:]} {verb}; skipped {listed}{more}."

    def _http(self) -> aiohttp.ClientSession:
        """The session passed in, or one created on first use and reused for the process."""
        if self._session is None or (self._owns_session and self._session.closed):
            self._resolver = GuardedResolver(self._policy)
            connector = aiohttp.TCPConnector(resolver=self._resolver, limit=MAX_CONNECTIONS)
            self._session = aiohttp.ClientSession(
                connector=connector,
                cookie_jar=aiohttp.DummyCookieJar(),
                trust_env=False,
            )
        return self._session


def _logged(refusal: ImageRefused, name: str, source: str | None) -> ImageRefused:
    """The refusal, once its reason is in the log (without the link's query string)."""
    log.info(
        "image refused: file=%r source=%s reason=%s",
        name,
        safe_url_for_log(source),
        refusal.reason,
    )
    return refusal


def _internal_error(name: str, source: str | None) -> ImageRefused:
    """Called in an `except` block: the traceback goes to the log, a sentence to the user."""
    log.exception("image failed unexpectedly: file=%r source=%s", name, safe_url_for_log(source))
    return ImageRefused(
        f"{name} could not be read because of an internal error.", reason="internal"
    )
