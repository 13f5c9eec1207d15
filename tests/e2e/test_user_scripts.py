"""Users' own inference.py, failures at start-up, Estimator, and artifacts packed by the CLI."""

from __future__ import annotations

import json
import subprocess
import sys
import textwrap
import time

import pytest
from botocore.exceptions import ClientError

from localmaker import DeploymentError
from localmaker.deploy import Estimator, Model, Session
from localmaker.deserializers import JSONDeserializer
from localmaker.serializers import JSONSerializer
from tests.e2e.conftest import ROLE
from tests.process_probe import group_members

pytestmark = pytest.mark.e2e


def _write_script(folder, source: str, name: str = "inference.py"):
    folder.mkdir(parents=True, exist_ok=True)
    (folder / name).write_text(textwrap.dedent(source))
    return folder


@pytest.fixture(scope="module")
def packed_archive(tmp_path_factory, tiny_qwen3_dir):
    """A model.tar.gz written by the CLI, as a user would make one."""
    archive = tmp_path_factory.mktemp("packed") / "model.tar.gz"
    subprocess.run([sys.executable, "-m", "localmaker.cli", "pack", str(tiny_qwen3_dir), "-o", str(archive)],
                   check=True, capture_output=True, timeout=120)
    return archive


def test_script_with_only_model_fn_and_predict_fn_returning_a_tensor(session, tmp_path, packed_archive):
    source_dir = _write_script(tmp_path / "src", """
        import torch
        from helpers import scale

        def model_fn(model_dir):
            return torch.nn.Identity()

        def predict_fn(data, model):
            return {"scaled": model(torch.tensor(data["values"])) * scale()}
    """, name="serve.py")
    (source_dir / "helpers.py").write_text("def scale():\n    return 10\n")
    # An existing model.tar.gz plus source_dir: the artifact is repacked with the user's code/.
    model = Model(model_data=f"file://{packed_archive}", role=ROLE, entry_point="serve.py", source_dir=source_dir,
                  sagemaker_session=session)
    with model.deploy(initial_instance_count=1, instance_type="ml.m5.large",
                      serializer=JSONSerializer(), deserializer=JSONDeserializer()) as predictor:
        assert predictor.predict({"values": [1.5, -2.0]}) == {"scaled": [15.0, -20.0]}
        environment = session.sagemaker_client.describe_model(ModelName=predictor.model_name)[
            "PrimaryContainer"]["Environment"]
        assert environment["SAGEMAKER_PROGRAM"] == "serve.py"
    with pytest.raises(ClientError):
        session.sagemaker_client.describe_model(ModelName=predictor.model_name)


def test_model_fn_failure_marks_the_endpoint_failed_with_its_message(session, tmp_path, tiny_qwen3_dir):
    source_dir = _write_script(tmp_path / "broken", """
        def model_fn(model_dir):
            raise RuntimeError("cannot find tokenizer.json in the artifact")
    """)
    model = Model(model_data=str(tiny_qwen3_dir), role=ROLE, source_dir=source_dir, sagemaker_session=session)
    with pytest.raises(DeploymentError, match="cannot find tokenizer.json in the artifact"):
        model.deploy(initial_instance_count=1, instance_type="ml.m5.large", endpoint_name="broken-model")
    described = session.sagemaker_client.describe_endpoint(EndpointName="broken-model")
    assert described["EndpointStatus"] == "Failed"
    assert "RuntimeError: cannot find tokenizer.json in the artifact" in described["FailureReason"]
    info = session.local_endpoint("broken-model")
    assert not info.instances, "a Failed endpoint routes to nothing"
    groups = [i.pid for i in info.retired]
    assert groups and not any(group_members(g) for g in groups), "a Failed endpoint keeps no process"
    session.sagemaker_client.delete_endpoint(EndpointName="broken-model")


def test_a_script_that_does_not_import_fails_the_endpoint_with_the_reason(session, tmp_path, tiny_qwen3_dir):
    source_dir = _write_script(tmp_path / "syntax", "def model_fn(model_dir) return 1\n")
    model = Model(model_data=str(tiny_qwen3_dir), role=ROLE, source_dir=source_dir, sagemaker_session=session)
    with pytest.raises(DeploymentError, match="SyntaxError"):
        model.deploy(initial_instance_count=1, instance_type="ml.m5.large")


def test_estimator_with_s3_model_data_deploys_without_training(session, packed_archive):
    s3_url = session.upload_file(packed_archive, "uploaded/model.tar.gz")
    estimator = Estimator(entry_point="inference.py", model_data=s3_url, role=ROLE,
                          instance_type="ml.g4dn.xlarge", sagemaker_session=session)
    predictor = estimator.deploy(initial_instance_count=1, instance_type="ml.m5.xlarge",
                                 serializer=JSONSerializer(), deserializer=JSONDeserializer())
    try:
        answer = predictor.predict({"inputs": ["one", "two"]})
        assert len(answer["embeddings"]) == 2
        model = session.sagemaker_client.describe_model(ModelName=predictor.model_name)
        assert model["PrimaryContainer"]["ModelDataUrl"] == s3_url  # used in place, not re-uploaded
    finally:
        predictor.delete_endpoint()
        predictor.delete_model()


def test_packed_corpus_is_searched_when_no_documents_are_sent(session, tmp_path, tiny_qwen3_dir):
    corpus = tmp_path / "corpus.jsonl"
    lines = [{"id": "d1", "text": "Ronaldo Plays for portugal"}, {"id": "d2", "text": "Aegentina won FIFA worldcup"},
             {"id": "d3", "text": "Leonardo messi plays soccer"}]
    corpus.write_text("\n".join(json.dumps(line) for line in lines) + "\n")
    model = Model(model_data="tiny-qwen3", role=ROLE, corpus=corpus, sagemaker_session=session)
    with model.deploy(initial_instance_count=1, instance_type="ml.m5.large",
                      serializer=JSONSerializer(), deserializer=JSONDeserializer()) as predictor:
        results = predictor.predict({"query": "who plays soccer", "top_k": 2})["results"]
    assert len(results) == 2
    assert {r["id"] for r in results} <= {"d1", "d2", "d3"}
    assert all(r["text"] == lines[r["index"]]["text"] for r in results)


def _deploying_script(tmp_path, model_dir, then: str):
    """A user script that deploys one instance, prints its process group as JSON, then does ``then``."""
    script = tmp_path / "user_script.py"
    script.write_text(textwrap.dedent(f"""
        import json, time
        from localmaker import Model, Session
        session = Session(work_root={str(tmp_path / 'work')!r})
        predictor = Model(model_data={str(model_dir)!r}, role={ROLE!r},
                          sagemaker_session=session).deploy(initial_instance_count=1, instance_type="ml.m5.large")
        info = session.local_endpoint(predictor.endpoint_name)
        print(json.dumps([i.pid for i in info.instances]), flush=True)
    """) + then + "\n")
    return script


def _wait_until_gone(groups: list[int], timeout_s: float) -> bool:
    deadline = time.monotonic() + timeout_s
    while any(group_members(g) for g in groups) and time.monotonic() < deadline:
        time.sleep(0.1)
    return not any(group_members(g) for g in groups)


def test_processes_are_reaped_when_the_interpreter_exits_without_cleanup(tmp_path, tiny_qwen3_dir):
    # no delete_endpoint(), no session.close(): the interpreter just exits
    script = _deploying_script(tmp_path, tiny_qwen3_dir, then="")
    done = subprocess.run([sys.executable, str(script)], capture_output=True, text=True, timeout=180)
    assert done.returncode == 0, done.stderr
    groups = json.loads(done.stdout.strip().splitlines()[-1])
    assert groups and _wait_until_gone(groups, timeout_s=10)


def test_instances_exit_when_the_control_plane_is_killed(tmp_path, tiny_qwen3_dir):
    script = _deploying_script(tmp_path, tiny_qwen3_dir, then="time.sleep(600)")
    victim = subprocess.Popen([sys.executable, str(script)], stdout=subprocess.PIPE, text=True)
    try:
        assert victim.stdout is not None
        line = victim.stdout.readline()
        while line.startswith("[localmaker]"):  # deploy() prints its simulation line first
            line = victim.stdout.readline()
        groups = json.loads(line)
        assert all(group_members(g) for g in groups)
    finally:
        victim.kill()  # SIGKILL: no atexit, no cleanup in the parent
        victim.wait(timeout=10)
    assert _wait_until_gone(groups, timeout_s=20), "instances outlived a SIGKILLed control plane"


def test_a_model_fn_slower_than_the_startup_health_check_fails_the_endpoint(tmp_path, tiny_qwen3_dir):
    source_dir = _write_script(tmp_path / "slow", """
        import time

        def model_fn(model_dir):
            time.sleep(60)
    """)
    # SageMaker's own limit starts at 60 s; a session's default limit can be short for a test.
    with Session(work_root=tmp_path / "work", startup_timeout_s=2) as impatient:
        model = Model(model_data=str(tiny_qwen3_dir), role=ROLE, source_dir=source_dir, sagemaker_session=impatient)
        with pytest.raises(DeploymentError, match="startup health check timed out after 2s"):
            model.deploy(initial_instance_count=1, instance_type="ml.m5.large")


def test_the_startup_health_check_timeout_is_recorded_on_the_variant(session, tiny_qwen3_dir):
    model = Model(model_data=str(tiny_qwen3_dir), role=ROLE, sagemaker_session=session)
    predictor = model.deploy(initial_instance_count=1, instance_type="ml.m5.large", wait=False,
                             container_startup_health_check_timeout=600)
    config = session.sagemaker_client.describe_endpoint_config(EndpointConfigName=predictor.endpoint_name)
    assert config["ProductionVariants"][0]["ContainerStartupHealthCheckTimeoutInSeconds"] == 600
    predictor.delete_endpoint()
