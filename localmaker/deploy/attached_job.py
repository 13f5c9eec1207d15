"""What ``Estimator.attach(job_name)`` reads back from DescribeTrainingJob, as SDK v2's
``_prepare_init_params_from_job_description`` does: the script, its code, role, instance type, output path,
hyperparameters (without the SDK's own ``sagemaker_*`` keys) and the base job name.
"""

from __future__ import annotations

import shutil
import tempfile
import weakref
from pathlib import Path
from typing import Any

from botocore.exceptions import ClientError

from localmaker.deploy.session import Session
from localmaker.deploy.training_job import BUILTIN_SCRIPTS
from localmaker.deploy.validation import base_from_name
from localmaker.errors import ConfigurationError
from localmaker.model.safe_tar import unpack
from localmaker.spec.hyperparameters import decode_hyperparameter
from localmaker.spec.s3_urls import parse_s3_url


def describe_job(session: Session, job_name: str) -> dict[str, Any]:
    try:
        return dict(session.sagemaker_client.describe_training_job(TrainingJobName=job_name))
    except ClientError as exc:
        if str(exc.response.get("Error", {}).get("Code")) != "ValidationException":
            raise
        where = ("this session's control plane" if session.is_local else f"SageMaker in {session.region_name}")
        raise ConfigurationError(
            f"training job {job_name!r} does not exist in {where}. A job that `localmaker train` ran without "
            "--endpoint-url lived in a control plane that ended with the command: deploy the <job>-model.tar.gz "
            "it downloaded with Model(model_data=...), or train against `localmaker up` and attach with "
            "Session(endpoint_url=...)") from None


def init_arguments(description: dict[str, Any], session: Session) -> dict[str, Any]:
    """Estimator(...) keyword arguments that reproduce the job ``description``; a user's script's code is
    downloaded from its ``sourcedir.tar.gz`` into a folder removed with the estimator."""
    hyperparameters = {str(k): decode_hyperparameter(v) for k, v in description.get("HyperParameters", {}).items()}
    entry_point = str(hyperparameters.get("sagemaker_program") or "")
    if not entry_point:
        raise ConfigurationError(f"training job {description['TrainingJobName']!r} was not started by a SageMaker "
                                 "SDK Estimator (it has no sagemaker_program hyperparameter): read its "
                                 "ModelArtifacts with describe_training_job and deploy them with Model(...)")
    source_url = hyperparameters.get("sagemaker_submit_directory")
    source_dir = None
    if entry_point not in BUILTIN_SCRIPTS and isinstance(source_url, str) and source_url.startswith("s3://"):
        source_dir = _download_source(session, source_url)
    return {
        "entry_point": entry_point,
        "source_dir": source_dir,
        "role": description["RoleArn"],
        "instance_type": description["ResourceConfig"]["InstanceType"],
        "instance_count": int(description["ResourceConfig"].get("InstanceCount", 1)),
        "output_path": description.get("OutputDataConfig", {}).get("S3OutputPath"),
        "hyperparameters": {k: v for k, v in hyperparameters.items() if not k.startswith("sagemaker_")},
        "env": dict(description.get("Environment") or {}),
        "max_run": int(description.get("StoppingCondition", {}).get("MaxRuntimeInSeconds", 24 * 3600)),
        "base_job_name": base_from_name(str(description["TrainingJobName"])),
    }


def remove_with(owner: object, folder: Path | None) -> None:
    """Delete ``folder`` once ``owner`` is collected, or when the interpreter exits."""
    if folder is not None:
        weakref.finalize(owner, shutil.rmtree, folder.parent, True)


def _download_source(session: Session, source_url: str) -> Path:
    bucket, key = parse_s3_url(source_url)
    folder = Path(tempfile.mkdtemp(prefix="localmaker-attached-source-"))
    try:
        archive = folder / "sourcedir.tar.gz"
        session.s3_client.download_file(bucket, key, str(archive))
        return unpack(archive, folder / "source")
    except BaseException:
        shutil.rmtree(folder, ignore_errors=True)
        raise
