"""Content negotiation and the byte encodings of requests and responses.

Only what the handler can honour is accepted: JSON in; JSON out, plus ``.npy`` for raw embeddings and
PNG or JPEG for a single generated image (the pixels are encoded by image_codecs).
A ``.npy`` body is written with ``allow_pickle=False`` semantics (a plain float32 array), so a client
can read it with ``np.load(..., allow_pickle=False)`` and never unpickle anything from the network.
"""

from __future__ import annotations

import io
import json
from typing import Any

import numpy as np
from serving_errors import InvalidInput, UnsupportedAccept, UnsupportedContentType

JSON = "application/json"
NPY = "application/x-npy"
PNG = "image/png"
JPEG = "image/jpeg"
REQUEST_TYPES = (JSON,)


def media_type(header: str | None) -> str:
    """``"Application/JSON; charset=utf-8"`` -> ``"application/json"``; ``""`` when absent."""
    return (header or "").split(";", 1)[0].strip().lower()


def decode_json_body(data: bytes | bytearray | memoryview | str, content_type: str | None) -> Any:
    """Parse a JSON request body; a missing Content-Type is taken as JSON, like the toolkit does."""
    kind = media_type(content_type)
    if kind not in ("", *REQUEST_TYPES):
        raise UnsupportedContentType(
            f"Content-Type {content_type!r} is not supported: send the request as {', '.join(REQUEST_TYPES)}."
        )
    if isinstance(data, (bytes, bytearray, memoryview)):
        try:
            text = bytes(data).decode("utf-8")
        except UnicodeDecodeError as exc:
            raise InvalidInput(
                f"the request body is not valid UTF-8 ({exc.reason} at byte {exc.start}): encode the JSON as UTF-8."
            ) from exc
    else:
        text = data
    if not text.strip():
        raise InvalidInput('the request body is empty: send a JSON object such as {"inputs": "some text"}.')
    try:
        return json.loads(text)
    except ValueError as exc:
        raise InvalidInput(f"the request body is not valid JSON ({exc}): send a JSON object.") from exc
    except RecursionError:
        # json's decoder recurses once per level, so a body such as "[[[[..." is the client's mistake, not a 500.
        raise InvalidInput(
            "the request body nests arrays or objects too deeply to decode: send a flatter JSON document."
        ) from None


def negotiate(accept: str | None, offered: tuple[str, ...]) -> str:
    """The first type in ``accept`` that we offer; missing, empty or ``*/*`` means ``offered[0]``.

    A range such as ``image/*`` means the first offered type of that kind (``image/png`` before
    ``image/jpeg`` when both are offered in that order).
    """
    if not accept or not accept.strip():
        return offered[0]
    for candidate in accept.split(","):
        kind = media_type(candidate)
        if kind == "*/*":
            return offered[0]
        if kind.endswith("/*"):
            in_range = [offer for offer in offered if offer.startswith(kind[:-1])]
            if in_range:
                return in_range[0]
        if kind in offered:
            return kind
    raise UnsupportedAccept(f"Accept {accept!r} cannot be produced: ask for one of {', '.join(offered)}.")


def _json_default(value: Any) -> Any:
    if isinstance(value, np.ndarray):
        return value.tolist()
    if isinstance(value, np.generic):
        return value.item()
    raise TypeError(f"cannot encode {type(value).__name__} as JSON")


def encode_json(payload: Any) -> bytes:
    return json.dumps(payload, default=_json_default, ensure_ascii=False).encode("utf-8")


def encode_npy(array: np.ndarray) -> bytes:
    buffer = io.BytesIO()
    # Not np.ascontiguousarray: it returns at least 1-D, so a 0-d array would come back with shape (1,).
    np.save(buffer, np.asarray(array, dtype=np.float32, order="C"), allow_pickle=False)
    return buffer.getvalue()
