"""Names that try to become paths, through unmodified boto3 against an embedded control plane.

Every name a request carries is refused at the API boundary in AWS's ValidationException words, before
moto records it; and below the boundary, a name that got through anyway (handed to the runtime directly
here) fails its endpoint or job instead of writing, unpacking or deleting outside the work root.
"""

from __future__ import annotations

import io
import json
import os
import re
import tarfile
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import boto3
import pytest
from botocore.config import Config
from botocore.exceptions import ClientError

from localmaker.control_plane.endpoint_state import EndpointStatus, VariantSpec
from localmaker.control_plane.resource_names import UnsafePath
from localmaker.control_plane.server import ControlPlane
from localmaker.control_plane.training_state import TrainingSpec, TrainingStatus
from localmaker.spec.container_images import default_image
from localmaker.spec.instance_types import CATALOGUE
from tests.reliability.conftest import code_only_archive

ROLE = "arn:aws:iam::123456789012:role/SageMakerRole"
BUCKET = "hostile-names"
IMAGE = default_image("us-east-1", CATALOGUE["ml.m5.large"])
HANDLER = """
    def model_fn(model_dir):
        return "tiny"

    def predict_fn(data, model):
        return {"echo": data}
"""


def hostile_names(sandbox: Path) -> list[str]:
    """Traversal, separators, absolute paths, look-alikes, control characters, and lengths past AWS's."""
    return ["../victim", "..", ".", "a/b", "../../x", str(sandbox / "victim"), "/tmp", "victim/..",
            "ｖictim",  # fullwidth v
            "vic\u2215tim",  # division slash, which looks like "/"
            "vic\u200btim", "vic\ntim", "vic\\..\\tim", "-victim", "victim-", "v_ictim", "v.ictim", "x" * 64,
            "%2e%2e%2fvictim", "victim\x00"]


@pytest.fixture(scope="module")
def sandbox(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[ControlPlane, Path]]:
    """A control plane whose work root sits beside folders it must never touch."""
    sandbox = tmp_path_factory.mktemp("sandbox")
    (sandbox / "victim").mkdir()
    (sandbox / "victim" / "keep.txt").write_text("precious")
    (sandbox / "victim-empty").mkdir()
    control_plane = ControlPlane(work_root=sandbox / "work", startup_timeout_s=60).start()
    try:
        yield control_plane, sandbox
    finally:
        control_plane.stop()


def client(control_plane: ControlPlane, service: str) -> Any:
    # parameter_validation off: botocore would refuse some (an empty name) itself, and the server must too.
    return boto3.client(service, endpoint_url=control_plane.url, region_name="us-east-1",
                        aws_access_key_id="testing", aws_secret_access_key="testing",
                        config=Config(parameter_validation=False, retries={"max_attempts": 1}))


def outside_the_work_root(sandbox: Path, work_root: Path) -> dict[str, bytes]:
    """Every file and folder of the sandbox except the work root, with the content of each file."""
    seen: dict[str, bytes] = {}
    for path in sorted(sandbox.rglob("*")):
        if path == work_root or work_root in path.parents:
            continue
        seen[str(path.relative_to(sandbox))] = path.read_bytes() if path.is_file() else b"<dir>"
    return seen


def harmless_channel_name(name: str) -> bool:
    """AWS's ChannelName also allows dots and underscores: "v.ictim" is one folder name, ".." is not."""
    return bool(re.fullmatch(r"[A-Za-z0-9\.\-_]+", name, re.ASCII)) and name not in (".", "..")


def refused(call: Any, **request: Any) -> str:
    with pytest.raises(ClientError) as caught:
        call(**request)
    error = caught.value.response["Error"]
    assert error["Code"] == "ValidationException", error
    assert caught.value.response["ResponseMetadata"]["HTTPStatusCode"] == 400
    return str(error["Message"])


def _recorded(sagemaker: Any) -> dict[str, set[str]]:
    """Every name moto lists, page by page, of each kind the test tries to create."""
    def names(operation: str, key: str, field: str) -> set[str]:
        return {item[field] for page in sagemaker.get_paginator(operation).paginate() for item in page[key]}

    return {"models": names("list_models", "Models", "ModelName"),
            "configs": names("list_endpoint_configs", "EndpointConfigs", "EndpointConfigName"),
            "endpoints": names("list_endpoints", "Endpoints", "EndpointName"),
            "training jobs": names("list_training_jobs", "TrainingJobSummaries", "TrainingJobName"),
            "transform jobs": names("list_transform_jobs", "TransformJobSummaries", "TransformJobName")}


def test_every_name_is_refused_at_the_boundary_and_nothing_is_recorded(sandbox: tuple[ControlPlane, Path]) -> None:
    control_plane, root = sandbox
    before = outside_the_work_root(root, control_plane.work_root)
    sagemaker = client(control_plane, "sagemaker")
    s3 = client(control_plane, "s3")
    recorded_before = _recorded(sagemaker)  # moto's records are the whole test process's
    s3.create_bucket(Bucket=BUCKET)
    s3.put_object(Bucket=BUCKET, Key="data/x.csv", Body=b"1\n")
    sagemaker.create_model(ModelName="good", ExecutionRoleArn=ROLE,
                           PrimaryContainer={"Image": IMAGE, "ModelDataUrl": f"s3://{BUCKET}/model.tar.gz"})
    sagemaker.create_endpoint_config(EndpointConfigName="good", ProductionVariants=[
        {"VariantName": "AllTraffic", "ModelName": "good", "InitialInstanceCount": 1, "InstanceType": "ml.m5.large"}])
    channel = {"DataSource": {"S3DataSource": {"S3DataType": "S3Prefix", "S3Uri": f"s3://{BUCKET}/data"}}}
    training = {"AlgorithmSpecification": {"TrainingImage": IMAGE, "TrainingInputMode": "File"}, "RoleArn": ROLE,
                "OutputDataConfig": {"S3OutputPath": f"s3://{BUCKET}/out"}, "StoppingCondition": {
                    "MaxRuntimeInSeconds": 60}, "ResourceConfig": {"InstanceType": "ml.m5.large",
                                                                   "InstanceCount": 1, "VolumeSizeInGB": 1}}
    transform = {"TransformInput": {"DataSource": {"S3DataSource": {"S3DataType": "S3Prefix",
                                                                    "S3Uri": f"s3://{BUCKET}/data"}}},
                 "TransformOutput": {"S3OutputPath": f"s3://{BUCKET}/out"},
                 "TransformResources": {"InstanceType": "ml.m5.large", "InstanceCount": 1}}

    for name in hostile_names(root):
        shown = f"Value '{name}' at "
        message = refused(sagemaker.create_endpoint, EndpointName=name, EndpointConfigName="good")
        assert message.startswith(("1 validation error detected: ", "2 validation errors detected: ")) or \
            "names no folder" in message, message
        assert f"{shown}'endpointName' failed to satisfy constraint" in message
        assert f"{shown}'endpointConfigName'" in refused(sagemaker.create_endpoint, EndpointName="fine",
                                                         EndpointConfigName=name)
        assert f"{shown}'modelName'" in refused(sagemaker.create_model, ModelName=name, ExecutionRoleArn=ROLE,
                                                PrimaryContainer={"Image": IMAGE, "ModelDataUrl": "s3://b/m"})
        assert f"{shown}'productionVariants.1.member.variantName'" in refused(
            sagemaker.create_endpoint_config, EndpointConfigName="fine", ProductionVariants=[
                {"VariantName": name, "ModelName": "good", "InitialInstanceCount": 1, "InstanceType": "ml.m5.large"}])
        assert f"{shown}'trainingJobName'" in refused(sagemaker.create_training_job, TrainingJobName=name,
                                                      **training)
        if not harmless_channel_name(name):
            assert f"{shown}'inputDataConfig.1.member.channelName'" in refused(
                sagemaker.create_training_job, TrainingJobName="fine",
                InputDataConfig=[{"ChannelName": name, **channel}], **training)
        assert f"{shown}'transformJobName'" in refused(sagemaker.create_transform_job, TransformJobName=name,
                                                       ModelName="good", **transform)
        assert f"{shown}'desiredWeightsAndCapacities.1.member.variantName'" in refused(
            sagemaker.update_endpoint_weights_and_capacities, EndpointName="fine",
            DesiredWeightsAndCapacities=[{"VariantName": name, "DesiredInstanceCount": 1}])

    # moto recorded none of them, the runtimes run none, and nothing outside the work root changed.
    added = {kind: names - recorded_before[kind] for kind, names in _recorded(sagemaker).items()}
    assert added == {"models": {"good"}, "configs": {"good"}, "endpoints": set(), "training jobs": set(),
                     "transform jobs": set()}
    assert control_plane.runtime.names() == [] and control_plane.training.names() == []
    assert outside_the_work_root(root, control_plane.work_root) == before


def test_a_name_below_the_boundary_cannot_write_unpack_or_delete_outside(sandbox: tuple[ControlPlane, Path]) -> None:
    """The runtime's own guard: handed a hostile variant name directly, an endpoint fails and touches nothing,
    and an UpdateEndpoint to such a variant rolls back without deleting the folder its name points at."""
    control_plane, root = sandbox
    s3 = client(control_plane, "s3")
    s3.create_bucket(Bucket=f"{BUCKET}-runtime")
    archive = code_only_archive(root / "work" / "artifact", HANDLER)
    s3.upload_file(str(archive), f"{BUCKET}-runtime", "model.tar.gz")
    before = outside_the_work_root(root, control_plane.work_root)

    def spec(variant_name: str) -> VariantSpec:
        return VariantSpec(variant_name=variant_name, model_name="m", instance_type="ml.m5.large", instance_count=1,
                           model_data_url=f"s3://{BUCKET}-runtime/model.tar.gz", image=IMAGE, environment={
                               "SAGEMAKER_MODEL_SERVER_WORKERS": "1"})

    runtime = control_plane.runtime
    with pytest.raises(UnsafePath):
        runtime.create("../victim", "c", [spec("AllTraffic")])
    # From <work>/<endpoint>/models/<id>/ four levels up is the sandbox: the old code unpacked into
    # victim-empty and wrote the instance's log beside it.
    escape = "../../../../victim-empty"
    hostile = runtime.create("hostile", "c", [spec(escape)])
    assert wait_for(lambda: hostile.status is EndpointStatus.FAILED, 30), hostile.status
    assert "not inside" in hostile.failure_reason

    serving = runtime.create("serving", "c", [spec("AllTraffic")])
    assert wait_for(lambda: serving.status is EndpointStatus.IN_SERVICE, 60), serving.failure_reason
    runtime.update("serving", "c2", [spec(escape)])
    assert wait_for(lambda: serving.status is EndpointStatus.IN_SERVICE and bool(serving.failure_reason), 30)
    assert "rolled back" in serving.failure_reason and "not inside" in serving.failure_reason
    runtime.delete("hostile")
    runtime.delete("serving")
    assert outside_the_work_root(root, control_plane.work_root) == before
    assert (root / "victim-empty").is_dir() and (root / "victim" / "keep.txt").read_text() == "precious"


def test_a_channel_name_below_the_boundary_fails_the_job_not_the_disk(sandbox: tuple[ControlPlane, Path]) -> None:
    control_plane, root = sandbox
    s3 = client(control_plane, "s3")
    s3.create_bucket(Bucket=f"{BUCKET}-training")
    s3.put_object(Bucket=f"{BUCKET}-training", Key="data/rows.csv", Body=b"1,2\n")
    source = io.BytesIO()
    with tarfile.open(fileobj=source, mode="w:gz") as tar:
        member = tarfile.TarInfo("train.py")
        member.size = len(b"print('never runs')\n")
        tar.addfile(member, io.BytesIO(b"print('never runs')\n"))
    s3.put_object(Bucket=f"{BUCKET}-training", Key="code/sourcedir.tar.gz", Body=source.getvalue())
    before = outside_the_work_root(root, control_plane.work_root)
    code = {"sagemaker_submit_directory": json.dumps(f"s3://{BUCKET}-training/code/sourcedir.tar.gz")}
    jobs = []
    for number, (channel, program) in enumerate([("../../../../victim", "train.py"), ("..", "train.py"),
                                                 ("train", "../../../../victim/keep.txt"),
                                                 ("train", str(root / "victim" / "keep.txt"))]):
        jobs.append(control_plane.training.create(TrainingSpec(
            name=f"job-{number}", hyperparameters={**code, "sagemaker_program": json.dumps(program)},
            channels={channel: f"s3://{BUCKET}-training/data"}, output_path=f"s3://{BUCKET}-training/out",
            instance_type="ml.m5.large", max_runtime_s=30)))
    for job, what in zip(jobs, ["channel", "channel", "entry point", "entry point"], strict=True):
        assert wait_for(lambda job=job: job.status is TrainingStatus.FAILED, 30), job.describe()
        assert f"{what} " in job.failure_reason and "must name a path inside" in job.failure_reason, \
            job.failure_reason
    assert outside_the_work_root(root, control_plane.work_root) == before
    assert not any(path.name == "never" for path in root.rglob("*"))
    assert os.listdir(root / "victim") == ["keep.txt"]


def wait_for(condition: Any, timeout_s: float) -> bool:
    deadline = time.monotonic() + timeout_s
    while not condition():
        if time.monotonic() > deadline:
            return False
        time.sleep(0.05)
    return True
