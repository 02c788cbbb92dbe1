"""Local files for `glimpse chat`: read and checked before anything is sent, refused in one line."""

from __future__ import annotations

import mimetypes
from collections.abc import Sequence
from pathlib import Path

from bot.config import Settings
from bot.images.errors import ImageRefused, display_name
from bot.images.prepare import decode_image
from bot.messages import ImageRef

__all__ = ["BYTES_PER_MIB", "ConsoleError", "check_count", "load_images", "local_image", "mib"]

BYTES_PER_MIB = 1024 * 1024


class ConsoleError(Exception):
    """A terminal-side refusal (a missing, oversized or unreadable image file); shown as is."""


def load_images(paths: Sequence[str], settings: Settings) -> list[ImageRef]:
    """The `--image` files, each checked: any that cannot be used raises ConsoleError."""
    check_count(len(paths), settings)
    return [local_image(path, settings) for path in paths]


def local_image(path: str, settings: Settings) -> ImageRef:
    """Read and check an image file: what the core would refuse is refused here, before sending."""
    file = Path(path).expanduser()
    data = _read_file(file, path, settings.image_max_bytes)
    name = display_name(file.name)
    try:
        decode_image(
            data, name, max_pixels=settings.image_max_pixels, max_side=settings.image_max_side
        ).close()
    except ImageRefused as refusal:
        raise ConsoleError(refusal.user_message) from None
    except Exception:  # a decoder failing in a way the checks do not foresee
        raise ConsoleError(f"{name} could not be read as an image.") from None
    mime, _ = mimetypes.guess_type(file.name)
    return ImageRef(filename=file.name, data=data, mime_type=mime, size=len(data))


def check_count(count: int, settings: Settings) -> None:
    """Refuse more images than go with one message (images_per_message)."""
    limit = settings.images_per_message
    if count > limit:
        raise ConsoleError(
            f"{count} images; at most {limit} go with one message (images_per_message)"
        )


def mib(size: int) -> str:
    """Bytes in MiB, the unit of the image_max_bytes default: "20 MiB", "2.86 MiB"."""
    value = size / BYTES_PER_MIB
    text = f"{value:.2f}" if value >= 0.01 else f"{value:.2g}"
    return f"{text.rstrip('0').rstrip('.') if '.' in text else text} MiB"


def _read_file(file: Path, shown: str, max_bytes: int) -> bytes:
    """The file's bytes; refused before reading if it is not a regular file or over the limit."""
    try:
        if not file.exists():
            raise ConsoleError(f"cannot read {shown}: no such file")
        if not file.is_file():
            raise ConsoleError(f"{shown} is not a file")
        _check_size(file.name, file.stat().st_size, max_bytes)
        data = file.read_bytes()
    except OSError as exc:
        raise ConsoleError(f"cannot read {shown}: {exc.strerror or exc}") from None
    _check_size(file.name, len(data), max_bytes)
    return data


def _check_size(name: str, size: int, max_bytes: int) -> None:
    if size <= max_bytes:
        return
    limit = mib(max_bytes)
    if mib(size) == limit:
        raise ConsoleError(f"{name} is over the {limit} limit (image_max_bytes)")
    raise ConsoleError(f"{name} is {mib(size)}; the limit is {limit} (image_max_bytes)")
