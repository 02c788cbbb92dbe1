"""Test images made with Pillow (and a few hand-built files): good, broken, hostile and not-images."""

from __future__ import annotations

import functools
import io
import struct
import zipfile
import zlib

import pillow_heif
from PIL import Image, ImageCms, ImageDraw
from PIL.PngImagePlugin import PngInfo

RED = (220, 20, 20)
GREEN = (20, 200, 20)
BLUE = (20, 20, 220)
PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"
EXIF_ORIENTATION_TAG = 0x0112
EXIF_MAKE_TAG = 0x010F
EXIF_MODEL_TAG = 0x0110
EXIF_GPS_IFD = 0x8825
CAMERA_MAKE = "GlimpseTestCam"
CAMERA_MODEL = "Pocket 12 Pro"
# Where the photo was taken, in the EXIF GPS IFD: 52°22'1.5"N 4°53'2"E.
GPS_TAGS = {1: "N", 2: (52.0, 22.0, 1.5), 3: "E", 4: (4.0, 53.0, 2.0)}
XMP_NAMESPACE = b"http://ns.adobe.com/xap/1.0/"
XMP_PACKET = (
    b'<?xpacket begin="" id="W5M0MpCehiHzreSzNTczkc9d"?>'
    b'<x:xmpmeta xmlns:x="adobe:ns:meta/"><rdf:RDF '
    b'xmlns:rdf="http://www.w3.org/1999/02/22-rdf-syntax-ns#"><rdf:Description '
    b'xmlns:xmp="' + XMP_NAMESPACE + b'" xmlns:exif="http://ns.adobe.com/exif/1.0/" '
    b'xmp:CreatorTool="GlimpseTestCam firmware" exif:GPSLatitude="52,22.025N"/>'
    b'</rdf:RDF></x:xmpmeta><?xpacket end="w"?>'
)
# What must never reach the model: the markers of each kind of metadata, and the camera's name.
METADATA_MARKERS = (
    b"Exif",
    XMP_NAMESPACE,
    b"xpacket",
    b"ICC_PROFILE",
    b"iCCP",
    CAMERA_MAKE.encode(),
)

pillow_heif.register_heif_opener()  # to write HEIC test files (bot.images.prepare registers it too)


def encode(image: Image.Image, fmt: str, **params: object) -> bytes:
    buffer = io.BytesIO()
    image.save(buffer, fmt, **params)
    return buffer.getvalue()


def solid(
    size: tuple[int, int], colour: int | tuple[int, ...] = GREEN, mode: str = "RGB"
) -> Image.Image:
    return Image.new(mode, size, colour)


def jpeg_bytes(
    size: tuple[int, int] = (640, 480), colour: tuple[int, int, int] = GREEN, **params: object
) -> bytes:
    return encode(solid(size, colour), "JPEG", quality=90, **params)


def png_bytes(
    size: tuple[int, int] = (320, 240), colour: int | tuple[int, ...] = BLUE, mode: str = "RGB"
) -> bytes:
    return encode(solid(size, colour, mode), "PNG")


@functools.cache
def photo_12mp_jpeg() -> bytes:
    """A 4000×3000 JPEG with some structure (a 12-megapixel phone photo)."""
    image = Image.new("RGB", (4000, 3000), (90, 140, 200))
    draw = ImageDraw.Draw(image)
    for index in range(0, 4000, 250):
        draw.rectangle((index, 0, index + 120, 3000), fill=(200, 160 + index % 90, 60))
    return encode(image, "JPEG", quality=80)


def left_red_right_blue_jpeg(orientation: int) -> bytes:
    """400×200 stored pixels: left half red, right half blue, with the given EXIF orientation."""
    exif = Image.Exif()
    exif[EXIF_ORIENTATION_TAG] = orientation
    return encode(left_red_right_blue(), "JPEG", quality=95, exif=exif)


def left_red_right_blue(*, see_through_blue: bool = False) -> Image.Image:
    """400×200 pixels: left half red, right half blue (RGBA, half transparent, if asked)."""
    image = Image.new("RGB", (400, 200), BLUE)
    ImageDraw.Draw(image).rectangle((0, 0, 199, 199), fill=RED)
    if not see_through_blue:
        return image
    alpha = Image.new("L", image.size, 255)
    ImageDraw.Draw(alpha).rectangle((200, 0, 399, 199), fill=128)
    image.putalpha(alpha)
    return image


def camera_exif(orientation: int = 1) -> Image.Exif:
    """EXIF as a phone writes it: camera make and model, an orientation and where it was taken."""
    exif = Image.Exif()
    exif[EXIF_MAKE_TAG] = CAMERA_MAKE
    exif[EXIF_MODEL_TAG] = CAMERA_MODEL
    exif[EXIF_ORIENTATION_TAG] = orientation
    exif.get_ifd(EXIF_GPS_IFD).update(GPS_TAGS)
    return exif


@functools.cache
def srgb_icc_profile() -> bytes:
    return ImageCms.ImageCmsProfile(ImageCms.createProfile("sRGB")).tobytes()


def phone_photo(fmt: str, orientation: int = 6, *, see_through_blue: bool = False) -> bytes:
    """`left_red_right_blue` in `fmt` with everything a phone puts around the pixels.

    EXIF (camera, GPS, `orientation`), an XMP packet and an ICC profile. HEIF and AVIF writers
    store the orientation as the container's rotation and mirroring (irot/imir), as phones do.
    """
    params: dict[str, object] = {
        "exif": camera_exif(orientation).tobytes(),
        "xmp": XMP_PACKET,
        "icc_profile": srgb_icc_profile(),
    }
    if fmt in ("HEIF", "AVIF", "JPEG", "WEBP"):
        params["quality"] = 95
    if fmt == "JPEG":
        params["comment"] = b"shot by " + CAMERA_MAKE.encode()
    if fmt == "PNG":
        params["pnginfo"] = _png_xmp()
    return encode(left_red_right_blue(see_through_blue=see_through_blue), fmt, **params)


def _png_xmp() -> PngInfo:
    info = PngInfo()
    info.add_itxt("XML:com.adobe.xmp", XMP_PACKET.decode())
    return info


def heic_bytes(image: Image.Image, **params: object) -> bytes:
    return encode(image, "HEIF", **{"quality": 90, **params})


def avif_bytes(image: Image.Image, **params: object) -> bytes:
    return encode(image, "AVIF", **{"quality": 90, **params})


def truncated(fmt: str) -> bytes:
    """A noise image (every byte matters) in `fmt`, cut in half."""
    data = encode(Image.effect_noise((400, 300), 64).convert("RGB"), fmt, quality=90)
    return data[: len(data) // 2]


def transparent_png(size: tuple[int, int] = (300, 200)) -> bytes:
    """RGBA: opaque red on the left half, fully transparent on the right."""
    image = Image.new("RGBA", size, (0, 0, 0, 0))
    ImageDraw.Draw(image).rectangle((0, 0, size[0] // 2 - 1, size[1]), fill=(*RED, 255))
    return encode(image, "PNG")


def opaque_rgba_png(size: tuple[int, int] = (300, 200)) -> bytes:
    """RGBA whose alpha is 255 everywhere: no real transparency."""
    return png_bytes(size, (*GREEN, 255), mode="RGBA")


def animated_gif(colours: tuple[tuple[int, int, int], ...] = (RED, GREEN, BLUE)) -> bytes:
    frames = [solid((120, 90), colour) for colour in colours]
    return encode(frames[0], "GIF", save_all=True, append_images=frames[1:], duration=100, loop=0)


def webp_bytes(size: tuple[int, int] = (500, 300), colour: tuple[int, int, int] = RED) -> bytes:
    return encode(solid(size, colour), "WEBP", quality=90)


def truncated_jpeg() -> bytes:
    data = encode(Image.effect_noise((400, 300), 64).convert("RGB"), "JPEG", quality=90)
    return data[: len(data) // 2]


def corrupt_png() -> bytes:
    """A valid PNG header whose compressed pixel data is overwritten with garbage."""
    data = bytearray(encode(Image.effect_noise((200, 200), 64), "PNG"))
    start = data.index(b"IDAT") + 4 + 20
    data[start : start + 200] = bytes(range(200))
    return bytes(data)


def _png_chunk(kind: bytes, payload: bytes) -> bytes:
    return (
        struct.pack(">I", len(payload))
        + kind
        + payload
        + struct.pack(">I", zlib.crc32(kind + payload))
    )


def bomb_png(width: int = 100_000, height: int = 100_000) -> bytes:
    """A tiny file whose IHDR declares `width`×`height` 8-bit grey pixels (a decompression bomb)."""
    header = struct.pack(">IIBBBBB", width, height, 8, 0, 0, 0, 0)
    pixels = zlib.compress(b"\x00" * 1024)
    return (
        PNG_SIGNATURE
        + _png_chunk(b"IHDR", header)
        + _png_chunk(b"IDAT", pixels)
        + _png_chunk(b"IEND", b"")
    )


SVG_BYTES = (
    b'<?xml version="1.0"?>\n<svg xmlns="http://www.w3.org/2000/svg" width="10" height="10"></svg>'
)
PDF_BYTES = b"%PDF-1.7\n1 0 obj\n<< /Type /Catalog >>\nendobj\ntrailer\n<< /Root 1 0 R >>\n%%EOF\n"
# An `ftyp` box saying HEIC and nothing else: a HEIC photo cut after its first bytes.
HEIC_BYTES = b"\x00\x00\x00\x18ftypheic\x00\x00\x00\x00mif1heic" + b"\x00" * 64
MP4_BYTES = b"\x00\x00\x00\x18ftypmp42\x00\x00\x00\x00mp42isom" + b"\x00" * 64
TEXT_BYTES = b"this is not a photo, just some notes\n"


def zip_bytes() -> bytes:
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w") as archive:
        archive.writestr("photo.jpg", jpeg_bytes((16, 16)))
    return buffer.getvalue()


# Where the stored image's left (red) half ends up, per EXIF orientation: (size, red pixel, blue pixel).
ORIENTED = {
    1: ((400, 200), (100, 100), (300, 100)),
    2: ((400, 200), (300, 100), (100, 100)),  # mirrored
    3: ((400, 200), (300, 100), (100, 100)),  # turned 180°
    4: ((400, 200), (100, 100), (300, 100)),  # mirrored top to bottom
    5: ((200, 400), (100, 100), (100, 300)),  # transposed
    6: ((200, 400), (100, 100), (100, 300)),  # turned 90° clockwise
    7: ((200, 400), (100, 300), (100, 100)),  # transversed
    8: ((200, 400), (100, 300), (100, 100)),  # turned 90° anticlockwise
}
