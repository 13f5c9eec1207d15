"""Which container images a deployment names, and which of them localmaker can stand in for.

It simulates SageMaker's PyTorch and Hugging Face inference containers. A bring-your-own image holds
code localmaker cannot run without Docker, so such an endpoint fails with a reason that says so. The
URIs themselves are the real DLCs (``image_uris``), so the same request deploys on real SageMaker.
"""

from __future__ import annotations

from localmaker.spec.image_uris import (
    DEFAULT_PYTORCH_VERSION,
    huggingface_inference_uri,
    pytorch_inference_uri,
    pytorch_training_uri,
)
from localmaker.spec.instance_types import InstanceType

_FRAMEWORK_REPOSITORIES = ("pytorch-inference", "huggingface-pytorch-inference", "pytorch-training",
                           "huggingface-pytorch-training", "localmaker")


def default_image(region: str, instance_type: InstanceType, framework_version: str | None = None,
                  py_version: str | None = None, transformers_version: str | None = None) -> str:
    """The inference DLC the SageMaker SDK would pick: Hugging Face when ``transformers_version`` is
    given (``framework_version`` is then its PyTorch), else PyTorch; GPU or CPU by instance type."""
    if transformers_version is not None:
        return huggingface_inference_uri(region, transformers_version, framework_version, py_version,
                                         gpu=instance_type.has_gpu)
    return pytorch_inference_uri(region, framework_version or DEFAULT_PYTORCH_VERSION, py_version,
                                 gpu=instance_type.has_gpu)


def unsupported_image_reason(image: str) -> str | None:
    """None when localmaker can simulate ``image``; otherwise the FailureReason to report."""
    repository = image.rsplit("/", 1)[-1].split(":", 1)[0].split("@", 1)[0]
    if repository in _FRAMEWORK_REPOSITORIES:
        return None
    return (
        f"image {image!r} is a bring-your-own container, which localmaker cannot run without Docker; "
        f"it simulates the SageMaker framework containers ({', '.join(_FRAMEWORK_REPOSITORIES[:2])}): "
        "use one of those images with your inference.py in model.tar.gz/code/"
    )


def training_image(region: str, instance_type: InstanceType) -> str:
    """The PyTorch training DLC the SageMaker SDK would pick for this instance type."""
    return pytorch_training_uri(region, DEFAULT_PYTORCH_VERSION, gpu=instance_type.has_gpu)
