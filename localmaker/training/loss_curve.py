"""The loss curve PNG in the job's output data: loss per step and its moving average, drawn with Pillow
alone, since a training container need not have matplotlib."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
from PIL import Image, ImageDraw, ImageFont

LOSS_CURVE_FILE = "loss_curve.png"


def moving_average(values: list[float], window: int) -> list[float]:
    """Trailing mean over up to ``window`` values: the trend under diffusion's noisy per-step loss."""
    cumulative = np.concatenate([[0.0], np.cumsum(values)])
    return [float((cumulative[i + 1] - cumulative[max(0, i + 1 - window)]) / min(window, i + 1))
            for i in range(len(values))]


def _label(draw: ImageDraw.ImageDraw, xy: tuple[float, float], text: str, font: Any, anchor: str) -> None:
    """Text placed by its bounding box: Pillow's ``anchor`` needs a TrueType font, which an old Pillow's
    default font is not, and a plot must never fail a finished training job."""
    left, top, right, bottom = draw.textbbox((0, 0), text, font=font)
    dx = {"l": 0.0, "m": (right - left) / 2, "r": float(right - left)}[anchor[0]]
    dy = {"a": 0.0, "m": (bottom - top) / 2, "s": float(bottom - top)}[anchor[1]]
    draw.text((xy[0] - dx - left, xy[1] - dy - top), text, fill="black", font=font)


def draw_loss_curve(losses: list[float], path: Path, width: int = 640, height: int = 360) -> Path:
    """Loss per step and its moving average on labelled axes, with Pillow alone (no matplotlib)."""
    window = max(1, min(50, len(losses) // 10))
    trend = moving_average(losses, window)
    left, right, top, bottom = 70, 20, 36, 50
    low, high = min(losses), max(losses)
    pad = (high - low) * 0.05 or max(abs(high) * 0.05, 1e-3)
    low, high = low - pad, high + pad
    image = Image.new("RGB", (width, height), "white")
    draw = ImageDraw.Draw(image)
    font = ImageFont.load_default()
    plot_w, plot_h = width - left - right, height - top - bottom

    def xy(i: int, value: float) -> tuple[float, float]:
        x = left + (i / max(1, len(losses) - 1)) * plot_w
        return x, top + (high - value) / (high - low) * plot_h

    for k in range(6):
        value = low + (high - low) * k / 5
        y = xy(0, value)[1]
        draw.line([(left, y), (width - right, y)], fill=(232, 232, 232))
        _label(draw, (left - 6, y), f"{value:.3g}", font, "rm")
        step = round(1 + (len(losses) - 1) * k / 5)
        x = xy(step - 1, low)[0]
        draw.line([(x, top + plot_h), (x, top + plot_h + 4)], fill="black")
        _label(draw, (x, top + plot_h + 6), str(step), font, "ma")
    draw.rectangle([left, top, width - right, top + plot_h], outline="black")
    if len(losses) > 1:
        draw.line([xy(i, v) for i, v in enumerate(losses)], fill=(150, 185, 230), width=1)
        draw.line([xy(i, v) for i, v in enumerate(trend)], fill=(200, 40, 40), width=2)
    else:
        draw.ellipse([*(c - 3 for c in xy(0, losses[0])), *(c + 3 for c in xy(0, losses[0]))], fill=(200, 40, 40))
    _label(draw, (left + plot_w / 2, height - 8), "step", font, "ms")
    label = Image.new("RGB", (40, 14), "white")
    _label(ImageDraw.Draw(label), (20, 7), "loss", font, "mm")
    image.paste(label.rotate(90, expand=True), (4, top + plot_h // 2 - 20))
    draw.text((left, 10), "LoRA training loss (MSE of the noise prediction)", fill="black", font=font)
    draw.line([(width - right - 190, 16), (width - right - 170, 16)], fill=(150, 185, 230), width=2)
    _label(draw, (width - right - 165, 16), "per step", font, "lm")
    draw.line([(width - right - 110, 16), (width - right - 90, 16)], fill=(200, 40, 40), width=2)
    _label(draw, (width - right - 85, 16), f"mean of {window}", font, "lm")
    path.parent.mkdir(parents=True, exist_ok=True)
    image.save(path, format="PNG")
    return path
