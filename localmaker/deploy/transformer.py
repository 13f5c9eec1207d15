"""Model.transformer() and Transformer: batch transform jobs, the SageMaker SDK's flow against localmaker.

``Model.transformer(instance_count, instance_type, ...)`` creates the SageMaker model (the artifact
staged as ``deploy()`` stages it) and returns a ``Transformer`` whose ``transform(data, ...)`` calls
CreateTransformJob with the SDK v2 argument names, and whose ``wait()`` waits for the job's end, with an
optional progress bar over records, raising ``TransformError`` with the FailureReason if it failed.
"""

from __future__ import annotations

import json
import time
import urllib.request
from pathlib import Path
from typing import TYPE_CHECKING, Any

from localmaker.deploy.model_data import stage
from localmaker.deploy.session import Session
from localmaker.deploy.validation import check_instance_count, check_resource_name
from localmaker.errors import LocalmakerError
from localmaker.spec.instance_types import lookup
from localmaker.spec.names import DEFAULT_PROGRAM

if TYPE_CHECKING:
    from localmaker.deploy.model import Model

TERMINAL = ("Completed", "Failed", "Stopped")


class TransformError(LocalmakerError):
    """A transform job that ended Failed; the message is its FailureReason."""


def transformer_for(model: Model, instance_count: int, instance_type: str, **kwargs: Any) -> Transformer:
    """Create ``model`` as a SageMaker model (CreateModel) and a Transformer for it."""
    from localmaker.deploy.model import REPACKED_CODE_DIR

    itype = lookup(instance_type)
    session = model.sagemaker_session
    name = model.name or model._unique_name()
    artifact = stage(model._data, session, key_prefix=name, entry_point=model.entry_point,
                     source_dir=model.source_dir, corpus=model.corpus)
    environment = {"SAGEMAKER_PROGRAM": Path(model.entry_point or DEFAULT_PROGRAM).name,
                   "SAGEMAKER_SUBMIT_DIRECTORY": REPACKED_CODE_DIR, "SAGEMAKER_CONTAINER_LOG_LEVEL": "20",
                   "SAGEMAKER_REGION": session.region_name, **model.env}
    session.sagemaker_client.create_model(ModelName=name, ExecutionRoleArn=model.role, PrimaryContainer={
        "Image": model._image(itype), "ModelDataUrl": artifact, "Environment": environment})
    model.name = name
    return Transformer(name, instance_count, instance_type, sagemaker_session=session, **kwargs)


class Transformer:
    """SDK v2's Transformer, for a model that exists (``model_name``); the same argument names."""

    def __init__(self, model_name: str, instance_count: int, instance_type: str, strategy: str | None = None,
                 assemble_with: str | None = None, output_path: str | None = None, accept: str | None = None,
                 max_concurrent_transforms: int | None = None, max_payload: int | None = None,
                 env: dict[str, str] | None = None, base_transform_job_name: str | None = None,
                 sagemaker_session: Session | None = None) -> None:
        self.model_name = model_name
        self.instance_count = check_instance_count(instance_count)
        self.instance_type = lookup(instance_type).name
        self.strategy, self.assemble_with, self.accept = strategy, assemble_with, accept
        self.max_concurrent_transforms, self.max_payload = max_concurrent_transforms, max_payload
        self.env = dict(env or {})
        self.base_transform_job_name = base_transform_job_name or model_name
        self.sagemaker_session = sagemaker_session or Session()
        self.output_path = output_path
        self.latest_transform_job: str | None = None

    def transform(self, data: str, data_type: str = "S3Prefix", content_type: str | None = None,
                  compression_type: str | None = None, split_type: str | None = None, job_name: str | None = None,
                  input_filter: str | None = None, output_filter: str | None = None, join_source: str | None = None,
                  wait: bool = True, progress: bool = False) -> None:
        """CreateTransformJob over ``data`` (an s3:// prefix, or manifest with ``data_type="ManifestFile"``)."""
        session = self.sagemaker_session
        stamped = f"{self.base_transform_job_name}-{time.strftime('%Y%m%d-%H%M%S')}"[:63].strip("-")
        name = check_resource_name(job_name or stamped, "job_name")
        output_path = self.output_path or f"s3://{session.default_bucket()}/{name}"
        transform_input: dict[str, Any] = {"DataSource": {"S3DataSource": {"S3DataType": data_type, "S3Uri": data}}}
        for key, value in (("ContentType", content_type), ("CompressionType", compression_type),
                           ("SplitType", split_type)):
            if value is not None:
                transform_input[key] = value
        output: dict[str, Any] = {"S3OutputPath": output_path}
        for key, value in (("Accept", self.accept), ("AssembleWith", self.assemble_with)):
            if value is not None:
                output[key] = value
        request: dict[str, Any] = {
            "TransformJobName": name, "ModelName": self.model_name, "TransformInput": transform_input,
            "TransformOutput": output,
            "TransformResources": {"InstanceType": self.instance_type, "InstanceCount": self.instance_count}}
        optional: dict[str, Any] = {"BatchStrategy": self.strategy, "MaxPayloadInMB": self.max_payload,
                                    "MaxConcurrentTransforms": self.max_concurrent_transforms,
                                    "Environment": self.env or None}
        request.update({key: value for key, value in optional.items() if value is not None})
        processing = {k: v for k, v in (("InputFilter", input_filter), ("OutputFilter", output_filter),
                                        ("JoinSource", join_source)) if v is not None}
        if processing:
            request["DataProcessing"] = processing
        session.sagemaker_client.create_transform_job(**request)
        self.output_path = output_path
        self.latest_transform_job = name
        if wait:
            self.wait(progress=progress)

    def describe(self) -> dict[str, Any]:
        return dict(self.sagemaker_session.sagemaker_client.describe_transform_job(
            TransformJobName=self._job()))

    def progress(self) -> dict[str, int]:
        """Records and files done so far, from localmaker's own route (the SageMaker API has no such field)."""
        url = self.sagemaker_session.endpoint_url
        if url is None:
            return {}
        with urllib.request.urlopen(f"{url}/_localmaker/transform-jobs/{self._job()}", timeout=10) as answer:
            return dict(json.load(answer)["Progress"])

    def wait(self, progress: bool = False, poll_s: float = 0.5) -> dict[str, Any]:
        """Wait for the job's end; TransformError with its FailureReason if it failed. ``progress`` shows a
        tqdm bar over records (on stderr)."""
        bar = None
        try:
            while True:
                described = self.describe()
                if progress and self.sagemaker_session.endpoint_url is not None:
                    bar = _advance(bar, self.progress(), self._job())
                if described["TransformJobStatus"] in TERMINAL:
                    break
                time.sleep(poll_s)
        finally:
            if bar is not None:
                bar.close()
        if described["TransformJobStatus"] == "Failed":
            raise TransformError(f"transform job {self._job()} failed: {described.get('FailureReason', '')}")
        return described

    def stop_transform_job(self) -> None:
        self.sagemaker_session.sagemaker_client.stop_transform_job(TransformJobName=self._job())

    def _job(self) -> str:
        if self.latest_transform_job is None:
            raise LocalmakerError("no transform job yet: call transform() first")
        return self.latest_transform_job


def _advance(bar: Any, done: dict[str, int], name: str) -> Any:
    from tqdm import tqdm

    total = done.get("RecordsTotal", 0)
    if bar is None:
        if not total:
            return None  # still downloading: the total is not known yet
        bar = tqdm(total=total, desc=name, unit="record")
    if bar.total != total:
        bar.total = total
        bar.refresh()
    advanced = done.get("RecordsDone", 0) - bar.n
    if advanced:
        bar.update(advanced)
    return bar
