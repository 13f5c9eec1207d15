"""A training job's life in the runtime itself: the runtime limit, an early stop, and what a job leaves open.

Each job runs a real script in a real process; moto's S3 holds the code and takes the model, as it would
behind the control plane.
"""

from __future__ import annotations

import contextlib
import os
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import boto3
import pytest
from moto import mock_aws

from localmaker.control_plane.training_runtime import TrainingRuntime
from localmaker.control_plane.training_state import TrainingJobRecord, TrainingStatus
from tests.process_probe import group_members
from tests.script_archives import CODE_BUCKET, OUTPUT_BUCKET, start_training_job

ENDED = (TrainingStatus.COMPLETED, TrainingStatus.FAILED, TrainingStatus.STOPPED)


@dataclass
class Harness:
    runtime: TrainingRuntime
    s3: Any
    tmp_path: Path
    # Called in the job's thread as its download starts; the stop-during-download test holds it there.
    on_download: Callable[[], None] = lambda: None

    def start(self, name: str, script: str, max_runtime_s: int = 60,
              environment: dict[str, str] | None = None) -> TrainingJobRecord:
        return start_training_job(self.runtime, self.s3, name, script, max_runtime_s=max_runtime_s,
                                  environment=environment)


def wait_until_ended(job: TrainingJobRecord, timeout_s: float) -> float:
    """Seconds until the job reached a final status; fails the test if it did not within ``timeout_s``."""
    started = time.monotonic()
    while job.status not in ENDED:
        assert time.monotonic() - started < timeout_s, f"job still {job.describe()} after {timeout_s}s"
        time.sleep(0.05)
    return time.monotonic() - started


@pytest.fixture
def harness(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> Iterator[Harness]:
    for name, value in {"AWS_ACCESS_KEY_ID": "testing", "AWS_SECRET_ACCESS_KEY": "testing",
                        "AWS_DEFAULT_REGION": "us-east-1"}.items():
        monkeypatch.setenv(name, value)
    with mock_aws():
        s3 = boto3.client("s3")
        s3.create_bucket(Bucket=CODE_BUCKET)
        s3.create_bucket(Bucket=OUTPUT_BUCKET)

        def s3_client() -> Any:
            rig.on_download()
            return s3

        rig = Harness(TrainingRuntime(tmp_path / "work", s3_client), s3, tmp_path)
        try:
            yield rig
        finally:
            # Every job ends and is reaped here, so no script outlives the test.
            rig.runtime.shutdown()
            for name in rig.runtime.names():
                job = rig.runtime.get(name)
                assert job is not None
                wait_until_ended(job, timeout_s=10)
                if job.process is not None:
                    job.process.wait(timeout=10)


SILENT = """
    import time
    time.sleep(30)
"""
CLOSES_ITS_OUTPUT = """
    import os, time
    print("going quiet", flush=True)
    os.close(1)
    os.close(2)
    time.sleep(30)
"""
CARRIAGE_RETURNS_ONLY = """
    import sys, time
    for step in range(1, 100000):
        sys.stdout.write(f"\\r[localmaker:progress] step={step} total=100000 loss=0.5")
        sys.stdout.flush()
        time.sleep(0.05)
"""


@pytest.mark.parametrize("script", [SILENT, CLOSES_ITS_OUTPUT, CARRIAGE_RETURNS_ONLY],
                         ids=["silent", "closes-its-output", "carriage-returns-only"])
def test_max_runtime_stops_a_script_whatever_it_prints(harness: Harness, script: str) -> None:
    job = harness.start("over-time", script, max_runtime_s=2)
    elapsed = wait_until_ended(job, timeout_s=8)

    assert 2 <= elapsed < 5
    assert job.status is TrainingStatus.FAILED
    assert job.secondary_status == "Failed"
    assert job.failure_reason == "MaxRuntimeExceeded: the job ran past 2s"
    assert job.process is not None and job.process.returncode is not None
    assert not group_members(job.process.pid)
    if script is CARRIAGE_RETURNS_ONLY:  # the bar's redraws reach the progress, and stay out of the log
        assert job.progress.step > 1
        assert b"[localmaker:progress]" not in job.log_file.read_bytes()


@pytest.mark.parametrize("how", ["stop", "shutdown"])
def test_a_stop_while_inputs_download_ends_the_job_stopped_before_the_script_starts(
        harness: Harness, how: str) -> None:
    downloading, resume = threading.Event(), threading.Event()

    def hold_the_download() -> None:
        downloading.set()
        assert resume.wait(10)

    harness.on_download = hold_the_download
    marker = harness.tmp_path / "the-script-ran"
    job = harness.start("stopped-early", f"open({str(marker)!r}, 'w').close()")
    assert downloading.wait(10)

    if how == "stop":
        assert harness.runtime.stop("stopped-early")
    else:
        harness.runtime.shutdown()
    assert job.status is TrainingStatus.STOPPING
    resume.set()
    wait_until_ended(job, timeout_s=10)

    assert not marker.exists()
    assert job.process is None
    assert job.status is TrainingStatus.STOPPED
    assert job.secondary_status == "Stopped"
    assert job.failure_reason == ""
    assert not harness.runtime.stop("stopped-early")  # a job that has ended cannot be stopped again


def _open_pipes() -> int:
    """Pipes this process holds open: each job's output pipe is one, until the job closes it."""
    count = 0
    for fd in os.listdir("/proc/self/fd"):
        with contextlib.suppress(OSError):  # the descriptor listdir itself used, already closed
            count += os.readlink(f"/proc/self/fd/{fd}").startswith("pipe:")
    return count


def test_finished_jobs_leave_no_descriptors_open(harness: Harness) -> None:
    script = """
        import os, pathlib
        print("[localmaker:progress] step=1 total=1 loss=0.25")
        pathlib.Path(os.environ["SM_MODEL_DIR"], "weights.bin").write_text("w")
    """
    wait_until_ended(harness.start("warm-up", script), timeout_s=10)  # boto3 and moto open what they keep
    before = _open_pipes()

    jobs = [harness.start(f"job-{i}", script) for i in range(5)]
    for job in jobs:
        wait_until_ended(job, timeout_s=10)

    assert [job.status for job in jobs] == [TrainingStatus.COMPLETED] * 5
    assert all(job.progress.loss == 0.25 for job in jobs)
    assert _open_pipes() <= before
