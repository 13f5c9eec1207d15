"""The SageMaker Python SDK v2, unmodified, against `localmaker up`: deploy, predict, delete.

The scripts below are what a SageMaker user writes; they find localmaker only through the environment
(AWS_ENDPOINT_URL and dummy credentials), and run as their own processes.
"""

from __future__ import annotations

import json
import math
import signal
import subprocess
import sys
import tarfile
import textwrap
import time
import urllib.request
from pathlib import Path
from typing import Any

import boto3
import pytest
from botocore.exceptions import ClientError

from localmaker.deploy import Session
from localmaker.model.artifact import pack, pack_directory
from tests.e2e.conftest import ROLE, aws_env
from tests.process_probe import group_members

pytestmark = pytest.mark.e2e

SESSION = """
    import json, sys
    import boto3, sagemaker

    # The SDK names its default bucket after an STS call that it sends to sts.<region>.amazonaws.com
    # whatever AWS_ENDPOINT_URL says, so an offline script names the bucket itself.
    session = sagemaker.Session(boto_session=boto3.Session(), sagemaker_client=boto3.client("sagemaker"),
                                sagemaker_runtime_client=boto3.client("sagemaker-runtime"),
                                default_bucket="sdk-e2e")
"""

DEPLOY_AND_PREDICT = """
    from sagemaker.deserializers import JSONDeserializer
    from sagemaker.model import Model
    from sagemaker.predictor import Predictor
    from sagemaker.pytorch import PyTorchModel
    from sagemaker.serializers import JSONSerializer

    kind, archive = sys.argv[1:3]
    model_data = session.upload_data(archive, key_prefix="tiny-qwen3")
    if kind == "Model":
        model = Model(image_uri="763104351884.dkr.ecr.us-east-1.amazonaws.com/pytorch-inference:2.3-cpu-py311",
                      model_data=model_data, role=ROLE, env={"SAGEMAKER_PROGRAM": "inference.py"},
                      predictor_cls=Predictor, sagemaker_session=session)
    else:
        model = PyTorchModel(entry_point="inference.py", source_dir=sys.argv[3], framework_version="2.3",
                             py_version="py311", model_data=model_data, role=ROLE, sagemaker_session=session)
    # deploy(wait=True) sleeps 30 s before its first DescribeEndpoint; the same waiter polls every second here.
    predictor = model.deploy(initial_instance_count=1, instance_type="ml.m5.xlarge",
                             serializer=JSONSerializer(), deserializer=JSONDeserializer(), wait=False)
    session.wait_for_endpoint(predictor.endpoint_name, poll=1)
    answer = predictor.predict({"inputs": ["hello", "world"]})
    try:
        predictor.predict({"inputs": 5})
        refused = None
    except session.sagemaker_runtime_client.exceptions.ModelError as err:
        refused = {"type": type(err).__name__, "code": err.response["Error"]["Code"],
                   "status": err.response["OriginalStatusCode"], "message": err.response["OriginalMessage"]}
    container = session.sagemaker_client.describe_model(ModelName=model.name)["PrimaryContainer"]
    # A file, not stdout: the SDK's waiter prints its progress dots there without a newline.
    with open("result.json", "w") as out:
        json.dump({"endpoint": predictor.endpoint_name, "model": model.name, "uploaded": model_data,
                   "container": container, "answer": answer, "refused": refused}, out)
"""

DELETE = """
    from sagemaker.predictor import Predictor

    predictor = Predictor(sys.argv[1], sagemaker_session=session)
    predictor.delete_model()
    predictor.delete_endpoint()
"""


def _run_sdk_script(tmp_path: Path, url: str, name: str, body: str, *args: str) -> None:
    script = tmp_path / f"{name}.py"
    script.write_text(f"ROLE = {ROLE!r}\n" + textwrap.dedent(SESSION) + textwrap.dedent(body))
    env = {**aws_env(url), "SAGEMAKER_SUPPRESS_V2_WARNING": "1"}
    done = subprocess.run([sys.executable, str(script), *args], capture_output=True, text=True, timeout=300,
                          env=env, cwd=tmp_path)
    assert done.returncode == 0, done.stderr


def _artifacts(kind: str, tmp_path: Path, model_dir: Path) -> list[str]:
    """The archive to upload and, for a PyTorchModel, the source_dir that the SDK repacks into it.

    PyTorchModel gets the weights alone, so its endpoint can only answer if the SDK's repack put the
    code into the archive; its source_dir is the built-in code, as a user's own folder would hold it.
    """
    packed = pack(model_dir, tmp_path / "model.tar.gz")
    if kind == "Model":
        return [str(packed)]
    with tarfile.open(packed) as tar:
        tar.extractall(tmp_path, members=[m for m in tar.getmembers() if m.name.startswith("code/")],
                       filter="data")
    return [str(pack_directory(model_dir, tmp_path / "weights.tar.gz")), str(tmp_path / "code")]


def _local_endpoints(url: str, name: str = "") -> Any:
    with urllib.request.urlopen(f"{url}/_localmaker/endpoints{'/' + name if name else ''}", timeout=5) as answer:
        return json.load(answer)


@pytest.mark.parametrize("kind", ["Model", "PyTorchModel"])
def test_sagemaker_sdk_deploys_predicts_and_deletes(kind, control_plane, tmp_path, tiny_qwen3_dir):
    process, url = control_plane
    _run_sdk_script(tmp_path, url, "deploy", DEPLOY_AND_PREDICT, kind, *_artifacts(kind, tmp_path, tiny_qwen3_dir))
    result = json.loads((tmp_path / "result.json").read_text())

    width = json.loads((tiny_qwen3_dir / "config.json").read_text())["hidden_size"]
    embeddings = result["answer"]["embeddings"]
    assert result["answer"]["dimensions"] == width
    assert len(embeddings) == 2 and all(len(row) == width for row in embeddings)
    assert all(math.isclose(math.hypot(*row), 1.0, abs_tol=1e-4) for row in embeddings)
    assert embeddings[0] != embeddings[1]
    refused = result["refused"]
    assert refused is not None, "a non-text input was answered instead of refused"
    assert (refused["type"], refused["code"], refused["status"]) == ("ModelError", "ModelError", 400)
    container_error = json.loads(refused["message"])["error"]  # OriginalMessage is the container's own body
    assert container_error["code"] == "InvalidInput"
    assert container_error["message"].startswith('"inputs" must be a string or a list of strings')

    container = result["container"]
    assert container["Environment"]["SAGEMAKER_PROGRAM"] == "inference.py"
    if kind == "PyTorchModel":
        # The SDK resolved the framework image offline and uploaded a repacked archive of its own.
        assert container["Image"] == "763104351884.dkr.ecr.us-east-1.amazonaws.com/pytorch-inference:2.3-cpu-py311"
        assert container["ModelDataUrl"] != result["uploaded"]

    name = result["endpoint"]
    groups = [i.pid for i in Session(endpoint_url=url).local_endpoint(name).instances]
    assert len(groups) == 1 and all(group_members(g) for g in groups)

    _run_sdk_script(tmp_path, url, "delete", DELETE, name)
    assert _local_endpoints(url)["Endpoints"] == []
    sagemaker = boto3.client("sagemaker", endpoint_url=url, region_name="us-east-1",
                             aws_access_key_id="testing", aws_secret_access_key="testing")
    with pytest.raises(ClientError) as missing:
        sagemaker.describe_endpoint(EndpointName=name)
    assert missing.value.response["Error"]["Code"] == "ValidationException"
    with pytest.raises(ClientError) as missing_model:
        sagemaker.describe_model(ModelName=result["model"])
    assert missing_model.value.response["Error"]["Code"] == "ValidationException"
    deadline = time.monotonic() + 15
    while any(group_members(g) for g in groups) and time.monotonic() < deadline:
        time.sleep(0.1)
    assert not any(group_members(g) for g in groups), "instances outlived delete_endpoint"

    process.send_signal(signal.SIGTERM)
    assert process.wait(timeout=60) == 0
    assert not any(group_members(g) for g in groups)
    assert "stopped; every process it started has been reaped" in (process.stdout.read() if process.stdout else "")


@pytest.mark.parametrize("kind", ["Model", "PyTorchModel"])
def test_sagemaker_sdk_runs_against_an_embedded_control_plane(kind, tmp_path, tiny_qwen3_dir, localmaker_home):
    """The same script, pointed at the control plane a Session() runs inside this process."""
    with Session(work_root=tmp_path / "control-plane") as session:
        assert session.endpoint_url is not None
        _run_sdk_script(tmp_path, session.endpoint_url, "deploy", DEPLOY_AND_PREDICT, kind,
                        *_artifacts(kind, tmp_path, tiny_qwen3_dir))
        result = json.loads((tmp_path / "result.json").read_text())
        assert all(math.isclose(math.hypot(*row), 1.0, abs_tol=1e-4) for row in result["answer"]["embeddings"])
        groups = [i.pid for i in session.local_endpoint(result["endpoint"]).instances]
        _run_sdk_script(tmp_path, session.endpoint_url, "delete", DELETE, result["endpoint"])
        # moto keeps one set of records per process, shared with other Sessions: look for this endpoint only.
        listed = session.sagemaker_client.list_endpoints()["Endpoints"]
        assert result["endpoint"] not in [e["EndpointName"] for e in listed]
        deadline = time.monotonic() + 15
        while any(group_members(g) for g in groups) and time.monotonic() < deadline:
            time.sleep(0.1)
        assert groups and not any(group_members(g) for g in groups)
