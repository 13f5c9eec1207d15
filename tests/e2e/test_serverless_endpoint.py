"""Serverless endpoints against a real `localmaker up`, through unmodified boto3 and the SageMaker SDK v2:
cold starts, scaling in after the idle period, throttling beyond MaxConcurrency, the memory bound,
ModelSetupTime, and instances killed while idle.

The control plane runs with a 2 s idle period (LOCALMAKER_SERVERLESS_IDLE_S), so scale-in is seen in seconds.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import tarfile
import textwrap
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from datetime import datetime, timedelta, timezone
from pathlib import Path
from typing import Any
from unittest import mock

import boto3
import pytest
from botocore.config import Config
from botocore.exceptions import ClientError

from localmaker.deploy import Model, ServerlessInferenceConfig, Session
from localmaker.deploy.endpoint_view import InstanceView
from localmaker.deserializers import JSONDeserializer
from localmaker.model.artifact import pack_handler
from localmaker.serializers import JSONSerializer
from tests.e2e.conftest import ROLE, aws_env, running_up
from tests.process_probe import group_members

pytestmark = pytest.mark.e2e

IDLE_S = 2.0
IMAGE = "763104351884.dkr.ecr.us-east-1.amazonaws.com/pytorch-inference:2.3-cpu-py311"
# Loading takes a second, so a cold start is measurably slower than a warm call; a request can ask to be slow.
HANDLER = """
import json, os, time

def model_fn(model_dir):
    time.sleep(1.0)
    return None

def transform_fn(model, body, content_type, accept):
    request = json.loads(body or b"{}")
    time.sleep(float(request.get("sleep", 0)))
    return json.dumps({"pid": os.getpid(), "echo": request.get("echo")}), "application/json"
"""
# One request at a time per instance (one worker, one thread), so two requests at once need two instances.
ONE_AT_A_TIME = {"SAGEMAKER_MODEL_SERVER_WORKERS": "1", "LOCALMAKER_SERVER_THREADS": "1"}


@dataclass
class Aws:
    url: str
    sagemaker: Any
    runtime: Any
    cloudwatch: Any
    once: Any  # a runtime client that does not retry, to see the first answer

    def instances(self, endpoint: str) -> tuple[InstanceView, ...]:
        return Session(endpoint_url=self.url).local_endpoint(endpoint).instances

    def deploy(self, name: str, serverless: dict[str, int], env: dict[str, str] | None = None,
               model: str = "handler") -> dict[str, Any]:
        self.sagemaker.create_model(ModelName=name, ExecutionRoleArn=ROLE, PrimaryContainer={
            "Image": IMAGE, "ModelDataUrl": f"s3://serverless/{model}/model.tar.gz",
            "Environment": {"SAGEMAKER_PROGRAM": "inference.py", **(env or {})}})
        self.sagemaker.create_endpoint_config(EndpointConfigName=name, ProductionVariants=[
            {"VariantName": "AllTraffic", "ModelName": name, "ServerlessConfig": serverless}])
        self.sagemaker.create_endpoint(EndpointName=name, EndpointConfigName=name)
        deadline = time.monotonic() + 120
        while (described := self.sagemaker.describe_endpoint(EndpointName=name))["EndpointStatus"] == "Creating":
            assert time.monotonic() < deadline, f"{name} stayed Creating"
            time.sleep(0.25)
        return dict(described)

    def invoke(self, name: str, request: dict[str, Any], client: Any = None) -> dict[str, Any]:
        answer = (client or self.runtime).invoke_endpoint(EndpointName=name, ContentType="application/json",
                                                          Body=json.dumps(request))
        return dict(json.loads(answer["Body"].read()))

    def delete(self, name: str) -> None:
        self.sagemaker.delete_endpoint(EndpointName=name)
        self.sagemaker.delete_endpoint_config(EndpointConfigName=name)
        self.sagemaker.delete_model(ModelName=name)

    def setup_times(self, name: str, since: datetime) -> list[dict[str, Any]]:
        return list(self.cloudwatch.get_metric_statistics(
            Namespace="AWS/SageMaker", MetricName="ModelSetupTime", StartTime=since,
            EndTime=datetime.now(timezone.utc) + timedelta(minutes=1), Period=3600,
            Statistics=["SampleCount", "Minimum", "Maximum"], Unit="Microseconds",
            Dimensions=[{"Name": "EndpointName", "Value": name}, {"Name": "VariantName", "Value": "AllTraffic"}],
        )["Datapoints"])


def _until(condition: Callable[[], bool], timeout_s: float, what: str) -> None:
    deadline = time.monotonic() + timeout_s
    while not condition():
        assert time.monotonic() < deadline, what
        time.sleep(0.1)


@pytest.fixture(scope="module")
def aws(localmaker_home: Path, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Aws]:
    with mock.patch.dict(os.environ, {"LOCALMAKER_SERVERLESS_IDLE_S": str(IDLE_S)}), \
            running_up() as (_process, url), mock.patch.dict(os.environ, aws_env(url), clear=True):
        clients = Aws(url, boto3.client("sagemaker"), boto3.client("sagemaker-runtime"), boto3.client("cloudwatch"),
                      boto3.client("sagemaker-runtime", config=Config(retries={"total_max_attempts": 1})))
        folder = tmp_path_factory.mktemp("serverless")
        s3 = boto3.client("s3")
        s3.create_bucket(Bucket="serverless")
        s3.upload_file(str(pack_handler(HANDLER, folder / "handler.tar.gz")), "serverless", "handler/model.tar.gz")
        yield clients


def test_the_first_invocation_pays_a_cold_start_and_idle_instances_stop(aws: Aws):
    since = datetime.now(timezone.utc) - timedelta(minutes=1)
    described = aws.deploy("lazy", {"MemorySizeInMB": 1024, "MaxConcurrency": 2})
    assert described["EndpointStatus"] == "InService"
    assert described["ProductionVariants"] == [{
        "VariantName": "AllTraffic", "CurrentWeight": 1.0, "DesiredWeight": 1.0,
        "CurrentServerlessConfig": {"MemorySizeInMB": 1024, "MaxConcurrency": 2},
        "DesiredServerlessConfig": {"MemorySizeInMB": 1024, "MaxConcurrency": 2}}]
    assert aws.instances("lazy") == ()  # no provisioned concurrency: nothing runs until a request comes

    started = time.perf_counter()
    cold = aws.invoke("lazy", {"echo": "cold"})
    cold_s = time.perf_counter() - started
    started = time.perf_counter()
    warm = aws.invoke("lazy", {"echo": "warm"})
    warm_s = time.perf_counter() - started
    assert cold["echo"] == "cold" and warm["echo"] == "warm"
    assert cold["pid"] == warm["pid"]  # the warm call reused the instance the cold start made
    assert cold_s > 1.0 > warm_s, (cold_s, warm_s)  # model_fn's second is paid once
    (instance,) = aws.instances("lazy")
    assert instance.device == "cpu"

    _until(lambda: len(aws.setup_times("lazy", since)) == 1, 15, "no ModelSetupTime in CloudWatch")
    (point,) = aws.setup_times("lazy", since)
    assert point["SampleCount"] == 1 and point["Unit"] == "Microseconds"
    assert 1e6 <= point["Maximum"] <= cold_s * 1e6  # model_fn's second, within what the caller waited

    _until(lambda: aws.instances("lazy") == (), IDLE_S + 5, "the idle instance was not stopped")
    _until(lambda: not group_members(instance.pid), 10, "the idle instance's processes outlived it")
    assert aws.invoke("lazy", {"echo": "again"})["echo"] == "again"  # a second cold start
    _until(lambda: aws.setup_times("lazy", since)[0]["SampleCount"] == 2, 15, "the second cold start went unrecorded")
    aws.delete("lazy")


def test_invocations_beyond_max_concurrency_are_throttled_with_429(aws: Aws):
    aws.deploy("narrow", {"MemorySizeInMB": 2048, "MaxConcurrency": 2})
    aws.invoke("narrow", {})  # warm, so the three below meet one running instance
    barrier = threading.Barrier(3)
    outcomes: list[Any] = []

    def call() -> None:
        barrier.wait()
        try:
            outcomes.append(aws.invoke("narrow", {"sleep": 2}, aws.once))
        except ClientError as err:
            outcomes.append(err)

    threads = [threading.Thread(target=call) for _ in range(3)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(30)
    refused = [o for o in outcomes if isinstance(o, ClientError)]
    assert len(outcomes) == 3 and len(refused) == 1, outcomes
    error = refused[0].response
    assert error["Error"]["Code"] == "ThrottlingException"
    assert error["ResponseMetadata"]["HTTPStatusCode"] == 429
    assert error["Error"]["Message"].startswith("Rate exceeded: serverless endpoint narrow is at its MaxConcurrency")
    assert aws.invoke("narrow", {"echo": "after"})["echo"] == "after"  # the slots came back
    # Serverless Inference takes 4 MB per request, not the real-time 6 MB: 5 MB is refused before the model.
    with pytest.raises(ClientError) as too_large:
        aws.once.invoke_endpoint(EndpointName="narrow", ContentType="application/json",
                                 Body=json.dumps({"pad": "x" * (5 * 1024 * 1024)}))
    assert too_large.value.response["ResponseMetadata"]["HTTPStatusCode"] == 413
    assert "exceeded 4194304 bytes" in str(too_large.value)
    assert aws.invoke("narrow", {"echo": "still serving"})["echo"] == "still serving"
    aws.delete("narrow")


def test_it_scales_out_on_demand_and_back_in_to_the_provisioned_concurrency(aws: Aws):
    config = {"MemorySizeInMB": 1024, "MaxConcurrency": 3, "ProvisionedConcurrency": 1}
    described = aws.deploy("warm", config, ONE_AT_A_TIME)
    assert described["ProductionVariants"][0]["CurrentServerlessConfig"] == config
    (provisioned,) = aws.instances("warm")  # warm before any request
    barrier = threading.Barrier(2)
    answers: list[dict[str, Any]] = []

    def call() -> None:
        barrier.wait()
        answers.append(aws.invoke("warm", {"sleep": 1.5}))

    threads = [threading.Thread(target=call) for _ in range(2)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(60)
    assert len(answers) == 2 and answers[0]["pid"] != answers[1]["pid"]  # the second request got its own
    assert len(aws.instances("warm")) == 2

    _until(lambda: len(aws.instances("warm")) == 1, IDLE_S + 5, "it did not scale in to the provisioned 1")
    time.sleep(IDLE_S + 1.5)  # neither the healer nor the scaler moves it off the provisioned concurrency
    (kept,) = aws.instances("warm")
    assert aws.invoke("warm", {"echo": "kept"})["echo"] == "kept"

    # Killed while idle: the healer replaces a provisioned instance, and nothing is lost meanwhile.
    os.killpg(kept.pid, signal.SIGKILL)
    _until(lambda: not group_members(kept.pid), 10, "the killed instance lingered")
    assert aws.invoke("warm", {"echo": "after the kill"}, aws.once)["echo"] == "after the kill"
    _until(lambda: len(aws.instances("warm")) == 1 and aws.instances("warm")[0].pid != kept.pid, 60,
           "the killed provisioned instance was not replaced")
    aws.delete("warm")


def test_an_on_demand_instance_killed_while_idle_is_started_again_by_the_next_request(aws: Aws):
    aws.deploy("fragile", {"MemorySizeInMB": 1024, "MaxConcurrency": 1})
    first = aws.invoke("fragile", {"echo": 1})
    (instance,) = aws.instances("fragile")
    os.killpg(instance.pid, signal.SIGKILL)
    _until(lambda: not group_members(instance.pid), 10, "the killed instance lingered")
    second = aws.invoke("fragile", {"echo": 2}, aws.once)  # no retry needed: a cold start, not an error
    assert second["echo"] == 2 and second["pid"] != first["pid"]
    aws.delete("fragile")


def test_a_model_larger_than_the_memory_size_fails_like_out_of_memory(aws: Aws, tmp_path: Path):
    archive = tmp_path / "big.tar.gz"
    weights = tarfile.TarInfo("weights.bin")
    weights.size = 1040 * 1024 * 1024  # more than 1024 MB of memory; zeros, streamed, never on disk here
    with tarfile.open(archive, "w:gz", compresslevel=1) as tar, open("/dev/zero", "rb") as zeros:
        tar.addfile(weights, zeros)
    boto3.client("s3").upload_file(str(archive), "serverless", "big/model.tar.gz")
    described = aws.deploy("bulky", {"MemorySizeInMB": 1024, "MaxConcurrency": 1}, model="big")
    assert described["EndpointStatus"] == "Failed"
    assert described["FailureReason"].startswith(
        "Memory size is insufficient to load the model: its unpacked weights take 1040 MB, more than the "
        "MemorySizeInMB of 1024 MB")
    with pytest.raises(ClientError) as refused:
        aws.invoke("bulky", {}, aws.once)
    assert refused.value.response["Error"]["Code"] == "ValidationError"
    aws.delete("bulky")


SDK_V2 = """
    import json, sys
    import boto3, sagemaker
    from sagemaker.deserializers import JSONDeserializer
    from sagemaker.model import Model
    from sagemaker.predictor import Predictor
    from sagemaker.serializers import JSONSerializer
    from sagemaker.serverless import ServerlessInferenceConfig

    session = sagemaker.Session(boto_session=boto3.Session(), sagemaker_client=boto3.client("sagemaker"),
                                sagemaker_runtime_client=boto3.client("sagemaker-runtime"),
                                default_bucket="sdk-serverless")
    model = Model(image_uri=sys.argv[1], model_data=session.upload_data(sys.argv[2], key_prefix="serverless"),
                  role=sys.argv[3], env={"SAGEMAKER_PROGRAM": "inference.py"}, predictor_cls=Predictor,
                  sagemaker_session=session)
    predictor = model.deploy(serverless_inference_config=ServerlessInferenceConfig(memory_size_in_mb=1024,
                                                                                   max_concurrency=2),
                             serializer=JSONSerializer(), deserializer=JSONDeserializer(), wait=False)
    session.wait_for_endpoint(predictor.endpoint_name, poll=1)
    answer = predictor.predict({"echo": "sdk"})
    variants = session.sagemaker_client.describe_endpoint(EndpointName=predictor.endpoint_name)["ProductionVariants"]
    predictor.delete_endpoint()
    with open("result.json", "w") as out:
        json.dump({"answer": answer, "variants": variants}, out)
"""


def test_the_sdk_v2_deploys_serverless_unchanged(aws: Aws, tmp_path: Path):
    (tmp_path / "deploy.py").write_text(textwrap.dedent(SDK_V2))
    archive = pack_handler(HANDLER, tmp_path / "model.tar.gz")
    run = subprocess.run([sys.executable, "deploy.py", IMAGE, str(archive), ROLE], cwd=tmp_path,
                         env=aws_env(aws.url), capture_output=True, text=True, timeout=300)
    assert run.returncode == 0, run.stderr[-3000:]
    result = json.loads((tmp_path / "result.json").read_text())
    assert result["answer"]["echo"] == "sdk"
    assert result["variants"][0]["CurrentServerlessConfig"] == {"MemorySizeInMB": 1024, "MaxConcurrency": 2}


def test_localmakers_model_deploys_serverless_and_its_predictor_goes_through_cold_starts(session: Session,
                                                                                       tmp_path: Path):
    archive = pack_handler(HANDLER, tmp_path / "model.tar.gz")
    model = Model(archive, role=ROLE, sagemaker_session=session)
    predictor = model.deploy(serverless_inference_config=ServerlessInferenceConfig(memory_size_in_mb=1024,
                                                                                   max_concurrency=2),
                             serializer=JSONSerializer(), deserializer=JSONDeserializer())
    try:
        assert session.local_endpoint(predictor.endpoint_name).instances == ()
        assert predictor.predict({"echo": "client"})["echo"] == "client"  # through InvokeEndpoint: a cold start
        assert len(session.local_endpoint(predictor.endpoint_name).instances) == 1
    finally:
        predictor.delete_endpoint()
