"""log_tail read between a rotation's cut and its rename: it waits for the copy rather than answer with
the marker alone (a training job's FailureReason once held nothing but the marker, seen in CI)."""

from __future__ import annotations

import os
import threading
from pathlib import Path

from localmaker.control_plane.log_rotation import log_tail, rotate, rotated_path


def _mid_rotation(tmp_path: Path) -> tuple[Path, bytes]:
    """A log just cut by a rotation: its marker at the top, its old lines in a copy not yet renamed."""
    log = tmp_path / "training.log"
    log.write_bytes(b"".join(b"flood %07d\n" % n for n in range(2000)))
    assert rotate(log, max_bytes=4096) is not None
    moved = rotated_path(log).read_bytes()
    rotated_path(log).unlink()  # as it is between the cut and the rename
    return log, moved


def test_a_tail_read_mid_rotation_waits_for_the_copy(tmp_path: Path):
    log, moved = _mid_rotation(tmp_path)
    partial = tmp_path / "copy.rotating"
    partial.write_bytes(moved)
    threading.Timer(0.2, os.replace, args=(partial, rotated_path(log))).start()

    tail = log_tail(log).splitlines()

    assert tail[-2] == "flood 0001999" and "reached its cap of 4,096 bytes" in tail[-1]


def test_a_log_that_starts_with_other_lines_is_read_at_once(tmp_path: Path):
    log = tmp_path / "instance.log"
    log.write_text("[localmaker] the model loaded\nready\n")
    assert log_tail(log) == "[localmaker] the model loaded\nready\n"
