"""Copies each instance's and training job's log file into CloudWatch Logs (moto), as SageMaker does.

Endpoint containers log to ``/aws/sagemaker/Endpoints/<name>`` with one stream per instance; training
jobs to ``/aws/sagemaker/TrainingJobs`` with a stream per job (``localmaker.spec.names`` names both
groups). ``logs.get_log_events`` then works the same way it does against AWS.

The files are written by user code, so nothing about them is trusted: a line may be 300 MB without a
newline, or a job may print millions of lines. The file is read in bounded chunks; a line over
CloudWatch's event size is split into events of at most that size; batches keep PutLogEvents' limits;
and a stream ships at most ``max_stream_bytes`` / ``max_stream_events`` (moto holds every event in this
process's memory), then one last event says where the whole log is. Memory stays bounded whatever the
instance writes.
"""

from __future__ import annotations

import contextlib
import logging
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

logger = logging.getLogger(__name__)

# PutLogEvents' limits (CloudWatch Logs API reference): a batch is at most 10,000 events and 1,048,576
# bytes, counted as each message's UTF-8 plus 26 bytes per event; an event at most 256 KB with those 26.
EVENT_OVERHEAD = 26
MAX_EVENT_BYTES = 256 * 1024 - EVENT_OVERHEAD
MAX_BATCH_EVENTS = 10_000
MAX_BATCH_BYTES = 1_048_576
READ_CHUNK = 1024 * 1024  # bytes read from a log file at a time
MAX_BATCH = MAX_BATCH_EVENTS  # the name older callers import
_CLOSING_RESERVE = 1024  # bytes kept for the event that says a stream stops at its cap


@dataclass
class _Source:
    group: str
    stream: str
    path: Path
    offset: int = 0
    pending: bytes = b""  # the start of a line whose newline has not come yet; never over MAX_EVENT_BYTES
    created: bool = False
    shipped_bytes: int = 0  # as PutLogEvents counts them
    shipped_events: int = 0
    capped: bool = False  # the stream reached its cap: nothing more is read


class LogShipper:
    def __init__(self, logs_client: Callable[[], Any], interval_s: float = 1.0,
                 max_stream_bytes: int = 16 * 1024**2, max_stream_events: int = 100_000) -> None:
        self._client = logs_client
        self._interval_s = interval_s
        self._max_stream_bytes = max_stream_bytes
        self._max_stream_events = max_stream_events
        self._sources: dict[tuple[str, str], _Source] = {}
        self._lock = threading.Lock()
        self._ship_lock = threading.Lock()
        self._stopped = threading.Event()
        self._thread: threading.Thread | None = None

    def follow(self, group: str, stream: str, path: Path) -> None:
        with self._lock:
            self._sources[(group, stream)] = _Source(group, stream, path)
            if self._thread is None:
                self._thread = threading.Thread(target=self._run, name="log-shipper", daemon=True)
                self._thread.start()

    def release(self, group: str, stream: str | None = None) -> None:
        """Ship what is left of a group's (or one stream's) files, then stop following them."""
        with self._lock:
            keys = [k for k in self._sources if k[0] == group and (stream is None or k[1] == stream)]
            sources = [self._sources.pop(k) for k in keys]
        for source in sources:
            self._ship(source, final=True)

    def flush(self) -> None:
        with self._lock:
            sources = list(self._sources.values())
        for source in sources:
            self._ship(source)

    def stop(self) -> None:
        self._stopped.set()
        self.flush()

    def _run(self) -> None:
        while not self._stopped.wait(self._interval_s):
            self.flush()

    def _ship(self, source: _Source, final: bool = False) -> None:
        with self._ship_lock:  # the shipping thread and release() must not send the same bytes twice
            try:
                self._ship_locked(source, final)
            except Exception:  # noqa: BLE001 - losing a log line must never fail an endpoint or a job
                logger.exception("could not ship %s to CloudWatch Logs %s/%s", source.path, source.group,
                                 source.stream)

    def _ship_locked(self, source: _Source, final: bool) -> None:
        if source.capped:
            return
        batch = _Batch(self, source)
        for message in self._messages(source, final):
            if not self._room_for(source, message):
                batch.add(f"[localmaker] this stream stops here: it reached its cap of {self._max_stream_events:,} "
                          f"events or {self._max_stream_bytes:,} bytes (LOCALMAKER_LOG_STREAM_MAX_EVENTS, "
                          f"LOCALMAKER_LOG_STREAM_MAX_BYTES). The whole log is in {source.path}")
                source.capped = True
                source.pending = b""
                break
            batch.add(message)
        batch.send()

    def _room_for(self, source: _Source, message: str) -> bool:
        # One place is kept for the closing event that says where the rest is.
        size = len(message.encode("utf-8")) + EVENT_OVERHEAD
        return (source.shipped_events + 2 <= self._max_stream_events
                and source.shipped_bytes + size + _CLOSING_RESERVE <= self._max_stream_bytes)

    def _messages(self, source: _Source, final: bool) -> Iterator[str]:
        """The file's new lines, as messages of at most MAX_EVENT_BYTES, read a chunk at a time."""
        try:
            handle = open(source.path, "rb")  # noqa: SIM115 - closed below, after the generator's last read
        except FileNotFoundError:
            return
        with handle:
            handle.seek(source.offset)
            while chunk := handle.read(READ_CHUNK):
                source.offset += len(chunk)
                data = source.pending + chunk
                start = 0
                while (newline := data.find(b"\n", start)) != -1:
                    yield from _pieces(data[start:newline])
                    start = newline + 1
                rest = data[start:]
                # A line longer than an event is shipped in pieces as it arrives, never held whole.
                while len(rest) > MAX_EVENT_BYTES:
                    cut = _utf8_boundary(rest, MAX_EVENT_BYTES)
                    yield from _pieces(rest[:cut])
                    rest = rest[cut:]
                source.pending = rest
        if final and source.pending:
            yield from _pieces(source.pending)
            source.pending = b""


class _Batch:
    """Events for one PutLogEvents call, sent whenever another would break the call's limits."""

    def __init__(self, shipper: LogShipper, source: _Source) -> None:
        self._shipper, self._source = shipper, source
        self._events: list[dict[str, Any]] = []
        self._bytes = 0

    def add(self, message: str) -> None:
        size = len(message.encode("utf-8")) + EVENT_OVERHEAD
        if self._events and (len(self._events) >= MAX_BATCH_EVENTS or self._bytes + size > MAX_BATCH_BYTES):
            self.send()
        self._events.append({"timestamp": int(time.time() * 1000), "message": message})
        self._bytes += size
        self._source.shipped_bytes += size
        self._source.shipped_events += 1

    def send(self) -> None:
        if not self._events:
            return
        client = self._shipper._client()
        source = self._source
        if not source.created:
            for call, kwargs in ((client.create_log_group, {"logGroupName": source.group}),
                                 (client.create_log_stream, {"logGroupName": source.group,
                                                             "logStreamName": source.stream})):
                with contextlib.suppress(client.exceptions.ResourceAlreadyExistsException):
                    call(**kwargs)
            source.created = True
        client.put_log_events(logGroupName=source.group, logStreamName=source.stream, logEvents=self._events)
        self._events, self._bytes = [], 0


def _pieces(line: bytes) -> Iterator[str]:
    """A line as messages within MAX_EVENT_BYTES of UTF-8; blank lines are not shipped (CloudWatch refuses
    empty messages). Invalid bytes become U+FFFD, which may make a piece longer, so it is measured again."""
    while line:
        cut = _utf8_boundary(line, MAX_EVENT_BYTES) if len(line) > MAX_EVENT_BYTES else len(line)
        text = line[:cut].decode("utf-8", "replace")
        if len(text.encode("utf-8")) > MAX_EVENT_BYTES:  # replacement characters grew it
            cut = MAX_EVENT_BYTES // 3  # each byte decodes to at most 3 bytes of UTF-8
            text = line[:cut].decode("utf-8", "replace")
        if text.strip():
            yield text
        line = line[cut:]


def _utf8_boundary(data: bytes, limit: int) -> int:
    """The largest cut at or below ``limit`` that does not split a UTF-8 character (where the bytes are UTF-8)."""
    cut = limit
    for _ in range(3):  # a character is at most 4 bytes: back up over at most 3 continuation bytes
        if cut <= 0 or (data[cut] & 0xC0) != 0x80:
            break
        cut -= 1
    return cut if cut > 0 else limit
