"""``Session(target="aws")``: the same Model/Estimator calls create real SageMaker resources.

moto's ``mock_aws`` plays AWS: botocore still validates every request against the service models, and
moto records what was created, which the tests read back with describe_* calls as a user would.
"""

from __future__ import annotations

import io
import json
import os
import tarfile
import threading
import time
from pathlib import Path

import boto3
import pytest
import requests
from botocore.exceptions import ClientError
from botocore.stub import Stubber
from moto import mock_aws

from localmaker import ConfigurationError, ModelError
from localmaker.deploy import Estimator, FakePredictor, Model, Session
from localmaker.deploy.deserializers import JSONDeserializer
from localmaker.deploy.serializers import JSONSerializer
from localmaker.model.artifact import builtin_code_dir
from localmaker.spec.container_images import default_image
from localmaker.spec.instance_types import lookup

ACCOUNT = "123456789012"  # the account moto's STS reports
ROLE = f"arn:aws:iam::{ACCOUNT}:role/SageMakerRole"
# moto validates InstanceType against an old list that lacks g5 (CreateEndpointConfig refuses
# ml.g5.xlarge), so deployments under mock_aws use ml.g4dn.xlarge, another GPU type. Both resolve to
# the same GPU image, which test_the_g5_image_is_the_gpu_dlc_of_the_region checks.
MOTO_GPU_TYPE = "ml.g4dn.xlarge"
EU_WEST_1_GPU_IMAGE = "763104351884.dkr.ecr.eu-west-1.amazonaws.com/pytorch-inference:2.6.0-gpu-py312"

_CREDENTIAL_SOURCES = ("AWS_PROFILE", "AWS_DEFAULT_PROFILE", "AWS_SESSION_TOKEN", "AWS_SECURITY_TOKEN",
                       "AWS_WEB_IDENTITY_TOKEN_FILE", "AWS_ROLE_ARN", "AWS_CONTAINER_CREDENTIALS_RELATIVE_URI",
                       "AWS_CONTAINER_CREDENTIALS_FULL_URI", "AWS_REGION", "AWS_ENDPOINT_URL",
                       "AWS_ENDPOINT_URL_SAGEMAKER", "AWS_ENDPOINT_URL_S3")


@pytest.fixture
def clean_aws_env(monkeypatch, tmp_path):
    """No profile, config file, metadata service or endpoint override from this machine leaks in."""
    for name in _CREDENTIAL_SOURCES + ("AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY", "AWS_DEFAULT_REGION"):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("AWS_CONFIG_FILE", str(tmp_path / "no-aws-config"))
    monkeypatch.setenv("AWS_SHARED_CREDENTIALS_FILE", str(tmp_path / "no-aws-credentials"))
    monkeypatch.setenv("AWS_EC2_METADATA_DISABLED", "true")
    return monkeypatch


@pytest.fixture
def aws(clean_aws_env):
    clean_aws_env.setenv("AWS_ACCESS_KEY_ID", "testing")
    clean_aws_env.setenv("AWS_SECRET_ACCESS_KEY", "testing")
    clean_aws_env.setenv("AWS_DEFAULT_REGION", "eu-west-1")
    with mock_aws():
        yield


@pytest.fixture
def model_dir(tmp_path) -> Path:
    """A model folder is only packed and uploaded here, never loaded: a config is all it needs."""
    folder = tmp_path / "model"
    folder.mkdir()
    (folder / "config.json").write_text('{"model_type": "bert"}')
    return folder


def _archive_members(session: Session, url: str) -> dict[str, bytes]:
    bucket, key = url.removeprefix("s3://").split("/", 1)
    data = session.s3_client.get_object(Bucket=bucket, Key=key)["Body"].read()
    with tarfile.open(fileobj=io.BytesIO(data)) as tar:
        return {m.name: tar.extractfile(m).read() for m in tar.getmembers() if m.isfile()}  # type: ignore[union-attr]


def _children() -> set[int]:
    me = os.getpid()
    found = set()
    for entry in os.listdir("/proc"):
        if entry.isdigit():
            try:
                fields = Path(f"/proc/{entry}/stat").read_text().rsplit(")", 1)[1].split()
            except OSError:
                continue
            if int(fields[1]) == me and fields[0] != "Z":
                found.add(int(entry))
    return found


def _listening_sockets() -> set[str]:
    """Inodes of the TCP sockets this process listens on (a control plane or an instance would)."""
    listening = set()
    for table in ("/proc/self/net/tcp", "/proc/self/net/tcp6"):
        if os.path.exists(table):
            rows = Path(table).read_text().splitlines()[1:]
            listening |= {row.split()[9] for row in rows if row.split()[3] == "0A"}
    ours = set()
    for fd in os.listdir("/proc/self/fd"):
        try:
            target = os.readlink(f"/proc/self/fd/{fd}")
        except OSError:
            continue
        if target.startswith("socket:["):
            ours.add(target[len("socket:["):-1])
    return listening & ours


def _local_threads() -> set[str]:
    return {t.name for t in threading.enumerate() if t.name.startswith("localmaker")}


def test_deploy_creates_a_real_model_endpoint_config_and_endpoint(aws, tiny_qwen3_dir, capsys):
    before = (_children(), _listening_sockets(), _local_threads())
    session = Session(target="aws")
    assert session.target == "aws" and session.region_name == "eu-west-1"
    assert session.endpoint_url is None
    assert session.sagemaker_client.meta.endpoint_url == "https://api.sagemaker.eu-west-1.amazonaws.com"
    assert session.sagemaker_runtime_client.meta.endpoint_url == "https://runtime.sagemaker.eu-west-1.amazonaws.com"

    model = Model(model_data=tiny_qwen3_dir, role=ROLE, entry_point="inference.py", sagemaker_session=session)
    predictor = model.deploy(initial_instance_count=2, instance_type=MOTO_GPU_TYPE, endpoint_name="qwen-embed",
                             serializer=JSONSerializer(), deserializer=JSONDeserializer())

    printed = capsys.readouterr().out
    assert "REAL SageMaker endpoint 'qwen-embed' in eu-west-1" in printed and "bills" in printed
    assert "Simulated" not in printed and "nothing was provisioned" not in printed
    sm = boto3.client("sagemaker", region_name="eu-west-1")
    assert sm.describe_endpoint(EndpointName="qwen-embed")["EndpointStatus"] == "InService"
    variant = sm.describe_endpoint_config(EndpointConfigName="qwen-embed")["ProductionVariants"][0]
    assert (variant["ModelName"], variant["InstanceType"], variant["InitialInstanceCount"]) == (
        "qwen-embed", MOTO_GPU_TYPE, 2)
    described = sm.describe_model(ModelName="qwen-embed")
    container = described["PrimaryContainer"]
    assert described["ExecutionRoleArn"] == ROLE
    assert container["Image"] == EU_WEST_1_GPU_IMAGE
    bucket = f"sagemaker-eu-west-1-{ACCOUNT}"
    assert container["ModelDataUrl"] == f"s3://{bucket}/qwen-embed/model.tar.gz"
    assert container["Environment"]["SAGEMAKER_PROGRAM"] == "inference.py"
    assert container["Environment"]["SAGEMAKER_SUBMIT_DIRECTORY"] == "/opt/ml/model/code"
    assert container["Environment"]["SAGEMAKER_REGION"] == "eu-west-1"

    s3 = boto3.client("s3", region_name="eu-west-1")
    assert s3.get_bucket_location(Bucket=bucket)["LocationConstraint"] == "eu-west-1"
    members = _archive_members(session, container["ModelDataUrl"])
    assert members["code/inference.py"] == (builtin_code_dir() / "inference.py").read_bytes()
    assert members["config.json"] == (tiny_qwen3_dir / "config.json").read_bytes()

    # Nothing local was started: no control plane thread, no instance process, no listening socket.
    assert (_children(), _listening_sockets(), _local_threads()) == before

    predictor.delete_endpoint()
    with pytest.raises(ClientError) as caught:
        sm.describe_endpoint(EndpointName="qwen-embed")
    assert caught.value.response["Error"]["Code"] == "ValidationException"
    assert sm.list_endpoint_configs()["EndpointConfigs"] == []
    session.close()


def test_the_g5_image_is_the_gpu_dlc_of_the_region(aws):
    session = Session(target="aws")
    assert default_image(session.region_name, lookup("ml.g5.xlarge")) == EU_WEST_1_GPU_IMAGE
    assert default_image(session.region_name, lookup(MOTO_GPU_TYPE)) == EU_WEST_1_GPU_IMAGE


def test_another_region_a_hugging_face_image_an_own_script_and_an_explicit_bucket(aws, model_dir, tmp_path):
    code = tmp_path / "src"
    code.mkdir()
    (code / "serve.py").write_text("def model_fn(model_dir):\n    return model_dir\n")
    session = Session(target="aws", region_name="ap-east-1", default_bucket="team-models")
    model = Model(model_data=model_dir, role=ROLE, entry_point="serve.py", source_dir=code,
                  transformers_version="4.51", sagemaker_session=session)
    model.deploy(instance_type="ml.m5.large", endpoint_name="search", wait=False)

    assert session.wait_for_endpoint("search", poll_s=0)["EndpointStatus"] == "InService"
    container = session.sagemaker_client.describe_model(ModelName="search")["PrimaryContainer"]
    assert container["Image"] == ("871362719292.dkr.ecr.ap-east-1.amazonaws.com/huggingface-pytorch-inference:"
                                  "2.6.0-transformers4.51.3-cpu-py312-ubuntu22.04")
    assert container["ModelDataUrl"] == "s3://team-models/search/model.tar.gz"
    assert container["Environment"]["SAGEMAKER_PROGRAM"] == "serve.py"
    location = boto3.client("s3", region_name="ap-east-1").get_bucket_location(Bucket="team-models")
    assert location["LocationConstraint"] == "ap-east-1"
    members = _archive_members(session, container["ModelDataUrl"])
    assert members["code/serve.py"] == (code / "serve.py").read_bytes()
    assert "code/inference.py" not in members  # source_dir replaces code/, as the SDK does


def test_predict_goes_through_invoke_endpoint(aws, model_dir):
    session = Session(target="aws")
    predictor = Model(model_data=model_dir, role=ROLE, sagemaker_session=session).deploy(
        instance_type="ml.m5.large", endpoint_name="embed", serializer=JSONSerializer(),
        deserializer=JSONDeserializer())
    answer = {"embeddings": [[0.6, 0.8]], "dimensions": 2}
    requests.post("http://motoapi.amazonaws.com/moto-api/static/sagemaker/endpoint-results", json={
        "account_id": ACCOUNT, "region": "eu-west-1",
        "results": [{"Body": json.dumps(answer), "ContentType": "application/json",
                     "InvokedProductionVariant": "AllTraffic", "CustomAttributes": ""}]}, timeout=5)
    sent = []
    session.sagemaker_runtime_client.meta.events.register(
        "before-call.sagemaker-runtime.InvokeEndpoint", lambda params, **_: sent.append(params))

    assert predictor.predict({"inputs": "hello"}, custom_attributes="trace=1") == answer
    assert sent[0]["url_path"] == "/endpoints/embed/invocations"
    assert json.loads(sent[0]["body"]) == {"inputs": "hello"}
    assert sent[0]["headers"]["Content-Type"] == "application/json"
    assert sent[0]["headers"]["Accept"] == "application/json"
    assert sent[0]["headers"]["X-Amzn-SageMaker-Custom-Attributes"] == "trace=1"

    with pytest.raises(ConfigurationError, match="only on the local target"):
        predictor.instance_urls  # noqa: B018 - the property is what raises
    with pytest.raises(ConfigurationError, match="only on the local target"):
        session.local_endpoint("embed")


def test_a_container_error_raises_model_error_with_its_status(aws):
    session = Session(target="aws")
    predictor = FakePredictor("embed", session, JSONSerializer(), JSONDeserializer())
    with Stubber(session.sagemaker_runtime_client) as stub:
        stub.add_client_error(
            "invoke_endpoint", service_error_code="ModelError", http_status_code=424,
            service_message="Received client error (400) from primary",
            modeled_fields={"OriginalStatusCode": 400,
                            "OriginalMessage": '{"error": {"code": "BadRequest", "message": "inputs is empty"}}'})
        with pytest.raises(ModelError) as caught:
            predictor.predict({"inputs": []})
    assert caught.value.original_status_code == 400
    assert caught.value.original_message == "inputs is empty"


def test_fit_creates_a_training_job_with_the_training_image_and_prints_its_log(aws, tmp_path, capsys):
    source = tmp_path / "src"
    source.mkdir()
    (source / "train.py").write_text("print('training')\n")
    session = Session(target="aws")
    logs = boto3.client("logs", region_name="eu-west-1")
    # SageMaker writes one stream per instance; moto writes none, so the test plays the instance.
    logs.create_log_group(logGroupName="/aws/sagemaker/TrainingJobs")
    logs.create_log_stream(logGroupName="/aws/sagemaker/TrainingJobs", logStreamName="tune-1/algo-1-1700000000")
    logs.put_log_events(logGroupName="/aws/sagemaker/TrainingJobs", logStreamName="tune-1/algo-1-1700000000",
                        logEvents=[{"timestamp": int(time.time() * 1000), "message": "epoch 1 loss=0.25"}])

    # Unlike endpoints, moto's CreateTrainingJob accepts g5, so the real type is used here.
    estimator = Estimator(entry_point="train.py", source_dir=source, role=ROLE, instance_type="ml.g5.2xlarge",
                          hyperparameters={"epochs": 3}, sagemaker_session=session)
    estimator.fit({"training": "s3://datasets/neon-city/"}, job_name="tune-1")

    job = session.sagemaker_client.describe_training_job(TrainingJobName="tune-1")
    assert job["AlgorithmSpecification"]["TrainingImage"] == (
        "763104351884.dkr.ecr.eu-west-1.amazonaws.com/pytorch-training:2.6.0-gpu-py312")
    assert job["ResourceConfig"]["InstanceType"] == "ml.g5.2xlarge"
    assert job["InputDataConfig"][0]["DataSource"]["S3DataSource"]["S3Uri"] == "s3://datasets/neon-city/"
    source_url = f"s3://sagemaker-eu-west-1-{ACCOUNT}/tune-1/source/sourcedir.tar.gz"
    assert job["HyperParameters"]["sagemaker_program"] == '"train.py"'
    assert job["HyperParameters"]["sagemaker_submit_directory"] == json.dumps(source_url)
    assert job["HyperParameters"]["epochs"] == "3"
    assert _archive_members(session, source_url)["train.py"] == b"print('training')\n"
    assert estimator.model_data == f"s3://sagemaker-eu-west-1-{ACCOUNT}/tune-1/output/model.tar.gz"
    assert "epoch 1 loss=0.25" in capsys.readouterr().out


def test_fit_refuses_local_channels(aws, tmp_path):
    session = Session(target="aws")
    estimator = Estimator(entry_point="train_lora.py", role=ROLE, instance_type="ml.g5.2xlarge",
                          sagemaker_session=session)
    with pytest.raises(ConfigurationError, match="file:// paths, which exist only on this machine"):
        estimator.fit({"training": f"file://{tmp_path}"})
    assert session.sagemaker_client.list_training_jobs()["TrainingJobSummaries"] == []


def test_unknown_region_or_version_fails_before_any_upload(aws, model_dir):
    session = Session(target="aws", region_name="eu-wets-1")
    with pytest.raises(ConfigurationError, match="'eu-wets-1'; known regions: af-south-1"):
        Model(model_data=model_dir, role=ROLE, sagemaker_session=session)
    session = Session(target="aws")
    with pytest.raises(ConfigurationError, match="supported: 2.0.0"):
        Model(model_data=model_dir, role=ROLE, framework_version="1.8", sagemaker_session=session)
    assert session.s3_client.list_buckets()["Buckets"] == []


def test_a_bad_target_names_the_allowed_values():
    with pytest.raises(ConfigurationError, match="'cloud' is not one of 'local', 'aws'"):
        Session(target="cloud")


def test_local_only_options_are_refused_with_the_target_that_fits(aws):
    with pytest.raises(ConfigurationError, match="endpoint_url attaches to a localmaker control plane"):
        Session(target="aws", endpoint_url="http://127.0.0.1:4599")
    with pytest.raises(ConfigurationError, match="boto_session is for target='aws'"):
        Session(boto_session=boto3.Session())


def test_aws_needs_a_region_and_credentials(clean_aws_env):
    with pytest.raises(ConfigurationError, match="needs a region"):
        Session(target="aws")
    with pytest.raises(ConfigurationError, match="found no AWS credentials"):
        Session(target="aws", region_name="eu-west-1")


def test_a_given_boto_session_is_used_and_region_name_wins(aws):
    mine = boto3.Session(aws_access_key_id="AKIAEXAMPLE", aws_secret_access_key="secret", region_name="us-west-2")
    session = Session(target="aws", boto_session=mine, region_name="eu-central-1")
    assert session.boto_session is mine and mine.region_name == "us-west-2"
    assert session.region_name == "eu-central-1"
    assert session.s3_client.meta.region_name == "eu-central-1"
    assert session.s3_client._request_signer._credentials.access_key == "AKIAEXAMPLE"


def test_an_endpoint_url_left_in_the_environment_is_warned_about(aws, monkeypatch):
    monkeypatch.setenv("AWS_ENDPOINT_URL", "http://127.0.0.1:4599")
    with pytest.warns(UserWarning, match="AWS_ENDPOINT_URL is set"):
        Session(target="aws")
