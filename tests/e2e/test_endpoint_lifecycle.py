"""The endpoint lifecycle against a real `localmaker up`, driven by boto3 clients configured only by env vars:
blue/green updates and their rollback, live capacity changes, auto-heal, metrics and the payload limit."""

from __future__ import annotations

import http.client
import json
import os
import signal
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import datetime, timedelta, timezone
from pathlib import Path
from typing import Any
from unittest import mock

import boto3
import numpy as np
import pytest
from botocore.exceptions import ClientError

from localmaker.deploy import FakePredictor, Session
from localmaker.deploy.endpoint_view import InstanceView
from localmaker.deserializers import JSONDeserializer
from localmaker.model.artifact import pack, pack_handler
from localmaker.serializers import JSONSerializer
from tests.e2e.conftest import ROLE, aws_env, running_up
from tests.process_probe import group_members

pytestmark = pytest.mark.e2e

IMAGE = "763104351884.dkr.ecr.us-east-1.amazonaws.com/pytorch-inference:2.3-cpu-py311"
BROKEN_MODEL_FN = "def model_fn(model_dir):\n    raise RuntimeError('weights are corrupt: refusing to serve')\n"
# Answers with the body's bytes reversed, in a type of its own, and echoes the custom attributes.
MIRROR_TRANSFORM_FN = """
def model_fn(model_dir):
    return None

def transform_fn(model, body, content_type, accept, context):
    context.response_custom_attributes = "echo=" + (context.custom_attributes or "")
    return body[::-1], "application/x-mirrored"
"""


@dataclass
class Aws:
    url: str
    s3: Any
    sagemaker: Any
    runtime: Any
    cloudwatch: Any

    def instances(self, endpoint: str) -> tuple[InstanceView, ...]:
        return Session(endpoint_url=self.url).local_endpoint(endpoint).instances

    def embed(self, endpoint: str, texts: list[str]) -> np.ndarray:
        answer = self.runtime.invoke_endpoint(EndpointName=endpoint, ContentType="application/json",
                                              Body=json.dumps({"inputs": texts}))
        return np.asarray(json.loads(answer["Body"].read())["embeddings"])

    def wait_in_service(self, endpoint: str) -> dict[str, Any]:
        self.sagemaker.get_waiter("endpoint_in_service").wait(
            EndpointName=endpoint, WaiterConfig={"Delay": 1, "MaxAttempts": 180})
        return dict(self.sagemaker.describe_endpoint(EndpointName=endpoint))

    def wait_status_leaves(self, endpoint: str, status: str, timeout_s: float = 180) -> dict[str, Any]:
        deadline = time.monotonic() + timeout_s
        while True:
            described = self.sagemaker.describe_endpoint(EndpointName=endpoint)
            if described["EndpointStatus"] != status:
                return dict(described)
            assert time.monotonic() < deadline, f"{endpoint} stayed {status}"
            time.sleep(0.25)

    def model(self, name: str, data_url: str, env: dict[str, str] | None = None) -> None:
        environment = {"SAGEMAKER_PROGRAM": "inference.py", **(env or {})}
        self.sagemaker.create_model(ModelName=name, ExecutionRoleArn=ROLE, PrimaryContainer={
            "Image": IMAGE, "ModelDataUrl": data_url, "Environment": environment})

    def config(self, name: str, model: str, count: int = 1) -> None:
        self.sagemaker.create_endpoint_config(EndpointConfigName=name, ProductionVariants=[{
            "VariantName": "AllTraffic", "ModelName": model, "InitialInstanceCount": count,
            "InstanceType": "ml.m5.large"}])


@pytest.fixture(scope="module")
def aws(localmaker_home: Path, tiny_qwen3_dir: Path, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Aws]:
    with running_up() as (process, url), mock.patch.dict(os.environ, aws_env(url), clear=True):
        clients = Aws(url, boto3.client("s3"), boto3.client("sagemaker"), boto3.client("sagemaker-runtime"),
                      boto3.client("cloudwatch"))
        folder = tmp_path_factory.mktemp("artifacts")
        clients.s3.create_bucket(Bucket="models")
        clients.s3.upload_file(str(pack(tiny_qwen3_dir, folder / "model.tar.gz")), "models", "qwen/model.tar.gz")
        for name, script in (("broken", BROKEN_MODEL_FN), ("mirror", MIRROR_TRANSFORM_FN)):
            archive = pack_handler(script, folder / f"{name}.tar.gz")
            clients.s3.upload_file(str(archive), "models", f"{name}/model.tar.gz")
        clients.model("qwen", "s3://models/qwen/model.tar.gz")
        clients.model("qwen-mean", "s3://models/qwen/model.tar.gz", {"LOCALMAKER_POOLING": "mean"})
        clients.model("broken", "s3://models/broken/model.tar.gz")
        clients.model("mirror", "s3://models/mirror/model.tar.gz")
        yield clients
        process.send_signal(signal.SIGTERM)
        process.wait(timeout=60)


class Traffic:
    """Invokes an endpoint without pause from a thread, recording every failure."""

    def __init__(self, aws: Aws, endpoint: str) -> None:
        self._aws, self._endpoint = aws, endpoint
        self.answered = 0
        self.failures: list[str] = []
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def __enter__(self) -> Traffic:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join(timeout=60)

    def _run(self) -> None:
        while not self._stop.is_set():
            try:
                self._aws.embed(self._endpoint, ["traffic during the change"])
                self.answered += 1
            except Exception as exc:  # noqa: BLE001 - every failure is the test's finding
                self.failures.append(repr(exc))


def _gone(pids: list[int], timeout_s: float = 20) -> bool:
    deadline = time.monotonic() + timeout_s
    while any(group_members(p) for p in pids) and time.monotonic() < deadline:
        time.sleep(0.1)
    return not any(group_members(p) for p in pids)


def test_update_endpoint_is_blue_green_and_a_failed_update_rolls_back(aws: Aws) -> None:
    aws.config("blue", "qwen")
    aws.config("green", "qwen-mean")
    aws.config("doomed", "broken")
    aws.sagemaker.create_endpoint(EndpointName="bg", EndpointConfigName="blue")
    aws.wait_in_service("bg")
    before = aws.embed("bg", ["a query", "a document"])
    blue_pids = [i.pid for i in aws.instances("bg")]

    with Traffic(aws, "bg") as traffic:
        arn = aws.sagemaker.update_endpoint(EndpointName="bg", EndpointConfigName="green")["EndpointArn"]
        assert arn.endswith(":endpoint/bg")
        assert aws.sagemaker.describe_endpoint(EndpointName="bg")["EndpointStatus"] == "Updating"
        described = aws.wait_status_leaves("bg", "Updating")
    assert traffic.failures == [] and traffic.answered > 0
    assert described["EndpointStatus"] == "InService" and described["EndpointConfigName"] == "green"
    assert "FailureReason" not in described
    after = aws.embed("bg", ["a query", "a document"])
    assert not np.allclose(before, after, atol=1e-4), "the green fleet (mean pooling) is not the one answering"
    assert _gone(blue_pids), "the blue instances were not stopped after the swap"
    green_pids = [i.pid for i in aws.instances("bg")]

    with Traffic(aws, "bg") as traffic:
        aws.sagemaker.update_endpoint(EndpointName="bg", EndpointConfigName="doomed")
        with pytest.raises(ClientError, match="in-progress endpoint"):
            aws.sagemaker.update_endpoint(EndpointName="bg", EndpointConfigName="blue")
        rolled_back = aws.wait_status_leaves("bg", "Updating")
    assert traffic.failures == [] and traffic.answered > 0
    assert rolled_back["EndpointStatus"] == "InService" and rolled_back["EndpointConfigName"] == "green"
    assert "rolled back" in rolled_back["FailureReason"] and "weights are corrupt" in rolled_back["FailureReason"]
    assert [i.pid for i in aws.instances("bg")] == green_pids
    np.testing.assert_allclose(aws.embed("bg", ["a query", "a document"]), after, atol=1e-6)

    with pytest.raises(ClientError, match="Could not find"):
        aws.sagemaker.update_endpoint(EndpointName="bg", EndpointConfigName="no-such-config")
    aws.sagemaker.delete_endpoint(EndpointName="bg")
    assert _gone(green_pids)
    for config in ("blue", "green", "doomed"):
        aws.sagemaker.delete_endpoint_config(EndpointConfigName=config)
    with pytest.raises(ClientError):
        aws.sagemaker.describe_endpoint_config(EndpointConfigName="blue")


def test_capacity_changes_live_and_a_killed_instance_is_healed(aws: Aws) -> None:
    aws.config("one", "qwen")
    aws.sagemaker.create_endpoint(EndpointName="elastic", EndpointConfigName="one")
    aws.sagemaker.create_endpoint(EndpointName="neighbour", EndpointConfigName="one")
    with pytest.raises(ClientError, match="Creating"):
        aws.embed("elastic", ["too early"])
    aws.wait_in_service("elastic")
    aws.wait_in_service("neighbour")
    assert {i.url for i in aws.instances("elastic")}.isdisjoint(i.url for i in aws.instances("neighbour"))

    aws.sagemaker.update_endpoint_weights_and_capacities(EndpointName="elastic", DesiredWeightsAndCapacities=[
        {"VariantName": "AllTraffic", "DesiredInstanceCount": 2}])
    described = aws.wait_status_leaves("elastic", "Updating")
    assert described["ProductionVariants"][0]["CurrentInstanceCount"] == 2
    pair = aws.instances("elastic")
    assert len({i.pid for i in pair}) == 2

    attached = Session(endpoint_url=aws.url)
    predictor = FakePredictor("elastic", attached, serializer=JSONSerializer(), deserializer=JSONDeserializer())
    assert len(predictor.instance_urls) == 2  # it remembers both instances, one of which is about to die

    victim = pair[0].pid
    os.killpg(victim, signal.SIGKILL)  # the whole instance, master and workers, as a lost host
    with Traffic(aws, "elastic") as traffic:
        deadline = time.monotonic() + 120
        while {i.pid for i in aws.instances("elastic")} - {p.pid for p in pair} == set():
            assert time.monotonic() < deadline, "the dead instance was never replaced"
            time.sleep(0.25)
        time.sleep(0.5)
    assert traffic.failures == [] and traffic.answered > 0
    healed = aws.sagemaker.describe_endpoint(EndpointName="elastic")
    assert healed["EndpointStatus"] == "InService"
    assert healed["ProductionVariants"][0]["CurrentInstanceCount"] == 2
    assert victim not in {i.pid for i in aws.instances("elastic")}
    assert aws.embed("neighbour", ["the other endpoint never noticed"]).shape[0] == 1
    for _ in range(4):  # the dead instance's URL is refused, and the predictor asks where the live ones are
        assert len(predictor.predict({"inputs": ["still answered"]})["embeddings"]) == 1
    assert set(predictor.instance_urls) == {i.url for i in aws.instances("elastic")}

    survivors = [i.pid for i in aws.instances("elastic")]
    aws.sagemaker.update_endpoint_weights_and_capacities(EndpointName="elastic", DesiredWeightsAndCapacities=[
        {"VariantName": "AllTraffic", "DesiredInstanceCount": 1}])
    described = aws.wait_status_leaves("elastic", "Updating")
    assert described["ProductionVariants"][0]["CurrentInstanceCount"] == 1
    assert _gone(survivors[1:])
    with pytest.raises(ClientError, match="at least 1"):
        aws.sagemaker.update_endpoint_weights_and_capacities(EndpointName="elastic", DesiredWeightsAndCapacities=[
            {"VariantName": "AllTraffic", "DesiredInstanceCount": 0}])
    with pytest.raises(ClientError, match="Nope"):
        aws.sagemaker.update_endpoint_weights_and_capacities(EndpointName="elastic", DesiredWeightsAndCapacities=[
            {"VariantName": "Nope", "DesiredInstanceCount": 2}])
    for name in ("elastic", "neighbour"):
        aws.sagemaker.delete_endpoint(EndpointName=name)
    aws.sagemaker.delete_endpoint_config(EndpointConfigName="one")


def test_invocation_metrics_and_the_payload_limit(aws: Aws) -> None:
    aws.config("metered", "qwen")
    aws.sagemaker.create_endpoint(EndpointName="metered", EndpointConfigName="metered")
    aws.wait_in_service("metered")
    started = datetime.now(timezone.utc) - timedelta(minutes=1)
    for _ in range(3):
        aws.embed("metered", ["counted"])
    with pytest.raises(ClientError) as bad:
        aws.runtime.invoke_endpoint(EndpointName="metered", ContentType="application/json", Body=b"{not json")
    assert bad.value.response["Error"]["Code"] == "ModelError"
    with pytest.raises(ClientError) as too_big:
        aws.runtime.invoke_endpoint(EndpointName="metered", ContentType="application/json",
                                    Body=b"[" + b" " * (6 * 1024 * 1024) + b"]")
    assert too_big.value.response["ResponseMetadata"]["HTTPStatusCode"] == 413
    assert "6291456 bytes" in str(too_big.value)
    assert aws.embed("metered", ["still serving"]).shape[0] == 1

    dimensions = [{"Name": "EndpointName", "Value": "metered"}, {"Name": "VariantName", "Value": "AllTraffic"}]

    def total(metric: str, statistic: str = "Sum") -> float:
        points = aws.cloudwatch.get_metric_statistics(
            Namespace="AWS/SageMaker", MetricName=metric, Dimensions=dimensions, StartTime=started,
            EndTime=datetime.now(timezone.utc) + timedelta(minutes=1), Period=3600, Statistics=[statistic])
        return float(sum(p[statistic] for p in points["Datapoints"]))

    deadline = time.monotonic() + 15
    while total("Invocations") < 5 and time.monotonic() < deadline:
        time.sleep(0.25)
    assert total("Invocations") == 5  # the refused 6 MB request never reached the model
    assert total("Invocation4XXErrors") == 1
    assert total("Invocation5XXErrors") == 0
    assert total("ModelLatency", "SampleCount") == 5
    assert total("ModelLatency", "Minimum") > 0
    assert total("OverheadLatency", "SampleCount") == 5
    listed = aws.cloudwatch.list_metrics(Namespace="AWS/SageMaker", Dimensions=dimensions[:1])["Metrics"]
    assert {"Invocations", "ModelLatency", "OverheadLatency", "Invocation4XXErrors",
            "Invocation5XXErrors"} <= {m["MetricName"] for m in listed}
    aws.sagemaker.delete_endpoint(EndpointName="metered")
    aws.sagemaker.delete_endpoint_config(EndpointConfigName="metered")
    aws.sagemaker.delete_model(ModelName="broken")
    with pytest.raises(ClientError):
        aws.sagemaker.describe_model(ModelName="broken")


def test_binary_bodies_headers_and_custom_attributes_pass_through_intact(aws: Aws) -> None:
    aws.config("mirror", "mirror")
    aws.sagemaker.create_endpoint(EndpointName="mirror", EndpointConfigName="mirror")
    aws.wait_in_service("mirror")
    body = bytes(range(256)) * 64 + b"\x00\xff"  # every byte value, NULs and non-UTF-8 included
    answer = aws.runtime.invoke_endpoint(EndpointName="mirror", ContentType="application/octet-stream",
                                         Accept="application/x-mirrored", Body=body,
                                         CustomAttributes="trace=abc-123")
    assert answer["Body"].read() == body[::-1]
    assert answer["ContentType"] == "application/x-mirrored"
    assert answer["CustomAttributes"] == "echo=trace=abc-123"
    assert answer["InvokedProductionVariant"] == "AllTraffic"

    text = aws.runtime.invoke_endpoint(EndpointName="mirror", ContentType="text/plain", Body="ünïcödé".encode())
    assert text["Body"].read() == "ünïcödé".encode()[::-1]

    # Clients other than botocore: a chunked body arrives whole; a Content-Length that is no byte count is a
    # 400 (not a 500, nor a read that never ends); a chunked body over 6 MB is a 413 like a declared one.
    assert _raw_invoke(aws.url, "mirror", [b"chun", b"ked"]) == (200, b"deknuhc")
    for length in ("abc", "-1"):
        status, answer = _raw_invoke(aws.url, "mirror", b"body", content_length=length)
        assert status == 400 and b"not a byte count" in answer, (length, answer)
    status, answer = _raw_invoke(aws.url, "mirror", [b"x" * 1024 * 1024] * 7)
    assert status == 413 and b"HTTP content length exceeded 6291456 bytes." in answer
    assert aws.runtime.invoke_endpoint(EndpointName="mirror", Body=b"ok")["Body"].read() == b"ko"
    aws.sagemaker.delete_endpoint(EndpointName="mirror")
    aws.sagemaker.delete_endpoint_config(EndpointConfigName="mirror")


def test_fake_predictor_routes_by_target_variant_and_weight(aws: Aws) -> None:
    aws.sagemaker.create_endpoint_config(EndpointConfigName="two-variants", ProductionVariants=[
        {"VariantName": name, "ModelName": "mirror", "InitialInstanceCount": 1, "InstanceType": "ml.m5.large",
         "InitialVariantWeight": weight} for name, weight in (("Primary", 1.0), ("Shadowless", 0.0))])
    aws.sagemaker.create_endpoint(EndpointName="two-variants", EndpointConfigName="two-variants")
    aws.wait_in_service("two-variants")
    session = Session(endpoint_url=aws.url)
    predictor = FakePredictor("two-variants", session)

    def answered_by(**target: str) -> str:
        assert predictor.predict(b"abc", initial_args={"ContentType": "application/octet-stream"}, **target) == b"cba"
        return predictor.last_response_headers["x-amzn-invoked-production-variant"]

    assert {answered_by() for _ in range(8)} == {"Primary"}  # weight 0 takes no traffic
    assert {answered_by(target_variant="Shadowless") for _ in range(3)} == {"Shadowless"}
    with pytest.raises(ClientError, match="Shadowy"):
        predictor.predict(b"abc", target_variant="Shadowy")
    predictor.delete_endpoint()
    session.close()


def _raw_invoke(url: str, endpoint: str, body: bytes | list[bytes],
                content_length: str | None = None) -> tuple[int, bytes]:
    """POST to InvokeEndpoint's route as a plain HTTP client: a list of parts goes chunked."""
    host, port = url.removeprefix("http://").rsplit(":", 1)
    connection = http.client.HTTPConnection(host, int(port), timeout=30)
    try:
        connection.putrequest("POST", f"/endpoints/{endpoint}/invocations")
        connection.putheader("Content-Type", "application/octet-stream")
        if isinstance(body, list):
            connection.putheader("Transfer-Encoding", "chunked")
            connection.endheaders()
            for part in body:
                connection.send(b"%x\r\n%s\r\n" % (len(part), part))
            connection.send(b"0\r\n\r\n")
        else:
            connection.putheader("Content-Length", content_length or str(len(body)))
            connection.endheaders(body)
        answer = connection.getresponse()
        return answer.status, answer.read()
    except (ConnectionError, http.client.HTTPException) as exc:  # a server may answer and hang up mid-send
        return 0, repr(exc).encode()
    finally:
        connection.close()


# Sleeps longer than gunicorn's old 5 s drain, and counts its runs in a file named by the environment.
SLOW_TRANSFORM_FN = """
import os
import time

def model_fn(model_dir):
    return None

def transform_fn(model, body, content_type, accept):
    with open(os.environ["RUNS_FILE"], "a") as runs:
        runs.write("run\\n")
    time.sleep(float(os.environ["SLEEP_S"]))
    return body, "application/octet-stream"
"""


def test_a_request_in_flight_when_its_instance_is_swapped_out_finishes_there_once(aws: Aws, tmp_path: Path) -> None:
    runs = tmp_path / "runs.txt"
    archive = pack_handler(SLOW_TRANSFORM_FN, tmp_path / "slow.tar.gz")
    aws.s3.upload_file(str(archive), "models", "slow/model.tar.gz")
    aws.model("slow", "s3://models/slow/model.tar.gz", {"RUNS_FILE": str(runs), "SLEEP_S": "12"})
    aws.model("slow-green", "s3://models/slow/model.tar.gz", {"RUNS_FILE": str(runs), "SLEEP_S": "0"})
    aws.config("slow-blue", "slow")
    aws.config("slow-green", "slow-green")
    aws.sagemaker.create_endpoint(EndpointName="slow", EndpointConfigName="slow-blue")
    aws.wait_in_service("slow")
    blue = [i.pid for i in aws.instances("slow")]

    answers: list[bytes] = []
    in_flight = threading.Thread(target=lambda: answers.append(aws.runtime.invoke_endpoint(
        EndpointName="slow", ContentType="application/octet-stream", Body=b"long job")["Body"].read()))
    in_flight.start()
    deadline = time.monotonic() + 10
    while not runs.exists():
        assert time.monotonic() < deadline, "the request never reached the model"
        time.sleep(0.05)
    aws.sagemaker.update_endpoint(EndpointName="slow", EndpointConfigName="slow-green")
    in_flight.join(timeout=60)

    assert answers == [b"long job"]
    assert runs.read_text().splitlines() == ["run"], "the request was cut off and sent again"
    assert aws.wait_status_leaves("slow", "Updating")["EndpointConfigName"] == "slow-green"
    assert _gone(blue)
    aws.sagemaker.delete_endpoint(EndpointName="slow")


def test_two_simultaneous_creates_of_one_name_leave_one_endpoint_serving(aws: Aws) -> None:
    aws.config("racer", "mirror")
    start = threading.Barrier(2)
    outcomes: list[str] = []

    def create() -> None:
        client = boto3.client("sagemaker")  # one client per thread, as botocore wants
        start.wait(timeout=10)
        try:
            client.create_endpoint(EndpointName="racer", EndpointConfigName="racer")
            outcomes.append("created")
        except ClientError as exc:
            outcomes.append(exc.response["Error"]["Message"])

    racers = [threading.Thread(target=create) for _ in range(2)]
    for racer in racers:
        racer.start()
    for racer in racers:
        racer.join(timeout=60)
    assert sorted(outcomes) == ['Cannot create already existing endpoint '
                                '"arn:aws:sagemaker:us-east-1:123456789012:endpoint/racer".', "created"]
    aws.wait_in_service("racer")  # the loser's failure did not take the winner's endpoint with it
    assert aws.runtime.invoke_endpoint(EndpointName="racer", Body=b"won")["Body"].read() == b"now"
    aws.sagemaker.delete_endpoint(EndpointName="racer")
    aws.sagemaker.delete_endpoint_config(EndpointConfigName="racer")
