"""The control plane's error map, seen from the wire: each ApiError's code, status, body and headers.

Everything here goes through a real control plane on a loopback port, with boto3 where botocore can send
the request and raw HTTP where only another client could. The control plane runs in eu-west-1, so an
ARN that hard-coded us-east-1 would show.
"""

from __future__ import annotations

import contextlib
import http.client
import json
import socket
import textwrap
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import boto3
import pytest
from botocore.config import Config
from botocore.exceptions import ClientError

from localmaker.control_plane import api_errors
from localmaker.control_plane.answers import AMZ_JSON, RUNTIME_JSON
from localmaker.control_plane.server import ControlPlane
from localmaker.control_plane.settings import ControlPlaneSettings
from localmaker.deploy import Session
from localmaker.model.artifact import pack_handler
from localmaker.spec.container_images import default_image
from localmaker.spec.instance_types import CATALOGUE
from localmaker.spec.names import MAX_PAYLOAD_BYTES, PLACEHOLDER_ROLE, endpoint_log_group_arn

REGION = "eu-west-1"
ENDPOINT = "errors"
# "hold" blocks in the container until the test creates the release file (bounded: 60 s); "fail" raises.
HANDLER = """
    import json
    import os
    import time
    from pathlib import Path

    def model_fn(model_dir):
        return Path(os.environ["HOLD_DIR"])

    def input_fn(body, content_type):
        return json.loads(body)

    def predict_fn(data, folder):
        if data.get("fail"):
            raise RuntimeError("asked to fail")
        if data.get("hold"):
            (folder / "started").touch()
            deadline = time.monotonic() + 60
            while not (folder / "release").exists() and time.monotonic() < deadline:
                time.sleep(0.05)
        return {"ok": True}

    def output_fn(prediction, accept):
        return json.dumps(prediction), "application/json"
"""


def _client(plane: ControlPlane, service: str) -> Any:
    """One try only: botocore would otherwise retry a 500 or 503 and hide it from the test."""
    return boto3.client(service, endpoint_url=plane.url, region_name=REGION, aws_access_key_id="testing",
                        aws_secret_access_key="testing", config=Config(retries={"max_attempts": 1}))


@pytest.fixture(scope="module")
def hold_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tmp_path_factory.mktemp("holds")


@pytest.fixture(scope="module")
def plane(tmp_path_factory: pytest.TempPathFactory, hold_dir: Path) -> Iterator[ControlPlane]:
    """Endpoint ENDPOINT on one instance that takes one request at a time and queues none, so that a
    second request is refused at once."""
    settings = ControlPlaneSettings(max_in_flight=1, max_queued=0, queue_timeout_s=0)
    work = tmp_path_factory.mktemp("api-errors")
    control_plane = ControlPlane(region=REGION, work_root=work / "plane", startup_timeout_s=120,
                                 settings=settings).start()
    try:
        session = Session(endpoint_url=control_plane.url, region_name=REGION)
        url = session.upload_file(pack_handler(textwrap.dedent(HANDLER), work / "model.tar.gz"), "errors/model.tar.gz")
        sagemaker = _client(control_plane, "sagemaker")
        sagemaker.create_model(ModelName=ENDPOINT, ExecutionRoleArn=PLACEHOLDER_ROLE, PrimaryContainer={
            "Image": default_image(REGION, CATALOGUE["ml.m5.large"]), "ModelDataUrl": url,
            "Environment": {"HOLD_DIR": str(hold_dir), "SAGEMAKER_MODEL_SERVER_WORKERS": "1"}})
        sagemaker.create_endpoint_config(EndpointConfigName=ENDPOINT, ProductionVariants=[
            {"VariantName": "AllTraffic", "ModelName": ENDPOINT, "InitialInstanceCount": 1,
             "InstanceType": "ml.m5.large"}])
        sagemaker.create_endpoint(EndpointName=ENDPOINT, EndpointConfigName=ENDPOINT)
        session.wait_for_endpoint(ENDPOINT, timeout_s=120, poll_s=0.2)
        yield control_plane
    finally:
        control_plane.stop()


# A SigV4 Authorization header in form (the control plane verifies no signature, but answers an unsigned call
# MissingAuthenticationToken, as AWS does).
SIGNED = ("AWS4-HMAC-SHA256 Credential=testing/20260101/us-east-1/sagemaker/aws4_request, "
          "SignedHeaders=host, Signature=0")


def _request(plane: ControlPlane, method: str, path: str, body: bytes | None = None,
             headers: dict[str, str] | None = None) -> tuple[int, dict[str, str], Any]:
    """One raw HTTP request; the answer's status, headers (lower-cased names) and JSON body."""
    host, port = plane.url.removeprefix("http://").rsplit(":", 1)
    connection = http.client.HTTPConnection(host, int(port), timeout=30)
    try:
        connection.request(method, path, body=body, headers=headers or {})
        answer = connection.getresponse()
        return answer.status, {k.lower(): v for k, v in answer.getheaders()}, json.loads(answer.read() or b"null")
    finally:
        connection.close()


def _api(plane: ControlPlane, action: str, body: bytes) -> tuple[int, dict[str, str], Any]:
    return _request(plane, "POST", "/", body, {"X-Amz-Target": f"SageMaker.{action}", "Content-Type": AMZ_JSON,
                                               "Authorization": SIGNED})  # unsigned: MissingAuthenticationToken


def _caught(call: Any, **kwargs: Any) -> dict[str, Any]:
    with pytest.raises(ClientError) as caught:
        call(**kwargs)
    return dict(caught.value.response)


def _assert_shape(status: int, headers: dict[str, str], body: Any, expected: type[api_errors.ApiError],
                  content_type: str) -> None:
    assert status == expected.status, body
    assert headers["content-type"] == content_type
    assert headers["x-amzn-errortype"] == expected.code
    assert body["__type"] == expected.code and body["message"]
    assert "Traceback" not in json.dumps(body)


# -- the classes themselves ------------------------------------------------------------------------


@pytest.mark.parametrize(("error", "code", "status"), [
    (api_errors.ValidationException("m"), "ValidationException", 400),
    (api_errors.ResourceInUse("m"), "ResourceInUse", 400),
    (api_errors.SerializationException("m"), "SerializationException", 400),
    (api_errors.EndpointNotFound(REGION, "e"), "ValidationException", 400),
    (api_errors.TrainingJobNotFound(REGION, "j"), "ValidationException", 400),
    (api_errors.ValidationError("m"), "ValidationError", 400),
    (api_errors.RequestTimeout("m"), "RequestTimeout", 408),
    (api_errors.NotFound("m"), "NotFound", 404),
    (api_errors.MethodNotAllowed("m"), "MethodNotAllowed", 405),
    (api_errors.ServiceUnavailable("m", 2), "ServiceUnavailable", 503),
    (api_errors.InternalFailure("m"), "InternalFailure", 500),
    (api_errors.ModelError(REGION, "e", 400, "bad"), "ModelError", 424),
])
def test_each_error_carries_its_code_and_status_into_the_answer(error, code, status):
    assert (error.code, error.status) == (code, status)
    answer = error.answer()
    assert answer.status == f"{status} Error"
    assert ("Content-Type", AMZ_JSON) in answer.headers and ("x-amzn-ErrorType", code) in answer.headers
    body = answer.json()
    assert body["__type"] == code and body["message"] == error.message == str(error)
    assert ("Content-Type", RUNTIME_JSON) in error.answer(RUNTIME_JSON).headers


def test_the_errors_with_extra_members_or_headers_carry_them():
    assert ("Retry-After", "2") in api_errors.ServiceUnavailable("busy", 2).answer().headers
    model_error = api_errors.ModelError("ap-south-1", "e1", 503, "down").answer().json()
    assert model_error == {
        "__type": "ModelError",
        "message": 'Received server error (503) from primary with message "down". '
                   "See the instance log of endpoint e1 for more information.",
        "OriginalStatusCode": 503, "OriginalMessage": "down",
        "LogStreamArn": "arn:aws:logs:ap-south-1:123456789012:log-group:/aws/sagemaker/Endpoints/e1"}
    too_large = api_errors.PayloadTooLarge(10).answer(RUNTIME_JSON)
    assert (too_large.status, too_large.json()) == ("413 Error", {"message": "HTTP content length exceeded 10 bytes."})
    assert [name for name, _ in too_large.headers] == ["Content-Type"]


# -- the SageMaker API -------------------------------------------------------------------------------


def test_a_validation_exception_reaches_boto3_in_the_sagemaker_apis_shape(plane):
    error = _caught(_client(plane, "sagemaker").create_endpoint_config, EndpointConfigName="bad", ProductionVariants=[
        {"VariantName": "A", "ModelName": ENDPOINT, "InitialInstanceCount": 1, "InstanceType": "ml.g9.tiny"}])
    assert error["Error"]["Code"] == "ValidationException"
    assert "unknown instance_type 'ml.g9.tiny'" in error["Error"]["Message"]
    assert error["ResponseMetadata"]["HTTPStatusCode"] == 400
    assert error["ResponseMetadata"]["HTTPHeaders"]["content-type"] == AMZ_JSON


def test_a_missing_endpoint_or_training_job_is_answered_alike_by_moto_and_localmakers_routes(plane):
    sagemaker = _client(plane, "sagemaker")
    described = _caught(sagemaker.describe_endpoint, EndpointName="absent")["Error"]
    assert described == {"Code": "ValidationException",
                         "Message": f"Could not find endpoint 'arn:aws:sagemaker:{REGION}:123456789012:"
                                    "endpoint/absent'."}
    status, headers, body = _request(plane, "GET", "/_localmaker/endpoints/absent")
    _assert_shape(status, headers, body, api_errors.ValidationException, AMZ_JSON)
    assert body["message"] == described["Message"]
    updated = _caught(sagemaker.update_endpoint, EndpointName="absent", EndpointConfigName=ENDPOINT)["Error"]
    assert updated == described

    job = _caught(sagemaker.describe_training_job, TrainingJobName="absent")["Error"]
    assert job["Code"] == "ValidationException"
    for route in ("/_localmaker/training-jobs/absent", "/_localmaker/training-jobs/absent/log"):
        status, headers, body = _request(plane, "GET", route)
        _assert_shape(status, headers, body, api_errors.ValidationException, AMZ_JSON)
        assert body["message"] == job["Message"], route


def test_a_training_job_name_in_use_is_resource_in_use_and_a_malformed_job_a_validation_exception(plane):
    request = {"TrainingJobName": "taken", "RoleArn": PLACEHOLDER_ROLE,
               "AlgorithmSpecification": {"TrainingImage": default_image(REGION, CATALOGUE["ml.m5.large"]),
                                          "TrainingInputMode": "File"},
               "OutputDataConfig": {"S3OutputPath": "s3://nowhere/out"},
               "ResourceConfig": {"InstanceType": "ml.m5.large", "InstanceCount": 1, "VolumeSizeInGB": 1},
               "StoppingCondition": {"MaxRuntimeInSeconds": 60}}
    sagemaker = _client(plane, "sagemaker")
    sagemaker.create_training_job(**request)  # no code to run: the job fails, and its name stays taken
    error = _caught(sagemaker.create_training_job, **request)
    assert (error["Error"]["Code"], error["ResponseMetadata"]["HTTPStatusCode"]) == ("ResourceInUse", 400)
    assert error["Error"]["Message"] == "Training job 'taken' already exists."

    malformed = {k: v for k, v in request.items() if k != "OutputDataConfig"} | {"TrainingJobName": "malformed"}
    status, headers, body = _api(plane, "CreateTrainingJob", json.dumps(malformed).encode())
    _assert_shape(status, headers, body, api_errors.ValidationException, AMZ_JSON)
    assert body["message"] == "malformed CreateTrainingJob request: missing 'OutputDataConfig'"
    not_a_number = {**request, "TrainingJobName": "slow", "StoppingCondition": {"MaxRuntimeInSeconds": "long"}}
    status, headers, body = _api(plane, "CreateTrainingJob", json.dumps(not_a_number).encode())
    _assert_shape(status, headers, body, api_errors.ValidationException, AMZ_JSON)


def test_a_body_that_is_not_a_json_object_is_a_serialization_exception(plane):
    status, headers, body = _api(plane, "CreateEndpoint", b"[]")
    _assert_shape(status, headers, body, api_errors.SerializationException, AMZ_JSON)
    assert body["message"] == "the body of SageMaker.CreateEndpoint must be a JSON object, got list"


def test_moto_management_and_unknown_routes_are_not_found_and_localmakers_routes_are_read_only(plane):
    for path in ("/moto-api/data.json", "/_localmaker/nothing-here"):
        status, headers, body = _request(plane, "GET", path)
        _assert_shape(status, headers, body, api_errors.NotFound, AMZ_JSON)
    status, headers, body = _request(plane, "POST", "/_localmaker/endpoints", b"{}")
    _assert_shape(status, headers, body, api_errors.MethodNotAllowed, AMZ_JSON)


def _hung_up(plane: ControlPlane, head: bytes) -> tuple[int, dict[str, str], Any]:
    """Send ``head`` and a few bytes of a body it declares longer, stop sending, and read the answer."""
    host, port = plane.url.removeprefix("http://").rsplit(":", 1)
    with socket.create_connection((host, int(port)), timeout=30) as sock:
        sock.sendall(head + b'{"Endpoint')
        sock.shutdown(socket.SHUT_WR)  # the server reads to the end of what came, not to Content-Length
        raw = b""
        while chunk := sock.recv(65536):
            raw += chunk
    head_part, body = raw.split(b"\r\n\r\n", 1)
    lines = head_part.decode().split("\r\n")
    headers = {k.lower(): v.strip() for k, v in (line.split(":", 1) for line in lines[1:])}
    return int(lines[0].split()[1]), headers, json.loads(body)


def test_a_body_cut_short_is_a_request_timeout_on_either_api(plane):
    api = (b"POST / HTTP/1.1\r\nHost: localhost\r\nX-Amz-Target: SageMaker.CreateEndpoint\r\n"
           b"Authorization: " + SIGNED.encode() + b"\r\n"
           b"Content-Type: application/x-amz-json-1.1\r\nContent-Length: 100\r\n\r\n")
    status, headers, body = _hung_up(plane, api)
    _assert_shape(status, headers, body, api_errors.RequestTimeout, AMZ_JSON)
    assert "did not arrive whole" in body["message"]
    invoke = (f"POST /endpoints/{ENDPOINT}/invocations HTTP/1.1\r\nHost: localhost\r\n"
              "Content-Type: application/json\r\nContent-Length: 100\r\n\r\n").encode()
    status, headers, body = _hung_up(plane, invoke)
    _assert_shape(status, headers, body, api_errors.RequestTimeout, RUNTIME_JSON)


# -- the runtime API ---------------------------------------------------------------------------------


def test_runtime_refusals_are_validation_errors_in_the_runtime_apis_shape(plane):
    runtime = _client(plane, "sagemaker-runtime")
    missing = _caught(runtime.invoke_endpoint, EndpointName="absent", Body=b"{}")
    assert missing["Error"] == {"Code": "ValidationError", "Message": "Endpoint absent not found."}
    assert missing["ResponseMetadata"]["HTTPHeaders"]["content-type"] == RUNTIME_JSON
    variant = _caught(runtime.invoke_endpoint, EndpointName=ENDPOINT, Body=b"{}", TargetVariant="Nope")
    assert variant["Error"]["Code"] == "ValidationError" and "'Nope' does not exist" in variant["Error"]["Message"]
    status, headers, body = _request(plane, "POST", f"/endpoints/{ENDPOINT}/invocations", b"{}",
                                     {"Content-Length": "ten"})
    _assert_shape(status, headers, body, api_errors.ValidationError, RUNTIME_JSON)


def test_a_container_error_is_a_model_error_whose_log_arn_names_the_control_planes_region(plane):
    error = _caught(_client(plane, "sagemaker-runtime").invoke_endpoint, EndpointName=ENDPOINT,
                    ContentType="application/json", Body=json.dumps({"fail": True}))
    assert (error["Error"]["Code"], error["ResponseMetadata"]["HTTPStatusCode"]) == ("ModelError", 424)
    assert error["OriginalStatusCode"] == 500 and "asked to fail" in error["OriginalMessage"]
    assert error["Error"]["Message"].startswith("Received server error (500) from primary with message")
    assert error["LogStreamArn"] == endpoint_log_group_arn(REGION, ENDPOINT)
    assert error["ResponseMetadata"]["HTTPHeaders"]["content-type"] == RUNTIME_JSON


def test_a_payload_over_the_limit_is_a_bare_413(plane):
    # Judged by Content-Length, before a byte of the body is read.
    status, headers, body = _hung_up(plane, (
        f"POST /endpoints/{ENDPOINT}/invocations HTTP/1.1\r\nHost: localhost\r\nContent-Type: application/json\r\n"
        f"Content-Length: {MAX_PAYLOAD_BYTES + 1}\r\n\r\n").encode())
    assert (status, body) == (413, {"message": f"HTTP content length exceeded {MAX_PAYLOAD_BYTES} bytes."})
    assert headers["content-type"] == RUNTIME_JSON and "x-amzn-errortype" not in headers


def test_a_request_beyond_capacity_is_service_unavailable_with_retry_after(plane, hold_dir):
    runtime = _client(plane, "sagemaker-runtime")
    held = threading.Thread(target=runtime.invoke_endpoint, kwargs={
        "EndpointName": ENDPOINT, "ContentType": "application/json", "Body": json.dumps({"hold": True})})
    held.start()
    try:
        deadline = time.monotonic() + 30
        while not (hold_dir / "started").exists():
            assert time.monotonic() < deadline, "the held request never reached the container"
            time.sleep(0.05)
        error = _caught(runtime.invoke_endpoint, EndpointName=ENDPOINT, ContentType="application/json",
                        Body=json.dumps({}))
        assert (error["Error"]["Code"], error["ResponseMetadata"]["HTTPStatusCode"]) == ("ServiceUnavailable", 503)
        assert error["ResponseMetadata"]["HTTPHeaders"]["retry-after"] == "1"
        assert error["ResponseMetadata"]["HTTPHeaders"]["content-type"] == RUNTIME_JSON
        assert "cannot take more requests now" in error["Error"]["Message"]
    finally:
        (hold_dir / "release").touch()
        held.join(timeout=60)


# -- a bug of ours -------------------------------------------------------------------------------------


@contextlib.contextmanager
def _broken_runtime(plane: ControlPlane, monkeypatch: pytest.MonkeyPatch) -> Iterator[None]:
    def broken(name: str) -> Any:
        raise RuntimeError("a bug of localmaker's, with a secret in its traceback")

    with monkeypatch.context() as patch:
        patch.setattr(plane.runtime, "get", broken)
        yield


def test_an_unexpected_exception_is_an_internal_failure_without_a_traceback_on_every_path(
        tmp_path, monkeypatch, caplog):
    bare = ControlPlane(region=REGION, work_root=tmp_path / "bare").start()
    try:
        sagemaker, runtime = _client(bare, "sagemaker"), _client(bare, "sagemaker-runtime")
        with _broken_runtime(bare, monkeypatch):
            for call, kwargs, content_type, operation in [
                    (sagemaker.create_endpoint, {"EndpointName": "e", "EndpointConfigName": "c"}, AMZ_JSON,
                     "SageMaker.CreateEndpoint"),
                    (runtime.invoke_endpoint, {"EndpointName": "e", "Body": b"{}"}, RUNTIME_JSON, "InvokeEndpoint")]:
                error = _caught(call, **kwargs)
                assert (error["Error"]["Code"], error["ResponseMetadata"]["HTTPStatusCode"]) == ("InternalFailure",
                                                                                                 500)
                assert error["Error"]["Message"] == (f"{operation} failed inside localmaker; the control plane's "
                                                     "log has the details")
                assert error["ResponseMetadata"]["HTTPHeaders"]["content-type"] == content_type
            status, headers, body = _request(bare, "GET", "/_localmaker/endpoints/e")
            _assert_shape(status, headers, body, api_errors.InternalFailure, AMZ_JSON)
            assert "secret" not in body["message"]
        assert "a bug of localmaker's, with a secret in its traceback" in caplog.text  # the log has it
        assert isinstance(sagemaker.list_endpoints()["Endpoints"], list)  # and it serves on
    finally:
        bare.stop()
