"""The client a script imports: Session, Model, Estimator, FakePredictor (also as the SDK's name, Predictor),
and the other inference options' AsyncPredictor, ServerlessInferenceConfig and Transformer.

The control plane is imported only when a Session starts one, so a script that attaches to ``localmaker up``
or targets AWS never loads moto.
"""

from localmaker.deploy.async_inference import (
    AsyncInferenceConfig,
    AsyncInferenceResponse,
    AsyncPredictor,
    WaiterConfig,
)
from localmaker.deploy.estimator import Estimator
from localmaker.deploy.model import Model
from localmaker.deploy.predictor import FakePredictor
from localmaker.deploy.serverless import ServerlessInferenceConfig
from localmaker.deploy.session import Session
from localmaker.deploy.transformer import Transformer

Predictor = FakePredictor

__all__ = ["AsyncInferenceConfig", "AsyncInferenceResponse", "AsyncPredictor", "WaiterConfig", "Estimator",
           "FakePredictor", "Model", "Predictor", "ServerlessInferenceConfig", "Session",
           "Transformer"]
