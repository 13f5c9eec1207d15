"""AWS event-stream framing (``application/vnd.amazon.eventstream``): what InvokeEndpointWithResponseStream sends.

Every message is framed as AWS frames it, and as ``botocore.eventstream`` reads it:

    total length (uint32) | headers length (uint32) | CRC32 of those 8 bytes (the prelude)
    headers: name length (uint8), name, value type (uint8, 7 = string), value length (uint16), value
    payload
    CRC32 of everything before it

The runtime API's stream carries three kinds of message (botocore's ``ResponseStream`` shape):
``PayloadPart`` events whose payload is the container's bytes as they came, and the two exceptions,
``ModelStreamError`` and ``InternalStreamFailure``, whose payload is a JSON object with ``Message`` (and
``ErrorCode``). botocore raises the exceptions from its iterator as ``EventStreamError``.
"""

from __future__ import annotations

import json
import struct
from binascii import crc32

EVENT_STREAM = "application/vnd.amazon.eventstream"
_STRING = 7  # the header value type botocore reads as a UTF-8 string
_PRELUDE = struct.Struct(">II")
# botocore's limits (eventstream.py): a payload over 24 MiB, or headers over 128 KiB, end the stream.
MAX_PAYLOAD_BYTES = 24 * 1024 * 1024
MAX_HEADERS_BYTES = 128 * 1024
# What one PayloadPart carries at most here: a larger container chunk is split, since botocore would
# end the whole stream at a payload over its limit.
MAX_PART_BYTES = 1024 * 1024

# The ErrorCode values of ModelStreamError, as the API reference lists them.
MODEL_INVOCATION_TIME_EXCEEDED = "ModelInvocationTimeExceeded"
STREAM_BROKEN = "StreamBroken"


def message(headers: dict[str, str], payload: bytes) -> bytes:
    """One event-stream message with string ``headers`` and ``payload``, CRCs included."""
    encoded = b"".join(_header(name, value) for name, value in headers.items())
    if len(encoded) > MAX_HEADERS_BYTES:
        raise ValueError(f"event headers of {len(encoded)} bytes exceed the {MAX_HEADERS_BYTES}-byte limit")
    if len(payload) > MAX_PAYLOAD_BYTES:
        raise ValueError(f"an event payload of {len(payload)} bytes exceeds the {MAX_PAYLOAD_BYTES}-byte limit")
    total = _PRELUDE.size + 4 + len(encoded) + len(payload) + 4
    prelude = _PRELUDE.pack(total, len(encoded))
    head = prelude + struct.pack(">I", crc32(prelude)) + encoded + payload
    return head + struct.pack(">I", crc32(head))


def payload_parts(chunk: bytes) -> list[bytes]:
    """``chunk`` as PayloadPart events, split where it is larger than one part carries."""
    return [message({":event-type": "PayloadPart", ":content-type": "application/octet-stream",
                     ":message-type": "event"}, chunk[start:start + MAX_PART_BYTES])
            for start in range(0, len(chunk), MAX_PART_BYTES)]


def model_stream_error(text: str, error_code: str) -> bytes:
    """The ModelStreamError exception event: the container's stream failed after it had begun."""
    return _exception("ModelStreamError", {"Message": text, "ErrorCode": error_code})


def internal_stream_failure(text: str) -> bytes:
    """The InternalStreamFailure exception event: the stream failed for a reason not the model's."""
    return _exception("InternalStreamFailure", {"Message": text})


def _exception(kind: str, body: dict[str, str]) -> bytes:
    return message({":exception-type": kind, ":content-type": "application/json", ":message-type": "exception"},
                   json.dumps(body).encode("utf-8"))


def _header(name: str, value: str) -> bytes:
    raw_name, raw_value = name.encode("utf-8"), value.encode("utf-8")
    return struct.pack(">B", len(raw_name)) + raw_name + struct.pack(">BH", _STRING, len(raw_value)) + raw_value
