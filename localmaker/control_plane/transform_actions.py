"""SageMaker transform-job actions, intercepted so that a recorded job also runs, and its progress route.

moto 5 records CreateTransformJob as Completed the moment it is made, runs nothing, and has no
StopTransformJob. Here CreateTransformJob is checked as AWS checks it (limits, enums, DataProcessing's
JSONPath, the model's existence), recorded by moto and run by ``TransformRuntime``; Describe and List
answer what really happened; StopTransformJob is answered here. ``GET /_localmaker/transform-jobs/<name>``
reports the records done so far, which the SageMaker API has no field for (the CLI's progress bar).
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from botocore.exceptions import ClientError

from localmaker.control_plane.answers import Answer, overlaid
from localmaker.control_plane.api_errors import (
    ResourceInUse,
    TransformJobNotFound,
    ValidationException,
)
from localmaker.control_plane.resource_names import checked_names
from localmaker.control_plane.service_quotas import ServiceQuotas, Usage
from localmaker.control_plane.transform_runtime import TransformModel, TransformRuntime
from localmaker.control_plane.transform_state import TransformRequestError, TransformSpec, TransformStatus
from localmaker.errors import ConfigurationError
from localmaker.spec.instance_types import lookup
from localmaker.spec.names import sagemaker_arn

Forward = Callable[..., Answer]
Action = Callable[[dict[str, Any], Forward], Answer]


class TransformActions:
    """Each action answers, or raises an ApiError that the control plane's app serializes."""

    def __init__(self, transform: TransformRuntime, aws: Callable[[str], Any], region: str,
                 quotas: ServiceQuotas | None = None) -> None:
        self.transform = transform
        self._quotas = quotas or ServiceQuotas.from_settings()  # instances per type and in all (service_quotas.py)
        self._aws = aws  # boto3 clients that talk to this very control plane, for what moto recorded
        self._region = region

    def actions(self) -> dict[str, Action]:
        return checked_names({  # every name checked as AWS checks it, before moto records it (resource_names.py)
            "CreateTransformJob": self.create_transform_job,
            "DescribeTransformJob": self.describe_transform_job,
            "ListTransformJobs": self.list_transform_jobs,
            "StopTransformJob": self.stop_transform_job,
        })

    def create_transform_job(self, request: dict[str, Any], forward: Forward) -> Answer:
        with (ValidationException.raised_for(TransformRequestError, ConfigurationError),
              ValidationException.raised_for(KeyError, TypeError, AttributeError,
                                             prefix="malformed CreateTransformJob request: missing or wrong ")):
            spec = TransformSpec.from_request(request)
            lookup(spec.instance_type)  # ConfigurationError: a type localmaker does not know
        in_use = (f"Job name must be unique within an AWS account and region, and a job with this name already "
                  f"exists ({sagemaker_arn(self._region, 'transform-job', spec.name)})")
        if self.transform.get(spec.name) is not None:
            raise ResourceInUse(in_use)
        model = self._model(spec.model_name)
        self._quotas.admit(Usage.TRANSFORM, spec.name, {"": (spec.instance_type, spec.instance_count)})
        answer = forward()
        if answer.ok:
            try:
                self.transform.create(spec, model)
            except ValueError:  # the same name, created by a concurrent call just now
                raise ResourceInUse(in_use) from None
        return answer

    def _model(self, name: str) -> TransformModel:
        """The job's model as moto recorded it; AWS refuses a job whose model does not exist."""
        try:
            described = self._aws("sagemaker").describe_model(ModelName=name)
        except ClientError as exc:
            raise ValidationException(f"Could not find model \"{sagemaker_arn(self._region, 'model', name)}\".") \
                from exc
        container = described.get("PrimaryContainer") or (described.get("Containers") or [{}])[0]
        if "ModelDataUrl" not in container:
            raise ValidationException(f"model {name!r} has no ModelDataUrl; point it at a model.tar.gz in S3")
        return TransformModel(name=name, model_data_url=str(container["ModelDataUrl"]),
                              environment={str(k): str(v) for k, v in (container.get("Environment") or {}).items()})

    def describe_transform_job(self, request: dict[str, Any], forward: Forward) -> Answer:
        return overlaid(forward(), self._overlay)

    def list_transform_jobs(self, request: dict[str, Any], forward: Forward) -> Answer:
        """moto filters StatusEquals on its own always-Completed record, so the filter is applied here."""
        wanted = request.pop("StatusEquals", None)
        answer = overlaid(forward(request) if wanted else forward(), self._overlay, "TransformJobSummaries")
        if not wanted or not answer.ok:
            return answer
        payload = answer.json()
        payload["TransformJobSummaries"] = [s for s in payload.get("TransformJobSummaries", [])
                                            if s.get("TransformJobStatus") == wanted]
        return answer.with_json(payload)

    def _overlay(self, record: dict[str, Any]) -> None:
        """Replace moto's always-Completed job with what really happened."""
        job = self.transform.get(str(record.get("TransformJobName", "")))
        if job is None:
            return
        record["TransformJobStatus"] = job.status.value
        if "TransformInput" in record:  # a Describe, not a summary
            record["TransformStartTime"] = job.started_at
        if job.ended_at is not None:
            record["TransformEndTime"] = job.ended_at
        else:
            record.pop("TransformEndTime", None)
        if job.status is TransformStatus.FAILED:
            record["FailureReason"] = job.failure_reason
        else:
            record.pop("FailureReason", None)
        if "LastModifiedTime" in record:  # a summary
            record["LastModifiedTime"] = job.ended_at or job.started_at

    def stop_transform_job(self, request: dict[str, Any], forward: Forward) -> Answer:
        """moto has no StopTransformJob: answered here, Stopping at once and Stopped once its instances are gone."""
        name = str(request.get("TransformJobName", ""))
        if self.transform.get(name) is None:
            raise TransformJobNotFound(self._region, name)
        self.transform.stop(name)  # a job that has already ended stays as it ended
        return Answer.of_json(200, {})
