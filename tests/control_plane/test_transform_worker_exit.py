"""A transform request whose instance is dying: the job names the exit, even when the process shows it late.

A killed gunicorn refuses connections a moment before its master can be reaped. Retrying at once, a busy
machine spent all of InvocationsMaxRetries in that moment and the job said "got no answer" instead of
naming the exit (seen in CI). Here a real process takes 0.3 s to die while its port refuses connections.
"""

from __future__ import annotations

import signal
import subprocess
import sys
import threading
from pathlib import Path

import pytest

from localmaker.control_plane.instance_process import InstanceProcess
from localmaker.control_plane.transform_inputs import InputFile
from localmaker.control_plane.transform_records import Batch
from localmaker.control_plane.transform_state import TransformSpec
from localmaker.control_plane.transform_worker import JobFailure, Stopped, TransformWorker
from tests.e2e.transform_models import job_request


@pytest.fixture
def dying_instance(tmp_path: Path):
    instance = InstanceProcess("i-0dying", tmp_path, tmp_path / "instance.log", env={})
    # Nothing listens on its port, as after a kill; the master itself is only reaped 0.3 s later.
    instance._process = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(60)"])
    timer = threading.Timer(0.3, instance._process.send_signal, args=(signal.SIGKILL,))
    timer.start()
    yield instance
    timer.cancel()
    instance._process.kill()
    instance._process.wait()


def test_a_refused_request_waits_for_the_instance_to_show_its_exit_and_names_it(dying_instance):
    spec = TransformSpec.from_request(job_request("dying", "model", "in/", "out"))
    worker = TransformWorker(spec, dying_instance, threading.Event(), on_records=lambda count: None)
    batch = Batch(first=2, count=1, body=b'{"text": "2"}\n', records=(b'{"text": "2"}',))

    with pytest.raises(JobFailure) as failure:
        worker._invoke(InputFile("bucket", "in/slow.jsonl", "slow.jsonl"), batch, batch.body)

    assert "instance i-0dying exited (code -9) while transforming record 3 of s3://bucket/in/slow.jsonl" in str(
        failure.value)


def test_a_stopped_job_stops_waiting_at_once(dying_instance):
    spec = TransformSpec.from_request(job_request("stopped", "model", "in/", "out"))
    cancelled = threading.Event()
    worker = TransformWorker(spec, dying_instance, cancelled, on_records=lambda count: None)
    threading.Timer(0.1, cancelled.set).start()

    with pytest.raises(Stopped):
        worker._invoke(InputFile("bucket", "in/a.jsonl", "a.jsonl"), Batch(0, 1, b"{}\n", (b"{}",)), b"{}\n")
