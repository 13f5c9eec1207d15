"""The DLC image URIs real SageMaker needs: the right account, domain, version, Python and processor."""

from __future__ import annotations

import os

import pytest

from localmaker import ConfigurationError
from localmaker.spec.container_images import default_image, training_image, unsupported_image_reason
from localmaker.spec.image_uris import (
    DEFAULT_PYTORCH_VERSION,
    huggingface_inference_uri,
    known_regions,
    pytorch_inference_uri,
    pytorch_training_uri,
    registry,
)
from localmaker.spec.instance_types import CATALOGUE

G5 = CATALOGUE["ml.g5.xlarge"]
M5 = CATALOGUE["ml.m5.xlarge"]


@pytest.mark.parametrize(("region", "account"), [
    ("us-east-1", "763104351884"), ("eu-west-1", "763104351884"), ("ap-southeast-2", "763104351884"),
    ("ap-east-1", "871362719292"), ("me-south-1", "217643126080"), ("af-south-1", "626614931356"),
    ("eu-south-1", "692866216735"), ("us-gov-west-1", "442386744353"),
])
def test_each_region_uses_its_dlc_account(region, account):
    assert registry(region) == f"{account}.dkr.ecr.{region}.amazonaws.com"


@pytest.mark.parametrize("region", ["cn-north-1", "cn-northwest-1"])
def test_china_regions_use_their_own_account_and_domain(region):
    assert pytorch_inference_uri(region, "2.6.0", gpu=True) == (
        f"727897471807.dkr.ecr.{region}.amazonaws.com.cn/pytorch-inference:2.6.0-gpu-py312")


def test_pytorch_inference_gpu_and_cpu_tags():
    assert pytorch_inference_uri("eu-west-1", "2.3.0", gpu=True) == (
        "763104351884.dkr.ecr.eu-west-1.amazonaws.com/pytorch-inference:2.3.0-gpu-py311")
    assert pytorch_inference_uri("eu-west-1", "2.3.0", gpu=False) == (
        "763104351884.dkr.ecr.eu-west-1.amazonaws.com/pytorch-inference:2.3.0-cpu-py311")
    assert pytorch_inference_uri("us-east-1", "2.1.0", "py310").endswith("pytorch-inference:2.1.0-cpu-py310")


def test_a_minor_version_means_its_newest_patch():
    assert pytorch_inference_uri("us-east-1", "2.5").endswith(":2.5.1-cpu-py311")
    assert pytorch_inference_uri("us-east-1", "2.0").endswith(":2.0.1-cpu-py310")
    assert huggingface_inference_uri("us-east-1", "4.51").endswith(":2.6.0-transformers4.51.3-cpu-py312-ubuntu22.04")


def test_hugging_face_tags_name_transformers_cuda_and_os():
    assert huggingface_inference_uri("us-west-2", "4.51.3", "2.6.0", gpu=True) == (
        "763104351884.dkr.ecr.us-west-2.amazonaws.com/huggingface-pytorch-inference:"
        "2.6.0-transformers4.51.3-gpu-py312-cu124-ubuntu22.04")
    assert huggingface_inference_uri("ap-east-1", "4.37.0", gpu=False) == (
        "871362719292.dkr.ecr.ap-east-1.amazonaws.com/huggingface-pytorch-inference:"
        "2.1.0-transformers4.37.0-cpu-py310-ubuntu22.04")
    assert huggingface_inference_uri("ap-east-1", "4.37.0", gpu=True).endswith("-gpu-py310-cu118-ubuntu20.04")


def test_training_images_have_their_own_repository_and_newer_versions():
    assert pytorch_training_uri("ap-east-1", "2.8", gpu=True) == (
        "871362719292.dkr.ecr.ap-east-1.amazonaws.com/pytorch-training:2.8.0-gpu-py312")
    with pytest.raises(ConfigurationError, match="supported: 2.0.0"):
        pytorch_inference_uri("us-east-1", "2.8")  # no inference DLC for 2.8


@pytest.mark.parametrize("region", ["eu-wets-1", "us-east-7", "", "us-iso-east-1"])
def test_an_unknown_region_is_named_with_the_known_ones(region):
    with pytest.raises(ConfigurationError, match="known regions: af-south-1") as caught:
        pytorch_inference_uri(region)
    assert repr(region) in str(caught.value) and "image_uri" in str(caught.value)


def test_unsupported_versions_list_the_supported_ones():
    with pytest.raises(ConfigurationError, match=r"'1.13.1'.*supported: 2.0.0, 2.0.1, 2.1.0"):
        pytorch_inference_uri("us-east-1", "1.13.1")
    with pytest.raises(ConfigurationError, match="transformers version '4.99'"):
        huggingface_inference_uri("us-east-1", "4.99")
    with pytest.raises(ConfigurationError, match=r"PyTorch with transformers 4.51.3 version '2.3'.*supported: 2.6.0"):
        huggingface_inference_uri("us-east-1", "4.51.3", "2.3")


def test_a_python_version_the_image_was_not_built_for_is_refused():
    with pytest.raises(ConfigurationError, match="built for py312 only, not 'py311'"):
        pytorch_inference_uri("us-east-1", "2.6.0", "py311")
    with pytest.raises(ConfigurationError, match="built for py310 only"):
        huggingface_inference_uri("us-east-1", "4.28.1", py_version="py39")


def test_regions_without_a_hugging_face_dlc_say_so():
    assert pytorch_inference_uri("mx-central-1").startswith("637423239942.dkr.ecr.mx-central-1.amazonaws.com/")
    with pytest.raises(ConfigurationError, match="no Hugging Face inference DLC in mx-central-1"):
        huggingface_inference_uri("mx-central-1", "4.51.3")


def test_default_image_picks_processor_by_instance_type_and_framework_by_arguments():
    assert default_image("eu-west-1", G5) == pytorch_inference_uri("eu-west-1", DEFAULT_PYTORCH_VERSION, gpu=True)
    assert default_image("eu-west-1", M5).endswith(f"pytorch-inference:{DEFAULT_PYTORCH_VERSION}-cpu-py312")
    assert default_image("eu-west-1", G5, framework_version="2.3").endswith("pytorch-inference:2.3.0-gpu-py311")
    assert default_image("ap-east-1", G5, transformers_version="4.48") == (
        "871362719292.dkr.ecr.ap-east-1.amazonaws.com/huggingface-pytorch-inference:"
        "2.3.0-transformers4.48.0-gpu-py311-cu121-ubuntu22.04")
    assert training_image("me-south-1", G5) == (
        f"217643126080.dkr.ecr.me-south-1.amazonaws.com/pytorch-training:{DEFAULT_PYTORCH_VERSION}-gpu-py312")
    # Every image deploy() can pick is one the local control plane knows how to simulate.
    for image in (default_image("us-east-1", G5), default_image("us-east-1", M5, transformers_version="4.51")):
        assert unsupported_image_reason(image) is None


def _sdk_image_uris():
    os.environ.setdefault("SAGEMAKER_SUPPRESS_V2_WARNING", "1")
    return pytest.importorskip("sagemaker.image_uris", reason="the SageMaker SDK (a dev extra) is not installed")


# A few regions that cover the shared account, opt-in accounts, China's domain and GovCloud.
_SAMPLE_REGIONS = ("eu-west-1", "ap-east-1", "cn-north-1", "us-gov-west-1")


def test_our_accounts_and_python_versions_match_the_sagemaker_sdk_config():
    sdk = _sdk_image_uris()
    for scope, ours in (("inference", pytorch_inference_uri), ("training", pytorch_training_uri)):
        published = sdk.config_for_framework("pytorch")[scope]["versions"]
        compared = 0
        for version, facts in published.items():
            try:
                uri = ours("us-east-1", version)
            except ConfigurationError:
                continue  # a version we do not offer (1.x, or one newer than our table)
            compared += 1
            assert uri.endswith(f":{version}-cpu-{facts['py_versions'][0]}"), (scope, version)
            for region in known_regions():
                if region in facts["registries"]:
                    assert registry(region).split(".", 1)[0] == facts["registries"][region], (scope, version, region)
        assert compared >= 8, f"the SDK lists only {compared} of our {scope} versions"


@pytest.mark.parametrize("version", ["2.1.0", "2.6.0"])
def test_pytorch_uris_match_the_sagemaker_sdk(version):
    sdk = _sdk_image_uris()
    for region in _SAMPLE_REGIONS:
        for instance_type, gpu in (("ml.g5.xlarge", True), ("ml.m5.xlarge", False)):
            for scope, ours in (("inference", pytorch_inference_uri), ("training", pytorch_training_uri)):
                expected = sdk.retrieve("pytorch", region=region, version=version, instance_type=instance_type,
                                        image_scope=scope, py_version=ours(region, version).rsplit("-", 1)[-1])
                assert ours(region, version, gpu=gpu) == expected, (region, scope, instance_type)


@pytest.mark.parametrize(("transformers", "pytorch"), [("4.37.0", "2.1.0"), ("4.48.0", "2.3.0"), ("4.51.3", "2.6.0")])
def test_hugging_face_uris_match_the_sagemaker_sdk(transformers, pytorch):
    sdk = _sdk_image_uris()
    for region in _SAMPLE_REGIONS:
        for instance_type, gpu in (("ml.g5.xlarge", True), ("ml.m5.xlarge", False)):
            ours = huggingface_inference_uri(region, transformers, pytorch, gpu=gpu)
            py_version = ours.split("-")[-3] if gpu else ours.split("-")[-2]
            expected = sdk.retrieve("huggingface", region=region, version=transformers,
                                    base_framework_version=f"pytorch{pytorch}", py_version=py_version,
                                    instance_type=instance_type, image_scope="inference")
            assert ours == expected, (region, instance_type)
