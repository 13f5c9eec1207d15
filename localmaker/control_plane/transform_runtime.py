"""The local side of transform jobs: the model's instances, the input through them, the answers to S3.

moto records the job; this module makes it happen. A job fetches and unpacks its model's
``model.tar.gz``, starts ``TransformResources.InstanceCount`` instances (the gunicorn container that
endpoints run, with the model's and the job's Environment), waits for /ping, downloads its inputs, and
spreads the files across the instances (file i to instance i mod N). Each file's answers go to
``<S3OutputPath>/<file>.out``. It is InProgress until then, Completed once every file is written,
Failed at the first record that fails (FailureReason names the file and record), or Stopping then
Stopped after StopTransformJob. Whatever the end, its instances are stopped and reaped before the
status changes, so a finished job never leaves a process; a control plane that stops, stops its jobs.

Instance logs go to ``/aws/sagemaker/TransformJobs``, one stream per instance, ``<job>/<instance-id>``.
"""

from __future__ import annotations

import functools
import logging
import shutil
import threading
import time
import uuid
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from localmaker.control_plane.api_errors import ResourceLimitExceeded
from localmaker.control_plane.disk_budget import DiskBudget
from localmaker.control_plane.instance_process import STOP_GRACE_S, InstanceProcess
from localmaker.control_plane.log_shipper import LogShipper
from localmaker.control_plane.placement import place
from localmaker.control_plane.resource_names import path_under
from localmaker.control_plane.transform_inputs import InputError, InputFile, list_inputs, output_location
from localmaker.control_plane.transform_records import RecordSplitError, decompress, split_records
from localmaker.control_plane.transform_state import TransformJobRecord, TransformSpec, TransformStatus
from localmaker.control_plane.transform_worker import JobFailure, Stopped, TransformWorker
from localmaker.local_endpoint.container_paths import ContainerPaths
from localmaker.model.safe_tar import unpack
from localmaker.spec.instance_types import lookup
from localmaker.spec.names import TRANSFORM_LOG_GROUP

logger = logging.getLogger(__name__)

FetchArtifact = Callable[[str, Path], None]
HEALTH_POLL_S = 0.25


@dataclass(frozen=True)
class TransformModel:
    """The model a job names, as DescribeModel answered it."""

    name: str
    model_data_url: str
    environment: dict[str, str] = field(default_factory=dict)


class TransformRuntime:
    """Registry of the transform jobs this control plane runs; every process it starts, it also reaps."""

    def __init__(self, work_root: Path, s3_client: Callable[[], Any], fetch_artifact: FetchArtifact,
                 logs: LogShipper | None = None, region: str = "us-east-1",
                 container_paths: ContainerPaths | None = None, startup_timeout_s: float = 600.0,
                 disk: DiskBudget | None = None) -> None:
        self._work_root = work_root / "transform"
        self._disk = disk
        self._s3 = s3_client
        self._fetch = fetch_artifact
        self._logs = logs
        self._region = region
        self._container_paths = container_paths or ContainerPaths.from_env()
        self._startup_timeout_s = startup_timeout_s
        self._jobs: dict[str, TransformJobRecord] = {}
        self._processes: dict[str, list[InstanceProcess]] = {}
        self._threads: dict[str, threading.Thread] = {}
        self._lock = threading.Lock()

    def get(self, name: str) -> TransformJobRecord | None:
        with self._lock:
            return self._jobs.get(name)

    def names(self) -> list[str]:
        with self._lock:
            return list(self._jobs)

    def create(self, spec: TransformSpec, model: TransformModel) -> TransformJobRecord:
        job = TransformJobRecord(spec=spec, work_dir=path_under(self._work_root, f"{spec.name}-{uuid.uuid4().hex[:8]}"))
        thread = threading.Thread(target=self._run, args=(job, model), name=f"transform-{spec.name}", daemon=True)
        with self._lock:
            if spec.name in self._jobs:
                raise ValueError(f"Transform job {spec.name!r} already exists.")
            self._jobs[spec.name] = job
            self._processes[spec.name] = []
            self._threads[spec.name] = thread
        job.work_dir.mkdir(parents=True)
        thread.start()
        return job

    def stop(self, name: str) -> bool:
        """StopTransformJob: Stopping at once, Stopped once every instance is gone."""
        job = self.get(name)
        if job is None:
            return False
        with job.lock:
            if job.status is not TransformStatus.IN_PROGRESS:
                return False
            job.status = TransformStatus.STOPPING
            job.stop_requested.set()
        with self._lock:
            processes = list(self._processes.get(name, []))
        for process in processes:  # SIGTERM only: the job's thread reaps them, so this call never blocks
            process.terminate()
        return True

    def shutdown(self, timeout_s: float = 30.0) -> None:
        for name in self.names():
            self.stop(name)
        with self._lock:
            threads = list(self._threads.values())
        deadline = time.monotonic() + timeout_s
        for thread in threads:
            thread.join(timeout=max(deadline - time.monotonic(), 0))
        for name in self.names():  # a job thread that did not finish in time: its instances go regardless
            self._stop_instances(name)

    # -- the job's life ------------------------------------------------------------------------

    def _run(self, job: TransformJobRecord, model: TransformModel) -> None:
        failure: str | None = None
        try:
            model_dir = self._unpack_model(job, model)
            inputs = self._download(job)
            workers = self._start_instances(job, model, model_dir)
            self._transform(job, workers, inputs)
        except (JobFailure, InputError, RecordSplitError) as exc:
            failure = str(exc)
        except Stopped:
            failure = None
        except Exception as exc:  # noqa: BLE001 - every failure becomes the job's FailureReason
            logger.exception("transform job %s failed", job.spec.name)
            failure = f"InternalServerError: {type(exc).__name__}: {exc}"
        finally:
            self._stop_instances(job.spec.name)
            if self._logs is not None:
                for instance_id in job.instance_ids:
                    self._logs.release(TRANSFORM_LOG_GROUP, f"{job.spec.name}/{instance_id}")
            shutil.rmtree(job.work_dir / "model", ignore_errors=True)
            shutil.rmtree(job.work_dir / "input", ignore_errors=True)
        self._finish(job, failure)

    def _unpack_model(self, job: TransformJobRecord, model: TransformModel) -> Path:
        archive = job.work_dir / "model.tar.gz"
        try:
            self._fetch(model.model_data_url, archive)
        except Exception as exc:  # noqa: BLE001 - a missing or unreadable artifact is the job's failure
            raise JobFailure(f"ClientError: cannot download the model data of model {model.name!r} from "
                             f"{model.model_data_url}: {exc}") from exc
        try:
            return unpack(archive, job.work_dir / "model")
        except Exception as exc:  # noqa: BLE001 - not a tar.gz, or a hostile one: the model's fault, not ours
            raise JobFailure(f"ClientError: the model data of model {model.name!r} ({model.model_data_url}) "
                             f"cannot be unpacked: {exc}") from exc
        finally:
            archive.unlink(missing_ok=True)

    def _download(self, job: TransformJobRecord) -> list[tuple[InputFile, Path]]:
        """Every input file on local disk, its records counted, so progress has a total from the start."""
        s3 = self._s3()
        files = list_inputs(s3, job.spec.data_type, job.spec.input_uri)
        job.progress.files_total = len(files)
        if self._disk is not None:  # all of it counted first, so that input that cannot fit downloads nothing
            needed = sum(_object_size(s3, item) for item in files)
            try:
                self._disk.check_room(f"the input {job.spec.input_uri} ({len(files)} objects)", needed)
            except ResourceLimitExceeded as exc:
                raise JobFailure(f"ClientError: cannot download the input: {exc}") from None
        local: list[tuple[InputFile, Path]] = []
        for index, item in enumerate(files):
            if job.stop_requested.is_set():
                raise Stopped()
            path = job.work_dir / "input" / str(index)
            path.parent.mkdir(parents=True, exist_ok=True)
            s3.download_file(item.bucket, item.key, str(path))
            try:
                records = split_records(decompress(path.read_bytes(), job.spec.compression), job.spec.split_type)
            except RecordSplitError as exc:
                raise JobFailure(f"ClientError: cannot read {item.url}: {exc}") from None
            job.progress.records_total += len(records)
            local.append((item, path))
        return local

    def _start_instances(self, job: TransformJobRecord, model: TransformModel, model_dir: Path) -> list[
            TransformWorker]:
        spec = job.spec
        instance_type = lookup(spec.instance_type)
        processes: list[InstanceProcess] = []
        for index in range(spec.instance_count):
            instance_id = f"i-{uuid.uuid4().hex[:17]}"
            placement = place(instance_type, index)
            process = InstanceProcess(
                instance_id=instance_id, model_dir=model_dir, log_file=job.work_dir / "logs" / f"{instance_id}.log",
                env={**model.environment, **spec.environment, **spec.container_environment(),
                     **placement.environment},
                region=self._region, container_paths=self._container_paths)
            with job.lock:  # a stop now either sees this process or has already prevented it
                if job.stop_requested.is_set():
                    raise Stopped()
                with self._lock:
                    self._processes[spec.name].append(process)
                process.start()
            job.instance_ids.append(instance_id)
            job.pids.append(process.pid or 0)
            processes.append(process)
            if self._logs is not None:
                self._logs.follow(TRANSFORM_LOG_GROUP, f"{spec.name}/{instance_id}", process.log_file)
        self._await_health(job, processes)
        return [TransformWorker(spec, process, job.stop_requested, functools.partial(self._count, job))
                for process in processes]

    def _await_health(self, job: TransformJobRecord, processes: list[InstanceProcess]) -> None:
        deadline = time.monotonic() + self._startup_timeout_s
        pending = list(processes)
        while pending:
            if job.stop_requested.is_set():
                raise Stopped()
            for process in list(pending):
                code = process.exited()
                if code is not None:
                    raise JobFailure(f"ClientError: instance {process.instance_id} exited with code {code} "
                                     f"before it was healthy; last log lines:\n{process.log_tail(8)}")
                result = process.ping()
                if result.failed:
                    raise JobFailure(f"ClientError: the model failed to load: {result.message or 'model_fn failed'}")
                if result.healthy:
                    pending.remove(process)
            if pending and time.monotonic() > deadline:
                raise JobFailure(f"ClientError: the instances did not pass the /ping health check within "
                                 f"{self._startup_timeout_s:.0f}s")
            if pending:
                time.sleep(HEALTH_POLL_S)

    def _transform(self, job: TransformJobRecord, workers: list[TransformWorker],
                   inputs: list[tuple[InputFile, Path]]) -> None:
        """Each worker takes files i, i+N, ...; the first failure (not a stop's aftermath) ends the job."""
        failures: list[BaseException] = []

        def work(worker: TransformWorker, share: list[tuple[InputFile, Path]]) -> None:
            try:
                for item, path in share:
                    answer = worker.transform(item, path)
                    bucket, key = output_location(job.spec.output_path, item)
                    self._s3().put_object(Bucket=bucket, Key=key, Body=answer)
                    with job.lock:
                        job.progress.files_done += 1
            except BaseException as exc:  # noqa: BLE001 - reported through the job, below
                job.stop_requested.set()  # the other instances stop sending
                failures.append(exc)

        threads = [threading.Thread(target=work, args=(worker, inputs[i::len(workers)]), daemon=True,
                                    name=f"transform-{job.spec.name}-{i}") for i, worker in enumerate(workers)]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join()
        real = [f for f in failures if not isinstance(f, Stopped)]
        if real:
            raise real[0]
        if failures:
            raise Stopped()

    @staticmethod
    def _count(job: TransformJobRecord, records: int) -> None:
        with job.lock:
            job.progress.records_done += records

    def _stop_instances(self, name: str) -> None:
        with self._lock:
            processes = list(self._processes.get(name, []))
        for process in processes:
            process.terminate()
        for process in processes:
            process.reap(STOP_GRACE_S)

    def _finish(self, job: TransformJobRecord, failure: str | None) -> None:
        with job.lock:
            if job.status is TransformStatus.STOPPING:
                status, failure = TransformStatus.STOPPED, None  # whatever failed was cut short by the stop
            elif failure is not None:
                status = TransformStatus.FAILED
            elif job.stop_requested.is_set():
                status = TransformStatus.STOPPED
            else:
                status = TransformStatus.COMPLETED
            job.failure_reason = (failure or "")[:1024]  # the size SageMaker allows for FailureReason
            job.ended_at = time.time()
            job.status = status
        logger.info("transform job %s: %s %s", job.spec.name, status.value, job.failure_reason)


def _object_size(s3: Any, item: InputFile) -> int:
    """The object's size; 0 for one that cannot be read now, whose download then fails with its own reason."""
    from botocore.exceptions import ClientError

    try:
        return int(s3.head_object(Bucket=item.bucket, Key=item.key)["ContentLength"])
    except ClientError:
        return 0
