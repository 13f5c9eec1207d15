"""The end-of-run check itself: a run that leaves a process behind fails, and names and kills it."""

from __future__ import annotations

import os
import signal
from pathlib import Path

import pytest

from tests.leftover_check import GRACE_ENV, MARKER
from tests.process_probe import is_alive

pytest_plugins = ["pytester"]

REPO = Path(__file__).parents[2]

LEAKY_TEST = """
import subprocess
from pathlib import Path

def test_starts_a_process_and_forgets_it():
    sleeper = subprocess.Popen(["sleep", "300"])
    Path("leaked.pid").write_text(str(sleeper.pid))
"""

TIDY_TEST = """
import os
import subprocess
import time
from pathlib import Path

ZOMBIE = None

def test_leaves_only_a_zombie_and_another_runs_process():
    global ZOMBIE
    ZOMBIE = subprocess.Popen(["true"])  # exits at once; never waited for, so it stays a zombie
    while Path(f"/proc/{ZOMBIE.pid}/stat").read_text().rsplit(")", 1)[1].split()[0] != "Z":
        time.sleep(0.05)
    subprocess.run(["true"], check=True)  # finished and reaped
    # Started through a shell that exits, so it is not our descendant: only its marker says whose it is.
    other_run = subprocess.run(["sh", "-c", "sleep 300 >/dev/null 2>&1 & echo $!"], check=True, text=True,
                               capture_output=True, env={**os.environ, "MARKER": "another-run"})
    Path("other.pid").write_text(other_run.stdout.strip())
""".replace("MARKER", MARKER)


@pytest.fixture
def inner_run(pytester: pytest.Pytester, monkeypatch: pytest.MonkeyPatch) -> pytest.Pytester:
    monkeypatch.setenv("PYTHONPATH", os.pathsep.join(filter(None, [str(REPO), os.environ.get("PYTHONPATH")])))
    monkeypatch.setenv(GRACE_ENV, "1")
    pytester.makeconftest('pytest_plugins = ["tests.leftover_check"]')
    return pytester


def test_a_run_that_leaves_a_process_behind_fails_and_kills_it(inner_run):
    inner_run.makepyfile(LEAKY_TEST)
    result = inner_run.runpytest_subprocess("-p", "no:cacheprovider", "-p", "no:localmaker")

    leaked = int((inner_run.path / "leaked.pid").read_text())
    if is_alive(leaked):  # the check missed it: say what /proc showed, then clean up after ourselves
        seen = _what_proc_shows(leaked)
        os.kill(leaked, signal.SIGKILL)
        pytest.fail(f"the leaked process survived the run unreported; /proc showed: {seen}\n{result.stdout.str()}")
    assert result.ret == pytest.ExitCode.TESTS_FAILED, result.stdout.str()
    result.stdout.fnmatch_lines(["*leftover processes*",
                                 "*1 process(es) started by this test run outlived it (now killed)*",
                                 f"*pid {leaked}: sleep 300*", "*1 passed*"])
    assert not is_alive(leaked)


def test_zombies_and_other_runs_processes_are_not_leftovers(inner_run):
    inner_run.makepyfile(TIDY_TEST)
    result = inner_run.runpytest_subprocess("-p", "no:cacheprovider", "-p", "no:localmaker")

    other = int((inner_run.path / "other.pid").read_text())
    try:
        assert result.ret == pytest.ExitCode.OK, result.stdout.str()
        assert "leftover processes" not in result.stdout.str()
        assert is_alive(other), "a process of another run must be left alone"
    finally:
        os.kill(other, signal.SIGKILL)


def test_a_leftover_child_is_found_even_with_an_environment_of_its_own(inner_run):
    inner_run.makepyfile(LEAKY_TEST.replace('["sleep", "300"]', '["sleep", "300"], env={"PATH": "/usr/bin:/bin"}'))
    result = inner_run.runpytest_subprocess("-p", "no:cacheprovider", "-p", "no:localmaker")

    leaked = int((inner_run.path / "leaked.pid").read_text())
    try:
        assert result.ret == pytest.ExitCode.TESTS_FAILED, result.stdout.str()
        result.stdout.fnmatch_lines([f"*pid {leaked}: sleep 300*"])
        assert not is_alive(leaked)
    finally:
        if is_alive(leaked):
            os.kill(leaked, signal.SIGKILL)


def _what_proc_shows(pid: int) -> str:
    proc = Path(f"/proc/{pid}")
    try:
        parent = (proc / "stat").read_text().rsplit(")", 1)[1].split()[1]
        markers = [entry for entry in (proc / "environ").read_bytes().split(b"\0") if entry.startswith(MARKER.encode())]
        return f"parent {parent}, markers {markers}"
    except OSError as error:
        return f"unreadable ({error})"
