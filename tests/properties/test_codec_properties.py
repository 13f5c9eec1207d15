"""Round trips and robustness of every byte encoding between client and container.

Client side: the SDK-compatible serializers and deserializers (localmaker.deploy). Container side: the
built-in handler's media_codecs (imported the way the container imports it, from ``code/`` on sys.path), and
the local endpoint's default input_fn/output_fn for user scripts that define neither.
"""

from __future__ import annotations

import io
import json
import pickle
from typing import Any

import numpy as np
import pytest
from hypothesis import assume, given
from hypothesis import strategies as st
from hypothesis.extra import numpy as hnp

from localmaker.deploy.deserializers import (
    BytesDeserializer,
    CSVDeserializer,
    ImageDeserializer,
    JSONDeserializer,
    NumpyDeserializer,
    StringDeserializer,
)
from localmaker.deploy.serializers import CSVSerializer, IdentitySerializer, JSONSerializer, NumpySerializer
from localmaker.local_endpoint import errors as endpoint_errors
from localmaker.local_endpoint.default_codecs import default_input_fn, default_output_fn
from tests.inference.handler_loader import sibling
from tests.properties import assert_same_json, bounded, json_values

media_codecs = sibling("media_codecs")
image_codecs = sibling("image_codecs")
serving_errors = sibling("serving_errors")

SHAPES = hnp.array_shapes(min_dims=0, max_dims=3, min_side=1, max_side=4)  # non-empty: the SDK refuses size 0
REAL_DTYPES = (
    hnp.boolean_dtypes() | hnp.integer_dtypes() | hnp.unsigned_integer_dtypes() | hnp.floating_dtypes()
)  # what JSON can carry; each in either byte order
NUMERIC_DTYPES = REAL_DTYPES | hnp.complex_number_dtypes()


def _stream(data: bytes | str) -> io.BytesIO:
    return io.BytesIO(data.encode("utf-8") if isinstance(data, str) else data)


def _assert_same_array(got: np.ndarray, expected: np.ndarray) -> None:
    """Same dtype, shape and bytes: NaN payloads and -0.0 included, which value equality would blur."""
    assert got.dtype == expected.dtype
    assert got.shape == expected.shape
    assert got.tobytes() == expected.tobytes()


def _assert_no_traceback(message: str) -> None:
    assert message.strip()
    assert "Traceback" not in message and 'File "' not in message


# --- client serializers -> client deserializers ------------------------------------------------------------


@bounded(150)
@given(json_values().filter(lambda value: not isinstance(value, str)))
def test_json_serializer_round_trips_json_values(value: Any) -> None:
    """A top-level string is taken as JSON text already, as the SDK does; the next test covers it."""
    text = JSONSerializer().serialize(value)
    assert_same_json(JSONDeserializer().deserialize(_stream(text), "application/json"), value)
    assert StringDeserializer().deserialize(_stream(text), "application/json") == text
    assert BytesDeserializer().deserialize(_stream(text), "application/json") == text.encode("utf-8")


@bounded(50)
@given(json_values())
def test_json_serializer_passes_json_text_through(value: Any) -> None:
    text = json.dumps(value, ensure_ascii=False)
    assert JSONSerializer().serialize(text) == text
    assert JSONSerializer().serialize(text.encode("utf-8")) == text


@bounded(40)
@given(st.one_of(st.binary(), st.text(), json_values()))
def test_identity_serializer_sends_the_object_itself(value: Any) -> None:
    assert IdentitySerializer("application/x-custom").serialize(value) is value


@bounded(120)
@given(hnp.arrays(NUMERIC_DTYPES, SHAPES))
def test_numpy_serializer_round_trips_arrays_bit_for_bit(array: np.ndarray) -> None:
    payload = NumpySerializer().serialize(array)
    _assert_same_array(NumpyDeserializer().deserialize(_stream(payload), "application/x-npy"), array)


@bounded(120)
@given(hnp.arrays(REAL_DTYPES, SHAPES))
def test_arrays_round_trip_through_json(array: np.ndarray) -> None:
    text = JSONSerializer().serialize(array)
    restored = NumpyDeserializer(dtype=array.dtype.str).deserialize(_stream(text), "application/json")
    assert restored.dtype == array.dtype and restored.shape == array.shape
    np.testing.assert_array_equal(restored, array)  # NaN matches NaN, as the property needs
    # {"inputs": array} is how requests usually carry arrays; the SDK lists them too
    body = JSONDeserializer().deserialize(_stream(JSONSerializer().serialize({"inputs": array})), "application/json")
    np.testing.assert_array_equal(np.array(body["inputs"], dtype=array.dtype), array)


# Rows without fields are left out: a row of no fields is an empty line, and the last one leaves no trace in
# the text (the SDK's serializer refuses such rows outright). Any other text survives, quotes, commas, "\r",
# "\n" and NUL included; surrogates are not text and cannot be sent as UTF-8.
CSV_FIELDS = st.text(st.sampled_from(',"\r\n \x00a') | st.characters(), max_size=6)  # CSV's own characters, often
CSV_ROWS = st.lists(st.lists(CSV_FIELDS, min_size=1, max_size=4), max_size=5)


@bounded(150)
@given(CSV_ROWS)
def test_csv_round_trips_rows_of_strings(rows: list[list[str]]) -> None:
    text = CSVSerializer().serialize(rows)
    assert CSVDeserializer().deserialize(_stream(text), "text/csv") == rows


@bounded(60)
@given(st.lists(CSV_FIELDS, min_size=1, max_size=5))
def test_csv_serializer_sends_a_flat_list_as_one_row(row: list[str]) -> None:
    assume(row != [""])  # one empty field is, as text, the empty row excluded above
    text = CSVSerializer().serialize(row)
    assert CSVDeserializer().deserialize(_stream(text), "text/csv") == [row]
    assert CSVSerializer().serialize(tuple(row)) == text


CSV_NUMBER_DTYPES = st.sampled_from(["float16", "float32", "float64", "int8", "int32", "int64", "uint8", "uint32"])
CSV_SHAPES = hnp.array_shapes(min_dims=1, max_dims=2, min_side=1, max_side=4)


@bounded(100)
@given(CSV_NUMBER_DTYPES.flatmap(lambda dtype: hnp.arrays(dtype, CSV_SHAPES)))
def test_numeric_arrays_round_trip_through_csv(array: np.ndarray) -> None:
    text = CSVSerializer().serialize(array)
    restored = NumpyDeserializer(dtype=array.dtype.name).deserialize(_stream(text), "text/csv")
    # genfromtxt drops length-1 axes (a one-row body is 1-D), as the SDK's NumpyDeserializer does
    assert restored.size == array.size
    np.testing.assert_array_equal(restored.reshape(array.shape), array)


def _npz(arrays: list[np.ndarray]) -> bytes:
    buffer = io.BytesIO()
    np.savez(buffer, *arrays)
    return buffer.getvalue()


NPY_LIKE_BODIES = st.one_of(
    hnp.arrays(NUMERIC_DTYPES, SHAPES).map(NumpySerializer().serialize),
    st.lists(hnp.arrays(REAL_DTYPES, SHAPES), min_size=1, max_size=3).map(_npz),
    st.builds(bytes.__add__, st.sampled_from([b"", b"\x93NUMPY", b"PK\x03\x04"]), st.binary(max_size=30)),
)


@bounded(100)
@given(NPY_LIKE_BODIES)
def test_numpy_deserializer_returns_only_arrays_a_npy_body_holds(body: bytes) -> None:
    try:
        array = NumpyDeserializer().deserialize(_stream(body), "application/x-npy")
    except Exception:  # any refusal is fine here; the property is about what it returns
        return
    assert body.startswith(b"\x93NUMPY"), "an array from a body that is not an .npy file"
    _assert_same_array(array, np.load(io.BytesIO(body), allow_pickle=False))


class _Tripwire:
    """Unpickling one calls ``_tripped``: proof that something unpickled data from the network."""

    def __reduce__(self) -> tuple[Any, tuple[()]]:
        return (_tripped, ())


TRIPPED: list[bool] = []


def _tripped() -> _Tripwire:
    TRIPPED.append(True)
    return _Tripwire()


def _pickled_payloads() -> st.SearchStrategy[bytes]:
    def object_npy(shape: tuple[int, ...]) -> bytes:
        array = np.empty(shape, dtype=object)
        array.fill(_Tripwire())
        buffer = io.BytesIO()
        np.save(buffer, array, allow_pickle=True)
        return buffer.getvalue()

    return st.one_of(
        hnp.array_shapes(min_dims=0, max_dims=2, min_side=1, max_side=3).map(object_npy),
        st.integers(min_value=0, max_value=pickle.HIGHEST_PROTOCOL).map(lambda p: pickle.dumps(_Tripwire(), p)),
    )


@bounded(40)
@given(_pickled_payloads())
def test_numpy_deserializer_never_unpickles(payload: bytes) -> None:
    TRIPPED.clear()
    with pytest.raises(ValueError, match="allow_pickle"):
        NumpyDeserializer().deserialize(_stream(payload), "application/x-npy")
    assert not TRIPPED


def test_the_tripwire_fires_when_pickles_are_allowed() -> None:
    """The control for the property above: without it, a tripwire that never fires would prove nothing."""
    TRIPPED.clear()
    array = np.array([_Tripwire()], dtype=object)
    buffer = io.BytesIO()
    np.save(buffer, array, allow_pickle=True)
    NumpyDeserializer(allow_pickle=True).deserialize(_stream(buffer.getvalue()), "application/x-npy")
    assert TRIPPED


IMAGES = st.sampled_from([("L", 1), ("RGB", 3), ("RGBA", 4)]).flatmap(
    lambda mode: hnp.arrays(np.uint8, st.tuples(st.integers(1, 5), st.integers(1, 5), st.just(mode[1]))).map(
        lambda pixels: (mode[0], pixels)
    )
)


@bounded(40)
@given(st.lists(IMAGES, min_size=1, max_size=3))
def test_container_images_round_trip_to_the_image_deserializer(images: list[tuple[str, np.ndarray]]) -> None:
    from PIL import Image

    pil = [Image.fromarray(pixels[..., 0] if mode == "L" else pixels) for mode, pixels in images]
    raw = ImageDeserializer().deserialize(_stream(image_codecs.encode_png(pil[0])), "image/png")
    assert (raw.mode, raw.size) == (pil[0].mode, pil[0].size)
    np.testing.assert_array_equal(np.asarray(raw), np.asarray(pil[0]))
    body = media_codecs.encode_json({"images": [image_codecs.png_base64(image) for image in pil]})
    decoded = ImageDeserializer().deserialize(_stream(body), "application/json")
    assert [np.asarray(image).tolist() for image in decoded] == [np.asarray(image).tolist() for image in pil]


# --- container codecs (code/media_codecs.py) ---------------------------------------------------------------


@bounded(150)
@given(json_values())
def test_container_json_round_trips_to_the_container_and_the_client(value: Any) -> None:
    body = media_codecs.encode_json(value)
    assert_same_json(media_codecs.decode_json_body(body, "application/json; charset=utf-8"), value)
    assert_same_json(JSONDeserializer().deserialize(_stream(body), "application/json"), value)


@bounded(80)
@given(hnp.arrays(REAL_DTYPES, SHAPES))
def test_container_json_encodes_arrays_and_numpy_scalars_as_lists(array: np.ndarray) -> None:
    body = media_codecs.encode_json({"array": array, "first": array.flat[0]})
    decoded = json.loads(body)
    restored = np.array(decoded["array"], dtype=array.dtype)
    assert restored.shape == array.shape
    np.testing.assert_array_equal(restored, array)
    np.testing.assert_array_equal(np.array(decoded["first"], dtype=array.dtype), array.flat[0])


ARRAY_VIEWS = st.sampled_from(
    [lambda a: a, lambda a: a.T, lambda a: a[::-1] if a.ndim else a, lambda a: np.asfortranarray(a)]
)  # transposed, reversed and Fortran-ordered views are not C-contiguous


@bounded(100)
@given(hnp.arrays(hnp.floating_dtypes() | hnp.integer_dtypes() | hnp.boolean_dtypes(), SHAPES), ARRAY_VIEWS)
def test_container_npy_round_trips_as_float32(array: np.ndarray, view: Any) -> None:
    array = view(array)
    with np.errstate(over="ignore"):  # float64 beyond float32's range becomes inf, as the cast defines
        expected = array.astype(np.float32)
        body = media_codecs.encode_npy(array)
    _assert_same_array(np.load(io.BytesIO(body), allow_pickle=False), expected)
    _assert_same_array(NumpyDeserializer().deserialize(_stream(body), "application/x-npy"), expected)


MEDIA_TYPES = ["application/json", "application/x-npy", "image/png", "image/jpeg", "text/csv"]
ACCEPT_KINDS = [*MEDIA_TYPES, "*/*", "image/*", "application/*", "text/*", "audio/mpeg", "*", "", "/*"]
ACCEPT_CANDIDATE = st.builds(
    lambda kind, case, params, pad: f"{pad}{case(kind)}{params}{pad}",
    st.sampled_from(ACCEPT_KINDS),
    st.sampled_from([str.lower, str.upper, str.title]),
    st.sampled_from(["", ";q=0.5", "; charset=utf-8"]),
    st.sampled_from(["", " ", "\t"]),
)
ACCEPTS = st.one_of(st.none(), st.lists(ACCEPT_CANDIDATE, min_size=1, max_size=4).map(",".join), st.text(max_size=20))
OFFERS = st.lists(st.sampled_from(MEDIA_TYPES), min_size=1, max_size=4, unique=True).map(tuple)


def _first_acceptable(accept: str | None, offered: tuple[str, ...]) -> str | None:
    """negotiate's documented rule, restated: per Accept entry in order, the first offer it covers."""
    if not accept or not accept.strip():
        return offered[0]
    for candidate in accept.split(","):
        kind = candidate.split(";", 1)[0].strip().lower()
        for offer in offered:
            if kind in ("*/*", offer) or (kind.endswith("/*") and offer.startswith(kind[:-1])):
                return offer
    return None


@bounded(200)
@given(ACCEPTS, OFFERS)
def test_negotiate_picks_an_offered_type_or_refuses_with_406(accept: str | None, offered: tuple[str, ...]) -> None:
    expected = _first_acceptable(accept, offered)
    if expected is None:
        with pytest.raises(serving_errors.UnsupportedAccept) as info:
            media_codecs.negotiate(accept, offered)
        assert info.value.status_code == 406
        assert all(offer in info.value.message for offer in offered)
        _assert_no_traceback(info.value.message)
    else:
        chosen = media_codecs.negotiate(accept, offered)
        assert chosen in offered
        assert chosen == expected


def _deeply_nested(depth: int, opener: str, closed: bool) -> bytes:
    closer = {"[": "]", '{"a":': "}"}[opener]
    return (opener * depth + ("0" + closer * depth if closed else "")).encode()


def _spliced(document: bytes, at: int, junk: bytes) -> bytes:
    at %= len(document) + 1
    return document[:at] + junk + document[at:]


JSON_DOCUMENTS = json_values().map(lambda value: json.dumps(value, ensure_ascii=False).encode("utf-8"))
REQUEST_BODIES = st.one_of(
    st.binary(max_size=40),
    JSON_DOCUMENTS,
    st.builds(_spliced, JSON_DOCUMENTS, st.integers(min_value=0), st.binary(min_size=1, max_size=3)),
    st.builds(_deeply_nested, st.integers(1, 50_000), st.sampled_from(["[", '{"a":']), st.booleans()),
    st.sampled_from([b"\xef\xbb\xbf{}", b"NaN", b"-Infinity", b'"\\ud800"', b"1" * 5000, b" \n\t ", b"{}" * 2]),
)


@bounded(300)
@given(REQUEST_BODIES, st.sampled_from([None, "", "application/json", "Application/JSON; charset=utf-8"]))
def test_decode_json_body_returns_a_value_or_a_400(body: bytes, content_type: str | None) -> None:
    try:
        value = media_codecs.decode_json_body(body, content_type)
    except serving_errors.InvalidInput as err:
        assert err.status_code == 400
        _assert_no_traceback(err.message)
    else:
        # a value is only ever what the body says, never a guess
        assert_same_json(value, json.loads(body.decode("utf-8")))


def test_a_json_body_nested_beyond_the_recursion_limit_is_a_400() -> None:
    """Found by the property above: json.loads raised RecursionError, which the server answers with a 500."""
    with pytest.raises(serving_errors.InvalidInput, match="too deeply"):
        media_codecs.decode_json_body(b"[" * 100_000, "application/json")


@bounded(60)
@given(REQUEST_BODIES, st.text(min_size=1, max_size=20))
def test_decode_json_body_refuses_other_content_types_with_415(body: bytes, content_type: str) -> None:
    assume(media_codecs.media_type(content_type) not in ("", "application/json"))
    with pytest.raises(serving_errors.UnsupportedContentType) as info:
        media_codecs.decode_json_body(body, content_type)
    assert info.value.status_code == 415
    _assert_no_traceback(info.value.message)


# --- the local endpoint's default input_fn/output_fn (for scripts without their own) -----------------------


@bounded(80)
@given(json_values().filter(lambda value: not isinstance(value, str)))  # a str is sent as JSON text already
def test_default_input_fn_reads_what_the_json_serializer_sends(value: Any) -> None:
    body = JSONSerializer().serialize(value).encode("utf-8")
    assert_same_json(default_input_fn(body, "application/json"), value)


@bounded(80)
@given(hnp.arrays(NUMERIC_DTYPES, SHAPES))
def test_default_input_fn_reads_what_the_numpy_serializer_sends(array: np.ndarray) -> None:
    _assert_same_array(default_input_fn(NumpySerializer().serialize(array), "application/x-npy"), array)


@bounded(60)
@given(hnp.arrays("float64", CSV_SHAPES))
def test_default_input_fn_reads_numbers_the_csv_serializer_sends(array: np.ndarray) -> None:
    rows = default_input_fn(CSVSerializer().serialize(array).encode("utf-8"), "text/csv")
    np.testing.assert_array_equal(np.array(rows).reshape(array.shape), array)


@bounded(80)
@given(hnp.arrays(REAL_DTYPES, SHAPES))
def test_default_output_fn_answers_what_the_client_deserializers_read(array: np.ndarray) -> None:
    body, kind = default_output_fn(array, "application/x-npy")
    assert kind == "application/x-npy"
    _assert_same_array(NumpyDeserializer().deserialize(_stream(body), kind), array)

    body, kind = default_output_fn(array, "*/*")
    assert kind == "application/json"
    restored = NumpyDeserializer(dtype=array.dtype.str).deserialize(_stream(body), kind)
    np.testing.assert_array_equal(restored, array)

    if array.ndim <= 2 and array.dtype.kind == "f":
        body, kind = default_output_fn(array, "text/csv")
        from_csv = NumpyDeserializer(dtype=array.dtype.str).deserialize(_stream(body), kind)
        np.testing.assert_array_equal(from_csv.reshape(array.shape), array)


@bounded(150)
@given(st.binary(max_size=60), st.sampled_from(["application/json", "application/x-npy", "text/csv", "text/plain"]))
def test_default_input_fn_returns_a_value_or_a_400(body: bytes, content_type: str) -> None:
    try:
        default_input_fn(body, content_type)
    except endpoint_errors.BadRequest as err:
        assert err.status == 400
        _assert_no_traceback(err.message)


@pytest.mark.parametrize(("body", "content_type"), [
    pytest.param(b"", "application/x-npy", id="empty-npy"),
    pytest.param(b"PK\x03\x04", "application/x-npy", id="zip-magic"),
    pytest.param(b"[" * 100_000, "application/json", id="deep-json"),
])
def test_default_input_fn_answers_400_to_bodies_that_crashed_it(body: bytes, content_type: str) -> None:
    with pytest.raises(endpoint_errors.BadRequest):
        default_input_fn(body, content_type)
