"""Local files for `glimpse chat`: read, sorted into images and other files, refused in one line."""

from __future__ import annotations

import io
import mimetypes
import os
import warnings
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path

from PIL import Image, UnidentifiedImageError

from bot.config import Settings
from bot.images.errors import ImageRefused, display_name
from bot.images.prepare import decode_image, describe_unreadable
from bot.messages import FileRef, ImageRef

__all__ = [
    "BYTES_PER_MIB",
    "SNIFF_BYTES",
    "Attachments",
    "ConsoleError",
    "byte_limit",
    "load_attachments",
    "looks_like_image",
    "read_attachment",
]

BYTES_PER_MIB = 1024 * 1024
SNIFF_BYTES = 64 * 1024  # a file's first bytes: enough for Pillow to tell an image by its header


class ConsoleError(Exception):
    """A terminal-side refusal of a local file (missing, unreadable, too large, a broken image)."""


@dataclass(slots=True)
class Attachments:
    """The files of one message: those whose bytes are images, and the rest, which the core reads."""

    images: list[ImageRef] = field(default_factory=list)
    files: list[FileRef] = field(default_factory=list)

    def add(self, path: str, settings: Settings) -> ImageRef:
        """Read and check one file and keep it; ConsoleError if it cannot be used."""
        ref, is_image = read_attachment(path, settings)
        if is_image:
            _check_count(len(self.images) + 1, settings.images_per_message, "images")
            self.images.append(ref)
        else:
            _check_count(len(self.files) + 1, settings.files_per_message, "files")
            self.files.append(ref)
        return ref

    def clear(self) -> None:
        self.images.clear()
        self.files.clear()


def load_attachments(paths: Sequence[str], settings: Settings) -> Attachments:
    """The `--attach` files, each read and checked: the first that cannot be used raises."""
    attachments = Attachments()
    for path in paths:
        attachments.add(path, settings)
    return attachments


def read_attachment(path: str, settings: Settings) -> tuple[FileRef, bool]:
    """One local file and whether its bytes are an image; ConsoleError if it cannot be used.

    The terminal judges only what it can judge cheaply: a missing, unreadable or oversized file,
    and an image that is broken or too large in pixels (the core's own checks). Whether any other
    file can be read (text, a PDF, anything else) is the core's to say.
    """
    file = Path(path).expanduser()
    data, is_image = _read(file, path, settings)
    if is_image:
        _check_image(data, file.name, settings)
    mime, _ = mimetypes.guess_type(file.name)
    return FileRef(filename=file.name, data=data, mime_type=mime, size=len(data)), is_image


def looks_like_image(head: bytes) -> bool:
    """Whether a file's first bytes are an image, broken or not; never judged by the file's name.

    Pillow recognises the header (a decompression bomb or a damaged header still counts), or
    the bytes start as a PNG, JPEG, GIF or WEBP does (the core calls such a file damaged).
    """
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        try:
            Image.open(io.BytesIO(head)).close()
        except UnidentifiedImageError:
            return describe_unreadable(head, "").reason == "corrupt"
        except Exception:  # a parser that knew the format failed on the header: a broken image
            return True
    return True


def byte_limit(settings: Settings, *, image: bool) -> tuple[int, str]:
    """The byte cap for an image or another file, and the setting it comes from."""
    if image:
        return settings.image_max_bytes, "image_max_bytes"
    return settings.file_max_bytes, "file_max_bytes"


def _read(file: Path, shown: str, settings: Settings) -> tuple[bytes, bool]:
    """The file's bytes and whether they are an image; refused before reading past the limit."""
    try:
        if not file.exists():
            raise ConsoleError(f"cannot read {shown}: no such file")
        if not file.is_file():
            raise ConsoleError(f"{shown} is not a file")
        with file.open("rb") as stream:
            head = stream.read(SNIFF_BYTES)
            is_image = looks_like_image(head)
            limit = byte_limit(settings, image=is_image)
            _check_size(file.name, os.fstat(stream.fileno()).st_size, limit)
            data = head + stream.read(max(0, limit[0] + 1 - len(head)))
    except OSError as exc:
        raise ConsoleError(f"cannot read {shown}: {exc.strerror or exc}") from None
    _check_size(file.name, len(data), limit)  # the file grew while it was read
    return data, is_image


def _check_image(data: bytes, file_name: str, settings: Settings) -> None:
    """What the core would refuse in an image is refused here, before anything is sent."""
    name = display_name(file_name)
    try:
        decode_image(
            data, name, max_pixels=settings.image_max_pixels, max_side=settings.image_max_side
        ).close()
    except ImageRefused as refusal:
        raise ConsoleError(refusal.user_message) from None
    except Exception:  # a decoder failing in a way the checks do not foresee
        raise ConsoleError(f"{name} could not be read as an image.") from None


def _check_count(count: int, limit: int, kind: str) -> None:
    """Refuse one image (or other file) more than go with one message."""
    if count > limit:
        raise ConsoleError(
            f"{count} {kind}; at most {limit} go with one message ({kind}_per_message)"
        )


def _check_size(name: str, size: int, limit: tuple[int, str]) -> None:
    max_bytes, setting = limit
    if size <= max_bytes:
        return
    most = _mib(max_bytes)
    if _mib(size) == most:
        raise ConsoleError(f"{name} is over the {most} limit ({setting})")
    raise ConsoleError(f"{name} is {_mib(size)}; the limit is {most} ({setting})")


def _mib(size: int) -> str:
    """Bytes in MiB, the unit of the image_max_bytes default: "20 MiB", "2.86 MiB"."""
    value = size / BYTES_PER_MIB
    text = f"{value:.2f}" if value >= 0.01 else f"{value:.2g}"
    return f"{text.rstrip('0').rstrip('.') if '.' in text else text} MiB"
