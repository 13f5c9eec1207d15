"""Serializers and deserializers behave like the SageMaker SDK's classes of the same names."""

from __future__ import annotations

import io
import json

import numpy as np
import pytest

from localmaker.deserializers import (
    BytesDeserializer,
    CSVDeserializer,
    JSONDeserializer,
    NumpyDeserializer,
    StringDeserializer,
)
from localmaker.serializers import CSVSerializer, IdentitySerializer, JSONSerializer, NumpySerializer


def test_json_serializer_encodes_objects_and_arrays_and_passes_json_text_through():
    serializer = JSONSerializer()
    assert serializer.CONTENT_TYPE == "application/json"
    assert json.loads(serializer.serialize({"inputs": ["a"]})) == {"inputs": ["a"]}
    assert json.loads(serializer.serialize(np.arange(3))) == [0, 1, 2]
    assert serializer.serialize('{"already": "json"}') == '{"already": "json"}'


def test_numpy_round_trip_without_pickle():
    payload = NumpySerializer().serialize(np.eye(2, dtype=np.float32))
    array = NumpyDeserializer().deserialize(io.BytesIO(payload), "application/x-npy")
    np.testing.assert_array_equal(array, np.eye(2))
    with pytest.raises(ValueError):
        NumpySerializer().serialize([])


def test_numpy_deserializer_refuses_pickled_objects():
    buffer = io.BytesIO()
    np.save(buffer, np.array([{"a": 1}], dtype=object), allow_pickle=True)
    with pytest.raises(ValueError):
        NumpyDeserializer().deserialize(io.BytesIO(buffer.getvalue()), "application/x-npy")


def test_csv_serializer_rows():
    assert CSVSerializer().serialize([[1, 2], [3, 4]]) == "1,2\n3,4"
    assert CSVSerializer().serialize([1, 2, 3]) == "1,2,3"
    assert CSVDeserializer().deserialize(io.BytesIO(b"1,2\n3,4"), "text/csv") == [["1", "2"], ["3", "4"]]


def test_identity_bytes_and_string():
    assert IdentitySerializer("image/png").CONTENT_TYPE == "image/png"
    assert IdentitySerializer().serialize(b"\x00\x01") == b"\x00\x01"
    assert BytesDeserializer().deserialize(io.BytesIO(b"raw"), "application/octet-stream") == b"raw"
    assert StringDeserializer().deserialize(io.BytesIO("é".encode()), "text/plain") == "é"


def test_json_deserializer_and_accept_headers():
    assert JSONDeserializer().deserialize(io.BytesIO(b'{"x": [1]}'), "application/json") == {"x": [1]}
    assert JSONDeserializer.ACCEPT == ("application/json",)
    assert NumpyDeserializer().ACCEPT == ("application/x-npy",)
    assert BytesDeserializer().ACCEPT == ("*/*",)
