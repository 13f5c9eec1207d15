"""An endpoint config's AsyncInferenceConfig: checked as CreateEndpointConfig checks it, and remembered.

SageMaker validates the structure when the config is created, so a wrong S3 path or topic ARN fails
there, not hours later when the first result has nowhere to go. The messages follow AWS's constraint
wording ("1 validation error detected: Value ... at ... failed to satisfy constraint: ..."). Which
endpoint runs which config is kept here too: the runtime knows an endpoint's config name, but only
this module knows whether that config makes it an asynchronous endpoint.
"""

from __future__ import annotations

import dataclasses
import re
import threading
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any

from localmaker.control_plane.api_errors import ValidationError, ValidationException
from localmaker.spec.names import LOCAL_ACCOUNT_ID

# AWS's patterns for the fields (botocore's service model), and its bounds.
_S3_PATH = re.compile(r"^s3://([^/]+)/?(.*)$")
_TOPIC_ARN = re.compile(r"^arn:aws[a-z\-]*:sns:[a-z0-9\-]*:[0-9]{12}:[a-zA-Z0-9_.-]+$")
MAX_S3_PATH_CHARS = 512
MAX_CONCURRENT_PER_INSTANCE = 1000
SUCCESS_TOPIC, ERROR_TOPIC = "SUCCESS_NOTIFICATION_TOPIC", "ERROR_NOTIFICATION_TOPIC"
# AWS lets SageMaker choose when ClientConfig is left out; one at a time is what a single model server
# handles without queueing inside the container, so the control plane's queue stays the only one.
DEFAULT_CONCURRENT_PER_INSTANCE = 1
# Async requests may run for up to an hour (InvocationTimeoutSeconds' upper bound). A container's own
# timeout would cut them at 60 s, so an async endpoint's instances get this one unless the model sets
# SAGEMAKER_MODEL_SERVER_TIMEOUT, as AWS's async guides tell users to raise their model server's.
ASYNC_CONTAINER_TIMEOUT_S = 3600
MODEL_SERVER_TIMEOUT_ENV = "SAGEMAKER_MODEL_SERVER_TIMEOUT"


@dataclass(frozen=True)
class AsyncEndpointConfig:
    """What an asynchronous endpoint does with each request's result."""

    output_path: str
    failure_path: str | None = None
    success_topic: str | None = None
    error_topic: str | None = None
    include_response_in: frozenset[str] = frozenset()
    max_concurrent_per_instance: int = DEFAULT_CONCURRENT_PER_INSTANCE

    def topic(self, succeeded: bool) -> str | None:
        return self.success_topic if succeeded else self.error_topic

    def includes_response(self, succeeded: bool) -> bool:
        return (SUCCESS_TOPIC if succeeded else ERROR_TOPIC) in self.include_response_in


def realtime_call_refused(endpoint_name: str, operation: str) -> ValidationError:
    """A real-time ``operation``'s refusal on an asynchronous endpoint (the runtime API's ValidationError)."""
    return ValidationError(f"Endpoint {endpoint_name} of account {LOCAL_ACCOUNT_ID} is an asynchronous inference "
                           f"endpoint, which {operation} cannot call: upload the payload to S3 and call "
                           "InvokeEndpointAsync with it as InputLocation")


def constraint_error(value: Any, where: str, constraint: str) -> ValidationException:
    """AWS's wording for a field that breaks its service model's constraint."""
    return ValidationException(f"1 validation error detected: Value '{value}' at '{where}' failed to satisfy "
                               f"constraint: {constraint}")


def parse_async_config(raw: Any, variants: Any = None) -> AsyncEndpointConfig:
    """CreateEndpointConfig's AsyncInferenceConfig, checked; ValidationException naming the bad field."""
    if not isinstance(raw, Mapping):
        raise ValidationException("AsyncInferenceConfig must be an object with OutputConfig (S3OutputPath)")
    if any(isinstance(v, Mapping) and "ServerlessConfig" in v for v in variants or []):
        raise ValidationException("One or more endpoint features are not supported using this configuration: "
                                  "AsyncInferenceConfig needs instance-backed variants, not ServerlessConfig")
    output = raw.get("OutputConfig")
    if not isinstance(output, Mapping):
        raise ValidationException("AsyncInferenceConfig.OutputConfig is required: give it S3OutputPath, the S3 "
                                  "folder where results are written")
    output_path = output.get("S3OutputPath")
    if output_path is None:
        raise ValidationException("AsyncInferenceConfig.OutputConfig.S3OutputPath is required: the S3 folder "
                                  "where results are written, e.g. s3://my-bucket/async-results")
    failure_path = output.get("S3FailurePath")
    notification = output.get("NotificationConfig") or {}
    if not isinstance(notification, Mapping):
        raise ValidationException("AsyncInferenceConfig.OutputConfig.NotificationConfig must be an object")
    included = notification.get("IncludeInferenceResponseIn") or []
    if not isinstance(included, list) or len(included) > 2:
        raise constraint_error(included, "asyncInferenceConfig.outputConfig.notificationConfig."
                               "includeInferenceResponseIn", "Member must have length less than or equal to 2")
    for item in included:
        if item not in (SUCCESS_TOPIC, ERROR_TOPIC):
            raise constraint_error(item, "asyncInferenceConfig.outputConfig.notificationConfig."
                                   "includeInferenceResponseIn", f"Member must satisfy enum value set: "
                                   f"[{SUCCESS_TOPIC}, {ERROR_TOPIC}]")
    client = raw.get("ClientConfig") or {}
    per_instance = client.get("MaxConcurrentInvocationsPerInstance") if isinstance(client, Mapping) else None
    return AsyncEndpointConfig(
        output_path=_s3_path(output_path, "S3OutputPath"),
        failure_path=None if failure_path is None else _s3_path(failure_path, "S3FailurePath"),
        success_topic=_topic(notification.get("SuccessTopic"), "successTopic"),
        error_topic=_topic(notification.get("ErrorTopic"), "errorTopic"),
        include_response_in=frozenset(included),
        max_concurrent_per_instance=(DEFAULT_CONCURRENT_PER_INSTANCE if per_instance is None
                                     else _per_instance(per_instance)),
    )


def _s3_path(raw: Any, field: str) -> str:
    where = f"asyncInferenceConfig.outputConfig.{field[0].lower()}{field[1:]}"
    if not isinstance(raw, str) or len(raw) > MAX_S3_PATH_CHARS:
        raise constraint_error(raw, where, f"Member must have length less than or equal to {MAX_S3_PATH_CHARS}")
    if not _S3_PATH.match(raw):
        raise constraint_error(raw, where, "Member must satisfy regular expression pattern: "
                               "(https|s3)://([^/])/?(.*) (localmaker reads s3:// paths; "
                               "write it as s3://bucket/prefix)")
    return raw.rstrip("/")


def _topic(raw: Any, field: str) -> str | None:
    if raw is None or raw == "":
        return None
    if not isinstance(raw, str) or not _TOPIC_ARN.match(raw):
        raise constraint_error(raw, f"asyncInferenceConfig.outputConfig.notificationConfig.{field}",
                               "Member must satisfy regular expression pattern: "
                               "arn:aws[a-z\\-]*:sns:[a-z0-9\\-]*:[0-9]{12}:[a-zA-Z0-9_.-]+")
    return raw


def _per_instance(raw: Any) -> int:
    where = "asyncInferenceConfig.clientConfig.maxConcurrentInvocationsPerInstance"
    if isinstance(raw, bool) or not isinstance(raw, int):
        raise constraint_error(raw, where, "Member must be a whole number")
    if raw < 1:
        raise constraint_error(raw, where, "Member must have value greater than or equal to 1")
    if raw > MAX_CONCURRENT_PER_INSTANCE:
        raise constraint_error(raw, where,
                               f"Member must have value less than or equal to {MAX_CONCURRENT_PER_INSTANCE}")
    return raw


class AsyncEndpoints:
    """Which configs are asynchronous, and which endpoints run one of them now."""

    def __init__(self) -> None:
        self._configs: dict[str, AsyncEndpointConfig] = {}
        self._endpoints: dict[str, AsyncEndpointConfig] = {}
        self._lock = threading.Lock()
        # Called with an endpoint's name when it is deleted: its queue fails what it still holds.
        self.on_detach: list[Callable[[str], None]] = []

    def check(self, request: Mapping[str, Any]) -> AsyncEndpointConfig | None:
        """CreateEndpointConfig's AsyncInferenceConfig, checked (None for a real-time config)."""
        raw = request.get("AsyncInferenceConfig")
        return None if raw is None else parse_async_config(raw, request.get("ProductionVariants"))

    def record_config(self, config_name: str, config: AsyncEndpointConfig | None) -> None:
        with self._lock:
            if config is None:
                self._configs.pop(config_name, None)
            else:
                self._configs[config_name] = config

    def forget_config(self, config_name: str) -> None:
        self.record_config(config_name, None)

    def attach(self, endpoint_name: str, config_name: str) -> None:
        """CreateEndpoint or UpdateEndpoint: the endpoint now runs ``config_name``."""
        with self._lock:
            config = self._configs.get(config_name)
            if config is None:
                self._endpoints.pop(endpoint_name, None)
            else:
                self._endpoints[endpoint_name] = config

    def detach(self, endpoint_name: str) -> None:
        """DeleteEndpoint: the endpoint is gone, and so is whatever it still had queued."""
        with self._lock:
            self._endpoints.pop(endpoint_name, None)
        for listener in self.on_detach:
            listener(endpoint_name)

    def of(self, endpoint_name: str) -> AsyncEndpointConfig | None:
        with self._lock:
            return self._endpoints.get(endpoint_name)

    def is_async(self, endpoint_name: str) -> bool:
        return self.of(endpoint_name) is not None

    def is_async_config(self, config_name: str) -> bool:
        with self._lock:
            return config_name in self._configs


def with_async_container_timeout(environment: dict[str, str]) -> dict[str, str]:
    """An async endpoint's instance environment: the model's, with a container timeout long enough."""
    return {MODEL_SERVER_TIMEOUT_ENV: str(ASYNC_CONTAINER_TIMEOUT_S), **environment}


def async_variants(variants: list[Any], endpoints: AsyncEndpoints, config_name: str) -> list[Any]:
    """``variants`` (VariantSpec) of ``config_name``, with the async container timeout where it is async."""
    if not endpoints.is_async_config(config_name):
        return variants
    return [dataclasses.replace(v, environment=with_async_container_timeout(v.environment)) for v in variants]
