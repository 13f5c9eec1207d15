"""localmaker: rehearse SageMaker real-time deployments locally, with real models and no AWS account."""

from __future__ import annotations

from typing import Any

from localmaker.errors import (
    ArtifactError,
    ConfigurationError,
    DeploymentError,
    LocalmakerError,
    ModelError,
    TrainingError,
)

__version__ = "0.1.0"

_LAZY = {"Session", "Model", "Estimator", "FakePredictor"}


def __getattr__(name: str) -> Any:
    # The deploy layer pulls in boto3 and moto; instance processes import localmaker without them.
    if name in _LAZY:
        from localmaker import deploy

        return getattr(deploy, name)
    raise AttributeError(f"module 'localmaker' has no attribute {name!r}")


__all__ = ["ArtifactError", "ConfigurationError", "DeploymentError", "Estimator", "FakePredictor",
           "LocalmakerError", "Model", "ModelError", "Session", "TrainingError", "__version__"]
