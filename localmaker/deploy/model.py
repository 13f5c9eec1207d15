"""Model and its deploy(): the SageMaker SDK's flow, against the local control plane or real SageMaker."""

from __future__ import annotations

import inspect
import time
import uuid
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import TYPE_CHECKING, Any

from localmaker.deploy.async_inference import AsyncInferenceConfig, AsyncPredictor
from localmaker.deploy.deserializers import BaseDeserializer, JSONDeserializer
from localmaker.deploy.model_data import locate, stage
from localmaker.deploy.predictor import FakePredictor, check_endpoint_presence, confirm_update, start_update
from localmaker.deploy.serializers import BaseSerializer, JSONSerializer
from localmaker.deploy.serverless import SERVERLESS_IMAGE_TYPE, ServerlessInferenceConfig, describe_serverless
from localmaker.deploy.session import Session
from localmaker.deploy.validation import (
    check_instance_count,
    check_resource_name,
    check_role,
    name_from_base,
    refuse_unknown_keywords,
    refuse_unsupported,
    tag_list,
)
from localmaker.errors import ConfigurationError
from localmaker.spec.container_images import default_image
from localmaker.spec.instance_types import CATALOGUE, InstanceType, lookup
from localmaker.spec.names import CODE_FOLDER, DEFAULT_PROGRAM, SAGEMAKER_MODEL_DIR

if TYPE_CHECKING:
    from localmaker.deploy.transformer import Transformer

# Where the SDK points SAGEMAKER_SUBMIT_DIRECTORY for a repacked artifact: the code travels inside it.
REPACKED_CODE_DIR = f"{SAGEMAKER_MODEL_DIR}/{CODE_FOLDER}"
# sagemaker.enums.EndpointType.MODEL_BASED's value: the SDK's enum or this string both select it.
MODEL_BASED = "ModelBased"


class Model:
    """A model artifact plus the code that serves it.

    ``model_data`` is a named source ("minilm", "tiny-qwen3"), a model directory, a Hugging Face hub
    id found in the local cache, or a model.tar.gz (path, file:// or s3://). ``entry_point`` and
    ``source_dir`` put the user's own inference script into the artifact's ``code/``, as the SDK does.

    The image is the PyTorch inference DLC for the session's region (``framework_version``, default
    ``image_uris.DEFAULT_PYTORCH_VERSION``), or the Hugging Face one when ``transformers_version`` is
    given; ``image_uri`` names any other.

    ``deploy()`` returns ``predictor_cls(endpoint_name, sagemaker_session)`` as the SDK does, with the
    serializer and deserializer set on it; without ``predictor_cls`` it returns a FakePredictor (the SDK
    returns None there, which no rehearsal wants).
    """

    def __init__(self, model_data: str | Path, role: str | None = None, entry_point: str | None = None,
                 source_dir: str | Path | None = None, env: dict[str, str] | None = None,
                 name: str | None = None, image_uri: str | None = None,
                 sagemaker_session: Session | None = None, corpus: str | Path | None = None,
                 framework_version: str | None = None, py_version: str | None = None,
                 transformers_version: str | None = None,
                 predictor_cls: Callable[[str, Session], Any] | None = None) -> None:
        self.role = check_role(role)
        if predictor_cls is not None and not callable(predictor_cls):
            raise ConfigurationError(f"predictor_cls must be a class, such as sagemaker.predictor.Predictor or a "
                                     f"subclass of localmaker.FakePredictor, not {predictor_cls!r}")
        self.predictor_cls = predictor_cls
        self.entry_point = entry_point
        self.source_dir = Path(source_dir) if source_dir is not None else None
        if self.source_dir is not None:
            script = self.source_dir / (entry_point or DEFAULT_PROGRAM)
            if not script.is_file():
                raise ConfigurationError(f"entry_point {script} does not exist; "
                                         "pass the script's name relative to source_dir")
        elif entry_point is not None and Path(entry_point).name != DEFAULT_PROGRAM:
            raise ConfigurationError("entry_point other than inference.py needs source_dir, the folder "
                                     "that holds it")
        self.corpus = Path(corpus) if corpus is not None else None
        if self.corpus is not None and not self.corpus.is_file():
            raise ConfigurationError(f"corpus {self.corpus} does not exist")
        self.env = dict(env or {})
        self.image_uri = image_uri
        self.sagemaker_session = sagemaker_session or Session()
        self._image_versions = {"framework_version": framework_version, "py_version": py_version,
                                "transformers_version": transformers_version}
        if image_uri is None:  # an unknown region or version fails now, not after the upload
            self._image(CATALOGUE["ml.m5.large"])
        self._data = locate(model_data, self.sagemaker_session)
        self.name = check_resource_name(name, "name") if name else None
        self.endpoint_name: str | None = None

    def deploy(self, initial_instance_count: int | None = None, instance_type: str | None = None,
               serializer: BaseSerializer | None = None, deserializer: BaseDeserializer | None = None,
               accelerator_type: str | None = None, endpoint_name: str | None = None,
               tags: Mapping[str, str] | list[dict[str, str]] | None = None, kms_key: str | None = None,
               wait: bool = True, data_capture_config: Any = None,
               async_inference_config: AsyncInferenceConfig | None = None,
               serverless_inference_config: ServerlessInferenceConfig | None = None,
               volume_size: int | None = None, model_data_download_timeout: int | None = None,
               container_startup_health_check_timeout: int | None = None,
               inference_recommendation_id: str | None = None, explainer_config: Any = None,
               accept_eula: bool | None = None, endpoint_logging: bool = False, resources: Any = None,
               endpoint_type: Any = MODEL_BASED, managed_instance_scaling: Any = None,
               inference_component_name: str | None = None, routing_config: dict[str, Any] | None = None,
               model_reference_arn: str | None = None, inference_ami_version: str | None = None,
               update_endpoint: bool = False, **kwargs: Any) -> Any:
        """Create the model, endpoint config and endpoint, wait for InService, and return a predictor: a
        FakePredictor, a ``predictor_cls`` instance, or an AsyncPredictor around either (typed Any for that).

        The parameters are SDK v2's ``Model.deploy``, in its order. A keyword the SDK does not have is a
        TypeError naming the closest one; an SDK feature localmaker does not simulate is refused by name
        (validation.py). ``tags``, ``kms_key``, ``volume_size``, ``model_data_download_timeout`` and
        ``inference_ami_version`` go into the requests as the SDK sends them: moto records them, and
        SageMaker applies them. ``accept_eula`` concerns JumpStart's gated S3 models only: it is a no-op.
        With ``update_endpoint=True`` the endpoint named ``endpoint_name``, which must exist, moves to this
        model by UpdateEndpoint (blue/green: it keeps answering meanwhile) instead of being created.

        Locally that simulates provisioning with instance processes on this machine; with a
        ``target="aws"`` session it creates a real, billed SageMaker endpoint. With
        ``serverless_inference_config`` it is a serverless endpoint instead (deploy/serverless.py).
        """
        refuse_unknown_keywords("Model.deploy", kwargs, _keywords(Model.deploy))
        refuse_unsupported("Model.deploy", {
            "accelerator_type": accelerator_type, "data_capture_config": data_capture_config,
            "inference_recommendation_id": inference_recommendation_id, "explainer_config": explainer_config,
            "endpoint_logging": endpoint_logging, "resources": resources,
            "managed_instance_scaling": managed_instance_scaling, "inference_component_name": inference_component_name,
            "routing_config": routing_config, "model_reference_arn": model_reference_arn})
        if str(getattr(endpoint_type, "value", endpoint_type)) != MODEL_BASED:
            raise ConfigurationError(f"Model.deploy: endpoint_type={endpoint_type!r} is not supported by localmaker: "
                                     "inference-component endpoints are not simulated; leave endpoint_type out")
        if initial_instance_count is None and serverless_inference_config is None:
            initial_instance_count = 1  # the SDK requires it; one instance is what a rehearsal means
        tag_requests = {"Tags": tag_list(tags)} if tags else {}
        serverless = serverless_inference_config
        if instance_type is None and serverless is None:
            raise ConfigurationError("instance_type is required, e.g. 'ml.m5.xlarge' or 'ml.g5.xlarge', unless "
                                     "serverless_inference_config makes the endpoint serverless")
        itype = lookup(instance_type or SERVERLESS_IMAGE_TYPE)  # serverless compute takes the CPU image
        count = check_instance_count(initial_instance_count) if serverless is None else \
            serverless.provisioned_concurrency or 0
        described = f"{count} x {itype.describe()}" if serverless is None else describe_serverless(serverless)
        if update_endpoint and endpoint_name is None:
            raise ConfigurationError("update_endpoint=True needs endpoint_name, the existing endpoint to update")
        endpoint_name = check_resource_name(endpoint_name or self._unique_name())
        session = self.sagemaker_session
        check_endpoint_presence(session, endpoint_name, update_endpoint)
        # Updating, the endpoint's own name is taken by its first model and config (moto would overwrite them).
        model_name = self.name or (name_from_base(endpoint_name) if update_endpoint else endpoint_name)
        config_name = name_from_base(model_name) if update_endpoint else endpoint_name
        image = self._image(itype)
        if not session.is_local:
            print(f"[localmaker] Creating a REAL SageMaker endpoint '{endpoint_name}' in {session.region_name} on "
                  f"{described}. AWS bills it {'per instance-hour' if serverless is None else 'per use'} until you "
                  "delete it (predictor.delete_endpoint()).", flush=True)
        elif itype.has_gpu and _local_gpu_count() == 0:
            from localmaker.local_endpoint.gpu_requirement import warn_missing_gpu_once

            warn_missing_gpu_once(itype.name, itype.gpu_model, stacklevel=2)

        artifact = stage(self._data, session, key_prefix=model_name, entry_point=self.entry_point,
                         source_dir=self.source_dir, corpus=self.corpus)
        environment = {
            "SAGEMAKER_PROGRAM": Path(self.entry_point or DEFAULT_PROGRAM).name,
            "SAGEMAKER_SUBMIT_DIRECTORY": REPACKED_CODE_DIR,
            "SAGEMAKER_CONTAINER_LOG_LEVEL": "20",
            "SAGEMAKER_REGION": session.region_name,
            **self.env,
        }
        client = session.sagemaker_client
        client.create_model(
            ModelName=model_name, ExecutionRoleArn=self.role,
            PrimaryContainer={"Image": image,
                              "ModelDataUrl": artifact, "Environment": environment}, **tag_requests,
        )
        variant: dict[str, Any] = {"VariantName": "AllTraffic", "ModelName": model_name, "InitialInstanceCount": count,
                                   "InstanceType": itype.name, "InitialVariantWeight": 1.0}
        if serverless is not None:  # a serverless variant names no instances, as the SDK's does
            del variant["InitialInstanceCount"], variant["InstanceType"]
            variant["ServerlessConfig"] = serverless._to_request_dict()
        for key, value in (("ContainerStartupHealthCheckTimeoutInSeconds", container_startup_health_check_timeout),
                           ("VolumeSizeInGB", volume_size),
                           ("ModelDataDownloadTimeoutInSeconds", model_data_download_timeout),
                           ("InferenceAmiVersion", inference_ami_version)):
            if value is not None:
                variant[key] = value if isinstance(value, str) else int(value)
        asynchronous = async_inference_config.with_defaults(session, endpoint_name) if async_inference_config else None
        client.create_endpoint_config(EndpointConfigName=config_name, ProductionVariants=[variant], **tag_requests,
                                      **({"AsyncInferenceConfig": asynchronous._to_request_dict()} if asynchronous
                                         else {}), **({"KmsKeyId": kms_key} if kms_key else {}))
        if update_endpoint:
            start_update(session, endpoint_name, config_name)
        else:
            client.create_endpoint(EndpointName=endpoint_name, EndpointConfigName=config_name, **tag_requests)
        self.name, self.endpoint_name = model_name, endpoint_name
        predictor = self._predictor(endpoint_name, model_name, serializer, deserializer)
        if wait:
            self._wait(endpoint_name, described, container_startup_health_check_timeout)
            if update_endpoint:
                confirm_update(session, endpoint_name, config_name)
        return AsyncPredictor(predictor, name=model_name) if asynchronous else predictor  # async_inference.py

    def _predictor(self, endpoint_name: str, model_name: str, serializer: BaseSerializer | None,
                   deserializer: BaseDeserializer | None) -> Any:
        """``predictor_cls`` built as the SDK builds it, else a FakePredictor."""
        if self.predictor_cls is None:
            if self._data.lora is not None and self.source_dir is None:
                # A LoRA artifact is served by the built-in SD handler, which speaks JSON: its predictor does too.
                serializer, deserializer = serializer or JSONSerializer(), deserializer or JSONDeserializer()
            return FakePredictor(endpoint_name, self.sagemaker_session, serializer, deserializer, model_name=model_name)
        predictor = self.predictor_cls(endpoint_name, self.sagemaker_session)
        if serializer is not None:
            predictor.serializer = serializer
        if deserializer is not None:
            predictor.deserializer = deserializer
        if isinstance(predictor, FakePredictor) and predictor.model_name is None:
            predictor.model_name = model_name  # so that delete_model() and the context manager find it
        return predictor

    def transformer(self, instance_count: int, instance_type: str, **kwargs: Any) -> Transformer:
        """SDK v2's Model.transformer: CreateModel, then a Transformer for batch jobs (deploy/transformer.py)."""
        from localmaker.deploy.transformer import transformer_for

        return transformer_for(self, instance_count, instance_type, **kwargs)

    def _wait(self, endpoint_name: str, described: str, timeout_s: int | None) -> None:
        session = self.sagemaker_session
        # A Failed endpoint stays described, as in SageMaker; its processes are already stopped.
        ticker = _StatusTicker()
        # Beyond the health check, AWS needs minutes to place instances and pull the image.
        margin = 60 if session.is_local else 1200
        try:
            session.wait_for_endpoint(endpoint_name, timeout_s=(timeout_s or 900) + margin, progress=ticker)
        finally:
            ticker.finish()
        if not session.is_local:
            print(f"[localmaker] Endpoint '{endpoint_name}' is InService in SageMaker ({session.region_name}) on "
                  f"{described}; it bills until predictor.delete_endpoint().", flush=True)
            return
        instances = session.local_endpoint(endpoint_name).instances
        if not instances:  # serverless with no provisioned concurrency
            print(f"[localmaker] Simulated deployment: endpoint '{endpoint_name}' is InService on {described}; "
                  "no instance runs yet: the first invocation starts one (a cold start)", flush=True)
            return
        devices = ", ".join(sorted({str(i.device) for i in instances}))
        print(f"[localmaker] Simulated deployment: endpoint '{endpoint_name}' on {described}; "
              f"nothing was provisioned in AWS. It runs locally on {devices} at {instances[0].url}"
              + (f" (+{len(instances) - 1} more instance(s))" if len(instances) > 1 else ""), flush=True)

    def _image(self, itype: InstanceType) -> str:
        if self.image_uri is not None:
            return self.image_uri
        return default_image(self.sagemaker_session.region_name, itype, **self._image_versions)

    def _unique_name(self) -> str:
        stamp = time.strftime("%Y%m%d-%H%M%S")
        return f"{self._data.label}-{stamp}-{uuid.uuid4().hex[:4]}"[:63].strip("-")


class _StatusTicker:
    """Prints the SageMaker SDK's wait line: a dash a second while Creating, then ``!`` when InService."""

    def __init__(self) -> None:
        self._last = 0.0
        self._started = False

    def __call__(self, status: str) -> None:
        now = time.monotonic()
        if status == "InService":
            print("!" if self._started else "", end="", flush=True)
        elif now - self._last >= 1.0:
            if not self._started:
                print("[localmaker] Creating endpoint ", end="", flush=True)
            print("-", end="", flush=True)
            self._started, self._last = True, now

    def finish(self) -> None:
        if self._started:
            print(flush=True)


def _keywords(function: Callable[..., Any]) -> set[str]:
    return {name for name, p in inspect.signature(function).parameters.items()
            if p.kind is not inspect.Parameter.VAR_KEYWORD} - {"self"}


def _local_gpu_count() -> int:
    # Imported here: the client leaves the control plane's modules (and torch) unloaded until it needs them.
    from localmaker.control_plane.placement import local_gpu_count

    return local_gpu_count()
