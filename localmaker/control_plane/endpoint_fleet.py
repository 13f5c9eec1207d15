"""The building blocks of an endpoint's fleet: unpacking its model, starting, health-checking and stopping
its instances.

``endpoint_runtime`` decides what a create, update, scale or heal does with an endpoint; this module does
the instance work those operations share, and so does the serverless scaler when an invocation needs an
instance started on demand. Every process started here is recorded on the endpoint before it runs, so a
delete that comes meanwhile reaps it.
"""

from __future__ import annotations

import logging
import time
import uuid
from collections.abc import Callable
from pathlib import Path

from localmaker.control_plane.endpoint_state import EndpointStatus, RunningEndpoint, ServingInstance, Variant
from localmaker.control_plane.instance_process import STOP_GRACE_S, InstanceProcess
from localmaker.control_plane.log_shipper import LogShipper
from localmaker.control_plane.placement import Placement, place
from localmaker.control_plane.resource_names import path_under
from localmaker.errors import ArtifactError
from localmaker.local_endpoint.container_paths import ContainerPaths
from localmaker.model.safe_tar import unpack
from localmaker.spec.instance_types import lookup
from localmaker.spec.names import endpoint_log_group, endpoint_log_stream

logger = logging.getLogger(__name__)

FetchArtifact = Callable[[str, Path], None]


class Deleted(Exception):
    """The endpoint was deleted while its fleet was being built."""


class EndpointFleet:
    """Starts and stops the instances of every endpoint of one control plane."""

    def __init__(self, fetch_artifact: FetchArtifact, logs: LogShipper | None, region: str,
                 container_paths: ContainerPaths, startup_timeout_s: float) -> None:
        self._fetch = fetch_artifact
        self._logs = logs
        self._region = region  # the control plane's, which instances inherit
        self._container_paths = container_paths
        self.startup_timeout_s = startup_timeout_s

    def unpack_artifact(self, endpoint: RunningEndpoint, model_data_url: str, variant_name: str) -> Path:
        # The variant's name names the folder, and a later update deletes it: it must stay inside.
        folder = endpoint.work_dir / "models" / uuid.uuid4().hex[:8]
        destination = path_under(folder, variant_name)
        archive = folder.with_suffix(".tar.gz")
        archive.parent.mkdir(parents=True, exist_ok=True)
        try:
            self._fetch(model_data_url, archive)
            try:
                return unpack(archive, destination)
            except ArtifactError as exc:  # it names the local copy; the user knows the artifact by its URL
                raise ArtifactError(f"the ModelDataUrl {model_data_url} cannot be unpacked: {exc}") from exc
        finally:
            archive.unlink(missing_ok=True)

    def launch(self, endpoint: RunningEndpoint, variant: Variant) -> ServingInstance:
        """Start one instance of ``variant``, out of rotation until it proves healthy."""
        if endpoint.status is EndpointStatus.DELETING:
            raise Deleted()
        instance_id = endpoint.next_instance_id(variant.spec.variant_name)
        # Serverless compute has no GPU, and no instance type to ask.
        placement = (Placement("cpu") if variant.spec.serverless is not None
                     else place(lookup(variant.spec.instance_type), len(variant.instances)))
        process = InstanceProcess(
            instance_id=instance_id,
            model_dir=variant.model_dir,
            log_file=path_under(endpoint.work_dir, "logs", f"{instance_id}.log"),  # ids are unique across variants
            env={**variant.spec.environment, **placement.environment},
            region=self._region, container_paths=self._container_paths,
        )
        instance = ServingInstance(process=process, device=placement.device,
                                   log_stream=endpoint_log_stream(variant.spec.variant_name, instance_id))
        with endpoint.lock:
            variant.instances.append(instance)
        try:
            process.start()
        except BaseException:  # never started, so it must not count as capacity
            with endpoint.lock:
                variant.instances.remove(instance)
            raise
        if self._logs is not None:
            self._logs.follow(endpoint_log_group(endpoint.name), instance.log_stream, process.log_file)
        if endpoint.status is EndpointStatus.DELETING:  # deleted while this one started
            process.stop()
            raise Deleted()
        return instance

    def startup_timeout(self, variants: list[Variant]) -> float:
        limits = [v.spec.startup_timeout_s for v in variants if v.spec.startup_timeout_s]
        return float(max(limits)) if limits else self.startup_timeout_s

    @staticmethod
    def await_health(endpoint: RunningEndpoint, instances: list[ServingInstance], timeout_s: float) -> None:
        deadline = time.monotonic() + timeout_s
        pending = [i.process for i in instances]
        while pending:
            if endpoint.status is EndpointStatus.DELETING:
                raise Deleted()
            if time.monotonic() > deadline:
                raise TimeoutError(
                    f"the startup health check timed out after {timeout_s:.0f}s: "
                    f"GET /ping never answered 200 on {', '.join(p.instance_id for p in pending)}"
                )
            still_pending = []
            for process in pending:
                code = process.exited()
                if code is not None:
                    raise RuntimeError(
                        f"instance {process.instance_id} exited with code {code} before it was healthy; "
                        f"last log lines:\n{process.log_tail()}"
                    )
                result = process.ping()
                if result.failed:
                    raise RuntimeError(result.message or "model_fn failed")
                if not result.healthy:
                    still_pending.append(process)
            pending = still_pending
            if pending:
                time.sleep(0.25)

    @staticmethod
    def forget(endpoint: RunningEndpoint, instances: list[ServingInstance]) -> None:
        with endpoint.lock:
            for variant in (*endpoint.variants, *endpoint.staged):
                variant.instances[:] = [i for i in variant.instances if all(i is not x for x in instances)]

    def retire(self, endpoint: RunningEndpoint, instances: list[ServingInstance], drain: bool = False) -> None:
        """Stop instances and ship the rest of their logs; the endpoint lives on without them.

        ``drain`` is for instances that served traffic and leave a fleet that keeps serving (the blue
        fleet after an update, surplus after a scale-in): their requests in flight finish first.
        """
        self.stop([i.process for i in instances], drain=drain)
        with endpoint.lock:
            endpoint.retired.extend(instances)
        if self._logs is not None:
            for instance in instances:
                self._logs.release(endpoint_log_group(endpoint.name), instance.log_stream)

    def release_logs(self, endpoint: RunningEndpoint) -> None:
        if self._logs is not None:
            self._logs.release(endpoint_log_group(endpoint.name))

    @staticmethod
    def stop(processes: list[InstanceProcess], drain: bool = False) -> None:
        """Signal every instance before waiting for any, so they stop in parallel. ``drain`` (an instance
        leaving a fleet that keeps serving) waits for its requests in flight; a deletion or a shutdown
        does not wait on them past the usual grace."""
        for process in processes:
            process.terminate()
        for process in processes:
            process.reap(process.drain_s if drain else STOP_GRACE_S)
