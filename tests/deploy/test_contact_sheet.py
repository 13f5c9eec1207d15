"""The sweep's outputs without an endpoint: the sheet's grid geometry and the table of seconds."""

from __future__ import annotations

import base64
import csv
import io
import json

import numpy as np
from PIL import Image

from localmaker.deploy.contact_sheet import SheetCell, SheetLayout, render_contact_sheet
from localmaker.deploy.deserializers import ImageDeserializer
from localmaker.deploy.sweep import SweepResult, SweepSettings, contact_sheet, write_table


def _solid(color: tuple[int, int, int], size: int = 64) -> Image.Image:
    return Image.new("RGB", (size, size), color)


def _results(guidances, steps) -> list[SweepResult]:
    return [SweepResult(g, s, seconds=0.1 * s, per_step_ms=100.0,
                        image=_solid((int(g * 20) % 256, s % 256, 128)))
            for g in guidances for s in steps]


def test_sheet_is_a_grid_of_guidance_rows_and_step_columns():
    settings = SweepSettings(prompt="astronaut", guidance_scales=[5, 7.5, 9], step_counts=[20, 40])
    sheet = contact_sheet(_results([5, 7.5, 9], [20, 40]), settings)
    layout = SheetLayout(cell_size=128)  # 64-pixel images are shown enlarged to the minimum cell
    assert sheet.size == layout.canvas_size(rows=3, columns=2)
    # each cell's centre shows that cell's image, so the grid order is right
    for row, g in enumerate([5, 7.5, 9]):
        for column, s in enumerate([20, 40]):
            x, y = layout.cell_origin(row, column)
            assert sheet.getpixel((x + 64, y + 64)) == (int(g * 20) % 256, s % 256, 128)


def test_a_long_title_wraps_onto_more_lines_instead_of_being_cut():
    cell = SheetCell(0, 0, _solid((0, 0, 0)), "caption")
    short = render_contact_sheet([cell], ["r"], ["c"], "short title")
    long = render_contact_sheet([cell], ["r"], ["c"], "a long prompt " * 12)
    assert long.width == short.width and long.height > short.height


def test_cells_are_captioned_below_their_image():
    cell = SheetCell(0, 0, _solid((0, 0, 0)), "g=7.5, 30 steps\n1.00 s")
    sheet = render_contact_sheet([cell], ["guidance 7.5"], ["30 steps"], "title", cell_size=64)
    layout = SheetLayout(cell_size=64)
    x, y = layout.cell_origin(0, 0)
    for line in range(2):
        top = y + 64 + 3 + line * 16
        band = np.asarray(sheet.crop((x, top, x + 64, top + 14)))
        assert (band < 200).any(), f"caption line {line + 1} has no ink"


def test_table_as_markdown_and_csv(tmp_path):
    results = _results([5], [20, 40])
    markdown = write_table(results, tmp_path / "sweep.md").read_text().splitlines()
    assert markdown[0].startswith("| guidance_scale | num_inference_steps | seconds per image")
    assert markdown[2] == "| 5 | 20 | 2.000 | 100.0 |"
    with write_table(results, tmp_path / "t.csv").open() as handle:
        rows = list(csv.reader(handle))
    assert rows[0][:3] == ["guidance_scale", "num_inference_steps", "seconds_per_image"]
    assert rows[2][:3] == ["5", "40", "4.0000"]


def test_sweep_requests_hold_the_seed_and_only_vary_the_studied_parameters():
    settings = SweepSettings(prompt="p", guidance_scales=[5], step_counts=[20], negative_prompt="blurry", size=64)
    first, second = settings.request(5, 20), settings.request(9, 40)
    assert first["parameters"]["seed"] == second["parameters"]["seed"] == 42
    assert first["parameters"]["negative_prompt"] == "blurry"
    assert {k for k in first["parameters"] if first["parameters"][k] != second["parameters"][k]} == {
        "guidance_scale", "num_inference_steps"}


def test_image_deserializer_reads_image_bodies_and_json_images():
    buffer = io.BytesIO()
    _solid((1, 2, 3), 8).save(buffer, format="PNG")
    image = ImageDeserializer().deserialize(io.BytesIO(buffer.getvalue()), "image/png")
    assert image.size == (8, 8) and image.getpixel((0, 0)) == (1, 2, 3)
    body = json.dumps({"images": [base64.b64encode(buffer.getvalue()).decode()] * 2}).encode()
    images = ImageDeserializer().deserialize(io.BytesIO(body), "application/json")
    assert len(images) == 2 and images[1].getpixel((7, 7)) == (1, 2, 3)
