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
        return json.dumps(data.tolist() if isinstance(data, np.ndarray) else data)


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
        rows = np.atleast_2d(np.asarray(data)) if not isinstance(data, list) else data
        if rows and not isinstance(rows[0], list | tuple | np.ndarray):
            rows = [rows]
        buffer = io.StringIO()
        csv.writer(buffer, lineterminator="\n").writerows(rows)
        return buffer.getvalue().rstrip("\n")


class IdentitySerializer(BaseSerializer):
    """Sends the data as it is; the SDK's default."""

    def __init__(self, content_type: str = "application/octet-stream") -> None:
        self.CONTENT_TYPE = content_type

    def serialize(self, data: Any) -> Any:
        return data


__all__ = ["BaseSerializer", "CSVSerializer", "IdentitySerializer", "JSONSerializer", "NumpySerializer"]
