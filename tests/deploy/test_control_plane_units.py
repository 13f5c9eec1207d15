"""Pieces of the control plane that need no instance: the type ledger, images, placement, errors."""

from __future__ import annotations

import pytest
from botocore.exceptions import ClientError

from localmaker import ModelError
from localmaker.deploy import Session
from localmaker.deploy.images import default_image, unsupported_image_reason
from localmaker.deploy.instance_types import CATALOGUE
from localmaker.deploy.placement import place

ROLE = "arn:aws:iam::111122223333:role/SageMakerRole"


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
    with pytest.raises(Exception, match="failed to start"):
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
    reason = unsupported_image_reason("111122223333.dkr.ecr.us-east-1.amazonaws.com/my-server:latest")
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
