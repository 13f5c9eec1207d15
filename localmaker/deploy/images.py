"""Which container images localmaker can stand in for.

It simulates SageMaker's PyTorch and Hugging Face inference containers. A bring-your-own image holds
code localmaker cannot run without Docker, so such an endpoint fails with a reason that says so.
"""

from __future__ import annotations

from localmaker.deploy.instance_types import InstanceType

_DLC_ACCOUNT = "763104351884"
_FRAMEWORK_REPOSITORIES = ("pytorch-inference", "huggingface-pytorch-inference", "pytorch-training",
                           "huggingface-pytorch-training", "localmaker")


def default_image(region: str, instance_type: InstanceType) -> str:
    """The PyTorch inference DLC the SageMaker SDK would pick for this instance type."""
    flavour = "gpu-py311-cu121" if instance_type.has_gpu else "cpu-py311"
    return f"{_DLC_ACCOUNT}.dkr.ecr.{region}.amazonaws.com/pytorch-inference:2.3.0-{flavour}"


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
    flavour = "gpu-py311-cu121" if instance_type.has_gpu else "cpu-py311"
    return f"{_DLC_ACCOUNT}.dkr.ecr.{region}.amazonaws.com/pytorch-training:2.3.0-{flavour}"
