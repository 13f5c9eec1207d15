"""What one transform job is: the request it came from, checked as AWS checks it, and its status and progress.

The runtime (``transform_runtime.py``) changes this state; the transform actions and localmaker's own
route only read it. A job's ``lock`` guards its status, so that a stop and the job's own end cannot both
decide how it ended.
"""

from __future__ import annotations

import enum
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from localmaker.control_plane.transform_data_processing import DataProcessing

MAX_PAYLOAD_LIMIT_MB = 100  # AWS: MaxPayloadInMB, and MaxPayloadInMB x MaxConcurrentTransforms, at most 100
DEFAULT_MAX_PAYLOAD_MB = 6
DEFAULT_INVOCATION_TIMEOUT_S = 600  # ModelClientConfig.InvocationsTimeoutInSeconds' default
DEFAULT_MAX_RETRIES = 3  # ModelClientConfig.InvocationsMaxRetries' default
SPLIT_TYPES = ("None", "Line", "RecordIO", "TFRecord")


class TransformStatus(str, enum.Enum):
    IN_PROGRESS = "InProgress"
    COMPLETED = "Completed"
    FAILED = "Failed"
    STOPPING = "Stopping"
    STOPPED = "Stopped"


class TransformRequestError(ValueError):
    """A CreateTransformJob request AWS would refuse; the message is AWS's validation message."""


@dataclass(frozen=True)
class TransformSpec:
    """What CreateTransformJob asked for, read from the request itself and checked against AWS's limits."""

    name: str
    model_name: str
    data_type: str
    input_uri: str
    content_type: str
    split_type: str
    compression: str
    batch_strategy: str
    max_payload_mb: int
    max_concurrent: int
    output_path: str
    accept: str
    assemble_with: str
    instance_type: str
    instance_count: int
    invocation_timeout_s: int
    max_retries: int
    environment: dict[str, str] = field(default_factory=dict)
    data_processing: DataProcessing | None = None

    @classmethod
    def from_request(cls, request: dict[str, Any]) -> TransformSpec:
        """KeyError for a missing required member, TransformRequestError for a value AWS refuses."""
        source = request["TransformInput"]["DataSource"]["S3DataSource"]
        transform_input = request["TransformInput"]
        output = request["TransformOutput"]
        resources = request["TransformResources"]
        client = request.get("ModelClientConfig") or {}
        max_payload = _whole(request.get("MaxPayloadInMB", DEFAULT_MAX_PAYLOAD_MB), "maxPayloadInMB", 0,
                             MAX_PAYLOAD_LIMIT_MB)
        max_concurrent = _whole(request.get("MaxConcurrentTransforms", 1) or 1, "maxConcurrentTransforms", 0, None)
        if max_payload * max_concurrent > MAX_PAYLOAD_LIMIT_MB:
            raise TransformRequestError(
                f"MaxConcurrentTransforms ({max_concurrent}) x MaxPayloadInMB ({max_payload}) must not exceed "
                f"{MAX_PAYLOAD_LIMIT_MB} MB; lower either")
        split_type = str(transform_input.get("SplitType") or "None")
        _enum(split_type, "transformInput.splitType", SPLIT_TYPES)
        data_type = str(source["S3DataType"])
        _enum(data_type, "transformInput.dataSource.s3DataSource.s3DataType", ("S3Prefix", "ManifestFile"))
        strategy = str(request.get("BatchStrategy") or "MultiRecord")
        _enum(strategy, "batchStrategy", ("MultiRecord", "SingleRecord"))
        assemble_with = str(output.get("AssembleWith") or "None")
        _enum(assemble_with, "transformOutput.assembleWith", ("None", "Line"))
        compression = str(transform_input.get("CompressionType") or "None")
        _enum(compression, "transformInput.compressionType", ("None", "Gzip"))
        for uri, member in ((source["S3Uri"], "transformInput.dataSource.s3DataSource.s3Uri"),
                            (output["S3OutputPath"], "transformOutput.s3OutputPath")):
            if not str(uri).startswith("s3://") or len(str(uri)) <= len("s3://"):
                raise TransformRequestError(f"1 validation error detected: Value '{uri}' at '{member}' failed to "
                                            "satisfy constraint: Member must satisfy regular expression pattern: "
                                            "(https|s3)://([^/]+)/?(.*)")
        content_type = str(transform_input.get("ContentType") or "")
        accept = str(output.get("Accept") or "")
        try:
            processing = DataProcessing.from_request(request.get("DataProcessing"), content_type, accept)
        except ValueError as exc:
            raise TransformRequestError(str(exc)) from None
        if processing.join_input and split_type != "Line" and processing.record_format == "csv":
            raise TransformRequestError("JoinSource Input joins each CSV row with its answer: set SplitType to Line")
        return cls(
            name=request["TransformJobName"], model_name=request["ModelName"], data_type=data_type,
            input_uri=str(source["S3Uri"]), content_type=content_type, split_type=split_type,
            compression=compression, batch_strategy=strategy, max_payload_mb=max_payload,
            max_concurrent=max_concurrent, output_path=str(output["S3OutputPath"]), accept=accept,
            assemble_with=assemble_with, instance_type=str(resources["InstanceType"]),
            instance_count=_whole(resources["InstanceCount"], "transformResources.instanceCount", 1, None),
            invocation_timeout_s=_whole(client.get("InvocationsTimeoutInSeconds", DEFAULT_INVOCATION_TIMEOUT_S),
                                        "modelClientConfig.invocationsTimeoutInSeconds", 1, 3600),
            max_retries=_whole(client.get("InvocationsMaxRetries", DEFAULT_MAX_RETRIES),
                               "modelClientConfig.invocationsMaxRetries", 0, 3),
            environment={str(k): str(v) for k, v in (request.get("Environment") or {}).items()},
            data_processing=processing if processing.active else None,
        )

    def container_environment(self) -> dict[str, str]:
        """What SageMaker tells a batch container about the job (the inference toolkits read these)."""
        return {"SAGEMAKER_BATCH": "true", "SAGEMAKER_MAX_PAYLOAD_IN_MB": str(self.max_payload_mb),
                "SAGEMAKER_BATCH_STRATEGY": "SINGLE_RECORD" if self.batch_strategy == "SingleRecord"
                else "MULTI_RECORD", "SAGEMAKER_MAX_CONCURRENT_TRANSFORMS": str(self.max_concurrent)}


def _whole(raw: Any, member: str, minimum: int, maximum: int | None) -> int:
    if isinstance(raw, bool) or not isinstance(raw, int | float) or float(raw) != int(raw):
        raise TransformRequestError(f"1 validation error detected: Value '{raw}' at '{member}' failed to satisfy "
                                    "constraint: Member must be a whole number")
    value = int(raw)
    if value < minimum:
        raise TransformRequestError(f"1 validation error detected: Value '{value}' at '{member}' failed to satisfy "
                                    f"constraint: Member must have value greater than or equal to {minimum}")
    if maximum is not None and value > maximum:
        raise TransformRequestError(f"1 validation error detected: Value '{value}' at '{member}' failed to satisfy "
                                    f"constraint: Member must have value less than or equal to {maximum}")
    return value


def _enum(value: str, member: str, allowed: tuple[str, ...]) -> None:
    if value not in allowed:
        raise TransformRequestError(f"1 validation error detected: Value '{value}' at '{member}' failed to satisfy "
                                    f"constraint: Member must satisfy enum value set: [{', '.join(allowed)}]")


@dataclass
class Progress:
    files_total: int = 0
    files_done: int = 0
    records_total: int = 0
    records_done: int = 0


@dataclass
class TransformJobRecord:
    """The control plane's record of one job it runs (moto keeps its own record of the request)."""

    spec: TransformSpec
    work_dir: Path
    status: TransformStatus = TransformStatus.IN_PROGRESS
    failure_reason: str = ""
    progress: Progress = field(default_factory=Progress)
    started_at: float = field(default_factory=time.time)
    ended_at: float | None = None
    instance_ids: list[str] = field(default_factory=list)
    pids: list[int] = field(default_factory=list)
    stop_requested: threading.Event = field(default_factory=threading.Event, repr=False, compare=False)
    lock: threading.Lock = field(default_factory=threading.Lock, repr=False, compare=False)

    def describe(self) -> dict[str, Any]:
        return {
            "TransformJobName": self.spec.name,
            "TransformJobStatus": self.status.value,
            "FailureReason": self.failure_reason,
            "Progress": {"FilesTotal": self.progress.files_total, "FilesDone": self.progress.files_done,
                         "RecordsTotal": self.progress.records_total, "RecordsDone": self.progress.records_done},
            "Instances": [{"InstanceId": i, "Pid": p} for i, p in zip(self.instance_ids, self.pids, strict=False)],
        }
