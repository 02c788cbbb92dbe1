"""What an attachment's bytes are, told from the bytes alone (never the name or the platform's MIME type)."""

from __future__ import annotations

import codecs
import enum
import re
import struct
from dataclasses import dataclass

__all__ = ["Kind", "Sniffed", "is_text", "sniff"]

SAMPLE_BYTES = 64 * 1024  # enough to tell text from binary; the whole file is checked when read
# Readers accept "%PDF-" anywhere in the first KiB (junk before it is common).
PDF_MAGIC_WINDOW = 1024
UTF16_PROBE_BYTES = 4096
# Without a BOM, UTF-16 text of mostly ASCII has a NUL in every other byte: at odd offsets for
# little-endian, even for big-endian. At least this share of one half and almost none of the other.
UTF16_NUL_SHARE = 0.3
UTF16_OTHER_NUL_SHARE = 0.05
# "Few" control characters: at most one in this many characters (besides tab, newlines, form feed
# and ESC, which coloured logs are full of); an undecodable byte (U+FFFD) counts as one too.
CHARS_PER_BAD_CHAR = 100

_JPEG = b"\xff\xd8\xff"
_PNG = b"\x89PNG\r\n\x1a\n"
_GIFS = (b"GIF87a", b"GIF89a")
_TIFFS = (b"II*\x00", b"MM\x00*", b"II+\x00", b"MM\x00+")  # classic and BigTIFF, both byte orders
_BMP_HEADER_SIZES = frozenset({12, 40, 52, 56, 64, 108, 124})  # the DIB header sizes Pillow knows
# ISO-BMFF brands of still images: HEIF/HEIC (iPhone photos) and AVIF; MP4 and MOV are videos.
_IMAGE_BRANDS = frozenset(b"heic heix hevc hevx heim heis mif1 mif2 msf1 avif avis".split())
_BOMS = (  # UTF-32 first: its little-endian BOM starts with UTF-16's
    (codecs.BOM_UTF32_LE, "utf-32"),
    (codecs.BOM_UTF32_BE, "utf-32"),
    (codecs.BOM_UTF8, "utf-8-sig"),
    (codecs.BOM_UTF16_LE, "utf-16"),
    (codecs.BOM_UTF16_BE, "utf-16"),
)
_BAD_CHARS = re.compile("[\x01-\x08\x0b\x0e-\x1a\x1c-\x1f\x7f-\x9f\ufffd]")


class Kind(enum.Enum):
    """Where an attachment goes: the image pipeline, PDF text extraction, inlined text, or a note."""

    IMAGE = "image"
    PDF = "pdf"
    TEXT = "text"
    OTHER = "other"


@dataclass(frozen=True, slots=True)
class Sniffed:
    """What the bytes are; for text, the codec that reads all of them."""

    kind: Kind
    encoding: str = ""


def sniff(data: bytes) -> Sniffed:
    """Image signatures first (a PNG named .txt is an image), then PDF, then text; else OTHER."""
    if _is_image(data):
        return Sniffed(Kind.IMAGE)
    if b"%PDF-" in data[:PDF_MAGIC_WINDOW]:
        return Sniffed(Kind.PDF)
    encoding = _text_encoding(data)
    if encoding is not None:
        return Sniffed(Kind.TEXT, encoding)
    return Sniffed(Kind.OTHER)


def is_text(text: str) -> bool:
    """Decoded characters that read as text: no NUL, few control characters or undecodable bytes."""
    if "\x00" in text:
        return False
    return len(_BAD_CHARS.findall(text)) * CHARS_PER_BAD_CHAR <= len(text)


def _is_image(data: bytes) -> bool:
    if data.startswith((_JPEG, _PNG, *_GIFS, *_TIFFS)):
        return True
    if data[:4] == b"RIFF" and data[8:12] == b"WEBP":
        return True
    if data[:2] == b"BM" and len(data) >= 18:  # "BM" alone starts plenty of text files
        return struct.unpack_from("<I", data, 14)[0] in _BMP_HEADER_SIZES
    return _is_still_image_box(data)


def _is_still_image_box(data: bytes) -> bool:
    """An ISO-BMFF file whose `ftyp` box names a HEIF or AVIF brand (major or compatible)."""
    if data[4:8] != b"ftyp" or len(data) < 16:
        return False
    box_size = min(struct.unpack_from(">I", data, 0)[0], 256, len(data))
    brands = [data[8:12]] + [data[at : at + 4] for at in range(16, box_size - 3, 4)]
    return any(brand in _IMAGE_BRANDS for brand in brands)


def _text_encoding(data: bytes) -> str | None:
    """The codec the sample decodes with as text (BOM, else UTF-16 by its NULs, else UTF-8); None."""
    encoding = next((codec for bom, codec in _BOMS if data.startswith(bom)), None)
    encoding = encoding or _utf16_without_bom(data) or "utf-8"
    sample = data[:SAMPLE_BYTES]
    decoder = codecs.getincrementaldecoder(encoding)(errors="replace")
    # A sample cut inside a character waits for the rest instead of counting as undecodable.
    text = decoder.decode(sample, final=len(sample) == len(data))
    return encoding if text and is_text(text) else None


def _utf16_without_bom(data: bytes) -> str | None:
    probe = data[: UTF16_PROBE_BYTES - UTF16_PROBE_BYTES % 2]
    probe = probe[: len(probe) - len(probe) % 2]
    if not probe:
        return None
    half = len(probe) // 2
    even, odd = probe[0::2].count(0) / half, probe[1::2].count(0) / half
    if odd >= UTF16_NUL_SHARE and even <= UTF16_OTHER_NUL_SHARE:
        return "utf-16-le"
    if even >= UTF16_NUL_SHARE and odd <= UTF16_OTHER_NUL_SHARE:
        return "utf-16-be"
    return None
