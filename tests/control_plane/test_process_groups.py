"""Reaping a process group, through real processes: the shared helpers and an instance's stop that uses them.

Each test starts a leader in a session of its own with a child in the same group, as gunicorn and its
workers are, and checks with /proc that nothing of the group is left.
"""

from __future__ import annotations

import signal
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from localmaker.control_plane import instance_process
from localmaker.control_plane.instance_process import InstanceProcess
from localmaker.control_plane.process_groups import kill_group, reap_group
from tests.process_probe import group_members

# A child that ignores SIGTERM and says so by creating the file named in its argument.
STUBBORN_CHILD = ("import pathlib, signal, sys, time; signal.signal(signal.SIGTERM, signal.SIG_IGN); "
                  "pathlib.Path(sys.argv[1]).touch(); time.sleep(60)")


def leader_script(ready: Path, ignores_sigterm: bool) -> list[str]:
    """A leader that starts a stubborn child, then sleeps; it ignores SIGTERM too if asked."""
    source = "\n".join([
        "import signal, subprocess, sys, time",
        "signal.signal(signal.SIGTERM, signal.SIG_IGN)" if ignores_sigterm else "",
        f"subprocess.Popen([sys.executable, '-c', {STUBBORN_CHILD!r}, {str(ready)!r}])",
        "time.sleep(60)",
    ])
    return [sys.executable, "-c", source]


def wait_for(condition: Callable[[], object], timeout_s: float = 10) -> None:
    deadline = time.monotonic() + timeout_s
    while not condition():
        assert time.monotonic() < deadline, "timed out"
        time.sleep(0.02)


@pytest.fixture
def leaders() -> Iterator[list[subprocess.Popen[bytes]]]:
    started: list[subprocess.Popen[bytes]] = []
    yield started
    for process in started:  # whatever a failed test left, goes
        reap_group(process, timeout_s=5)


def start_group(leaders: list[subprocess.Popen[bytes]], tmp_path: Path,
                ignores_sigterm: bool = False) -> subprocess.Popen[bytes]:
    ready = tmp_path / "child-ready"
    process = subprocess.Popen(leader_script(ready, ignores_sigterm), stdin=subprocess.DEVNULL,
                               start_new_session=True)
    leaders.append(process)
    wait_for(ready.exists)
    assert len(group_members(process.pid)) == 2
    return process


def test_reap_group_kills_the_leader_and_its_child_and_reaps_the_leader(
        leaders: list[subprocess.Popen[bytes]], tmp_path: Path) -> None:
    process = start_group(leaders, tmp_path, ignores_sigterm=True)

    reap_group(process, timeout_s=5)

    assert process.returncode == -signal.SIGKILL
    wait_for(lambda: not group_members(process.pid), timeout_s=5)


def test_reap_group_reaches_a_child_that_outlived_its_leader(
        leaders: list[subprocess.Popen[bytes]], tmp_path: Path) -> None:
    process = start_group(leaders, tmp_path)
    process.terminate()
    assert process.wait(timeout=5) == -signal.SIGTERM
    assert len(group_members(process.pid)) == 1  # the child ignored it, and the group id still names it

    reap_group(process, timeout_s=5)

    wait_for(lambda: not group_members(process.pid), timeout_s=5)


def test_kill_group_does_not_wait_and_a_gone_group_is_fine(
        leaders: list[subprocess.Popen[bytes]], tmp_path: Path) -> None:
    process = start_group(leaders, tmp_path, ignores_sigterm=True)

    kill_group(process)
    assert process.wait(timeout=5) == -signal.SIGKILL
    wait_for(lambda: not group_members(process.pid), timeout_s=5)

    kill_group(process)  # the group is gone: nothing to do, nothing raised
    reap_group(process, timeout_s=5)
    kill_group(None)
    reap_group(None, timeout_s=None)


@pytest.mark.parametrize("master_ignores_sigterm", [False, True], ids=["master-drains", "master-ignores-sigterm"])
def test_an_instance_stop_leaves_nothing_of_its_group(
        monkeypatch: pytest.MonkeyPatch, tmp_path: Path, master_ignores_sigterm: bool) -> None:
    """The gunicorn master replaced by a leader with a worker that ignores SIGTERM, as one stuck would."""
    ready = tmp_path / "worker-ready"
    monkeypatch.setattr(instance_process, "gunicorn_command",
                        lambda bind, env, log_file: leader_script(ready, master_ignores_sigterm))
    instance = InstanceProcess("stubborn-1", tmp_path, tmp_path / "instance.log", {})
    instance.start()
    try:
        wait_for(ready.exists)
        pid = instance.pid
        assert pid is not None

        started = time.monotonic()
        instance.stop(grace_s=0.5)

        expected = -signal.SIGKILL if master_ignores_sigterm else -signal.SIGTERM
        assert instance.exited() == expected
        assert time.monotonic() - started < 5
        wait_for(lambda: not group_members(pid), timeout_s=5)
    finally:
        instance.stop(grace_s=0)
