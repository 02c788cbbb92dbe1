"""Turn untrusted image bytes into a safe, oriented, downscaled and re-encoded image (CPU, synchronous)."""

from __future__ import annotations

import contextlib
import io
import math
import warnings
from typing import cast

import pillow_heif
from PIL import Image, ImageFile, ImageOps, UnidentifiedImageError

from bot.images.errors import ImageRefused, display_name
from bot.turns import PreparedImage

__all__ = [
    "ALLOWED_FORMATS",
    "AVIF_READABLE",
    "JPEG_QUALITY",
    "decode_image",
    "describe_unreadable",
    "encode_image",
    "jpeg_draft_request",
    "prepare_image",
    "reduce_photo",
]

# HEIC/HEIF (iPhone photos) through pillow-heif, registered once, here. Embedded thumbnails, depth
# maps and auxiliary images are never sent, so they are not even parsed.
pillow_heif.register_heif_opener(thumbnails=False, depth_images=False, aux_images=False)
# libheif applies a HEIF's rotation and mirroring (irot/imir) as it decodes; the EXIF orientation
# in a HEIF is informative only (ISO/IEC 23008-12), so it is never applied on top. pillow-heif
# resets it to 1 as well, but only where its own EXIF parser reaches it.
_ORIENTED_WHEN_DECODED = ("HEIF",)
# AVIF through Pillow's own plugin (Pillow 11.2 and later, when built with libavif). It reports
# irot/imir as the EXIF orientation and decodes the pixels as stored, so `_orient` turns them once.
try:
    from PIL import AvifImagePlugin

    AVIF_READABLE = bool(AvifImagePlugin.SUPPORTED)
except ImportError:
    AVIF_READABLE = False
# Pillow format ids we decode; MPO is the multi-picture JPEG many phone cameras write. Each is
# recognised by its bytes (Image.open asks each plugin), never by the file's name or MIME type.
ALLOWED_FORMATS = ("PNG", "JPEG", "WEBP", "GIF", "HEIF", *(("AVIF",) if AVIF_READABLE else ()))
_JPEG_FORMATS = ("JPEG", "MPO")
# Photos whose codec cannot decode at a reduced size: box-reduced like a JPEG draft (`reduce_photo`).
_BOX_REDUCED_FORMATS = ("HEIF", "AVIF")
ALLOWED_FORMATS_TEXT = "PNG, JPEG, WEBP or GIF"
JPEG_QUALITY = 85
PNG_COMPRESS_LEVEL = 6
# Above this a transparent PNG is also tried as a 256-colour palette PNG, and the smaller kept.
PNG_SOFT_LIMIT_BYTES = 1024 * 1024
PALETTE_COLOURS = 256
# Shrinking 3x or more, an image is first box-reduced by a whole factor, leaving the resampling
# at least RESIZE_REDUCING_GAP to shrink (Pillow's reducing_gap). A 4K screenshot to 1120 px is
# reduced by 2, then resampled 1.7x: 34 ms instead of 61 ms, at 42 dB PSNR against a full
# Lanczos resize. Shrinking less, Pillow's "reduce" by 1 would be only a copy, so it is skipped.
RESIZE_REDUCING_GAP = 1.5
_REDUCE_FROM_SCALE = 2 * RESIZE_REDUCING_GAP
# A JPEG draft (libjpeg DCT scaling, 1/2 to 1/8) at least this share of max_side is sent as decoded:
# a 12 MP photo goes out at 1000 px from a 1/4-scale decode instead of 2000 px resampled to 1120.
JPEG_DRAFT_MIN_SHARE = 0.85
# Huffman-table optimisation costs a second pass (about half the encode time) for ~4 % fewer bytes.
JPEG_OPTIMIZE = False
PIXELS_PER_MEGAPIXEL = 1_000_000
_SIXTEEN_BIT_MODES = ("I;16", "I;16L", "I;16B", "I;16N", "I")
_ALPHA_MODES = ("RGBA", "RGBa", "LA", "La", "PA")

_ALLOWED_MAGIC = (
    b"\x89PNG\r\n\x1a\n",
    b"\xff\xd8\xff",
    b"GIF87a",
    b"GIF89a",
)
# Pillow warns about images between its MAX_IMAGE_PIXELS and twice that. Glimpse's own limit is
# never above Pillow's (`_effective_pixel_limit`) and is checked from the header before decoding,
# so each such image is refused in a sentence already: the warning would only leak to stderr.
warnings.filterwarnings("ignore", category=Image.DecompressionBombWarning)

# The `ftyp` major brands pillow-heif opens (HEVC-coded HEIF, and the generic image brands).
_HEIF_BRANDS = frozenset(b"heic heix hevc hevx heim heis hevm hevs mif1 msf1".split())
_AVIF_BRANDS = frozenset((b"avif", b"avis"))
# Nothing of the original's metadata is written: no EXIF (GPS, camera, orientation), no XMP, no
# ICC profile, no comment. Pillow's encoders take some of it from `image.info` unless told not
# to (JPEG: the comment; PNG: the ICC profile), and decoded images still carry it there.
_NO_METADATA: dict[str, object] = {"exif": b"", "icc_profile": None, "xmp": None, "comment": b""}


def prepare_image(data: bytes, name: str, *, max_pixels: int, max_side: int) -> PreparedImage:
    """Validate, orient, downscale and re-encode; raise ImageRefused for anything not a safe image."""
    name = display_name(name)
    return encode_image(
        decode_image(data, name, max_pixels=max_pixels, max_side=max_side), label=name
    )


def decode_image(data: bytes, name: str, *, max_pixels: int, max_side: int) -> Image.Image:
    """Decode untrusted bytes into an RGB or RGBA image whose long side is at most `max_side`."""
    if not data:
        raise ImageRefused(f"{name} is empty.", reason="empty")
    limit = _effective_pixel_limit(max_pixels)
    image = _open(data, name, limit)
    try:
        _check_pixels(image, name, limit)
        if image.format in _JPEG_FORMATS:
            image.draft("RGB", jpeg_draft_request(image.size, max_side))
            # The bytes are in memory already: hand libjpeg all of them in one call rather than
            # 64 KB at a time (0.3–0.7 ms less for a 4 MB photo; truncation is still caught).
            if isinstance(image, ImageFile.ImageFile):
                image.decodermaxblock = max(image.decodermaxblock, len(data))
        _load(image, name, limit)
        if image.format not in _ORIENTED_WHEN_DECODED:
            _orient(image)
    except BaseException:
        image.close()
        raise
    normal = _normalise_mode(image)
    if image.format in _BOX_REDUCED_FORMATS:
        normal = reduce_photo(normal, max_side)
    return downscale(normal, max_side)


def encode_image(image: Image.Image, label: str) -> PreparedImage:
    """JPEG for opaque images, PNG (kept small) when the image has real transparency."""
    if image.mode == "RGBA":
        data, mime = _encode_png(image), "image/png"
    else:
        rgb = image if image.mode == "RGB" else image.convert("RGB")
        data, mime = _encode_jpeg(rgb), "image/jpeg"
    return PreparedImage(
        data=data, mime_type=mime, width=image.width, height=image.height, label=label
    )


def jpeg_draft_request(size: tuple[int, int], max_side: int) -> tuple[int, int]:
    """The size to ask a JPEG draft for: libjpeg picks the smallest DCT scale at least this large."""
    return fit_within(size, max(1, math.ceil(max_side * JPEG_DRAFT_MIN_SHARE)))


def reduce_photo(image: Image.Image, max_side: int) -> Image.Image:
    """Box-reduced by the largest whole factor that keeps the long side at least the JPEG draft's.

    What a JPEG's DCT-scaled draft is to a JPEG photo, for HEIC and AVIF photos, whose codecs have
    no reduced-size decode: a 4032 px HEIC goes out at 1008 px, averaged 4×4 (~11 ms of CPU), not
    resampled to 1120 px (~50 ms). A factor that would leave the long side above `max_side` only
    shortens the resampling `downscale` does next.
    """
    least = max(1, math.ceil(max_side * JPEG_DRAFT_MIN_SHARE))
    factor = max(image.size) // least
    return image.reduce(factor) if factor >= 2 else image


def fit_within(size: tuple[int, int], max_side: int) -> tuple[int, int]:
    """`size` scaled down (never up) so its long side is at most `max_side`; each side at least 1."""
    width, height = size
    long_side = max(width, height)
    if long_side <= max_side:
        return width, height
    scale = max_side / long_side
    return max(1, min(max_side, round(width * scale))), max(1, min(max_side, round(height * scale)))


def downscale(image: Image.Image, max_side: int) -> Image.Image:
    target = fit_within(image.size, max_side)
    if target == image.size:
        return image
    # Bicubic is a third faster than Lanczos here, with no difference a vision model can see at 1120 px.
    scale = max(image.size) / max(target)
    gap = RESIZE_REDUCING_GAP if scale >= _REDUCE_FROM_SCALE else None
    return image.resize(target, Image.Resampling.BICUBIC, reducing_gap=gap)


def describe_unreadable(data: bytes, name: str) -> ImageRefused:
    """A refusal that says what the bytes really are, when that can be told from their first bytes."""
    if _is_readable_kind(data):
        return _damaged(name)
    kind = _sniff_kind(data)
    if kind is None:
        return ImageRefused(
            f"{name} is not an image Glimpse can read; send a {ALLOWED_FORMATS_TEXT}.",
            reason="format",
        )
    return ImageRefused(
        f"{name} is {kind}, not an image Glimpse can read; send a {ALLOWED_FORMATS_TEXT}.",
        reason="format",
    )


def _is_readable_kind(data: bytes) -> bool:
    """Whether the first bytes say a format Glimpse decodes (so failing to decode it is damage)."""
    if data.startswith(_ALLOWED_MAGIC) or (data[:4] == b"RIFF" and data[8:12] == b"WEBP"):
        return True
    brand = data[8:12] if data[4:8] == b"ftyp" else None
    return brand in _HEIF_BRANDS or (AVIF_READABLE and brand in _AVIF_BRANDS)


def _sniff_kind(data: bytes) -> str | None:
    head = data[:512]
    text_head = head.lstrip(b"\xef\xbb\xbf \t\r\n").lower()
    if head.startswith(b"%PDF"):
        return "a PDF document"
    if head.startswith((b"PK\x03\x04", b"PK\x05\x06")):
        return "a ZIP archive"
    if head[4:8] == b"ftyp":
        brand = head[8:12]
        if brand in _AVIF_BRANDS:  # only reached when this Pillow cannot read AVIF
            return "an AVIF image"
        return "a video or MP4-family file"
    if text_head.startswith(b"<svg") or (
        text_head.startswith(b"<?xml") and b"<svg" in data[:4096].lower()
    ):
        return "an SVG drawing"
    if text_head.startswith((b"<!doctype html", b"<html")):
        return "a web page (the bot may lack permission to read the file)"
    if head.startswith(b"BM"):
        return "a BMP image"
    if head.startswith((b"II*\x00", b"MM\x00*")):
        return "a TIFF image"
    if _looks_like_text(head):
        return "a text file"
    return None


def _looks_like_text(head: bytes) -> bool:
    try:
        text = head.decode("utf-8")
    except UnicodeDecodeError:
        return False
    return all(ch.isprintable() or ch in "\r\n\t" for ch in text)


def _effective_pixel_limit(max_pixels: int) -> int:
    # Pillow warns above MAX_IMAGE_PIXELS and errors above twice that; both count as refusals here.
    pillow_limit = Image.MAX_IMAGE_PIXELS
    return max_pixels if pillow_limit is None else min(max_pixels, pillow_limit)


def _too_many_pixels(name: str, limit: int, size: tuple[int, int] | None = None) -> ImageRefused:
    limit_text = f"{limit / PIXELS_PER_MEGAPIXEL:g} megapixels"
    if size is None:
        return ImageRefused(
            f"{name} has too many pixels; the limit is {limit_text}.", reason="pixels"
        )
    width, height = size
    return ImageRefused(
        f"{name} is {width}×{height} pixels ({width * height / PIXELS_PER_MEGAPIXEL:.0f} megapixels); "
        f"the limit is {limit_text}.",
        reason="pixels",
    )


def _damaged(name: str) -> ImageRefused:
    return ImageRefused(f"{name} is damaged or incomplete and could not be read.", reason="corrupt")


def _open(data: bytes, name: str, pixel_limit: int) -> Image.Image:
    """Read only the header, restricted to the allowed formats."""
    try:
        return Image.open(io.BytesIO(data), formats=ALLOWED_FORMATS)
    except Image.DecompressionBombError:
        raise _too_many_pixels(name, pixel_limit) from None
    except UnidentifiedImageError:
        raise describe_unreadable(data, name) from None
    except Exception:  # Pillow's parsers raise many types on hostile headers
        raise _damaged(name) from None


def _check_pixels(image: Image.Image, name: str, pixel_limit: int) -> None:
    """The decompression-bomb guard, from the header's size, before any pixel is decoded."""
    width, height = image.size
    if width < 1 or height < 1:
        raise _damaged(name)
    if width * height > pixel_limit:
        raise _too_many_pixels(name, pixel_limit, image.size)


def _load(image: Image.Image, name: str, pixel_limit: int) -> None:
    """Decode fully (the first frame of an animation) so truncation surfaces here as a refusal."""
    try:
        image.load()
    except Image.DecompressionBombError:
        raise _too_many_pixels(name, pixel_limit, image.size) from None
    except MemoryError:
        raise _too_many_pixels(name, pixel_limit, image.size) from None
    except Exception:  # truncated or corrupt data: OSError, SyntaxError, ValueError, EOFError, ...
        raise _damaged(name) from None


def _orient(image: Image.Image) -> None:
    """Apply the EXIF orientation in place; a broken EXIF block leaves the image as stored.

    In place, an image that needs no turning is not copied (2.6 ms for a 4K screenshot).
    """
    # malformed EXIF must not cost the user the image
    with contextlib.suppress(Exception):
        ImageOps.exif_transpose(image, in_place=True)


def _normalise_mode(image: Image.Image) -> Image.Image:
    """RGBA when some pixel is see-through, otherwise RGB (8 bits per channel)."""
    if image.mode in _SIXTEEN_BIT_MODES:
        image = image.point(lambda value: value / 256).convert("L")
    elif image.mode == "F":
        image = image.convert("L")
    if image.mode in _ALPHA_MODES or "transparency" in image.info:
        rgba = image.convert("RGBA")
        return rgba if _has_transparency(rgba) else rgba.convert("RGB")
    return image if image.mode == "RGB" else image.convert("RGB")


def _has_transparency(rgba: Image.Image) -> bool:
    lowest_alpha, _ = cast(tuple[int, int], rgba.getchannel("A").getextrema())
    return lowest_alpha < 255


def _encode_jpeg(image: Image.Image) -> bytes:
    buffer = io.BytesIO()
    image.save(buffer, "JPEG", quality=JPEG_QUALITY, optimize=JPEG_OPTIMIZE, **_NO_METADATA)
    return buffer.getvalue()


def _encode_png(image: Image.Image) -> bytes:
    buffer = io.BytesIO()
    image.save(buffer, "PNG", compress_level=PNG_COMPRESS_LEVEL, **_NO_METADATA)
    full = buffer.getvalue()
    if len(full) <= PNG_SOFT_LIMIT_BYTES:
        return full
    palette = image.quantize(PALETTE_COLOURS, method=Image.Quantize.FASTOCTREE)
    buffer = io.BytesIO()
    palette.save(buffer, "PNG", optimize=True, **_NO_METADATA)
    small = buffer.getvalue()
    return small if len(small) < len(full) else full
