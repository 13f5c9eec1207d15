"""The one way the control plane ends a process group it started.

An endpoint instance (a gunicorn master and its workers) and a training script (and whatever it forks)
each run in a session of their own, so the group id is the leader's pid and still names every process
they started after the leader itself has died. SIGKILL to that group is how both are made sure to be
gone; the callers differ only in whether, and for how long, they then wait for the leader.
"""

from __future__ import annotations

import contextlib
import os
import signal
import subprocess


def kill_group(process: subprocess.Popen[bytes] | None) -> None:
    """SIGKILL every process in the group ``process`` leads; a group already gone, or not ours, is fine.

    It does not wait, so it may be called under a lock that the thread waiting for the leader needs.
    """
    if process is None:
        return
    with contextlib.suppress(ProcessLookupError, PermissionError):
        os.killpg(process.pid, signal.SIGKILL)


def reap_group(process: subprocess.Popen[bytes] | None, timeout_s: float | None) -> None:
    """Kill the group, then wait for its leader: at most ``timeout_s`` seconds, or as long as it takes (None).

    A leader that is not reaped in time is left to a later wait; nothing is raised.
    """
    if process is None:
        return
    kill_group(process)
    with contextlib.suppress(subprocess.TimeoutExpired):
        process.wait(timeout=timeout_s)
