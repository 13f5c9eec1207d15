"""Real processes: an embedded control plane, gunicorn instances, and the check that none outlive us."""

from __future__ import annotations

import contextlib
import io
import os
import signal
import subprocess
import sys
import tarfile
import time
import urllib.error
import urllib.request
from collections.abc import Iterator
from pathlib import Path

import pytest

from localmaker.control_plane.instance_process import free_port
from localmaker.deploy import Session
from localmaker.spec.names import PLACEHOLDER_ROLE
from tests.process_probe import group_members

ROLE = PLACEHOLDER_ROLE
CLI = [sys.executable, "-m", "localmaker.cli"]


def artifact_member(session: Session, url: str, member: str) -> bytes:
    """One file out of a tar.gz that moto's S3 holds at ``url``."""
    bucket, key = url.removeprefix("s3://").split("/", 1)
    data = session.s3_client.get_object(Bucket=bucket, Key=key)["Body"].read()
    with tarfile.open(fileobj=io.BytesIO(data)) as tar:
        extracted = tar.extractfile(member)
        assert extracted is not None, f"{member} is not a file in {url}"
        return extracted.read()


def instance_pids(session: Session, endpoint_name: str) -> list[int]:
    info = session.local_endpoint(endpoint_name)
    return [i.pid for i in info.instances + info.retired]


@pytest.fixture(scope="session")
def started_groups() -> set[int]:
    """Process groups of every instance the e2e tests started; checked once the session closes."""
    return set()


@pytest.fixture(scope="session")
def session(tmp_path_factory: pytest.TempPathFactory, localmaker_home: Path,
            started_groups: set[int]) -> Iterator[Session]:
    with Session(work_root=tmp_path_factory.mktemp("control-plane"), startup_timeout_s=180) as embedded:
        yield embedded
        for name in embedded.sagemaker_client.list_endpoints()["Endpoints"]:
            with contextlib.suppress(Exception):  # a Failed endpoint has no instances left to record
                started_groups.update(instance_pids(embedded, name["EndpointName"]))
    leftovers = {pgid: group_members(pgid) for pgid in started_groups if group_members(pgid)}
    assert not leftovers, f"instance processes outlived the test session: {leftovers}"


@contextlib.contextmanager
def running_up() -> Iterator[tuple[subprocess.Popen[str], str]]:
    """`localmaker up` as its own process on a free port, and its URL once it answers."""
    port = free_port()
    process = subprocess.Popen([*CLI, "up", "--port", str(port)], stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                               text=True, env={**os.environ, "HF_HUB_OFFLINE": "1"}, start_new_session=True)
    url = f"http://127.0.0.1:{port}"
    deadline = time.monotonic() + 60
    try:
        while True:
            try:
                urllib.request.urlopen(f"{url}/_localmaker/endpoints", timeout=2).close()
                break
            except (urllib.error.URLError, ConnectionError):
                assert process.poll() is None, "localmaker up exited early"
                assert time.monotonic() < deadline, "localmaker up never answered"
                time.sleep(0.2)
        yield process, url
    finally:
        if process.poll() is None:
            os.killpg(process.pid, signal.SIGKILL)
            process.wait(timeout=10)


@pytest.fixture
def control_plane(localmaker_home: Path) -> Iterator[tuple[subprocess.Popen[str], str]]:
    with running_up() as running:
        yield running


def aws_env(url: str) -> dict[str, str]:
    """This environment with the user's AWS settings swapped for the control plane and dummy credentials,
    which is all an unmodified script gets to find localmaker."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("AWS_")}
    return {**env, "AWS_ENDPOINT_URL": url, "AWS_ACCESS_KEY_ID": "testing", "AWS_SECRET_ACCESS_KEY": "testing",
            "AWS_DEFAULT_REGION": "us-east-1", "HF_HUB_OFFLINE": "1"}
