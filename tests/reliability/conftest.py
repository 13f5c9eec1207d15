"""Control planes with small, known limits, and an endpoint whose requests the test holds and releases."""

from __future__ import annotations

import contextlib
import time
import uuid
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import boto3
import pytest
from botocore.config import Config

from localmaker.control_plane.server import ControlPlane
from localmaker.control_plane.settings import ControlPlaneSettings
from localmaker.deploy import Model, Session
from localmaker.spec.names import PLACEHOLDER_ROLE
from tests.script_archives import code_only_archive

ROLE = PLACEHOLDER_ROLE

# A request with "hold" blocks inside the container until the test creates the release file, so the
# test decides when capacity frees up instead of guessing with sleeps. Bounded: it gives up after 60 s.
HOLD_HANDLER = """
    import json
    import os
    import time
    from pathlib import Path

    def model_fn(model_dir):
        return Path(os.environ["HOLD_DIR"])

    def input_fn(body, content_type):
        return json.loads(body)

    def predict_fn(data, folder):
        if data.get("hold"):
            (folder / f"started-{data['id']}").touch()
            deadline = time.monotonic() + 60
            while not (folder / "release").exists() and time.monotonic() < deadline:
                time.sleep(0.05)
        return {"id": data["id"]}

    def output_fn(prediction, accept):
        return json.dumps(prediction), "application/json"
"""


def wait_until(condition: Callable[[], bool], what: str, timeout_s: float = 60.0) -> None:
    deadline = time.monotonic() + timeout_s
    while not condition():
        assert time.monotonic() < deadline, f"gave up after {timeout_s:.0f} s waiting for {what}"
        time.sleep(0.05)


@dataclass
class HeldEndpoint:
    """An endpoint running HOLD_HANDLER on one instance of one worker, behind its own control plane."""

    control_plane: ControlPlane
    session: Session
    name: str
    hold_dir: Path

    def runtime_client(self) -> Any:
        """A client that tries once: botocore would otherwise retry a 503 and hide it from the test."""
        return boto3.client("sagemaker-runtime", endpoint_url=self.control_plane.url, region_name="us-east-1",
                            aws_access_key_id="testing", aws_secret_access_key="testing",
                            config=Config(retries={"max_attempts": 1, "mode": "standard"}, read_timeout=90,
                                          connect_timeout=10, max_pool_connections=32))

    def started(self, request_id: str) -> bool:
        return (self.hold_dir / f"started-{request_id}").exists()

    def release(self) -> None:
        (self.hold_dir / "release").touch()

    def rearm(self) -> None:
        (self.hold_dir / "release").unlink(missing_ok=True)


@contextlib.contextmanager
def held_endpoint(work_root: Path, settings: ControlPlaneSettings) -> Iterator[HeldEndpoint]:
    """A fresh control plane with ``settings`` and one held endpoint on it; every process reaped after."""
    control_plane = ControlPlane(work_root=work_root / "control-plane", startup_timeout_s=120,
                                 settings=settings).start()
    try:
        session = Session(endpoint_url=control_plane.url)
        hold_dir = work_root / "holds"
        hold_dir.mkdir()
        name = f"held-{uuid.uuid4().hex[:8]}"
        Model(model_data=f"file://{code_only_archive(work_root / 'model', HOLD_HANDLER)}", role=ROLE,
              env={"HOLD_DIR": str(hold_dir), "SAGEMAKER_MODEL_SERVER_WORKERS": "1"},
              sagemaker_session=session).deploy(initial_instance_count=1, instance_type="ml.m5.large",
                                                endpoint_name=name)
        yield HeldEndpoint(control_plane, session, name, hold_dir)
    finally:
        control_plane.stop()


@pytest.fixture(scope="package")
def queueing_endpoint(tmp_path_factory: pytest.TempPathFactory, localmaker_home: Path) -> Iterator[HeldEndpoint]:
    """One request in flight, two waiting (each for up to 60 s), the rest refused at once."""
    settings = ControlPlaneSettings(max_in_flight=1, max_queued=2, queue_timeout_s=60)
    with held_endpoint(tmp_path_factory.mktemp("queueing"), settings) as endpoint:
        yield endpoint


@pytest.fixture(scope="package")
def impatient_endpoint(tmp_path_factory: pytest.TempPathFactory, localmaker_home: Path) -> Iterator[HeldEndpoint]:
    """One in flight, one waiting for at most 1 s; a client silent for 2 s is dropped."""
    settings = ControlPlaneSettings(max_in_flight=1, max_queued=1, queue_timeout_s=1, client_timeout_s=2)
    with held_endpoint(tmp_path_factory.mktemp("impatient"), settings) as endpoint:
        yield endpoint
