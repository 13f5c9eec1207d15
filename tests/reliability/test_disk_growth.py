"""What keeps growing on disk after an endpoint or a job has started stays within its cap.

Before: an instance's or a training job's log grew as long as its writer wrote (a 50 MB flood left a 50 MB
file), and a training channel was downloaded whatever its size, however little room the control plane's disk
cap had left. Now the log shipper rotates each followed file past ``max_file_bytes`` (LOCALMAKER_MAX_LOG_MB)
by copy-truncate, and a job's inputs are counted from the S3 listing before a byte is downloaded. The
writers are real: a gunicorn instance serving a handler that floods its log through ``logging`` and stdout,
and a training script whose output the control plane copies. moto is CloudWatch Logs and S3.
"""

from __future__ import annotations

import contextlib
import json
import logging
import os
import re
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import boto3
import pytest
from moto import mock_aws

from localmaker.control_plane.disk_budget import DiskBudget
from localmaker.control_plane.log_rotation import rotate, rotated_path
from localmaker.control_plane.log_shipper import LogShipper
from localmaker.control_plane.settings import ControlPlaneSettings
from localmaker.control_plane.training_runtime import TrainingRuntime
from localmaker.control_plane.training_state import TrainingJobRecord, TrainingStatus
from localmaker.errors import ConfigurationError
from tests.reliability.direct_instance import invoke, running_instance
from tests.script_archives import CODE_BUCKET, OUTPUT_BUCKET, start_training_job

CAP = 2 * 1024**2
GROUP = "/aws/sagemaker/Endpoints/flood"
MARKER = re.compile(rb"^\[localmaker\] \S+ (\S+) reached its cap of 2,097,152 bytes \(LOCALMAKER_MAX_LOG_MB\): "
                    rb"the lines before this one are in (\S+?)[;, ]")
LINE = re.compile(rb"^(?:.* )?flood (\d{7}) x+$")

# Every line is numbered, half through logging (gunicorn's FileHandler setup, mode "a"), half straight to
# stdout (the control plane's "ab" file), so that what survives, and in what order, can be counted.
FLOOD_HANDLER = """
    import json, logging, os

    log = logging.getLogger("flood")

    def model_fn(model_dir):
        return None

    def input_fn(body, content_type):
        return json.loads(body)

    def predict_fn(data, model):
        padding = "x" * 100
        for number in range(data["lines"]):
            if number % 2:
                log.warning("flood %07d %s", number, padding)
            else:
                os.write(1, f"flood {number:07d} {padding}\\n".encode())
        os.write(1, b"flood done\\n")
        return {"lines": data["lines"]}

    def output_fn(prediction, accept):
        return json.dumps(prediction), "application/json"
"""
FLOOD_LINES = 300_000  # about 39 MB: 19 times the cap


class DiskWatch:
    """Samples what a log, its copy and a copy being made hold on disk, every few milliseconds: the peak."""

    def __init__(self, path: Path) -> None:
        self.path, self.peak, self._done = path, 0, threading.Event()
        self._thread = threading.Thread(target=self._watch, daemon=True)
        self._thread.start()

    def _watch(self) -> None:
        while not self._done.wait(0.002):
            self.peak = max(self.peak, _allocated(self.path))

    def stop(self) -> int:
        self._done.set()
        self._thread.join()
        return self.peak


def _allocated(path: Path) -> int:
    """Blocks held by ``path``, ``<path>.1`` and ``.<path>.*.rotating``, as ``du`` counts them."""
    total = 0
    for entry in os.scandir(path.parent):
        if entry.name.startswith((path.name, f".{path.name}.")):
            try:
                total += entry.stat(follow_symlinks=False).st_blocks * 512
            except FileNotFoundError:  # renamed or removed between the listing and the stat
                continue
    return total


def _read(path: Path) -> bytes:
    return path.read_bytes() if path.exists() else b""


def _numbers(data: bytes) -> list[int]:
    return [int(m.group(1)) for line in data.splitlines() if (m := LINE.match(line))]


def _stream(logs: Any, group: str, stream: str) -> list[str]:
    events, token = [], None
    while True:
        page = logs.get_log_events(logGroupName=group, logStreamName=stream, startFromHead=True,
                                   **({"nextToken": token} if token else {}))
        events += [e["message"] for e in page["events"]]
        if not page["events"] or page["nextForwardToken"] == token:
            return events
        token = page["nextForwardToken"]


@pytest.fixture
def aws(monkeypatch: pytest.MonkeyPatch) -> Iterator[tuple[Any, Any]]:
    for name, value in {"AWS_ACCESS_KEY_ID": "testing", "AWS_SECRET_ACCESS_KEY": "testing",
                        "AWS_DEFAULT_REGION": "us-east-1"}.items():
        monkeypatch.setenv(name, value)
    # Without moto's reset (at start and at stop): its records are the whole test process's, and the control
    # planes that other tests of this package keep running would lose theirs.
    mocked = mock_aws()
    mocked.start(reset=False)
    try:
        s3 = boto3.client("s3")
        for bucket in (CODE_BUCKET, OUTPUT_BUCKET, "data"):
            with contextlib.suppress(s3.exceptions.BucketAlreadyOwnedByYou, s3.exceptions.BucketAlreadyExists):
                s3.create_bucket(Bucket=bucket)
        yield s3, boto3.client("logs")
    finally:
        mocked.stop(remove_data=False)


def test_an_instance_flooding_its_log_keeps_about_twice_the_cap_on_disk_and_its_newest_lines(tmp_path, aws):
    _, logs = aws
    shipper = LogShipper(lambda: logs, interval_s=0.2, max_stream_bytes=64 * 1024**2, max_stream_events=10**6,
                         max_file_bytes=CAP)
    with running_instance(tmp_path, {"SAGEMAKER_MODEL_SERVER_WORKERS": "1"}, FLOOD_HANDLER) as instance:
        log_file = instance.log_file
        shipper.follow(GROUP, f"AllTraffic/{tmp_path.name}", log_file)
        watch = DiskWatch(log_file)
        started = time.monotonic()
        status, _, body = invoke(instance.url, json.dumps({"lines": FLOOD_LINES}).encode(), timeout_s=120)
        flood_s = time.monotonic() - started
        assert status == 200 and json.loads(body) == {"lines": FLOOD_LINES}
        time.sleep(0.5)  # a last check of the sizes, and a shipping round
        shipper.release(GROUP)
        peak = watch.stop()
    written = FLOOD_LINES * 130  # at least: each line is its number, its 100 x's and the log format

    current, copy = log_file.read_bytes(), _read(rotated_path(log_file))
    # On disk: the file and its copy, each about the cap, and for a moment a new copy beside the file it
    # empties; the overshoot is what the flood writes while the rotation thread waits for the CPU longer than
    # it planned, which a loaded machine stretches. Without rotation the file held it all (19 times the cap).
    assert peak < 6 * CAP < written / 3, (peak, written, flood_s)
    assert len(copy) <= 1.5 * CAP and len(current) <= 1.5 * CAP
    # The file starts with the marker that names the copy; the copy ends where the marker begins.
    marker = MARKER.match(current)
    assert marker is not None, current[:300]
    assert marker.group(1) == log_file.name.encode() and marker.group(2) == str(rotated_path(log_file)).encode()
    # The newest lines are kept: the last one written is the file's last flood line, and from the copy's
    # first line to it nothing is missing but what was written in the instant between the copy's last read
    # and the cut (log_rotation.py), a few lines at most at this rate unless the machine stalls the rotation.
    kept = _numbers(copy) + _numbers(current)
    assert kept[-1] == FLOOD_LINES - 1 and b"flood done\n" in copy + current
    assert kept == sorted(kept) and len(kept) == len(set(kept))
    lost = (kept[-1] - kept[0] + 1) - len(kept)
    assert lost < len(kept) // 20, (lost, len(kept))

    # Shipping still works: the stream holds the newest lines, in order, each at most once, and the marker.
    # (Lines a rotation deleted before they were shipped are missing: this flood outruns in-process moto.)
    events = _stream(logs, GROUP, f"AllTraffic/{tmp_path.name}")
    shipped = [int(m.group(1)) for e in events if (m := LINE.match(e.encode()))]
    assert shipped[-1] == FLOOD_LINES - 1 and "flood done" in events
    assert shipped == sorted(shipped) and len(shipped) == len(set(shipped))
    assert any(MARKER.match(e.encode()) for e in events)


def _ended(job: TrainingJobRecord, timeout_s: float = 60) -> TrainingJobRecord:
    deadline = time.monotonic() + timeout_s
    while job.status not in (TrainingStatus.COMPLETED, TrainingStatus.FAILED, TrainingStatus.STOPPED):
        assert time.monotonic() < deadline, job.describe()
        time.sleep(0.05)
    return job


@pytest.fixture
def jobs(tmp_path: Path, aws: tuple[Any, Any]) -> Iterator[tuple[TrainingRuntime, Any, Any, DiskBudget]]:
    s3, logs = aws
    shipper = LogShipper(lambda: logs, interval_s=0.2, max_file_bytes=CAP)
    work_root = tmp_path / "work"
    disk = DiskBudget(work_root, 4 * 1024**2)
    runtime = TrainingRuntime(work_root, lambda: s3, shipper, region="us-east-1", disk=disk)
    try:
        yield runtime, s3, logs, disk
    finally:
        runtime.shutdown()
        shipper.stop()


FLOODING_SCRIPT = """
    import sys
    padding = "x" * 100
    for number in range(100_000):
        sys.stdout.write(f"flood {number:07d} {padding}\\n")
    sys.stdout.flush()
    sys.exit(3)
"""


def test_a_training_job_flooding_its_log_keeps_it_within_the_cap_and_fails_with_its_last_lines(jobs):
    runtime, s3, _, _ = jobs
    job = _ended(start_training_job(runtime, s3, "flood", FLOODING_SCRIPT))  # about 11 MB of output

    assert job.status is TrainingStatus.FAILED
    assert "ExitCode 3" in job.failure_reason and re.search(r"flood 00999\d\d", job.failure_reason)
    current, copy = job.log_file.read_bytes(), _read(rotated_path(job.log_file))
    assert len(current) + len(copy) < 3 * CAP
    assert MARKER.match(current) is not None, current[:300]
    assert _numbers(copy + current)[-1] == 99_999  # the newest line, whether the last rotation came after it


def test_a_channel_over_the_disk_cap_fails_the_job_before_a_byte_is_downloaded(jobs):
    runtime, s3, _, disk = jobs
    for part in range(3):  # 6 MB in all, over the 4 MB cap
        s3.put_object(Bucket="data", Key=f"big/part-{part}.bin", Body=os.urandom(2 * 1024**2))
    job = _ended(start_training_job(runtime, s3, "too-big", "print('never runs')",
                                    channels={"train": "s3://data/big"}))

    assert job.status is TrainingStatus.FAILED
    reason = job.failure_reason
    assert reason.startswith("ClientError: channel 'train' cannot be downloaded:"), reason
    assert "s3://data/big, 3 objects" in reason and "needs 6,291,456 more" in reason
    assert "4,194,304 bytes" in reason and "LOCALMAKER_MAX_DISK_GB" in reason
    assert not [p for p in (job.work_dir / "input").rglob("*") if p.is_file()]
    assert not job.log_file.exists()  # the script never started
    assert disk.used() < 64 * 1024

    # The source directory's archive is counted before its download too (its size is in S3's answer).
    job = _ended(start_training_job(runtime, s3, "huge-code", "", code=os.urandom(5 * 1024**2)))
    assert job.status is TrainingStatus.FAILED
    assert job.failure_reason.startswith("ClientError: the source directory cannot be downloaded:"), job.failure_reason
    assert "LOCALMAKER_MAX_DISK_GB" in job.failure_reason and not (job.work_dir / "sourcedir.tar.gz").exists()


def test_a_local_channel_over_the_cap_is_refused_too_and_one_that_fits_is_downloaded(jobs, tmp_path):
    runtime, s3, _, _ = jobs
    big = tmp_path / "local-big"
    big.mkdir()
    for part in range(5):
        (big / f"part-{part}.bin").write_bytes(b"\0" * 1024**2)
    job = _ended(start_training_job(runtime, s3, "local-big", "print('never runs')",
                                    channels={"train": f"file://{big}"}))
    assert job.status is TrainingStatus.FAILED and "LOCALMAKER_MAX_DISK_GB" in job.failure_reason
    assert not [p for p in (job.work_dir / "input").rglob("*") if p.is_file()]

    s3.put_object(Bucket="data", Key="small/part-0.bin", Body=b"0123456789")
    fits = _ended(start_training_job(runtime, s3, "fits", """
        import os
        print(open(os.path.join(os.environ["SM_CHANNEL_TRAIN"], "part-0.bin")).read())
    """, channels={"train": "s3://data/small"}))
    assert fits.status is TrainingStatus.COMPLETED, fits.failure_reason
    assert b"0123456789" in fits.log_file.read_bytes()


def test_rotation_follows_no_symlink_planted_at_the_log_or_its_copy(tmp_path):
    outside = tmp_path / "outside.txt"
    outside.write_bytes(b"keep me\n")
    log = tmp_path / "logs" / "i-0.log"
    log.parent.mkdir()
    log.write_bytes(b"line\n" * 600_000)
    rotated_path(log).symlink_to(outside)  # a handler that hopes the copy is written through the link

    rotation = rotate(log, CAP)
    assert rotation is not None and rotation.start > 0
    assert outside.read_bytes() == b"keep me\n"
    assert not rotated_path(log).is_symlink() and rotated_path(log).stat().st_size <= CAP
    assert MARKER.match(log.read_bytes()) is not None

    linked = tmp_path / "logs" / "i-1.log"
    big = tmp_path / "big.txt"
    big.write_bytes(b"line\n" * 600_000)
    linked.symlink_to(big)  # the log replaced by a link to a file that is not the shipper's to truncate
    assert rotate(linked, CAP) is None and big.stat().st_size == 3_000_000


def test_the_log_cap_is_read_from_the_environment():
    assert ControlPlaneSettings.from_env({}).log_file_max_bytes == 64 * 1024**2
    assert ControlPlaneSettings.from_env({"LOCALMAKER_MAX_LOG_MB": "0.5"}).log_file_max_bytes == 512 * 1024
    with pytest.raises(ConfigurationError, match="LOCALMAKER_MAX_LOG_MB"):
        ControlPlaneSettings.from_env({"LOCALMAKER_MAX_LOG_MB": "lots"})


def test_a_capped_stream_says_where_the_log_goes_on_and_its_file_is_still_rotated(tmp_path, aws):
    _, logs = aws
    log = tmp_path / "i-0.log"
    log.write_bytes(b"".join(b"flood %07d %s\n" % (n, b"x" * 100) for n in range(10)))
    shipper = LogShipper(lambda: logs, interval_s=3600, max_stream_events=5, max_file_bytes=CAP)
    shipper.follow(GROUP, f"s-{tmp_path.name}", log)
    shipper.flush()
    last = _stream(logs, GROUP, f"s-{tmp_path.name}")[-1]
    assert "stops here" in last and f"The log goes on in {log}, which keeps its newest 2,097,152 bytes" in last
    assert f"the lines before those are in {rotated_path(log)}" in last and "LOCALMAKER_MAX_LOG_MB" in last

    with open(log, "ab") as writer:  # no longer shipped, still bounded: the rotation thread needs no shipping
        for _ in range(3):
            writer.write(b"y" * CAP)
    deadline = time.monotonic() + 10
    while log.stat().st_size > CAP or not rotated_path(log).exists():  # the cut, then the copy's rename
        assert time.monotonic() < deadline, "never rotated"
        time.sleep(0.02)
    shipper.stop()
    copy = rotated_path(log).read_bytes()
    assert MARKER.match(log.read_bytes()) and CAP // 2 <= len(copy) <= 2 * CAP and copy.endswith(b"y" * 4096)


def test_the_control_planes_own_log_is_capped_too(tmp_path: Path):
    from localmaker.logging_setup import add_file_log, remove_file_log

    log_file = tmp_path / "control-plane.log"
    handler = add_file_log(log_file, max_bytes=4096)
    try:
        for number in range(500):  # about 60 KB of warnings
            logging.getLogger("localmaker.test").warning("warning %04d %s", number, "x" * 60)
    finally:
        remove_file_log(handler)
    assert log_file.stat().st_size <= 4096 and rotated_path(log_file).stat().st_size <= 4096
    assert b"warning 0499" in log_file.read_bytes()  # the newest kept
