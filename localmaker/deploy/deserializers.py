"""Response deserializers with the SageMaker Python SDK's class names and behaviour.

``deserialize(stream, content_type)`` reads a file-like body, as the SDK's do.
"""

from __future__ import annotations

import base64
import csv
import io
import json
from typing import Any

import numpy as np
from numpy.lib.npyio import NpzFile


class BaseDeserializer:
    ACCEPT: tuple[str, ...] = ("*/*",)

    def deserialize(self, stream: Any, content_type: str) -> Any:
        raise NotImplementedError  # pragma: no cover - abstract


class BytesDeserializer(BaseDeserializer):
    """Returns the body as bytes; the SDK's default."""

    def deserialize(self, stream: Any, content_type: str) -> bytes:
        return bytes(stream.read())


class StringDeserializer(BaseDeserializer):
    ACCEPT: tuple[str, ...] = ("application/json",)

    def __init__(self, encoding: str = "UTF-8", accept: str | tuple[str, ...] = "application/json") -> None:
        self.encoding = encoding
        self.ACCEPT = (accept,) if isinstance(accept, str) else accept

    def deserialize(self, stream: Any, content_type: str) -> str:
        return str(stream.read().decode(self.encoding))


class JSONDeserializer(BaseDeserializer):
    ACCEPT = ("application/json",)

    def deserialize(self, stream: Any, content_type: str) -> Any:
        return json.load(io.TextIOWrapper(stream, encoding="utf-8"))


class NumpyDeserializer(BaseDeserializer):
    ACCEPT = ("application/x-npy",)

    def __init__(self, dtype: str | None = None, allow_pickle: bool = False) -> None:
        self.dtype = dtype
        self.allow_pickle = allow_pickle  # off by default: a pickle from a server can run code here

    def deserialize(self, stream: Any, content_type: str) -> np.ndarray:
        kind = content_type.split(";", 1)[0].strip()
        data = stream.read()
        if kind == "application/x-npy":
            loaded = np.load(io.BytesIO(data), allow_pickle=self.allow_pickle)
            if isinstance(loaded, NpzFile):  # np.asarray would quietly give the names of its members
                members = len(loaded.files)
                loaded.close()
                raise ValueError(
                    f"the {kind} response is an .npz archive of {members} array(s), not one .npy array: "
                    "have the endpoint answer with np.save, or read the bytes with BytesDeserializer and np.load"
                )
            return np.asarray(loaded)
        if kind == "application/json":
            return np.array(json.loads(data), dtype=self.dtype)
        if kind == "text/csv":
            return np.genfromtxt(io.StringIO(data.decode("utf-8")), delimiter=",", dtype=self.dtype)
        raise ValueError(f"NumpyDeserializer cannot read {content_type!r}; ask for application/x-npy")


class ImageDeserializer(BaseDeserializer):
    """PIL images from an image body, or from the ``images`` (base64 PNG) of a JSON body.

    One image body gives one ``PIL.Image.Image``; a JSON body gives a list of them, in seed order.
    """

    ACCEPT = ("image/png",)

    def __init__(self, accept: str = "image/png") -> None:
        self.ACCEPT = (accept,)

    def deserialize(self, stream: Any, content_type: str) -> Any:
        data = stream.read()
        kind = content_type.split(";", 1)[0].strip()
        if kind == "application/json":
            images = json.loads(data).get("images")
            if not isinstance(images, list):
                raise ValueError("the JSON response has no 'images' list; ImageDeserializer reads image responses")
            return [_open_image(base64.b64decode(encoded)) for encoded in images]
        if kind.startswith("image/"):
            return _open_image(data)
        raise ValueError(f"ImageDeserializer cannot read {content_type!r}; ask for image/png or application/json")


def _open_image(data: bytes) -> Any:
    from PIL import Image

    image = Image.open(io.BytesIO(data))
    image.load()  # decode now, while the bytes are at hand, so a corrupt image fails here
    return image


class CSVDeserializer(BaseDeserializer):
    ACCEPT = ("text/csv",)

    def deserialize(self, stream: Any, content_type: str) -> list[list[str]]:
        return list(csv.reader(io.StringIO(stream.read().decode("utf-8"))))


__all__ = ["BaseDeserializer", "BytesDeserializer", "CSVDeserializer", "ImageDeserializer", "JSONDeserializer",
           "NumpyDeserializer", "StringDeserializer"]
