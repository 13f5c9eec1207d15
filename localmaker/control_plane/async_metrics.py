"""The backlog metrics of asynchronous endpoints, put to CloudWatch (moto) under SageMaker's names.

SageMaker publishes ApproximateBacklogSize (requests queued or being processed),
ApproximateBacklogSizePerInstance (that divided by the instances in service) and
ApproximateAgeOfOldestRequest (seconds) in ``AWS/SageMaker`` with the one dimension EndpointName; they
are what async auto-scaling policies track. A sample goes out each interval while an endpoint has a
backlog, and once more when it empties, so a graph ends at zero rather than at the last busy value.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable
from datetime import datetime, timezone
from typing import Any

from localmaker.control_plane.invocation_metrics import NAMESPACE

logger = logging.getLogger(__name__)

# endpoint name -> (backlog size, instances in service, age of the oldest request in seconds)
Backlogs = Callable[[], dict[str, tuple[int, int, float]]]


class BacklogMetrics:
    def __init__(self, cloudwatch: Callable[[], Any], backlogs: Backlogs, interval_s: float = 1.0) -> None:
        self._cloudwatch = cloudwatch
        self._backlogs = backlogs
        self._interval_s = interval_s
        self._busy: set[str] = set()  # endpoints whose last sample was not zero
        self._stopped = threading.Event()
        self._lock = threading.Lock()
        self._thread: threading.Thread | None = None

    def start(self) -> None:
        with self._lock:
            if self._thread is None and not self._stopped.is_set():
                self._thread = threading.Thread(target=self._run, name="async-backlog-metrics", daemon=True)
                self._thread.start()

    def publish(self) -> None:
        """One sample for every endpoint with a backlog, or whose backlog just emptied."""
        with self._lock:
            data = []
            now = datetime.now(timezone.utc)
            for endpoint, (size, instances, age_s) in self._backlogs().items():
                if size == 0 and endpoint not in self._busy:
                    continue
                (self._busy.add if size else self._busy.discard)(endpoint)
                dimensions = [{"Name": "EndpointName", "Value": endpoint}]
                for metric, value, unit in (("ApproximateBacklogSize", float(size), "Count"),
                                            ("ApproximateBacklogSizePerInstance", size / max(1, instances), "Count"),
                                            ("ApproximateAgeOfOldestRequest", age_s, "Seconds")):
                    data.append({"MetricName": metric, "Dimensions": dimensions, "Timestamp": now,
                                 "Value": value, "Unit": unit})
            if not data:
                return
            try:
                self._cloudwatch().put_metric_data(Namespace=NAMESPACE, MetricData=data)
            except Exception:  # noqa: BLE001 - a lost sample must never stop the queue
                logger.exception("could not publish async backlog metrics to CloudWatch")

    def stop(self) -> None:
        self._stopped.set()
        self.publish()

    def _run(self) -> None:
        while not self._stopped.wait(self._interval_s):
            self.publish()
