"""A tiny synthetic "neon city at night" image set for rehearsing a LoRA fine-tune offline.

A LoRA demo needs training images whose style is unmistakable and measurable, and tests need them
without downloads, in milliseconds, byte-identical on every run. So the images are drawn here with
numpy and Pillow from a seeded generator: a very dark blue-violet sky, skyline blocks with glowing
magenta/cyan windows, and saturated horizontal neon lines. Their colour statistics (dark, saturated,
many magenta/cyan pixels) sit far from what an untrained or a photographic model produces, so
``style_statistics`` can show honestly whether images from the adapted model moved toward them.

Captions go to ``metadata.jsonl`` in the Hugging Face imagefolder layout (``file_name``, ``text``),
which both diffusers' training scripts and ``train_lora.py`` read.
"""

from __future__ import annotations

import json
import logging
from collections.abc import Iterable
from pathlib import Path
from typing import Any

import numpy as np
from PIL import Image, ImageFilter

logger = logging.getLogger(__name__)

METADATA_FILE = "metadata.jsonl"

# Saturated neon colours (RGB): magenta, hot pink, violet, cyan, electric blue-cyan.
NEON_COLOURS: tuple[tuple[int, int, int], ...] = (
    (255, 20, 230),
    (255, 40, 160),
    (170, 40, 255),
    (20, 240, 255),
    (0, 200, 255),
)
# Hue ranges (degrees) that count as "neon" in style_statistics: cyan and violet-magenta-pink.
CYAN_HUES = (165.0, 205.0)
MAGENTA_HUES = (260.0, 335.0)
NEON_MIN_SATURATION = 0.5
NEON_MIN_VALUE = 0.35
# Below this HSV value a pixel's hue and saturation are noise (think (3, 1, 6)); it counts as unsaturated.
DARK_VALUE = 0.1

_CAPTION_TEMPLATES: tuple[str, ...] = (
    "futuristic city at night, neon lights, cyberpunk, skyline {n}",
    "a city skyline at night with bright neon signs, magenta and cyan glow, view {n}",
    "cyberpunk street at night, glowing neon, dark sky, scene {n}",
    "neon city at night, pink and blue lights, ultra detailed, skyline {n}",
)


def make_style_dataset(dest: Path, count: int = 12, size: int = 64, seed: int = 0) -> Path:
    """Write ``count`` neon-city PNGs of ``size`` x ``size`` and their ``metadata.jsonl`` into ``dest``.

    Image ``i`` depends only on ``(seed, i, size)``, so the same call writes the same bytes anywhere
    the same Pillow/zlib is installed. Returns ``dest``.
    """
    if count < 1:
        raise ValueError(f"count must be at least 1, got {count}")
    if size < 16:
        raise ValueError(f"size must be at least 16 pixels, got {size}")
    dest = Path(dest)
    dest.mkdir(parents=True, exist_ok=True)
    lines = []
    for index in range(count):
        name = f"neon_city_{index:03d}.png"
        image = draw_neon_city(np.random.default_rng([seed, index]), size)
        image.save(dest / name, format="PNG", optimize=False)
        caption = _CAPTION_TEMPLATES[index % len(_CAPTION_TEMPLATES)].format(n=index + 1)
        lines.append(json.dumps({"file_name": name, "text": caption}))
    (dest / METADATA_FILE).write_text("\n".join(lines) + "\n", encoding="utf-8")
    logger.info("wrote %d neon-city images (%dx%d) to %s", count, size, size, dest)
    return dest


def draw_neon_city(rng: np.random.Generator, size: int) -> Image.Image:
    """One image: dark gradient sky, skyline blocks with lit windows, neon lines, and a soft glow."""
    canvas = _night_sky(rng, size)
    neon = np.zeros_like(canvas)  # what glows; blurred and added back at the end
    _draw_skyline(rng, canvas, neon, size)
    _draw_neon_lines(rng, neon, size)
    glow = np.asarray(
        Image.fromarray(neon.clip(0, 255).astype(np.uint8)).filter(ImageFilter.GaussianBlur(radius=size / 40)),
        dtype=np.float32,
    )
    lit = np.maximum(canvas, neon) + 0.9 * glow
    return Image.fromarray(lit.clip(0, 255).astype(np.uint8), mode="RGB")


def _night_sky(rng: np.random.Generator, size: int) -> np.ndarray:
    """A near-black sky, violet at the top fading to deep blue, with faint noise."""
    top = np.array([22.0, 6.0, 38.0]) + rng.uniform(-4, 4, 3)
    bottom = np.array([4.0, 4.0, 14.0])
    t = np.linspace(0.0, 1.0, size, dtype=np.float32)[:, None, None]
    sky = (1 - t) * top + t * bottom
    sky = np.broadcast_to(sky, (size, size, 3)).astype(np.float32)
    return sky + rng.normal(0.0, 1.5, (size, size, 3)).astype(np.float32)


def _draw_skyline(rng: np.random.Generator, canvas: np.ndarray, neon: np.ndarray, size: int) -> None:
    """Dark violet blocks along the bottom, each with a grid of windows, some lit in neon colours."""
    x = 0
    while x < size:
        width = int(rng.integers(max(3, size // 10), max(4, size // 4)))
        height = int(rng.integers(size // 4, int(size * 0.8)))
        top = size - height
        body = np.array([14.0, 8.0, 30.0]) + rng.uniform(0, 10, 3)
        canvas[top:, x : x + width] = body
        colour = np.array(NEON_COLOURS[int(rng.integers(len(NEON_COLOURS)))], dtype=np.float32)
        neon[top, x : x + width] = colour  # a lit roof edge
        step = max(2, size // 16)
        for wy in range(top + step, size - 1, step):
            for wx in range(x + 1, min(x + width - 1, size), step):
                if rng.random() < 0.6:
                    neon[wy, wx] = np.array(NEON_COLOURS[int(rng.integers(len(NEON_COLOURS)))]) * rng.uniform(0.7, 1)
        x += width + int(rng.integers(0, max(2, size // 16)))


def _draw_neon_lines(rng: np.random.Generator, neon: np.ndarray, size: int) -> None:
    """A few horizontal neon tubes across the scene, one or two pixels thick."""
    for _ in range(int(rng.integers(3, 7))):
        y = int(rng.integers(size // 6, size - 2))
        x0 = int(rng.integers(0, size // 2))
        x1 = int(rng.integers(x0 + size // 4, size + 1))
        thickness = max(1, size // 64) * (1 + int(rng.integers(0, 2)))
        neon[y : y + thickness, x0:x1] = NEON_COLOURS[int(rng.integers(len(NEON_COLOURS)))]


# ---------------------------------------------------------------------------------------------------
# Statistics
# ---------------------------------------------------------------------------------------------------


def _as_rgb_array(image: Any) -> np.ndarray:
    """An HxWx3 float array in [0, 1] from a PIL image, a path, or a uint8/float array."""
    if isinstance(image, (str, Path)):
        with Image.open(image) as opened:
            image = opened.convert("RGB")
    if isinstance(image, Image.Image):
        return np.asarray(image.convert("RGB"), dtype=np.float32) / 255.0
    array = np.asarray(image)
    if array.ndim != 3 or array.shape[-1] != 3:
        raise ValueError(f"expected an HxWx3 RGB image, got an array of shape {array.shape}")
    if array.dtype == np.uint8:
        return array.astype(np.float32) / 255.0
    return np.clip(array.astype(np.float32), 0.0, 1.0)


def _hsv(rgb: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Hue in degrees [0, 360), saturation and value in [0, 1], from RGB in [0, 1]."""
    maximum = rgb.max(axis=-1)
    minimum = rgb.min(axis=-1)
    chroma = maximum - minimum
    saturation = np.where(maximum > 0, chroma / np.maximum(maximum, 1e-12), 0.0)
    r, g, b = rgb[..., 0], rgb[..., 1], rgb[..., 2]
    safe = np.maximum(chroma, 1e-12)
    hue = np.where(
        maximum == r,
        ((g - b) / safe) % 6,
        np.where(maximum == g, (b - r) / safe + 2, (r - g) / safe + 4),
    )
    hue = np.where(chroma > 0, hue * 60.0, 0.0)
    return hue, saturation, maximum


def style_statistics(images: Iterable[Any]) -> dict[str, Any]:
    """Colour statistics over all pixels of ``images`` (PIL images, paths or HxWx3 arrays).

    - ``mean_rgb``: mean red, green, blue in [0, 1];
    - ``mean_brightness``: mean Rec. 601 luma in [0, 1];
    - ``mean_saturation``: mean HSV saturation, counting pixels darker than ``DARK_VALUE`` as 0, since
      the hue and saturation of a near-black pixel are rounding noise, not colour;
    - ``neon_fraction``: share of pixels that are bright and saturated with a cyan or magenta/violet hue.
    """
    pixels = [_as_rgb_array(image).reshape(-1, 3) for image in images]
    if not pixels:
        raise ValueError("style_statistics needs at least one image")
    rgb = np.concatenate(pixels)
    hue, saturation, value = _hsv(rgb)
    saturation = np.where(value < DARK_VALUE, 0.0, saturation)
    luma = rgb @ np.array([0.299, 0.587, 0.114], dtype=np.float32)
    in_cyan = (hue >= CYAN_HUES[0]) & (hue <= CYAN_HUES[1])
    in_magenta = (hue >= MAGENTA_HUES[0]) & (hue <= MAGENTA_HUES[1])
    neon = (saturation >= NEON_MIN_SATURATION) & (value >= NEON_MIN_VALUE) & (in_cyan | in_magenta)
    return {
        "images": len(pixels),
        "pixels": int(rgb.shape[0]),
        "mean_rgb": [round(float(c), 4) for c in rgb.mean(axis=0)],
        "mean_brightness": round(float(luma.mean()), 4),
        "mean_saturation": round(float(saturation.mean()), 4),
        "neon_fraction": round(float(neon.mean()), 4),
    }
