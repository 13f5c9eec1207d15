"""Default input_fn/output_fn, as the Hugging Face inference toolkit behaves.

A user script that defines only model_fn and predict_fn gets these: JSON in as a dict, and numpy
arrays, torch tensors and PIL images encoded on the way out.
"""

from __future__ import annotations

import base64
import csv
import io
import json
import math
import zipfile
from typing import Any

import numpy as np

from localmaker.local_endpoint.errors import BadRequest, UnsupportedAccept, UnsupportedContentType
from localmaker.local_endpoint.media_types import JSON, NPY, media_type, preferred

INPUT_TYPES = (JSON, NPY, "text/csv", "text/plain")
OUTPUT_TYPES = (JSON, NPY, "text/csv")


# What a malformed body can raise while being parsed: each is the caller's mistake, so a 400.
_MALFORMED = (UnicodeDecodeError, ValueError, EOFError, zipfile.BadZipFile, RecursionError, csv.Error,
              MemoryError)


def default_input_fn(input_data: bytes, content_type: str) -> Any:
    kind = media_type(content_type) or JSON
    try:
        if kind == JSON:
            return json.loads(input_data)
        if kind == NPY:
            return _load_npy(input_data)
        if kind == "text/csv":
            rows = csv.reader(io.StringIO(input_data.decode("utf-8")))
            return [[_number_or_text(cell) for cell in row] for row in rows if row]
        if kind == "text/plain":
            return input_data.decode("utf-8")
    except _MALFORMED as exc:
        reason = "it nests too deeply" if isinstance(exc, RecursionError) else str(exc) or type(exc).__name__
        raise BadRequest(f"the body is not valid {kind}: {reason}; send a well-formed {kind} body") from None
    raise UnsupportedContentType(
        f"Content-Type {content_type!r} is not supported by the default input_fn; "
        f"use one of {', '.join(INPUT_TYPES)} or define input_fn in your script"
    )


def default_output_fn(prediction: Any, accept: str) -> tuple[bytes, str]:
    kind = preferred(accept, OUTPUT_TYPES)
    if kind == JSON:
        return json.dumps(prediction, default=_encode_json).encode("utf-8"), JSON
    if kind == NPY:
        buffer = io.BytesIO()
        np.save(buffer, _to_numpy(prediction), allow_pickle=False)
        return buffer.getvalue(), NPY
    if kind == "text/csv":
        rows = np.atleast_2d(_to_numpy(prediction))
        return "\n".join(",".join(str(v) for v in row) for row in rows).encode("utf-8"), "text/csv"
    raise UnsupportedAccept(
        f"Accept {accept!r} is not supported by the default output_fn; "
        f"use one of {', '.join(OUTPUT_TYPES)} or define output_fn in your script"
    )


def _load_npy(data: bytes) -> np.ndarray:
    _check_declared_size(data)
    loaded = np.load(io.BytesIO(data), allow_pickle=False)
    if not isinstance(loaded, np.ndarray):  # np.load opens an .npz archive as a lazy mapping
        loaded.close()
        raise ValueError("it is an .npz archive, not one .npy array")
    return loaded


def _check_declared_size(data: bytes) -> None:
    """np.load allocates what the header declares before it reads the data: a 100-byte body declaring
    a trillion elements would take the worker's memory (or raise MemoryError) instead of being refused."""
    stream = io.BytesIO(data)
    readers = {(1, 0): np.lib.format.read_array_header_1_0, (2, 0): np.lib.format.read_array_header_2_0}
    try:
        reader = readers.get(np.lib.format.read_magic(stream))
    except ValueError:
        return  # not an .npy header (an .npz archive, say): np.load says what it is
    if reader is None:
        return
    shape, _fortran_order, dtype = reader(stream)
    declared = math.prod(shape) * dtype.itemsize
    carried = len(data) - stream.tell()
    if declared > carried:
        raise ValueError(f"its header declares {declared} bytes of array data but it carries {carried}")


def _number_or_text(cell: str) -> Any:
    try:
        return float(cell)
    except ValueError:
        return cell


def _to_numpy(value: Any) -> np.ndarray:
    if hasattr(value, "detach"):  # a torch tensor, without importing torch here
        return value.detach().cpu().numpy()
    if isinstance(value, dict):
        raise UnsupportedAccept("a dict prediction cannot be encoded as an array; ask for application/json")
    return np.asarray(value)


def _encode_json(value: Any) -> Any:
    if hasattr(value, "detach"):
        return value.detach().cpu().tolist()
    if isinstance(value, np.ndarray):
        return value.tolist()
    if isinstance(value, np.generic):
        return value.item()
    if hasattr(value, "save") and hasattr(value, "mode"):  # a PIL image
        buffer = io.BytesIO()
        value.save(buffer, format="PNG")
        return base64.b64encode(buffer.getvalue()).decode("ascii")
    if isinstance(value, bytes):
        return base64.b64encode(value).decode("ascii")
    raise TypeError(f"{type(value).__name__} is not JSON serialisable; return lists, dicts or arrays")
