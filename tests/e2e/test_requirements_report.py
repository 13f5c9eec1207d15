"""A user's code/requirements.txt that was never installed: the endpoint fails and says what to install."""

from __future__ import annotations

import json
import textwrap
import time
from pathlib import Path

import pytest

from localmaker import DeploymentError
from localmaker.deploy import Model
from tests.e2e.conftest import ROLE

pytestmark = pytest.mark.e2e

MISSING = "localmaker-absent-dist"


def test_failure_reason_and_instance_log_name_the_missing_requirement(session, tmp_path: Path):
    # model_fn never runs, so any folder with a config is model enough.
    model_dir = tmp_path / "model"
    model_dir.mkdir()
    (model_dir / "config.json").write_text(json.dumps({"model_type": "none"}))
    source_dir = tmp_path / "src"
    source_dir.mkdir()
    (source_dir / "requirements.txt").write_text(f"numpy>=1.0\n{MISSING}>=1.2\n")
    (source_dir / "inference.py").write_text(textwrap.dedent("""
        import localmaker_absent_module

        def model_fn(model_dir):
            return localmaker_absent_module.load(model_dir)
    """))
    model = Model(model_data=str(model_dir), role=ROLE, source_dir=source_dir, sagemaker_session=session)

    with pytest.raises(DeploymentError, match=MISSING):
        model.deploy(initial_instance_count=1, instance_type="ml.m5.large", endpoint_name="unmet-requirements")

    try:
        described = session.sagemaker_client.describe_endpoint(EndpointName="unmet-requirements")
        assert described["EndpointStatus"] == "Failed"
        reason = described["FailureReason"]
        assert "No module named 'localmaker_absent_module'" in reason
        assert f"{MISSING}>=1.2 (not installed)" in reason
        assert f"pip install '{MISSING}>=1.2'" in reason
        assert "numpy" not in reason  # installed, so not blamed
        [line] = _requirements_lines(session, "/aws/sagemaker/Endpoints/unmet-requirements")
        assert "WARNING" in line
        assert "satisfied: numpy>=1.0 (" in line
        assert f"missing: {MISSING}>=1.2 (not installed)" in line
        assert "localmaker does not pip-install requirements.txt" in line
    finally:
        session.sagemaker_client.delete_endpoint(EndpointName="unmet-requirements")


def _requirements_lines(session, group: str, timeout_s: float = 15) -> list[str]:
    """The instance log's requirements lines, as CloudWatch Logs holds them (shipped about once a second)."""
    logs = session.boto_session.client("logs", endpoint_url=session.endpoint_url)
    deadline = time.monotonic() + timeout_s
    while True:
        lines = []
        try:
            for stream in logs.describe_log_streams(logGroupName=group)["logStreams"]:
                events = logs.get_log_events(logGroupName=group, logStreamName=stream["logStreamName"],
                                             startFromHead=True)["events"]
                lines += [e["message"] for e in events if "model_holder: code/requirements.txt: " in e["message"]]
        except logs.exceptions.ResourceNotFoundException:
            pass
        if lines or time.monotonic() > deadline:
            return lines
        time.sleep(0.3)
