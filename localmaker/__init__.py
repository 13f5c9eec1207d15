"""localmaker: rehearse SageMaker deployments locally (real-time, async, streaming, batch transform and
serverless), with real models and no AWS account."""

from __future__ import annotations

import logging
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

# A library configures no handlers. Without one, Python's last-resort handler would print the embedded
# control plane's warnings and tracebacks into the user's console, between the lines deploy() prints;
# they go to the control plane's own log instead (logging_setup.add_file_log).
logging.getLogger(__name__).addHandler(logging.NullHandler())

_LAZY = {"Session", "Model", "Estimator", "FakePredictor", "Predictor", "ServerlessInferenceConfig",
         "AsyncInferenceConfig", "AsyncPredictor", "AsyncInferenceResponse", "WaiterConfig", "Transformer"}


def __getattr__(name: str) -> Any:
    # The client pulls in boto3; instance processes import localmaker without it.
    if name in _LAZY:
        from localmaker import deploy

        return getattr(deploy, name)
    raise AttributeError(f"module 'localmaker' has no attribute {name!r}")


__all__ = ["ArtifactError", "AsyncInferenceConfig", "AsyncInferenceResponse", "AsyncPredictor", "WaiterConfig",
           "ConfigurationError", "DeploymentError", "Estimator", "FakePredictor",
           "LocalmakerError", "Model", "ModelError", "Predictor", "ServerlessInferenceConfig", "Session",
           "TrainingError", "Transformer", "__version__"]
