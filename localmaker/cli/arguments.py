"""argparse types that refuse a bad value at parse time, with a message, before any work is done.

A value argparse accepts as an ``int`` can still be one the work cannot use (a count of 0, a negative
seed, a timeout of 0); found later, it would surface as a traceback, or after minutes of deploying.
"""

from __future__ import annotations

import argparse
import math
from collections.abc import Callable
from pathlib import Path

IMAGE_SUFFIXES = (".png", ".jpg", ".jpeg", ".webp")


def whole_number(minimum: int, maximum: int | None = None) -> Callable[[str], int]:
    def parse(text: str) -> int:
        try:
            value = int(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f"{text!r} is not a whole number") from None
        if value < minimum or (maximum is not None and value > maximum):
            bounds = f"from {minimum} to {maximum}" if maximum is not None else f"at least {minimum}"
            raise argparse.ArgumentTypeError(f"{value} is out of range: give a whole number {bounds}")
        return value

    return parse


def number_list(kind: type[float] | type[int]) -> Callable[[str], list[float] | list[int]]:
    def parse(text: str) -> list[float] | list[int]:
        try:
            values = [kind(part) for part in text.split(",") if part.strip()]
        except ValueError:
            raise argparse.ArgumentTypeError(f"{text!r} is not a comma-separated list of {kind.__name__}s, "
                                             "e.g. 5,7.5,9") from None
        if not values:
            raise argparse.ArgumentTypeError("give at least one value")
        return values

    return parse


def seconds(text: str) -> float:
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not a number of seconds") from None
    if not math.isfinite(value) or value <= 0:
        raise argparse.ArgumentTypeError(f"{text!r} is not a positive number of seconds")
    return value


def image_path(text: str) -> Path:
    """Where an image will be written: its suffix picks the format, so it must be one Pillow writes."""
    path = Path(text)
    if path.suffix.lower() not in IMAGE_SUFFIXES:
        raise argparse.ArgumentTypeError(f"{text!r} has no image suffix: end it with one of "
                                         f"{', '.join(IMAGE_SUFFIXES)}")
    return path


def key_value(text: str) -> tuple[str, str]:
    """KEY=VALUE, as ``--env`` takes it; the value may be empty or hold further ``=``."""
    key, separator, value = text.partition("=")
    if not separator or not key:
        raise argparse.ArgumentTypeError(f"{text!r} is not KEY=VALUE")
    return key, value


PORT = whole_number(0, 65535)
SEED = whole_number(0, 2**32 - 1)  # what the endpoint and numpy's generators take
