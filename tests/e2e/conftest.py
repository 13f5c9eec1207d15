"""Real processes: an embedded control plane, gunicorn instances, and the check that none outlive us."""

from __future__ import annotations

import contextlib
import io
import tarfile
from collections.abc import Iterator
from pathlib import Path

import pytest

from localmaker.deploy import Session
from tests.process_probe import group_members

ROLE = "arn:aws:iam::111122223333:role/SageMakerRole"


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
    return [i["Pid"] for v in info["Variants"] for i in v["Instances"]]


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
