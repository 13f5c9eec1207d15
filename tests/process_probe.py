"""Reads /proc to tell whether processes a test started are really gone (a zombie is, once its last thread is)."""

from __future__ import annotations

import os
from pathlib import Path


def _stat_fields(pid: int) -> list[str] | None:
    try:
        raw = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return None
    # The command name is in parentheses and may hold spaces; the fields after it are fixed.
    return raw.rsplit(")", 1)[1].split()


def _running(pid: int, fields: list[str] | None) -> bool:
    """Whether ``pid`` still runs: a zombie counts as gone only once its last thread has exited too.

    SIGKILL makes a multi-threaded leader a zombie within a millisecond, while its other threads take
    milliseconds more to exit; until the last one has, the process's files (its sockets among them) are
    still open, so a test that went on at the first ``Z`` raced the kill it meant to wait for.
    """
    if fields is None:
        return False
    if fields[0] != "Z":
        return True
    try:
        return len(os.listdir(f"/proc/{pid}/task")) > 1
    except OSError:
        return False


def is_alive(pid: int) -> bool:
    return _running(pid, _stat_fields(pid))


def group_members(pgid: int) -> list[int]:
    """Live processes in process group ``pgid`` (an instance's gunicorn master and its workers)."""
    members = []
    for entry in os.listdir("/proc"):
        if entry.isdigit():
            fields = _stat_fields(int(entry))
            if fields is not None and int(fields[2]) == pgid and _running(int(entry), fields):
                members.append(int(entry))
    return members
