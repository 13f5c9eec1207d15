"""Does a response body hold what its Content-Type says, and is that type one the caller accepted?

A client decodes by the Content-Type header, so a header that lies (``application/json`` over plain
text, ``image/png`` over JPEG bytes) breaks every client even when the bytes are fine. Types this module
cannot read (``application/octet-stream``, vendor types) are taken at their word.
"""

from __future__ import annotations

import io
import json

import numpy as np
from PIL import Image, UnidentifiedImageError

from localmaker.spec.media_types import NPY, media_type

# The image types Pillow identifies, by the format name it reports.
IMAGE_FORMATS = {"image/png": "PNG", "image/jpeg": "JPEG", "image/gif": "GIF", "image/webp": "WEBP",
                 "image/bmp": "BMP", "image/tiff": "TIFF"}


def body_mismatch(content_type: str | None, body: bytes) -> str | None:
    """Why ``body`` is not what ``content_type`` says; None when it is, or when the type cannot be read."""
    kind = media_type(content_type)
    if not kind:
        return "there is no Content-Type header"
    if kind == "application/json" or kind.endswith("+json"):
        try:
            json.loads(body.decode("utf-8"))
        except (UnicodeDecodeError, ValueError) as exc:
            return f"the body is not JSON ({exc}): {body[:40]!r}"
        return None
    if kind == NPY:
        try:
            np.load(io.BytesIO(body), allow_pickle=False)
        except (ValueError, OSError, EOFError) as exc:
            return f"the body is not a .npy array ({exc})"
        return None
    if kind in IMAGE_FORMATS:
        return _image_mismatch(kind, body)
    if kind.startswith("text/"):
        try:
            body.decode("utf-8")
        except UnicodeDecodeError as exc:
            return f"the body is not UTF-8 text ({exc})"
    return None


def _image_mismatch(kind: str, body: bytes) -> str | None:
    try:
        with Image.open(io.BytesIO(body)) as image:
            found = image.format or "unknown"
            image.verify()
    except (UnidentifiedImageError, OSError, SyntaxError, ValueError) as exc:
        return f"the body is not an image ({exc})"
    if found != IMAGE_FORMATS[kind]:
        return f"the body is a {found} image, not {kind}"
    return None


def accepted(accept: str | None, content_type: str | None) -> bool:
    """True when ``content_type`` is within the ``Accept`` header's ranges (no Accept accepts anything)."""
    if not accept or not accept.strip():
        return True
    kind = media_type(content_type)
    for candidate in accept.split(","):
        wanted = media_type(candidate)
        if wanted in ("*/*", kind) or (wanted.endswith("/*") and kind.startswith(wanted[:-1])):
            return True
    return False
