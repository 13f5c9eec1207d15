"""The client and the control plane: Session, Model, Estimator, FakePredictor."""

from localmaker.deploy.estimator import Estimator
from localmaker.deploy.model import Model
from localmaker.deploy.predictor import FakePredictor
from localmaker.deploy.session import Session

__all__ = ["Estimator", "FakePredictor", "Model", "Session"]
