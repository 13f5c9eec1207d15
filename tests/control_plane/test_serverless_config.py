"""ServerlessConfig at CreateEndpointConfig: AWS's bounds, refused in AWS's words; the memory a model needs.

Values below a member's minimum never leave botocore (it checks ``min`` itself), so the refusals here are
those the service has to make: above the maximum, off the 1 GB steps, and the combinations AWS forbids.
"""

from __future__ import annotations

from pathlib import Path

import pytest
from botocore.exceptions import ClientError

from localmaker.control_plane.serverless_config import ServerlessConfig, check_model_fits, model_size_bytes
from localmaker.control_plane.settings import ControlPlaneSettings
from localmaker.deploy import ServerlessInferenceConfig, Session
from localmaker.errors import ConfigurationError
from localmaker.spec.names import PLACEHOLDER_ROLE

PATH = "productionVariants.1.member.serverlessConfig"


@pytest.fixture(scope="module")
def sagemaker(tmp_path_factory):
    with Session(work_root=tmp_path_factory.mktemp("serverless-config")) as embedded:
        client = embedded.sagemaker_client
        client.create_model(ModelName="lean", ExecutionRoleArn=PLACEHOLDER_ROLE,
                            PrimaryContainer={"Image": "x/pytorch-inference:2", "ModelDataUrl": "s3://b/k"})
        yield client


def _refusal(client, variant: dict, more: list[dict] | None = None) -> str:
    with pytest.raises(ClientError) as raised:
        client.create_endpoint_config(EndpointConfigName="refused", ProductionVariants=[
            {"VariantName": "A", "ModelName": "lean", **variant}, *(more or [])])
    error = raised.value.response["Error"]
    assert error["Code"] == "ValidationException"
    assert raised.value.response["ResponseMetadata"]["HTTPStatusCode"] == 400
    names = [c["EndpointConfigName"] for c in client.list_endpoint_configs()["EndpointConfigs"]]
    assert "refused" not in names, "a refused config must not be recorded"
    return str(error["Message"])


@pytest.mark.parametrize("memory", [1500, 8192, 1023 + 1024])
def test_memory_off_the_1_gb_steps_is_refused_with_the_steps(sagemaker, memory):
    message = _refusal(sagemaker, {"ServerlessConfig": {"MemorySizeInMB": memory, "MaxConcurrency": 1}})
    assert message == (f"1 validation error detected: Value '{memory}' at '{PATH}.memorySizeInMB' failed to "
                       "satisfy constraint: Member must satisfy enum value set: [1024, 2048, 3072, 4096, 5120, 6144]")


def test_concurrency_bounds_are_refused_as_aws_words_them(sagemaker):
    message = _refusal(sagemaker, {"ServerlessConfig": {"MemorySizeInMB": 1024, "MaxConcurrency": 201}})
    assert message == (f"1 validation error detected: Value '201' at '{PATH}.maxConcurrency' failed to satisfy "
                       "constraint: Member must have value less than or equal to 200")
    message = _refusal(sagemaker, {"ServerlessConfig": {"MemorySizeInMB": 1024, "MaxConcurrency": 200,
                                                        "ProvisionedConcurrency": 201}})
    assert f"'{PATH}.provisionedConcurrency'" in message and "less than or equal to 200" in message
    message = _refusal(sagemaker, {"ServerlessConfig": {"MemorySizeInMB": 1024, "MaxConcurrency": 2,
                                                        "ProvisionedConcurrency": 3}})
    assert message == ("ProvisionedConcurrency (3) of variant 'A' must be less than or equal to "
                       "MaxConcurrency (2)")


def test_gpus_and_instance_types_are_refused_next_to_a_serverless_config(sagemaker):
    serverless = {"ServerlessConfig": {"MemorySizeInMB": 2048, "MaxConcurrency": 1}}
    message = _refusal(sagemaker, {**serverless, "InstanceType": "ml.g5.xlarge", "InitialInstanceCount": 1})
    assert message.startswith("Serverless Inference does not support GPUs: variant 'A' asks for ml.g5.xlarge")
    message = _refusal(sagemaker, {**serverless, "AcceleratorType": "ml.eia2.medium"})
    assert "does not support GPUs" in message and "ml.eia2.medium" in message
    message = _refusal(sagemaker, {**serverless, "InstanceType": "ml.m5.large", "InitialInstanceCount": 1})
    assert "specifies both InstanceType and ServerlessConfig" in message
    message = _refusal(sagemaker, serverless, [{"VariantName": "B", "ModelName": "lean", **serverless}])
    assert message.startswith("Serverless endpoints support a single production variant")


def test_a_valid_config_is_recorded_as_sent(sagemaker):
    config = {"MemorySizeInMB": 3072, "MaxConcurrency": 4, "ProvisionedConcurrency": 2}
    sagemaker.create_endpoint_config(EndpointConfigName="fine", ProductionVariants=[
        {"VariantName": "A", "ModelName": "lean", "ServerlessConfig": config}])
    variant = sagemaker.describe_endpoint_config(EndpointConfigName="fine")["ProductionVariants"][0]
    assert variant["ServerlessConfig"] == config and "InstanceType" not in variant
    sagemaker.delete_endpoint_config(EndpointConfigName="fine")


def test_the_model_must_fit_in_the_memory_size(tmp_path: Path):
    (tmp_path / "code").mkdir()
    (tmp_path / "code" / "inference.py").write_bytes(b"x" * 4096)  # code is not weights
    with open(tmp_path / "weights.bin", "wb") as weights:
        weights.truncate(1024 * 1024 * 1024 + 1)  # sparse: one byte over 1 GB without writing it
    assert model_size_bytes(tmp_path) == 1024 * 1024 * 1024 + 1
    with pytest.raises(MemoryError, match="Memory size is insufficient to load the model: its unpacked weights "
                                          "take 1024 MB, more than the MemorySizeInMB of 1024 MB"):
        check_model_fits(tmp_path, ServerlessConfig(1024, 1))
    check_model_fits(tmp_path, ServerlessConfig(2048, 1))


def test_the_client_config_mirrors_the_sdk_and_checks_up_front():
    config = ServerlessInferenceConfig()
    assert config._to_request_dict() == {"MemorySizeInMB": 2048, "MaxConcurrency": 5}  # the SDK's defaults
    assert ServerlessInferenceConfig(1024, 3, 2)._to_request_dict() == {
        "MemorySizeInMB": 1024, "MaxConcurrency": 3, "ProvisionedConcurrency": 2}
    for bad in ({"memory_size_in_mb": 1000}, {"max_concurrency": 0}, {"max_concurrency": 201},
                {"max_concurrency": 2, "provisioned_concurrency": 3}):
        with pytest.raises(ConfigurationError):
            ServerlessInferenceConfig(**bad)  # type: ignore[arg-type]


def test_the_idle_period_is_read_from_the_environment_and_checked():
    assert ControlPlaneSettings().serverless_idle_s == 300.0
    assert ControlPlaneSettings.from_env({"LOCALMAKER_SERVERLESS_IDLE_S": "2.5"}).serverless_idle_s == 2.5
    for bad in ("soon", "0"):
        with pytest.raises(ConfigurationError, match="LOCALMAKER_SERVERLESS_IDLE_S"):
            ControlPlaneSettings.from_env({"LOCALMAKER_SERVERLESS_IDLE_S": bad})
