"""Requests beyond an endpoint's capacity wait in a bounded queue or get 503 with Retry-After; none hangs.

The endpoint's handler holds a request until the test releases it, so which requests find the endpoint
full is decided by the test, not by timing.
"""

from __future__ import annotations

import contextlib
import json
import queue
import threading
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
from botocore.exceptions import ClientError

from localmaker.control_plane.endpoint_state import RunningEndpoint, ServingInstance, Variant, VariantSpec
from localmaker.control_plane.instance_process import InstanceProcess
from localmaker.control_plane.invocation_admission import EndpointGates
from localmaker.control_plane.settings import ControlPlaneSettings
from localmaker.errors import ConfigurationError
from localmaker.local_endpoint.settings import DEFAULT_THREADS
from tests.reliability.conftest import HeldEndpoint, wait_until

JOIN_S = 90  # generous: a request that has not answered by then is hanging


@dataclass
class Outcome:
    request_id: str
    status: int
    code: str = ""
    message: str = ""
    retry_after: str | None = None
    answered_id: str | None = None


def invoke(client: Any, endpoint: str, request_id: str, hold: bool = False) -> Outcome:
    try:
        answer = client.invoke_endpoint(EndpointName=endpoint, ContentType="application/json",
                                        Body=json.dumps({"id": request_id, "hold": hold}))
    except ClientError as exc:
        meta = exc.response["ResponseMetadata"]
        return Outcome(request_id, meta["HTTPStatusCode"], exc.response["Error"]["Code"],
                       exc.response["Error"]["Message"], meta["HTTPHeaders"].get("retry-after"))
    return Outcome(request_id, 200, answered_id=json.loads(answer["Body"].read())["id"])


class Requests:
    """Invocations running in threads, their outcomes collected as they come."""

    def __init__(self, endpoint: HeldEndpoint) -> None:
        self._endpoint = endpoint
        self._client = endpoint.runtime_client()
        self.outcomes: queue.Queue[Outcome] = queue.Queue()
        self.threads: dict[str, threading.Thread] = {}
        self.answered: set[str] = set()

    def send(self, request_id: str, hold: bool = False) -> None:
        def run() -> None:
            self.outcomes.put(invoke(self._client, self._endpoint.name, request_id, hold))

        thread = threading.Thread(target=run, name=f"invoke-{request_id}", daemon=True)
        self.threads[request_id] = thread
        thread.start()

    def next_outcomes(self, count: int) -> list[Outcome]:
        outcomes = [self.outcomes.get(timeout=JOIN_S) for _ in range(count)]
        self.answered.update(o.request_id for o in outcomes)
        return outcomes

    def pending(self) -> set[str]:
        """Sent and not answered, after giving a wrongly forwarded request a moment to come back."""
        with contextlib.suppress(queue.Empty):
            early = self.outcomes.get(timeout=1.0)
            raise AssertionError(f"{early} answered while it should still be held or queued")
        return set(self.threads) - self.answered

    def join(self) -> None:
        for request_id, thread in self.threads.items():
            thread.join(JOIN_S)
            assert not thread.is_alive(), f"request {request_id} hung for {JOIN_S} s"


def assert_refused_for_capacity(outcome: Outcome) -> None:
    assert outcome.status == 503, outcome
    assert outcome.code == "ServiceUnavailable", outcome
    assert outcome.retry_after == "1", outcome
    assert "cannot take more requests" in outcome.message and "Traceback" not in outcome.message


@pytest.fixture
def endpoint(queueing_endpoint: HeldEndpoint) -> HeldEndpoint:
    queueing_endpoint.rearm()
    return queueing_endpoint


def test_requests_beyond_the_queue_get_503_at_once_and_queued_ones_run_once_capacity_frees(endpoint):
    requests = Requests(endpoint)
    requests.send("holder", hold=True)
    wait_until(lambda: endpoint.started("holder"), "the held request to reach the handler")

    quick = [f"quick-{i}" for i in range(5)]
    for request_id in quick:
        requests.send(request_id)
    # One in flight (held) and two waiting: the other three are refused without waiting for anything.
    refused = requests.next_outcomes(3)
    for outcome in refused:
        assert_refused_for_capacity(outcome)
        assert "in flight: 1 (limit 1), waiting: 2 (limit 2)" in outcome.message
    queued = set(quick) - {o.request_id for o in refused}
    assert requests.pending() == {"holder"} | queued  # the two queued ones wait: neither forwarded nor refused

    endpoint.release()
    requests.join()
    served = requests.next_outcomes(3)
    assert sorted((o.status, o.answered_id) for o in served) == sorted((200, r) for r in {"holder"} | queued)
    assert requests.outcomes.empty()

    # Every slot was given back: requests one after another all run.
    client = endpoint.runtime_client()
    assert [invoke(client, endpoint.name, f"after-{i}").status for i in range(4)] == [200] * 4


def test_a_queued_request_gives_up_with_503_after_the_queue_timeout(impatient_endpoint):
    endpoint = impatient_endpoint
    endpoint.rearm()
    requests = Requests(endpoint)
    requests.send("holder", hold=True)
    wait_until(lambda: endpoint.started("holder"), "the held request to reach the handler")

    requests.send("waiter")
    [outcome] = requests.next_outcomes(1)  # the holder is still held: this is the waiter giving up
    assert outcome.request_id == "waiter"
    assert outcome.status == 503 and outcome.code == "ServiceUnavailable" and outcome.retry_after == "1"
    assert "no capacity freed up within 1 s" in outcome.message
    assert requests.pending() == {"holder"}

    endpoint.release()
    requests.join()
    assert requests.next_outcomes(1)[0].answered_id == "holder"
    assert invoke(endpoint.runtime_client(), endpoint.name, "after").status == 200


def _endpoint_with(*variants: tuple[dict[str, str], int, int]) -> RunningEndpoint:
    """An endpoint's state (no process started) with (model env, instances in rotation, out of it)."""
    endpoint = RunningEndpoint(name="sized", work_dir=Path("/nonexistent"), config_name="c")
    for index, (env, serving, idle) in enumerate(variants):
        spec = VariantSpec(f"v{index}", "m", "ml.m5.large", serving + idle, "s3://b/k", "image", env)
        instances = [ServingInstance(InstanceProcess(f"v{index}-{i}", Path("/nonexistent"), Path("/nonexistent"), {},
                                                     port=1), "cpu", in_rotation=i < serving)
                     for i in range(serving + idle)]
        endpoint.variants.append(Variant(spec, Path("/nonexistent"), 1.0, serving + idle, instances))
    return endpoint


def test_the_limit_is_workers_times_threads_of_the_instances_in_service():
    gates = EndpointGates(ControlPlaneSettings())
    # 2 serving instances of 2 workers x 4 threads, plus 1 of the default workers x threads and one still starting.
    endpoint = _endpoint_with(({"SAGEMAKER_MODEL_SERVER_WORKERS": "2", "LOCALMAKER_SERVER_THREADS": "4"}, 2, 0),
                              ({}, 1, 1))
    assert gates.limit(endpoint) == 2 * 2 * 4 + 1 * DEFAULT_THREADS
    assert gates.limit(_endpoint_with(({}, 0, 2))) == 1  # between instances: let it through to say so
    assert EndpointGates(ControlPlaneSettings(max_in_flight=3)).limit(endpoint) == 3


def test_limits_are_read_from_the_environment_and_checked():
    settings = ControlPlaneSettings.from_env({
        "LOCALMAKER_MAX_CONCURRENT_INVOCATIONS": "6", "LOCALMAKER_MAX_QUEUED_INVOCATIONS": "0",
        "LOCALMAKER_INVOCATION_QUEUE_TIMEOUT": "2.5", "LOCALMAKER_CLIENT_TIMEOUT": "30",
        "SAGEMAKER_MODEL_SERVER_WORKERS": "3", "LOCALMAKER_SERVER_THREADS": "2"})
    assert settings == ControlPlaneSettings(max_in_flight=6, max_queued=0, queue_timeout_s=2.5, client_timeout_s=30,
                                            default_workers=3, default_threads=2)
    assert settings.instance_slots({}) == 6 and settings.instance_slots({"LOCALMAKER_SERVER_THREADS": "8"}) == 24
    assert settings.instance_slots({"SAGEMAKER_MODEL_SERVER_WORKERS": "many"}) == 6  # such an instance never starts
    assert ControlPlaneSettings.from_env({}) == ControlPlaneSettings()
    for bad in ({"LOCALMAKER_MAX_CONCURRENT_INVOCATIONS": "0"}, {"LOCALMAKER_MAX_QUEUED_INVOCATIONS": "two"},
                {"LOCALMAKER_MAX_CONCURRENT_INVOCATIONS": "1.5"}):
        with pytest.raises(ConfigurationError, match=next(iter(bad))):
            ControlPlaneSettings.from_env(bad)
