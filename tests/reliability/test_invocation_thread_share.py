"""Invocations cannot take every control-plane thread, so a model that calls the control plane still gets one.

A handler that reads S3 through the control plane (a request naming an object to fetch) needs a thread
of the control plane while its own invocation holds another. With invocations on every thread, that call
waited for a thread only an invocation's end could free: a deadlock, broken only by the model-server
timeout. Here the control plane has 4 threads; invocations may hold 3 of them.
"""

from __future__ import annotations

import json
import threading
import time
import uuid
from pathlib import Path

import boto3
import pytest
from botocore.config import Config
from botocore.exceptions import ClientError

from localmaker.control_plane.invocation_admission import Refused, ThreadShare
from localmaker.control_plane.server import ControlPlane
from localmaker.control_plane.settings import ControlPlaneSettings
from localmaker.deploy import Model, Session
from localmaker.spec.names import LOCAL_CREDENTIALS
from tests.reliability.conftest import ROLE, code_only_archive

THREADS = 4
CALLS = 6

# input_fn fetches the object the request names, through the control plane's S3, as a real handler fetches
# an input from S3; it holds its invocation's thread meanwhile.
FETCHING_HANDLER = """
    import json
    import os
    import time

    import boto3

    def model_fn(model_dir):
        return boto3.client("s3", endpoint_url=os.environ["CONTROL_PLANE_URL"], region_name="us-east-1",
                            aws_access_key_id="testing", aws_secret_access_key="testing")

    def predict_fn(data, s3):
        time.sleep(0.5)  # long enough that the invocations overlap
        return s3.get_object(Bucket=data["bucket"], Key=data["key"])["Body"].read().decode()

    def input_fn(body, content_type):
        return json.loads(body)

    def output_fn(prediction, accept):
        return json.dumps({"fetched": prediction}), "application/json"
"""


def test_invocations_whose_model_calls_s3_all_finish_on_a_small_thread_cap(tmp_path: Path, localmaker_home):
    settings = ControlPlaneSettings(max_connections=THREADS, max_waiting_connections=64)
    control_plane = ControlPlane(work_root=tmp_path / "plane", startup_timeout_s=120, settings=settings).start()
    try:
        s3 = boto3.client("s3", endpoint_url=control_plane.url, region_name="us-east-1", **LOCAL_CREDENTIALS)
        s3.create_bucket(Bucket="inputs")
        s3.put_object(Bucket="inputs", Key="doc.txt", Body=b"the input")
        name = f"fetching-{uuid.uuid4().hex[:8]}"
        Model(model_data=f"file://{code_only_archive(tmp_path / 'model', FETCHING_HANDLER)}", role=ROLE,
              env={"CONTROL_PLANE_URL": control_plane.url, "SAGEMAKER_MODEL_SERVER_TIMEOUT": "30"},
              sagemaker_session=Session(endpoint_url=control_plane.url)).deploy(
            initial_instance_count=1, instance_type="ml.m5.large", endpoint_name=name)
        # botocore's own retries take the 503 that an invocation beyond the share gets, as a user's would.
        runtime = boto3.client("sagemaker-runtime", endpoint_url=control_plane.url, region_name="us-east-1",
                               config=Config(retries={"max_attempts": 10, "mode": "standard"}, read_timeout=60,
                                             max_pool_connections=CALLS), **LOCAL_CREDENTIALS)
        answers: list[object] = []
        barrier = threading.Barrier(CALLS)

        def call() -> None:
            barrier.wait()
            try:
                answer = runtime.invoke_endpoint(EndpointName=name, ContentType="application/json",
                                                 Body=json.dumps({"bucket": "inputs", "key": "doc.txt"}))
                answers.append(json.loads(answer["Body"].read()))
            except ClientError as exc:
                answers.append(exc.response["Error"])

        started = time.monotonic()
        threads = [threading.Thread(target=call) for _ in range(CALLS)]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join(90)
        took = time.monotonic() - started
        print(f"\n{CALLS} invocations that each read S3 through a {THREADS}-thread control plane took {took:.1f} s")
        assert answers == [{"fetched": "the input"}] * CALLS
        assert took < 25  # well within the 30 s model-server timeout that used to break the deadlock
    finally:
        control_plane.stop()


@pytest.mark.parametrize(("threads", "invocations"), [(1, 1), (4, 3), (256, 192)])
def test_the_share_leaves_a_quarter_of_the_threads_to_other_calls(threads: int, invocations: int):
    share = ThreadShare(threads)
    assert share.limit == invocations
    held = [share.held() for _ in range(invocations)]
    for hold in held:
        hold.__enter__()
    with pytest.raises(Refused, match="LOCALMAKER_MAX_CONNECTIONS"), share.held():
        pass
    for hold in held:
        hold.__exit__(None, None, None)
    with share.held():  # all given back
        pass
