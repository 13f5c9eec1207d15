"""A web page cannot drive the control plane; unsigned and unroutable calls get AWS's 4xx, never a 500.

The attacks are what a browser can send: a DNS-rebinding page reaches 127.0.0.1 with its own name in
Host; a cross-origin "simple" POST (text/plain, no preflight) carries an Origin header. AWS clients send
neither, and must keep working: boto3 on 127.0.0.1 and on localhost (and S3's virtual-hosted addressing,
``Host: <bucket>.localhost``), and ``localmaker up --host 0.0.0.0``, which opens the server to names it
cannot know.
"""

from __future__ import annotations

import http.client
import json
import os
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Iterator

import boto3
import botocore.parsers
import pytest
from botocore.config import Config
from botocore.exceptions import ClientError

from localmaker.control_plane.instance_process import free_port
from localmaker.control_plane.request_guard import RequestGuard, is_loopback
from localmaker.control_plane.server import ControlPlane
from localmaker.control_plane.settings import ControlPlaneSettings
from localmaker.spec.names import LOCAL_CREDENTIALS

SIGNED = ("AWS4-HMAC-SHA256 Credential=testing/20260101/us-east-1/{service}/aws4_request, SignedHeaders=host, "
          "Signature=0")
JSON_11 = "application/x-amz-json-1.1"


@pytest.fixture(scope="module")
def plane(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ControlPlane]:
    settings = ControlPlaneSettings(allowed_origins=("http://localhost:3000",))
    control_plane = ControlPlane(work_root=tmp_path_factory.mktemp("web"), settings=settings).start()
    try:
        yield control_plane
    finally:
        control_plane.stop()


def _send(url: str, method: str, path: str, body: bytes | None = None,
          headers: dict[str, str] | None = None) -> tuple[int, dict[str, str], bytes]:
    host, port = url.removeprefix("http://").rsplit(":", 1)
    connection = http.client.HTTPConnection(host, int(port), timeout=30)
    try:
        connection.putrequest(method, path, skip_host="Host" in (headers or {}), skip_accept_encoding=True)
        for name, value in (headers or {}).items():
            connection.putheader(name, value)
        connection.putheader("Content-Length", str(len(body or b"")))
        connection.endheaders(body)
        answer = connection.getresponse()
        return answer.status, {k.lower(): v for k, v in answer.getheaders()}, answer.read()
    finally:
        connection.close()


def _parsed(protocol: str, status: int, headers: dict[str, str], body: bytes) -> dict[str, str]:
    """The error as botocore's parser for ``protocol`` reads it."""
    parser = botocore.parsers.create_parser(protocol)
    return dict(parser.parse({"body": body, "headers": headers, "status_code": status}, None)["Error"])


def _client(url: str, service: str, **config: object) -> object:
    return boto3.client(service, endpoint_url=url, region_name="us-east-1", config=Config(**config),  # type: ignore[arg-type]
                        **LOCAL_CREDENTIALS)


# -- Host: DNS rebinding ------------------------------------------------------------------------------


@pytest.mark.parametrize("host", ["evil.example", "evil.example:80", "127.0.0.1.evil.example", "localhost.evil.example",
                                  "10.0.0.7", "[2001:db8::1]:8080", "", "0.0.0.0"])
def test_a_foreign_host_header_is_refused_before_anything_runs(plane, host):
    # A rebinding page's PutObject + CreateTrainingJob: the first call must already fail.
    headers = {"Host": host, "X-Amz-Target": "SageMaker.CreateTrainingJob", "Content-Type": JSON_11,
               "Authorization": SIGNED.format(service="sagemaker")}
    status, answer_headers, body = _send(plane.url, "POST", "/", b'{"TrainingJobName": "rebound"}', headers)
    assert status == 403, body
    error = _parsed("json", status, answer_headers, body)
    assert error["Code"] == "AccessDeniedException" and "Host header" in error["Message"]
    s3_headers = {"Host": host, "Authorization": SIGNED.format(service="s3")}
    status, answer_headers, body = _send(plane.url, "PUT", "/bucket/code.tar.gz", b"payload", s3_headers)
    assert status == 403 and _parsed("rest-xml", status, answer_headers, body)["Code"] == "AccessDenied"
    jobs = _client(plane.url, "sagemaker").list_training_jobs()["TrainingJobSummaries"]  # type: ignore[attr-defined]
    assert "rebound" not in [job["TrainingJobName"] for job in jobs]


@pytest.mark.parametrize("host", ["localhost", "LOCALHOST:1234", "127.0.0.1", "127.8.9.10:5", "[::1]:9",
                                  "my-bucket.localhost:4566"])
def test_loopback_hosts_are_served(plane, host):
    status, _, body = _send(plane.url, "POST", "/", b"{}", {
        "Host": host, "X-Amz-Target": "SageMaker.ListEndpoints", "Content-Type": JSON_11,
        "Authorization": SIGNED.format(service="sagemaker")})
    # moto's records are the whole test process's, so other tests' endpoints may be listed: an answer is enough.
    assert status == 200 and isinstance(json.loads(body)["Endpoints"], list), body


def test_only_loopback_counts_and_an_open_server_takes_any_host():
    assert all(map(is_loopback, ["localhost", "a.localhost", "127.0.0.1", "127.255.0.1", "::1", "[::1]"]))
    assert not any(map(is_loopback, ["localhost.evil", "evil.example", "0.0.0.0", "10.1.1.1", "::", ""]))
    opened = RequestGuard("0.0.0.0")
    opened.check({"HTTP_HOST": "build-box.internal:8080"})  # nothing raised: --host opened it up
    assert not RequestGuard("127.0.0.1").open_to_network and RequestGuard("::").open_to_network


# -- Origin: cross-origin requests from a web page ----------------------------------------------------


@pytest.mark.parametrize("origin", ["http://evil.example", "null", "http://localhost:3001", "file://",
                                    "https://127.0.0.1.evil.example"])
def test_a_cross_origin_plain_text_post_never_reaches_invoke_endpoint(plane, origin):
    status, headers, body = _send(plane.url, "POST", "/endpoints/anything/invocations", b"hello", {
        "Content-Type": "text/plain", "Origin": origin})
    assert status == 403, body  # not 400 "Endpoint anything not found": the request never reached the proxy
    error = _parsed("rest-json", status, headers, body)
    assert error["Code"] == "AccessDeniedException" and "cross-origin" in error["Message"]
    assert "Traceback" not in body.decode()


def test_a_cross_origin_api_call_is_refused_in_its_protocol(plane):
    status, headers, body = _send(plane.url, "POST", "/", b"Action=CreateRole&Version=2010-05-08", {
        "Content-Type": "application/x-www-form-urlencoded", "Origin": "http://evil.example",
        "Authorization": SIGNED.format(service="iam")})
    assert status == 403 and _parsed("query", status, headers, body)["Code"] == "AccessDenied"
    status, _, _ = _send(plane.url, "POST", "/", b"{}", {
        "X-Amz-Target": "SageMaker.ListEndpoints", "Content-Type": JSON_11, "Sec-Fetch-Site": "cross-site",
        "Authorization": SIGNED.format(service="sagemaker")})
    assert status == 403  # a browser that left Origin out still says where the request came from


def test_same_origin_and_listed_origins_are_served(plane):
    own = plane.url.removeprefix("http://")
    for origin in (f"http://{own}", "http://localhost:3000", "http://LOCALHOST:3000/"):
        status, _, body = _send(plane.url, "POST", "/", b"{}", {
            "Host": own, "Origin": origin, "X-Amz-Target": "SageMaker.ListEndpoints", "Content-Type": JSON_11,
            "Authorization": SIGNED.format(service="sagemaker")})
        assert status == 200, (origin, body)


def test_aws_clients_keep_working_on_127_0_0_1_and_localhost(plane):
    for url in (plane.url, plane.url.replace("127.0.0.1", "localhost")):
        s3 = _client(url, "s3")
        bucket = f"web-{url.rsplit(':', 1)[1]}-{'l' if 'localhost' in url else 'i'}"
        s3.create_bucket(Bucket=bucket)  # type: ignore[attr-defined]
        s3.put_object(Bucket=bucket, Key="k", Body=b"v")  # type: ignore[attr-defined]
        assert s3.get_object(Bucket=bucket, Key="k")["Body"].read() == b"v"  # type: ignore[attr-defined]
        assert isinstance(_client(url, "sagemaker").list_endpoints()["Endpoints"], list)  # type: ignore[attr-defined]


# -- unsigned and unroutable calls (point 9) ------------------------------------------------------------


@pytest.mark.parametrize("operation", ["ListEndpoints", "CreateEndpoint", "CreateTrainingJob", "NoSuchAction"])
def test_an_unsigned_sagemaker_call_is_missing_authentication_token(plane, operation):
    status, headers, body = _send(plane.url, "POST", "/", b"{}", {
        "X-Amz-Target": f"SageMaker.{operation}", "Content-Type": JSON_11})
    assert (status, headers["content-type"]) == (403, JSON_11), body
    error = _parsed("json", status, headers, body)
    assert error == {"Code": "MissingAuthenticationTokenException", "Message": "Missing Authentication Token"}


def test_an_unsigned_query_call_is_missing_authentication_token_in_xml(plane):
    status, headers, body = _send(plane.url, "POST", "/", b"Action=ListRoles&Version=2010-05-08", {
        "Content-Type": "application/x-www-form-urlencoded"})
    assert status == 403 and _parsed("query", status, headers, body)["Code"] == "MissingAuthenticationToken"


@pytest.mark.parametrize(("method", "path", "content_type"), [
    ("DELETE", "/", ""), ("POST", "/nothing/here", "text/plain"), ("PATCH", "/a/b/c", "application/json"),
    ("POST", "/?uploads", "text/plain"), ("PUT", "/", "")])
def test_an_unroutable_unsigned_path_is_an_aws_shaped_4xx(plane, method, path, content_type):
    headers = {"Content-Type": content_type} if content_type else {}
    status, answer_headers, body = _send(plane.url, method, path, b"x", headers)
    assert 400 <= status < 500, body
    assert b"<html" not in body.lower() and b"Traceback" not in body
    assert _parsed("rest-json", status, answer_headers, body)["Code"] in ("UnknownOperationException", "NoSuchBucket")
    # and the control plane keeps serving
    assert isinstance(_client(plane.url, "sagemaker").list_endpoints()["Endpoints"], list)  # type: ignore[attr-defined]


# -- localmaker up --host 0.0.0.0 ---------------------------------------------------------------------------


def _non_loopback_address() -> str:
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as probe:
        try:
            probe.connect(("192.0.2.1", 9))  # no packet is sent: this only picks the outgoing interface
            return str(probe.getsockname()[0])
        except OSError:
            return ""


def test_up_with_host_0_0_0_0_serves_other_names_and_boto3(localmaker_home):
    port = free_port()
    process = subprocess.Popen([sys.executable, "-m", "localmaker.cli", "up", "--host", "0.0.0.0", "--port",
                                str(port)], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
                               start_new_session=True, env=os.environ.copy())
    try:
        url = f"http://127.0.0.1:{port}"
        deadline = time.monotonic() + 60
        while True:
            try:
                socket.create_connection(("127.0.0.1", port), timeout=1).close()
                break
            except OSError:
                assert time.monotonic() < deadline and process.poll() is None, "localmaker up did not start"
                time.sleep(0.1)
        sagemaker = _client(url, "sagemaker", retries={"max_attempts": 1})
        assert sagemaker.list_endpoints()["Endpoints"] == []  # type: ignore[attr-defined]
        status, _, body = _send(url, "POST", "/", b"{}", {
            "Host": f"build-box.internal:{port}", "X-Amz-Target": "SageMaker.ListEndpoints",
            "Content-Type": JSON_11, "Authorization": SIGNED.format(service="sagemaker")})
        assert status == 200, body  # opened up: a name the server cannot know is a legitimate one
        if address := _non_loopback_address():
            with pytest.raises(ClientError) as caught:
                _client(f"http://{address}:{port}", "sagemaker").describe_endpoint(EndpointName="none")  # type: ignore[attr-defined]
            assert caught.value.response["Error"]["Code"] == "ValidationException"  # reached, and answered
        status, _, _ = _send(url, "POST", "/endpoints/x/invocations", b"x", {"Origin": "http://evil.example"})
        assert status == 403  # opening the port to other machines does not open it to web pages
    finally:
        os.killpg(process.pid, signal.SIGTERM)
        try:
            process.wait(timeout=60)
        except subprocess.TimeoutExpired:
            os.killpg(process.pid, signal.SIGKILL)
            process.wait(timeout=30)
