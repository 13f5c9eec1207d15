"""A training script as a process, without the runtime around it: progress, what it leaves, its parent's death."""

from __future__ import annotations

import math
import signal
import subprocess
import sys
import textwrap
import threading
import time
from pathlib import Path

import pytest

from localmaker.control_plane.process_groups import reap_group
from localmaker.control_plane.training_process import copy_output, start_script, wait_for_exit
from localmaker.control_plane.training_state import TrainingJobRecord, TrainingSpec
from tests.process_probe import group_members


def record(tmp_path: Path, max_runtime_s: int = 30) -> TrainingJobRecord:
    spec = TrainingSpec(name="job", hyperparameters={}, channels={}, output_path="s3://bucket/out",
                        instance_type="ml.m5.large", max_runtime_s=max_runtime_s)
    return TrainingJobRecord(spec=spec, work_dir=tmp_path)


def run(job: TrainingJobRecord, tmp_path: Path, script: str) -> int:
    process = job.process = start_script([sys.executable, "-c", textwrap.dedent(script)], tmp_path, {})
    deadline = time.monotonic() + job.spec.max_runtime_s
    try:
        with open(job.log_file, "ab") as log:
            copy_output(job, process, log, deadline)
        return wait_for_exit(job, process, deadline)
    finally:
        reap_group(process, timeout_s=5)


def test_progress_lines_are_read_by_the_spec_parser(tmp_path: Path) -> None:
    job = record(tmp_path)
    code = run(job, tmp_path, r"""
        import sys
        print("[localmaker:progress] step=1 total=3 loss=0.5")
        sys.stdout.write("\r[localmaker:progress] step=2 total=3 loss=inf\n")
        print("[localmaker:progress] step=3 total=3 loss=1.2.3")  # not a loss: ignored, not fatal
        print("done", file=sys.stderr)
    """)

    assert code == 0
    assert (job.progress.step, job.progress.total) == (2, 3)
    assert job.progress.loss is not None and math.isinf(job.progress.loss)
    assert b"done\n" in job.log_file.read_bytes()  # stderr goes to the same log
    assert job.failure_reason == ""


def test_what_the_script_left_running_in_its_group_is_killed_when_it_exits(tmp_path: Path) -> None:
    job = record(tmp_path)
    code = run(job, tmp_path, """
        import subprocess, sys
        child = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(60)"],
                                 stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        print(child.pid, flush=True)
    """)

    assert code == 0
    child = int(job.log_file.read_text().split()[0])
    assert job.process is not None
    deadline = time.monotonic() + 5
    while group_members(job.process.pid) and time.monotonic() < deadline:
        time.sleep(0.02)
    assert child not in group_members(job.process.pid)
    assert not group_members(job.process.pid)


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="the parent-death signal is Linux's")
def test_the_script_dies_with_the_thread_that_started_it(tmp_path: Path) -> None:
    """The death signal follows the forking thread: the job's thread, in the control plane."""
    started: list[subprocess.Popen[bytes]] = []
    thread = threading.Thread(target=lambda: started.append(
        start_script([sys.executable, "-c", "import time; time.sleep(60)"], tmp_path, {})))
    thread.start()
    thread.join()
    process = started[0]
    try:
        assert process.wait(timeout=5) == -signal.SIGKILL
    finally:
        reap_group(process, timeout_s=5)
        assert process.stdout is not None
        process.stdout.close()
