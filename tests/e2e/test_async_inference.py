"""Asynchronous inference end to end through unmodified boto3: a real control plane, real instances, moto's
S3, SNS, SQS and CloudWatch. Results land in S3 where the 202 answer said, notifications reach a
subscribed queue in AWS's shape, the backlog is measured, and no accepted request is ever lost: not
when its instance is killed, not when the endpoint is deleted, not when the control plane stops."""

from __future__ import annotations

import json
import os
import signal
import time
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import datetime, timedelta, timezone
from pathlib import Path
from typing import Any

import pytest
from botocore.exceptions import ClientError

from localmaker.control_plane import async_requests
from localmaker.control_plane.server import ControlPlane
from localmaker.control_plane.settings import ControlPlaneSettings
from localmaker.model.artifact import pack_handler
from tests.control_plane.plane_clients import plane_client
from tests.e2e.conftest import ROLE
from tests.process_probe import group_members

pytestmark = pytest.mark.e2e

IMAGE = "763104351884.dkr.ecr.us-east-1.amazonaws.com/pytorch-inference:2.3-cpu-py311"
# Echoes its JSON request; sleeps or fails when asked; counts its runs in RUNS_FILE when one is named.
ECHO = """
import json, os, time

def model_fn(model_dir):
    return None

def transform_fn(model, body, content_type, accept, context):
    request = json.loads(body)
    if os.environ.get("RUNS_FILE"):
        with open(os.environ["RUNS_FILE"], "a") as runs:
            runs.write(request.get("tag", "") + "\\n")
    time.sleep(request.get("sleep", 0))
    if request.get("fail"):
        raise ValueError("asked to fail: " + request["fail"])
    context.response_custom_attributes = "seen=" + (context.custom_attributes or "")
    return json.dumps({"echo": request, "type": content_type}), "application/json"
"""


@dataclass
class Aws:
    plane: ControlPlane
    s3: Any
    sagemaker: Any
    runtime: Any
    sns: Any
    sqs: Any
    cloudwatch: Any

    def endpoint(self, name: str, env: dict[str, str] | None = None, count: int = 1,
                 async_config: dict[str, Any] | None = None) -> None:
        """An endpoint of the echo handler, asynchronous when ``async_config`` is given; waits for InService."""
        self.sagemaker.create_model(ModelName=name, ExecutionRoleArn=ROLE, PrimaryContainer={
            "Image": IMAGE, "ModelDataUrl": "s3://async-models/echo/model.tar.gz", "Environment": env or {}})
        extra = {"AsyncInferenceConfig": async_config} if async_config else {}
        self.sagemaker.create_endpoint_config(EndpointConfigName=name, ProductionVariants=[{
            "VariantName": "AllTraffic", "ModelName": name, "InitialInstanceCount": count,
            "InstanceType": "ml.m5.large"}], **extra)
        self.sagemaker.create_endpoint(EndpointName=name, EndpointConfigName=name)
        self.sagemaker.get_waiter("endpoint_in_service").wait(EndpointName=name,
                                                              WaiterConfig={"Delay": 1, "MaxAttempts": 120})

    def submit(self, endpoint: str, request: dict[str, Any], **args: Any) -> dict[str, Any]:
        key = f"inputs/{uuid.uuid4().hex}.json"
        self.s3.put_object(Bucket="async-io", Key=key, Body=json.dumps(request).encode())
        return dict(self.runtime.invoke_endpoint_async(EndpointName=endpoint, InputLocation=f"s3://async-io/{key}",
                                                       ContentType="application/json", **args))

    def wait_object(self, location: str, timeout_s: float = 90) -> bytes:
        bucket, key = location.removeprefix("s3://").split("/", 1)
        deadline = time.monotonic() + timeout_s
        while True:
            try:
                return bytes(self.s3.get_object(Bucket=bucket, Key=key)["Body"].read())
            except ClientError as exc:
                assert exc.response["Error"]["Code"] == "NoSuchKey", exc
            assert time.monotonic() < deadline, f"{location} never appeared"
            time.sleep(0.2)

    def exists(self, location: str) -> bool:
        bucket, key = location.removeprefix("s3://").split("/", 1)
        try:
            self.s3.head_object(Bucket=bucket, Key=key)
            return True
        except ClientError:
            return False

    def subscribed_queue(self, topic_arn: str) -> str:
        url = self.sqs.create_queue(QueueName=f"q-{uuid.uuid4().hex[:8]}")["QueueUrl"]
        arn = self.sqs.get_queue_attributes(QueueUrl=url, AttributeNames=["QueueArn"])["Attributes"]["QueueArn"]
        self.sns.subscribe(TopicArn=topic_arn, Protocol="sqs", Endpoint=arn)
        return str(url)

    def messages(self, queue_url: str, count: int, timeout_s: float = 30) -> list[dict[str, Any]]:
        found: list[dict[str, Any]] = []
        deadline = time.monotonic() + timeout_s
        while len(found) < count:
            assert time.monotonic() < deadline, f"got {len(found)} of {count} notifications"
            for message in self.sqs.receive_message(QueueUrl=queue_url, MaxNumberOfMessages=10,
                                                    WaitTimeSeconds=1).get("Messages", []):
                found.append(json.loads(json.loads(message["Body"])["Message"]))  # the SNS envelope's Message
        return found


def clients(plane: ControlPlane) -> Aws:
    return Aws(plane, *(plane_client(plane, s) for s in ("s3", "sagemaker", "sagemaker-runtime", "sns", "sqs",
                                                         "cloudwatch")))


def prepared(plane: ControlPlane, folder: Path) -> Aws:
    aws = clients(plane)
    for bucket in ("async-models", "async-io", "async-results"):
        aws.s3.create_bucket(Bucket=bucket)
    aws.s3.upload_file(str(pack_handler(ECHO, folder / "echo.tar.gz")), "async-models", "echo/model.tar.gz")
    return aws


def async_config(prefix: str, per_instance: int = 1, **notification: Any) -> dict[str, Any]:
    output: dict[str, Any] = {"S3OutputPath": f"s3://async-results/{prefix}/out",
                              "S3FailurePath": f"s3://async-results/{prefix}/failed"}
    if notification:
        output["NotificationConfig"] = notification
    return {"OutputConfig": output, "ClientConfig": {"MaxConcurrentInvocationsPerInstance": per_instance}}


@pytest.fixture(scope="module")
def aws(localmaker_home: Path, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Aws]:
    folder = tmp_path_factory.mktemp("async")
    plane = ControlPlane(work_root=folder / "plane", startup_timeout_s=120).start()
    try:
        yield prepared(plane, folder)
    finally:
        plane.stop()


def test_a_request_runs_and_its_result_and_notification_arrive_as_aws_shapes_them(aws: Aws) -> None:
    success = aws.sns.create_topic(Name="async-ok")["TopicArn"]
    failure = aws.sns.create_topic(Name="async-failed")["TopicArn"]
    aws.endpoint("echo-async", async_config=async_config(
        "echo", SuccessTopic=success, ErrorTopic=failure, IncludeInferenceResponseIn=["SUCCESS_NOTIFICATION_TOPIC"]))
    described = aws.sagemaker.describe_endpoint_config(EndpointConfigName="echo-async")
    assert described["AsyncInferenceConfig"]["ClientConfig"] == {"MaxConcurrentInvocationsPerInstance": 1}
    assert described["AsyncInferenceConfig"]["OutputConfig"]["NotificationConfig"]["SuccessTopic"] == success
    ok_queue, failed_queue = aws.subscribed_queue(success), aws.subscribed_queue(failure)

    answer = aws.submit("echo-async", {"inputs": "hello"}, InferenceId="first-request", CustomAttributes="a=1",
                        InvocationTimeoutSeconds=3600, RequestTTLSeconds=600)
    assert answer["ResponseMetadata"]["HTTPStatusCode"] == 202
    assert answer["InferenceId"] == "first-request"
    assert answer["OutputLocation"] == "s3://async-results/echo/out/first-request.out"
    assert answer["FailureLocation"] == "s3://async-results/echo/failed/first-request-error.out"
    assert json.loads(aws.wait_object(answer["OutputLocation"])) == {"echo": {"inputs": "hello"},
                                                                      "type": "application/json"}
    assert not aws.exists(answer["FailureLocation"])

    named = aws.submit("echo-async", {"inputs": "named"}, S3OutputPathExtension="batch-7", Filename="named.json")
    assert named["OutputLocation"] == "s3://async-results/echo/out/batch-7/named.json"
    assert uuid.UUID(named["InferenceId"])  # generated when the caller names none
    assert json.loads(aws.wait_object(named["OutputLocation"]))["echo"] == {"inputs": "named"}

    broken = aws.submit("echo-async", {"fail": "on purpose"}, InferenceId="doomed")
    failed = json.loads(aws.wait_object(broken["FailureLocation"]))
    assert "asked to fail: on purpose" in failed["error"]["message"]  # what the container answered
    assert not aws.exists(broken["OutputLocation"])

    completed = {m["inferenceId"]: m for m in aws.messages(ok_queue, 2)}
    first = completed["first-request"]
    assert list(first) == ["awsRegion", "eventTime", "receivedTime", "invocationStatus", "requestParameters",
                           "responseParameters", "responseBody", "inferenceId", "eventVersion", "eventSource",
                           "eventName"]
    assert first["invocationStatus"] == "Completed" and first["eventName"] == "InferenceResult"
    assert first["eventSource"] == "aws:sagemaker" and first["eventVersion"] == "1.0"
    assert first["awsRegion"] == "us-east-1" and first["receivedTime"] <= first["eventTime"]
    assert first["requestParameters"] == {"contentType": "application/json", "customAttributes": "a=1",
                                          "endpointName": "echo-async", "inputLocation": first["requestParameters"][
                                              "inputLocation"]}
    assert first["responseParameters"] == {"contentType": "application/json",
                                           "outputLocation": answer["OutputLocation"]}
    assert first["responseBody"]["encoding"] == "BASE64"
    [error] = aws.messages(failed_queue, 1)
    assert error["invocationStatus"] == "Failed" and error["inferenceId"] == "doomed"
    assert "Received server error (500)" in error["failureReason"]
    assert error["responseParameters"]["failureLocation"] == broken["FailureLocation"]
    assert "responseBody" not in error  # IncludeInferenceResponseIn named only the success topic


def test_refusals_are_aws_shaped_and_say_what_to_fix(aws: Aws, monkeypatch: pytest.MonkeyPatch) -> None:
    aws.endpoint("refusing-async", async_config=async_config("refusing"))
    aws.endpoint("refusing-realtime")
    key = "inputs/small.json"
    aws.s3.put_object(Bucket="async-io", Key=key, Body=b'{"inputs": "x"}')

    def refused(call: Any, **args: Any) -> str:
        with pytest.raises(ClientError) as caught:
            call(**args)
        assert caught.value.response["Error"]["Code"] == "ValidationError", caught.value.response
        return str(caught.value.response["Error"]["Message"])

    invoke_async = aws.runtime.invoke_endpoint_async
    assert "not an asynchronous inference endpoint" in refused(
        invoke_async, EndpointName="refusing-realtime", InputLocation=f"s3://async-io/{key}")
    assert "InvokeEndpointAsync" in refused(aws.runtime.invoke_endpoint, EndpointName="refusing-async",
                                            Body=b"{}", ContentType="application/json")
    assert "does not exist" in refused(invoke_async, EndpointName="refusing-async",
                                       InputLocation="s3://async-io/inputs/missing.json")
    assert "not found" in refused(invoke_async, EndpointName="nowhere", InputLocation=f"s3://async-io/{key}")
    assert "less than or equal to 3600" in refused(invoke_async, EndpointName="refusing-async",
                                                   InputLocation=f"s3://async-io/{key}", InvocationTimeoutSeconds=3601)
    assert "less than or equal to 21600" in refused(invoke_async, EndpointName="refusing-async",
                                                    InputLocation=f"s3://async-io/{key}", RequestTTLSeconds=21601)
    assert "inferenceId" in refused(invoke_async, EndpointName="refusing-async",
                                    InputLocation=f"s3://async-io/{key}", InferenceId="x" * 65)
    # 1 GB cannot be uploaded to a test's moto; the same check runs with the limit scaled down.
    monkeypatch.setattr(async_requests, "MAX_ASYNC_PAYLOAD_BYTES", 8)
    assert "over the 8 bytes" in refused(invoke_async, EndpointName="refusing-async",
                                         InputLocation=f"s3://async-io/{key}")

    for bad, words in (({"OutputConfig": {"S3OutputPath": "/tmp/out"}}, "regular expression"),
                       ({"OutputConfig": {"S3OutputPath": "s3://b/o"},
                         "ClientConfig": {"MaxConcurrentInvocationsPerInstance": 1001}}, "less than or equal to 1000"),
                       ({"OutputConfig": {"S3OutputPath": "s3://b/o",
                                          "NotificationConfig": {"SuccessTopic": "my-topic"}}}, "successTopic")):
        with pytest.raises(ClientError) as caught:
            aws.sagemaker.create_endpoint_config(EndpointConfigName="bad-async", AsyncInferenceConfig=bad,
                                                 ProductionVariants=[{"VariantName": "v", "ModelName": "refusing-async",
                                                                      "InstanceType": "ml.m5.large",
                                                                      "InitialInstanceCount": 1}])
        assert caught.value.response["Error"]["Code"] == "ValidationException"
        assert words in caught.value.response["Error"]["Message"]
    for name in ("refusing-async", "refusing-realtime"):
        aws.sagemaker.delete_endpoint(EndpointName=name)


def test_backlog_metrics_and_a_killed_instance_lose_nothing(aws: Aws, tmp_path: Path) -> None:
    runs = tmp_path / "runs.txt"
    aws.endpoint("healing-async", env={"RUNS_FILE": str(runs)}, async_config=async_config("healing"))
    answers = [aws.submit("healing-async", {"sleep": 1.5, "tag": f"r{i}"}) for i in range(4)]
    deadline = time.monotonic() + 30
    while not runs.exists():
        assert time.monotonic() < deadline, "no request reached the model"
        time.sleep(0.05)
    [victim] = [i["Pid"] for v in aws.plane.runtime.get("healing-async").describe()["Variants"]  # type: ignore[union-attr]
                for i in v["Instances"]]
    os.killpg(victim, signal.SIGKILL)  # the whole instance, as a lost host, with a request on it
    for answer in answers:
        assert json.loads(aws.wait_object(answer["OutputLocation"], timeout_s=120))["echo"]["sleep"] == 1.5
        assert not aws.exists(answer["FailureLocation"])
    assert not group_members(victim)
    tags = runs.read_text().split()
    assert sorted(set(tags)) == ["r0", "r1", "r2", "r3"]  # the one on the dead instance ran again

    def peak(metric: str) -> float:
        points = aws.cloudwatch.get_metric_statistics(
            Namespace="AWS/SageMaker", MetricName=metric, Dimensions=[{"Name": "EndpointName",
                                                                        "Value": "healing-async"}],
            StartTime=datetime.now(timezone.utc) - timedelta(minutes=10),
            EndTime=datetime.now(timezone.utc) + timedelta(minutes=1), Period=60, Statistics=["Maximum"])
        return max((p["Maximum"] for p in points["Datapoints"]), default=-1.0)

    time.sleep(1.5)  # one more tick publishes the emptied backlog
    assert peak("ApproximateBacklogSize") >= 3
    assert peak("ApproximateBacklogSizePerInstance") >= 3  # one instance
    assert peak("ApproximateAgeOfOldestRequest") >= 1.0
    aws.sagemaker.delete_endpoint(EndpointName="healing-async")


def test_deleting_the_endpoint_writes_a_failure_for_every_pending_request(aws: Aws) -> None:
    aws.endpoint("doomed-async", async_config=async_config("doomed"))
    answers = [aws.submit("doomed-async", {"sleep": 3}) for _ in range(3)]
    time.sleep(0.5)
    aws.sagemaker.delete_endpoint(EndpointName="doomed-async")
    for answer in answers:
        failure = json.loads(aws.wait_object(answer["FailureLocation"], timeout_s=30))
        assert "deleted" in failure["error"]["message"]
    time.sleep(4)  # the request that was running when the endpoint went must not write a result after all
    assert not any(aws.exists(a["OutputLocation"]) for a in answers)


def test_a_stopping_control_plane_drains_then_fails_what_is_left(localmaker_home: Path, tmp_path: Path) -> None:
    plane = ControlPlane(work_root=tmp_path / "plane", startup_timeout_s=120,
                         settings=ControlPlaneSettings(async_drain_s=2.0)).start()
    stopped = False
    try:
        aws = prepared(plane, tmp_path)
        aws.endpoint("stopping-async", async_config=async_config("stopping"))
        answers = [aws.submit("stopping-async", {"sleep": 1.5}) for _ in range(4)]
        time.sleep(0.3)
        plane.stop()
        stopped = True
    finally:
        if not stopped:
            plane.stop()
    # moto's state lives in this process, so a second control plane reads what the first one wrote.
    reader = ControlPlane(work_root=tmp_path / "reader").start()
    try:
        after = clients(reader)
        outcomes = ["ok" if after.exists(a["OutputLocation"]) else
                    json.loads(after.wait_object(a["FailureLocation"], timeout_s=1))["error"]["message"]
                    for a in answers]
    finally:
        reader.stop()
    assert outcomes[0] == "ok"  # the drain let the running one finish
    assert any("stopped" in o for o in outcomes[1:])  # the rest were failed, not dropped
    assert all(o == "ok" or "stopped" in o for o in outcomes)
