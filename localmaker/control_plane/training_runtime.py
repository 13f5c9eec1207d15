"""The local side of training jobs: run the entry script under SageMaker's training contract.

moto records the job; this module makes it happen. The job is InProgress while the script runs, then
Completed (SM_MODEL_DIR packed to ``<output_path>/<job>/output/model.tar.gz``) or Failed, with the
FailureReason the script wrote to ``$SM_OUTPUT_DIR/failure`` (the SageMaker training toolkit's
convention) or the tail of its log. A failed job uploads no model.

What a job is lives in ``training_state.py``; how its script runs as a process, in ``training_process.py``.
This module holds the registry and the job's life around the script: the /opt/ml layout and its inputs,
the training environment, the upload of the model, and the final status. The layout lives under the job's
folder; where Linux namespaces allow it, the script sees it at /opt/ml itself (``container_paths.py``).
"""

from __future__ import annotations

import json
import logging
import os
import sys
import threading
import time
import uuid
from collections.abc import Callable
from pathlib import Path
from typing import Any

import localmaker
from localmaker.control_plane.disk_budget import DiskBudget
from localmaker.control_plane.log_rotation import log_tail
from localmaker.control_plane.log_shipper import LogShipper
from localmaker.control_plane.placement import local_gpu_count
from localmaker.control_plane.process_groups import kill_group
from localmaker.control_plane.resource_names import UnsafePath, path_under
from localmaker.control_plane.training_channels import ChannelError, fetch_channel, fetch_code
from localmaker.control_plane.training_process import copy_output, start_script, wait_for_exit
from localmaker.control_plane.training_state import HOST, TrainingJobRecord, TrainingSpec, TrainingStatus
from localmaker.local_endpoint.container_paths import CODE_DIR, INPUT_DIR, MODEL_DIR, OUTPUT_DIR, ContainerPaths
from localmaker.local_endpoint.launch import region_environment
from localmaker.model.artifact import pack_directory
from localmaker.spec.hyperparameters import decode_as_text, decode_hyperparameter
from localmaker.spec.instance_types import lookup
from localmaker.spec.names import TRAINING_LOG_GROUP
from localmaker.spec.s3_urls import parse_s3_url

logger = logging.getLogger(__name__)


class TrainingRuntime:
    """Registry of the training jobs this control plane runs; every process it starts, it also reaps."""

    def __init__(self, work_root: Path, s3_client: Callable[[], Any], logs: LogShipper | None = None,
                 region: str | None = None, container_paths: ContainerPaths | None = None,
                 disk: DiskBudget | None = None) -> None:
        """Jobs inherit ``region``, the control plane's (else that of the S3 client it hands us), and see
        /opt/ml as ``container_paths`` says (else as the environment says now, at start-up). With ``disk``,
        a job's inputs and code are downloaded only where the control plane's disk cap has room for them."""
        self._disk = disk
        self._work_root = work_root / "training"
        self._region = region
        self._container_paths = container_paths or ContainerPaths.from_env()
        self._logs = logs
        self._s3 = s3_client
        self._jobs: dict[str, TrainingJobRecord] = {}
        self._lock = threading.Lock()

    def get(self, name: str) -> TrainingJobRecord | None:
        with self._lock:
            return self._jobs.get(name)

    def names(self) -> list[str]:
        with self._lock:
            return list(self._jobs)

    def create(self, spec: TrainingSpec) -> TrainingJobRecord:
        job = TrainingJobRecord(spec=spec, work_dir=path_under(self._work_root, f"{spec.name}-{uuid.uuid4().hex[:8]}"))
        with self._lock:
            if spec.name in self._jobs:
                raise ValueError(f"Training job {spec.name!r} already exists.")
            self._jobs[spec.name] = job
        job.work_dir.mkdir(parents=True)
        threading.Thread(target=self._run, args=(job,), name=f"training-{spec.name}", daemon=True).start()
        return job

    def stop(self, name: str) -> bool:
        """Stop a job; one still downloading its inputs never starts its script (as on SageMaker)."""
        job = self.get(name)
        if job is None:
            return False
        with job.lock:
            if job.status is not TrainingStatus.IN_PROGRESS:
                return False
            job.status = TrainingStatus.STOPPING
            kill_group(job.process)
        return True

    def shutdown(self) -> None:
        for name in self.names():
            self.stop(name)

    # -- the job's life ------------------------------------------------------------------------

    def _run(self, job: TrainingJobRecord) -> None:
        try:
            layout = self._prepare(job)
            code = self._train(job, layout)
            if code is None or job.status is TrainingStatus.STOPPING:
                self._finish(job, TrainingStatus.STOPPED, "Stopped", "")
            elif code != 0:
                self._finish(job, TrainingStatus.FAILED, "Failed", self._failure_reason(job, layout, code))
            else:
                job.secondary_status = "Uploading"
                self._upload(job, layout)
                self._finish(job, TrainingStatus.COMPLETED, "Completed", "")
        except ChannelError as exc:
            self._finish(job, TrainingStatus.FAILED, "Failed", f"ClientError: {exc}")
        except Exception as exc:  # noqa: BLE001 - every failure becomes the job's FailureReason
            logger.exception("training job %s failed", job.spec.name)
            self._finish(job, TrainingStatus.FAILED, "Failed", f"{type(exc).__name__}: {exc}")

    def _prepare(self, job: TrainingJobRecord) -> dict[str, Path]:
        """The /opt/ml layout of a SageMaker training container, under the job's folder."""
        job.secondary_status = "Downloading"
        root = job.work_dir
        layout = {"code": root / "code", "model": root / "model", "output": root / "output",
                  "output_data": root / "output" / "data", "input": root / "input" / "data"}
        for path in (layout["model"], layout["output_data"], layout["input"]):
            path.mkdir(parents=True, exist_ok=True)
        s3 = self._s3()
        for name, uri in job.spec.channels.items():
            layout[f"channel:{name}"] = fetch_channel(name, uri, _inside(layout["input"], name, "channel"), s3,
                                                      self._disk)
        submit = job.spec.hyperparameter("sagemaker_submit_directory")
        program = job.spec.hyperparameter("sagemaker_program")
        if not submit or not program:
            raise ChannelError("the job names no code: set the sagemaker_program and sagemaker_submit_directory "
                               "hyperparameters (Estimator.fit does)")
        fetch_code(submit, layout["code"], s3, self._disk)
        if not _inside(layout["code"], program, "entry point").is_file():
            raise ChannelError(f"entry point {program!r} is not in the uploaded source directory")
        return layout

    def _environment(self, job: TrainingJobRecord, layout: dict[str, Path], in_container: bool) -> dict[str, str]:
        """The SM_* variables of the training toolkit, with the paths the script sees."""
        seen = _container_layout() if in_container else {name: str(path) for name, path in layout.items()}
        region = self._region or self._s3().meta.region_name
        instance_type = lookup(job.spec.instance_type)
        gpus = min(instance_type.gpu_count, local_gpu_count()) if instance_type.has_gpu else 0
        user_hps = {k: decode_hyperparameter(v) for k, v in job.spec.hyperparameters.items()
                    if not k.startswith("sagemaker_")}
        channels = sorted(job.spec.channels)
        env = {
            **os.environ,
            **region_environment(region, job.spec.environment),
            **job.spec.environment,
            "SM_MODEL_DIR": seen["model"],
            "SM_OUTPUT_DIR": seen["output"],
            "SM_OUTPUT_DATA_DIR": seen["output_data"],
            "SM_INPUT_DIR": os.path.dirname(seen["input"]),
            "SM_CHANNELS": json.dumps(channels),
            "SM_HPS": json.dumps(user_hps),
            "SM_HOSTS": json.dumps([HOST]),
            "SM_CURRENT_HOST": HOST,
            "SM_NUM_GPUS": str(gpus),
            "SM_NUM_CPUS": str(os.cpu_count() or 1),
            "SM_MODULE_DIR": job.spec.hyperparameter("sagemaker_submit_directory") or "",
            "SM_USER_ENTRY_POINT": job.spec.hyperparameter("sagemaker_program") or "",
            "SM_TRAINING_ENV": json.dumps({"job_name": job.spec.name, "current_host": HOST,
                                           "hyperparameters": user_hps}),
            "PYTHONUNBUFFERED": "1",
        }
        for name in channels:
            env[f"SM_CHANNEL_{name.upper()}"] = f"{seen['input']}/{name}"
        if gpus == 0:
            env["CUDA_VISIBLE_DEVICES"] = ""  # a CPU instance, or a GPU type on a machine without one
        # The script may use localmaker's named sources when it is importable, as it is here.
        package_root = str(Path(localmaker.__file__).resolve().parent.parent)
        env["PYTHONPATH"] = os.pathsep.join(filter(None, [package_root, env.get("PYTHONPATH", "")]))
        return env

    def _train(self, job: TrainingJobRecord, layout: dict[str, Path]) -> int | None:
        """The script's exit code, or None when the job was stopped before the script could start."""
        program = job.spec.hyperparameter("sagemaker_program") or ""
        arguments = [a for k, v in job.spec.hyperparameters.items() if not k.startswith("sagemaker_")
                     for a in (f"--{k}", decode_as_text(v))]
        command = [sys.executable, program, *arguments]
        in_container = self._container_paths.active()
        environment = self._environment(job, layout, in_container)
        launched = command
        if in_container:  # the script runs in /opt/ml/code, as the training toolkit runs it
            binds = {CODE_DIR: layout["code"], MODEL_DIR: layout["model"], OUTPUT_DIR: layout["output"],
                     INPUT_DIR: layout["input"].parent}
            launched = ContainerPaths.command(command, binds, cwd=CODE_DIR)
        with open(job.log_file, "ab") as log:
            with job.lock:
                if job.status is not TrainingStatus.IN_PROGRESS:
                    return None
                logger.info("training job %s: %s", job.spec.name, " ".join(command))
                process = job.process = start_script(launched, layout["code"], environment)
            deadline = time.monotonic() + job.spec.max_runtime_s
            job.secondary_status = "Training"
            if self._logs is not None:
                self._logs.follow(TRAINING_LOG_GROUP, job.log_stream, job.log_file)
            copy_output(job, process, log, deadline)
        return wait_for_exit(job, process, deadline)

    @staticmethod
    def _failure_reason(job: TrainingJobRecord, layout: dict[str, Path], code: int) -> str:
        if job.failure_reason:
            return job.failure_reason
        failure = layout["output"] / "failure"
        if failure.is_file() and failure.read_text().strip():
            return f"AlgorithmError: {failure.read_text().strip()}"
        tail = log_tail(job.log_file).strip().splitlines()[-10:]
        return f"AlgorithmError: ExitCode {code}; last log lines:\n" + "\n".join(tail)

    def _upload(self, job: TrainingJobRecord, layout: dict[str, Path]) -> None:
        s3 = self._s3()
        bucket, key = parse_s3_url(job.spec.model_artifact_url)
        archive = pack_directory(layout["model"], job.work_dir / "model.tar.gz")
        s3.upload_file(str(archive), bucket, key)
        outputs = pack_directory(layout["output_data"], job.work_dir / "output.tar.gz")
        s3.upload_file(str(outputs), bucket, key.rsplit("/", 1)[0] + "/output.tar.gz")

    def _finish(self, job: TrainingJobRecord, status: TrainingStatus, secondary: str, reason: str) -> None:
        if self._logs is not None:
            self._logs.release(TRAINING_LOG_GROUP, job.log_stream)
        with job.lock:
            if status is TrainingStatus.FAILED and job.status is TrainingStatus.STOPPING:
                # Whatever failed was cut short by the user's stop; SageMaker reports such a job Stopped.
                status, secondary, reason = TrainingStatus.STOPPED, "Stopped", ""
            job.failure_reason = reason[:1024] if status is TrainingStatus.FAILED else ""
            job.secondary_status = secondary
            job.ended_at = time.time()
            job.status = status
        logger.info("training job %s: %s %s", job.spec.name, status.value, job.failure_reason)


def _inside(folder: Path, name: str, what: str) -> Path:
    """``folder / name``; a name that would lead out of it fails the job, naming what it was."""
    try:
        return path_under(folder, name)
    except UnsafePath as exc:
        raise ChannelError(f"{what} {name!r} must name a path inside {folder.name}/: {exc}") from None


def _container_layout() -> dict[str, str]:
    """``_prepare``'s layout as a script in its own namespace sees it: SageMaker's own /opt/ml paths."""
    return {"code": CODE_DIR, "model": MODEL_DIR, "output": OUTPUT_DIR, "output_data": f"{OUTPUT_DIR}/data",
            "input": f"{INPUT_DIR}/data"}
