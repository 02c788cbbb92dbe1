"""P2: a 12 MP phone photo (JPEG, and HEIC beside the same photo as JPEG) and a 4K screenshot through
prepare_image, on one core, against sending the raw file."""

from __future__ import annotations

import base64
import io
import multiprocessing
import os
import random
import statistics
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from multiprocessing.connection import Connection

import pillow_heif
from PIL import Image, ImageChops, ImageDraw, ImageFilter, ImageFont

from bot.config import Settings
from bot.images import prepare_image
from bot.images.prepare import decode_image, encode_image, jpeg_draft_request
from bot.turns import PreparedImage

__all__ = [
    "ImageResult",
    "make_heic_pair",
    "make_photo",
    "make_screenshot",
    "measure_images",
    "pin_to_one_core",
]

PHOTO_SIZE = (4000, 3000)  # 12 MP, 4:3 like a phone camera
SCREEN_SIZE = (3840, 2160)  # 4K UHD
PHOTO_QUALITY = 92  # what phone cameras write
PHONE_SIZE = (4032, 3024)  # an iPhone's 12 MP, for the HEIC and its JPEG twin
# x265 at quality 50 writes this scene in ~3 MB, as an iPhone writes a detailed 12 MP HEIC, and in
# 512-px grid tiles, as iPhones do. The preset only sets how long making the file takes here.
HEIC_QUALITY = 50
HEIC_TILE_PX = 512
HEIC_ENCODER_PARAMS = {"preset": "fast"}
_WITH_FLOOR = ("JPEG", "HEIF")  # formats whose least decode cost is measured (floor_ms)
GRAIN_LEVELS = 34  # sensor-noise amplitude: makes the JPEG about as large as a real 12 MP photo
SEED = 12
CHILD_TIMEOUT_SECONDS = 300.0
WORDS = (
    "deploy build cache worker queue retry timeout latency request response token model image "
    "thread channel message review merge branch commit config error warning status health"
).split()


@dataclass(frozen=True, slots=True)
class ImageResult:
    """One image through the pipeline, and the usual approach (the raw file as a data: URL)."""

    name: str
    file_bytes: int
    size: tuple[int, int]
    sent_size: tuple[int, int]
    sent_mime: str
    median_ms: float  # wall clock, pinned to one core
    p90_ms: float
    cpu_ms: float  # median CPU time: the same on an idle machine
    runs: int
    sent_url_chars: int
    raw_url_chars: int
    raw_encode_ms: float
    decode_ms: float  # CPU: Pillow open + JPEG draft + load, the first step of decode_image
    decode_image_ms: float  # CPU: decode_image (decode, EXIF orientation, mode, downscale)
    encode_ms: float  # CPU: encode_image of the downscaled image
    # CPU: the least any decoder spends on this file: for a JPEG libjpeg-turbo's 1/8-scale decode,
    # which still entropy-decodes every coefficient; for a HEIC libheif's full decode to RGB alone
    # (pillow_heif.open_heif, no Pillow image made), HEVC having no reduced-size decode (None for
    # other formats). Timed in turns with prepare_image, so the two share the machine's drift.
    floor_ms: float | None = None
    floor_wall_ms: float | None = None  # the same floor's median wall time
    # CPU: the median over the turns of (prepare_image − the floor) in the same turn: Glimpse's own
    # work above the decode, steadier than the difference of the two medians on a busy machine
    above_floor_cpu_ms: float | None = None
    # A HEIC's JPEG twin (the same pixels at PHOTO_QUALITY), timed in turns with it: its median
    # wall and CPU ms through prepare_image, and its size; None for other images
    twin_ms: float | None = None
    twin_cpu_ms: float | None = None
    twin_bytes: int | None = None

    @property
    def bytes_ratio(self) -> float:
        """Bytes Glimpse sends ÷ bytes of the raw file sent base64-encoded (the usual approach)."""
        return self.sent_url_chars / self.raw_url_chars

    @property
    def floor_ratio(self) -> float | None:
        """prepare_image ÷ the decode floor, median wall times of the same runs."""
        return None if not self.floor_wall_ms else self.median_ms / self.floor_wall_ms

    @property
    def floor_cpu_ratio(self) -> float | None:
        """prepare_image ÷ the decode floor, median CPU times of the same runs."""
        return None if not self.floor_ms else self.cpu_ms / self.floor_ms

    @property
    def twin_ratio(self) -> float | None:
        """A HEIC's prepare_image time ÷ its JPEG twin's (median wall, timed in turns)."""
        return None if self.twin_ms is None else self.median_ms / self.twin_ms


def pin_to_one_core() -> int | None:
    """Run this process on one CPU (the last one); its number, or None where that is not possible."""
    if not hasattr(os, "sched_setaffinity"):
        return None
    cpu = max(os.sched_getaffinity(0))
    os.sched_setaffinity(0, {cpu})
    return cpu


def _noise(size: tuple[int, int], rng: random.Random, levels: int) -> Image.Image:
    """Uniform grey noise in [0, levels), deterministic for a seed."""
    noise = Image.frombytes("L", size, rng.randbytes(size[0] * size[1]))
    return noise.point(lambda value: value * levels // 256)


def _scene(size: tuple[int, int], rng: random.Random) -> Image.Image:
    """Sky and ground, hills, a lake and trees: smooth areas and edges, like a landscape photo."""
    width, height = size
    sky = Image.linear_gradient("L").resize(size)
    bands = (
        sky.point(lambda v: 90 + v // 3),
        sky.point(lambda v: 140 + v // 4),
        sky.point(lambda v: 230 - v // 5),
    )
    image = Image.merge("RGB", bands)
    draw = ImageDraw.Draw(image)
    for index in range(6):
        top = int(height * (0.35 + 0.05 * index))
        ridge = [(x, top + rng.randint(-90, 90)) for x in range(0, width + 200, 200)]
        colour = (40 + 15 * index, 90 + 10 * index, 40 + 5 * index)
        draw.polygon([(0, height), *ridge, (width, height)], fill=colour)
    draw.ellipse((width * 0.1, height * 0.62, width * 0.9, height * 0.95), fill=(50, 90, 130))
    for _ in range(400):
        x, y = rng.randint(0, width), rng.randint(int(height * 0.3), height)
        r = rng.randint(8, 60)
        draw.ellipse((x - r, y - 3 * r, x + r, y + r), fill=(20, rng.randint(60, 120), 30))
    return image.filter(ImageFilter.GaussianBlur(3))


def _photo_pixels(size: tuple[int, int]) -> Image.Image:
    """A blurred landscape with per-channel grain, compressing like a camera's photo."""
    rng = random.Random(SEED)
    scene = _scene(size, rng)
    offset = -GRAIN_LEVELS // 2
    bands = [
        ImageChops.add(band, _noise(size, rng, GRAIN_LEVELS), offset=offset)
        for band in scene.split()
    ]
    return Image.merge("RGB", bands)


def _encoded(image: Image.Image, fmt: str, **params: object) -> bytes:
    buffer = io.BytesIO()
    image.save(buffer, fmt, **params)
    return buffer.getvalue()


def make_photo(size: tuple[int, int] = PHOTO_SIZE) -> bytes:
    """A photo-like JPEG, as a camera writes it."""
    return _encoded(_photo_pixels(size), "JPEG", quality=PHOTO_QUALITY)


def make_heic_pair(size: tuple[int, int] = PHONE_SIZE) -> tuple[bytes, bytes]:
    """The same photo-like pixels as an iPhone-like HEIC and as a camera JPEG: (heic, jpeg)."""
    pixels = _photo_pixels(size)
    heic = _encoded(
        pixels,
        "HEIF",
        quality=HEIC_QUALITY,
        tile_size=HEIC_TILE_PX,
        enc_params=HEIC_ENCODER_PARAMS,
    )
    return heic, _encoded(pixels, "JPEG", quality=PHOTO_QUALITY)


def _line(rng: random.Random, words: int) -> str:
    return " ".join(rng.choice(WORDS) for _ in range(words))


def make_screenshot(size: tuple[int, int] = SCREEN_SIZE) -> bytes:
    """A 4K PNG of a desktop UI: title bar, sidebar, a code editor and a chat pane full of text."""
    rng = random.Random(SEED)
    width, height = size
    scale = width / SCREEN_SIZE[0]
    image = Image.new("RGB", size, (246, 247, 249))
    draw = ImageDraw.Draw(image)
    font = ImageFont.load_default(size=max(8, round(22 * scale)))
    step = max(10, round(34 * scale))
    draw.rectangle((0, 0, width, 3 * step), fill=(36, 41, 47))
    draw.text((step, step), "glimpse - review: streaming sink", fill=(230, 230, 230), font=font)
    sidebar, editor = int(width * 0.16), int(width * 0.62)
    draw.rectangle((0, 3 * step, sidebar, height), fill=(235, 237, 240))
    for row, y in enumerate(range(4 * step, height - step, step)):
        draw.text((step, y), f"{row:02d} {_line(rng, 2)}", fill=(60, 60, 60), font=font)
    draw.rectangle((sidebar, 3 * step, editor, height), fill=(30, 30, 30))
    palette = [(86, 156, 214), (206, 145, 120), (181, 206, 168), (220, 220, 170), (212, 212, 212)]
    for row, y in enumerate(range(4 * step, height - step, step)):
        indent = step * rng.randint(0, 4)
        text = f"{row + 1:4d}  " + _line(rng, rng.randint(3, 9))
        draw.text((sidebar + step + indent, y), text, fill=rng.choice(palette), font=font)
    for y in range(4 * step, height - 4 * step, 5 * step):
        draw.rounded_rectangle(
            (editor + step, y, width - step, y + 4 * step),
            radius=step // 2,
            fill=(255, 255, 255),
            outline=(210, 214, 220),
        )
        draw.text((editor + 2 * step, y + step // 2), _line(rng, 7), fill=(30, 30, 30), font=font)
        draw.text((editor + 2 * step, y + 2 * step), _line(rng, 9), fill=(90, 90, 90), font=font)
    buffer = io.BytesIO()
    image.save(buffer, "PNG", optimize=False, compress_level=6)
    return buffer.getvalue()


@dataclass(frozen=True, slots=True)
class _Timed:
    median_ms: float  # wall clock
    p90_ms: float
    # the process's CPU time, every thread's (libheif decodes in threads of its own): what the
    # wall time would be on an idle core
    cpu_ms: float
    result: object
    cpu_samples: tuple[float, ...] = ()  # each run's CPU ms, in the order of the turns


def _median_ms(work: Callable[[], object], runs: int) -> _Timed:
    return _interleaved_ms([work], runs)[0]


def _interleaved_ms(works: Sequence[Callable[[], object]], runs: int) -> list[_Timed]:
    """Each of `works` timed `runs` times, taking turns, so a machine that drifts moves all alike."""
    walls: list[list[float]] = [[] for _ in works]
    cpus: list[list[float]] = [[] for _ in works]
    results: list[object] = [None for _ in works]
    for _ in range(runs):
        for index, work in enumerate(works):
            started, cpu = time.perf_counter(), time.process_time()
            results[index] = work()
            walls[index].append(1000 * (time.perf_counter() - started))
            cpus[index].append(1000 * (time.process_time() - cpu))
    timed = []
    for wall, cpu_ms, result in zip(walls, cpus, results, strict=True):
        wall.sort()
        timed.append(
            _Timed(
                statistics.median(wall),
                wall[int(0.9 * (len(wall) - 1))],
                statistics.median(cpu_ms),
                result,
                tuple(cpu_ms),
            )
        )
    return timed


def _decoded(data: bytes, draft: Callable[[tuple[int, int]], tuple[int, int]]) -> Image.Image:
    """`data` decoded, a JPEG at the DCT scale libjpeg picks for `draft(its size)`."""
    image = Image.open(io.BytesIO(data))
    if image.format == "JPEG":
        image.draft("RGB", draft(image.size))
    image.load()
    return image


def _floor(data: bytes, kind: str | None) -> Callable[[], object]:
    """The least decode of `data`: a JPEG at 1/8 scale; a HEIC by libheif alone, to RGB."""
    if kind == "HEIF":
        return lambda: pillow_heif.open_heif(data, convert_hdr_to_8bit=True)[0].data
    return lambda: _decoded(data, _eighth)


def _eighth(size: tuple[int, int]) -> tuple[int, int]:
    """libjpeg's smallest DCT scale, 1/8: Huffman decoding and little else."""
    return -(-size[0] // 8), -(-size[1] // 8)


def _steps_ms(data: bytes, name: str, runs: int) -> tuple[float, float, float]:
    """CPU medians of the pipeline's steps, timed in turns: raw decode, decode_image, encode_image."""
    settings = Settings()
    max_pixels, max_side = settings.image_max_pixels, settings.image_max_side
    image = decode_image(data, name, max_pixels=max_pixels, max_side=max_side)
    decode, decoded, encode = _interleaved_ms(
        [
            # the same DCT scale decode_image asks for
            lambda: _decoded(data, lambda size: jpeg_draft_request(size, max_side)),
            lambda: decode_image(data, name, max_pixels=max_pixels, max_side=max_side),
            lambda: encode_image(image, name),
        ],
        runs,
    )
    return decode.cpu_ms, decoded.cpu_ms, encode.cpu_ms


def _preparing(data: bytes, name: str) -> Callable[[], PreparedImage]:
    settings = Settings()
    max_pixels, max_side = settings.image_max_pixels, settings.image_max_side
    return lambda: prepare_image(data, name, max_pixels=max_pixels, max_side=max_side)


def measure_image(
    name: str, data: bytes, mime: str, runs: int, *, twin: bytes | None = None
) -> ImageResult:
    """Median milliseconds of prepare_image on `data`, and what it sends against the raw file.

    `twin`: the same photo in another format (a HEIC's JPEG), timed in turns with `data`.
    """
    prepare = _preparing(data, name)
    with Image.open(io.BytesIO(data)) as original:
        size, kind = original.size, original.format
    works: list[Callable[[], object]] = [prepare]
    # the floor is taken in turns with the pipeline, so drift cannot split them
    if kind in _WITH_FLOOR:
        works.append(_floor(data, kind))
    if twin is not None:
        works.append(_preparing(twin, "twin.jpg"))
    for work in works:
        work()  # warm up: Pillow's plugins and codecs load on first use
    timed, *others = _interleaved_ms(works, runs)
    floor = others.pop(0) if kind in _WITH_FLOOR else None
    twin_timed = others.pop(0) if twin is not None else None
    prepared = timed.result
    assert isinstance(prepared, PreparedImage)
    raw = _median_ms(lambda: f"data:{mime};base64,{base64.b64encode(data).decode('ascii')}", runs)
    decode_ms, decode_image_ms, encode_ms = _steps_ms(data, name, max(3, runs // 2))
    return ImageResult(
        name=name,
        file_bytes=len(data),
        size=size,
        sent_size=(prepared.width, prepared.height),
        sent_mime=prepared.mime_type,
        median_ms=timed.median_ms,
        p90_ms=timed.p90_ms,
        cpu_ms=timed.cpu_ms,
        runs=runs,
        sent_url_chars=len(prepared.data_url()),
        raw_url_chars=len(str(raw.result)),
        raw_encode_ms=raw.median_ms,
        decode_ms=decode_ms,
        decode_image_ms=decode_image_ms,
        encode_ms=encode_ms,
        floor_ms=floor.cpu_ms if floor is not None else None,
        floor_wall_ms=floor.median_ms if floor is not None else None,
        above_floor_cpu_ms=(
            statistics.median(
                p - f for p, f in zip(timed.cpu_samples, floor.cpu_samples, strict=True)
            )
            if floor is not None
            else None
        ),
        twin_ms=twin_timed.median_ms if twin_timed is not None else None,
        twin_cpu_ms=twin_timed.cpu_ms if twin_timed is not None else None,
        twin_bytes=len(twin) if twin is not None else None,
    )


def _child(conn: Connection, scale: float, runs: int) -> None:
    """In a child process pinned to one core: make the images and measure them."""
    cpu = pin_to_one_core()
    photo = make_photo(_scaled(PHOTO_SIZE, scale))
    screenshot = make_screenshot(_scaled(SCREEN_SIZE, scale))
    heic, heic_as_jpeg = make_heic_pair(_scaled(PHONE_SIZE, scale))
    conn.send(
        (
            cpu,
            [
                measure_image("photo.jpg", photo, "image/jpeg", runs),
                measure_image("screenshot.png", screenshot, "image/png", runs),
                measure_image("photo.heic", heic, "image/heic", runs, twin=heic_as_jpeg),
            ],
        )
    )


def _scaled(size: tuple[int, int], scale: float) -> tuple[int, int]:
    return round(size[0] * scale), round(size[1] * scale)


def measure_images(scale: float, runs: int) -> tuple[int | None, list[ImageResult]]:
    """Every image measured in a fresh child process on one core; (that core, results)."""
    context = multiprocessing.get_context("spawn")
    parent, child = context.Pipe()
    process = context.Process(target=_child, args=(child, scale, runs))
    process.start()
    try:
        if not parent.poll(CHILD_TIMEOUT_SECONDS):
            raise RuntimeError("the image benchmark did not finish")
        result: tuple[int | None, list[ImageResult]] = parent.recv()
        return result
    finally:
        process.join(10)
        if process.is_alive():
            process.terminate()
