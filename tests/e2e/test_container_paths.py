"""SageMaker's own paths inside instances and training jobs, the region they inherit, and the fallback.

The instance tests run `localmaker up` as the README starts it, with no AWS variable in its environment:
whatever region an instance has, it has from the control plane.
"""

from __future__ import annotations

import contextlib
import json
import os
import signal
import subprocess
import textwrap
import time
import urllib.error
import urllib.request
from collections.abc import Iterator
from pathlib import Path

import pytest

from localmaker import TrainingError
from localmaker.control_plane.instance_process import free_port
from localmaker.deploy import Estimator, Model, Session
from localmaker.deserializers import JSONDeserializer
from localmaker.local_endpoint.container_paths import probe
from localmaker.serializers import JSONSerializer
from tests.e2e.conftest import CLI, ROLE, artifact_member
from tests.process_probe import group_members

pytestmark = pytest.mark.e2e

UNAVAILABLE = probe()
needs_namespaces = pytest.mark.skipif(bool(UNAVAILABLE), reason=f"no user namespaces here: {UNAVAILABLE}")
HOST_HAD_OPT_ML = Path("/opt/ml").exists()

INFERENCE = """
    import os
    import boto3

    def model_fn(model_dir):
        s3 = boto3.client("s3")  # no region named: the container's AWS_REGION must do, as on SageMaker
        try:
            literal = open("/opt/ml/model/greeting.txt").read()  # the path real scripts hard-code
        except OSError as exc:
            literal = type(exc).__name__
        print(f"model_fn saw {model_dir}", flush=True)
        return {"model_dir": model_dir, "literal": literal, "client_region": s3.meta.region_name,
                "via_model_dir": open(os.path.join(model_dir, "greeting.txt")).read()}

    def predict_fn(data, model):
        return {**model, "region": os.environ["AWS_REGION"], "default_region": os.environ["AWS_DEFAULT_REGION"]}
"""

TRAIN = """
    import json, os, pathlib, sys
    data = pathlib.Path("/opt/ml/input/data/training/a.txt").read_text()
    pathlib.Path("/opt/ml/model/trained.json").write_text(json.dumps({
        "data": data, "cwd": os.getcwd(), "region": os.environ["AWS_REGION"],
        "env": {k: os.environ[k] for k in ("SM_MODEL_DIR", "SM_OUTPUT_DIR", "SM_OUTPUT_DATA_DIR", "SM_INPUT_DIR",
                                           "SM_CHANNEL_TRAINING")}}))
    pathlib.Path("/opt/ml/output/data/report.txt").write_text("done")
    if data == "fail":
        pathlib.Path("/opt/ml/output/failure").write_text("the data said fail")
        sys.exit(1)
"""


@contextlib.contextmanager
def _up(log: Path, **settings: str) -> Iterator[str]:
    """`localmaker up` with no AWS variable set, its output in ``log``; SIGTERM at the end reaps everything."""
    port = free_port()
    env = {k: v for k, v in os.environ.items() if not k.startswith("AWS_")}
    with open(log, "wb") as output:
        process = subprocess.Popen([*CLI, "--verbose", "up", "--port", str(port)], stdout=output,
                                   stderr=subprocess.STDOUT, env={**env, "HF_HUB_OFFLINE": "1", **settings},
                                   start_new_session=True)
    url = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 60
        while True:
            try:
                urllib.request.urlopen(f"{url}/_localmaker/endpoints", timeout=2).close()
                break
            except (urllib.error.URLError, ConnectionError):
                assert process.poll() is None and time.monotonic() < deadline, log.read_text()
                time.sleep(0.2)
        yield url
        process.send_signal(signal.SIGTERM)
        assert process.wait(timeout=60) == 0
    finally:
        if process.poll() is None:
            os.killpg(process.pid, signal.SIGKILL)
            process.wait(timeout=10)


def _deploy_and_predict(url: str, tmp_path: Path) -> tuple[dict[str, str], str]:
    """The literal-path script deployed through the SDK-style client; its answer and its instance's log."""
    model_dir = tmp_path / "model"
    model_dir.mkdir()
    (model_dir / "greeting.txt").write_text("hello from the artifact")
    (model_dir / "config.json").write_text("{}")  # what makes a folder a model to the client
    source_dir = tmp_path / "code"
    source_dir.mkdir()
    (source_dir / "inference.py").write_text(textwrap.dedent(INFERENCE))
    session = Session(endpoint_url=url)
    model = Model(model_data=str(model_dir), role=ROLE, source_dir=source_dir, sagemaker_session=session)
    with model.deploy(initial_instance_count=1, instance_type="ml.m5.large", serializer=JSONSerializer(),
                      deserializer=JSONDeserializer()) as predictor:
        answer = predictor.predict({})
        [instance] = session.local_endpoint(predictor.endpoint_name).instances
        log = instance.log_file.read_text()
        assert group_members(instance.pid), "the pid the control plane holds leads the instance's group"
    assert not group_members(instance.pid), "deleting the endpoint reaps the namespaced instance"
    return answer, log


@needs_namespaces
def test_an_instance_reads_its_model_at_opt_ml_and_has_the_control_planes_region(tmp_path):
    with _up(tmp_path / "up.log") as url:
        answer, log = _deploy_and_predict(url, tmp_path)
    assert answer == {"model_dir": "/opt/ml/model", "literal": "hello from the artifact",
                      "via_model_dir": "hello from the artifact", "client_region": "us-east-1",
                      "region": "us-east-1", "default_region": "us-east-1"}
    assert "model_fn saw /opt/ml/model" in log, "the instance's log lands in its host file"
    assert "LOCALMAKER_CONTAINER_PATHS" not in (tmp_path / "up.log").read_text()
    assert Path("/opt/ml").exists() == HOST_HAD_OPT_ML, "the host's /opt is untouched"


def test_with_container_paths_off_the_same_deploy_serves_from_host_folders(tmp_path):
    with _up(tmp_path / "up.log", LOCALMAKER_CONTAINER_PATHS="host") as url:
        answer, log = _deploy_and_predict(url, tmp_path)
    assert answer["model_dir"] != "/opt/ml/model" and Path(answer["model_dir"]).is_absolute()
    assert answer["via_model_dir"] == "hello from the artifact"
    assert answer["region"] == answer["client_region"] == "us-east-1"
    if not HOST_HAD_OPT_ML:
        assert answer["literal"] == "FileNotFoundError"
    assert f"model_fn saw {answer['model_dir']}" in log
    said = [line for line in (tmp_path / "up.log").read_text().splitlines() if "LOCALMAKER_CONTAINER_PATHS" in line]
    assert len(said) == 1 and "see their host folders rather than /opt/ml" in said[0]
    assert Path("/opt/ml").exists() == HOST_HAD_OPT_ML


@needs_namespaces
@pytest.mark.parametrize("data", ["some data", "fail"])
def test_a_training_job_reads_and_writes_opt_ml(session, tmp_path, data):
    source_dir = tmp_path / "src"
    source_dir.mkdir()
    (source_dir / "train.py").write_text(textwrap.dedent(TRAIN))
    (tmp_path / "a.txt").write_text(data)
    session.s3_client.create_bucket(Bucket="opt-ml-data")
    session.s3_client.upload_file(str(tmp_path / "a.txt"), "opt-ml-data", f"{data}/a.txt")
    estimator = Estimator(entry_point="train.py", source_dir=source_dir, role=ROLE, instance_type="ml.m5.xlarge",
                          output_path="s3://opt-ml-output/jobs", sagemaker_session=session)
    job_name = f"opt-ml-{data.replace(' ', '-')}"
    if data == "fail":
        with pytest.raises(TrainingError, match="the data said fail"):
            estimator.fit(f"s3://opt-ml-data/{data}", job_name=job_name, logs=False)
        described = session.sagemaker_client.describe_training_job(TrainingJobName=job_name)
        assert described["FailureReason"] == "AlgorithmError: the data said fail"
        return
    estimator.fit(f"s3://opt-ml-data/{data}", job_name=job_name, logs=False)
    trained = json.loads(artifact_member(session, estimator.model_data, "trained.json"))
    assert trained == {"data": "some data", "cwd": "/opt/ml/code", "region": session.region_name, "env": {
        "SM_MODEL_DIR": "/opt/ml/model", "SM_OUTPUT_DIR": "/opt/ml/output", "SM_OUTPUT_DATA_DIR": "/opt/ml/output/data",
        "SM_INPUT_DIR": "/opt/ml/input", "SM_CHANNEL_TRAINING": "/opt/ml/input/data/training"}}
    output = estimator.model_data.replace("model.tar.gz", "output.tar.gz")
    assert artifact_member(session, output, "report.txt") == b"done"
    assert Path("/opt/ml").exists() == HOST_HAD_OPT_ML
