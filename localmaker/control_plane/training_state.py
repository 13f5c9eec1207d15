"""What one training job is: the request it came from, its status, its progress, and how it describes itself.

The runtime (``training_runtime.py``) and the script's supervision (``training_process.py``) change this
state; the training actions and localmaker's own routes only read it. A job's ``lock`` guards its status
and the start of its script, so that a stop either prevents the start or sees the process.
"""

from __future__ import annotations

import enum
import subprocess
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from localmaker.spec.hyperparameters import decode_hyperparameter

HOST = "algo-1"  # the one host of a local job, as SageMaker names the first instance


class TrainingStatus(str, enum.Enum):
    IN_PROGRESS = "InProgress"
    COMPLETED = "Completed"
    FAILED = "Failed"
    STOPPING = "Stopping"
    STOPPED = "Stopped"


@dataclass(frozen=True)
class TrainingSpec:
    """What CreateTrainingJob asked for, read from the request itself."""

    name: str
    hyperparameters: dict[str, str]
    channels: dict[str, str]
    output_path: str
    instance_type: str
    max_runtime_s: int
    environment: dict[str, str] = field(default_factory=dict)

    @classmethod
    def from_request(cls, request: dict[str, Any]) -> TrainingSpec:
        channels = {c["ChannelName"]: c["DataSource"]["S3DataSource"]["S3Uri"]
                    for c in request.get("InputDataConfig") or []}
        return cls(
            name=request["TrainingJobName"],
            hyperparameters=dict(request.get("HyperParameters") or {}),
            channels=channels,
            output_path=request["OutputDataConfig"]["S3OutputPath"],
            instance_type=request["ResourceConfig"]["InstanceType"],
            max_runtime_s=int((request.get("StoppingCondition") or {}).get("MaxRuntimeInSeconds", 86400)),
            environment=dict(request.get("Environment") or {}),
        )

    @property
    def model_artifact_url(self) -> str:
        return f"{self.output_path.rstrip('/')}/{self.name}/output/model.tar.gz"

    def hyperparameter(self, key: str) -> str | None:
        """The SDK JSON-encodes every value; unquote strings the way the training toolkit does."""
        raw = self.hyperparameters.get(key)
        if raw is None:
            return None
        value = decode_hyperparameter(raw)
        return value if isinstance(value, str) else raw


@dataclass
class Progress:
    step: int = 0
    total: int = 0
    loss: float | None = None


@dataclass
class TrainingJobRecord:
    """The control plane's record of one job it runs (moto keeps its own record of the request)."""

    spec: TrainingSpec
    work_dir: Path
    status: TrainingStatus = TrainingStatus.IN_PROGRESS
    secondary_status: str = "Starting"
    failure_reason: str = ""
    progress: Progress = field(default_factory=Progress)
    started_at: float = field(default_factory=time.time)
    ended_at: float | None = None
    process: subprocess.Popen[bytes] | None = None
    # Guards status and the start of the process, so a stop either prevents the start or sees the process.
    lock: threading.Lock = field(default_factory=threading.Lock, repr=False, compare=False)

    @property
    def log_file(self) -> Path:
        return self.work_dir / "training.log"

    @property
    def log_stream(self) -> str:
        """SageMaker's stream name: ``<job>/algo-1-<start time>``."""
        return f"{self.spec.name}/{HOST}-{int(self.started_at)}"

    def describe(self) -> dict[str, Any]:
        return {
            "TrainingJobName": self.spec.name,
            "TrainingJobStatus": self.status.value,
            "SecondaryStatus": self.secondary_status,
            "FailureReason": self.failure_reason,
            "Progress": {"Step": self.progress.step, "Total": self.progress.total, "Loss": self.progress.loss},
            "LogFile": str(self.log_file),
        }
