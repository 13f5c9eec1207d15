"""SageMaker endpoint actions, intercepted so that what moto records is also what runs."""

from __future__ import annotations

import logging
from collections.abc import Callable
from typing import Any

from botocore.exceptions import ClientError

from localmaker.deploy.endpoint_runtime import EndpointBusy, EndpointRuntime
from localmaker.deploy.endpoint_state import EndpointStatus, VariantSpec
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
            "UpdateEndpoint": self.update_endpoint,
            "UpdateEndpointWeightsAndCapacities": self.update_weights_and_capacities,
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
        config_name = str(request.get("EndpointConfigName", ""))
        try:
            self.runtime.create(name, config_name, self._variants(config_name))
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
        """Replace moto's always-InService record with what actually runs: status, config, variants."""
        endpoint = self.runtime.get(str(record.get("EndpointName", "")))
        if endpoint is None:
            return
        record["EndpointStatus"] = endpoint.status.value
        if endpoint.failure_reason:  # Failed, or InService after an update that rolled back
            record["FailureReason"] = endpoint.failure_reason
        else:
            record.pop("FailureReason", None)
        if "EndpointConfigName" in record:  # moto knows nothing of UpdateEndpoint
            record["EndpointConfigName"] = endpoint.config_name
        if "ProductionVariants" in record and endpoint.variants:
            record["ProductionVariants"] = endpoint.production_variants()

    def update_endpoint(self, request: dict[str, Any], forward: Forward) -> Answer:
        """Blue/green to a new endpoint config; moto has no UpdateEndpoint, so it is answered here."""
        name = str(request.get("EndpointName", ""))
        config_name = str(request.get("EndpointConfigName", ""))
        sagemaker = self._aws("sagemaker")
        try:
            arn = sagemaker.describe_endpoint(EndpointName=name)["EndpointArn"]
        except ClientError:
            return Answer.error("ValidationException", f"Could not find endpoint \"{name}\".")
        try:
            variants = self._variants(config_name)
        except ClientError as exc:  # a missing config or model, in moto's words
            return Answer.error("ValidationException", str(exc.response["Error"].get("Message", exc)))
        except ValueError as exc:
            return Answer.error("ValidationException", str(exc))
        try:
            self.runtime.update(name, config_name, variants)
        except KeyError:
            return Answer.error("ValidationException", f"Could not find endpoint \"{name}\".")
        except EndpointBusy as exc:
            return Answer.error("ValidationException", str(exc))
        return Answer.of_json(200, {"EndpointArn": arn})

    def update_weights_and_capacities(self, request: dict[str, Any], forward: Forward) -> Answer:
        name = str(request.get("EndpointName", ""))
        desired: dict[str, tuple[float | None, int | None]] = {}
        for item in request.get("DesiredWeightsAndCapacities") or []:
            count = item.get("DesiredInstanceCount")
            if count is not None and int(count) < 1:
                return Answer.error("ValidationException", "DesiredInstanceCount must be at least 1 for a "
                                                           "real-time endpoint; delete the endpoint to stop it")
            weight = item.get("DesiredWeight")
            desired[str(item.get("VariantName", ""))] = (None if weight is None else float(weight),
                                                         None if count is None else int(count))
        endpoint = self.runtime.get(name)
        if endpoint is not None and endpoint.status is not EndpointStatus.IN_SERVICE:
            return Answer.error("ValidationException", f"Cannot update in-progress endpoint \"{name}\": it is "
                                                       f"{endpoint.status.value}; wait until it is InService")
        answer = forward()  # moto checks that the endpoint and every variant name exist
        if not answer.ok:
            return answer
        try:
            self.runtime.scale(name, desired)
        except (KeyError, EndpointBusy) as exc:
            return Answer.error("ValidationException", str(exc))
        return answer

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
