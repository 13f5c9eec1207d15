"""Invocation metrics aggregate per endpoint and variant, and land in CloudWatch (moto) as SageMaker's."""

from __future__ import annotations

from datetime import datetime, timedelta, timezone

import boto3
import pytest
from moto import mock_aws

from localmaker.control_plane.invocation_metrics import NAMESPACE, InvocationMetrics


@pytest.fixture
def cloudwatch(monkeypatch):
    for key, value in {"AWS_ACCESS_KEY_ID": "testing", "AWS_SECRET_ACCESS_KEY": "testing",
                       "AWS_DEFAULT_REGION": "us-east-1"}.items():
        monkeypatch.setenv(key, value)
    with mock_aws():
        yield boto3.client("cloudwatch")


def _statistic(cloudwatch, metric: str, variant: str, statistic: str) -> float:
    now = datetime.now(timezone.utc)
    points = cloudwatch.get_metric_statistics(
        Namespace=NAMESPACE, MetricName=metric, Period=3600, Statistics=[statistic],
        StartTime=now - timedelta(minutes=5), EndTime=now + timedelta(minutes=5),
        Dimensions=[{"Name": "EndpointName", "Value": "e"}, {"Name": "VariantName", "Value": variant}])
    return float(sum(p[statistic] for p in points["Datapoints"]))


def test_one_flush_carries_every_request_of_each_variant(cloudwatch):
    metrics = InvocationMetrics(lambda: cloudwatch, interval_s=3600)  # flushed by hand below
    metrics.record("e", "A", 200, 0.010, 0.001)
    metrics.record("e", "A", 200, 0.030, 0.002)
    metrics.record("e", "A", 400, 0.002, 0.001)
    metrics.record("e", "B", 500, None, 0.004)  # the container never answered: no model latency
    metrics.flush()

    assert _statistic(cloudwatch, "Invocations", "A", "Sum") == 3
    assert _statistic(cloudwatch, "Invocation4XXErrors", "A", "Sum") == 1
    assert _statistic(cloudwatch, "Invocation5XXErrors", "A", "Sum") == 0
    assert _statistic(cloudwatch, "ModelLatency", "A", "Maximum") == pytest.approx(30_000)
    assert _statistic(cloudwatch, "ModelLatency", "A", "Minimum") == pytest.approx(2_000)
    assert _statistic(cloudwatch, "OverheadLatency", "A", "Sum") == pytest.approx(4_000)
    assert _statistic(cloudwatch, "Invocation5XXErrors", "B", "Sum") == 1
    assert _statistic(cloudwatch, "ModelLatency", "B", "SampleCount") == 0

    metrics.flush()  # nothing new: nothing sent twice
    assert _statistic(cloudwatch, "Invocations", "A", "Sum") == 3


def test_a_cloudwatch_outage_never_reaches_the_caller():
    def broken():
        raise ConnectionError("CloudWatch is down")

    metrics = InvocationMetrics(broken, interval_s=3600)
    metrics.record("e", "A", 200, 0.01, 0.001)
    metrics.stop()  # flushes, logs, and returns
