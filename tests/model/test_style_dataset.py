"""The synthetic neon-city set is byte-reproducible, fully captioned, and measurably dark and saturated."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from localmaker.model.builders.style_dataset import METADATA_FILE, make_style_dataset, style_statistics


def _images(folder: Path) -> list[Path]:
    return sorted(folder.glob("*.png"))


def test_same_arguments_write_the_same_bytes(tmp_path: Path) -> None:
    first = make_style_dataset(tmp_path / "a", count=4, size=64, seed=3)
    second = make_style_dataset(tmp_path / "b", count=4, size=64, seed=3)
    other_seed = make_style_dataset(tmp_path / "c", count=4, size=64, seed=4)
    names = [p.name for p in _images(first)]
    assert names == [p.name for p in _images(second)] and len(names) == 4
    for name in [*names, METADATA_FILE]:
        assert (first / name).read_bytes() == (second / name).read_bytes(), name
    assert (first / names[0]).read_bytes() != (other_seed / names[0]).read_bytes()


def test_every_image_has_a_caption_and_the_requested_size(tmp_path: Path) -> None:
    folder = make_style_dataset(tmp_path / "neon", count=6, size=96)
    records = [json.loads(line) for line in (folder / METADATA_FILE).read_text(encoding="utf-8").splitlines()]
    assert sorted(r["file_name"] for r in records) == [p.name for p in _images(folder)]
    captions = [r["text"] for r in records]
    assert all("night" in c and "neon" in c for c in captions)
    assert len(set(captions)) == len(captions), "captions should vary"
    for path in _images(folder):
        with Image.open(path) as image:
            assert image.mode == "RGB" and image.size == (96, 96)


def test_statistics_are_dark_saturated_and_neon_unlike_grey_noise(tmp_path: Path) -> None:
    folder = make_style_dataset(tmp_path / "neon", count=12, size=64)
    neon = style_statistics(_images(folder))
    rng = np.random.default_rng(0)
    grey = style_statistics([np.clip(rng.normal(0.5, 0.1, (64, 64, 3)), 0, 1) for _ in range(4)])
    assert neon["images"] == 12 and neon["pixels"] == 12 * 64 * 64
    assert neon["mean_brightness"] < 0.2 < 0.45 < grey["mean_brightness"]
    assert neon["mean_saturation"] > 0.6 > 0.35 > grey["mean_saturation"]
    assert neon["neon_fraction"] > 0.07 > 3 * grey["neon_fraction"]
    red, green, blue = neon["mean_rgb"]
    assert blue > red > green, "violet-blue night: blue leads, magenta lifts red above green"


def test_statistics_read_pil_images_paths_and_arrays_alike(tmp_path: Path) -> None:
    path = _images(make_style_dataset(tmp_path / "neon", count=1, size=32))[0]
    with Image.open(path) as image:
        from_pil = style_statistics([image])
        from_array = style_statistics([np.asarray(image)])
    assert style_statistics([path]) == from_pil == from_array
    pure_magenta = style_statistics([np.full((4, 4, 3), (255, 0, 255), dtype=np.uint8)])
    assert pure_magenta["neon_fraction"] == 1.0 and pure_magenta["mean_saturation"] == 1.0
    with pytest.raises(ValueError):
        style_statistics([])
