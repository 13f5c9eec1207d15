"""An instance whose owner is killed with SIGKILL goes away within seconds, even in the middle of a request.

The owner here is a process of its own (a stand-in for the control plane) that starts the instance and is
then killed with ``kill -9`` while the instance runs a model call far longer than the bound, under a
model-server timeout far longer still: nothing may wait for that call, nor for gunicorn's graceful drain.
"""

from __future__ import annotations

import contextlib
import json
import os
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

from tests.process_probe import group_members
from tests.reliability.direct_instance import invoke, write_handler

ORPHAN_BOUND_S = 5.0

OWNER = """
import sys, time
from pathlib import Path
from localmaker.control_plane.instance_process import InstanceProcess

instance = InstanceProcess("orphan", Path(sys.argv[1]), Path(sys.argv[2]),
                           {"SAGEMAKER_MODEL_SERVER_TIMEOUT": "300", "SAGEMAKER_MODEL_SERVER_WORKERS": "2",
                            "LOCALMAKER_DEVICE": "cpu", "CUDA_VISIBLE_DEVICES": ""})
instance.start()
print(instance.pid, instance.url, flush=True)
time.sleep(600)
"""


def _healthy(url: str) -> bool:
    with contextlib.suppress(OSError):
        status, _, _ = invoke(url, json.dumps({"id": "warm"}).encode(), timeout_s=2)
        return status == 200
    return False


def _invoke_quietly(url: str, body: bytes) -> None:
    with contextlib.suppress(OSError):  # the instance is killed under it: no answer is expected
        invoke(url, body, timeout_s=150)


def test_an_instance_serving_a_request_exits_within_seconds_of_its_owner_being_killed(tmp_path: Path) -> None:
    model_dir = write_handler(tmp_path / "model")
    owner = subprocess.Popen([sys.executable, "-c", OWNER, str(model_dir), str(tmp_path / "instance.log")],
                             stdout=subprocess.PIPE, stdin=subprocess.DEVNULL, env=os.environ.copy())
    assert owner.stdout is not None
    pid_text, url = owner.stdout.readline().decode().split()
    pgid = int(pid_text)
    try:
        deadline = time.monotonic() + 60
        while not _healthy(url):
            assert time.monotonic() < deadline, (tmp_path / "instance.log").read_text(errors="replace")[-3000:]
            time.sleep(0.1)
        # Calls far longer than the bound, under a 300 s model timeout. gunicorn decides which worker
        # accepts each, so only one is sure to be running; the others wait behind it or in the other worker.
        for index in range(4):
            body = json.dumps({"id": f"slow-{index}", "sleep": 120}).encode()
            threading.Thread(target=_invoke_quietly, args=(url, body), daemon=True).start()
        deadline = time.monotonic() + 30
        while not list(model_dir.glob("started-slow-*")):
            assert time.monotonic() < deadline, "the slow calls never started"
            time.sleep(0.05)
        assert len(group_members(pgid)) == 3  # the master and its two workers

        owner.send_signal(signal.SIGKILL)
        owner.wait(10)
        killed = time.monotonic()
        while group_members(pgid) and time.monotonic() - killed < 120:
            time.sleep(0.05)
        lived = time.monotonic() - killed
        print(f"instance lived {lived:.1f} s after its owner's SIGKILL")
        assert not group_members(pgid), "the instance outlived its owner by minutes"
        assert lived < ORPHAN_BOUND_S
    finally:
        with contextlib.suppress(ProcessLookupError, PermissionError):
            os.killpg(pgid, signal.SIGKILL)
        if owner.poll() is None:
            owner.kill()
            owner.wait()
