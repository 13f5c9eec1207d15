"""A tiny real model for transform-job tests: a handler script packed, uploaded to moto's S3 and created.

The handler answers each JSON line with the length of its ``text``, the worker's pid (which instance
answered) and when it started and ended (how many ran at once). It sleeps ``SLEEP_S`` per record when the
environment says so (a job slow enough to stop or to kill), and fails on a record holding ``"boom"``; a
CSV row is answered with the sum of its columns.
"""

from __future__ import annotations

import json
import textwrap
import urllib.request
from pathlib import Path
from typing import Any

from localmaker.model.artifact import pack_directory
from tests.e2e.conftest import ROLE

BUCKET = "transform-e2e"
IMAGE = "763104351884.dkr.ecr.us-east-1.amazonaws.com/pytorch-inference:2.3-cpu-py311"

HANDLER = '''
import json, os, time

def model_fn(model_dir):
    return float(os.environ.get("SLEEP_S", "0"))

def transform_fn(sleep_s, body, content_type, accept):
    text = body.decode() if isinstance(body, bytes) else body
    if content_type == "text/csv":  # a CSV row: answer the sum of its numeric columns
        return "\\n".join(str(sum(float(v) for v in line.split(","))) for line in text.splitlines() if line)
    answers = []
    for line in text.split("\\n"):
        if not line.strip():
            continue
        record = json.loads(line)
        if "boom" in line:
            raise ValueError("this record is rigged to fail")
        started = time.time()
        time.sleep(sleep_s)
        answers.append(json.dumps({"length": len(record.get("text", "")), "pid": os.getpid(),
                                   "started": started, "ended": time.time()}))
    return "\\n".join(answers)
'''


def create_model(s3: Any, sagemaker: Any, tmp_path: Path, name: str, environment: dict[str, str] | None = None) -> str:
    """Pack the handler, upload it and CreateModel; the model's name."""
    folder = tmp_path / f"{name}-model"
    (folder / "code").mkdir(parents=True, exist_ok=True)
    (folder / "code" / "inference.py").write_text(textwrap.dedent(HANDLER))
    archive = pack_directory(folder, tmp_path / f"{name}.tar.gz")
    ensure_bucket(s3)
    s3.upload_file(str(archive), BUCKET, f"models/{name}/model.tar.gz")
    sagemaker.create_model(ModelName=name, ExecutionRoleArn=ROLE, PrimaryContainer={
        "Image": IMAGE, "ModelDataUrl": f"s3://{BUCKET}/models/{name}/model.tar.gz",
        "Environment": {"SAGEMAKER_PROGRAM": "inference.py", **(environment or {})}})
    return name


def ensure_bucket(s3: Any) -> None:
    if BUCKET not in [b["Name"] for b in s3.list_buckets().get("Buckets", [])]:
        s3.create_bucket(Bucket=BUCKET)


def put_lines(s3: Any, key: str, records: list[dict[str, Any]]) -> None:
    s3.put_object(Bucket=BUCKET, Key=key, Body="\n".join(json.dumps(r) for r in records).encode())


def read_lines(s3: Any, key: str) -> list[Any]:
    body = s3.get_object(Bucket=BUCKET, Key=key)["Body"].read().decode()
    return [json.loads(line) for line in body.splitlines() if line.strip()]


def job_request(name: str, model: str, prefix: str, output: str, **overrides: Any) -> dict[str, Any]:
    """A CreateTransformJob request over JSON lines; ``overrides`` replace top-level members."""
    request: dict[str, Any] = {
        "TransformJobName": name, "ModelName": model, "BatchStrategy": "MultiRecord",
        "TransformInput": {"DataSource": {"S3DataSource": {"S3DataType": "S3Prefix",
                                                           "S3Uri": f"s3://{BUCKET}/{prefix}"}},
                           "ContentType": "application/jsonlines", "SplitType": "Line"},
        "TransformOutput": {"S3OutputPath": f"s3://{BUCKET}/{output}", "AssembleWith": "Line",
                            "Accept": "application/jsonlines"},
        "TransformResources": {"InstanceType": "ml.m5.large", "InstanceCount": 1},
    }
    request.update(overrides)
    return request


def local_job(url: str, name: str) -> dict[str, Any]:
    """localmaker's own view of a job: progress and instance pids."""
    with urllib.request.urlopen(f"{url}/_localmaker/transform-jobs/{name}", timeout=5) as answer:
        return dict(json.load(answer))


def wait_for(sagemaker: Any, name: str) -> dict[str, Any]:
    """boto3's own waiter (a Failed job is its failure state), then the job's final description."""
    from botocore.exceptions import WaiterError

    try:
        sagemaker.get_waiter("transform_job_completed_or_stopped").wait(
            TransformJobName=name, WaiterConfig={"Delay": 0.5, "MaxAttempts": 240})
    except WaiterError as exc:
        assert "Failed" in str(exc), exc
    return dict(sagemaker.describe_transform_job(TransformJobName=name))
