"""Asynchronous inference through the clients people use: localmaker's own AsyncPredictor, SageMaker SDK
v2's AsyncInferenceConfig/AsyncPredictor/get_result run unchanged in a script, and SDK v3's
Endpoint.invoke_async, all against the control plane a Session() embeds."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import textwrap
import uuid
from pathlib import Path
from typing import Any

import pytest
from botocore.exceptions import ClientError

from localmaker.deploy import (
    AsyncInferenceConfig,
    AsyncPredictor,
    FakePredictor,
    Model,
    Session,
    WaiterConfig,
)
from localmaker.deploy.async_inference import AsyncInferenceModelError, ObjectNotExistedError
from localmaker.deserializers import JSONDeserializer
from localmaker.model.artifact import pack_handler
from localmaker.serializers import JSONSerializer
from localmaker.spec.sdk_config import CONFIG_ENV_VAR, sdk_config
from tests.e2e.conftest import ROLE, aws_env

pytestmark = pytest.mark.e2e

# Answers {"echo": <request>} after sleeping as asked, or fails when asked.
ECHO = """
import json, time

def model_fn(model_dir):
    return None

def transform_fn(model, body, content_type, accept):
    request = json.loads(body)
    time.sleep(request.get("sleep", 0))
    if request.get("fail"):
        raise ValueError("asked to fail: " + request["fail"])
    return json.dumps({"echo": request}), "application/json"
"""
FAST = WaiterConfig(max_attempts=120, delay=0.25)


@pytest.fixture(scope="module")
def echo_archive(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return pack_handler(ECHO, tmp_path_factory.mktemp("echo") / "model.tar.gz")


def test_localmaker_model_deploys_an_async_endpoint_and_its_predictor_waits_for_results(
        session: Session, echo_archive: Path) -> None:
    name = f"lm-async-{uuid.uuid4().hex[:6]}"
    model = Model(echo_archive, role=ROLE, sagemaker_session=session, name=name)
    predictor = model.deploy(1, "ml.m5.large", serializer=JSONSerializer(), deserializer=JSONDeserializer(),
                             endpoint_name=name, async_inference_config=AsyncInferenceConfig(
                                 max_concurrent_invocations_per_instance=2))
    assert isinstance(predictor, AsyncPredictor)
    config = session.sagemaker_client.describe_endpoint_config(EndpointConfigName=name)["AsyncInferenceConfig"]
    assert config["OutputConfig"]["S3OutputPath"].startswith(f"s3://{session.default_bucket()}/async-endpoint-outputs/")
    assert config["ClientConfig"] == {"MaxConcurrentInvocationsPerInstance": 2}

    slow = predictor.predict_async({"inputs": "slow", "sleep": 2})
    with pytest.raises(ObjectNotExistedError):
        slow.get_result()  # looked once, too early
    assert slow.get_result(FAST) == {"echo": {"inputs": "slow", "sleep": 2}}
    assert predictor.predict({"inputs": "waited"}, waiter_config=FAST) == {"echo": {"inputs": "waited"}}
    with pytest.raises(AsyncInferenceModelError, match="asked to fail: here"):
        predictor.predict({"fail": "here"}, waiter_config=FAST)
    # A FakePredictor of the endpoint, wrapped as the SDK wraps its Predictor, works the same.
    wrapped = AsyncPredictor(FakePredictor(name, session, JSONSerializer(), JSONDeserializer()))
    assert wrapped.predict_async({"inputs": "wrapped"}).get_result(FAST) == {"echo": {"inputs": "wrapped"}}
    # Unwrapped, its real-time call is refused as InvokeEndpoint refuses it, not answered by an instance.
    with pytest.raises(ClientError, match="asynchronous inference endpoint"):
        FakePredictor(name, session, JSONSerializer(), JSONDeserializer()).predict({"inputs": "real-time"})
    predictor.delete_endpoint()


SDK_V2 = """
import json, sys
import boto3, sagemaker
from sagemaker.async_inference import AsyncInferenceConfig, WaiterConfig
from sagemaker.deserializers import JSONDeserializer
from sagemaker.exceptions import AsyncInferenceModelError
from sagemaker.model import Model
from sagemaker.predictor import Predictor
from sagemaker.serializers import JSONSerializer

session = sagemaker.Session(boto_session=boto3.Session(), sagemaker_client=boto3.client("sagemaker"),
                            sagemaker_runtime_client=boto3.client("sagemaker-runtime"),
                            default_bucket="sdk-async")
archive, name = sys.argv[1:3]
model_data = session.upload_data(archive, key_prefix=name)
model = Model(image_uri="763104351884.dkr.ecr.us-east-1.amazonaws.com/pytorch-inference:2.3-cpu-py311",
              model_data=model_data, role=ROLE, env={"SAGEMAKER_PROGRAM": "inference.py"},
              predictor_cls=Predictor, sagemaker_session=session, name=name)
predictor = model.deploy(initial_instance_count=1, instance_type="ml.m5.xlarge", endpoint_name=name,
                         serializer=JSONSerializer(), deserializer=JSONDeserializer(), wait=False,
                         async_inference_config=AsyncInferenceConfig(max_concurrent_invocations_per_instance=2))
session.wait_for_endpoint(name, poll=1)
# The SDK polls the output and the failure path from two threads, and the one that finds nothing polls to its
# last attempt before the script can exit: a short waiter keeps that tail short.
waiter = WaiterConfig(max_attempts=20, delay=0.5)
response = predictor.predict_async({"inputs": "queued"})
queued = response.get_result(waiter)
waited = predictor.predict({"inputs": "waited"}, waiter_config=waiter)
try:
    predictor.predict({"fail": "in the sdk"}, waiter_config=waiter)
    failure = None
except AsyncInferenceModelError as err:
    failure = str(err)
with open("result.json", "w") as out:
    json.dump({"type": type(predictor).__name__, "queued": queued, "waited": waited, "failure": failure,
               "output": response.output_path, "failure_path": response.failure_path}, out)
predictor.delete_endpoint()
"""


def _script(tmp_path: Path, python: str, source: str, url: str, *args: str, env: dict[str, str] | None = None
            ) -> dict[str, Any]:
    script = tmp_path / "script.py"
    script.write_text(f"ROLE = {ROLE!r}\n" + textwrap.dedent(source))
    done = subprocess.run([python, str(script), *args], capture_output=True, text=True, timeout=300, cwd=tmp_path,
                          env={**aws_env(url), "SAGEMAKER_SUPPRESS_V2_WARNING": "1", **(env or {})})
    assert done.returncode == 0, done.stderr[-4000:]
    return dict(json.loads((tmp_path / "result.json").read_text()))


def test_sagemaker_sdk_v2_async_predictor_runs_unchanged(session: Session, echo_archive: Path,
                                                         tmp_path: Path) -> None:
    name = f"v2-async-{uuid.uuid4().hex[:6]}"
    result = _script(tmp_path, sys.executable, SDK_V2, session.endpoint_url, str(echo_archive), name)
    assert result["type"] == "AsyncPredictor"
    assert result["queued"] == {"echo": {"inputs": "queued"}} and result["waited"] == {"echo": {"inputs": "waited"}}
    assert "asked to fail: in the sdk" in result["failure"]
    assert result["output"].startswith("s3://sdk-async/async-endpoint-outputs/")
    assert result["failure_path"].startswith("s3://sdk-async/async-endpoint-failures/")


SDK_V3 = """
import json, sys, time
import boto3
from sagemaker.core.resources import Endpoint, EndpointConfig, Model
from sagemaker.core.shapes import (AsyncInferenceClientConfig, AsyncInferenceConfig, AsyncInferenceOutputConfig,
                                   ContainerDefinition, ProductionVariant)

model_url, name = sys.argv[1:3]
s3 = boto3.client("s3")
model = Model.create(model_name=name, execution_role_arn=ROLE, primary_container=ContainerDefinition(
    image="763104351884.dkr.ecr.us-east-1.amazonaws.com/pytorch-inference:2.3-cpu-py311", model_data_url=model_url,
    environment={"SAGEMAKER_PROGRAM": "inference.py"}))
config = EndpointConfig.create(endpoint_config_name=name, production_variants=[ProductionVariant(
    variant_name="AllTraffic", initial_instance_count=1, instance_type="ml.m5.xlarge", model_name=model)],
    async_inference_config=AsyncInferenceConfig(
        output_config=AsyncInferenceOutputConfig(s3_output_path="s3://v3-async/out",
                                                 s3_failure_path="s3://v3-async/failed"),
        client_config=AsyncInferenceClientConfig(max_concurrent_invocations_per_instance=1)))
endpoint = Endpoint.create(endpoint_name=name, endpoint_config_name=config)
endpoint.wait_for_status("InService", poll=1)
s3.put_object(Bucket="v3-async", Key="in/request.json", Body=json.dumps({"inputs": "from v3"}).encode())
answer = endpoint.invoke_async(input_location="s3://v3-async/in/request.json", content_type="application/json",
                               inference_id="v3-request", invocation_timeout_seconds=600)
bucket, key = answer.output_location.removeprefix("s3://").split("/", 1)
for _ in range(240):
    try:
        body = json.loads(s3.get_object(Bucket=bucket, Key=key)["Body"].read())
        break
    except s3.exceptions.NoSuchKey:
        time.sleep(0.25)
with open("result.json", "w") as out:
    json.dump({"id": answer.inference_id, "output": answer.output_location, "failure": answer.failure_location,
               "body": body,
               "described": EndpointConfig.get(endpoint_config_name=name).async_inference_config.output_config
               .s3_output_path}, out)
endpoint.delete(); endpoint.wait_for_delete(poll=1); config.delete(); model.delete()
"""


def test_sagemaker_sdk_v3_invoke_async_runs_unchanged(session: Session, echo_archive: Path, tmp_path: Path) -> None:
    python = os.environ.get("LOCALMAKER_SDK3_PYTHON")
    if python is None:
        pytest.skip("SDK v3 runs from its own environment: `make test` creates .venv-sdk3 and sets "
                    "LOCALMAKER_SDK3_PYTHON")
    session.s3_client.create_bucket(Bucket="v3-async")
    session.s3_client.upload_file(str(echo_archive), "v3-async", "model/model.tar.gz")
    name = f"v3-async-{uuid.uuid4().hex[:6]}"
    result = _script(tmp_path, python, SDK_V3, session.endpoint_url, "s3://v3-async/model/model.tar.gz", name)
    assert result == {"id": "v3-request", "output": "s3://v3-async/out/v3-request.out",
                      "failure": "s3://v3-async/failed/v3-request-error.out", "body": {"echo": {"inputs": "from v3"}},
                      "described": "s3://v3-async/out"}


SDK_V3_MODEL_BUILDER = """
import json, sys, time
import boto3
from sagemaker.core.inference_config import AsyncInferenceConfig
from sagemaker.core.training.configs import SourceCode
from sagemaker.serve import ModelBuilder

model_url, code_dir, name = sys.argv[1:4]
s3 = boto3.client("s3")
builder = ModelBuilder(s3_model_data_url=model_url, role_arn=ROLE, instance_type="ml.m5.xlarge",
                       image_uri="763104351884.dkr.ecr.us-east-1.amazonaws.com/pytorch-inference:2.3-cpu-py311",
                       source_code=SourceCode(source_dir=code_dir, entry_script="inference.py"))
builder.build(model_name=name)
endpoint = builder.deploy(endpoint_name=name, instance_type="ml.m5.xlarge", initial_instance_count=1,
                          inference_config=AsyncInferenceConfig(output_path="s3://v3-async/mb-out",
                                                                failure_path="s3://v3-async/mb-failed"))
s3.put_object(Bucket="v3-async", Key="in/mb.json", Body=json.dumps({"inputs": "model builder"}).encode())
answer = endpoint.invoke_async(input_location="s3://v3-async/in/mb.json", content_type="application/json")
bucket, key = answer.output_location.removeprefix("s3://").split("/", 1)
for _ in range(240):
    try:
        body = json.loads(s3.get_object(Bucket=bucket, Key=key)["Body"].read())
        break
    except s3.exceptions.NoSuchKey:
        time.sleep(0.25)
with open("result.json", "w") as out:
    json.dump({"output": answer.output_location, "body": body}, out)
endpoint.delete()
"""


def test_sagemaker_sdk_v3_model_builder_deploys_an_async_endpoint(session: Session, echo_archive: Path,
                                                                  tmp_path: Path) -> None:
    python = os.environ.get("LOCALMAKER_SDK3_PYTHON")
    if python is None:
        pytest.skip("SDK v3 runs from its own environment: `make test` creates .venv-sdk3 and sets "
                    "LOCALMAKER_SDK3_PYTHON")
    session.s3_client.create_bucket(Bucket="v3-async")
    session.s3_client.upload_file(str(echo_archive), "v3-async", "mb-model/model.tar.gz")
    code = tmp_path / "code"
    code.mkdir()
    (code / "inference.py").write_text(ECHO)
    name = f"v3-mb-async-{uuid.uuid4().hex[:6]}"
    config = tmp_path / "sagemaker-sdk-config.yaml"  # what `localmaker up` writes: default bucket, no STS call
    config.write_text(sdk_config("us-east-1"))
    result = _script(tmp_path, python, SDK_V3_MODEL_BUILDER, session.endpoint_url,
                     "s3://v3-async/mb-model/model.tar.gz", str(code), name, env={CONFIG_ENV_VAR: str(config)})
    assert result["output"].startswith("s3://v3-async/mb-out/")
    assert result["body"] == {"echo": {"inputs": "model builder"}}
