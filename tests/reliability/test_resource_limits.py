"""Instances and disk are bounded per control plane, and a request over a bound starts nothing.

Every instance is a gunicorn process on this machine: ``InitialInstanceCount=100000`` started 185 of them
in 10 s before the quotas. Each refusal is AWS's ResourceLimitExceeded, in AWS's words.
"""

from __future__ import annotations

import contextlib
import os
import re
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import boto3
import pytest
from botocore.config import Config
from botocore.exceptions import ClientError

from localmaker.control_plane.server import ControlPlane
from localmaker.control_plane.settings import ControlPlaneSettings
from localmaker.spec.names import LOCAL_CREDENTIALS, PLACEHOLDER_ROLE
from tests.reliability.conftest import wait_until
from tests.script_archives import code_only_archive

ECHO = """
    def model_fn(model_dir):
        return None

    def transform_fn(model, body, content_type, accept):
        return body, "application/json"
"""
FAILS_TO_LOAD = """
    def model_fn(model_dir):
        raise RuntimeError("this model never loads")
"""
BUCKET = "quota-models"
IMAGE = "763104351884.dkr.ecr.us-east-1.amazonaws.com/pytorch-inference:2.5.1-cpu-py311"
QUOTA_TEXT = re.compile(r"The account-level service limit '(?P<quota>[^']+)' is (?P<limit>\d+) Instances, with current "
                        r"utilization of (?P<used>\d+) Instances and a request delta of (?P<delta>\d+) Instances\. "
                        r"Please use AWS Service Quotas to request an increase for this quota\.")


class Plane:
    def __init__(self, control_plane: ControlPlane) -> None:
        self.control_plane = control_plane
        self.sagemaker = self._client("sagemaker")
        self.s3 = self._client("s3")

    def _client(self, service: str) -> Any:
        return boto3.client(service, endpoint_url=self.control_plane.url, region_name="us-east-1", **LOCAL_CREDENTIALS)

    def config(self, name: str, variants: list[tuple[str, int]]) -> None:
        self.sagemaker.create_model(ModelName=name, ExecutionRoleArn=PLACEHOLDER_ROLE, PrimaryContainer={
            "Image": IMAGE, "ModelDataUrl": f"s3://{BUCKET}/echo/model.tar.gz"})
        self.sagemaker.create_endpoint_config(EndpointConfigName=name, ProductionVariants=[
            {"VariantName": f"v{index}", "ModelName": name, "InitialInstanceCount": count, "InstanceType": kind}
            for index, (kind, count) in enumerate(variants)])

    def model(self, name: str, archive: str, variants: list[dict[str, Any]]) -> None:
        """A model of the archive at ``s3://BUCKET/<archive>/model.tar.gz`` and a config of ``variants``."""
        self.sagemaker.create_model(ModelName=name, ExecutionRoleArn=PLACEHOLDER_ROLE, PrimaryContainer={
            "Image": IMAGE, "ModelDataUrl": f"s3://{BUCKET}/{archive}/model.tar.gz"})
        self.sagemaker.create_endpoint_config(EndpointConfigName=name, ProductionVariants=[
            {"VariantName": f"v{index}", "ModelName": name, **variant} for index, variant in enumerate(variants)])

    def in_service(self, name: str) -> dict[str, Any]:
        self.sagemaker.get_waiter("endpoint_in_service").wait(EndpointName=name,
                                                               WaiterConfig={"Delay": 1, "MaxAttempts": 120})
        return dict(self.sagemaker.describe_endpoint(EndpointName=name))

    def refused(self, call: str, **kwargs: Any) -> dict[str, str]:
        with pytest.raises(ClientError) as caught:
            getattr(self.sagemaker, call)(**kwargs)
        error = caught.value.response["Error"]
        assert (caught.value.response["ResponseMetadata"]["HTTPStatusCode"], error["Code"]) == \
            (400, "ResourceLimitExceeded"), error
        match = QUOTA_TEXT.match(error["Message"])
        assert match, error["Message"]
        return match.groupdict()


def _transform_job(name: str, model: str, instance_count: int) -> dict[str, Any]:
    """CreateTransformJob's arguments: every object under ``s3://BUCKET/in`` through ``model``."""
    return {"TransformJobName": name, "ModelName": model,
            "TransformInput": {"DataSource": {"S3DataSource": {"S3DataType": "S3Prefix", "S3Uri": f"s3://{BUCKET}/in"}}},
            "TransformOutput": {"S3OutputPath": f"s3://{BUCKET}/out"},
            "TransformResources": {"InstanceType": "ml.m5.large", "InstanceCount": instance_count}}


@contextlib.contextmanager
def disk_capped_plane(work_root: Path) -> Iterator[Plane]:
    """A control plane of its own whose disk cap is 4 MB, with BUCKET created; stopped after."""
    settings = ControlPlaneSettings(max_disk_bytes=4 * 1024**2)
    control_plane = ControlPlane(work_root=work_root, startup_timeout_s=60, settings=settings).start()
    try:
        plane = Plane(control_plane)
        plane.s3.create_bucket(Bucket=BUCKET)
        yield plane
    finally:
        control_plane.stop()


def _instance_processes() -> list[int]:
    """Live gunicorn processes started below this test process (the instances)."""
    found = []
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            command = (entry / "cmdline").read_bytes()
            environ = (entry / "environ").read_bytes()
        except OSError:
            continue
        marker = f"LOCALMAKER_TEST_RUN={os.environ.get('LOCALMAKER_TEST_RUN')}".encode()
        if b"gunicorn" in command and marker in environ:
            found.append(int(entry.name))
    return found


@pytest.fixture(scope="module")
def plane(tmp_path_factory: pytest.TempPathFactory, localmaker_home: Path) -> Iterator[Plane]:
    settings = ControlPlaneSettings(quota_instances_per_type=2, quota_instances_total=3)
    control_plane = ControlPlane(work_root=tmp_path_factory.mktemp("quotas"), startup_timeout_s=120,
                                 settings=settings).start()
    try:
        plane = Plane(control_plane)
        plane.s3.create_bucket(Bucket=BUCKET)
        archive = code_only_archive(tmp_path_factory.mktemp("echo"), ECHO)
        plane.s3.upload_file(str(archive), BUCKET, "echo/model.tar.gz")
        failing = code_only_archive(tmp_path_factory.mktemp("failing"), FAILS_TO_LOAD)
        plane.s3.upload_file(str(failing), BUCKET, "failing/model.tar.gz")
        yield plane
    finally:
        control_plane.stop()


def test_a_hundred_thousand_instances_are_refused_in_aws_words_and_nothing_starts(plane):
    before = _instance_processes()
    plane.config("huge", [("ml.m5.xlarge", 100_000)])
    quota = plane.refused("create_endpoint", EndpointName="huge", EndpointConfigName="huge")
    assert quota == {"quota": "ml.m5.xlarge for endpoint usage", "limit": "2", "used": "0", "delta": "100000"}
    assert plane.control_plane.runtime.get("huge") is None and _instance_processes() == before
    with pytest.raises(ClientError, match="Could not find endpoint"):  # not recorded either
        plane.sagemaker.describe_endpoint(EndpointName="huge")
    plane.config("spread", [("ml.m5.large", 2), ("ml.c5.xlarge", 2)])  # each type fits, the total does not
    quota = plane.refused("create_endpoint", EndpointName="spread", EndpointConfigName="spread")
    assert quota == {"quota": "Number of instances across all endpoints", "limit": "3", "used": "0", "delta": "4"}


def test_usage_counts_running_endpoints_and_frees_on_delete(plane):
    plane.config("first", [("ml.m5.large", 2)])
    plane.sagemaker.create_endpoint(EndpointName="first", EndpointConfigName="first")
    try:
        plane.config("second", [("ml.m5.large", 1)])
        quota = plane.refused("create_endpoint", EndpointName="second", EndpointConfigName="second")
        assert quota == {"quota": "ml.m5.large for endpoint usage", "limit": "2", "used": "2", "delta": "1"}
        plane.sagemaker.get_waiter("endpoint_in_service").wait(EndpointName="first",
                                                               WaiterConfig={"Delay": 1, "MaxAttempts": 120})
        quota = plane.refused("update_endpoint_weights_and_capacities", EndpointName="first",
                              DesiredWeightsAndCapacities=[{"VariantName": "v0", "DesiredInstanceCount": 5}])
        assert (quota["used"], quota["delta"]) == ("0", "5")  # its own 2 are replaced, not added to
        # Blue/green: the old fleet serves while the new one starts, so both count.
        quota = plane.refused("update_endpoint", EndpointName="first", EndpointConfigName="second")
        assert quota == {"quota": "ml.m5.large for endpoint usage", "limit": "2", "used": "2", "delta": "1"}
        assert len(plane.control_plane.runtime.get("first").instances()) == 2  # type: ignore[union-attr]
    finally:
        plane.sagemaker.delete_endpoint(EndpointName="first")
    plane.sagemaker.create_endpoint(EndpointName="second", EndpointConfigName="second")  # the quota came back
    plane.sagemaker.delete_endpoint(EndpointName="second")


def test_after_a_rolled_back_or_busy_update_only_the_serving_fleet_counts(plane):
    plane.model("steady", "echo", [{"InstanceType": "ml.m5.large", "InitialInstanceCount": 1}])
    plane.model("broken", "failing", [{"InstanceType": "ml.c5.xlarge", "InitialInstanceCount": 2}])
    plane.sagemaker.create_endpoint(EndpointName="steady", EndpointConfigName="steady")
    try:
        plane.in_service("steady")
        plane.sagemaker.update_endpoint(EndpointName="steady", EndpointConfigName="broken")
        # While the new fleet starts, both fleets count: 1 serving + 2 starting fill the total of 3.
        quota = plane.refused("create_endpoint", EndpointName="probe", EndpointConfigName="steady")
        assert quota == {"quota": "Number of instances across all endpoints", "limit": "3", "used": "3",
                         "delta": "1"}
        with pytest.raises(ClientError, match="Cannot update in-progress endpoint"):  # busy: refused
            plane.sagemaker.update_endpoint(EndpointName="steady", EndpointConfigName="steady")
        wait_until(lambda: plane.sagemaker.describe_endpoint(EndpointName="steady")["EndpointStatus"] == "InService",
                   "the failed update to roll back", timeout_s=120)
        assert "FailureReason" in plane.sagemaker.describe_endpoint(EndpointName="steady")  # it did roll back
        # Only the serving ml.m5.large counts now, not the config that never started nor the refused one.
        plane.model("wide", "echo", [{"InstanceType": "ml.m5.large", "InitialInstanceCount": 5}])
        quota = plane.refused("create_endpoint", EndpointName="wide", EndpointConfigName="wide")
        assert quota == {"quota": "ml.m5.large for endpoint usage", "limit": "2", "used": "1", "delta": "5"}
        plane.model("two-c5", "echo", [{"InstanceType": "ml.c5.xlarge", "InitialInstanceCount": 2}])
        plane.sagemaker.create_endpoint(EndpointName="two-c5", EndpointConfigName="two-c5")  # 1 + 2 fit in 3
        plane.sagemaker.delete_endpoint(EndpointName="two-c5")
    finally:
        plane.sagemaker.delete_endpoint(EndpointName="steady")


def test_serverless_instances_count_toward_the_total_and_a_cold_start_over_it_is_throttled(plane):
    plane.model("full", "echo", [{"InstanceType": "ml.m5.large", "InitialInstanceCount": 2},
                                 {"InstanceType": "ml.c5.xlarge", "InitialInstanceCount": 1}])
    plane.model("lean", "echo", [{"ServerlessConfig": {"MemorySizeInMB": 1024, "MaxConcurrency": 2}}])
    plane.sagemaker.create_endpoint(EndpointName="lean", EndpointConfigName="lean")
    plane.in_service("lean")
    runtime = boto3.client("sagemaker-runtime", endpoint_url=plane.control_plane.url, region_name="us-east-1",
                           config=Config(retries={"max_attempts": 1}), **LOCAL_CREDENTIALS)
    try:
        plane.sagemaker.create_endpoint(EndpointName="full", EndpointConfigName="full")
        plane.in_service("full")  # its 3 instances fill the total quota
        before = _instance_processes()
        with pytest.raises(ClientError) as throttled:
            runtime.invoke_endpoint(EndpointName="lean", ContentType="application/json", Body=b"{}")
        error = throttled.value.response["Error"]
        assert (throttled.value.response["ResponseMetadata"]["HTTPStatusCode"], error["Code"]) == \
            (429, "ThrottlingException"), error
        assert error["Message"].startswith("Rate exceeded: serverless endpoint lean needs one more instance, and "
                                           "the 3 instances running for endpoints fill the quota of 3"), error
        assert _instance_processes() == before  # nothing started
        plane.sagemaker.delete_endpoint(EndpointName="full")
        answer = runtime.invoke_endpoint(EndpointName="lean", ContentType="application/json", Body=b"{}")
        assert answer["Body"].read() == b"{}"  # a cold start, now that there is room
        # The serverless instance counts in turn: 1 of the total of 3 is taken.
        plane.model("three", "echo", [{"InstanceType": "ml.c5.xlarge", "InitialInstanceCount": 2},
                                      {"InstanceType": "ml.m5.large", "InitialInstanceCount": 1}])
        quota = plane.refused("create_endpoint", EndpointName="three", EndpointConfigName="three")
        assert quota == {"quota": "Number of instances across all endpoints", "limit": "3", "used": "1",
                         "delta": "3"}
    finally:
        plane.sagemaker.delete_endpoint(EndpointName="lean")
        with contextlib.suppress(ClientError):
            plane.sagemaker.delete_endpoint(EndpointName="full")


def test_training_and_transform_jobs_have_quotas_of_their_own(plane):
    quota = plane.refused("create_training_job", TrainingJobName="wide", RoleArn=PLACEHOLDER_ROLE,
                          AlgorithmSpecification={"TrainingImage": IMAGE, "TrainingInputMode": "File"},
                          OutputDataConfig={"S3OutputPath": f"s3://{BUCKET}/out"},
                          ResourceConfig={"InstanceType": "ml.m5.large", "InstanceCount": 3, "VolumeSizeInGB": 1},
                          StoppingCondition={"MaxRuntimeInSeconds": 60})
    assert quota == {"quota": "ml.m5.large for training job usage", "limit": "2", "used": "0", "delta": "3"}
    jobs = plane.sagemaker.list_training_jobs()["TrainingJobSummaries"]  # moto's records are the process's
    assert "wide" not in [job["TrainingJobName"] for job in jobs]
    plane.config("transformer", [("ml.m5.large", 1)])
    quota = plane.refused("create_transform_job", **_transform_job("wide", "transformer", 4))
    assert quota == {"quota": "ml.m5.large for transform job usage", "limit": "2", "used": "0", "delta": "4"}
    jobs = plane.sagemaker.list_transform_jobs()["TransformJobSummaries"]
    assert "wide" not in [job["TransformJobName"] for job in jobs]


def test_the_disk_cap_refuses_new_work_and_an_artifact_that_would_not_fit(tmp_path, localmaker_home):
    with disk_capped_plane(tmp_path / "plane") as plane:
        plane.s3.put_object(Bucket=BUCKET, Key="echo/model.tar.gz", Body=os.urandom(5 * 1024**2))  # over the cap
        plane.config("too-big", [("ml.m5.large", 1)])
        plane.sagemaker.create_endpoint(EndpointName="too-big", EndpointConfigName="too-big")
        wait_until(lambda: plane.sagemaker.describe_endpoint(EndpointName="too-big")["EndpointStatus"] == "Failed",
                   "the endpoint to fail on the disk cap")
        reason = plane.sagemaker.describe_endpoint(EndpointName="too-big")["FailureReason"]
        assert "disk cap is 4,194,304 bytes" in reason and "LOCALMAKER_MAX_DISK_GB" in reason, reason
        assert not list((tmp_path / "plane").rglob("model.tar.gz"))  # refused before a byte was written
        plane.sagemaker.delete_endpoint(EndpointName="too-big")
        (tmp_path / "plane" / "filler").write_bytes(os.urandom(5 * 1024**2))  # something else filled it
        plane.config("after", [("ml.m5.large", 1)])
        with pytest.raises(ClientError) as caught:
            plane.sagemaker.create_endpoint(EndpointName="after", EndpointConfigName="after")
        error = caught.value.response["Error"]
        assert error["Code"] == "ResourceLimitExceeded" and "endpoint 'after' cannot start" in error["Message"]
        assert plane.control_plane.runtime.get("after") is None


def test_a_transform_input_over_the_disk_cap_fails_the_job_before_a_byte_is_downloaded(tmp_path, localmaker_home):
    with disk_capped_plane(tmp_path / "plane") as plane:
        plane.s3.upload_file(str(code_only_archive(tmp_path / "echo", ECHO)), BUCKET, "echo/model.tar.gz")
        for part in range(3):  # 6 MB of input in all, over the 4 MB cap, though each object fits
            plane.s3.put_object(Bucket=BUCKET, Key=f"in/part-{part}.jsonl", Body=b'{"x": 1}\n' * (2 * 1024**2 // 9))
        plane.config("disk-transformer", [("ml.m5.large", 1)])
        plane.sagemaker.create_transform_job(**_transform_job("too-much", "disk-transformer", 1))
        wait_until(lambda: plane.sagemaker.describe_transform_job(TransformJobName="too-much")["TransformJobStatus"]
                   == "Failed", "the transform job to fail on the disk cap")
        reason = plane.sagemaker.describe_transform_job(TransformJobName="too-much")["FailureReason"]
        assert reason.startswith("ClientError: cannot download the input: The control plane's disk cap is "
                                 "4,194,304 bytes"), reason
        assert f"s3://{BUCKET}/in (3 objects) needs" in reason and "LOCALMAKER_MAX_DISK_GB" in reason, reason
        assert not [path for path in (tmp_path / "plane").rglob("input/*") if path.is_file()]  # nothing downloaded
