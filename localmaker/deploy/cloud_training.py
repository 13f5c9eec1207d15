"""Following a training job that runs in real SageMaker: its status from DescribeTrainingJob and its log
from CloudWatch Logs, where SageMaker writes one stream per instance (``<job>/algo-1-<time>``).

The local follower reads the control plane's own log route, which AWS does not have.
"""

from __future__ import annotations

import time
from typing import Any

from localmaker.deploy.session import Session
from localmaker.deploy.training_job import TERMINAL
from localmaker.errors import TrainingError
from localmaker.spec.names import TRAINING_LOG_GROUP

POLL_S = 15.0  # a real job takes minutes to start; DescribeTrainingJob is throttled per account


def follow_in_aws(session: Session, job_name: str, logs: bool = True, poll_s: float = POLL_S) -> dict[str, Any]:
    """Wait for the job to end, printing its log lines as they arrive; raise TrainingError unless Completed."""
    reader = _LogReader(session.boto_session.client("logs", region_name=session.region_name), job_name)
    shown_status = ""
    while True:
        description = session.sagemaker_client.describe_training_job(TrainingJobName=job_name)
        status = description["TrainingJobStatus"]
        secondary = description.get("SecondaryStatus", "")
        if logs and secondary != shown_status:
            print(f"[localmaker] {job_name}: {status} ({secondary})", flush=True)
            shown_status = secondary
        if logs:
            for line in reader.new_lines():  # read after the status, so a finished job's last lines are in
                print(line, flush=True)
        if status in TERMINAL:
            if status != "Completed":
                raise TrainingError(job_name, status, description.get("FailureReason", ""))
            return dict(description)
        time.sleep(poll_s)


class _LogReader:
    """Remembers how far each stream was read, so every line is printed once."""

    def __init__(self, client: Any, job_name: str) -> None:
        self._client = client
        self._prefix = f"{job_name}/"
        self._tokens: dict[str, str] = {}

    def new_lines(self) -> list[str]:
        try:
            streams = self._client.describe_log_streams(logGroupName=TRAINING_LOG_GROUP,
                                                        logStreamNamePrefix=self._prefix)["logStreams"]
        except self._client.exceptions.ResourceNotFoundException:
            return []  # no instance has started logging yet
        lines: list[str] = []
        for stream in sorted(streams, key=lambda s: s["logStreamName"]):
            name = stream["logStreamName"]
            while True:
                request: dict[str, Any] = {"logGroupName": TRAINING_LOG_GROUP, "logStreamName": name,
                                           "startFromHead": True}
                if name in self._tokens:
                    request["nextToken"] = self._tokens[name]
                page = self._client.get_log_events(**request)
                self._tokens[name] = page["nextForwardToken"]
                if not page["events"]:
                    break
                lines.extend(event["message"].rstrip("\n") for event in page["events"])
        return lines
