"""Generated images as response bytes: PNG (lossless, the default) or JPEG, raw or base64 for JSON.

PNG keeps the exact pixels, so the same seed gives byte-identical responses and tests can compare
images exactly; JPEG is offered for callers that want smaller bodies and accept the loss.
"""

from __future__ import annotations

import base64
import io

from PIL import Image

JPEG_QUALITY = 95


def encode_png(image: Image.Image) -> bytes:
    buffer = io.BytesIO()
    image.save(buffer, format="PNG")
    return buffer.getvalue()


def encode_jpeg(image: Image.Image) -> bytes:
    buffer = io.BytesIO()
    image.convert("RGB").save(buffer, format="JPEG", quality=JPEG_QUALITY)
    return buffer.getvalue()


def png_base64(image: Image.Image) -> str:
    """The image as a base64 PNG string, the form it takes inside a JSON response."""
    return base64.b64encode(encode_png(image)).decode("ascii")
