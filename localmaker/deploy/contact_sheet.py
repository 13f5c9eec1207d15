"""Renders a parameter sweep as one labelled picture: rows are guidance, columns are step counts.

People compare images faster than they read tables, so the sweep's first output is this sheet; the
table of seconds sits beside it for the numbers.
"""

from __future__ import annotations

import textwrap
from collections.abc import Sequence
from dataclasses import dataclass

from PIL import Image, ImageDraw, ImageFont

BACKGROUND = (250, 250, 250)
INK = (20, 20, 20)
MUTED = (110, 110, 110)
LINE_HEIGHT = 16
MIN_CELL = 128  # tiny test images are shown enlarged, so captions fit under them
MAX_CELL = 256


@dataclass(frozen=True)
class SheetCell:
    row: int
    column: int
    image: Image.Image
    caption: str  # may hold a newline: one line of setting, one of timing


@dataclass(frozen=True)
class SheetLayout:
    cell_size: int
    title_lines: int = 1
    margin: int = 12
    row_label_width: int = 110
    caption_height: int = 2 * LINE_HEIGHT + 4

    @property
    def header_height(self) -> int:
        return self.title_lines * LINE_HEIGHT + 8 + LINE_HEIGHT + 6  # title, gap, column labels

    def cell_origin(self, row: int, column: int) -> tuple[int, int]:
        x = self.margin + self.row_label_width + column * (self.cell_size + self.margin)
        y = self.margin + self.header_height + row * (self.cell_size + self.caption_height + self.margin)
        return x, y

    def canvas_size(self, rows: int, columns: int) -> tuple[int, int]:
        width = self.margin + self.row_label_width + columns * (self.cell_size + self.margin)
        height = self.margin + self.header_height + rows * (self.cell_size + self.caption_height + self.margin)
        return width, height


def cell_size_for(images: Sequence[Image.Image]) -> int:
    return max(MIN_CELL, min(MAX_CELL, max(image.width for image in images)))


def _font(size: int) -> ImageFont.ImageFont | ImageFont.FreeTypeFont:
    try:
        return ImageFont.load_default(size=size)
    except TypeError:  # Pillow < 10.1 has only the fixed bitmap font
        return ImageFont.load_default()


def wrap_title(title: str, width_px: int) -> list[str]:
    # The default font is about 7 px a character at 13 pt: wrap by characters, no font metrics needed.
    return textwrap.wrap(title, width=max(20, width_px // 7)) or [""]


def _fit(image: Image.Image, size: int) -> Image.Image:
    # Enlarged tiny images keep their pixels crisp; large ones are downsampled smoothly.
    resample = Image.Resampling.NEAREST if image.width < size else Image.Resampling.LANCZOS
    return image.convert("RGB").resize((size, size), resample)


def render_contact_sheet(cells: Sequence[SheetCell], row_labels: Sequence[str], column_labels: Sequence[str],
                         title: str, cell_size: int | None = None) -> Image.Image:
    """One canvas with a wrapped title, column headers, row labels, and each image over its caption."""
    if not cells:
        raise ValueError("a contact sheet needs at least one cell")
    size = cell_size or cell_size_for([cell.image for cell in cells])
    width, _ = SheetLayout(cell_size=size).canvas_size(len(row_labels), len(column_labels))
    title_lines = wrap_title(title, width - 2 * 12)
    layout = SheetLayout(cell_size=size, title_lines=len(title_lines))
    sheet = Image.new("RGB", layout.canvas_size(len(row_labels), len(column_labels)), BACKGROUND)
    draw = ImageDraw.Draw(sheet)
    small, label = _font(11), _font(13)
    for number, line in enumerate(title_lines):
        draw.text((layout.margin, layout.margin + number * LINE_HEIGHT), line, fill=INK, font=label)
    for column, text in enumerate(column_labels):
        x, y = layout.cell_origin(0, column)
        draw.text((x, y - LINE_HEIGHT - 4), text, fill=INK, font=label)
    for row, text in enumerate(row_labels):
        _, y = layout.cell_origin(row, 0)
        draw.text((layout.margin, y + size // 2 - 7), text, fill=INK, font=label)
    for cell in cells:
        x, y = layout.cell_origin(cell.row, cell.column)
        sheet.paste(_fit(cell.image, size), (x, y))
        for number, line in enumerate(cell.caption.splitlines()):
            draw.text((x, y + size + 3 + number * LINE_HEIGHT), line, fill=MUTED, font=small)
    return sheet
