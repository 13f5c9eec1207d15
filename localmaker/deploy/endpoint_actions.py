"""SageMaker endpoint actions, intercepted so that what moto records is also what runs."""

from __future__ import annotations

import logging
from collections.abc import Callable
from typing import Any

from localmaker.deploy.endpoint_runtime import EndpointRuntime, EndpointStatus, VariantSpec
from localmaker.deploy.instance_type_ledger import InstanceTypeLedger
from localmaker.deploy.wire import Answer, overlaid
from localmaker.errors import ConfigurationError

logger = logging.getLogger(__name__)

Forward = Callable[..., Answer]
Action = Callable[[dict[str, Any], Forward], Answer]


class EndpointActions:
    def __init__(self, runtime: EndpointRuntime, aws: Callable[[str], Any]) -> None:
        self.runtime = runtime
        self._aws = aws  # boto3 clients that talk to this very control plane, for what moto recorded
        self._types = InstanceTypeLedger()

    def actions(self) -> dict[str, Action]:
        return {
            "CreateEndpoint": self.create_endpoint,
            "DescribeEndpoint": self.describe_endpoint,
            "ListEndpoints": self.list_endpoints,
            "DeleteEndpoint": self.delete_endpoint,
            "CreateEndpointConfig": self.create_endpoint_config,
            "DescribeEndpointConfig": self.describe_endpoint_config,
            "DeleteEndpointConfig": self.delete_endpoint_config,
        }

    def create_endpoint(self, request: dict[str, Any], forward: Forward) -> Answer:
        name = str(request.get("EndpointName", ""))
        if self.runtime.get(name) is not None:
            return Answer.error("ValidationException", f"Cannot create already existing endpoint \"{name}\".")
        answer = forward()
        if not answer.ok:
            return answer
        try:
            self.runtime.create(name, self._variants(str(request.get("EndpointConfigName", ""))))
        except Exception as exc:  # noqa: BLE001 - a bad config must not leave a half-made endpoint
            logger.exception("could not provision %s", name)
            self._aws("sagemaker").delete_endpoint(EndpointName=name)
            return Answer.error("ValidationException", str(exc))
        return answer

    def _variants(self, config_name: str) -> list[VariantSpec]:
        sagemaker = self._aws("sagemaker")
        config = sagemaker.describe_endpoint_config(EndpointConfigName=config_name)
        variants = []
        for variant in config["ProductionVariants"]:
            model = sagemaker.describe_model(ModelName=variant["ModelName"])
            container = model.get("PrimaryContainer") or (model.get("Containers") or [{}])[0]
            if "ModelDataUrl" not in container:
                raise ValueError(f"model {variant['ModelName']!r} has no ModelDataUrl; "
                                 "point it at a model.tar.gz in S3")
            variants.append(VariantSpec(
                variant_name=variant["VariantName"],
                model_name=variant["ModelName"],
                instance_type=variant["InstanceType"],
                instance_count=int(variant.get("InitialInstanceCount", 1)),
                model_data_url=container["ModelDataUrl"],
                image=container.get("Image", ""),
                environment=dict(container.get("Environment") or {}),
                weight=float(variant.get("InitialVariantWeight", 1.0)),
                startup_timeout_s=variant.get("ContainerStartupHealthCheckTimeoutInSeconds"),
            ))
        return variants

    def describe_endpoint(self, request: dict[str, Any], forward: Forward) -> Answer:
        return overlaid(forward(), self._overlay)

    def list_endpoints(self, request: dict[str, Any], forward: Forward) -> Answer:
        return overlaid(forward(), self._overlay, "Endpoints")

    def _overlay(self, record: dict[str, Any]) -> None:
        """Replace moto's always-InService status with the endpoint's real one."""
        endpoint = self.runtime.get(str(record.get("EndpointName", "")))
        if endpoint is None:
            return
        record["EndpointStatus"] = endpoint.status.value
        if endpoint.status is EndpointStatus.FAILED:
            record["FailureReason"] = endpoint.failure_reason
        else:
            record.pop("FailureReason", None)

    def delete_endpoint(self, request: dict[str, Any], forward: Forward) -> Answer:
        answer = forward()
        if answer.ok:
            self.runtime.delete(str(request.get("EndpointName", "")))
        return answer

    def create_endpoint_config(self, request: dict[str, Any], forward: Forward) -> Answer:
        try:
            recorded = self._types.record(request)
        except ConfigurationError as exc:
            return Answer.error("ValidationException", str(exc))
        except (KeyError, TypeError) as exc:
            return Answer.error("ValidationException", f"malformed ProductionVariants: {exc}")
        answer = forward(recorded)
        if not answer.ok:
            self._types.forget(str(request.get("EndpointConfigName", "")))
        return answer

    def describe_endpoint_config(self, request: dict[str, Any], forward: Forward) -> Answer:
        answer = forward()
        return answer.with_json(self._types.restore(answer.json())) if answer.ok else answer

    def delete_endpoint_config(self, request: dict[str, Any], forward: Forward) -> Answer:
        answer = forward()
        if answer.ok:
            self._types.forget(str(request.get("EndpointConfigName", "")))
        return answer
