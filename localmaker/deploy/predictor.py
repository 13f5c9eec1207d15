"""FakePredictor: the SageMaker SDK's Predictor, posting straight to the local instances, or through
``sagemaker-runtime`` InvokeEndpoint where routing matters (several variants, a target, an inference id) or
the session's target is real AWS."""

from __future__ import annotations

import io
import itertools
import json
import threading
import time
from collections.abc import Callable, Iterator, Mapping
from typing import Any

import urllib3
from botocore.exceptions import ClientError, EventStreamError

from localmaker.deploy.deserializers import BaseDeserializer, BytesDeserializer
from localmaker.deploy.serializers import BaseSerializer, IdentitySerializer
from localmaker.deploy.session import Session
from localmaker.deploy.validation import check_instance_count, name_from_base, refuse_unsupported, tag_list
from localmaker.errors import ConfigurationError, DeploymentError, ModelError
from localmaker.local_endpoint.instance_transport import (
    ConnectionDropped,
    InstanceTransportError,
    InstanceUnreachable,
    mapped_transport_errors,
)
from localmaker.spec.instance_types import lookup
from localmaker.spec.names import CUSTOM_ATTRIBUTES_HEADER


class FakePredictor:
    """Calls ``/invocations`` on the endpoint's instances, round-robin, without the runtime hop, when the
    endpoint has one variant and the call names no target. Otherwise it calls InvokeEndpoint as the SDK
    does: the control plane routes by ``TargetVariant`` and variant weights, and a ``target="aws"``
    session has no instances to reach.

    Errors from the container raise :class:`localmaker.ModelError` with the container's status and
    message, the way botocore's ModelError reports them.
    """

    def __init__(self, endpoint_name: str, sagemaker_session: Session,
                 serializer: BaseSerializer | None = None, deserializer: BaseDeserializer | None = None,
                 model_name: str | None = None, timeout_s: float = 600.0) -> None:
        self.endpoint_name = endpoint_name
        self.sagemaker_session = sagemaker_session
        self.serializer = serializer or IdentitySerializer()
        self.deserializer = deserializer or BytesDeserializer()
        self.model_name = model_name
        self._timeout_s = timeout_s
        self._http = urllib3.PoolManager(maxsize=8, retries=False)
        self._urls: list[str] = []
        self._routed_by_control_plane = False
        self._turn: Any = None
        self._lock = threading.Lock()
        self.last_response_headers: dict[str, str] = {}

    @property
    def content_type(self) -> str:
        return self.serializer.CONTENT_TYPE

    @property
    def accept(self) -> tuple[str, ...]:
        return self.deserializer.ACCEPT

    @property
    def instance_urls(self) -> list[str]:
        self.sagemaker_session.require_local("FakePredictor.instance_urls")
        with self._lock:
            self._learn_the_fleet()
            return list(self._urls)

    def _learn_the_fleet(self) -> None:
        """Ask the control plane for the instances, unless known; the caller holds the lock."""
        if not self._urls:
            view = self.sagemaker_session.local_endpoint(self.endpoint_name)
            self._urls = view.instance_urls
            # Variant weights and targets are the control plane's routing; so are a serverless endpoint's
            # cold starts and throttling, and an async endpoint's refusal of real-time calls. Such
            # endpoints are invoked through InvokeEndpoint.
            serverless = any("ServerlessConfig" in v for v in view.get("Variants", []))
            self._routed_by_control_plane = len(view.variants) > 1 or serverless or bool(view.get("AsyncInference"))
            self._turn = itertools.cycle(range(len(self._urls)))

    def _next_url(self) -> str:
        urls = self.instance_urls
        if not urls:
            raise ModelError(503, f"endpoint {self.endpoint_name!r} has no instance in service right now",
                             self.endpoint_name)
        with self._lock:
            return urls[next(self._turn)]

    def predict(self, data: Any, initial_args: dict[str, str] | None = None, target_model: str | None = None,
                target_variant: str | None = None, inference_id: str | None = None,
                custom_attributes: str | None = None) -> Any:
        args = dict(initial_args or {})
        headers = {
            "Content-Type": args.get("ContentType", self.content_type),
            "Accept": args.get("Accept", ", ".join(self.accept)),
        }
        attributes = custom_attributes or args.get("CustomAttributes")
        if attributes:
            headers[CUSTOM_ATTRIBUTES_HEADER] = attributes
        body = self.serializer.serialize(data)
        if isinstance(body, str):
            body = body.encode("utf-8")
        routing = {name: value for name, value in (("TargetModel", target_model), ("TargetVariant", target_variant),
                                                   ("InferenceId", inference_id)) if value is not None}
        if not self.sagemaker_session.is_local or routing or self._routed_elsewhere():
            return self._invoke_endpoint(body, headers, routing)
        answer, url = self._post_to_an_instance(body, headers)
        if answer.status >= 400:
            raise self._container_error(answer.status, _error_message(answer.data), url)
        self.last_response_headers = dict(answer.headers)
        content_type = answer.headers.get("Content-Type", "application/octet-stream")
        return self.deserializer.deserialize(io.BytesIO(answer.data), content_type)

    def _routed_elsewhere(self) -> bool:
        """Whether the control plane must choose the instance (see ``_learn_the_fleet``)."""
        with self._lock:
            self._learn_the_fleet()
            return self._routed_by_control_plane

    def _post_to_an_instance(self, body: bytes, headers: dict[str, str]) -> tuple[Any, str]:
        """POST to the next instance (the answer, and the instance it came from); when it cannot be reached,
        ask the control plane again.

        Instances come and go (a blue/green update, a scale-down, an instance healed after a crash), and
        this predictor remembers their URLs. A refused connection never reached a container, so sending
        it on to a current instance cannot run the request twice.
        """
        for attempt in range(3):
            url = self._next_url()
            try:
                with mapped_transport_errors():
                    return self._http.request("POST", f"{url}/invocations", body=body, headers=headers,
                                              timeout=self._timeout_s), url
            except InstanceUnreachable:
                with self._lock:
                    self._urls = []
                if attempt < 2:
                    time.sleep(0.2 * (attempt + 1))  # a replacement may still be joining the rotation
            except InstanceTransportError as exc:
                with self._lock:
                    self._urls = []
                if isinstance(exc, ConnectionDropped) and attempt < 2 and url not in self.instance_urls:
                    # Swapped out (an update, a scale-down) while this request was on its way: a draining
                    # gunicorn answers every request it has read and closes only idle kept-alive
                    # connections, so this one was never read; the control plane's proxy reasons the same.
                    continue
                raise ModelError(500, str(exc), self.endpoint_name) from exc
        raise ModelError(503, "no instance of the endpoint could be reached; it may be updating or healing",
                         self.endpoint_name)

    def _invoke_endpoint(self, body: bytes, headers: dict[str, str], routing: dict[str, str]) -> Any:
        request: dict[str, Any] = {"EndpointName": self.endpoint_name, "Body": body,
                                   "ContentType": headers["Content-Type"], "Accept": headers["Accept"], **routing}
        if CUSTOM_ATTRIBUTES_HEADER in headers:
            request["CustomAttributes"] = headers[CUSTOM_ATTRIBUTES_HEADER]
        try:
            answer = self.sagemaker_session.sagemaker_runtime_client.invoke_endpoint(**request)
        except ClientError as exc:
            error = self._model_error(exc)
            if error is None:
                raise
            raise error from None  # the ModelError is that ClientError, with the container's evidence added
        self.last_response_headers = dict(answer.get("ResponseMetadata", {}).get("HTTPHeaders", {}))
        content_type = answer.get("ContentType", "application/octet-stream")
        return self.deserializer.deserialize(io.BytesIO(answer["Body"].read()), content_type)

    def _model_error(self, exc: ClientError) -> ModelError | None:
        """botocore's ModelError as localmaker's, with the container's status and message; None for others."""
        if exc.response.get("Error", {}).get("Code") != "ModelError":
            return None
        return self._container_error(int(exc.response.get("OriginalStatusCode", 500)),
                                     _error_message(str(exc.response.get("OriginalMessage", "")).encode("utf-8")))

    def _container_error(self, status: int, message: str, instance_url: str | None = None) -> ModelError:
        """A 500 is the handler's failure: its traceback is in an instance log, and the error says where and
        how it ends (the user's file and line). A 4xx is the request's fault, with nothing logged to show."""
        evidence = self.sagemaker_session.failure_evidence(self.endpoint_name, message, instance_url) \
            if status >= 500 else ""
        return ModelError(status, message, self.endpoint_name, evidence)

    def predict_stream(self, data: Any, initial_args: dict[str, str] | None = None,
                       target_variant: str | None = None, inference_id: str | None = None,
                       custom_attributes: str | None = None, component_name: str | None = None,
                       target_container_hostname: str | None = None,
                       iterator: Callable[[Any], Any] | None = None) -> Any:
        """The SDK's ``Predictor.predict_stream``: InvokeEndpointWithResponseStream, and the answer's chunks.

        Without ``iterator``, an iterator of the payload bytes as the endpoint streams them, where the SDK's
        default ByteIterator would give the same bytes; a failure before or during the stream raises
        :class:`localmaker.ModelError` (a stream that broke off mid-way reports status 500 with AWS's
        message). With ``iterator`` (``sagemaker.iterators.LineIterator``, say), it is applied to the
        response's event stream unchanged, as the SDK applies it. The call always goes through the control
        plane, which frames the stream as AWS does.
        """
        args = dict(initial_args or {})
        request: dict[str, Any] = {"EndpointName": self.endpoint_name, "ContentType": self.content_type,
                                   "Accept": ", ".join(self.accept), **args}
        body = self.serializer.serialize(data)
        request["Body"] = body.encode("utf-8") if isinstance(body, str) else body
        for key, value in (("TargetVariant", target_variant), ("InferenceId", inference_id),
                           ("CustomAttributes", custom_attributes), ("InferenceComponentName", component_name),
                           ("TargetContainerHostname", target_container_hostname)):
            if value is not None:
                request[key] = value
        try:
            answer = self.sagemaker_session.sagemaker_runtime_client.invoke_endpoint_with_response_stream(**request)
        except ClientError as exc:
            error = self._model_error(exc)
            if error is None:
                raise
            raise error from None  # the ModelError is that ClientError, with the container's evidence added
        self.last_response_headers = dict(answer.get("ResponseMetadata", {}).get("HTTPHeaders", {}))
        if iterator is not None:
            return iterator(answer["Body"])
        return self._payload_parts(answer["Body"])

    def _payload_parts(self, events: Any) -> Iterator[bytes]:
        try:
            for event in events:
                if "PayloadPart" in event:
                    yield event["PayloadPart"]["Bytes"]
        except EventStreamError as exc:
            error = exc.response.get("Error", {})
            raise ModelError(500, f"{error.get('Code')}: {error.get('Message')}", self.endpoint_name) from exc

    def update_endpoint(self, initial_instance_count: int | None = None, instance_type: str | None = None,
                        accelerator_type: str | None = None, model_name: str | None = None,
                        tags: Mapping[str, str] | list[dict[str, str]] | None = None, kms_key: str | None = None,
                        data_capture_config_dict: dict[str, Any] | None = None,
                        max_instance_count: int | None = None, min_instance_count: int | None = None,
                        wait: bool = True) -> None:
        """SDK v2's ``Predictor.update_endpoint``: a new endpoint config, UpdateEndpoint, then (``wait``)
        until InService. The endpoint answers throughout: the control plane starts the new fleet before
        it stops the old one, as SageMaker's blue/green update does.

        Given ``initial_instance_count``, ``instance_type`` or ``model_name``, the new config has one
        variant of exactly those (the first two are then both required, and the model defaults to the
        endpoint's only one); otherwise it copies the current variants. ``tags`` and ``kms_key`` replace
        the current config's, which are kept otherwise. Elastic Inference, data capture and managed
        instance scaling are not simulated and are refused by name. An update that SageMaker rolls back
        raises DeploymentError with the FailureReason.
        """
        refuse_unsupported("FakePredictor.update_endpoint", {
            "accelerator_type": accelerator_type, "data_capture_config_dict": data_capture_config_dict,
            "max_instance_count": max_instance_count, "min_instance_count": min_instance_count})
        client = self.sagemaker_session.sagemaker_client
        current_name = client.describe_endpoint(EndpointName=self.endpoint_name)["EndpointConfigName"]
        current = client.describe_endpoint_config(EndpointConfigName=current_name)
        variants = current["ProductionVariants"]
        if initial_instance_count or instance_type or model_name:
            if instance_type is None or initial_instance_count is None:
                raise ConfigurationError(
                    f"update_endpoint needs both initial_instance_count and instance_type to build a new variant "
                    f"(got initial_instance_count={initial_instance_count!r}, instance_type={instance_type!r}, "
                    f"model_name={model_name!r}); pass neither to keep the current variants")
            models = [v["ModelName"] for v in variants if "ModelName" in v]
            if model_name is None and len(models) > 1:
                raise ConfigurationError(f"endpoint {self.endpoint_name!r} serves several models "
                                         f"({', '.join(models)}); pass model_name=... to choose the one the new "
                                         "variant serves")
            model_name = model_name or models[0]
            variants = [{"VariantName": "AllTraffic", "ModelName": model_name,
                         "InstanceType": lookup(instance_type).name,
                         "InitialInstanceCount": check_instance_count(initial_instance_count),
                         "InitialVariantWeight": 1.0}]
        request: dict[str, Any] = {"EndpointConfigName": name_from_base(current_name), "ProductionVariants": variants}
        carried_tags = tag_list(tags) or self._current_tags(current["EndpointConfigArn"])
        if carried_tags:
            request["Tags"] = carried_tags
        if kms_key or current.get("KmsKeyId"):
            request["KmsKeyId"] = kms_key or current["KmsKeyId"]
        for kept in ("AsyncInferenceConfig", "DataCaptureConfig", "ExplainerConfig"):
            if current.get(kept):
                request[kept] = current[kept]
        client.create_endpoint_config(**request)
        start_update(self.sagemaker_session, self.endpoint_name, request["EndpointConfigName"])
        if wait:
            self.sagemaker_session.wait_for_endpoint(self.endpoint_name)
            confirm_update(self.sagemaker_session, self.endpoint_name, request["EndpointConfigName"])
        self.model_name = model_name or self.model_name
        with self._lock:  # the new fleet has other instances; learn them on the next call
            self._urls = []

    def _current_tags(self, config_arn: str) -> list[dict[str, str]]:
        """The current config's tags, less AWS's reserved ``aws:`` ones, which a request may not set."""
        tags = self.sagemaker_session.sagemaker_client.list_tags(ResourceArn=config_arn).get("Tags", [])
        return [tag for tag in tags if not str(tag.get("Key", "")).startswith("aws:")]

    def delete_endpoint(self, delete_endpoint_config: bool = True) -> None:
        client = self.sagemaker_session.sagemaker_client
        config = client.describe_endpoint(EndpointName=self.endpoint_name)["EndpointConfigName"]
        client.delete_endpoint(EndpointName=self.endpoint_name)
        if delete_endpoint_config:
            client.delete_endpoint_config(EndpointConfigName=config)
        with self._lock:
            self._urls = []

    def delete_model(self) -> None:
        if self.model_name:
            self.sagemaker_session.sagemaker_client.delete_model(ModelName=self.model_name)

    def __enter__(self) -> FakePredictor:
        return self

    def __exit__(self, *exc: object) -> None:
        self.delete_endpoint()
        self.delete_model()


def check_endpoint_presence(session: Session, name: str, update: bool) -> None:
    """Before deploy() creates anything: an update needs the endpoint, a create needs the name free (moto
    would otherwise overwrite the running endpoint's model and config before refusing the endpoint)."""
    try:
        session.sagemaker_client.describe_endpoint(EndpointName=name)
        exists = True
    except ClientError as exc:
        if exc.response.get("Error", {}).get("Code") != "ValidationException":
            raise
        exists = False
    if update and not exists:
        raise ConfigurationError(f"endpoint {name!r} does not exist, so update_endpoint=True has nothing to update: "
                                 "name an existing endpoint, or leave update_endpoint out to create this one")
    if exists and not update:
        raise ConfigurationError(f"endpoint {name!r} already exists: pass update_endpoint=True to move it to this "
                                 "model, delete it first (predictor.delete_endpoint()), or choose another "
                                 "endpoint_name")


def start_update(session: Session, endpoint_name: str, config_name: str) -> None:
    session.sagemaker_client.update_endpoint(EndpointName=endpoint_name, EndpointConfigName=config_name)


def confirm_update(session: Session, endpoint_name: str, config_name: str) -> None:
    """After the wait: a rolled-back update leaves the endpoint InService on its old config, which the
    status alone does not tell; the FailureReason says why."""
    described = session.sagemaker_client.describe_endpoint(EndpointName=endpoint_name)
    if described.get("EndpointConfigName") != config_name:
        raise DeploymentError(f"endpoint {endpoint_name!r} was not updated to {config_name!r} and still serves "
                              f"{described.get('EndpointConfigName')!r}: "
                              f"{described.get('FailureReason') or 'no reason given'}")


def _error_message(data: bytes) -> str:
    """The container's ``{"error": {"message"}}``, or the raw text of a foreign container's error."""
    text = data.decode("utf-8", "replace")
    try:
        error = json.loads(text).get("error", {})
        return str(error.get("message", text)) if isinstance(error, dict) else text
    except (ValueError, AttributeError):
        return text
