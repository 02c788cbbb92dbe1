"""Compose several images into one numbered grid, for models that read one image per request."""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass

from PIL import Image, ImageDraw, ImageFont, features

__all__ = ["GridLayout", "choose_layout", "compose_grid", "grid_label"]

GRID_GAP_PX = 8
GRID_BACKGROUND = (48, 48, 48)
LABEL_BOX_COLOUR = (0, 0, 0)
LABEL_TEXT_COLOUR = (255, 255, 255)
LABEL_OUTLINE_PX = 2
LABEL_MIN_PX = 16
LABEL_MAX_PX = 48
LABEL_CELL_FRACTION = 10  # label text height ~ 1/10 of the cell's short side
MIN_CELL_ASPECT = 1 / 3
MAX_CELL_ASPECT = 3.0


@dataclass(frozen=True, slots=True)
class GridLayout:
    columns: int
    rows: int
    cell_width: int
    cell_height: int

    @property
    def size(self) -> tuple[int, int]:
        return (
            self.columns * self.cell_width + (self.columns - 1) * GRID_GAP_PX,
            self.rows * self.cell_height + (self.rows - 1) * GRID_GAP_PX,
        )

    def cell_origin(self, index: int) -> tuple[int, int]:
        row, column = divmod(index, self.columns)
        return column * (self.cell_width + GRID_GAP_PX), row * (self.cell_height + GRID_GAP_PX)


def grid_label(names: Sequence[str]) -> str:
    """How the model is told which number is which attachment."""
    parts = ", ".join(f"{number} = {name}" for number, name in enumerate(names, start=1))
    return f"grid of {len(names)} images: {parts}"


def choose_layout(sizes: Sequence[tuple[int, int]], max_side: int) -> GridLayout:
    """The rows × columns arrangement (long side ≤ max_side) that shows the most image area."""
    count = len(sizes)
    cell_aspect = _mean_aspect(sizes)
    best: tuple[float, GridLayout] | None = None
    for columns in range(1, count + 1):
        rows = math.ceil(count / columns)
        if columns * rows - count >= columns:
            continue  # a whole empty row
        layout = _fit_cells(columns, rows, cell_aspect, max_side)
        if layout is None:
            continue
        shown = sum(
            _contained_area(size, (layout.cell_width, layout.cell_height)) for size in sizes
        )
        if best is None or shown > best[0]:
            best = (shown, layout)
    if best is None:
        raise ValueError(f"{count} images do not fit in a {max_side} px grid")
    return best[1]


def compose_grid(images: Sequence[Image.Image], max_side: int) -> Image.Image:
    """One RGB image, long side ≤ max_side, with "1", "2", … boxed in each picture's top-left corner."""
    layout = choose_layout([image.size for image in images], max_side)
    canvas = Image.new("RGB", layout.size, GRID_BACKGROUND)
    draw = ImageDraw.Draw(canvas)
    font = _label_font(min(layout.cell_width, layout.cell_height))
    for index, image in enumerate(images):
        x, y = _paste_in_cell(canvas, image, layout, index)
        _draw_number(draw, font, str(index + 1), (x, y))
    return canvas


def _mean_aspect(sizes: Sequence[tuple[int, int]]) -> float:
    logs = [math.log(width / height) for width, height in sizes]
    aspect = math.exp(sum(logs) / len(logs))
    return min(MAX_CELL_ASPECT, max(MIN_CELL_ASPECT, aspect))


def _fit_cells(columns: int, rows: int, cell_aspect: float, max_side: int) -> GridLayout | None:
    """Cells of the given aspect, as large as the canvas's long-side limit allows."""
    usable_width = max_side - (columns - 1) * GRID_GAP_PX
    usable_height = max_side - (rows - 1) * GRID_GAP_PX
    cell_height = min(usable_width / (columns * cell_aspect), usable_height / rows)
    cell_width = math.floor(cell_height * cell_aspect)
    if cell_width < 1 or cell_height < 1:
        return None
    return GridLayout(columns, rows, cell_width, math.floor(cell_height))


def _contained_area(size: tuple[int, int], cell: tuple[int, int]) -> float:
    scale = min(cell[0] / size[0], cell[1] / size[1])
    return size[0] * size[1] * scale * scale


def _paste_in_cell(
    canvas: Image.Image, image: Image.Image, layout: GridLayout, index: int
) -> tuple[int, int]:
    """Scale `image` to fit its cell, centre it there, and return its top-left corner."""
    scale = min(layout.cell_width / image.width, layout.cell_height / image.height)
    size = (max(1, round(image.width * scale)), max(1, round(image.height * scale)))
    size = (min(size[0], layout.cell_width), min(size[1], layout.cell_height))
    fitted = image if size == image.size else image.resize(size, Image.Resampling.LANCZOS)
    cell_x, cell_y = layout.cell_origin(index)
    x = cell_x + (layout.cell_width - size[0]) // 2
    y = cell_y + (layout.cell_height - size[1]) // 2
    mask = fitted.getchannel("A") if fitted.mode == "RGBA" else None
    canvas.paste(fitted.convert("RGB"), (x, y), mask)
    return x, y


def _label_font(cell_short_side: int) -> ImageFont.FreeTypeFont | ImageFont.ImageFont:
    size = max(LABEL_MIN_PX, min(LABEL_MAX_PX, cell_short_side // LABEL_CELL_FRACTION))
    if features.check("freetype2"):
        return ImageFont.load_default(size=size)
    return ImageFont.load_default()


def _draw_number(
    draw: ImageDraw.ImageDraw,
    font: ImageFont.FreeTypeFont | ImageFont.ImageFont,
    text: str,
    corner: tuple[int, int],
) -> None:
    """A black box with a white outline and white digits, inset from the picture's corner."""
    left, top, right, bottom = draw.textbbox((0, 0), text, font=font)
    text_height = bottom - top
    padding = max(4, text_height // 3)
    box_x, box_y = corner[0] + LABEL_OUTLINE_PX, corner[1] + LABEL_OUTLINE_PX
    box = (box_x, box_y, box_x + (right - left) + 2 * padding, box_y + text_height + 2 * padding)
    draw.rectangle(box, fill=LABEL_BOX_COLOUR, outline=LABEL_TEXT_COLOUR, width=LABEL_OUTLINE_PX)
    draw.text(
        (box_x + padding - left, box_y + padding - top), text, font=font, fill=LABEL_TEXT_COLOUR
    )
