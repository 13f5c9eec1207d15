"""A model call stuck past the timeout costs only its own request.

An instance of one worker runs a call that sleeps far past a 3 s model timeout. Its caller gets the 504;
the requests queued behind it, and every request after it, must be answered at once: a 503 with
Retry-After while the worker is replaced, then 200 from the fresh worker. Before the fix, each of them
waited its own whole timeout for the stuck model thread and got a 504 too.
"""

from __future__ import annotations

import json
import threading
import time
from pathlib import Path
from typing import Any

import boto3
import pytest
from botocore.config import Config
from botocore.exceptions import ClientError

from localmaker.control_plane.server import ControlPlane
from localmaker.deploy import Model, Session
from localmaker.spec.names import LOCAL_CREDENTIALS
from localmaker.spec.names import PLACEHOLDER_ROLE as ROLE
from tests.reliability.conftest import code_only_archive
from tests.reliability.direct_instance import SLEEPY_HANDLER, invoke, running_instance

TIMEOUT_S = 3
FAST_S = 2.0  # "at once": a refusal, or the wait for a fresh worker to boot, on a loaded machine


def _call(url: str, request_id: str, sleep_s: float = 0) -> tuple[int, dict[str, str], float]:
    started = time.monotonic()
    status, headers, _ = invoke(url, json.dumps({"id": request_id, "sleep": sleep_s}).encode(), timeout_s=60)
    return status, headers, time.monotonic() - started


def test_requests_after_a_stuck_call_are_answered_at_once_and_a_fresh_worker_takes_over(tmp_path: Path) -> None:
    env = {"SAGEMAKER_MODEL_SERVER_TIMEOUT": str(TIMEOUT_S), "SAGEMAKER_MODEL_SERVER_WORKERS": "1"}
    with running_instance(tmp_path, env) as instance:
        outcomes: dict[str, tuple[int, dict[str, str], float]] = {}

        def call(request_id: str, sleep_s: float = 0) -> None:
            outcomes[request_id] = _call(instance.url, request_id, sleep_s)

        stuck = threading.Thread(target=call, args=("stuck", 120))
        stuck.start()
        while not (instance.model_dir / "started-stuck").exists():
            time.sleep(0.02)
        queued = [threading.Thread(target=call, args=(f"queued-{index}",)) for index in range(3)]
        for thread in queued:
            thread.start()
        stuck.join(30)
        for thread in queued:
            thread.join(30)

        assert outcomes["stuck"][0] == 504
        for index in range(3):  # they arrived while the call was not yet past its timeout, and waited behind it
            status, headers, _ = outcomes[f"queued-{index}"]
            assert status == 503 and headers.get("Retry-After") == "1", outcomes[f"queued-{index}"]
        assert max(took for _, _, took in outcomes.values()) < TIMEOUT_S + FAST_S

        # After the stuck call's 504: every request is answered at once, and soon by a fresh worker.
        after_504 = time.monotonic()
        answers = []
        while True:
            status, headers, took = _call(instance.url, f"after-{len(answers)}")
            answers.append((status, round(took, 2)))
            assert took < FAST_S, answers
            assert status == 200 or (status == 503 and headers.get("Retry-After") == "1"), answers
            if status == 200:
                break
            assert time.monotonic() - after_504 < 30, f"no fresh worker within 30 s: {answers}"
            time.sleep(0.2)  # a client honouring Retry-After would wait longer
        print(f"\nstuck call answered in {outcomes['stuck'][2]:.1f} s; queued ones in "
              f"{[round(outcomes[f'queued-{i}'][2], 2) for i in range(3)]} s; after it: {answers}; "
              f"served again {time.monotonic() - after_504:.1f} s after the 504")


def test_through_invoke_endpoint_the_next_call_gets_service_unavailable_not_a_model_error(
        tmp_path: Path, localmaker_home: Path) -> None:
    """The control plane reads the container's "worker replacing" 503 as no instance free: another instance
    may take the call (none here), else ServiceUnavailable with Retry-After, which botocore retries by
    itself; never a ModelError for a request no handler ran."""
    env = {"SAGEMAKER_MODEL_SERVER_TIMEOUT": str(TIMEOUT_S), "SAGEMAKER_MODEL_SERVER_WORKERS": "1"}
    control_plane = ControlPlane(work_root=tmp_path / "control-plane", startup_timeout_s=120).start()
    try:
        session = Session(endpoint_url=control_plane.url)
        name = "stuck-once"
        Model(model_data=f"file://{code_only_archive(tmp_path / 'model', SLEEPY_HANDLER)}", role=ROLE, env=env,
              sagemaker_session=session).deploy(initial_instance_count=1, instance_type="ml.m5.large",
                                                endpoint_name=name)
        once = boto3.client("sagemaker-runtime", endpoint_url=control_plane.url, region_name="us-east-1",
                            config=Config(retries={"total_max_attempts": 1}), **LOCAL_CREDENTIALS)

        def invoke_endpoint(client: Any, request_id: str, sleep_s: float = 0) -> Any:
            return client.invoke_endpoint(EndpointName=name, ContentType="application/json",
                                          Body=json.dumps({"id": request_id, "sleep": sleep_s}))

        with pytest.raises(ClientError) as stuck:
            invoke_endpoint(once, "stuck", sleep_s=600)
        assert stuck.value.response["Error"]["Code"] == "ModelError"
        assert stuck.value.response["OriginalStatusCode"] == 504
        started = time.monotonic()
        try:
            answer = json.loads(invoke_endpoint(once, "next")["Body"].read())
            assert answer == {"id": "next"}  # the fresh worker was already up
        except ClientError as refused:
            assert refused.response["Error"]["Code"] == "ServiceUnavailable", refused.response
            assert refused.response["ResponseMetadata"]["HTTPHeaders"].get("retry-after") == "1"
        assert time.monotonic() - started < FAST_S
        # botocore's own retries carry the caller over the replacement.
        assert json.loads(invoke_endpoint(session.sagemaker_runtime_client, "later")["Body"].read()) == {"id": "later"}
    finally:
        control_plane.stop()
