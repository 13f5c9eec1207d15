"""SageMaker endpoint actions, intercepted so that what moto records is also what runs."""

from __future__ import annotations

import logging
import math
from collections.abc import Callable
from typing import Any

from botocore.exceptions import ClientError

from localmaker.control_plane.answers import Answer, overlaid
from localmaker.control_plane.api_errors import EndpointNotFound, ValidationException
from localmaker.control_plane.async_config import AsyncEndpoints, async_variants
from localmaker.control_plane.endpoint_runtime import EndpointBusy, EndpointRuntime
from localmaker.control_plane.endpoint_state import EndpointStatus, VariantSpec
from localmaker.control_plane.instance_type_ledger import InstanceTypeLedger
from localmaker.control_plane.name_locks import NameLocks
from localmaker.control_plane.resource_names import checked_names, forwarded
from localmaker.control_plane.serverless_config import ServerlessConfig, check_production_variants
from localmaker.control_plane.service_quotas import ServiceQuotas, Usage, endpoint_variants
from localmaker.errors import ConfigurationError
from localmaker.spec.names import sagemaker_arn

logger = logging.getLogger(__name__)

Forward = Callable[..., Answer]
Action = Callable[[dict[str, Any], Forward], Answer]


class EndpointActions:
    """Each action answers, or raises an ApiError that the control plane's app serializes."""

    def __init__(self, runtime: EndpointRuntime, aws: Callable[[str], Any], region: str,
                 async_endpoints: AsyncEndpoints | None = None, quotas: ServiceQuotas | None = None) -> None:
        self.runtime = runtime
        self._quotas = quotas or ServiceQuotas.from_settings()  # instances per type and in all (service_quotas.py)
        self._async = async_endpoints or AsyncEndpoints()  # which configs and endpoints are asynchronous
        self._aws = aws  # boto3 clients that talk to this very control plane, for what moto recorded
        self._region = region
        self._types = InstanceTypeLedger()
        self._names = NameLocks()  # a create or delete of one name holds it over moto's record and the runtime

    def actions(self) -> dict[str, Action]:
        # Every name is checked as AWS checks it before anything runs (resource_names.py); CreateModel is
        # listed only for that, moto answers it.
        return checked_names({
            "CreateModel": forwarded,
            "CreateEndpoint": self.create_endpoint,
            "DescribeEndpoint": self.describe_endpoint,
            "ListEndpoints": self.list_endpoints,
            "DeleteEndpoint": self.delete_endpoint,
            "UpdateEndpoint": self.update_endpoint,
            "UpdateEndpointWeightsAndCapacities": self.update_weights_and_capacities,
            "CreateEndpointConfig": self.create_endpoint_config,
            "DescribeEndpointConfig": self.describe_endpoint_config,
            "DeleteEndpointConfig": self.delete_endpoint_config,
        })

    def create_endpoint(self, request: dict[str, Any], forward: Forward) -> Answer:
        name = str(request.get("EndpointName", ""))
        # Racing a create or delete of the same name, this one runs whole before or after it, so moto's
        # record and the runtime end both present or both gone (name_locks.py).
        with self._names.held(name):
            if self.runtime.get(name) is not None:  # moto would overwrite its record without a word
                raise ValidationException(
                    f"Cannot create already existing endpoint \"{sagemaker_arn(self._region, 'endpoint', name)}\".")
            try:
                return self._create_endpoint(name, request, forward)
            finally:
                self._quotas.settle(Usage.ENDPOINT, name)

    def _create_endpoint(self, name: str, request: dict[str, Any], forward: Forward) -> Answer:
        config_name = str(request.get("EndpointConfigName", ""))
        self._admit(name, config_name)
        variants = self._variants(config_name)  # a bad config is refused before anything is recorded
        # The runtime first, then moto: what can fail happens before the record exists, and a record moto
        # refuses takes the runtime's endpoint with it, so no failure leaves one side alone.
        with ValidationException.raised_for(ValueError):
            self.runtime.create(name, config_name, variants)
        try:
            answer = forward()
        except BaseException:
            self.runtime.delete(name)
            raise
        if not answer.ok:
            self.runtime.delete(name)
            return answer
        self._async.attach(name, config_name)
        return answer

    def _admit(self, name: str, config_name: str, keep_current: bool = False) -> None:
        """ResourceLimitExceeded, before anything is recorded or started, where the config's instances would
        take a quota over its limit."""
        try:
            variants = self._variants(config_name)
        except ValidationException:
            return  # a config or model that does not exist: refused next, in moto's words
        self._quotas.admit(Usage.ENDPOINT, name, endpoint_variants(variants), keep_current)

    def _variants(self, config_name: str) -> list[VariantSpec]:
        """The config's variants joined with their models, as moto recorded them; ValidationException if
        either is missing (in moto's words) or describes something localmaker cannot run."""
        try:
            return async_variants(self._joined_variants(config_name), self._async, config_name)
        except ClientError as exc:
            raise ValidationException(str(exc.response["Error"].get("Message", exc))) from exc

    def _joined_variants(self, config_name: str) -> list[VariantSpec]:
        sagemaker = self._aws("sagemaker")
        config = sagemaker.describe_endpoint_config(EndpointConfigName=config_name)
        variants = []
        for variant in config["ProductionVariants"]:
            model = sagemaker.describe_model(ModelName=variant["ModelName"])
            container = model.get("PrimaryContainer") or (model.get("Containers") or [{}])[0]
            if "ModelDataUrl" not in container:
                raise ValidationException(f"model {variant['ModelName']!r} has no ModelDataUrl; "
                                          "point it at a model.tar.gz in S3")
            serverless = ServerlessConfig.from_request(variant["ServerlessConfig"]) \
                if "ServerlessConfig" in variant else None
            if serverless is None and "InstanceType" not in variant:
                raise ValidationException(f"variant {variant['VariantName']!r} has neither InstanceType nor "
                                          "ServerlessConfig; give it one of them")
            variants.append(VariantSpec(
                variant_name=variant["VariantName"],
                model_name=variant["ModelName"],
                instance_type=variant.get("InstanceType", ""),
                instance_count=serverless.provisioned if serverless else int(variant.get("InitialInstanceCount", 1)),
                serverless=serverless,
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
        try:
            arn = self._aws("sagemaker").describe_endpoint(EndpointName=name)["EndpointArn"]
        except ClientError as exc:
            raise EndpointNotFound(self._region, name) from exc
        variants = self._variants(config_name)
        # Blue/green: the new fleet starts while the old one serves, so both count against the quotas
        # until the update is over; refused or rolled back, only what serves counts again.
        self._quotas.admit(Usage.ENDPOINT, name, endpoint_variants(variants), keep_current=True)
        try:
            self.runtime.update(name, config_name, variants)
            self._async.attach(name, config_name)
        except KeyError as exc:  # deleted since moto described it
            raise EndpointNotFound(self._region, name) from exc
        except EndpointBusy as exc:
            raise ValidationException(str(exc)) from exc
        finally:
            self._quotas.settle(Usage.ENDPOINT, name)
        return Answer.of_json(200, {"EndpointArn": arn})

    def update_weights_and_capacities(self, request: dict[str, Any], forward: Forward) -> Answer:
        name = str(request.get("EndpointName", ""))
        desired: dict[str, tuple[float | None, int | None]] = {}
        with ValidationException.raised_for(TypeError, AttributeError):  # an item that is not an object
            for item in request.get("DesiredWeightsAndCapacities") or []:
                count = item.get("DesiredInstanceCount")
                weight = item.get("DesiredWeight")
                desired[str(item.get("VariantName", ""))] = (
                    None if weight is None else variant_weight(weight, "DesiredWeight"),
                    None if count is None else instance_count(count, "DesiredInstanceCount"))
        endpoint = self.runtime.get(name)
        if endpoint is not None and endpoint.status is not EndpointStatus.IN_SERVICE:
            raise ValidationException(f"Cannot update in-progress endpoint \"{name}\": it is "
                                      f"{endpoint.status.value}; wait until it is InService")
        self._quotas.admit_scale(name, {variant: count for variant, (_w, count) in desired.items() if count})
        try:
            answer = forward()  # moto checks that the endpoint and every variant name exist
            if answer.ok:
                with ValidationException.raised_for(KeyError, EndpointBusy):  # deleted, or busy, since moto looked
                    self.runtime.scale(name, desired)
            return answer
        finally:  # from here the runtime's own fleet is what counts (service_quotas.py)
            self._quotas.settle(Usage.ENDPOINT, name)

    def delete_endpoint(self, request: dict[str, Any], forward: Forward) -> Answer:
        name = str(request.get("EndpointName", ""))
        with self._names.held(name):  # as create_endpoint does: record and runtime go together
            answer = forward()
            if answer.ok:
                self._async.detach(name)  # its queued requests get failure objects
                self.runtime.delete(name)
        return answer

    def create_endpoint_config(self, request: dict[str, Any], forward: Forward) -> Answer:
        check_production_variants(request.get("ProductionVariants") or [])  # serverless_config.py
        with ValidationException.raised_for(TypeError):  # a variant that is not an object
            for variant in request.get("ProductionVariants") or []:
                if "InitialVariantWeight" in variant:
                    variant_weight(variant["InitialVariantWeight"], "InitialVariantWeight")
                if "InitialInstanceCount" in variant:
                    instance_count(variant["InitialInstanceCount"], "InitialInstanceCount")
        with (ValidationException.raised_for(ConfigurationError),
              ValidationException.raised_for(KeyError, TypeError, prefix="malformed ProductionVariants: ")):
            recorded = self._types.record(request)  # ConfigurationError: an instance type it does not know
        asynchronous = self._async.check(request)  # AsyncInferenceConfig, checked as AWS does (async_config.py)
        answer = forward(recorded)
        if not answer.ok:
            self._types.forget(str(request.get("EndpointConfigName", "")))
        else:
            self._async.record_config(str(request.get("EndpointConfigName", "")), asynchronous)
        return answer

    def describe_endpoint_config(self, request: dict[str, Any], forward: Forward) -> Answer:
        answer = forward()
        return answer.with_json(self._types.restore(answer.json())) if answer.ok else answer

    def delete_endpoint_config(self, request: dict[str, Any], forward: Forward) -> Answer:
        answer = forward()
        if answer.ok:
            self._types.forget(str(request.get("EndpointConfigName", "")))
            self._async.forget_config(str(request.get("EndpointConfigName", "")))
        return answer


def variant_weight(raw: Any, field: str) -> float:
    """A variant's share of traffic: a finite number of at least 0 (AWS's own bound)."""
    weight = _number(raw, field)
    if not math.isfinite(weight) or weight < 0:
        raise ValidationException(f"{field} must be a finite number of at least 0, got {raw!r}")
    return weight


def instance_count(raw: Any, field: str) -> int:
    count = _number(raw, field)
    if not count.is_integer() or count < 1:
        raise ValidationException(f"{field} must be a whole number of at least 1 for a real-time endpoint, "
                                  f"got {raw!r}; delete the endpoint to stop it")
    return int(count)


def _number(raw: Any, field: str) -> float:
    if isinstance(raw, bool):
        raise ValidationException(f"{field} must be a number, got {raw!r}")
    try:
        return float(raw)
    except (TypeError, ValueError, OverflowError):
        raise ValidationException(f"{field} must be a number, got {raw!r}") from None
