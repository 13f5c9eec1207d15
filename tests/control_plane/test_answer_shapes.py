"""Every answer valid against botocore's service model: unset members left out, required members present.

A real control plane walks a whole cycle through boto3 (deploy, describe and list while Creating,
InService, Updating and Failed, a blue/green update and one that rolls back, a capacity change,
invocations that answer and that fail, deletes, and a training job that completes and one that fails),
and every raw answer is held to its operation's output shape by ``shape_validator``, which is first
shown able to fail. sagemaker-core's pydantic classes, which the SageMaker SDK v3 builds from these
answers, then read the Describe answers without complaint.
"""

from __future__ import annotations

import json
import textwrap
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import botocore.parsers
import botocore.session
import pytest
from botocore.exceptions import ClientError

from localmaker import TrainingError
from localmaker.control_plane.answer_shapes import conformed
from localmaker.control_plane.server import ControlPlane
from localmaker.deploy import Estimator, Session
from localmaker.model.artifact import pack_handler
from localmaker.spec.names import PLACEHOLDER_ROLE
from tests.control_plane.plane_clients import plane_client
from tests.control_plane.shape_validator import Recorded, Recorder, violations

REGION = "eu-west-1"
IMAGE = "763104351884.dkr.ecr.eu-west-1.amazonaws.com/pytorch-inference:2.3-cpu-py311"
HANDLER = """
    import json, os

    def model_fn(model_dir):
        return os.environ.get("FLAVOUR", "plain")

    def input_fn(body, content_type):
        return json.loads(body)

    def predict_fn(data, flavour):
        if data.get("fail"):
            raise RuntimeError("asked to fail")
        return {"flavour": flavour}

    def output_fn(prediction, accept):
        return json.dumps(prediction), "application/json"
"""
BROKEN = "def model_fn(model_dir):\n    raise RuntimeError('weights are corrupt')\n"
TRAIN = """
    import os, pathlib, sys
    if os.environ.get("CRASH"):
        sys.exit("the loss went to NaN")
    pathlib.Path(os.environ["SM_MODEL_DIR"], "weights.bin").write_text("w")
    print("[localmaker:progress] step=1 total=1 loss=0.5", flush=True)
"""
_SAGEMAKER = botocore.session.get_session().get_service_model("sagemaker")


def _output(operation: str) -> Any:
    return _SAGEMAKER.operation_model(operation).output_shape


# -- the validator can fail --------------------------------------------------------------------------


@pytest.mark.parametrize(("operation", "answer", "fault"), [
    ("DescribeModel", {"ModelName": "m", "ModelArn": "arn", "CreationTime": 1.0, "VpcConfig": {}},
     "$.VpcConfig: an empty VpcConfig"),
    ("DescribeModel", {"ModelName": "m", "ModelArn": "arn"}, "$.CreationTime: required by DescribeModelOutput"),
    ("DescribeModel", {"ModelName": "m", "ModelArn": "arn", "CreationTime": "yesterday"}, "is not a timestamp"),
    ("DescribeModel", {"ModelName": "m", "ModelArn": "arn", "CreationTime": 1.0, "EnableNetworkIsolation": "no"},
     "is not a boolean"),
    ("DescribeModel", {"ModelName": "m", "ModelArn": "arn", "CreationTime": 1.0, "Containers": {}},
     "$.Containers: dict where ContainerDefinitionList is a list"),
    ("DescribeEndpoint", {"EndpointName": "e", "EndpointArn": "a", "EndpointStatus": "InService",
                          "CreationTime": 1, "LastModifiedTime": 1, "DataCaptureConfig": {}},
     "$.DataCaptureConfig: an empty DataCaptureConfigSummary"),
    ("DescribeEndpoint", {"EndpointName": "e", "EndpointArn": "a", "EndpointStatus": "InService",
                          "CreationTime": 1, "LastModifiedTime": 1, "ProductionVariants": [{"CurrentWeight": 1}]},
     "$.ProductionVariants[0].VariantName: required"),
    ("DescribeEndpoint", {"EndpointName": "e", "EndpointArn": "a", "EndpointStatus": "InService",
                          "CreationTime": 1, "LastModifiedTime": 1,
                          "ProductionVariants": [{"VariantName": "v", "CurrentInstanceCount": 1.5}]},
     "1.5 is not a integer"),
    ("DescribeEndpoint", {"EndpointName": "e", "EndpointArn": "a", "EndpointStatus": "InService",
                          "CreationTime": 1, "LastModifiedTime": 1, "FailureReason": None}, "null"),
    ("ListEndpoints", {}, "$.Endpoints: required by ListEndpointsOutput"),
])
def test_the_validator_finds_each_kind_of_fault(operation, answer, fault):
    found = violations(_output(operation), answer)
    assert any(fault in line for line in found), found


def test_the_validator_passes_a_valid_answer_and_checks_error_bodies():
    assert violations(_output("DescribeModel"), {"ModelName": "m", "ModelArn": "a", "CreationTime": 1.5,
                                                  "Containers": [{"Image": "i"}], "VpcConfig": {
                                                      "SecurityGroupIds": ["sg-1"], "Subnets": ["s-1"]}}) == []
    runtime = botocore.session.get_session().get_service_model("sagemaker-runtime").operation_model("InvokeEndpoint")
    bad = Recorded(runtime, 424, {"x-amzn-errortype": "ModelError"},
                   json.dumps({"message": "m", "OriginalStatusCode": "500"}).encode())
    assert any("'500' is not a integer" in line for line in bad.violations())
    untyped = Recorded(runtime, 500, {}, b'{"message": "no code"}')
    assert any("no error code" in line for line in untyped.violations())


# -- the pruning, on answers as moto writes them ----------------------------------------------------


def test_unset_members_are_left_out_at_every_depth_and_required_ones_kept():
    described = conformed("DescribeModel", {
        "ModelName": "m", "ModelArn": "arn", "CreationTime": 1.0, "EnableNetworkIsolation": False,
        "PrimaryContainer": {"Image": "i", "Environment": {}, "ImageConfig": {}, "MultiModelConfig": None},
        "Containers": [], "VpcConfig": {}, "DeploymentRecommendation": {"RealTimeInferenceRecommendations": []},
        "SomethingNewer": {}})
    assert described == {"ModelName": "m", "ModelArn": "arn", "CreationTime": 1.0, "EnableNetworkIsolation": False,
                         "PrimaryContainer": {"Image": "i", "Environment": {}}, "SomethingNewer": {}}
    assert conformed("ListEndpoints", {"Endpoints": [], "NextToken": None}) == {"Endpoints": []}
    assert conformed("ListTags", {"Tags": []}) == {"Tags": []}  # paged: AWS sends it empty
    config = conformed("DescribeEndpointConfig", {"EndpointConfigName": "c", "EndpointConfigArn": "a",
                                                  "CreationTime": 1, "ProductionVariants": [], "DataCaptureConfig": {}})
    assert config == {"EndpointConfigName": "c", "EndpointConfigArn": "a", "CreationTime": 1, "ProductionVariants": []}
    assert conformed("NoSuchOperation", {"X": {}}) == {"X": {}}


# -- a whole cycle through a real control plane -----------------------------------------------------


@pytest.fixture(scope="module")
def plane(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ControlPlane]:
    control_plane = ControlPlane(region=REGION, work_root=tmp_path_factory.mktemp("shapes"),
                                 startup_timeout_s=120).start()
    try:
        yield control_plane
    finally:
        control_plane.stop()


def _settled(sagemaker: Any, name: str, passing: str, timeout_s: float = 120) -> dict[str, Any]:
    deadline = time.monotonic() + timeout_s
    while (described := sagemaker.describe_endpoint(EndpointName=name))["EndpointStatus"] == passing:
        assert time.monotonic() < deadline, f"{name} stayed {passing}"
        time.sleep(0.2)
    return dict(described)


def _deploy_update_fail_and_delete(sagemaker: Any, runtime: Any, s3: Any, folder: Path) -> None:
    s3.create_bucket(Bucket="shapes", CreateBucketConfiguration={"LocationConstraint": REGION})
    for name, script in (("echo", textwrap.dedent(HANDLER)), ("broken", BROKEN)):
        s3.upload_file(str(pack_handler(script, folder / f"{name}.tar.gz")), "shapes", f"{name}/model.tar.gz")
    for model, artifact, env in (("blue", "echo", {}), ("green", "echo", {"FLAVOUR": "green"}),
                                 ("broken", "broken", {})):
        sagemaker.create_model(ModelName=model, ExecutionRoleArn=PLACEHOLDER_ROLE, PrimaryContainer={
            "Image": IMAGE, "ModelDataUrl": f"s3://shapes/{artifact}/model.tar.gz", "Environment": env})
        sagemaker.create_endpoint_config(EndpointConfigName=model, ProductionVariants=[{
            "VariantName": "AllTraffic", "ModelName": model, "InitialInstanceCount": 1,
            "InstanceType": "ml.g5.xlarge" if model == "green" else "ml.m5.large"}])
        sagemaker.describe_model(ModelName=model)
        sagemaker.describe_endpoint_config(EndpointConfigName=model)
    sagemaker.list_models()
    sagemaker.list_endpoint_configs()
    sagemaker.list_tags(ResourceArn=sagemaker.describe_model(ModelName="blue")["ModelArn"])

    sagemaker.create_endpoint(EndpointName="shapes", EndpointConfigName="blue")
    sagemaker.create_endpoint(EndpointName="doomed", EndpointConfigName="broken")
    sagemaker.list_endpoints()  # both Creating
    assert _settled(sagemaker, "shapes", "Creating")["EndpointStatus"] == "InService"
    assert _settled(sagemaker, "doomed", "Creating")["EndpointStatus"] == "Failed"
    sagemaker.list_endpoints()
    answer = runtime.invoke_endpoint(EndpointName="shapes", ContentType="application/json", Body=b"{}")
    assert json.loads(answer["Body"].read()) == {"flavour": "plain"}
    with pytest.raises(ClientError, match="asked to fail"):
        runtime.invoke_endpoint(EndpointName="shapes", ContentType="application/json", Body=b'{"fail": true}')

    sagemaker.update_endpoint(EndpointName="shapes", EndpointConfigName="green")
    assert _settled(sagemaker, "shapes", "Updating")["EndpointConfigName"] == "green"
    sagemaker.update_endpoint(EndpointName="shapes", EndpointConfigName="broken")
    assert "rolled back" in _settled(sagemaker, "shapes", "Updating")["FailureReason"]
    sagemaker.update_endpoint_weights_and_capacities(EndpointName="shapes", DesiredWeightsAndCapacities=[
        {"VariantName": "AllTraffic", "DesiredInstanceCount": 2}])
    _settled(sagemaker, "shapes", "Updating")
    sagemaker.list_endpoints()

    for name in ("shapes", "doomed"):
        sagemaker.delete_endpoint(EndpointName=name)
    for name in ("blue", "green", "broken"):
        sagemaker.delete_endpoint_config(EndpointConfigName=name)
        sagemaker.delete_model(ModelName=name)
    with pytest.raises(ClientError):
        sagemaker.describe_endpoint(EndpointName="shapes")


def _train(session: Session, folder: Path) -> None:
    source = folder / "src"
    source.mkdir()
    (source / "train.py").write_text(textwrap.dedent(TRAIN))
    for name, crash in (("shapes-done", False), ("shapes-crash", True)):
        estimator = Estimator(entry_point="train.py", source_dir=source, role=PLACEHOLDER_ROLE,
                              instance_type="ml.m5.large", output_path="s3://shapes/jobs", sagemaker_session=session,
                              env={"CRASH": "1"} if crash else None)
        if crash:
            with pytest.raises(TrainingError):
                estimator.fit(f"file://{folder}", job_name=name, logs=False)
        else:
            estimator.fit(f"file://{folder}", job_name=name, logs=False)
    # The request's own metric definitions come back (moto records a made-up one in their place).
    sagemaker = session.sagemaker_client
    metrics = [{"Name": "train:loss", "Regex": "loss=(\\S+)"}]
    sagemaker.create_training_job(
        TrainingJobName="shapes-metrics", RoleArn=PLACEHOLDER_ROLE, OutputDataConfig={"S3OutputPath": "s3://shapes/j"},
        AlgorithmSpecification={"TrainingImage": IMAGE, "TrainingInputMode": "File", "MetricDefinitions": metrics},
        ResourceConfig={"InstanceType": "ml.m5.large", "InstanceCount": 1, "VolumeSizeInGB": 1},
        StoppingCondition={"MaxRuntimeInSeconds": 60})
    assert sagemaker.describe_training_job(TrainingJobName="shapes-metrics")["AlgorithmSpecification"][
        "MetricDefinitions"] == metrics
    sagemaker.list_training_jobs()


def test_every_answer_of_a_whole_cycle_is_valid_against_botocores_model(plane, tmp_path):
    recorder = Recorder()
    sagemaker, runtime, s3 = (plane_client(plane, s) for s in ("sagemaker", "sagemaker-runtime", "s3"))
    session = Session(endpoint_url=plane.url, region_name=REGION)
    recorder.attach(sagemaker, runtime, session.sagemaker_client)

    _deploy_update_fail_and_delete(sagemaker, runtime, s3, tmp_path)
    _train(session, tmp_path)

    assert recorder.violations() == []
    statuses = {r.payload()["EndpointStatus"] for r in recorder.of("DescribeEndpoint") if r.status == 200}
    assert statuses >= {"Creating", "InService", "Updating", "Failed"}
    jobs = {r.payload()["TrainingJobStatus"] for r in recorder.of("DescribeTrainingJob") if r.status == 200}
    assert jobs >= {"Completed", "Failed"}
    expected = {"DescribeModel", "ListModels", "DescribeEndpointConfig", "ListEndpointConfigs", "ListTags",
                "CreateEndpoint", "DescribeEndpoint", "ListEndpoints", "UpdateEndpoint",
                "UpdateEndpointWeightsAndCapacities", "DeleteEndpoint", "InvokeEndpoint", "CreateTrainingJob",
                "DescribeTrainingJob", "ListTrainingJobs"}
    assert expected <= {r.name for r in recorder.answers}
    assert any(r.status == 424 for r in recorder.of("InvokeEndpoint"))  # the ModelError was checked too

    # What moto used to fill in for members nobody set, and what the SDK v3's pydantic classes choke on.
    model = recorder.of("DescribeModel")[0].payload()
    assert not {"VpcConfig", "Containers"} & set(model) and model["PrimaryContainer"]["Image"] == IMAGE
    assert "DataCaptureConfig" not in recorder.of("DescribeEndpointConfig")[0].payload()
    assert all("DataCaptureConfig" not in r.payload() for r in recorder.of("DescribeEndpoint") if r.status == 200)
    assert recorder.of("ListTags")[0].payload() == {"Tags": []}
    jobs_described = {r.payload()["TrainingJobName"]: r.payload() for r in recorder.of("DescribeTrainingJob")}
    crashed, done = jobs_described["shapes-crash"], jobs_described["shapes-done"]
    assert crashed["ModelArtifacts"] == {"S3ModelArtifacts": "s3://shapes/jobs/shapes-crash/output/model.tar.gz"}
    assert "FinalMetricDataList" not in crashed and done["FinalMetricDataList"][0]["Value"] == 0.5
    assert "MetricDefinitions" not in done["AlgorithmSpecification"]
    _sagemaker_core_reads(recorder)


def _sagemaker_core_reads(recorder: Recorder) -> None:
    """The SDK v3 builds its resources from these answers with pydantic; each must build."""
    resources = pytest.importorskip("sagemaker_core.main.resources")
    codec = pytest.importorskip("sagemaker_core.main.code_injection.codec")
    parser = botocore.parsers.create_parser("json")
    kinds = {"DescribeModel": resources.Model, "DescribeEndpointConfig": resources.EndpointConfig,
             "DescribeEndpoint": resources.Endpoint, "DescribeTrainingJob": resources.TrainingJob}
    built = 0
    for operation, resource in kinds.items():
        for answer in recorder.of(operation):
            if answer.status == 200:
                parsed = parser.parse({"body": answer.body, "headers": answer.headers, "status_code": 200},
                                      answer.operation.output_shape)
                resource(**codec.transform(parsed, answer.operation.output_shape.name))
                built += 1
    assert built >= len(kinds)
