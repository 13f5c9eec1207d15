"""Container and training logs land in (moto's) CloudWatch Logs, where boto3 reads them as on AWS."""

from __future__ import annotations

import re
import textwrap
import time

import pytest

from localmaker.deploy import Estimator, Model
from localmaker.serializers import JSONSerializer
from tests.e2e.conftest import ROLE

pytestmark = pytest.mark.e2e


def _messages(logs, group: str, stream: str, expected: str, timeout_s: float = 15) -> list[str]:
    """The shipper runs about once a second: wait for the expected line rather than guess a delay."""
    deadline = time.monotonic() + timeout_s
    messages: list[str] = []
    while time.monotonic() < deadline:
        try:
            events = logs.get_log_events(logGroupName=group, logStreamName=stream, startFromHead=True)["events"]
            messages = [event["message"] for event in events]
        except logs.exceptions.ResourceNotFoundException:
            messages = []
        if any(expected in message for message in messages):
            break
        time.sleep(0.3)
    return messages


def test_each_instance_logs_to_its_own_stream_under_the_endpoint_group(session, tiny_qwen3_dir):
    logs = session.boto_session.client("logs", endpoint_url=session.endpoint_url)
    predictor = Model(model_data=str(tiny_qwen3_dir), role=ROLE, sagemaker_session=session).deploy(
        initial_instance_count=1, instance_type="ml.m5.large", serializer=JSONSerializer(), endpoint_name="logged")
    try:
        predictor.predict({"inputs": ["a line for the log"]})
        group = "/aws/sagemaker/Endpoints/logged"
        streams = [s["logStreamName"] for s in logs.describe_log_streams(logGroupName=group)["logStreams"]]
        assert len(streams) == 1 and re.fullmatch(r"AllTraffic/i-[0-9a-f]{17}", streams[0]), streams
        messages = _messages(logs, group, streams[0], "POST /invocations")
        assert any("loaded embedding model" in m for m in messages)
        assert any("POST /invocations" in m for m in messages)
    finally:
        predictor.delete_endpoint()


def test_a_training_job_logs_to_the_training_group(session, tmp_path):
    source = tmp_path / "src"
    source.mkdir()
    (source / "train.py").write_text(textwrap.dedent("""
        print("epoch 1 of 1: loss 0.5", flush=True)
    """))
    (tmp_path / "data.txt").write_text("x")
    estimator = Estimator(entry_point="train.py", source_dir=source, role=ROLE, instance_type="ml.m5.large",
                          sagemaker_session=session)
    estimator.fit(f"file://{tmp_path / 'data.txt'}", job_name="logged-job", logs=False)
    logs = session.boto_session.client("logs", endpoint_url=session.endpoint_url)
    streams = logs.describe_log_streams(logGroupName="/aws/sagemaker/TrainingJobs",
                                        logStreamNamePrefix="logged-job/")["logStreams"]
    assert len(streams) == 1 and streams[0]["logStreamName"].startswith("logged-job/algo-1-")
    messages = _messages(logs, "/aws/sagemaker/TrainingJobs", streams[0]["logStreamName"], "epoch 1 of 1")
    assert "epoch 1 of 1: loss 0.5" in messages
