"""Test PDFs written by hand (text, scanned, broken, hostile) and with pypdf's writer (encrypted)."""

from __future__ import annotations

import functools
import io
import struct
import zlib
from collections.abc import Sequence

__all__ = [
    "bomb_pdf",
    "broken_pdf",
    "encrypted_pdf",
    "image_only_pdf",
    "make_pdf",
    "numbered_pages_pdf",
    "text_bomb_pdf",
    "text_pdf",
]

_FONT = b"<< /Type /Font /Subtype /Type1 /BaseFont /Helvetica >>"
LINE_HEIGHT = 14


def make_pdf(pages: Sequence[bytes], *, compress: bool = False, images: bool = False) -> bytes:
    """A PDF whose pages draw the given content streams (Helvetica as /F1; an 8×8 grey /Im1)."""
    objects: list[bytes] = [b"", b"", _FONT, _grey_image()]  # 1 catalog, 2 pages: filled below
    kids = []
    for content in pages:
        stream = zlib.compress(content) if compress else content
        filters = b" /Filter /FlateDecode" if compress else b""
        objects.append(
            b"<< /Length %d%s >>\nstream\n%s\nendstream" % (len(stream), filters, stream)
        )
        xobject = b" /XObject << /Im1 4 0 R >>" if images else b""
        objects.append(
            b"<< /Type /Page /Parent 2 0 R /MediaBox [0 0 612 792] /Contents %d 0 R "
            b"/Resources << /Font << /F1 3 0 R >>%s >> >>" % (len(objects), xobject)
        )
        kids.append(b"%d 0 R" % len(objects))
    objects[0] = b"<< /Type /Catalog /Pages 2 0 R >>"
    objects[1] = b"<< /Type /Pages /Kids [%s] /Count %d >>" % (b" ".join(kids), len(kids))
    return _assemble(objects)


def _assemble(objects: Sequence[bytes]) -> bytes:
    out = io.BytesIO()
    out.write(b"%PDF-1.7\n%\xe2\xe3\xcf\xd3\n")
    offsets = []
    for number, body in enumerate(objects, start=1):
        offsets.append(out.tell())
        out.write(b"%d 0 obj\n%s\nendobj\n" % (number, body))
    xref = out.tell()
    out.write(b"xref\n0 %d\n0000000000 65535 f \n" % (len(objects) + 1))
    for offset in offsets:
        out.write(b"%010d 00000 n \n" % offset)
    out.write(
        b"trailer\n<< /Size %d /Root 1 0 R >>\nstartxref\n%d\n%%%%EOF\n" % (len(objects) + 1, xref)
    )
    return out.getvalue()


def _grey_image() -> bytes:
    pixels = bytes([128]) * 64
    return (
        b"<< /Type /XObject /Subtype /Image /Width 8 /Height 8 /ColorSpace /DeviceGray "
        b"/BitsPerComponent 8 /Length %d >>\nstream\n%s\nendstream" % (len(pixels), pixels)
    )


def _text_content(lines: Sequence[str]) -> bytes:
    escaped = [
        line.replace("\\", "\\\\").replace("(", "\\(").replace(")", "\\)").encode("latin-1")
        for line in lines
    ]
    shown = b"".join(b"(%s) Tj 0 -%d Td\n" % (line, LINE_HEIGHT) for line in escaped)
    return b"BT /F1 11 Tf 72 740 Td\n" + shown + b"ET"


def text_pdf(pages: Sequence[Sequence[str]], *, compress: bool = True) -> bytes:
    """One page per list of lines, in Helvetica."""
    return make_pdf([_text_content(lines) for lines in pages], compress=compress)


@functools.cache
def numbered_pages_pdf(count: int, lines_per_page: int = 40) -> bytes:
    """`count` pages of running text, each line naming its page ("page 7, line 3: …")."""
    words = "the quarterly report shows revenue growing while costs held steady across regions"
    return text_pdf(
        [
            [f"page {page}, line {line}: {words}" for line in range(1, lines_per_page + 1)]
            for page in range(1, count + 1)
        ]
    )


def image_only_pdf() -> bytes:
    """A scan: one page that only draws an image."""
    return make_pdf([b"q 500 0 0 700 50 50 cm /Im1 Do Q"], images=True)


def broken_pdf() -> bytes:
    """A PDF header, then damage: no object, no cross-reference table, no trailer."""
    return b"%PDF-1.7\n" + bytes((i * 91) % 256 for i in range(3000))


def encrypted_pdf(user_password: str = "s3cret") -> bytes:
    """A text PDF encrypted with pypdf's writer (RC4: needs no crypto library to read)."""
    from pypdf import PdfReader, PdfWriter

    writer = PdfWriter(clone_from=PdfReader(io.BytesIO(text_pdf([["confidential figures"]]))))
    writer.encrypt(user_password=user_password, owner_password="owner", algorithm="RC4-128")
    out = io.BytesIO()
    writer.write(out)
    return out.getvalue()


@functools.cache
def bomb_pdf(inflated_mb: int = 512) -> bytes:
    """A one-page PDF whose FlateDecode content stream inflates from ~0.5 MB to `inflated_mb` MiB."""
    body = b"<< /Length %d /Filter /FlateDecode >>\nstream\n%s\nendstream"
    stream = _flate_of_spaces(inflated_mb)
    page = b"<< /Type /Page /Parent 2 0 R /MediaBox [0 0 612 792] /Contents 4 0 R >>"
    return _assemble(
        [
            b"<< /Type /Catalog /Pages 2 0 R >>",
            b"<< /Type /Pages /Kids [3 0 R] /Count 1 >>",
            page,
            body % (len(stream), stream),
        ]
    )


def _flate_of_spaces(megabytes: int) -> bytes:
    """A valid zlib stream of `megabytes` MiB of spaces, made without compressing them all.

    After a full flush deflate forgets what came before, so one flushed MiB is repeated as is;
    the checksum is computed the same way.
    """
    chunk = b" " * (1024 * 1024)
    squeeze = zlib.compressobj(9, zlib.DEFLATED, -15)  # raw deflate: the zlib frame is added here
    segment = squeeze.compress(chunk) + squeeze.flush(zlib.Z_FULL_FLUSH)
    checksum = 1
    for _ in range(megabytes):
        checksum = zlib.adler32(chunk, checksum)
    return b"\x78\xda" + segment * megabytes + squeeze.flush() + struct.pack(">I", checksum)


@functools.cache
def text_bomb_pdf(operators: int = 400_000) -> bytes:
    """A page of `operators` text-showing operators: small compressed, slow to walk through."""
    content = b"BT /F1 1 Tf " + b"(AAAAAAAA) Tj 1 0 Td " * operators + b"ET"
    return make_pdf([content], compress=True)
