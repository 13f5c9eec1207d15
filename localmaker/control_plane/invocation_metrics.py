"""Per-endpoint invocation metrics, published to CloudWatch (moto) under SageMaker's own names.

SageMaker publishes Invocations, Invocation4XXErrors, Invocation5XXErrors, ModelLatency and
OverheadLatency (both in microseconds) in the ``AWS/SageMaker`` namespace, with the dimensions
EndpointName and VariantName. Requests are aggregated and sent about once a second as statistic sets,
so a burst of invocations costs one PutMetricData call, not one per request.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import datetime, timezone
from typing import Any

logger = logging.getLogger(__name__)

NAMESPACE = "AWS/SageMaker"
MAX_METRICS_PER_CALL = 1000  # PutMetricData's own limit


@dataclass
class _Series:
    """Samples of one metric between two flushes."""

    unit: str
    values: list[float] = field(default_factory=list)

    def statistic_values(self) -> dict[str, float]:
        return {"SampleCount": float(len(self.values)), "Sum": float(sum(self.values)),
                "Minimum": float(min(self.values)), "Maximum": float(max(self.values))}


class InvocationMetrics:
    def __init__(self, cloudwatch: Callable[[], Any], interval_s: float = 1.0) -> None:
        self._cloudwatch = cloudwatch
        self._interval_s = interval_s
        self._pending: dict[tuple[str, str, str], _Series] = {}
        self._lock = threading.Lock()
        self._send_lock = threading.Lock()
        self._stopped = threading.Event()
        self._thread: threading.Thread | None = None

    def record(self, endpoint: str, variant: str, status: int, model_latency_s: float | None,
               overhead_s: float) -> None:
        """One InvokeEndpoint call; ``model_latency_s`` is None when the container never answered."""
        samples = [("Invocations", "None", 1.0),
                   ("Invocation4XXErrors", "None", float(400 <= status < 500)),
                   ("Invocation5XXErrors", "None", float(status >= 500)),
                   ("OverheadLatency", "Microseconds", overhead_s * 1e6)]
        if model_latency_s is not None:
            samples.append(("ModelLatency", "Microseconds", model_latency_s * 1e6))
        with self._lock:
            for metric, unit, value in samples:
                self._pending.setdefault((endpoint, variant, metric), _Series(unit)).values.append(value)
            if self._thread is None:
                self._thread = threading.Thread(target=self._run, name="invocation-metrics", daemon=True)
                self._thread.start()

    def record_setup_time(self, endpoint: str, variant: str, setup_s: float) -> None:
        """One serverless cold start: ModelSetupTime, the time to launch new compute, in microseconds."""
        with self._lock:
            self._pending.setdefault((endpoint, variant, "ModelSetupTime"), _Series("Microseconds")).values.append(
                setup_s * 1e6)
            if self._thread is None:
                self._thread = threading.Thread(target=self._run, name="invocation-metrics", daemon=True)
                self._thread.start()

    def flush(self) -> None:
        with self._send_lock:
            with self._lock:
                pending, self._pending = self._pending, {}
            if not pending:
                return
            now = datetime.now(timezone.utc)
            data = [
                {"MetricName": metric, "Unit": series.unit, "Timestamp": now,
                 "Dimensions": [{"Name": "EndpointName", "Value": endpoint}, {"Name": "VariantName", "Value": variant}],
                 "StatisticValues": series.statistic_values()}
                for (endpoint, variant, metric), series in pending.items()
            ]
            try:
                for start in range(0, len(data), MAX_METRICS_PER_CALL):
                    self._cloudwatch().put_metric_data(Namespace=NAMESPACE,
                                                       MetricData=data[start:start + MAX_METRICS_PER_CALL])
            except Exception:  # noqa: BLE001 - a lost metric must never fail an invocation
                logger.exception("could not publish invocation metrics to CloudWatch")

    def stop(self) -> None:
        self._stopped.set()
        self.flush()

    def _run(self) -> None:
        while not self._stopped.wait(self._interval_s):
            self.flush()
