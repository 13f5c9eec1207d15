"""Archives that hold nothing but a test's own script, and a training job started from one.

A model.tar.gz with only ``code/inference.py``, or a sourcedir.tar.gz with only ``train.py``, loads no
weights, so the endpoint or job made from it starts in seconds. The e2e, control-plane and reliability
tests all build them, so they live here rather than in one folder's conftest.
"""

from __future__ import annotations

import io
import json
import tarfile
import textwrap
from pathlib import Path
from typing import Any

from localmaker.control_plane.training_runtime import TrainingRuntime
from localmaker.control_plane.training_state import TrainingJobRecord, TrainingSpec
from localmaker.model.artifact import pack_handler

# The buckets start_training_job reads the code from and writes the model to; the test creates them.
CODE_BUCKET = "code"
OUTPUT_BUCKET = "output"


def code_only_archive(folder: Path, handler: str) -> Path:
    """A model.tar.gz holding nothing but code/inference.py: no weights to load, so it starts in seconds."""
    folder.mkdir(parents=True, exist_ok=True)
    return pack_handler(textwrap.dedent(handler), folder / "model.tar.gz")


def sourcedir_archive(script: str) -> bytes:
    """A sourcedir.tar.gz, in memory, holding ``script`` as train.py and nothing else."""
    archive = io.BytesIO()
    with tarfile.open(fileobj=archive, mode="w:gz") as tar:
        source = textwrap.dedent(script).encode()
        member = tarfile.TarInfo("train.py")
        member.size = len(source)
        tar.addfile(member, io.BytesIO(source))
    return archive.getvalue()


def start_training_job(runtime: TrainingRuntime, s3: Any, name: str, script: str, *,
                       channels: dict[str, str] | None = None, max_runtime_s: int = 60,
                       environment: dict[str, str] | None = None, code: bytes | None = None) -> TrainingJobRecord:
    """Starts job ``name`` running ``script`` straight on ``runtime``, its code uploaded to ``s3`` first.

    ``code`` uploads those bytes in place of the script's archive (an archive too big, or not one at all).
    """
    key = f"{name}/sourcedir.tar.gz"
    s3.put_object(Bucket=CODE_BUCKET, Key=key, Body=code if code is not None else sourcedir_archive(script))
    # JSON-encoded, as the SDK sends every hyperparameter.
    hyperparameters = {"sagemaker_program": json.dumps("train.py"),
                       "sagemaker_submit_directory": json.dumps(f"s3://{CODE_BUCKET}/{key}")}
    return runtime.create(TrainingSpec(
        name=name, hyperparameters=hyperparameters, channels=channels or {},
        output_path=f"s3://{OUTPUT_BUCKET}/jobs", instance_type="ml.m5.large", max_runtime_s=max_runtime_s,
        environment=environment or {}))
