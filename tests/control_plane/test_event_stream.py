"""The event-stream encoder, read back by botocore's own parser exactly as boto3 reads a response stream."""

from __future__ import annotations

import json
from collections.abc import Iterator
from typing import Any

import botocore.session
import pytest
from botocore.eventstream import (
    ChecksumMismatch,
    EventStream,
    EventStreamBuffer,
)
from botocore.exceptions import EventStreamError
from botocore.parsers import EventStreamJSONParser

from localmaker.control_plane import event_stream


class _Raw:
    """What botocore's EventStream reads from: urllib3's body, here handing out bytes in awkward cuts."""

    def __init__(self, data: bytes, cut: int) -> None:
        self._data, self._cut = data, cut

    def stream(self) -> Iterator[bytes]:
        for start in range(0, len(self._data), self._cut):
            yield self._data[start:start + self._cut]

    def close(self) -> None:
        pass


def _events(data: bytes, cut: int = 7) -> EventStream:
    operation = botocore.session.get_session().get_service_model("sagemaker-runtime").operation_model(
        "InvokeEndpointWithResponseStream")
    shape = operation.output_shape.members["Body"]
    return EventStream(_Raw(data, cut), shape, EventStreamJSONParser(), operation.name)


def test_payload_parts_arrive_byte_for_byte_in_order_whatever_the_tcp_cuts():
    chunks = [b'{"step": 1}\n', b"\x00\xffbinary", "é ünïcode".encode(), b"x" * 70_000]
    wire = b"".join(part for chunk in chunks for part in event_stream.payload_parts(chunk))
    for cut in (1, 7, 4096, len(wire)):
        got = [event["PayloadPart"]["Bytes"] for event in _events(wire, cut)]
        assert got == chunks


def test_each_message_carries_the_headers_botocore_routes_by():
    [raw] = list(_buffer(event_stream.payload_parts(b"abc")[0]))
    assert raw.headers == {":event-type": "PayloadPart", ":content-type": "application/octet-stream",
                           ":message-type": "event"}
    assert raw.payload == b"abc"
    assert raw.to_response_dict()["status_code"] == 200


def test_a_chunk_larger_than_one_part_is_split_and_joins_back():
    chunk = bytes(range(256)) * (event_stream.MAX_PART_BYTES // 256 * 2 + 3)
    parts = event_stream.payload_parts(chunk)
    assert len(parts) == 3
    assert b"".join(e["PayloadPart"]["Bytes"] for e in _events(b"".join(parts), 65536)) == chunk


def test_model_stream_error_is_raised_by_botocores_iterator_with_its_message_and_code():
    wire = event_stream.payload_parts(b"first")[0] + event_stream.model_stream_error(
        "the container's stream broke off", event_stream.STREAM_BROKEN)
    iterator = iter(_events(wire))
    assert next(iterator) == {"PayloadPart": {"Bytes": b"first"}}
    with pytest.raises(EventStreamError) as caught:
        next(iterator)
    error: dict[str, Any] = caught.value.response["Error"]
    assert error == {"Code": "ModelStreamError", "Message": "the container's stream broke off"}
    raw = next(iter(_buffer(event_stream.model_stream_error("m", event_stream.STREAM_BROKEN))))
    assert json.loads(raw.payload) == {"Message": "m", "ErrorCode": "StreamBroken"}
    assert raw.headers[":message-type"] == "exception"


def test_internal_stream_failure_is_raised_by_botocores_iterator():
    with pytest.raises(EventStreamError) as caught:
        list(_events(event_stream.internal_stream_failure("lost the instance")))
    assert caught.value.response["Error"] == {"Code": "InternalStreamFailure", "Message": "lost the instance"}


def test_a_corrupted_byte_fails_the_checksum_botocore_checks():
    wire = bytearray(event_stream.payload_parts(b"payload")[0])
    wire[-6] ^= 0x01  # inside the payload: only the message CRC can notice
    with pytest.raises(ChecksumMismatch):
        list(_events(bytes(wire)))


def test_a_payload_over_botocores_limit_is_refused_here_not_sent():
    with pytest.raises(ValueError, match="exceeds"):
        event_stream.message({":event-type": "PayloadPart"}, b"x" * (event_stream.MAX_PAYLOAD_BYTES + 1))


def _buffer(data: bytes) -> EventStreamBuffer:
    buffer = EventStreamBuffer()
    buffer.add_data(data)
    return buffer
