"""A transform job's input file as records, and its records as requests: SplitType, BatchStrategy, MaxPayloadInMB.

Batch transform's contract: a file (gunzipped first with ``CompressionType: Gzip``) is split by
``SplitType``: ``None`` keeps it whole, ``Line`` splits at newlines, ``RecordIO`` and ``TFRecord`` at
their record frames, each record keeping its frame, as the container expects it. ``SingleRecord`` sends
one record per request; ``MultiRecord`` packs as many whole records as fit in ``MaxPayloadInMB``
(``Line`` records joined by newlines, framed records back to back). A record larger than the limit
fails the job, as on AWS; ``MaxPayloadInMB: 0`` sets no limit (AWS's chunked-encoding mode).
"""

from __future__ import annotations

import gzip
import struct
import zlib
from collections.abc import Iterator
from dataclasses import dataclass

MB = 1024 * 1024
RECORDIO_MAGIC = 0xCED7230A


class RecordSplitError(ValueError):
    """A file that cannot be read as the job's SplitType and CompressionType say; it fails the job."""


@dataclass(frozen=True)
class Batch:
    """One request's body and which records (0-based, within their file) it carries."""

    first: int
    count: int
    body: bytes
    records: tuple[bytes, ...]


def decompress(data: bytes, compression: str) -> bytes:
    if compression != "Gzip":
        return data
    try:
        return gzip.decompress(data)
    except (OSError, EOFError, zlib.error) as exc:
        raise RecordSplitError(f"CompressionType is Gzip but the file is not gzip data ({exc})") from None


def split_records(data: bytes, split_type: str) -> list[bytes]:
    if split_type == "Line":
        return [line.rstrip(b"\r") for line in data.split(b"\n") if line.strip()]
    if split_type == "RecordIO":
        return list(_recordio(data))
    if split_type == "TFRecord":
        return list(_tfrecord(data))
    return [data] if data else []


def _recordio(data: bytes) -> Iterator[bytes]:
    """MXNet RecordIO: a magic word, a length word whose top 3 bits are a continuation flag, 4-byte padding."""
    offset = 0
    while offset < len(data):
        if len(data) - offset < 8:
            raise RecordSplitError(f"RecordIO: {len(data) - offset} stray bytes at offset {offset}")
        magic, header = struct.unpack_from("<II", data, offset)
        if magic != RECORDIO_MAGIC:
            raise RecordSplitError(f"RecordIO: no magic number at offset {offset}; is SplitType right?")
        length = header & ((1 << 29) - 1)
        end = offset + 8 + length + (-length % 4)
        if end > len(data):
            raise RecordSplitError(f"RecordIO: the record at offset {offset} runs past the end of the file")
        yield data[offset:end]
        offset = end


def _tfrecord(data: bytes) -> Iterator[bytes]:
    """TFRecord: an 8-byte length, its 4-byte CRC, the data, the data's 4-byte CRC."""
    offset = 0
    while offset < len(data):
        if len(data) - offset < 12:
            raise RecordSplitError(f"TFRecord: {len(data) - offset} stray bytes at offset {offset}")
        (length,) = struct.unpack_from("<Q", data, offset)
        end = offset + 12 + length + 4
        if end > len(data):
            raise RecordSplitError(f"TFRecord: the record at offset {offset} runs past the end of the file")
        yield data[offset:end]
        offset = end


def batches(records: list[bytes], strategy: str, split_type: str, max_payload_mb: int) -> Iterator[Batch]:
    """The requests for one file's records, in order. RecordTooLarge for a record beyond the limit."""
    limit = max_payload_mb * MB if max_payload_mb > 0 else None
    separator = b"\n" if split_type == "Line" else b""
    pending: list[bytes] = []
    size = 0
    first = 0
    for index, record in enumerate(records):
        if limit is not None and len(record) > limit:
            raise RecordTooLarge(index, len(record), max_payload_mb)
        added = len(record) + (len(separator) if pending else 0)
        if pending and (strategy != "MultiRecord" or (limit is not None and size + added > limit)):
            yield Batch(first, len(pending), separator.join(pending), tuple(pending))
            pending, size, first = [], 0, index
            added = len(record)
        pending.append(record)
        size += added
    if pending:
        yield Batch(first, len(pending), separator.join(pending), tuple(pending))


class RecordTooLarge(ValueError):
    def __init__(self, index: int, size: int, max_payload_mb: int) -> None:
        super().__init__(f"Too much data for max payload size: record {index + 1} is {size} bytes and "
                         f"MaxPayloadInMB is {max_payload_mb}; raise MaxPayloadInMB (at most 100) or split "
                         "the input into smaller records (SplitType)")
        self.index = index


def assemble(answers: list[bytes], assemble_with: str) -> bytes:
    """The ``.out`` file: ``Line`` ends each answer with a newline, ``None`` concatenates them."""
    if assemble_with == "Line":
        return b"".join(answer if answer.endswith(b"\n") else answer + b"\n" for answer in answers)
    return b"".join(answers)
