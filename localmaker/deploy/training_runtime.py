"""The local side of training jobs: run the entry script under SageMaker's training contract.

moto records the job; this module makes it happen. The job is InProgress while the script runs, then
Completed (SM_MODEL_DIR packed to ``<output_path>/<job>/output/model.tar.gz``) or Failed, with the
FailureReason the script wrote to ``$SM_OUTPUT_DIR/failure`` (the SageMaker training toolkit's
convention) or the tail of its log. A failed job uploads no model.
"""

from __future__ import annotations

import contextlib
import ctypes
import enum
import json
import logging
import os
import re
import select
import signal
import subprocess
import sys
import threading
import time
import uuid
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import localmaker
from localmaker.deploy.instance_types import lookup
from localmaker.deploy.log_shipper import TRAINING_GROUP, LogShipper
from localmaker.deploy.placement import local_gpu_count
from localmaker.deploy.s3_urls import parse_s3_url
from localmaker.deploy.training_channels import ChannelError, fetch_channel, fetch_code
from localmaker.model.artifact import pack_directory

logger = logging.getLogger(__name__)

PROGRESS = re.compile(r"\[localmaker:progress\] step=(?P<step>\d+) total=(?P<total>\d+) loss=(?P<loss>[-+0-9.eE]+|nan)")
SDK_HYPERPARAMETERS = ("sagemaker_program", "sagemaker_submit_directory")
HOST = "algo-1"
PARTIAL_LINE_LIMIT = 64 * 1024  # output with no line break for longer than this is not a progress line


class TrainingStatus(str, enum.Enum):
    IN_PROGRESS = "InProgress"
    COMPLETED = "Completed"
    FAILED = "Failed"
    STOPPING = "Stopping"
    STOPPED = "Stopped"


@dataclass(frozen=True)
class TrainingSpec:
    """What CreateTrainingJob asked for, read from the request itself."""

    name: str
    hyperparameters: dict[str, str]
    channels: dict[str, str]
    output_path: str
    instance_type: str
    max_runtime_s: int
    environment: dict[str, str] = field(default_factory=dict)

    @classmethod
    def from_request(cls, request: dict[str, Any]) -> TrainingSpec:
        channels = {c["ChannelName"]: c["DataSource"]["S3DataSource"]["S3Uri"]
                    for c in request.get("InputDataConfig") or []}
        return cls(
            name=request["TrainingJobName"],
            hyperparameters=dict(request.get("HyperParameters") or {}),
            channels=channels,
            output_path=request["OutputDataConfig"]["S3OutputPath"],
            instance_type=request["ResourceConfig"]["InstanceType"],
            max_runtime_s=int((request.get("StoppingCondition") or {}).get("MaxRuntimeInSeconds", 86400)),
            environment=dict(request.get("Environment") or {}),
        )

    @property
    def model_artifact_url(self) -> str:
        return f"{self.output_path.rstrip('/')}/{self.name}/output/model.tar.gz"

    def hyperparameter(self, key: str) -> str | None:
        """The SDK JSON-encodes every value; unquote strings the way the training toolkit does."""
        raw = self.hyperparameters.get(key)
        if raw is None:
            return None
        with contextlib.suppress(ValueError):
            value = json.loads(raw)
            return value if isinstance(value, str) else raw
        return raw


@dataclass
class Progress:
    step: int = 0
    total: int = 0
    loss: float | None = None


@dataclass
class LocalTrainingJob:
    spec: TrainingSpec
    work_dir: Path
    status: TrainingStatus = TrainingStatus.IN_PROGRESS
    secondary_status: str = "Starting"
    failure_reason: str = ""
    progress: Progress = field(default_factory=Progress)
    started_at: float = field(default_factory=time.time)
    ended_at: float | None = None
    process: subprocess.Popen[bytes] | None = None
    # Guards status and the start of the process, so a stop either prevents the start or sees the process.
    lock: threading.Lock = field(default_factory=threading.Lock, repr=False, compare=False)

    @property
    def log_file(self) -> Path:
        return self.work_dir / "training.log"

    @property
    def log_stream(self) -> str:
        """SageMaker's stream name: ``<job>/algo-1-<start time>``."""
        return f"{self.spec.name}/{HOST}-{int(self.started_at)}"

    def describe(self) -> dict[str, Any]:
        return {
            "TrainingJobName": self.spec.name,
            "TrainingJobStatus": self.status.value,
            "SecondaryStatus": self.secondary_status,
            "FailureReason": self.failure_reason,
            "Progress": {"Step": self.progress.step, "Total": self.progress.total, "Loss": self.progress.loss},
            "LogFile": str(self.log_file),
        }


class TrainingRuntime:
    """Registry of the training jobs this control plane runs; every process it starts, it also reaps."""

    def __init__(self, work_root: Path, s3_client: Callable[[], Any], logs: LogShipper | None = None) -> None:
        self._work_root = work_root / "training"
        self._logs = logs
        self._s3 = s3_client
        self._jobs: dict[str, LocalTrainingJob] = {}
        self._lock = threading.Lock()

    def get(self, name: str) -> LocalTrainingJob | None:
        with self._lock:
            return self._jobs.get(name)

    def names(self) -> list[str]:
        with self._lock:
            return list(self._jobs)

    def create(self, spec: TrainingSpec) -> LocalTrainingJob:
        job = LocalTrainingJob(spec=spec, work_dir=self._work_root / f"{spec.name}-{uuid.uuid4().hex[:8]}")
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
            _kill_group(job.process)
        return True

    def shutdown(self) -> None:
        for name in self.names():
            self.stop(name)

    # -- the job's life ------------------------------------------------------------------------

    def _run(self, job: LocalTrainingJob) -> None:
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

    def _prepare(self, job: LocalTrainingJob) -> dict[str, Path]:
        """The /opt/ml layout of a SageMaker training container, under the job's folder."""
        job.secondary_status = "Downloading"
        root = job.work_dir
        layout = {"code": root / "code", "model": root / "model", "output": root / "output",
                  "output_data": root / "output" / "data", "input": root / "input" / "data"}
        for path in (layout["model"], layout["output_data"], layout["input"]):
            path.mkdir(parents=True, exist_ok=True)
        s3 = self._s3()
        for name, uri in job.spec.channels.items():
            layout[f"channel:{name}"] = fetch_channel(name, uri, layout["input"] / name, s3)
        submit = job.spec.hyperparameter("sagemaker_submit_directory")
        program = job.spec.hyperparameter("sagemaker_program")
        if not submit or not program:
            raise ChannelError("the job names no code: set the sagemaker_program and sagemaker_submit_directory "
                               "hyperparameters (Estimator.fit does)")
        fetch_code(submit, layout["code"], s3)
        if not (layout["code"] / program).is_file():
            raise ChannelError(f"entry point {program!r} is not in the uploaded source directory")
        return layout

    def _environment(self, job: LocalTrainingJob, layout: dict[str, Path]) -> dict[str, str]:
        instance_type = lookup(job.spec.instance_type)
        gpus = min(instance_type.gpu_count, local_gpu_count()) if instance_type.has_gpu else 0
        user_hps = {k: v for k, v in job.spec.hyperparameters.items() if not k.startswith("sagemaker_")}
        channels = sorted(job.spec.channels)
        env = {
            **os.environ,
            **job.spec.environment,
            "SM_MODEL_DIR": str(layout["model"]),
            "SM_OUTPUT_DIR": str(layout["output"]),
            "SM_OUTPUT_DATA_DIR": str(layout["output_data"]),
            "SM_INPUT_DIR": str(layout["input"].parent),
            "SM_CHANNELS": json.dumps(channels),
            "SM_HPS": json.dumps({k: _decoded(v) for k, v in user_hps.items()}),
            "SM_HOSTS": json.dumps([HOST]),
            "SM_CURRENT_HOST": HOST,
            "SM_NUM_GPUS": str(gpus),
            "SM_NUM_CPUS": str(os.cpu_count() or 1),
            "SM_MODULE_DIR": job.spec.hyperparameter("sagemaker_submit_directory") or "",
            "SM_USER_ENTRY_POINT": job.spec.hyperparameter("sagemaker_program") or "",
            "SM_TRAINING_ENV": json.dumps({"job_name": job.spec.name, "current_host": HOST,
                                           "hyperparameters": {k: _decoded(v) for k, v in user_hps.items()}}),
            "PYTHONUNBUFFERED": "1",
        }
        for name in channels:
            env[f"SM_CHANNEL_{name.upper()}"] = str(layout["input"] / name)
        if gpus == 0:
            env["CUDA_VISIBLE_DEVICES"] = ""  # a CPU instance, or a GPU type on a machine without one
        # The script may use localmaker's named sources when it is importable, as it is here.
        package_root = str(Path(localmaker.__file__).resolve().parent.parent)
        env["PYTHONPATH"] = os.pathsep.join(filter(None, [package_root, env.get("PYTHONPATH", "")]))
        return env

    def _train(self, job: LocalTrainingJob, layout: dict[str, Path]) -> int | None:
        """The script's exit code, or None when the job was stopped before the script could start."""
        program = job.spec.hyperparameter("sagemaker_program") or ""
        arguments = [a for k, v in job.spec.hyperparameters.items() if not k.startswith("sagemaker_")
                     for a in (f"--{k}", _decoded_text(v))]
        command = [sys.executable, program, *arguments]
        environment = self._environment(job, layout)
        with open(job.log_file, "ab") as log:
            with job.lock:
                if job.status is not TrainingStatus.IN_PROGRESS:
                    return None
                logger.info("training job %s: %s", job.spec.name, " ".join(command))
                process = job.process = subprocess.Popen(
                    command, cwd=layout["code"], env=environment, stdin=subprocess.DEVNULL,
                    stdout=subprocess.PIPE, stderr=subprocess.STDOUT, start_new_session=True,
                    preexec_fn=_die_with_parent())
            deadline = time.monotonic() + job.spec.max_runtime_s
            job.secondary_status = "Training"
            if self._logs is not None:
                self._logs.follow(TRAINING_GROUP, job.log_stream, job.log_file)
            try:
                self._copy_output(job, process, log, deadline)
            except BaseException:
                _kill_group(process)  # a log we cannot write must not leave the script running unwatched
                process.wait()
                raise
            finally:
                assert process.stdout is not None
                process.stdout.close()  # our end of the pipe: one per job, kept as long as the job is listed
        try:
            # The script may close its output and go on running; the limit holds for it too.
            code = process.wait(timeout=max(deadline - time.monotonic(), 0))
        except subprocess.TimeoutExpired:
            self._exceeded(job, process)
            code = process.wait()
        _kill_group(process)  # anything the script left running in its group goes too
        return code

    def _copy_output(self, job: LocalTrainingJob, process: subprocess.Popen[bytes], log: Any,
                     deadline: float) -> None:
        """Copy the script's output into its log until the pipe closes; kill it at MaxRuntimeInSeconds.

        poll() with a timeout, not a loop over lines: a script that hangs silently, or only redraws a
        tqdm bar with '\\r', must be stopped on time too. poll() rather than select(), which fails on
        descriptors above 1024 (a busy control plane has that many).
        """
        assert process.stdout is not None
        fd = process.stdout.fileno()
        poller = select.poll()
        poller.register(fd, select.POLLIN)
        exceeded = False
        partial = b""
        while True:
            remaining = deadline - time.monotonic()
            if remaining <= 0 and not exceeded:
                self._exceeded(job, process)
                exceeded = True
            # Once killed, wait for the pipe to close: the process group is gone, so that is prompt.
            # Otherwise wake at least once a minute: poll() refuses timeouts past about 24 days.
            if not poller.poll(None if exceeded else min(remaining, 60) * 1000):
                continue
            chunk = os.read(fd, 65536)
            if not chunk:
                return
            log.write(chunk)
            log.flush()
            *lines, partial = re.split(rb"[\r\n]", partial + chunk)
            for line in lines:
                self._note_progress(job, line)
            partial = partial[-PARTIAL_LINE_LIMIT:]

    @staticmethod
    def _exceeded(job: LocalTrainingJob, process: subprocess.Popen[bytes]) -> None:
        job.failure_reason = f"MaxRuntimeExceeded: the job ran past {job.spec.max_runtime_s}s"
        _kill_group(process)

    @staticmethod
    def _note_progress(job: LocalTrainingJob, line: bytes) -> None:
        match = PROGRESS.search(line.decode("utf-8", "replace"))
        if match:
            job.progress = Progress(int(match["step"]), int(match["total"]), float(match["loss"]))

    @staticmethod
    def _failure_reason(job: LocalTrainingJob, layout: dict[str, Path], code: int) -> str:
        if job.failure_reason:
            return job.failure_reason
        failure = layout["output"] / "failure"
        if failure.is_file() and failure.read_text().strip():
            return f"AlgorithmError: {failure.read_text().strip()}"
        tail = job.log_file.read_text(errors="replace").strip().splitlines()[-10:]
        return f"AlgorithmError: ExitCode {code}; last log lines:\n" + "\n".join(tail)

    def _upload(self, job: LocalTrainingJob, layout: dict[str, Path]) -> None:
        s3 = self._s3()
        bucket, key = parse_s3_url(job.spec.model_artifact_url)
        archive = pack_directory(layout["model"], job.work_dir / "model.tar.gz")
        s3.upload_file(str(archive), bucket, key)
        outputs = pack_directory(layout["output_data"], job.work_dir / "output.tar.gz")
        s3.upload_file(str(outputs), bucket, key.rsplit("/", 1)[0] + "/output.tar.gz")

    def _finish(self, job: LocalTrainingJob, status: TrainingStatus, secondary: str, reason: str) -> None:
        if self._logs is not None:
            self._logs.release(TRAINING_GROUP, job.log_stream)
        with job.lock:
            if status is TrainingStatus.FAILED and job.status is TrainingStatus.STOPPING:
                # Whatever failed was cut short by the user's stop; SageMaker reports such a job Stopped.
                status, secondary, reason = TrainingStatus.STOPPED, "Stopped", ""
            job.failure_reason = reason[:1024] if status is TrainingStatus.FAILED else ""
            job.secondary_status = secondary
            job.ended_at = time.time()
            job.status = status
        logger.info("training job %s: %s %s", job.spec.name, status.value, job.failure_reason)


def _decoded(raw: str) -> Any:
    try:
        return json.loads(raw)
    except ValueError:
        return raw


def _decoded_text(raw: str) -> str:
    value = _decoded(raw)
    return value if isinstance(value, str) else json.dumps(value)


def _die_with_parent() -> Callable[[], None] | None:
    """Linux: the script gets SIGKILL if the control plane dies without cleanup (kill -9).

    The death signal follows the forking *thread*, which here is the job's own thread: it lives until
    the script exits, so the signal fires only when the whole control plane is gone. libc is resolved
    before the fork, so the child only makes one system call before exec.
    """
    if not sys.platform.startswith("linux"):
        return None
    try:
        prctl = ctypes.CDLL("libc.so.6", use_errno=True).prctl
    except OSError:
        return None
    pr_set_pdeathsig = 1

    def arm() -> None:
        prctl(pr_set_pdeathsig, signal.SIGKILL)

    return arm


def _kill_group(process: subprocess.Popen[bytes] | None) -> None:
    if process is not None:
        with contextlib.suppress(ProcessLookupError, PermissionError):
            os.killpg(process.pid, signal.SIGKILL)
