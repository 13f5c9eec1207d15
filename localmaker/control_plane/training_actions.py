"""SageMaker training-job actions, intercepted so that a recorded job also runs."""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import Any

from localmaker.control_plane.answers import Answer, overlaid
from localmaker.control_plane.api_errors import ResourceInUse, ValidationException
from localmaker.control_plane.resource_names import checked_names
from localmaker.control_plane.service_quotas import ServiceQuotas, Usage, job_instances
from localmaker.control_plane.training_runtime import TrainingRuntime
from localmaker.control_plane.training_state import TrainingSpec, TrainingStatus
from localmaker.spec.instance_types import lookup

Forward = Callable[..., Answer]
Action = Callable[[dict[str, Any], Forward], Answer]


class TrainingActions:
    """Each action answers, or raises an ApiError that the control plane's app serializes."""

    def __init__(self, training: TrainingRuntime, quotas: ServiceQuotas | None = None) -> None:
        self.training = training
        self._quotas = quotas or ServiceQuotas.from_settings()  # instances per type and in all (service_quotas.py)
        # What each job's request said of its metrics: moto records a made-up definition in their place.
        self._metric_definitions: dict[str, Any] = {}

    def actions(self) -> dict[str, Action]:
        return checked_names({  # every name checked as AWS checks it, before moto records it (resource_names.py)
            "CreateTrainingJob": self.create_training_job,
            "DescribeTrainingJob": self.describe_training_job,
            "ListTrainingJobs": self.list_training_jobs,
            "StopTrainingJob": self.stop_training_job,
        })

    def create_training_job(self, request: dict[str, Any], forward: Forward) -> Answer:
        # ValueError: a ConfigurationError (an instance type localmaker does not know), or a value of the
        # wrong form, such as a MaxRuntimeInSeconds that is not a whole number.
        with (ValidationException.raised_for(ValueError),
              ValidationException.raised_for(KeyError, TypeError, prefix="malformed CreateTrainingJob request: "
                                                                          "missing ")):
            spec = TrainingSpec.from_request(request)
            lookup(spec.instance_type)
        if self.training.get(spec.name) is not None:
            raise ResourceInUse(f"Training job {spec.name!r} already exists.")
        self._quotas.admit(Usage.TRAINING, spec.name, job_instances(spec.instance_type, request.get("ResourceConfig")))
        answer = forward()
        if answer.ok:
            self._metric_definitions[spec.name] = (request.get("AlgorithmSpecification") or {}).get("MetricDefinitions")
            self.training.create(spec)
        return answer

    def describe_training_job(self, request: dict[str, Any], forward: Forward) -> Answer:
        return overlaid(forward(), self._overlay)

    def list_training_jobs(self, request: dict[str, Any], forward: Forward) -> Answer:
        return overlaid(forward(), self._overlay, "TrainingJobSummaries")

    def _overlay(self, record: dict[str, Any]) -> None:
        """Replace moto's always-Completed job with what really happened.

        ``ModelArtifacts`` stays whatever the job's status: the model requires it, and it names where the
        job's model goes (``<output_path>/<job>/output/model.tar.gz``, as moto recorded it), not that one
        was uploaded there. ``MetricDefinitions`` are the request's own, or none.
        """
        job = self.training.get(str(record.get("TrainingJobName", "")))
        if job is None:
            return
        algorithm = record.get("AlgorithmSpecification")
        if isinstance(algorithm, dict):
            algorithm.pop("MetricDefinitions", None)
            if definitions := self._metric_definitions.get(job.spec.name):
                algorithm["MetricDefinitions"] = definitions
        record["TrainingJobStatus"] = job.status.value
        if "SecondaryStatus" in record or "ModelArtifacts" in record:  # a Describe, not a summary
            record["SecondaryStatus"] = job.secondary_status
            record["ModelArtifacts"] = {"S3ModelArtifacts": job.spec.model_artifact_url}
        record["TrainingStartTime"] = job.started_at
        if job.ended_at is not None:
            record["TrainingEndTime"] = job.ended_at
        else:
            record.pop("TrainingEndTime", None)
        if job.status is TrainingStatus.FAILED:
            record["FailureReason"] = job.failure_reason
        if "FinalMetricDataList" in record:
            loss = job.progress.loss
            if loss is None:
                record.pop("FinalMetricDataList")  # no metric yet: unset, as AWS leaves it
            else:
                record["FinalMetricDataList"] = [
                    {"MetricName": "train:loss", "Value": loss, "Timestamp": job.ended_at or time.time()}]

    def stop_training_job(self, request: dict[str, Any], forward: Forward) -> Answer:
        answer = forward()
        if answer.ok:
            self.training.stop(str(request.get("TrainingJobName", "")))
        return answer
