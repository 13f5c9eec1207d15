"""Copies each instance's and training job's log file into CloudWatch Logs (moto), as SageMaker does.

Endpoint containers log to ``/aws/sagemaker/Endpoints/<name>`` with one stream per instance
(``AllTraffic/i-0123456789abcdef0``: ``<variant>/<instance-id>``, as AWS names them); training
jobs to ``/aws/sagemaker/TrainingJobs`` with a stream per job (``localmaker.spec.names`` names both
groups). ``logs.get_log_events`` then works the same way it does against AWS.

The files are written by user code, so nothing about them is trusted: a line may be 300 MB without a
newline, or a job may print millions of lines. The file is read in bounded chunks; a line over
CloudWatch's event size is split into events of at most that size; batches keep PutLogEvents' limits;
and a stream ships at most ``max_stream_bytes`` / ``max_stream_events`` (moto holds every event in this
process's memory), then one last event says where the log goes on. Memory stays bounded whatever the
instance writes.

The disk stays bounded too: a followed file over ``max_file_bytes`` is rotated (``log_rotation.py``: its
bytes go to ``<file>.1``, the file is truncated in place and starts with a line saying so), so one log holds
about twice its cap on disk. A thread of its own checks the sizes whatever the shipping does meanwhile (a
round to CloudWatch may take seconds), every ROTATION_CHECK_S and more often while a file grows fast, and
rotates a file that would pass its cap before the next check: a flood overshoots the cap only by what it
writes while that thread waits for the CPU or the interpreter lock longer than it planned. The shipping
reads each chunk under the source's lock and the rotation runs under it, so every byte is shipped from
where it is: a rotation moves the bytes not yet shipped to ``<file>.1``, and they are shipped from there.
"""

from __future__ import annotations

import contextlib
import logging
import os
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from localmaker.control_plane.log_rotation import rotate, rotated_path

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
DEFAULT_MAX_FILE_BYTES = 64 * 1024**2  # LOCALMAKER_MAX_LOG_MB: what one followed log file keeps before rotating
# How often the followed files' sizes are checked: every ROTATION_CHECK_S, and more often while one grows
# fast, so that it grows by at most a quarter of its cap between two checks, down to MIN_ROTATION_CHECK_S.
# A file is rotated once it would pass its cap before the next check, at the rate it grew since the last.
ROTATION_CHECK_S = 0.05
MIN_ROTATION_CHECK_S = 0.005


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
    backlog: int | None = None  # after a rotation: where in <file>.1 the bytes not yet shipped begin
    # Guards offset and backlog against a rotation; held for one chunk's read, never while shipping.
    lock: threading.Lock = field(default_factory=threading.Lock, repr=False)
    seen_size: int = 0  # the file's size at the last check (the rotation thread's own)
    seen_at: float = field(default_factory=time.monotonic)
    rotation_failed: bool = False  # said once in the log, not every few milliseconds


class LogShipper:
    def __init__(self, logs_client: Callable[[], Any], interval_s: float = 1.0,
                 max_stream_bytes: int = 16 * 1024**2, max_stream_events: int = 100_000,
                 max_file_bytes: int | None = DEFAULT_MAX_FILE_BYTES) -> None:
        """``max_file_bytes``: each followed file's cap on disk (None: files grow as their writers please)."""
        self._client = logs_client
        self._interval_s = interval_s
        self._max_file_bytes = max_file_bytes
        self._max_stream_bytes = max_stream_bytes
        self._max_stream_events = max_stream_events
        self._sources: dict[tuple[str, str], _Source] = {}
        self._lock = threading.Lock()
        self._ship_lock = threading.Lock()
        self._stopped = threading.Event()
        self._threads: list[threading.Thread] = []

    def follow(self, group: str, stream: str, path: Path) -> None:
        with self._lock:
            self._sources[(group, stream)] = _Source(group, stream, path)
            if not self._threads:
                self._threads = [threading.Thread(target=self._run, name="log-shipper", daemon=True),
                                 threading.Thread(target=self._bound_files, name="log-rotation", daemon=True)]
                for thread in self._threads:
                    thread.start()

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

    def _bound_files(self) -> None:
        """Rotate the followed files over their cap: a stat each, so it runs far more often than shipping."""
        cap, wait = self._max_file_bytes, ROTATION_CHECK_S
        while cap is not None and not self._stopped.wait(wait):
            with self._lock:
                sources = list(self._sources.values())
            planned, wait = wait, ROTATION_CHECK_S
            for source in sources:
                try:
                    size, now = os.stat(source.path).st_size, time.monotonic()
                    rate = max(size - source.seen_size, 0) / max(now - source.seen_at, 1e-3)
                    source.seen_size, source.seen_at = size, now
                    if rate:
                        wait = min(wait, cap / 4 / rate)
                    # What it will have written by the next check (twice the plan: waking up is late at times).
                    coming = min(int(rate * 2 * max(planned, MIN_ROTATION_CHECK_S)), cap // 2)
                    if size > cap - coming:
                        self._rotate_if_over(source, above=cap - coming)
                        source.seen_size = 0
                except FileNotFoundError:
                    continue
                except Exception:  # noqa: BLE001 - a log that cannot be rotated must not stop the others
                    if not source.rotation_failed:
                        logger.exception("could not rotate %s; it is not bounded until it can be", source.path)
                    source.rotation_failed = True
            wait = max(wait, MIN_ROTATION_CHECK_S)

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
                          f"LOCALMAKER_LOG_STREAM_MAX_BYTES). {self._where_the_log_goes_on(source)}")
                source.capped = True
                source.pending = b""
                break
            batch.add(message)
        batch.send()

    def _where_the_log_goes_on(self, source: _Source) -> str:
        if self._max_file_bytes is None:
            return f"The whole log is in {source.path}"
        return (f"The log goes on in {source.path}, which keeps its newest {self._max_file_bytes:,} bytes or so "
                f"(LOCALMAKER_MAX_LOG_MB); the lines before those are in {rotated_path(source.path)} until the "
                "next rotation, and older ones are deleted")

    def _rotate_if_over(self, source: _Source, above: int | None = None) -> None:
        """Rotate the source's file where it is over ``above`` bytes (by default its cap); the bytes not yet
        shipped are then read from ``<file>.1``, and the file from its start."""
        assert self._max_file_bytes is not None
        with source.lock:
            rotation = rotate(source.path, self._max_file_bytes, above)
            if rotation is None:
                return
            # Unshipped bytes the rotation deleted (a flood that outran the shipping) are skipped, and so is
            # a backlog not yet shipped from the copy this one replaced.
            source.backlog = min(max(source.offset - rotation.start, 0), rotation.end - rotation.start)
            source.offset = 0

    def _room_for(self, source: _Source, message: str) -> bool:
        # One place is kept for the closing event that says where the rest is.
        size = len(message.encode("utf-8")) + EVENT_OVERHEAD
        return (source.shipped_events + 2 <= self._max_stream_events
                and source.shipped_bytes + size + _CLOSING_RESERVE <= self._max_stream_bytes)

    def _messages(self, source: _Source, final: bool) -> Iterator[str]:
        """The file's new lines, as messages of at most MAX_EVENT_BYTES, read a chunk at a time: after a
        rotation, first what it moved to ``<file>.1`` before it was shipped, then the file from its start."""
        while True:
            chunk, from_copy = _next_chunk(source)
            if chunk:
                yield from _lines(source, chunk)
            elif from_copy:  # the copy's end: the rest of a line the rotation cut is after the marker
                if source.pending:
                    yield from _pieces(source.pending)
                    source.pending = b""
            else:
                break
        if final and source.pending:
            yield from _pieces(source.pending)
            source.pending = b""


def _next_chunk(source: _Source) -> tuple[bytes, bool]:
    """The next bytes to ship and whether they come from the rotated copy; (b"", True) at the copy's end."""
    with source.lock:
        if source.backlog is not None:
            chunk = _read_at(rotated_path(source.path), source.backlog)
            source.backlog = source.backlog + len(chunk) if chunk else None
            return chunk, True
        chunk = _read_at(source.path, source.offset)
        source.offset += len(chunk)
        return chunk, False


def _read_at(path: Path, offset: int) -> bytes:
    try:
        with open(path, "rb") as handle:
            handle.seek(offset)
            return handle.read(READ_CHUNK)
    except FileNotFoundError:
        return b""


def _lines(source: _Source, chunk: bytes) -> Iterator[str]:
    """The messages that ``chunk`` completes; the start of an unfinished line is kept in ``source.pending``."""
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
