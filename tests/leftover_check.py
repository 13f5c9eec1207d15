"""Fails the test run when a process it started is still alive once it ends.

Importing this module marks the run: every process the tests start (instances, `localmaker up`, their
gunicorn workers, anything they start in turn) inherits ``LOCALMAKER_TEST_RUN`` with this run's own
value, also one that left our process group or was re-parented to init. At the end, any live process
whose environment carries that value is a leftover: it is reported, the run fails, and the process is
killed so it cannot disturb the next run.

A live descendant of this pytest process is a leftover too, whatever its environment says: that
catches what the marker would miss where /proc/PID/environ cannot be read, or a child started with an
environment of its own.
"""

from __future__ import annotations

import contextlib
import os
import signal
import time
import uuid
from pathlib import Path

import pytest

from tests.process_probe import is_alive

MARKER = "LOCALMAKER_TEST_RUN"
GRACE_ENV = "LOCALMAKER_LEFTOVER_GRACE_S"  # how long processes get to exit on their own (default 10 s)
# Set unconditionally: a pytest run started by a test checks its own processes, not its parent's.
RUN_ID = os.environ[MARKER] = uuid.uuid4().hex


def _parent(pid: int) -> int | None:
    try:
        return int(Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[1])
    except (OSError, ValueError, IndexError):
        return None


def _ancestors(pid: int) -> set[int]:
    pids: set[int] = set()
    current: int | None = pid
    while current is not None and current > 1 and current not in pids:
        pids.add(current)
        current = _parent(current)
    return pids


def _carries_marker(pid: int) -> bool:
    try:
        environ = Path(f"/proc/{pid}/environ").read_bytes()
    except OSError:  # gone, another user's, or not readable in this sandbox
        return False
    return f"{MARKER}={RUN_ID}".encode() in environ.split(b"\0")


def _is_ours(pid: int) -> bool:
    return os.getpid() in _ancestors(pid) - {pid} or _carries_marker(pid)


def _command_line(pid: int) -> str:
    try:
        return Path(f"/proc/{pid}/cmdline").read_bytes().replace(b"\0", b" ").decode(errors="replace").strip()
    except OSError:
        return "?"


def leftover_processes() -> dict[int, str]:
    """Live (not zombie) processes of this run, other than pytest itself and its ancestors."""
    pytest_and_its_parents = _ancestors(os.getpid())
    return {pid: _command_line(pid) for pid in map(int, filter(str.isdigit, os.listdir("/proc")))
            if pid not in pytest_and_its_parents and _is_ours(pid) and is_alive(pid)}


def leftovers_after_grace(grace_s: float) -> dict[int, str]:
    """What is still alive after ``grace_s``: processes that are shutting down get that long to finish."""
    deadline = time.monotonic() + grace_s
    while (found := leftover_processes()) and time.monotonic() < deadline:
        time.sleep(0.2)
    return found


@pytest.hookimpl(trylast=True)
def pytest_sessionfinish(session: pytest.Session, exitstatus: int) -> None:
    found = leftovers_after_grace(float(os.environ.get(GRACE_ENV, "10")))
    if not found:
        return
    lines = [f"  pid {pid}: {command}" for pid, command in sorted(found.items())]
    message = "\n".join([f"{len(found)} process(es) started by this test run outlived it (now killed):", *lines])
    reporter = session.config.pluginmanager.get_plugin("terminalreporter")
    if reporter is not None:
        reporter.write_sep("=", "leftover processes", red=True)
        reporter.write_line(message)
    else:
        print(message)
    for pid in found:
        with contextlib.suppress(ProcessLookupError):
            os.kill(pid, signal.SIGKILL)
    session.exitstatus = pytest.ExitCode.TESTS_FAILED
