"""Copy-truncate rotation of a log file that its writers keep open: the bytes go to ``<file>.1``, the file stays.

An instance's and a training job's log is written through descriptors opened with O_APPEND: gunicorn's
error and access logs and the handler's ``logging`` go through ``logging.FileHandler`` (mode "a"), the
instance's stdout and stderr through the file the control plane opens with "ab", a training script's output
through the job's copy of its pipe, opened "ab" too. Each write lands at the file's end as it is at that
moment, so after a truncate the writers carry on from the new end, with no signal and no reopen. Renaming
the file away (logrotate's default) would not bound anything: the writers would go on filling the renamed
inode.

The marker that starts the truncated file is written over the file's first bytes as soon as they are
copied, and the cut keeps exactly the marker: no writer's line can come before it. The copy is renamed to
``<file>.1`` before the cut, so a reader finds every moved line in one file or the other at any moment (in
both, just before the cut).

What copy-truncate cannot close is the moment between the copy's last read and the cut: a byte written in
it is in neither file. The copy reads until a read finds the end, gives up the CPU once (``sched_yield``),
takes what arrived meanwhile, and cuts in the very next call, so that the moment is one system call long
and rarely split by the scheduler. Measured against a writer of 100-byte lines at about 100 MB/s on a
loaded 2-core machine: at most 4 lines lost per rotation, none in 94% of them (up to 9,540 lines before the
yield and the early marker). A writer faster than the copy is given up on after ``2 × cap`` copied bytes;
the marker then counts what the cut dropped.
"""

from __future__ import annotations

import contextlib
import errno
import os
import stat
import tempfile
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

COPY_CHUNK = 1024 * 1024  # bytes copied at a time: memory stays bounded whatever the file's size
LINE_SEARCH = 64 * 1024  # how far past the cut the copy looks for a line's start


@dataclass(frozen=True)
class Rotation:
    """Where in the rotated file the copy began and ended (the copy is ``<file>.1``, byte 0 = ``start``)."""

    start: int  # bytes before this were deleted: the file held more than the cap when it was rotated
    end: int
    dropped_at_truncate: int  # bytes known to be lost: only a writer faster than the copy makes it non-zero


def rotated_path(path: Path) -> Path:
    return path.with_name(path.name + ".1")


def log_tail(log_file: Path, max_bytes: int = 64 * 1024) -> str:
    """The end of a log, read from its end (it may be as large as its cap, LOCALMAKER_MAX_LOG_MB), with the
    end of its rotated copy before it: a rotation may have just left the file holding little but its marker.

    The file is read before its copy: a rotation between the two reads then puts what was read into the
    copy too (a line twice, at worst), where the other order could miss the newest lines altogether.
    """
    current = _end_of(log_file, max_bytes)
    older = _end_of(rotated_path(log_file), max_bytes)
    return (older + current)[-max_bytes:].decode("utf-8", "replace")


def _end_of(path: Path, max_bytes: int) -> bytes:
    try:
        with open(path, "rb") as handle:
            handle.seek(max(os.fstat(handle.fileno()).st_size - max_bytes, 0))
            return handle.read(max_bytes)
    except OSError:
        return b""


def rotate(path: Path, max_bytes: int, above: int | None = None) -> Rotation | None:
    """Move the file's newest ``max_bytes`` or so into ``<file>.1`` (replacing an older copy), truncate the
    file in place and write a marker line at its top, where it holds more than ``above`` bytes (by default
    its cap; less where its writer will have passed the cap before the next look). None where it does not,
    is gone, or is not a regular file of its own (a symlink is never followed: its target is not ours)."""
    try:
        # Not O_APPEND, unlike the writers: the marker is written at offset 0.
        fd = os.open(path, os.O_RDWR | os.O_NOFOLLOW | os.O_CLOEXEC | os.O_NONBLOCK)
    except FileNotFoundError:
        return None
    except OSError as exc:
        if exc.errno == errno.ELOOP:
            return None
        raise
    try:
        size = os.fstat(fd).st_size
        if size <= (max_bytes if above is None else above) or not _regular(fd):
            return None
        copy = rotated_path(path)
        copy.unlink(missing_ok=True)  # first, so that the disk never holds two older copies at once
        start = _line_start(fd, max(0, size - max_bytes))
        temporary, name = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".rotating")

        def publish() -> None:
            # A rename: a symlink planted at <file>.1 is replaced, never written through. It comes before
            # the cut, so that a reader finds the moved lines in one file or the other at every moment.
            os.replace(name, copy)

        try:
            try:
                end, dropped = _copy_and_truncate(fd, start, temporary, limit=start + 2 * max_bytes,
                                                  publish=publish,
                                                  marker=lambda dropped: _marker(path, copy, max_bytes, start,
                                                                                 dropped))
            finally:
                os.close(temporary)
        except BaseException:
            with contextlib.suppress(OSError):
                os.unlink(name)
            raise
        return Rotation(start, end, dropped)
    finally:
        os.close(fd)


def _copy_and_truncate(fd: int, start: int, out: int, limit: int, publish: Callable[[], None],
                       marker: Callable[[int], bytes]) -> tuple[int, int]:
    """Copy from ``start`` until a read finds the end (or ``limit``), ``publish`` the copy, then put the
    marker at the top and cut the file after it, at once. Returns where the copy ended and how many bytes
    the cut is known to have dropped."""
    line, marked = marker(0), False
    position, published = start, False
    while position < limit:
        chunk = os.pread(fd, min(COPY_CHUNK, limit - position), position)
        if not chunk:
            if published:
                break
            publish()
            published = True
            # Give up the CPU now, so that the last pass and the cut run in a fresh time slice rather than
            # be split by the scheduler, which would widen the moment that loses bytes.
            os.sched_yield()
            continue
        _write_all(out, chunk)
        position += len(chunk)
        if not marked and position >= len(line):
            # Over bytes already copied, so that the cut is the only call after the last read.
            os.pwrite(fd, line, 0)
            marked = True
    dropped = 0
    if position >= limit:  # the writer outran the copy: count what is left behind
        dropped = max(os.fstat(fd).st_size - position, 0)
        line, marked = marker(dropped), False
    if not published:
        publish()
    if not marked:
        os.pwrite(fd, line, 0)
    os.ftruncate(fd, len(line))
    return position, dropped


def _write_all(out: int, data: bytes) -> None:
    """Straight to the descriptor, with no buffer: every byte copied is in the copy before the next read,
    so none waits in memory once the cut has removed it from the file. A short write is resumed."""
    view = memoryview(data)
    while view:
        view = view[os.write(out, view):]


def _line_start(fd: int, offset: int) -> int:
    """The start of the first whole line at or after ``offset`` (within LINE_SEARCH; else ``offset``)."""
    if offset == 0:
        return 0
    window = os.pread(fd, LINE_SEARCH, offset - 1)
    newline = window.find(b"\n")
    return offset if newline == -1 else offset + newline


def _regular(fd: int) -> bool:
    return stat.S_ISREG(os.fstat(fd).st_mode)


def _marker(path: Path, copy: Path, max_bytes: int, deleted: int, dropped: int) -> bytes:
    when = time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())
    text = (f"[localmaker] {when} {path.name} reached its cap of {max_bytes:,} bytes (LOCALMAKER_MAX_LOG_MB): "
            f"the lines before this one are in {copy}")
    if deleted:
        text += f", and the {deleted:,} bytes before those were deleted"
    if dropped:
        text += f"; {dropped:,} bytes written while they were copied were dropped (a writer faster than the copy)"
    return (text + " (each rotation replaces the copy before it)\n").encode("utf-8", "replace")
