"""A rotation never hides lines: at the moment of its cut, the lines it moved are already in the copy, so
log_tail (and every other reader) finds them. A training job's FailureReason once held nothing but the
marker, read between the cut and the copy's rename (seen in CI)."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from localmaker.control_plane import log_rotation
from localmaker.control_plane.log_rotation import log_tail, rotate


def test_the_moved_lines_are_in_the_copy_when_the_file_is_cut(tmp_path: Path, monkeypatch: pytest.MonkeyPatch):
    log = tmp_path / "training.log"
    log.write_bytes(b"".join(b"flood %07d\n" % n for n in range(2000)))
    tails_after_the_cut: list[str] = []
    cut = os.ftruncate

    def cut_then_read(fd: int, length: int) -> None:
        cut(fd, length)
        tails_after_the_cut.append(log_tail(log))

    monkeypatch.setattr(log_rotation.os, "ftruncate", cut_then_read)
    assert rotate(log, max_bytes=4096) is not None

    assert len(tails_after_the_cut) == 1
    tail = tails_after_the_cut[0].splitlines()
    assert tail[-2] == "flood 0001999" and "reached its cap of 4,096 bytes" in tail[-1]


def test_a_log_that_starts_with_other_lines_is_read_as_it_is(tmp_path: Path):
    log = tmp_path / "instance.log"
    log.write_text("[localmaker] the model loaded\nready\n")
    assert log_tail(log) == "[localmaker] the model loaded\nready\n"
