"""The training channel: every image with its caption, checked up front, and the pixels and batches
the training loop draws from it.

The whole set is scanned before a model loads (each image opened, each caption found), so an unreadable
image or a missing caption fails the job in seconds with the file's name and the fix.
"""

from __future__ import annotations

import json
import logging
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
from PIL import Image, ImageOps
from training_errors import TrainingDataError

logger = logging.getLogger(__name__)

METADATA_FILE = "metadata.jsonl"
IMAGE_SUFFIXES = (".png", ".jpg", ".jpeg", ".webp")


@dataclass(frozen=True)
class Example:
    image: Path
    caption: str


def _read_text(folder: Path, path: Path) -> str:
    """A caption file's text; one saved in a legacy encoding is an input error, not a traceback."""
    try:
        return path.read_text(encoding="utf-8")
    except UnicodeDecodeError as exc:
        raise TrainingDataError(
            f"{path.relative_to(folder).as_posix()} in the training channel is not UTF-8 text (byte "
            f"{exc.object[exc.start]:#04x} at offset {exc.start}); save it as UTF-8"
        ) from None


def _read_metadata(folder: Path) -> dict[str, str]:
    """``metadata.jsonl`` as {relative file name: caption}; each line is checked as it is read."""
    path = folder / METADATA_FILE
    captions: dict[str, str] = {}
    if not path.is_file():
        return captions
    for number, line in enumerate(_read_text(folder, path).splitlines(), start=1):
        if not line.strip():
            continue
        where = f"{METADATA_FILE} line {number}"
        try:
            record = json.loads(line)
        except ValueError as exc:
            raise TrainingDataError(f"{where} is not valid JSON ({exc}); write one JSON object per line") from None
        if not isinstance(record, dict) or not isinstance(record.get("file_name"), str):
            raise TrainingDataError(f'{where} has no "file_name"; write {{"file_name": "a.png", "text": "..."}}')
        text = record.get("text")
        if not isinstance(text, str) or not text.strip():
            raise TrainingDataError(f'{where} ({record["file_name"]}) has no "text" caption; add a non-empty "text"')
        name = record["file_name"]
        if not (folder / name).is_file():
            raise TrainingDataError(f"{where} names {name!r}, which is not in the training channel {folder}")
        captions[Path(name).as_posix()] = text.strip()
    return captions


def _caption_for(folder: Path, image: Path, metadata: dict[str, str]) -> str | None:
    relative = image.relative_to(folder).as_posix()
    if relative in metadata:
        return metadata[relative]
    sidecar = image.with_suffix(".txt")
    if sidecar.is_file():
        text = _read_text(folder, sidecar).strip()
        return text or None
    return None


def _check_readable(folder: Path, image: Path) -> None:
    try:
        with Image.open(image) as opened:
            opened.verify()
    except Exception as exc:
        raise TrainingDataError(
            f"{image.relative_to(folder)} in the training channel is not a readable image "
            f"({type(exc).__name__}: {exc}); replace or remove it"
        ) from None


def scan_training_data(folder: Path) -> list[Example]:
    """Every image in the channel with its caption, or the first reason the set cannot be used."""
    if not folder.is_dir():
        raise TrainingDataError(f"the training channel {folder} does not exist or is not a folder")
    files = sorted(p for p in folder.rglob("*")
                   if p.is_file() and not any(part.startswith(".") for part in p.relative_to(folder).parts))
    if not files:
        raise TrainingDataError(f"the training channel {folder} is empty; upload images with captions to it")
    images = [p for p in files if p.suffix.lower() in IMAGE_SUFFIXES]
    if not images:
        seen = ", ".join(p.name for p in files[:5])
        raise TrainingDataError(
            f"the training channel {folder} holds no images ({', '.join(IMAGE_SUFFIXES)}); found {seen}"
        )
    metadata = _read_metadata(folder)
    examples, uncaptioned = [], []
    for image in images:
        _check_readable(folder, image)
        caption = _caption_for(folder, image, metadata)
        if caption is None:
            uncaptioned.append(image.relative_to(folder).as_posix())
        else:
            examples.append(Example(image, caption))
    if uncaptioned:
        first = uncaptioned[0]
        raise TrainingDataError(
            f"{len(uncaptioned)} image(s) have no caption: {', '.join(uncaptioned[:5])}. Add a line "
            f'{{"file_name": "{first}", "text": "..."}} to {METADATA_FILE}, or write the caption to '
            f"{Path(first).with_suffix('.txt').as_posix()}"
        )
    logger.info("training set: %d captioned images in %s", len(examples), folder)
    return examples


def load_pixels(path: Path, resolution: int, center_crop: bool, flip: bool, generator: torch.Generator) -> torch.Tensor:
    """RGB, shorter side resized to ``resolution``, cropped square, scaled to [-1, 1], CHW."""
    with Image.open(path) as opened:
        image = ImageOps.exif_transpose(opened).convert("RGB")
    scale = resolution / min(image.size)
    size = (max(resolution, round(image.width * scale)), max(resolution, round(image.height * scale)))
    image = image.resize(size, Image.Resampling.BILINEAR)
    if center_crop:
        left, top = (image.width - resolution) // 2, (image.height - resolution) // 2
    else:
        left = int(torch.randint(0, image.width - resolution + 1, (1,), generator=generator))
        top = int(torch.randint(0, image.height - resolution + 1, (1,), generator=generator))
    image = image.crop((left, top, left + resolution, top + resolution))
    if flip:
        image = ImageOps.mirror(image)
    array = np.asarray(image, dtype=np.float32) / 127.5 - 1.0
    return torch.from_numpy(array.transpose(2, 0, 1).copy())


def batches(count: int, batch_size: int, generator: torch.Generator) -> Iterator[list[int]]:
    """Endless shuffled batches of example indices; an epoch's tail runs on into the next shuffle."""
    order: list[int] = []
    while True:
        while len(order) < batch_size:
            order += torch.randperm(count, generator=generator).tolist()
        yield order[:batch_size]
        order = order[batch_size:]
