"""Batch transform as SageMaker SDK users write it, unmodified: v2's ``Model.transformer(...).transform(...)``
with ``Transformer.wait()``, and v3's ``TransformJob.create(...).wait()``, each against a Session's control plane.

The scripts run as their own processes and find localmaker only through AWS_ENDPOINT_URL.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

from localmaker.model.artifact import pack_directory
from localmaker.spec.sdk_config import CONFIG_ENV_VAR, sdk_config
from tests.e2e.conftest import ROLE, aws_env
from tests.e2e.transform_models import HANDLER, IMAGE

pytestmark = pytest.mark.e2e

RECORDS = [{"id": i, "text": "word " * i} for i in range(1, 8)]

SDK2 = """
    import json, sys
    import boto3, sagemaker
    from sagemaker.model import Model

    session = sagemaker.Session(boto_session=boto3.Session(), sagemaker_client=boto3.client("sagemaker"),
                                sagemaker_runtime_client=boto3.client("sagemaker-runtime"),
                                default_bucket="sdk-transform")
    archive, corpus, rigged = sys.argv[1:4]
    model = Model(image_uri=IMAGE, model_data=session.upload_data(archive, key_prefix="model"), role=ROLE,
                  env={"SAGEMAKER_PROGRAM": "inference.py"}, sagemaker_session=session)
    transformer = model.transformer(instance_count=1, instance_type="ml.m5.large", strategy="MultiRecord",
                                    assemble_with="Line", accept="application/jsonlines", max_payload=1,
                                    output_path="s3://sdk-transform/out")
    transformer.transform(session.upload_data(corpus, key_prefix="corpus"), content_type="application/jsonlines",
                          split_type="Line", join_source="Input", output_filter="$['id','SageMakerOutput']",
                          wait=False)
    transformer.wait()  # logs=True: tails /aws/sagemaker/TransformJobs until the job ends
    job = transformer.latest_transform_job.name
    output = session.read_s3_file("sdk-transform", "out/corpus.jsonl.out")

    failing = model.transformer(instance_count=1, instance_type="ml.m5.large", strategy="SingleRecord",
                                output_path="s3://sdk-transform/rigged-out")
    try:
        failing.transform(session.upload_data(rigged, key_prefix="rigged"), content_type="application/jsonlines",
                          split_type="Line", wait=True, logs=False)
        refused = None
    except sagemaker.exceptions.UnexpectedStatusException as exc:
        refused = str(exc)
    with open("result.json", "w") as out:
        json.dump({"job": job, "output": output, "refused": refused,
                   "status": session.describe_transform_job(job)["TransformJobStatus"]}, out)
"""

SDK3 = """
    import json, sys
    from sagemaker.core.helper.session_helper import Session
    from sagemaker.core.resources import Model, TransformJob
    from sagemaker.core.shapes import (ContainerDefinition, TransformDataSource, TransformInput, TransformS3DataSource,
                                       TransformOutput, TransformResources)

    archive, corpus, key = sys.argv[1:4]
    session = Session()
    bucket = session.default_bucket()
    model = Model.create(model_name=key, execution_role_arn=ROLE, primary_container=ContainerDefinition(
        image=IMAGE, model_data_url=session.upload_data(archive, bucket, f"{key}/model"),
        environment={"SAGEMAKER_PROGRAM": "inference.py"}))
    data = session.upload_data(corpus, bucket, f"{key}/corpus")
    job = TransformJob.create(
        transform_job_name=key, model_name=model, batch_strategy="MultiRecord",
        transform_input=TransformInput(data_source=TransformDataSource(s3_data_source=TransformS3DataSource(
            s3_data_type="S3Prefix", s3_uri=data)), content_type="application/jsonlines", split_type="Line"),
        transform_output=TransformOutput(s3_output_path=f"s3://{bucket}/{key}/out", assemble_with="Line"),
        transform_resources=TransformResources(instance_type="ml.m5.large", instance_count=1))
    job.wait(poll=1, logs=True)
    job.refresh()
    output = session.read_s3_file(bucket, f"{key}/out/corpus.jsonl.out")
    with open("result.json", "w") as out:
        json.dump({"status": job.transform_job_status, "output": output}, out)
"""


def _inputs(tmp_path: Path) -> list[str]:
    folder = tmp_path / "model"
    (folder / "code").mkdir(parents=True)
    (folder / "code" / "inference.py").write_text(textwrap.dedent(HANDLER))
    corpus = tmp_path / "corpus.jsonl"
    corpus.write_text("\n".join(json.dumps(r) for r in RECORDS) + "\n")
    rigged = tmp_path / "rigged.jsonl"
    rigged.write_text('{"text": "fine"}\n{"text": "boom"}\n')
    return [str(pack_directory(folder, tmp_path / "model.tar.gz")), str(corpus), str(rigged)]


def _run(python: str, tmp_path: Path, body: str, env: dict[str, str], *args: str) -> dict:
    script = tmp_path / "script.py"
    script.write_text(f"ROLE = {ROLE!r}\nIMAGE = {IMAGE!r}\n" + textwrap.dedent(body))
    done = subprocess.run([python, str(script), *args], capture_output=True, text=True, timeout=300, env=env,
                          cwd=tmp_path)
    assert done.returncode == 0, done.stderr[-4000:]
    return {**json.loads((tmp_path / "result.json").read_text()), "stdout": done.stdout}


def test_sdk_v2_transformer_transform_and_wait(session, tmp_path):
    env = {**aws_env(str(session.endpoint_url)), "SAGEMAKER_SUPPRESS_V2_WARNING": "1"}
    result = _run(sys.executable, tmp_path, SDK2, env, *_inputs(tmp_path))
    assert result["status"] == "Completed"
    lines = [json.loads(line) for line in result["output"].splitlines()]
    assert [line["id"] for line in lines] == [r["id"] for r in RECORDS]
    assert [line["SageMakerOutput"]["length"] for line in lines] == [len(r["text"]) for r in RECORDS]
    assert "Booting worker" in result["stdout"] or "Listening at" in result["stdout"], "wait() showed no log"
    assert result["refused"] is not None, "a failed job's wait() did not raise"
    assert "record 2 of s3://sdk-transform/rigged/rigged.jsonl" in result["refused"]


@pytest.mark.skipif(os.environ.get("LOCALMAKER_SDK3_PYTHON") is None,
                    reason="SDK v3 runs from its own environment: `make test` sets LOCALMAKER_SDK3_PYTHON")
def test_sdk_v3_transform_job_create_and_wait(session, tmp_path, tmp_path_factory):
    config = tmp_path_factory.mktemp("sdk-config") / "sagemaker-sdk-config.yaml"
    config.write_text(sdk_config("us-east-1"))
    env = {**aws_env(str(session.endpoint_url)), CONFIG_ENV_VAR: str(config)}
    archive, corpus, _ = _inputs(tmp_path)
    result = _run(str(os.environ["LOCALMAKER_SDK3_PYTHON"]), tmp_path, SDK3, env, archive, corpus, "sdk3-transform")
    assert result["status"] == "Completed"
    lengths = [json.loads(line)["length"] for line in result["output"].splitlines()]
    assert lengths == [len(r["text"]) for r in RECORDS]


def test_cli_transform_with_a_progress_bar_and_its_failure(session, tmp_path):
    from tests.e2e.transform_models import create_model

    s3, sagemaker = session.s3_client, session.sagemaker_client
    model = create_model(s3, sagemaker, tmp_path, "cli-transform")
    _, corpus, rigged = _inputs(tmp_path)
    env = aws_env(str(session.endpoint_url))
    command = [sys.executable, "-m", "localmaker.cli", "transform", "--model-name", model, "--endpoint-url",
               str(session.endpoint_url), "--strategy", "SingleRecord", "--job-name"]
    done = subprocess.run([*command, "cli-corpus", "--input", corpus, "--output", str(tmp_path / "answers")],
                          capture_output=True, text=True, timeout=300, env=env)
    assert done.returncode == 0, done.stderr[-3000:]
    assert "7/7 [" in done.stderr and "record" in done.stderr, done.stderr  # tqdm's bar over the 7 records
    assert "transform job cli-corpus: Completed" in done.stdout
    lines = (tmp_path / "answers" / "corpus.jsonl.out").read_text().splitlines()
    assert [json.loads(line)["length"] for line in lines] == [len(r["text"]) for r in RECORDS]

    failed = subprocess.run([*command, "cli-rigged", "--input", rigged, "--output", str(tmp_path / "rigged")],
                            capture_output=True, text=True, timeout=300, env=env)
    assert failed.returncode == 1
    assert "transform job cli-rigged failed: ClientError" in failed.stderr or \
        "transform job cli-rigged failed: AlgorithmError" in failed.stderr, failed.stderr
    assert "record 2 of s3://" in failed.stderr and "rigged.jsonl" in failed.stderr
    assert not (tmp_path / "rigged").exists(), "a failed job's output was downloaded"


def test_the_readme_batch_transform_example_runs(localmaker_home, tmp_path):
    """The README's example, verbatim, as its own process: the corpus becomes one 384-wide vector per line."""
    readme = (Path(__file__).parents[2] / "README.md").read_text()
    section = readme.split("### Batch transform", 1)[1]
    example = section.split("```python\n", 1)[1].split("```", 1)[0]
    env = {**os.environ, "HF_HUB_OFFLINE": "1"}
    env = {k: v for k, v in env.items() if k != "AWS_ENDPOINT_URL"}
    done = subprocess.run([sys.executable, "-c", example], capture_output=True, text=True, timeout=300, env=env,
                          cwd=tmp_path)
    assert done.returncode == 0, done.stderr[-3000:]
    assert done.stdout.split() == ["3", "384"]
    assert "3/3 [" in done.stderr  # the progress bar over records
