"""Renders a parameter sweep as one labelled picture: rows are guidance, columns are step counts.

People compare images faster than they read tables, so the sweep's first output is this sheet; the
table of seconds sits beside it for the numbers.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

from PIL import Image, ImageDraw, ImageFont

BACKGROUND = (250, 250, 250)
INK = (20, 20, 20)
MUTED = (110, 110, 110)


@dataclass(frozen=True)
class SheetCell:
    row: int
    column: int
    image: Image.Image
    caption: str


@dataclass(frozen=True)
class SheetLayout:
    cell_size: int
    margin: int = 12
    row_label_width: int = 110
    header_height: int = 44
    caption_height: int = 20

    def cell_origin(self, row: int, column: int) -> tuple[int, int]:
        x = self.margin + self.row_label_width + column * (self.cell_size + self.margin)
        y = self.margin + self.header_height + row * (self.cell_size + self.caption_height + self.margin)
        return x, y

    def canvas_size(self, rows: int, columns: int) -> tuple[int, int]:
        width = self.margin + self.row_label_width + columns * (self.cell_size + self.margin)
        height = self.margin + self.header_height + rows * (self.cell_size + self.caption_height + self.margin)
        return width, height


def _font(size: int) -> ImageFont.ImageFont | ImageFont.FreeTypeFont:
    try:
        return ImageFont.load_default(size=size)
    except TypeError:  # Pillow < 10.1 has only the fixed bitmap font
        return ImageFont.load_default()


def render_contact_sheet(cells: Sequence[SheetCell], row_labels: Sequence[str], column_labels: Sequence[str],
                         title: str, cell_size: int | None = None) -> Image.Image:
    """One canvas with a title, column headers, row labels, and each cell's image over its caption."""
    if not cells:
        raise ValueError("a contact sheet needs at least one cell")
    size = cell_size or max(64, min(256, max(cell.image.width for cell in cells)))
    layout = SheetLayout(cell_size=size)
    sheet = Image.new("RGB", layout.canvas_size(len(row_labels), len(column_labels)), BACKGROUND)
    draw = ImageDraw.Draw(sheet)
    small, label = _font(11), _font(13)
    draw.text((layout.margin, layout.margin), title, fill=INK, font=label)
    for column, text in enumerate(column_labels):
        x, _ = layout.cell_origin(0, column)
        draw.text((x, layout.margin + layout.header_height - 18), text, fill=INK, font=label)
    for row, text in enumerate(row_labels):
        _, y = layout.cell_origin(row, 0)
        draw.text((layout.margin, y + size // 2 - 7), text, fill=INK, font=label)
    for cell in cells:
        x, y = layout.cell_origin(cell.row, cell.column)
        sheet.paste(cell.image.convert("RGB").resize((size, size), Image.Resampling.LANCZOS), (x, y))
        draw.text((x, y + size + 4), cell.caption, fill=MUTED, font=small)
    return sheet
