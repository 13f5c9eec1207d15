"""Pieces of the control plane that need no instance: the type ledger, images, placement, errors."""

from __future__ import annotations

import http.client
import json

import pytest
from botocore.exceptions import ClientError

from localmaker import DeploymentError, ModelError
from localmaker.control_plane.placement import place
from localmaker.control_plane.server import ControlPlane
from localmaker.deploy import Session
from localmaker.model.artifact import pack_handler
from localmaker.spec.container_images import default_image, unsupported_image_reason
from localmaker.spec.instance_types import CATALOGUE
from localmaker.spec.names import PLACEHOLDER_ROLE

ROLE = PLACEHOLDER_ROLE


@pytest.fixture(scope="module")
def session(tmp_path_factory):
    with Session(work_root=tmp_path_factory.mktemp("cp")) as embedded:
        yield embedded


def test_instance_types_moto_does_not_know_are_recorded_and_described_faithfully(session):
    client = session.sagemaker_client
    client.create_model(ModelName="m", ExecutionRoleArn=ROLE,
                        PrimaryContainer={"Image": "x/pytorch-inference:2", "ModelDataUrl": "s3://b/k"})
    client.create_endpoint_config(EndpointConfigName="c", ProductionVariants=[
        {"VariantName": "AllTraffic", "ModelName": "m", "InitialInstanceCount": 1, "InstanceType": "ml.g6e.xlarge"}])
    variant = client.describe_endpoint_config(EndpointConfigName="c")["ProductionVariants"][0]
    assert variant["InstanceType"] == "ml.g6e.xlarge"
    with pytest.raises(ClientError) as caught:
        client.create_endpoint_config(EndpointConfigName="bad", ProductionVariants=[
            {"VariantName": "A", "ModelName": "m", "InitialInstanceCount": 1, "InstanceType": "ml.g9.tiny"}])
    assert caught.value.response["Error"]["Code"] == "ValidationException"
    assert "unknown instance_type 'ml.g9.tiny'" in caught.value.response["Error"]["Message"]
    client.delete_endpoint_config(EndpointConfigName="c")
    client.delete_model(ModelName="m")


def test_endpoint_with_a_missing_artifact_fails_with_the_reason(session):
    client = session.sagemaker_client
    client.create_model(ModelName="ghost", ExecutionRoleArn=ROLE, PrimaryContainer={
        "Image": default_image("us-east-1", CATALOGUE["ml.m5.large"]), "ModelDataUrl": "s3://nowhere/model.tar.gz"})
    client.create_endpoint_config(EndpointConfigName="ghost", ProductionVariants=[
        {"VariantName": "AllTraffic", "ModelName": "ghost", "InitialInstanceCount": 1, "InstanceType": "ml.m5.large"}])
    client.create_endpoint(EndpointName="ghost", EndpointConfigName="ghost")
    with pytest.raises(DeploymentError, match="failed to start"):
        session.wait_for_endpoint("ghost", timeout_s=30)
    described = client.describe_endpoint(EndpointName="ghost")
    assert described["EndpointStatus"] == "Failed"
    assert described["FailureReason"]
    with pytest.raises(ClientError) as caught:
        client.create_endpoint(EndpointName="ghost", EndpointConfigName="ghost")
    assert "already existing" in caught.value.response["Error"]["Message"]
    client.delete_endpoint(EndpointName="ghost")
    client.delete_endpoint_config(EndpointConfigName="ghost")
    client.delete_model(ModelName="ghost")


def test_bring_your_own_container_images_are_named_as_unsupported():
    assert unsupported_image_reason(default_image("eu-west-1", CATALOGUE["ml.g5.xlarge"])) is None
    assert unsupported_image_reason(
        "763104351884.dkr.ecr.us-east-1.amazonaws.com/huggingface-pytorch-inference:2.1-gpu") is None
    reason = unsupported_image_reason("123456789012.dkr.ecr.us-east-1.amazonaws.com/my-server:latest")
    assert reason is not None and "bring-your-own" in reason and "Docker" in reason


def test_placement_hides_gpus_from_cpu_types_and_spreads_gpu_instances():
    cpu = place(CATALOGUE["ml.m5.xlarge"], 0, gpu_count=2)
    assert cpu.device == "cpu" and cpu.environment["CUDA_VISIBLE_DEVICES"] == ""
    assert [place(CATALOGUE["ml.g5.xlarge"], i, gpu_count=2).device for i in range(3)] == [
        "cuda:0", "cuda:1", "cuda:0"]
    assert place(CATALOGUE["ml.g5.xlarge"], 0, gpu_count=0).device == "cpu"


def test_invoking_an_unknown_endpoint_is_a_validation_error(session):
    with pytest.raises(ClientError) as caught:
        session.sagemaker_runtime_client.invoke_endpoint(EndpointName="missing", Body=b"{}")
    assert caught.value.response["Error"]["Code"] == "ValidationError"


def test_model_error_message_mirrors_botocore():
    error = ModelError(415, "use application/json", "e1")
    assert error.original_status_code == 415
    assert "Received client error (415) from endpoint 'e1'" in str(error)
    assert "server error (500)" in str(ModelError(500, "boom"))


# A SigV4 Authorization header in form: an unsigned call is answered MissingAuthenticationToken, as AWS does.
SIGNED = ("AWS4-HMAC-SHA256 Credential=testing/20260101/us-east-1/sagemaker/aws4_request, "
          "SignedHeaders=host, Signature=0")


def _post(url: str, body: bytes, headers: dict[str, str]) -> tuple[int, dict]:
    """One raw HTTP request, as a client other than botocore might send it."""
    host, port = url.removeprefix("http://").rsplit(":", 1)
    connection = http.client.HTTPConnection(host.strip("[]"), int(port), timeout=10)
    try:
        connection.putrequest("POST", "/", skip_accept_encoding=True)
        for name, value in headers.items():
            connection.putheader(name, value)
        if "Content-Length" not in headers:
            connection.putheader("Content-Length", str(len(body)))
        connection.endheaders(body)
        answer = connection.getresponse()
        return answer.status, json.loads(answer.read() or b"{}")
    finally:
        connection.close()


@pytest.mark.parametrize("weight", [float("nan"), float("inf")])
def test_a_variant_weight_that_is_not_a_finite_share_is_refused(session, weight):
    client = session.sagemaker_client
    with pytest.raises(ClientError, match="InitialVariantWeight must be a finite number of at least 0"):
        client.create_endpoint_config(EndpointConfigName="weights", ProductionVariants=[
            {"VariantName": "A", "ModelName": "m", "InitialInstanceCount": 1, "InstanceType": "ml.m5.large",
             "InitialVariantWeight": weight}])
    with pytest.raises(ClientError, match="DesiredWeight must be a finite number of at least 0"):
        client.update_endpoint_weights_and_capacities(EndpointName="any", DesiredWeightsAndCapacities=[
            {"VariantName": "A", "DesiredWeight": weight}])


def test_a_negative_weight_or_a_count_that_is_no_number_is_refused_from_any_client(session):
    # botocore checks these bounds itself; another client need not, so the control plane does too.
    target = {"Content-Type": "application/x-amz-json-1.1", "Authorization": SIGNED}
    config = json.dumps({"EndpointConfigName": "raw", "ProductionVariants": [
        {"VariantName": "A", "ModelName": "m", "InstanceType": "ml.m5.large", "InitialInstanceCount": 1,
         "InitialVariantWeight": -1}]}).encode()
    status, error = _post(session.endpoint_url, config, {**target, "X-Amz-Target": "SageMaker.CreateEndpointConfig"})
    assert status == 400 and "InitialVariantWeight must be a finite number of at least 0" in error["message"]
    capacities = json.dumps({"EndpointName": "any", "DesiredWeightsAndCapacities": [
        {"VariantName": "A", "DesiredInstanceCount": "two"}]}).encode()
    status, error = _post(session.endpoint_url, capacities,
                          {**target, "X-Amz-Target": "SageMaker.UpdateEndpointWeightsAndCapacities"})
    assert status == 400 and "DesiredInstanceCount must be a number" in error["message"]


def test_malformed_api_bodies_are_400s_and_the_control_plane_serves_on(session):
    url = session.endpoint_url
    target = {"X-Amz-Target": "SageMaker.CreateEndpoint", "Content-Type": "application/x-amz-json-1.1",
              "Authorization": SIGNED}
    for body in (b"[]", b"null", b"42"):
        status, error = _post(url, body, {**target, "Content-Length": str(len(body))})
        assert (status, error["__type"]) == (400, "SerializationException"), body
        assert "must be a JSON object" in error["message"]
    for length in ("abc", "-1", "1e3"):
        status, error = _post(url, b"{}", {**target, "Content-Length": length})
        assert status == 400 and "not a byte count" in error["message"], length
    assert isinstance(session.sagemaker_client.list_endpoints()["Endpoints"], list)


def test_a_control_plane_on_ipv6_loopback_is_reachable_at_its_url(tmp_path):
    plane = ControlPlane(host="::1", work_root=tmp_path / "v6").start()
    try:
        assert plane.url.startswith("http://[::1]:")
        # moto's records are shared by every control plane in this process: only the call's success counts.
        assert isinstance(plane.client("sagemaker").list_endpoints()["Endpoints"], list)
    finally:
        plane.stop()


def test_an_instance_that_cannot_start_fails_the_endpoint_and_leaves_no_instance_behind(session, tmp_path):
    archive = pack_handler("def model_fn(model_dir):\n    return None\n", tmp_path / "stub.tar.gz")
    url = session.upload_file(archive, "stub/model.tar.gz")
    client = session.sagemaker_client
    client.create_model(ModelName="misconfigured", ExecutionRoleArn=ROLE, PrimaryContainer={
        "Image": "x/pytorch-inference:2", "ModelDataUrl": url,
        "Environment": {"SAGEMAKER_MODEL_SERVER_WORKERS": "many"}})
    client.create_endpoint_config(EndpointConfigName="misconfigured", ProductionVariants=[
        {"VariantName": "A", "ModelName": "misconfigured", "InitialInstanceCount": 2, "InstanceType": "ml.m5.large"}])
    client.create_endpoint(EndpointName="misconfigured", EndpointConfigName="misconfigured")
    with pytest.raises(DeploymentError, match="SAGEMAKER_MODEL_SERVER_WORKERS"):
        session.wait_for_endpoint("misconfigured", timeout_s=60)
    assert session.local_endpoint("misconfigured").instances == ()
    client.delete_endpoint(EndpointName="misconfigured")
