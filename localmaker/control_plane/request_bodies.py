"""Reading a request's body once, within a limit, and putting it back for moto to read again."""

from __future__ import annotations

import io
from typing import Any

from localmaker.control_plane.answers import Environ

# AWS API calls (SageMaker's JSON, IAM's and STS's forms) are small; a bigger body is a mistake or an attack.
MAX_API_BODY_BYTES = 4 * 1024 * 1024


class MalformedBody(ValueError):
    """A request whose Content-Length is not a byte count."""


class BodyTooLarge(ValueError):
    """A request body over the reader's limit, declared or (chunked) found while reading."""


def read_body(environ: Environ, limit: int | None = None) -> bytes:
    """Read the request body (at most ``limit`` bytes) and put it back, so moto can read it again.

    Raises MalformedBody for a Content-Length that is not a byte count, BodyTooLarge for a body over
    ``limit`` (judged by Content-Length before reading), and ConnectionError when the client hangs up
    before the whole body came. Each caller answers these in its own API's words.
    """
    raw = environ.get("CONTENT_LENGTH")
    stream = environ["wsgi.input"]
    if not raw:
        body = _read_chunked(stream, limit) if environ.get("wsgi.input_terminated") else b""
    elif not (raw.isascii() and raw.isdigit()):
        raise MalformedBody(f"Content-Length {raw!r} is not a byte count")
    elif limit is not None and int(raw) > limit:
        raise BodyTooLarge(f"the body's {int(raw)} bytes are over the {limit}-byte limit")
    else:
        body = stream.read(int(raw))
        if len(body) < int(raw):
            raise ConnectionError(f"the client hung up after {len(body)} of its {raw} bytes")
    replace_body(environ, body)
    return body


def _read_chunked(stream: Any, limit: int | None) -> bytes:
    """A chunked body has no declared length: read to its end, stopping once it is over ``limit``."""
    parts, size = [], 0
    while chunk := stream.read(64 * 1024):
        parts.append(chunk)
        size += len(chunk)
        if limit is not None and size > limit:
            raise BodyTooLarge(f"the chunked body is over the {limit}-byte limit")
    return b"".join(parts)


def replace_body(environ: Environ, body: bytes) -> None:
    environ["wsgi.input"], environ["CONTENT_LENGTH"] = io.BytesIO(body), str(len(body))
