"""HEIC/HEIF and AVIF photos: read from their bytes, oriented once, sent as JPEG, metadata never sent."""

from __future__ import annotations

import io
import struct
from collections.abc import AsyncIterator

import pillow_heif
import pytest
from PIL import AvifImagePlugin, Image, ImageFile

from bot.config import Settings
from bot.images import ImagePipeline, ImageRefused, prepare_image
from bot.images import prepare as prepare_module
from bot.images.prepare import downscale, reduce_photo
from bot.messages import ImageRef
from tests import images_corpus as corpus

LIMITS = {"max_pixels": 50_000_000, "max_side": 1120}
FORMATS = ("HEIF", "AVIF")


def decode(data: bytes) -> Image.Image:
    image = Image.open(io.BytesIO(data))
    image.load()
    return image


def close_to(pixel: object, colour: tuple[int, ...], tolerance: int = 40) -> bool:
    assert isinstance(pixel, tuple), pixel
    return all(abs(a - b) <= tolerance for a, b in zip(pixel, colour, strict=False))


def refusal_for(data: bytes, name: str, **limits: int) -> str:
    with pytest.raises(ImageRefused) as caught:
        prepare_image(data, name, **{**LIMITS, **limits})
    return caught.value.user_message


def assert_turned_once(data: bytes, orientation: int = 6) -> None:
    size, red_at, blue_at = corpus.ORIENTED[orientation]
    image = decode(data).convert("RGB")
    assert image.size == size
    assert close_to(image.getpixel(red_at), corpus.RED)
    assert close_to(image.getpixel(blue_at), corpus.BLUE)


@pytest.fixture
async def pipeline() -> AsyncIterator[ImagePipeline]:
    made = ImagePipeline(Settings())
    yield made
    await made.close()


def with_size_in_header(data: bytes, width: int, height: int) -> bytes:
    """`data` with its (only) `ispe` box declaring `width`×`height`: a bomb by its header."""
    assert data.count(b"ispe") == 1
    at = data.index(b"ispe") + 8  # after the type and the box's version and flags
    return data[:at] + struct.pack(">II", width, height) + data[at + 8 :]


# --- accepted --------------------------------------------------------------------------------


def test_pillow_reads_avif_and_pillow_heif_is_registered_without_thumbnails() -> None:
    assert prepare_module.AVIF_READABLE  # Pillow 11.2+ built with libavif, as pinned
    assert {"HEIF", "AVIF"} <= set(prepare_module.ALLOWED_FORMATS)
    assert "HEIF" in Image.OPEN  # registered when bot.images.prepare is imported
    assert pillow_heif.options.THUMBNAILS is False  # an embedded thumbnail is never decoded


@pytest.mark.parametrize("fmt", FORMATS)
def test_a_phone_photo_is_turned_upright_and_sent_as_jpeg(fmt: str) -> None:
    prepared = prepare_image(corpus.phone_photo(fmt, orientation=6), "IMG_0001.HEIC", **LIMITS)
    assert prepared.mime_type == "image/jpeg"
    assert decode(prepared.data).format == "JPEG"
    assert (prepared.width, prepared.height) == (200, 400)
    assert_turned_once(prepared.data)


@pytest.mark.parametrize("fmt", FORMATS)
def test_a_large_heic_or_avif_is_downscaled_to_the_long_side(fmt: str) -> None:
    image = Image.linear_gradient("L").resize((1600, 1200)).convert("RGB")
    data = corpus.encode(image, fmt, quality=60)
    prepared = prepare_image(data, "big", max_pixels=50_000_000, max_side=800)
    assert (prepared.width, prepared.height) == (800, 600)


@pytest.mark.parametrize("fmt", FORMATS)
def test_a_heic_or_avif_photo_is_box_reduced_by_a_whole_factor_like_a_jpeg_draft(fmt: str) -> None:
    """1500 px to at most 400: reduced 4×4 to 375 px (≥ 85% of 400) and sent without resampling."""
    image = Image.linear_gradient("L").resize((1500, 1000)).convert("RGB")
    data = corpus.encode(image, fmt, quality=60)
    prepared = prepare_image(data, "big", max_pixels=50_000_000, max_side=400)
    assert (prepared.width, prepared.height) == (375, 250)
    sent = decode(prepared.data)
    assert close_to(sent.getpixel((187, 125)), image.getpixel((750, 500)), tolerance=12)


@pytest.mark.parametrize(
    "size, sent",
    [((1500, 1000), (1120, 747)), ((1900, 1000), (1120, 589)), ((1904, 1000), (952, 500))],
)
def test_reduce_photo_keeps_at_least_the_jpeg_draft_s_share(
    size: tuple[int, int], sent: tuple[int, int]
) -> None:
    reduced = reduce_photo(Image.new("RGB", size), 1120)
    assert downscale(reduced, 1120).size == sent


@pytest.mark.parametrize("orientation", sorted(corpus.ORIENTED))
@pytest.mark.parametrize("fmt", FORMATS)
def test_every_orientation_of_a_heic_or_avif_is_applied_exactly_once(
    fmt: str, orientation: int
) -> None:
    prepared = prepare_image(corpus.phone_photo(fmt, orientation), "phone", **LIMITS)
    assert_turned_once(prepared.data, orientation)


def test_a_heic_orientation_left_in_its_exif_does_not_turn_it_twice(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """libheif applies irot/imir; the EXIF orientation of a HEIF is informative only (ISO 23008-12)."""
    monkeypatch.setattr(pillow_heif.as_plugin, "set_orientation", lambda info: None)
    data = corpus.phone_photo("HEIF", orientation=6)
    with Image.open(io.BytesIO(data)) as opened:
        assert opened.size == (200, 400)  # turned by libheif while decoding ...
        assert opened.getexif()[corpus.EXIF_ORIENTATION_TAG] == 6  # ... and the EXIF still says 6
    assert_turned_once(prepare_image(data, "phone.heic", **LIMITS).data)


@pytest.mark.parametrize("fmt", FORMATS)
def test_a_see_through_heic_or_avif_is_sent_as_png(fmt: str) -> None:
    data = corpus.phone_photo(fmt, orientation=6, see_through_blue=True)
    prepared = prepare_image(data, "sticker", **LIMITS)
    assert prepared.mime_type == "image/png"
    image = decode(prepared.data)
    assert image.mode == "RGBA" and image.size == (200, 400)
    assert close_to(image.getpixel((100, 20)), (*corpus.RED, 255))
    assert close_to(image.getpixel((100, 380)), (*corpus.BLUE, 128))


# --- nothing of the original's metadata reaches the model -------------------------------------

# Every format, as a phone or an editor writes it: EXIF with the camera and GPS, an XMP packet,
# an ICC profile (and a JPEG comment); "+alpha" is sent as PNG, the others as JPEG.
WITH_METADATA = {
    "heic": lambda: corpus.phone_photo("HEIF"),
    "avif": lambda: corpus.phone_photo("AVIF"),
    "heic+alpha": lambda: corpus.phone_photo("HEIF", see_through_blue=True),
    "avif+alpha": lambda: corpus.phone_photo("AVIF", see_through_blue=True),
    "jpeg": lambda: corpus.phone_photo("JPEG"),
    "webp": lambda: corpus.phone_photo("WEBP"),
    "png": lambda: corpus.phone_photo("PNG"),
    "png+alpha": lambda: corpus.phone_photo("PNG", see_through_blue=True),
}


@pytest.mark.parametrize("kind", sorted(WITH_METADATA))
def test_no_exif_gps_xmp_or_icc_profile_reaches_the_model(kind: str) -> None:
    data = WITH_METADATA[kind]()
    with Image.open(io.BytesIO(data)) as original:  # the file really carries all of it
        exif = original.getexif()
        assert exif[corpus.EXIF_MAKE_TAG] == corpus.CAMERA_MAKE
        assert exif.get_ifd(corpus.EXIF_GPS_IFD)
        assert "icc_profile" in original.info
    assert corpus.XMP_NAMESPACE in data and corpus.CAMERA_MAKE.encode() in data

    prepared = prepare_image(data, f"IMG_0001.{kind}", **LIMITS)
    sent = decode(prepared.data)
    assert sent.format == ("PNG" if kind.endswith("+alpha") else "JPEG")
    assert not sent.getexif()
    assert not sent.getexif().get_ifd(corpus.EXIF_GPS_IFD)
    assert not {"exif", "xmp", "icc_profile", "comment", "XML:com.adobe.xmp"} & set(sent.info)
    for marker in corpus.METADATA_MARKERS:
        assert marker not in prepared.data, marker
    for value in (corpus.CAMERA_MODEL, "52,22", "GlimpseTestCam firmware"):
        assert value.encode() not in prepared.data
    assert_turned_once(prepared.data)  # the orientation was used, then dropped with the rest


# --- bytes, not names ------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("fmt", "name", "mime"),
    [
        ("HEIF", "photo.jpg", "image/jpeg"),
        ("HEIF", "IMG_0001", None),
        ("HEIF", "scan.png", "application/octet-stream"),
        ("AVIF", "photo.jpg", "image/jpeg"),
        ("AVIF", "photo.webp", "image/webp"),
    ],
)
async def test_heic_and_avif_are_read_from_their_bytes_whatever_the_name_or_mime_type(
    pipeline: ImagePipeline, fmt: str, name: str, mime: str | None
) -> None:
    data = corpus.phone_photo(fmt)
    ref = ImageRef(filename=name, data=data, mime_type=mime, size=len(data))
    batch = await pipeline.prepare([ref])
    assert batch.refusals == ()
    [prepared] = batch.images
    assert prepared.mime_type == "image/jpeg" and prepared.label == name
    assert_turned_once(prepared.data)


async def test_a_heic_with_gps_goes_through_the_pipeline_and_loses_its_gps(
    pipeline: ImagePipeline,
) -> None:
    data = corpus.phone_photo("HEIF")
    ref = ImageRef(filename="IMG_4032.HEIC", data=data, mime_type="image/heic", size=len(data))
    [prepared] = (await pipeline.prepare([ref])).images
    assert not decode(prepared.data).getexif()
    assert b"Exif" not in prepared.data and corpus.CAMERA_MAKE.encode() not in prepared.data


# --- refused ---------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "data",
    [
        pytest.param(corpus.truncated("HEIF"), id="heic-cut-in-half"),
        pytest.param(corpus.truncated("AVIF"), id="avif-cut-in-half"),
        pytest.param(corpus.HEIC_BYTES, id="heic-ftyp-only"),
        pytest.param(corpus.phone_photo("HEIF")[:200], id="heic-first-200-bytes"),
        pytest.param(corpus.phone_photo("AVIF")[:200], id="avif-first-200-bytes"),
        # The pixels' last 40 bytes (a phone photo's file ends with its XMP packet, which newer
        # libheif reads only when asked for it, so cutting that is cutting metadata, not the image).
        pytest.param(
            corpus.heic_bytes(corpus.left_red_right_blue())[:-40], id="heic-last-40-bytes-missing"
        ),
    ],
)
def test_a_broken_heic_or_avif_is_refused_as_damaged(data: bytes) -> None:
    assert refusal_for(data, "iphone.jpg") == (
        "iphone.jpg is damaged or incomplete and could not be read."
    )


@pytest.mark.parametrize("fmt", FORMATS)
def test_a_heic_or_avif_bomb_is_refused_from_its_header(
    fmt: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    def no_decoding(self: ImageFile.ImageFile) -> None:
        raise AssertionError("pixels were decoded")

    for plugin in (ImageFile.ImageFile, pillow_heif.as_plugin._LibHeifImageFile):
        monkeypatch.setattr(plugin, "load", no_decoding)
    monkeypatch.setattr(AvifImagePlugin.AvifImageFile, "load", no_decoding)
    bomb = with_size_in_header(corpus.phone_photo(fmt, orientation=1), 9000, 9000)
    assert refusal_for(bomb, "bomb.heic") == (
        "bomb.heic is 9000×9000 pixels (81 megapixels); the limit is 50 megapixels."
    )


@pytest.mark.parametrize("fmt", FORMATS)
def test_the_configured_pixel_limit_holds_for_heic_and_avif(fmt: str) -> None:
    message = refusal_for(corpus.phone_photo(fmt), "phone", max_pixels=50_000)
    assert message.startswith("phone is 200×400 pixels") or message.startswith(
        "phone is 400×200 pixels"
    )


def test_avif_is_named_when_this_pillow_cannot_read_it(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(prepare_module, "AVIF_READABLE", False)
    without_avif = tuple(f for f in prepare_module.ALLOWED_FORMATS if f != "AVIF")
    monkeypatch.setattr(prepare_module, "ALLOWED_FORMATS", without_avif)
    message = refusal_for(corpus.phone_photo("AVIF"), "photo.avif")
    assert message == (
        "photo.avif is an AVIF image, not an image Glimpse can read; send a PNG, JPEG, WEBP or GIF."
    )
