"""Estimator: the SDK's training-side object. With ``model_data`` it deploys a finished model."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from localmaker.deploy.deserializers import BaseDeserializer
from localmaker.deploy.instance_types import lookup
from localmaker.deploy.model import Model
from localmaker.deploy.predictor import FakePredictor
from localmaker.deploy.serializers import BaseSerializer
from localmaker.deploy.session import Session
from localmaker.deploy.validation import check_instance_count, check_role
from localmaker.errors import ConfigurationError


class Estimator:
    """Created with ``model_data``, it skips training the way attaching a finished training job does."""

    def __init__(self, entry_point: str, role: str | None = None, instance_type: str | None = None,
                 instance_count: int = 1, source_dir: str | Path | None = None,
                 model_data: str | Path | None = None, hyperparameters: dict[str, Any] | None = None,
                 output_path: str | None = None, env: dict[str, str] | None = None,
                 sagemaker_session: Session | None = None) -> None:
        self.role = check_role(role)
        if instance_type is None:
            raise ConfigurationError("instance_type is required, e.g. 'ml.g5.xlarge'")
        self.instance_type = lookup(instance_type).name
        self.instance_count = check_instance_count(instance_count)
        self.entry_point = entry_point
        self.source_dir = source_dir
        self.model_data = model_data
        self.hyperparameters = dict(hyperparameters or {})
        self.output_path = output_path
        self.env = dict(env or {})
        self.sagemaker_session = sagemaker_session or Session()
        self._model: Model | None = None
        if model_data is not None:
            self._model = self.create_model()

    def create_model(self) -> Model:
        if self.model_data is None:
            raise ConfigurationError("this Estimator has no model_data: pass model_data=... to deploy a "
                                     "finished model")
        return Model(model_data=self.model_data, role=self.role, entry_point=self.entry_point,
                     source_dir=self.source_dir, env=self.env, sagemaker_session=self.sagemaker_session)

    def deploy(self, initial_instance_count: int = 1, instance_type: str | None = None,
               serializer: BaseSerializer | None = None, deserializer: BaseDeserializer | None = None,
               endpoint_name: str | None = None, **kwargs: Any) -> FakePredictor:
        model = self._model or self.create_model()
        return model.deploy(initial_instance_count=initial_instance_count,
                            instance_type=instance_type or self.instance_type, serializer=serializer,
                            deserializer=deserializer, endpoint_name=endpoint_name, **kwargs)
