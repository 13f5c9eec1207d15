"""An idle kept-alive connection does not hold a retiring instance for the whole graceful timeout.

gunicorn before 27 waited out ``--graceful-timeout`` (the model-server timeout, 60 s here) on a worker
whose only connection was idle and kept alive, so a scale-in took a minute; pyproject.toml requires the
first release that closes such connections at once. A client that keeps connections (the SDK's
urllib3 pools, FakePredictor's) is the common case, so this is the case tested.
"""

from __future__ import annotations

import http.client
import time
from urllib.parse import urlsplit

import pytest

from localmaker.deploy import Model
from localmaker.model.artifact import pack_handler
from tests.e2e.conftest import ROLE
from tests.process_probe import group_members

pytestmark = pytest.mark.e2e

ECHO = """
def model_fn(model_dir):
    return None

def transform_fn(model, body, content_type, accept):
    return body, "application/octet-stream"
"""
GRACEFUL_TIMEOUT_S = 60
# Well under the graceful timeout, well over the second or two a prompt shutdown takes on a busy machine.
PROMPT_S = 30


def _kept_alive(url: str) -> http.client.HTTPConnection:
    parts = urlsplit(url)
    connection = http.client.HTTPConnection(parts.hostname, parts.port, timeout=10)
    connection.request("GET", "/ping")
    answer = connection.getresponse()
    answer.read()
    assert answer.status == 200 and not answer.will_close, "the instance should keep the connection alive"
    return connection


def test_scale_in_is_not_held_by_an_idle_kept_alive_connection(session, tmp_path):
    model = Model(model_data=str(pack_handler(ECHO, tmp_path / "echo.tar.gz")), role=ROLE, sagemaker_session=session,
                  env={"SAGEMAKER_MODEL_SERVER_TIMEOUT": str(GRACEFUL_TIMEOUT_S)})
    predictor = model.deploy(initial_instance_count=2, instance_type="ml.m5.large", endpoint_name="idle-drain")
    try:
        before = session.local_endpoint("idle-drain").instances
        connections = [_kept_alive(instance.url) for instance in before]
        started = time.monotonic()
        session.sagemaker_client.update_endpoint_weights_and_capacities(
            EndpointName="idle-drain", DesiredWeightsAndCapacities=[{"VariantName": "AllTraffic",
                                                                    "DesiredInstanceCount": 1}])
        while all(group_members(instance.pid) for instance in before):
            assert time.monotonic() - started < GRACEFUL_TIMEOUT_S, "the retired instance waited out the timeout"
            time.sleep(0.2)
        assert time.monotonic() - started < PROMPT_S
        assert len(session.local_endpoint("idle-drain").instances) == 1
        for connection in connections:
            connection.close()
    finally:
        predictor.delete_endpoint()
