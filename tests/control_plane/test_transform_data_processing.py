"""DataProcessing (InputFilter, JoinSource, OutputFilter) against the examples AWS documents for batch transform,
and the JSONPath AWS refuses, in its words; plus how records are split and batched."""

from __future__ import annotations

import struct

import pytest

from localmaker.control_plane.transform_data_processing import (
    DataProcessing,
    InvalidJsonPath,
    JsonPathFilter,
    RecordProcessingError,
)
from localmaker.control_plane.transform_records import (
    RECORDIO_MAGIC,
    RecordTooLarge,
    assemble,
    batches,
    split_records,
)

OPERATORS = "['$', '[', ']', '*', '.', ' ', ',', ':', '-', ''']"


def _select(expression: str, value, content_type: str = "application/json"):
    return JsonPathFilter.compile(expression, "InputFilter", content_type).select(value)


@pytest.mark.parametrize(("expression", "value", "expected"), [
    ("$", {"a": 1}, {"a": 1}),
    ("$[1:]", ["id-1", "5", "6"], ["5", "6"]),  # AWS's InputFilter example: drop the ID column
    ("$.features", {"id": 1, "features": [1, 2]}, [1, 2]),  # AWS's JSON InputFilter example
    ("$[0,5:]", list("abcdefg"), ["a", "f", "g"]),  # AWS's OutputFilter example: first column and from the sixth on
    ("$[0,-1]", ["id-1", "5", "6", "0.7"], ["id-1", "0.7"]),  # the ID and the appended prediction
    ("$['id','SageMakerOutput']", {"id": 1, "x": 2, "SageMakerOutput": {"label": 1}},
     {"id": 1, "SageMakerOutput": {"label": 1}}),  # AWS's JSON OutputFilter example
    ("$.a.*", {"a": {"b": 1, "c": 2}}, [1, 2]),
    ("$[-1]", [1, 2, 3], 3),
    ("$.field1.['child1','child2']", {"field1": {"child1": 1, "child2": 2, "child3": 3}}, {"child1": 1, "child2": 2}),
])
def test_supported_operators_select_as_aws_documents(expression, value, expected):
    assert _select(expression, value) == expected


@pytest.mark.parametrize(("expression", "found"), [
    ("$['account_id','SageMakerOutput']", "_"),  # AWS refuses underscores (aws/aws-sdk#184)
    ("$..text", ".."),
    ("$[?(@.a)]", "?"),
    ("$.a[0:4:2]", ":"),
    ("features", "f"),
])
def test_unsupported_jsonpath_is_refused_with_aws_message(expression, found):
    with pytest.raises(InvalidJsonPath) as refused:
        JsonPathFilter.compile(expression, "OutputFilter", "application/jsonlines")
    assert str(refused.value) == (f'Invalid OutputFilter: "{expression}". Unexpected "{found}" in JsonPath. '
                                  f'Supported operators for "application/jsonlines" are {OPERATORS}')


def test_nested_children_within_brackets_and_overlong_filters_are_refused():
    with pytest.raises(InvalidJsonPath, match="Nested children within brackets are not supported"):
        JsonPathFilter.compile("$.field1.['child1','child2.grandchild']", "InputFilter", "application/json")
    with pytest.raises(InvalidJsonPath, match="Member must have length less than or equal to 63"):
        JsonPathFilter.compile("$." + "a" * 62, "InputFilter", "application/json")


def test_an_index_beyond_the_joined_row_fails_the_record():
    with pytest.raises(RecordProcessingError, match="index 5 .* not within the dimension size"):
        _select("$[5]", ["a", "b"])


def test_csv_join_appends_the_answer_to_the_whole_input_row():
    processing = DataProcessing.from_request({"InputFilter": "$[1:]", "JoinSource": "Input",
                                              "OutputFilter": "$[0,-1]"}, "text/csv", "text/csv")
    assert processing.filter_input(b"id-7,1.5,2.5") == b"1.5,2.5"
    assert processing.finish(b"id-7,1.5,2.5", b"0.93") == b"id-7,0.93"
    everything = DataProcessing.from_request({"JoinSource": "Input"}, "text/csv", "text/csv")
    assert everything.finish(b'id-7,"a, quoted",2', b"0.93,1") == b'id-7,"a, quoted",2,0.93,1'


def test_json_join_puts_the_answer_under_sagemaker_output():
    processing = DataProcessing.from_request({"InputFilter": "$.features", "JoinSource": "Input"},
                                             "application/jsonlines", "application/json")
    record = b'{"id": 1, "features": [0.5, 1.5]}'
    assert processing.filter_input(record) == b"[0.5,1.5]"
    assert processing.finish(record, b'{"label": 1}') == b'{"id":1,"features":[0.5,1.5],"SageMakerOutput":{"label":1}}'
    # Input that is not a key-value object is kept under SageMakerInput.
    assert processing.finish(b"[1, 2]", b"3") == b'{"SageMakerInput":[1,2],"SageMakerOutput":3}'


def test_no_data_processing_passes_bytes_through_and_other_content_types_are_refused():
    assert not DataProcessing.from_request(None, "application/x-image", "").active
    assert not DataProcessing.from_request({"InputFilter": "$", "JoinSource": "None"}, "image/png", "").active
    with pytest.raises(InvalidJsonPath, match="reads JSON and CSV input only"):
        DataProcessing.from_request({"JoinSource": "Input"}, "application/x-image", "")


def _recordio(payload: bytes) -> bytes:
    return struct.pack("<II", RECORDIO_MAGIC, len(payload)) + payload + b"\0" * (-len(payload) % 4)


def test_split_types():
    assert split_records(b"a\nb\r\n\nc", "Line") == [b"a", b"b", b"c"]
    assert split_records(b"whole\nfile", "None") == [b"whole\nfile"]
    framed = [_recordio(b"abc"), _recordio(b"defgh")]
    assert split_records(b"".join(framed), "RecordIO") == framed
    tf = struct.pack("<Q", 3) + b"crc0" + b"xyz" + b"crc1"
    assert split_records(tf + tf, "TFRecord") == [tf, tf]


def test_batches_pack_whole_records_within_max_payload():
    records = [b"x" * 400_000] * 5
    multi = list(batches(records, "MultiRecord", "Line", 1))
    assert [(b.first, b.count) for b in multi] == [(0, 2), (2, 2), (4, 1)]
    assert multi[0].body == records[0] + b"\n" + records[1]
    assert [b.count for b in batches(records, "SingleRecord", "Line", 1)] == [1] * 5
    assert [b.count for b in batches(records, "MultiRecord", "Line", 0)] == [5]  # 0: no limit
    with pytest.raises(RecordTooLarge, match="record 2 is 1048577 bytes and MaxPayloadInMB is 1"):
        list(batches([b"a", b"x" * (1024 * 1024 + 1)], "MultiRecord", "Line", 1))
    assert assemble([b"1", b"2\n"], "Line") == b"1\n2\n"
    assert assemble([b"1", b"2"], "None") == b"12"
