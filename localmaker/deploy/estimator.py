"""Estimator: the SDK's training-side object. ``fit()`` runs a training job, locally or (``target="aws"``)
in SageMaker; ``deploy()`` serves the result, or a finished ``model_data`` when training is skipped."""

from __future__ import annotations

import inspect
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any

from localmaker.deploy.async_inference import AsyncInferenceConfig
from localmaker.deploy.attached_job import describe_job, init_arguments, remove_with
from localmaker.deploy.cloud_training import follow_in_aws
from localmaker.deploy.deserializers import BaseDeserializer
from localmaker.deploy.model import Model
from localmaker.deploy.serializers import BaseSerializer
from localmaker.deploy.serverless import ServerlessInferenceConfig
from localmaker.deploy.session import Session
from localmaker.deploy.training_job import (
    BUILTIN_SCRIPTS,
    channels_from,
    follow,
    hyperparameters_for_job,
    upload_source,
)
from localmaker.deploy.validation import (
    check_instance_count,
    check_resource_name,
    check_role,
    name_from_base,
    refuse_unknown_keywords,
    refuse_unsupported,
)
from localmaker.errors import ConfigurationError
from localmaker.spec.container_images import training_image
from localmaker.spec.instance_types import lookup


class TrainingJobName(str):
    """The latest job's name. SDK v2 scripts read ``estimator.latest_training_job.name`` (or ``.job_name``), a
    ``_TrainingJob``'s; localmaker's callers use it as the string it is."""

    @property
    def name(self) -> str:
        return str(self)

    @property
    def job_name(self) -> str:
        return str(self)


class Estimator:
    """Runs ``entry_point`` as a SageMaker training job on the local control plane, or in SageMaker itself
    with a ``target="aws"`` session (the PyTorch training DLC, channels from S3).

    Created with ``model_data``, it skips training the way attaching a finished training job does.
    """

    def __init__(self, entry_point: str, role: str | None = None, instance_type: str | None = None,
                 instance_count: int = 1, source_dir: str | Path | None = None,
                 model_data: str | Path | None = None, hyperparameters: Mapping[str, Any] | None = None,
                 output_path: str | None = None, env: dict[str, str] | None = None,
                 max_run: int = 24 * 3600, base_job_name: str | None = None,
                 sagemaker_session: Session | None = None) -> None:
        self.role = check_role(role)
        if instance_type is None:
            raise ConfigurationError("instance_type is required, e.g. 'ml.g5.xlarge'")
        self.instance_type = lookup(instance_type).name
        self.instance_count = check_instance_count(instance_count)
        if instance_count != 1:
            raise ConfigurationError("localmaker runs single-instance training jobs: set instance_count=1")
        self.entry_point = entry_point
        self.source_dir = source_dir
        self.model_data = str(model_data) if model_data is not None else None
        self.hyperparameters = dict(hyperparameters or {})
        if output_path is not None and not output_path.startswith("s3://"):
            raise ConfigurationError(f"output_path {output_path!r} must be an s3:// URL")
        self.output_path = output_path
        self.env = dict(env or {})
        self.max_run = max_run
        self.base_job_name = base_job_name or Path(entry_point).stem.replace("_", "-")
        self.sagemaker_session = sagemaker_session or Session()
        self.latest_training_job: TrainingJobName | None = None
        self._model: Model | None = self.create_model() if model_data is not None else None

    @classmethod
    def attach(cls, training_job_name: str, sagemaker_session: Session | None = None,
               model_channel_name: str = "model") -> Estimator:
        """SDK v2's ``Estimator.attach``: an estimator for an existing training job, read back from
        DescribeTrainingJob. A job still running is waited for; a Failed one raises TrainingError; a
        Completed one sets ``model_data``, so ``deploy()`` serves it (a LoRA job's adapter on its base).
        ``model_channel_name`` is accepted for the SDK's signature: localmaker jobs take no model channel."""
        session = sagemaker_session or Session()
        description = describe_job(session, training_job_name)
        arguments = init_arguments(description, session)
        estimator = cls(sagemaker_session=session, **arguments)
        remove_with(estimator, arguments["source_dir"])
        estimator.latest_training_job = TrainingJobName(training_job_name)
        estimator.wait(logs=False)
        return estimator

    def fit(self, inputs: str | Mapping[str, str] | None = None, wait: bool = True, logs: bool = True,
            job_name: str | None = None) -> None:
        """Start a training job on ``inputs`` (``s3://`` or ``file://`` per channel) and, by default,
        follow it to the end; a Failed job raises TrainingError with its FailureReason."""
        session = self.sagemaker_session
        channels = channels_from(inputs)
        local_channels = sorted(name for name, uri in channels.items() if uri.startswith("file://"))
        if local_channels and not session.is_local:
            raise ConfigurationError(f"channel(s) {', '.join(local_channels)} are file:// paths, which exist only on "
                                     "this machine; SageMaker reads s3:// prefixes: upload the data first "
                                     "(aws s3 sync DIR s3://bucket/prefix) and pass that")
        job_name = check_resource_name(job_name or self._job_name(), "job_name")
        source_url = upload_source(session, job_name, self.entry_point, self.source_dir)
        output_path = self.output_path or f"s3://{session.default_bucket()}/"
        session.ensure_bucket(output_path.removeprefix("s3://").split("/", 1)[0])
        session.sagemaker_client.create_training_job(
            TrainingJobName=job_name,
            AlgorithmSpecification={"TrainingImage": training_image(session.region_name, lookup(self.instance_type)),
                                    "TrainingInputMode": "File"},
            RoleArn=self.role,
            InputDataConfig=[{"ChannelName": name, "DataSource": {"S3DataSource": {
                "S3DataType": "S3Prefix", "S3Uri": uri, "S3DataDistributionType": "FullyReplicated"}}}
                for name, uri in channels.items()],
            OutputDataConfig={"S3OutputPath": output_path},
            ResourceConfig={"InstanceType": self.instance_type, "InstanceCount": 1, "VolumeSizeInGB": 30},
            StoppingCondition={"MaxRuntimeInSeconds": self.max_run},
            HyperParameters=hyperparameters_for_job(self.hyperparameters, self.entry_point, source_url,
                                                    session.region_name, job_name),
            Environment=self.env,
        )
        self.latest_training_job = TrainingJobName(job_name)
        self._model = None
        if wait:
            self.wait(logs=logs)

    def wait(self, logs: bool = True) -> None:
        if self.latest_training_job is None:
            raise ConfigurationError("no training job to wait for: call fit() first")
        session = self.sagemaker_session
        follower = follow if session.is_local else follow_in_aws
        description = follower(session, self.latest_training_job, logs=logs)
        self.model_data = description["ModelArtifacts"]["S3ModelArtifacts"]

    def create_model(self, role: str | None = None, image_uri: str | None = None,
                     predictor_cls: Callable[[str, Session], Any] | None = None, **kwargs: Any) -> Model:
        """SDK v2's ``Estimator.create_model``: the trained artifact as a Model, served by this estimator's
        script; ``role`` and ``image_uri`` override the estimator's."""
        refuse_unknown_keywords("Estimator.create_model", kwargs, {"role", "image_uri", "predictor_cls"})
        if self.model_data is None:
            raise ConfigurationError("this Estimator has no model yet: call fit(), or pass model_data=... to "
                                     "deploy a finished model")
        return Model(model_data=self.model_data, role=role or self.role, entry_point=self._inference_entry_point(),
                     source_dir=self.source_dir if self._inference_entry_point() else None, env=self.env,
                     image_uri=image_uri, sagemaker_session=self.sagemaker_session, predictor_cls=predictor_cls)

    def deploy(self, initial_instance_count: int | None = None, instance_type: str | None = None,
               serializer: BaseSerializer | None = None, deserializer: BaseDeserializer | None = None,
               accelerator_type: str | None = None, endpoint_name: str | None = None,
               use_compiled_model: bool = False, wait: bool = True, model_name: str | None = None,
               kms_key: str | None = None, data_capture_config: Any = None,
               tags: Mapping[str, str] | list[dict[str, str]] | None = None,
               serverless_inference_config: ServerlessInferenceConfig | None = None,
               async_inference_config: AsyncInferenceConfig | None = None, volume_size: int | None = None,
               model_data_download_timeout: int | None = None,
               container_startup_health_check_timeout: int | None = None,
               inference_recommendation_id: str | None = None, explainer_config: Any = None,
               **kwargs: Any) -> Any:
        """Serve the trained model; a LoRA job's adapter is served on top of the base it names, and its
        predictor sends and reads JSON unless given a serializer and deserializer (model_data.py).

        The parameters are SDK v2's ``EstimatorBase.deploy``, in its order; ``**kwargs`` go to
        ``create_model()`` as in the SDK, and any other keyword is a TypeError naming the closest valid one.
        Without ``endpoint_name`` or ``model_name``, both are ``name_from_base(base_job_name)``: the training
        job's base name and a fresh timestamp, as the SDK names them.
        """
        deploy_keywords = {name for name in inspect.signature(Estimator.deploy).parameters} - {"self", "kwargs"}
        model_keywords = {"role", "image_uri", "predictor_cls"}
        if "update_endpoint" in kwargs:
            raise TypeError("Estimator.deploy() has no update_endpoint in SDK v2 (it was removed there); call "
                            "estimator.create_model().deploy(..., update_endpoint=True), or "
                            "predictor.update_endpoint(...)")
        refuse_unknown_keywords("Estimator.deploy", {k: v for k, v in kwargs.items() if k not in model_keywords},
                                deploy_keywords | model_keywords)
        refuse_unsupported("Estimator.deploy", {"use_compiled_model": use_compiled_model})
        if self.model_data is None:
            raise ConfigurationError("this Estimator has no model yet: call fit(), or pass model_data=...")
        default_name = name_from_base(self.base_job_name)
        options = dict(initial_instance_count=initial_instance_count,
                       instance_type=instance_type or self.instance_type, serializer=serializer,
                       deserializer=deserializer, accelerator_type=accelerator_type,
                       endpoint_name=endpoint_name or default_name, wait=wait, kms_key=kms_key,
                       data_capture_config=data_capture_config, tags=tags,
                       serverless_inference_config=serverless_inference_config,
                       async_inference_config=async_inference_config, volume_size=volume_size,
                       model_data_download_timeout=model_data_download_timeout,
                       container_startup_health_check_timeout=container_startup_health_check_timeout,
                       inference_recommendation_id=inference_recommendation_id, explainer_config=explainer_config)
        model = self.create_model(**kwargs) if kwargs or self._model is None else self._model
        self._model = model
        model.name = check_resource_name(model_name or default_name, "model_name")
        return model.deploy(**options)

    def _inference_entry_point(self) -> str | None:
        """The SDK serves with the estimator's own script; a built-in training script has no serving
        side, so the built-in inference code serves instead."""
        return None if self.entry_point in BUILTIN_SCRIPTS and self.source_dir is None else self.entry_point

    def _job_name(self) -> str:
        return name_from_base(self.base_job_name)
