"""Request serializers with the SageMaker Python SDK's class names and behaviour."""

from __future__ import annotations

import csv
import io
import json
from typing import Any

import numpy as np


class BaseSerializer:
    CONTENT_TYPE = "application/octet-stream"

    @property
    def content_type(self) -> str:
        return self.CONTENT_TYPE

    def serialize(self, data: Any) -> Any:
        raise NotImplementedError  # pragma: no cover - abstract


class JSONSerializer(BaseSerializer):
    CONTENT_TYPE = "application/json"

    def serialize(self, data: Any) -> str:
        if isinstance(data, str | bytes):
            return data.decode("utf-8") if isinstance(data, bytes) else data  # already JSON, as the SDK allows
        # The SDK turns arrays that are values of a top-level dict into lists too: {"inputs": array} is the usual
        # request. A default hook covers that and arrays at any depth.
        return json.dumps(data, default=_numpy_to_json)


def _numpy_to_json(value: Any) -> Any:
    if isinstance(value, np.ndarray):
        return value.tolist()
    if isinstance(value, np.generic):
        return value.item()
    raise TypeError(f"{type(value).__name__} is not JSON serializable: send lists, dicts, numbers, strings or arrays")


class NumpySerializer(BaseSerializer):
    CONTENT_TYPE = "application/x-npy"

    def __init__(self, dtype: str | None = None) -> None:
        self.dtype = dtype

    def serialize(self, data: Any) -> bytes:
        array = np.asarray(data, dtype=self.dtype)
        if array.size == 0:
            raise ValueError("cannot serialize an empty array")
        buffer = io.BytesIO()
        np.save(buffer, array, allow_pickle=False)
        return buffer.getvalue()


class CSVSerializer(BaseSerializer):
    CONTENT_TYPE = "text/csv"

    def serialize(self, data: Any) -> str:
        if isinstance(data, str):
            return data
        if isinstance(data, list | tuple):  # not through numpy: its str arrays drop trailing NULs
            rows = list(data) if not data or isinstance(data[0], list | tuple | np.ndarray) else [data]
        else:  # an array or a scalar; testing an array's truth, as a list's above, raises for more than one element
            rows = list(np.atleast_2d(np.asarray(data)))
        return "\n".join(_csv_row(row) for row in rows)


def _csv_row(row: Any) -> str:
    """One row as the SDK writes it: its own writer, the terminator stripped, rows then joined with "\\n".

    The writer quotes only the characters of its own line terminator, so it keeps the default "\\r\\n": with
    "\\n" alone a field holding a bare "\\r" went out unquoted, and any CSV reader ends the row there.
    """
    buffer = io.StringIO()
    csv.writer(buffer).writerow(row)
    return buffer.getvalue()[: -len("\r\n")]


class IdentitySerializer(BaseSerializer):
    """Sends the data as it is; the SDK's default."""

    def __init__(self, content_type: str = "application/octet-stream") -> None:
        self.CONTENT_TYPE = content_type

    def serialize(self, data: Any) -> Any:
        return data


__all__ = ["BaseSerializer", "CSVSerializer", "IdentitySerializer", "JSONSerializer", "NumpySerializer"]
