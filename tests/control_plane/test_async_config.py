"""The pieces of asynchronous inference that need no process: the config's checks, the request's headers
and S3 names, the notification's shape, and the queue's slots and hand-back."""

from __future__ import annotations

import threading
import time
from typing import Any

import pytest

from localmaker.control_plane.api_errors import ValidationError, ValidationException
from localmaker.control_plane.async_config import (
    ASYNC_CONTAINER_TIMEOUT_S,
    AsyncEndpoints,
    async_variants,
    parse_async_config,
)
from localmaker.control_plane.async_notifications import notification
from localmaker.control_plane.async_queue import EndpointQueue, QueueClosed
from localmaker.control_plane.async_requests import AsyncRequest, check_input_size, parse_async_request
from localmaker.control_plane.endpoint_state import VariantSpec

OUTPUT = {"S3OutputPath": "s3://results/out/", "S3FailurePath": "s3://results/failed"}
TOPIC = "arn:aws:sns:us-east-1:123456789012:done"


def _environ(**headers: str) -> dict[str, Any]:
    return {"HTTP_X_AMZN_SAGEMAKER_" + k.upper().replace("-", "_"): v for k, v in headers.items()}


def test_a_full_config_is_read_and_paths_lose_their_trailing_slash() -> None:
    config = parse_async_config({"OutputConfig": {**OUTPUT, "NotificationConfig": {
        "SuccessTopic": TOPIC, "ErrorTopic": TOPIC, "IncludeInferenceResponseIn": ["ERROR_NOTIFICATION_TOPIC"]}},
        "ClientConfig": {"MaxConcurrentInvocationsPerInstance": 4}})
    assert (config.output_path, config.failure_path) == ("s3://results/out", "s3://results/failed")
    assert config.topic(True) == config.topic(False) == TOPIC
    assert config.includes_response(False) and not config.includes_response(True)
    assert config.max_concurrent_per_instance == 4
    assert parse_async_config({"OutputConfig": {"S3OutputPath": "s3://b"}}).max_concurrent_per_instance == 1


@pytest.mark.parametrize(("raw", "words"), [
    ({}, "OutputConfig is required"),
    ({"OutputConfig": {}}, "S3OutputPath is required"),
    ({"OutputConfig": {"S3OutputPath": "results/out"}}, "asyncInferenceConfig.outputConfig.s3OutputPath"),
    ({"OutputConfig": {"S3OutputPath": "s3://b/" + "x" * 600}}, "less than or equal to 512"),
    ({"OutputConfig": {**OUTPUT, "NotificationConfig": {"ErrorTopic": "errors"}}}, "errorTopic"),
    ({"OutputConfig": {**OUTPUT, "NotificationConfig": {"IncludeInferenceResponseIn": ["ALWAYS"]}}},
     "enum value set"),
    ({"OutputConfig": OUTPUT, "ClientConfig": {"MaxConcurrentInvocationsPerInstance": 0}},
     "greater than or equal to 1"),
    ({"OutputConfig": OUTPUT, "ClientConfig": {"MaxConcurrentInvocationsPerInstance": 1001}},
     "less than or equal to 1000"),
])
def test_a_bad_config_is_refused_in_aws_words(raw: dict[str, Any], words: str) -> None:
    with pytest.raises(ValidationException, match=words):
        parse_async_config(raw)


def test_a_serverless_variant_cannot_be_asynchronous() -> None:
    with pytest.raises(ValidationException, match="not supported"):
        parse_async_config({"OutputConfig": OUTPUT}, [{"ServerlessConfig": {"MemorySizeInMB": 2048}}])


def test_endpoints_follow_their_config_and_a_delete_reaches_the_listeners() -> None:
    endpoints = AsyncEndpoints()
    endpoints.record_config("async-config", parse_async_config({"OutputConfig": OUTPUT}))
    deleted: list[str] = []
    endpoints.on_detach.append(deleted.append)
    endpoints.attach("ep", "async-config")
    assert endpoints.is_async("ep")
    endpoints.attach("ep", "realtime-config")  # UpdateEndpoint to a real-time config
    assert not endpoints.is_async("ep")
    endpoints.attach("ep", "async-config")
    endpoints.forget_config("async-config")  # the running endpoint keeps the config it started with
    assert endpoints.is_async("ep")
    endpoints.detach("ep")
    assert not endpoints.is_async("ep") and deleted == ["ep"]


def test_async_instances_get_a_long_container_timeout_unless_the_model_sets_one() -> None:
    endpoints = AsyncEndpoints()
    endpoints.record_config("async", parse_async_config({"OutputConfig": OUTPUT}))
    plain = VariantSpec("v", "m", "ml.m5.large", 1, "s3://b/m.tar.gz", "", {"A": "1"})
    own = VariantSpec("v", "m", "ml.m5.large", 1, "s3://b/m.tar.gz", "", {"SAGEMAKER_MODEL_SERVER_TIMEOUT": "90"})
    [longer, kept] = async_variants([plain, own], endpoints, "async")
    assert longer.environment == {"SAGEMAKER_MODEL_SERVER_TIMEOUT": str(ASYNC_CONTAINER_TIMEOUT_S), "A": "1"}
    assert kept.environment == {"SAGEMAKER_MODEL_SERVER_TIMEOUT": "90"}
    assert async_variants([plain], endpoints, "realtime") == [plain]


def test_a_request_names_its_output_and_failure_objects_as_sagemaker_does() -> None:
    config = parse_async_config({"OutputConfig": OUTPUT})
    request = parse_async_request(_environ(InputLocation="s3://in/a/b.json", **{"Inference-Id": "r-1"},
                                           RequestTTLSeconds="60", InvocationTimeoutSeconds="3600"), "ep", config)
    assert (request.input_bucket, request.input_key) == ("in", "a/b.json")
    assert request.output_location == "s3://results/out/r-1.out"
    assert request.failure_location == "s3://results/failed/r-1-error.out"
    assert (request.ttl_s, request.timeout_s) == (60, 3600)
    named = parse_async_request(_environ(InputLocation="s3://in/x", S3OutputPathExtension="day/7",
                                         Filename="img.png"), "ep", config)
    assert named.output_location == "s3://results/out/day/7/img.png"
    assert named.failure_location.startswith("s3://results/failed/day/7/")
    assert (named.ttl_s, named.timeout_s) == (21600, 900)  # AWS's defaults: 6 hours, 15 minutes
    no_failure_path = parse_async_request(_environ(InputLocation="s3://in/x", **{"Inference-Id": "q"}), "ep",
                                          parse_async_config({"OutputConfig": {"S3OutputPath": "s3://r/o"}}))
    assert no_failure_path.failure_location == "s3://r/o/q-error.out" and not no_failure_path.failure_reported


@pytest.mark.parametrize(("headers", "words"), [
    ({}, "inputLocation"),
    ({"InputLocation": "https://example.com/x"}, "not an S3 object URL"),
    ({"InputLocation": "s3://in/x", "InvocationTimeoutSeconds": "3601"}, "less than or equal to 3600"),
    ({"InputLocation": "s3://in/x", "InvocationTimeoutSeconds": "0"}, "greater than or equal to 1"),
    ({"InputLocation": "s3://in/x", "RequestTTLSeconds": "59"}, "greater than or equal to 60"),
    ({"InputLocation": "s3://in/x", "RequestTTLSeconds": "21601"}, "less than or equal to 21600"),
    ({"InputLocation": "s3://in/x", "Inference-Id": "x" * 65}, "inferenceId"),
    ({"InputLocation": "s3://in/x", "Filename": "a.b.c"}, "filename"),
    ({"InputLocation": "s3://in/x", "S3OutputPathExtension": "s3://elsewhere"}, "s3OutputPathExtension"),
])
def test_bad_request_headers_are_refused_in_aws_words(headers: dict[str, str], words: str) -> None:
    with pytest.raises(ValidationError, match=words):
        parse_async_request(_environ(**headers), "ep", parse_async_config({"OutputConfig": OUTPUT}))


def test_the_input_may_be_up_to_one_gigabyte() -> None:
    check_input_size(1024 ** 3, "s3://in/x")
    with pytest.raises(ValidationError, match="1 GB"):
        check_input_size(1024 ** 3 + 1, "s3://in/x")


def _request(name: str = "r") -> AsyncRequest:
    return parse_async_request(_environ(InputLocation="s3://in/x", **{"Inference-Id": name}), "ep",
                               parse_async_config({"OutputConfig": OUTPUT}))


def test_the_notification_has_aws_shape_and_carries_a_small_response_only_when_asked() -> None:
    request = _request()
    done = notification(request, "eu-west-1", True, "application/json", b'{"ok": 1}', None, include_response=True)
    assert list(done) == ["awsRegion", "eventTime", "receivedTime", "invocationStatus", "requestParameters",
                          "responseParameters", "responseBody", "inferenceId", "eventVersion", "eventSource",
                          "eventName"]
    assert done["responseBody"] == {"content": "eyJvayI6IDF9", "encoding": "BASE64"}
    assert done["requestParameters"] == {"endpointName": "ep", "inputLocation": "s3://in/x"}
    failed = notification(request, "eu-west-1", False, None, b"x" * (129 * 1024), "boom", include_response=True)
    assert failed["invocationStatus"] == "Failed" and failed["failureReason"] == "boom"
    assert failed["responseParameters"] == {"failureLocation": request.failure_location}
    assert "responseBody" not in failed  # over 128 KB


def test_the_queue_runs_at_most_its_capacity_and_hands_back_what_is_left() -> None:
    release = threading.Event()
    running: list[str] = []
    done: list[str] = []

    def run(request: AsyncRequest) -> None:
        running.append(request.inference_id)
        release.wait(10)
        done.append(request.inference_id)

    queue = EndpointQueue("ep", lambda: 2, run)
    requests = [_request(f"r{i}") for i in range(5)]
    for request in requests:
        queue.put(request)
    deadline = time.monotonic() + 5
    while len(running) < 2 and time.monotonic() < deadline:
        time.sleep(0.01)
    time.sleep(0.1)
    assert running == ["r0", "r1"]  # two slots, in arrival order
    assert queue.backlog()[0] == 5
    left = queue.close()
    assert [r.inference_id for r in left] == ["r0", "r1", "r2", "r3", "r4"]  # running first, then waiting
    with pytest.raises(QueueClosed):
        queue.put(_request("late"))
    release.set()
    assert queue.wait_until_empty(time.monotonic() + 5)
    assert sorted(done) == ["r0", "r1"]  # the closed queue started nothing more
    assert requests[2].claim() and not requests[2].claim()  # one outcome per request
