"""A training script as a process: started in a group of its own, watched to its end, and never left behind.

The runtime (``training_runtime.py``) decides what to run and what a job's end means; this module owns the
process from start to reaping. The script runs in its own session, so killing its group reaches whatever
it forked. It dies with the control plane (Linux), its output goes to the job's log with the progress
lines it prints noted on the way (and kept out of the log: they feed the progress display, and are noise
to whoever reads the log or its CloudWatch stream), and MaxRuntimeInSeconds holds however the script
behaves. Where the script sees /opt/ml, its command starts with the ``container_paths`` wrapper, which
execs the script: the pid held here, its group and the parent-death signal all carry over to the script.
"""

from __future__ import annotations

import ctypes
import os
import re
import select
import signal
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import BinaryIO

from localmaker.control_plane.process_groups import kill_group, reap_group
from localmaker.control_plane.training_state import Progress, TrainingJobRecord
from localmaker.spec.training_progress import PREFIX as PROGRESS_PREFIX
from localmaker.spec.training_progress import parse_progress

PARTIAL_LINE_LIMIT = 64 * 1024  # output with no line break for longer than this is not a progress line


def start_script(command: list[str], cwd: Path, env: dict[str, str]) -> subprocess.Popen[bytes]:
    """Start the script in a session of its own, its output (both streams) on a pipe to be copied."""
    return subprocess.Popen(
        command, cwd=cwd, env=env, stdin=subprocess.DEVNULL,
        stdout=subprocess.PIPE, stderr=subprocess.STDOUT, start_new_session=True,
        preexec_fn=_die_with_parent())


def copy_output(job: TrainingJobRecord, process: subprocess.Popen[bytes], log: BinaryIO,
                deadline: float) -> None:
    """Copy the script's output into ``log`` until the pipe closes, then close our end of it.

    If copying fails (a log we cannot write), the script must not go on running unwatched: its group is
    killed and the script reaped before the error propagates.
    """
    try:
        _pump(job, process, log, deadline)
    except BaseException:
        reap_group(process, timeout_s=None)
        raise
    finally:
        assert process.stdout is not None
        process.stdout.close()  # our end of the pipe: one per job, kept as long as the job is listed


def wait_for_exit(job: TrainingJobRecord, process: subprocess.Popen[bytes], deadline: float) -> int:
    """The script's exit code, once it has exited (or been killed at the deadline) and its group is gone."""
    try:
        # The script may close its output and go on running; the limit holds for it too.
        code = process.wait(timeout=max(deadline - time.monotonic(), 0))
    except subprocess.TimeoutExpired:
        exceed_max_runtime(job, process)
        code = process.wait()
    kill_group(process)  # anything the script left running in its group goes too
    return code


def exceed_max_runtime(job: TrainingJobRecord, process: subprocess.Popen[bytes]) -> None:
    job.failure_reason = f"MaxRuntimeExceeded: the job ran past {job.spec.max_runtime_s}s"
    kill_group(process)


def _pump(job: TrainingJobRecord, process: subprocess.Popen[bytes], log: BinaryIO, deadline: float) -> None:
    """Copy until the pipe closes; kill the script at MaxRuntimeInSeconds.

    poll() with a timeout, not a loop over lines: a script that hangs silently, or only redraws a
    tqdm bar with '\\r', must be stopped on time too. poll() rather than select(), which fails on
    descriptors above 1024 (a busy control plane has that many).
    """
    assert process.stdout is not None
    fd = process.stdout.fileno()
    poller = select.poll()
    poller.register(fd, select.POLLIN)
    exceeded = False
    held = b""  # the unfinished last line, held back while it may still become a progress line
    mid_line = False  # the log's last write ended inside a line, so what comes next starts no line
    while True:
        remaining = deadline - time.monotonic()
        if remaining <= 0 and not exceeded:
            exceed_max_runtime(job, process)
            exceeded = True
        # Once killed, wait for the pipe to close: the process group is gone, so that is prompt.
        # Otherwise wake at least once a minute: poll() refuses timeouts past about 24 days.
        if not poller.poll(None if exceeded else min(remaining, 60) * 1000):
            continue
        chunk = os.read(fd, 65536)
        if not chunk:
            if held and not _is_progress_line(job, held):
                log.write(held)
                log.flush()
            return
        kept, held, mid_line = _without_progress_lines(job, held + chunk, mid_line)
        log.write(kept)
        log.flush()


_LINE = re.compile(rb"[^\r\n]*(?:\r\n|[\r\n])")  # one whole line, with its ending (tqdm redraws end in \r)
_PREFIX = PROGRESS_PREFIX.encode()


def _without_progress_lines(job: TrainingJobRecord, data: bytes, mid_line: bool) -> tuple[bytes, bytes, bool]:
    """What of ``data`` goes to the log, the unfinished line held back, and whether the log now ends inside
    a line. Every progress line is noted; one that starts a line (as the built-in script prints them) is
    left out of the log. A line that merely contains one (a logger's prefix before it) is the user's, kept.
    The unfinished end is held only while it may still become a progress line, and never past
    PARTIAL_LINE_LIMIT: output with no line break is copied as it comes."""
    kept = bytearray()
    end = 0
    for match in _LINE.finditer(data):
        line, end = match.group(), match.end()
        if (_is_progress_line(job, line) and not mid_line) or line == b"\r":  # a progress line; a bare redraw
            continue
        kept += line
        mid_line = False
    rest = data[end:]
    if not mid_line and len(rest) <= PARTIAL_LINE_LIMIT and _may_become_progress(rest):
        return bytes(kept), rest, mid_line
    return bytes(kept + rest), b"", bool(rest) or mid_line


def _is_progress_line(job: TrainingJobRecord, line: bytes) -> bool:
    """Note the progress ``line`` reports (anywhere in it); True when it starts with the progress prefix."""
    progress = parse_progress(line.decode("utf-8", "replace"))
    if progress is None:
        return False
    job.progress = Progress(progress.step, progress.total, progress.loss)
    return line.lstrip().startswith(_PREFIX)


def _may_become_progress(start: bytes) -> bool:
    text = start.lstrip()
    return _PREFIX.startswith(text) or text.startswith(_PREFIX)


def _die_with_parent() -> Callable[[], None] | None:
    """Linux: the script gets SIGKILL if the control plane dies without cleanup (kill -9).

    The death signal follows the forking *thread*, which here is the job's own thread: it lives until
    the script exits, so the signal fires only when the whole control plane is gone. libc is resolved
    before the fork, so the child only makes one system call before exec.
    """
    if not sys.platform.startswith("linux"):
        return None
    try:
        prctl = ctypes.CDLL("libc.so.6", use_errno=True).prctl
    except OSError:
        return None
    pr_set_pdeathsig = 1

    def arm() -> None:
        prctl(pr_set_pdeathsig, signal.SIGKILL)

    return arm
