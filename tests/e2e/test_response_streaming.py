"""InvokeEndpointWithResponseStream end to end: a generator handler in a real gunicorn instance, streamed
through the control plane and read by unmodified boto3, the SageMaker SDK v2 and FakePredictor."""

from __future__ import annotations

import base64
import io
import json
import os
import subprocess
import textwrap
import time
import urllib.request
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import boto3
import pytest
from botocore.config import Config
from botocore.eventstream import EventStreamBuffer
from botocore.exceptions import ClientError, EventStreamError
from PIL import Image

from localmaker import ModelError
from localmaker.deploy import Model, Session
from localmaker.deserializers import JSONDeserializer
from localmaker.model.artifact import pack_handler
from localmaker.serializers import JSONSerializer
from localmaker.spec.names import MAX_PAYLOAD_BYTES
from localmaker.spec.sdk_config import CONFIG_ENV_VAR, sdk_config
from tests.e2e.conftest import ROLE, aws_env, instance_pids

pytestmark = pytest.mark.e2e

# One handler for every case: the request says how many chunks, the gap between them, where to fail.
STREAMING = """
    import json, threading, time
    from pathlib import Path

    def model_fn(model_dir):
        return None

    def input_fn(body, content_type):
        return json.loads(body)

    def predict_fn(data, model):
        if data.get("whole"):
            return {"whole": True}
        if data.get("fail_first"):
            raise ValueError("refused before streaming: " + data["fail_first"])

        def chunks():
            try:
                for i in range(data["count"]):
                    if i:
                        time.sleep(data.get("gap", 0))
                    if data.get("fail_at") == i:
                        raise RuntimeError(f"the model broke at chunk {i}")
                    yield {"i": i, "thread": threading.current_thread().name}
            finally:
                if data.get("mark"):
                    Path(data["mark"]).write_text("closed")
        return chunks()

    def output_fn(prediction, accept, context):
        context.response_custom_attributes = "echo=" + (context.custom_attributes or "")
        if isinstance(prediction, dict):
            return json.dumps(prediction), "application/json"
        return prediction, "application/jsonlines"
"""


@pytest.fixture(scope="module")
def streaming(session: Session, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Any]:
    folder = tmp_path_factory.mktemp("streaming")
    archive = pack_handler(textwrap.dedent(STREAMING), folder / "model.tar.gz")
    predictor = Model(model_data=f"file://{archive}", role=ROLE, sagemaker_session=session).deploy(
        initial_instance_count=1, instance_type="ml.m5.large", endpoint_name="streaming",
        serializer=JSONSerializer(), deserializer=JSONDeserializer())
    yield predictor
    predictor.delete_endpoint()


def _runtime(session: Session) -> Any:
    """One try only, so a refusal is seen as it is answered."""
    return boto3.client("sagemaker-runtime", endpoint_url=session.endpoint_url, region_name="us-east-1",
                        aws_access_key_id="testing", aws_secret_access_key="testing",
                        config=Config(retries={"max_attempts": 1}))


def _stream(session: Session, request: dict[str, Any], **kwargs: Any) -> dict[str, Any]:
    return _runtime(session).invoke_endpoint_with_response_stream(
        EndpointName="streaming", Body=json.dumps(request), ContentType="application/json", **kwargs)


def _lines(events: Any) -> list[dict[str, Any]]:
    data = b"".join(event["PayloadPart"]["Bytes"] for event in events)
    return [json.loads(line) for line in data.splitlines()]


def test_a_generator_streams_as_payload_parts_with_the_answer_headers(session, streaming):
    answer = _stream(session, {"count": 5}, Accept="application/jsonlines", CustomAttributes="trace=7")
    assert answer["ResponseMetadata"]["HTTPHeaders"]["content-type"] == "application/vnd.amazon.eventstream"
    assert answer["ContentType"] == "application/jsonlines"
    assert answer["InvokedProductionVariant"] == "AllTraffic"
    assert answer["CustomAttributes"] == "echo=trace=7"
    events = list(answer["Body"])
    assert len(events) == 5, "one PayloadPart per chunk the handler yielded"
    lines = _lines(events)
    assert [line["i"] for line in lines] == [0, 1, 2, 3, 4]
    # Every chunk was produced on the model thread: one model call at a time, streams included.
    assert {line["thread"] for line in lines} == {"model-executor"}


def test_the_first_chunk_arrives_long_before_the_last(session, streaming):
    sent = time.monotonic()
    arrivals = []
    for event in _stream(session, {"count": 4, "gap": 1.0})["Body"]:
        arrivals.append((time.monotonic() - sent, event["PayloadPart"]["Bytes"]))
    assert [json.loads(chunk)["i"] for _, chunk in arrivals] == [0, 1, 2, 3]
    first, last = arrivals[0][0], arrivals[-1][0]
    assert first < 1.0, f"the first chunk took {first:.2f}s: the answer was held back"
    assert last - first > 2.5, f"chunks 3 s apart at the source arrived within {last - first:.2f}s"
    gaps = [b[0] - a[0] for a, b in zip(arrivals, arrivals[1:], strict=False)]
    assert all(gap > 0.7 for gap in gaps), f"chunks were bunched up on the way: {gaps}"


def test_a_failure_mid_stream_is_a_model_stream_error_after_the_chunks_before_it(session, streaming):
    iterator = iter(_stream(session, {"count": 5, "fail_at": 2})["Body"])
    assert [json.loads(next(iterator)["PayloadPart"]["Bytes"])["i"] for _ in range(2)] == [0, 1]
    with pytest.raises(EventStreamError) as caught:
        next(iterator)
    error = caught.value.response["Error"]
    assert error["Code"] == "ModelStreamError"
    assert "closed before it was complete" in error["Message"] and "instance log" in error["Message"]
    # The endpoint keeps serving, streams and whole answers alike.
    assert [line["i"] for line in _lines(_stream(session, {"count": 2})["Body"])] == [0, 1]


def test_the_stream_error_event_carries_aws_error_code_on_the_wire(session, streaming):
    request = urllib.request.Request(f"{session.endpoint_url}/endpoints/streaming/invocations-response-stream",
                                     data=json.dumps({"count": 3, "fail_at": 1}).encode(), method="POST",
                                     headers={"Content-Type": "application/json"})
    with urllib.request.urlopen(request, timeout=60) as answer:
        buffer = EventStreamBuffer()
        buffer.add_data(answer.read())
    messages = list(buffer)
    assert [m.headers[":message-type"] for m in messages] == ["event", "exception"]
    assert messages[-1].headers[":exception-type"] == "ModelStreamError"
    assert json.loads(messages[-1].payload)["ErrorCode"] == "StreamBroken"


def test_a_failure_before_the_first_chunk_is_a_model_error_as_invoke_endpoint_answers(session, streaming):
    with pytest.raises(ClientError) as caught:
        _stream(session, {"fail_first": "no such prompt"})
    response = caught.value.response
    assert response["Error"]["Code"] == "ModelError"
    assert response["ResponseMetadata"]["HTTPStatusCode"] == 424
    assert response["OriginalStatusCode"] == 500
    assert "Traceback" not in response["Error"]["Message"]


def test_a_handler_that_does_not_stream_answers_one_part(session, streaming):
    answer = _stream(session, {"whole": True})
    assert answer["ContentType"] == "application/json"
    events = list(answer["Body"])
    assert len(events) == 1 and json.loads(events[0]["PayloadPart"]["Bytes"]) == {"whole": True}


def test_a_client_that_leaves_mid_stream_frees_the_model_thread(session, streaming, tmp_path: Path):
    mark = tmp_path / "closed"
    answer = _stream(session, {"count": 600, "gap": 0.05, "mark": str(mark)})
    next(iter(answer["Body"]))
    answer["Body"].close()
    deadline = time.monotonic() + 20
    while not mark.exists() and time.monotonic() < deadline:
        time.sleep(0.1)
    assert mark.exists(), "the handler's generator was not closed after its reader left"
    started = time.monotonic()
    assert [line["i"] for line in _lines(_stream(session, {"count": 1})["Body"])] == [0]
    assert time.monotonic() - started < 5


@pytest.mark.parametrize(("endpoint", "extra", "body", "status", "code", "words"), [
    ("no-such-endpoint", {}, b"{}", 400, "ValidationError", "Endpoint no-such-endpoint not found."),
    ("streaming", {"TargetVariant": "Nope"}, b"{}", 400, "ValidationError", "Target variant 'Nope' does not exist"),
    ("streaming", {}, b"x" * (MAX_PAYLOAD_BYTES + 1), 413, "413", "HTTP content length exceeded"),
])
def test_bad_requests_are_refused_as_aws_refuses_them(session, streaming, endpoint, extra, body, status, code,
                                                      words):
    with pytest.raises(ClientError) as caught:
        _runtime(session).invoke_endpoint_with_response_stream(EndpointName=endpoint, Body=body,
                                                               ContentType="application/json", **extra)
    response = caught.value.response
    assert response["ResponseMetadata"]["HTTPStatusCode"] == status
    assert response["Error"]["Code"] == code
    assert words in response["Error"]["Message"]


def test_fake_predictor_predict_stream_yields_the_chunks_and_raises_model_error(streaming):
    chunks = list(streaming.predict_stream({"count": 3}))
    assert [json.loads(chunk)["i"] for chunk in chunks] == [0, 1, 2]
    with pytest.raises(ModelError) as caught:
        list(streaming.predict_stream({"count": 3, "fail_at": 1}))
    assert "ModelStreamError" in str(caught.value)
    with pytest.raises(ModelError) as refused:
        streaming.predict_stream({"fail_first": "bad"})
    assert refused.value.original_status_code == 500 and "refused before streaming: bad" in str(refused.value)


def test_sagemaker_sdk_v2_predict_stream_unchanged(session, streaming):
    import sagemaker
    from sagemaker.iterators import LineIterator
    from sagemaker.predictor import Predictor
    from sagemaker.serializers import JSONSerializer as SdkJSONSerializer

    sdk_session = sagemaker.Session(boto_session=boto3.Session(region_name="us-east-1"),
                                    sagemaker_client=session.sagemaker_client,
                                    sagemaker_runtime_client=session.sagemaker_runtime_client,
                                    default_bucket="sdk-stream")
    predictor = Predictor("streaming", sagemaker_session=sdk_session, serializer=SdkJSONSerializer())
    chunks = list(predictor.predict_stream({"count": 3}))
    assert [json.loads(chunk)["i"] for chunk in chunks] == [0, 1, 2]
    lines = list(predictor.predict_stream({"count": 4}, iterator=LineIterator))
    assert [json.loads(line)["i"] for line in lines] == [0, 1, 2, 3]


def test_tiny_sd_streams_a_progress_line_per_step_then_the_image(session, tiny_sd_dir, started_groups):
    predictor = Model(model_data="tiny-sd", role=ROLE, sagemaker_session=session).deploy(
        initial_instance_count=1, instance_type="ml.m5.xlarge", endpoint_name="tiny-sd-stream")
    started_groups.update(instance_pids(session, predictor.endpoint_name))
    try:
        request = {"inputs": "a lighthouse at dusk", "stream": True,
                   "parameters": {"num_inference_steps": 4, "seed": 7, "scheduler": "euler"}}
        answer = _runtime(session).invoke_endpoint_with_response_stream(
            EndpointName="tiny-sd-stream", Body=json.dumps(request), ContentType="application/json",
            Accept="application/jsonlines")
        assert answer["ContentType"] == "application/jsonlines"
        lines = _lines(answer["Body"])
        assert [line.get("step") for line in lines] == [1, 2, 3, 4, None]
        assert {line["total"] for line in lines[:-1]} == {4}
        image = Image.open(io.BytesIO(base64.b64decode(lines[-1]["images"][0])))
        assert (image.format, image.size) == ("PNG", (64, 64)) and lines[-1]["seeds"] == [7]
    finally:
        predictor.delete_endpoint()


# SDK v3's call, as its Endpoint resource documents it; it runs in v3's own environment (see
# tests/e2e/test_sagemaker_sdk_v3.py), against this session's control plane.
SDK3_STREAM = """
import json, traceback
import boto3
from sagemaker.core.resources import Endpoint

# The workaround a v3 user has: boto3 of the same environment, whose botocore reads the stream.
direct = boto3.client("sagemaker-runtime").invoke_endpoint_with_response_stream(
    EndpointName="streaming", Body=json.dumps({"count": 2}), ContentType="application/json")
boto3_chunks = [event["PayloadPart"]["Bytes"].decode() for event in direct["Body"]]
endpoint = Endpoint.get(endpoint_name="streaming")
try:
    answer = endpoint.invoke_with_response_stream(body=json.dumps({"count": 3}), content_type="application/json")
    result = {"chunks": [event["PayloadPart"]["Bytes"].decode() for event in answer.body],
              "content_type": answer.content_type}
except AttributeError:
    result = {"error": traceback.format_exc()}
result["boto3_chunks"] = boto3_chunks
with open("result.json", "w") as out:
    json.dump(result, out)
"""
# sagemaker-core 2.27 hands botocore's EventStream (what boto3 returns for this operation, from AWS too) to
# its dict transform before returning anything.
SDK3_OWN_BUG = "'EventStream' object has no attribute 'get'"


def test_sagemaker_sdk_v3_invoke_with_response_stream(session, streaming, tmp_path):
    python = os.environ.get("LOCALMAKER_SDK3_PYTHON")
    if python is None:
        pytest.skip("SDK v3 runs from its own environment: `make test` sets LOCALMAKER_SDK3_PYTHON")
    config = tmp_path / "sagemaker-sdk-config.yaml"
    config.write_text(sdk_config("us-east-1"))
    (tmp_path / "script.py").write_text(SDK3_STREAM)
    done = subprocess.run([python, "script.py"], capture_output=True, text=True, timeout=300, cwd=tmp_path,
                          env={**aws_env(session.endpoint_url), CONFIG_ENV_VAR: str(config)})
    assert done.returncode == 0, done.stderr[-4000:]
    result = json.loads((tmp_path / "result.json").read_text())
    assert [json.loads(chunk)["i"] for chunk in result["boto3_chunks"]] == [0, 1]
    if "error" in result:
        # Raised in the SDK's own codec.transform, after boto3 parsed the stream's headers: the same
        # call against AWS fails the same way. Once a fixed SDK is installed, the branch below runs.
        assert SDK3_OWN_BUG in result["error"] and "codec.py" in result["error"], result["error"]
        pytest.xfail(f"sagemaker-core's invoke_with_response_stream fails on any endpoint: {SDK3_OWN_BUG}")
    assert [json.loads(chunk)["i"] for chunk in result["chunks"]] == [0, 1, 2]
    assert result["content_type"] == "application/jsonlines"


def test_a_stream_that_stalls_past_the_model_server_timeout_breaks_and_the_endpoint_recovers(session, tmp_path):
    archive = pack_handler(textwrap.dedent(STREAMING), tmp_path / "model.tar.gz")
    predictor = Model(model_data=f"file://{archive}", role=ROLE, sagemaker_session=session,
                      env={"SAGEMAKER_MODEL_SERVER_TIMEOUT": "2"}).deploy(
        initial_instance_count=1, instance_type="ml.m5.large", endpoint_name="stalling")
    try:
        runtime = _runtime(session)
        answer = runtime.invoke_endpoint_with_response_stream(
            EndpointName="stalling", Body=json.dumps({"count": 2, "gap": 5}), ContentType="application/json")
        iterator = iter(answer["Body"])
        assert json.loads(next(iterator)["PayloadPart"]["Bytes"])["i"] == 0
        started = time.monotonic()
        with pytest.raises(EventStreamError) as caught:
            next(iterator)
        assert caught.value.response["Error"]["Code"] == "ModelStreamError"
        assert time.monotonic() - started < 4.5, "the 2 s gap limit, not the handler's 5 s sleep, ended it"
        # The stuck worker is replaced; the endpoint answers again once the new one has loaded.
        deadline = time.monotonic() + 60
        while True:
            try:
                events = runtime.invoke_endpoint_with_response_stream(
                    EndpointName="stalling", Body=json.dumps({"count": 1}), ContentType="application/json")["Body"]
                assert [line["i"] for line in _lines(events)] == [0]
                break
            except ClientError:
                assert time.monotonic() < deadline, "the endpoint never served again"
                time.sleep(0.5)
    finally:
        predictor.delete_endpoint()
