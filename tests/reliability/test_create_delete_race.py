"""CreateEndpoint racing DeleteEndpoint on the same names, many rounds: no ghost is ever left.

A ghost is an endpoint one side has and the other has not: the runtime serving it while moto (Describe,
List, Delete) has no record, or the reverse. Each round fires two creates and two deletes per name at
once, each after its own small random delay, so the rounds cover many interleavings; after each round
Describe, List, the runtime, Create, Delete and InvokeEndpoint must all tell the same story. At the end
every endpoint is deleted and no instance process of this control plane may be left.
"""

from __future__ import annotations

import random
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import boto3
import pytest
from botocore.config import Config
from botocore.exceptions import ClientError

from localmaker.control_plane.server import ControlPlane
from localmaker.spec.container_images import default_image
from localmaker.spec.instance_types import CATALOGUE
from tests.process_probe import is_alive
from tests.reliability.conftest import code_only_archive, wait_until

NAMES = ["race-a", "race-b", "race-c"]
ROUNDS = 6
ROLE = "arn:aws:iam::123456789012:role/SageMakerRole"
HANDLER = """
    import json

    def model_fn(model_dir):
        return "tiny"

    def input_fn(body, content_type):
        return body

    def predict_fn(data, model):
        return data

    def output_fn(prediction, accept):
        return prediction, "application/octet-stream"
"""


@pytest.fixture
def race_plane(tmp_path: Path) -> Iterator[ControlPlane]:
    control_plane = ControlPlane(work_root=tmp_path / "work", startup_timeout_s=60).start()
    try:
        s3 = client(control_plane, "s3")
        s3.create_bucket(Bucket="race")
        s3.upload_file(str(code_only_archive(tmp_path / "model", HANDLER)), "race", "model.tar.gz")
        sagemaker = client(control_plane, "sagemaker")
        sagemaker.create_model(ModelName="race", ExecutionRoleArn=ROLE, PrimaryContainer={
            "Image": default_image("us-east-1", CATALOGUE["ml.m5.large"]), "ModelDataUrl": "s3://race/model.tar.gz",
            "Environment": {"SAGEMAKER_MODEL_SERVER_WORKERS": "1"}})
        sagemaker.create_endpoint_config(EndpointConfigName="race", ProductionVariants=[
            {"VariantName": "AllTraffic", "ModelName": "race", "InitialInstanceCount": 1,
             "InstanceType": "ml.m5.large"}])
        yield control_plane
    finally:
        control_plane.stop()


def client(control_plane: ControlPlane, service: str) -> Any:
    """One per thread, as botocore wants; one try, so that what the server answered is what the test sees."""
    return boto3.session.Session().client(
        service, endpoint_url=control_plane.url, region_name="us-east-1", aws_access_key_id="testing",
        aws_secret_access_key="testing", config=Config(retries={"max_attempts": 1}, read_timeout=60))


def instance_processes(work_root: Path) -> list[int]:
    """Live processes whose command line names this control plane's work root (its instances' logs)."""
    needle = str(work_root).encode()
    found = []
    for entry in Path("/proc").iterdir():
        try:
            if entry.name.isdigit() and needle in (entry / "cmdline").read_bytes() and is_alive(int(entry.name)):
                found.append(int(entry.name))
        except OSError:  # gone meanwhile
            continue
    return found


class Views:
    """What each way of looking at an endpoint says about one name."""

    def __init__(self, control_plane: ControlPlane) -> None:
        self.control_plane = control_plane
        self.sagemaker = client(control_plane, "sagemaker")
        self.runtime_api = client(control_plane, "sagemaker-runtime")

    def described(self, name: str) -> bool:
        try:
            self.sagemaker.describe_endpoint(EndpointName=name)
            return True
        except ClientError as exc:
            assert "Could not find endpoint" in exc.response["Error"]["Message"], exc.response
            return False

    def listed(self, name: str) -> bool:
        return name in [e["EndpointName"] for e in self.sagemaker.list_endpoints(MaxResults=100)["Endpoints"]]

    def running(self, name: str) -> bool:
        return self.control_plane.runtime.get(name) is not None

    def agree(self, name: str, where: str) -> bool:
        """Describe, List and the runtime agree; Create, Delete and InvokeEndpoint answer accordingly."""
        views = {"Describe": self.described(name), "List": self.listed(name), "runtime": self.running(name)}
        assert len(set(views.values())) == 1, f"{where}: ghost endpoint {name}: {views}"
        present = views["Describe"]
        if present:
            with pytest.raises(ClientError, match="already existing"):
                self.sagemaker.create_endpoint(EndpointName=name, EndpointConfigName="race")
        else:
            with pytest.raises(ClientError, match="Could not find endpoint"):
                self.sagemaker.delete_endpoint(EndpointName=name)
            with pytest.raises(ClientError, match="not found"):
                self.runtime_api.invoke_endpoint(EndpointName=name, Body=b"ghost?", ContentType="text/plain")
        return present


class Race:
    """One round: every call waits at the barrier, then for its own delay, then fires."""

    def __init__(self, start: threading.Barrier, outcomes: dict[str, int]) -> None:
        self.start, self.outcomes = start, outcomes
        self.errors: list[BaseException] = []
        self._lock = threading.Lock()

    def fire(self, sagemaker: Any, operation: str, name: str, delay_s: float) -> None:
        self.start.wait(timeout=30)
        time.sleep(delay_s)
        try:
            if operation == "create":
                sagemaker.create_endpoint(EndpointName=name, EndpointConfigName="race")
            else:
                sagemaker.delete_endpoint(EndpointName=name)
            outcome = f"{operation} ok"
        except ClientError as exc:
            outcome = f"{operation} {exc.response['Error']['Code']}"
        except BaseException as exc:  # noqa: BLE001 - reported in the test's thread
            self.errors.append(exc)
            return
        with self._lock:
            self.outcomes[outcome] = self.outcomes.get(outcome, 0) + 1


def test_create_racing_delete_never_leaves_a_ghost(race_plane: ControlPlane) -> None:
    views = Views(race_plane)
    operations = ["create", "delete", "create", "delete"]
    clients = [client(race_plane, "sagemaker") for _ in range(len(NAMES) * len(operations))]
    chance = random.Random(15)
    outcomes: dict[str, int] = {}
    for number in range(ROUNDS):
        race = Race(threading.Barrier(len(clients)), outcomes)
        threads = [threading.Thread(target=race.fire, args=(clients[i], operation, name, chance.uniform(0, 0.02)))
                   for i, (name, operation) in enumerate((n, o) for n in NAMES for o in operations)]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join(timeout=60)
        assert not race.errors, race.errors
        for name in NAMES:
            views.agree(name, f"round {number}")

    # Both outcomes of the race happened, or the rounds did not test it.
    assert outcomes.get("create ok", 0) and outcomes.get("delete ok", 0), outcomes
    for name in NAMES:
        if views.agree(name, "before the last delete"):
            views.sagemaker.delete_endpoint(EndpointName=name)
        assert not views.agree(name, "after the last delete")
    wait_until(lambda: not instance_processes(race_plane.work_root), "every instance process to exit", 15)

    # The names are free again: created afresh, each serves, and goes whole.
    views.sagemaker.create_endpoint(EndpointName=NAMES[0], EndpointConfigName="race")
    waiter = views.sagemaker.get_waiter("endpoint_in_service")
    waiter.wait(EndpointName=NAMES[0], WaiterConfig={"Delay": 0.5, "MaxAttempts": 120})
    answer = views.runtime_api.invoke_endpoint(EndpointName=NAMES[0], Body=b"real", ContentType="text/plain")
    assert answer["Body"].read() == b"real"
    views.sagemaker.delete_endpoint(EndpointName=NAMES[0])
    assert not views.agree(NAMES[0], "after the fresh endpoint's delete")
    wait_until(lambda: not instance_processes(race_plane.work_root), "the fresh endpoint's processes to exit", 15)
