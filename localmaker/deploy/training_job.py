"""The client side of a training job: package the code, start the job, follow it to the end.

Following a job prints its log as it runs and shows the script's progress (which the control plane takes
out of the log and reports on its job route) as a progress bar, as ``Estimator.fit(wait=True, logs=True)``
shows CloudWatch logs in the SageMaker SDK.
"""

from __future__ import annotations

import json
import shutil
import tempfile
import time
import urllib.request
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from tqdm import tqdm

from localmaker.deploy.session import Session
from localmaker.errors import ConfigurationError, TrainingError
from localmaker.logging_setup import progress_bar
from localmaker.model.artifact import pack_directory
from localmaker.spec.hyperparameters import encode_hyperparameters
from localmaker.spec.training_progress import PREFIX as PROGRESS_PREFIX
from localmaker.training import SOURCE_DIR as TRAINING_SOURCE_DIR

# The entry scripts localmaker ships; each runs with every sibling module of its folder beside it.
BUILTIN_SCRIPTS = frozenset({"train_lora.py"})
TERMINAL = {"Completed", "Failed", "Stopped"}


def channels_from(inputs: str | Mapping[str, str] | None) -> dict[str, str]:
    """``"s3://..."`` means the ``training`` channel, as in the SDK; a dict names each channel."""
    if inputs is None:
        return {}
    channels = {"training": inputs} if isinstance(inputs, str) else dict(inputs)
    for name, uri in channels.items():
        if not isinstance(uri, str) or not uri.startswith(("s3://", "file://")):
            raise ConfigurationError(f"channel {name!r}: {uri!r} must be an s3://bucket/prefix or file:///path URI")
    return channels


def upload_source(session: Session, job_name: str, entry_point: str, source_dir: str | Path | None) -> str:
    """Pack the training code as ``sourcedir.tar.gz`` beside the job's output, as the SDK does."""
    with tempfile.TemporaryDirectory(prefix="localmaker-source-") as scratch:
        folder = Path(scratch) / "source"
        if source_dir is not None:
            if not (Path(source_dir) / entry_point).is_file():
                raise ConfigurationError(f"entry_point {entry_point!r} is not in source_dir {source_dir}")
            shutil.copytree(source_dir, folder, ignore=shutil.ignore_patterns("__pycache__", ".git"))
        elif entry_point in BUILTIN_SCRIPTS:
            folder.mkdir()
            # The script imports its siblings as top-level modules, so all of them travel with it.
            for module in sorted(TRAINING_SOURCE_DIR.glob("*.py")):
                if module.name != "__init__.py":
                    shutil.copy2(module, folder / module.name)
        else:
            raise ConfigurationError(f"entry_point {entry_point!r} needs source_dir, the folder that holds it "
                                     f"(built-in scripts: {', '.join(BUILTIN_SCRIPTS)})")
        archive = pack_directory(folder, Path(scratch) / "sourcedir.tar.gz")
        return session.upload_file(archive, f"{job_name}/source/sourcedir.tar.gz")


def follow(session: Session, job_name: str, logs: bool = True, poll_s: float = 0.5) -> dict[str, Any]:
    """Wait for the job to end, streaming its log and progress; raise TrainingError unless Completed."""
    offset, pending = 0, b""
    bar: tqdm[Any] | None = None
    while True:
        description = session.sagemaker_client.describe_training_job(TrainingJobName=job_name)
        status = description["TrainingJobStatus"]
        chunk, offset = _log_chunk(session, job_name, offset)
        lines = (pending + chunk).split(b"\n")
        pending = lines.pop()
        for raw in lines:
            line = raw.decode("utf-8", "replace")
            if logs and line.strip() and not line.lstrip().startswith(PROGRESS_PREFIX):  # an older log had them
                (bar.write if bar is not None else print)(line)
        step = _progress(session, job_name) if logs else None
        if step is not None:
            if bar is None:
                bar = progress_bar(total=step["Total"], desc=f"training {job_name}", unit="step")
            bar.update(step["Step"] - bar.n)
            bar.set_postfix(loss=f"{step['Loss']:.6f}")
        if status in TERMINAL:
            if bar is not None:
                bar.close()
            if status != "Completed":
                raise TrainingError(job_name, status, description.get("FailureReason", ""))
            return dict(description)
        time.sleep(poll_s)


def _log_chunk(session: Session, job_name: str, offset: int) -> tuple[bytes, int]:
    url = f"{session.require_local('the training log route')}/_localmaker/training-jobs/{job_name}/log?offset={offset}"
    try:
        with urllib.request.urlopen(url, timeout=10) as answer:
            return answer.read(), int(answer.headers.get("X-Log-Next-Offset", offset))
    except OSError:  # a control plane without local logs (or a brief hiccup): statuses still arrive
        return b"", offset


def _progress(session: Session, job_name: str) -> dict[str, Any] | None:
    """The job's last progress line as the control plane noted it (Step, Total, Loss); None before the first."""
    url = f"{session.require_local('the training job route')}/_localmaker/training-jobs/{job_name}"
    try:
        with urllib.request.urlopen(url, timeout=10) as answer:
            progress = json.loads(answer.read()).get("Progress") or {}
    except (OSError, ValueError):  # a brief hiccup: the next poll tries again
        return None
    if not progress.get("Total") or progress.get("Loss") is None:
        return None
    return dict(progress)


def hyperparameters_for_job(hyperparameters: Mapping[str, Any], entry_point: str, source_url: str,
                            region: str, job_name: str) -> dict[str, str]:
    """The SDK JSON-encodes every value and adds the keys that tell the toolkit what to run."""
    return encode_hyperparameters({
        **hyperparameters,
        "sagemaker_program": entry_point,
        "sagemaker_submit_directory": source_url,
        "sagemaker_region": region,
        "sagemaker_job_name": job_name,
        "sagemaker_container_log_level": 20,
    })
