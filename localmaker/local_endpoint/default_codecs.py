"""Default input_fn/output_fn for scripts that define neither, as SageMaker's containers behave.

An instance cannot tell whether it stands for the PyTorch container (the SageMaker inference toolkit's
``DefaultPytorchInferenceHandler``) or the Hugging Face one (``HuggingFaceHandlerService``), so:

- where the two toolkits agree, these do the same: types are compared exactly, parameters included, so
  ``application/json; charset=utf-8`` and a missing Content-Type are refused as both toolkits refuse them;
- where one accepts what the other refuses, they accept it, the way the accepting toolkit does (a CSV
  without a header is read as the PyTorch toolkit reads it, images as the Hugging Face one does);
- where both accept with different results, the Hugging Face toolkit's (JSON into a dict, not the
  PyTorch toolkit's ``torch.FloatTensor``), as ARCHITECTURE convention 1 says.

What they refuse is a 4xx here, not the toolkits' 500, and no body is ever unpickled or pickled. The
toolkit function each rule mirrors is named in tests/local_endpoint/test_toolkit_defaults.py.
"""

from __future__ import annotations

import base64
import csv
import datetime
import io
import json
import math
import warnings
import zipfile
from collections.abc import Callable
from typing import Any

import numpy as np

from localmaker.local_endpoint.errors import BadRequest, UnsupportedAccept, UnsupportedContentType
from localmaker.local_endpoint.media_types import ANY, CSV, JSON, NPY, accept_entries, media_type

# The Hugging Face toolkit's image and audio types (its content_types.VISION_TYPES and AUDIO_TYPES).
X_IMAGE = "image/x-image"
IMAGE_TYPES = ("image/jpeg", "image/png", "image/tiff", "image/bmp", "image/gif", "image/webp", X_IMAGE)
AUDIO_TYPES = ("audio/x-flac", "audio/mpeg", "audio/wave", "audio/ogg", "audio/x-audio")
# The header names that make the Hugging Face toolkit read a CSV as records (decoder_encoder.decode_csv).
CSV_RECORD_HEADERS = ("question", "context", "inputs")

# What a malformed body can raise while being parsed: each is the caller's mistake, so a 400.
_MALFORMED = (UnicodeDecodeError, ValueError, EOFError, zipfile.BadZipFile, RecursionError, csv.Error,
              MemoryError, IndexError, OSError)


def default_input_fn(input_data: bytes | str, content_type: str | None) -> Any:
    decoder = _DECODERS.get(content_type) if content_type is not None else None
    if decoder is None:
        raise UnsupportedContentType(_unsupported_content_type(content_type))
    try:
        return decoder(input_data)
    except _MALFORMED as exc:
        reason = "it nests too deeply" if isinstance(exc, RecursionError) else str(exc) or type(exc).__name__
        raise BadRequest(
            f"the body is not valid {content_type}: {reason}; send a well-formed {content_type} body"
        ) from None


def default_output_fn(prediction: Any, accept: str | None) -> tuple[bytes, str]:
    """The first type of ``accept`` that is supported and fits the prediction, with the body in it."""
    if not accept or accept == ANY:  # the request handling has made these the default already
        accept = JSON
    refusals = []
    for kind in accept_entries(accept):
        encoder = _ENCODERS.get(kind)
        if encoder is None:
            continue
        try:
            return encoder(prediction, kind), kind
        except _CannotEncode as exc:
            refusals.append(f"{kind}: {exc}")
    reasons = f" ({'; '.join(refusals)})" if refusals else ""
    raise UnsupportedAccept(
        f"Accept {accept!r} cannot be produced by the default output_fn{reasons}; ask for one of "
        f"{', '.join(OUTPUT_TYPES)}, each named exactly (the SageMaker toolkits match no wildcards or "
        "parameters), or define output_fn in your script"
    )


def _unsupported_content_type(content_type: str | None) -> str:
    fix = f"use one of {', '.join(INPUT_TYPES)} or define input_fn in your script"
    if content_type is None:
        return f"the request has no Content-Type, which the SageMaker toolkits' default input_fn refuses; {fix}"
    bare = media_type(content_type)
    if bare != content_type and bare in _DECODERS:
        return (f"Content-Type {content_type!r} is not {bare!r} to the SageMaker toolkits, which compare it "
                f"exactly; send {bare!r} without parameters, or define input_fn in your script")
    return f"Content-Type {content_type!r} is not supported by the default input_fn; {fix}"


# --- decoders -------------------------------------------------------------------------------------------


def _text(data: bytes | str) -> str:
    return data if isinstance(data, str) else data.decode("utf-8")


def _decode_json(data: bytes | str) -> Any:
    return json.loads(_text(data))


def _decode_csv(data: bytes | str) -> Any:
    text = _text(data)
    lines = text.splitlines()
    if lines and any(header in lines[0].lower() for header in CSV_RECORD_HEADERS):
        records = list(csv.DictReader(io.StringIO(text)))
        if not records:
            raise BadRequest(f"the CSV has a header ({lines[0][:100]!r}) but no records: send one row per input "
                             "under it")
        if "inputs" in records[0]:
            return {"inputs": [record["inputs"] for record in records]}
        return {"inputs": records}
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # genfromtxt warns about an empty body, and returns an empty array
        array = np.genfromtxt(io.StringIO(text), dtype=None, delimiter=",")
    if array.dtype.kind not in "biuf":
        raise BadRequest(
            "the text/csv body is not a table of numbers that the PyTorch container's default input_fn can "
            "read: numpy.genfromtxt types each column on its own, and text, or a column of whole numbers beside "
            "one with decimals, makes a record array that torch.FloatTensor refuses; send numbers only, each "
            "with a decimal point (1.0, not 1), or a header row naming inputs (the Hugging Face toolkit's "
            "records), or define input_fn in your script"
        )
    return array


def _decode_npy(data: bytes | str) -> np.ndarray:
    raw = data.encode("utf-8") if isinstance(data, str) else data
    _check_declared_size(raw)
    loaded = np.load(io.BytesIO(raw), allow_pickle=False)
    if not isinstance(loaded, np.ndarray):  # np.load opens an .npz archive as a lazy mapping
        loaded.close()
        raise ValueError("it is an .npz archive, not one .npy array")
    return loaded


def _decode_image(data: bytes | str) -> dict[str, Any]:
    from PIL import Image

    raw = data.encode("utf-8") if isinstance(data, str) else data
    try:
        return {"inputs": Image.open(io.BytesIO(raw)).convert("RGB")}
    except Image.DecompressionBombError as exc:  # Pillow's own limit, in the container too
        raise ValueError(str(exc)) from None


def _decode_audio(data: bytes | str) -> dict[str, Any]:
    return {"inputs": data.encode("utf-8") if isinstance(data, str) else bytes(data)}


def _decode_plain_text(data: bytes | str) -> str:
    """localmaker's own: neither toolkit's default input_fn reads text/plain."""
    return _text(data)


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


_DECODERS: dict[str, Callable[[bytes | str], Any]] = {
    JSON: _decode_json,
    CSV: _decode_csv,
    NPY: _decode_npy,
    "text/plain": _decode_plain_text,
    **{kind: _decode_image for kind in IMAGE_TYPES},
    **{kind: _decode_audio for kind in AUDIO_TYPES},
}
INPUT_TYPES = (JSON, CSV, NPY, "text/plain", *IMAGE_TYPES, *AUDIO_TYPES)


# --- encoders -------------------------------------------------------------------------------------------


class _CannotEncode(Exception):
    """This prediction cannot be written in this type; the next type of the Accept list may fit."""


def _encode_json(prediction: Any, kind: str) -> bytes:
    return json.dumps(prediction, default=_json_default).encode("utf-8")


def _json_default(value: Any) -> Any:
    """What json cannot write itself, as the Hugging Face toolkit's _JSONEncoder writes it (the PyTorch
    toolkit's encoder knows ``tolist`` alone): numpy numbers, arrays and tensors, datetimes, PIL images."""
    if isinstance(value, np.integer):
        return int(value)
    if isinstance(value, np.floating):
        return float(value)
    if hasattr(value, "tolist"):
        return value.tolist()
    if isinstance(value, datetime.datetime):
        return str(value)
    if _is_image(value):
        return base64.b64encode(_image_bytes(value, "PNG")).decode("utf-8")
    raise TypeError(
        f"the default output_fn cannot write a {type(value).__name__} as JSON (nor can the SageMaker "
        "toolkits'); return lists, dicts, numbers, strings, arrays or tensors, or define output_fn"
    )


def _encode_csv(prediction: Any, kind: str) -> bytes:
    if isinstance(prediction, list) and prediction and all(isinstance(row, dict) for row in prediction):
        # records, as the Hugging Face toolkit writes them (decoder_encoder.encode_csv)
        stream = io.StringIO()
        writer = csv.DictWriter(stream, prediction[0].keys())
        writer.writeheader()
        try:
            writer.writerows(prediction)
        except ValueError as exc:
            raise _CannotEncode(f"the records do not share the first one's keys ({exc})") from None
        return stream.getvalue().encode("utf-8")
    # numbers, as the PyTorch toolkit writes them (encoder._array_to_csv): one line per row, a 1-D
    # prediction one value per line; a tensor through tolist() first, as its default_output_fn does
    if hasattr(prediction, "detach"):
        prediction = prediction.detach().cpu().numpy().tolist()
    array = np.asarray(prediction)
    if array.ndim == 0 and array.dtype.kind in "biuf":
        array = array.reshape(1)  # localmaker's own: one number is one line (the toolkits refuse it)
    if array.ndim not in (1, 2) or array.dtype.kind not in "biufcUS":
        raise _CannotEncode(f"a {type(prediction).__name__} of shape {array.shape} is no table")
    stream = io.StringIO()
    np.savetxt(stream, array, delimiter=",", fmt="%s")
    return stream.getvalue().encode("utf-8")


def _encode_npy(prediction: Any, kind: str) -> bytes:
    buffer = io.BytesIO()
    try:
        np.save(buffer, _to_numpy(prediction), allow_pickle=False)
    except ValueError:
        # the toolkits pickle such a prediction, which a client would have to unpickle to read
        raise _CannotEncode(f"a {type(prediction).__name__} is no plain array and would need pickling") from None
    return buffer.getvalue()


def _encode_image(prediction: Any, kind: str) -> bytes:
    """A PIL image in the asked format, as the Hugging Face toolkit's encode_image writes it."""
    if not _is_image(prediction):
        raise _CannotEncode(f"a {type(prediction).__name__} is not an image")
    try:
        return _image_bytes(prediction, "PNG" if kind == X_IMAGE else kind.split("/")[-1].upper())
    except (OSError, KeyError, ValueError) as exc:
        raise _CannotEncode(f"this {prediction.mode} image cannot be written as {kind} ({exc})") from None


def _to_numpy(value: Any) -> np.ndarray:
    if hasattr(value, "detach"):  # a torch tensor, without importing torch here
        return value.detach().cpu().numpy()
    return np.asarray(value)


def _is_image(value: Any) -> bool:
    return hasattr(value, "save") and hasattr(value, "mode")


def _image_bytes(image: Any, image_format: str) -> bytes:
    buffer = io.BytesIO()
    image.save(buffer, format=image_format)
    return buffer.getvalue()


_ENCODERS: dict[str, Callable[[Any, str], bytes]] = {
    JSON: _encode_json,
    CSV: _encode_csv,
    NPY: _encode_npy,
    **{kind: _encode_image for kind in IMAGE_TYPES},
}
OUTPUT_TYPES = (JSON, CSV, NPY, *IMAGE_TYPES)
