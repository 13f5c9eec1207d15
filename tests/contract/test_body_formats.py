"""Whether a body is what its Content-Type says, and whether that type was one the caller accepted."""

from __future__ import annotations

import io

import numpy as np
import pytest
from PIL import Image

from localmaker.contract.body_formats import accepted, body_mismatch


def _image(kind: str) -> bytes:
    buffer = io.BytesIO()
    Image.new("RGB", (4, 4), "red").save(buffer, format=kind)
    return buffer.getvalue()


def _npy() -> bytes:
    buffer = io.BytesIO()
    np.save(buffer, np.ones(3, dtype=np.float32))
    return buffer.getvalue()


@pytest.mark.parametrize(("content_type", "body"), [
    ("application/json", b'{"a": [1, 2]}'),
    ("application/json; charset=utf-8", b'"text"'),
    ("application/problem+json", b"{}"),
    ("application/x-npy", _npy()),
    ("image/png", _image("PNG")),
    ("image/jpeg", _image("JPEG")),
    ("text/csv", b"1,2\n3,4"),
    ("application/octet-stream", b"\x00\xff anything"),  # cannot be read, so taken at its word
])
def test_bodies_of_their_type(content_type, body):
    assert body_mismatch(content_type, body) is None


@pytest.mark.parametrize(("content_type", "body", "fragment"), [
    ("application/json", b"echo: {'a': 1}", "the body is not JSON"),
    ("application/json", b"", "the body is not JSON"),
    ("application/json", b"\xff\xfe", "the body is not JSON"),
    ("application/x-npy", b"[1, 2, 3]", "not a .npy array"),
    ("image/png", _image("JPEG"), "the body is a JPEG image, not image/png"),
    ("image/jpeg", b"not an image", "the body is not an image"),
    ("text/plain", b"\xff\xfe", "not UTF-8 text"),
    (None, b"{}", "there is no Content-Type header"),
])
def test_bodies_that_contradict_their_type(content_type, body, fragment):
    found = body_mismatch(content_type, body)
    assert found is not None and fragment in found


@pytest.mark.parametrize(("accept", "content_type", "expected"), [
    (None, "image/png", True),
    ("*/*", "application/json", True),
    ("application/json", "application/json; charset=utf-8", True),
    ("image/*", "image/jpeg", True),
    ("image/png, application/json", "application/json", True),
    ("application/json", "text/plain", False),
    ("image/*", "application/json", False),
])
def test_accept_ranges(accept, content_type, expected):
    assert accepted(accept, content_type) is expected
