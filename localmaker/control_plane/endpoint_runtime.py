"""The local side of endpoints: provisioning, blue/green updates, scaling, healing and teardown.

moto records what AWS would record; this module makes it true. An endpoint is Creating until /ping
passes on every instance, InService after that, and Failed (with the cause in FailureReason) when the
artifact cannot be fetched, model_fn raises, an instance dies, or the startup health check times out.
An update builds a whole new fleet beside the serving one and swaps only once every new instance is
healthy; if the new fleet fails, it is stopped and the old one never stopped serving.
"""

from __future__ import annotations

import logging
import shutil
import threading
import time
import uuid
from collections.abc import Callable
from pathlib import Path

from localmaker.control_plane.endpoint_healer import EndpointHealer
from localmaker.control_plane.endpoint_state import (
    EndpointStatus,
    RunningEndpoint,
    ServingInstance,
    Variant,
    VariantSpec,
)
from localmaker.control_plane.instance_process import STOP_GRACE_S, InstanceProcess
from localmaker.control_plane.log_shipper import LogShipper
from localmaker.control_plane.placement import place
from localmaker.local_endpoint.container_paths import ContainerPaths
from localmaker.model.safe_tar import unpack
from localmaker.spec.container_images import unsupported_image_reason
from localmaker.spec.instance_types import lookup
from localmaker.spec.names import endpoint_log_group

logger = logging.getLogger(__name__)

FetchArtifact = Callable[[str, Path], None]


class EndpointBusy(RuntimeError):
    """An update asked of an endpoint that is not InService, as AWS refuses it."""


class _Deleted(Exception):
    """The endpoint was deleted while its fleet was being built."""


class EndpointRuntime:
    """Registry of the endpoints this control plane runs; every process it starts, it also reaps."""

    def __init__(self, work_root: Path, fetch_artifact: FetchArtifact, startup_timeout_s: float = 600.0,
                 logs: LogShipper | None = None, heal_interval_s: float = 0.5, region: str = "us-east-1",
                 container_paths: ContainerPaths | None = None) -> None:
        self._work_root = work_root
        self._region = region  # the control plane's, which instances inherit (us-east-1 is ControlPlane's default)
        self._container_paths = container_paths or ContainerPaths.from_env()  # read once, at start-up
        self._logs = logs
        self._fetch = fetch_artifact
        self._startup_timeout_s = startup_timeout_s
        self._endpoints: dict[str, RunningEndpoint] = {}
        self._lock = threading.Lock()
        self._healer = EndpointHealer(self._endpoints_now, self._heal, heal_interval_s)

    def get(self, name: str) -> RunningEndpoint | None:
        with self._lock:
            return self._endpoints.get(name)

    def names(self) -> list[str]:
        with self._lock:
            return list(self._endpoints)

    def _endpoints_now(self) -> list[RunningEndpoint]:
        with self._lock:
            return list(self._endpoints.values())

    # -- lifecycle ---------------------------------------------------------------------------------

    def create(self, name: str, config_name: str, variants: list[VariantSpec]) -> RunningEndpoint:
        work_dir = self._work_root / f"{name}-{uuid.uuid4().hex[:8]}"
        endpoint = RunningEndpoint(name=name, work_dir=work_dir, config_name=config_name)
        with self._lock:
            if name in self._endpoints:
                raise ValueError(f"Cannot create already existing endpoint {name!r}.")
            self._endpoints[name] = endpoint
        self._healer.start()
        self._in_background(f"provision-{name}", self._provision, endpoint, variants)
        return endpoint

    def update(self, name: str, config_name: str, variants: list[VariantSpec]) -> None:
        """Blue/green: the new fleet must be healthy before traffic moves to it."""
        endpoint = self._claim_for_update(name)
        self._in_background(f"update-{name}", self._blue_green, endpoint, config_name, variants)

    def scale(self, name: str, desired: dict[str, tuple[float | None, int | None]]) -> None:
        """UpdateEndpointWeightsAndCapacities: ``desired`` maps a variant to (weight, instance count)."""
        endpoint = self._claim_for_update(name)
        self._in_background(f"scale-{name}", self._rescale, endpoint, desired)

    def delete(self, name: str) -> bool:
        with self._lock:
            endpoint = self._endpoints.pop(name, None)
        if endpoint is None:
            return False
        endpoint.status = EndpointStatus.DELETING
        self._stop(endpoint.processes())
        self._release_logs(endpoint)
        # The unpacked models are copies of what S3 holds; the logs stay for whoever debugs the run.
        shutil.rmtree(endpoint.work_dir / "models", ignore_errors=True)
        return True

    def shutdown(self) -> None:
        self._healer.stop()
        for name in self.names():
            self.delete(name)

    def _claim_for_update(self, name: str) -> RunningEndpoint:
        endpoint = self.get(name)
        if endpoint is None:
            raise KeyError(name)
        with endpoint.lock:
            if endpoint.status is not EndpointStatus.IN_SERVICE:
                raise EndpointBusy(f"Cannot update in-progress endpoint \"{name}\": it is {endpoint.status.value}; "
                                   "wait until it is InService")
            endpoint.status = EndpointStatus.UPDATING
            endpoint.failure_reason = ""
        return endpoint

    @staticmethod
    def _in_background(name: str, target: Callable[..., None], *args: object) -> None:
        threading.Thread(target=target, args=args, name=name, daemon=True).start()

    # -- what each operation does ------------------------------------------------------------------

    def _provision(self, endpoint: RunningEndpoint, specs: list[VariantSpec]) -> None:
        with endpoint.operation:
            try:
                self._build_fleet(endpoint, specs, endpoint.variants)
            except _Deleted:
                return
            except Exception as exc:  # noqa: BLE001 - every failure becomes the endpoint's FailureReason
                logger.exception("endpoint %s failed to start", endpoint.name)
                self._fail(endpoint, str(exc) or type(exc).__name__)
                return
            self._settle(endpoint, EndpointStatus.CREATING, EndpointStatus.IN_SERVICE)
            logger.info("endpoint %s is InService", endpoint.name)

    def _blue_green(self, endpoint: RunningEndpoint, config_name: str, specs: list[VariantSpec]) -> None:
        with endpoint.operation:
            try:
                self._build_fleet(endpoint, specs, endpoint.staged)
            except _Deleted:
                return
            except Exception as exc:  # noqa: BLE001 - a failed update rolls back whatever the cause
                logger.warning("update of endpoint %s to %s failed; rolling back: %s", endpoint.name,
                               config_name, exc)
                self._roll_back(endpoint, f"the update to endpoint config {config_name!r} failed and was rolled "
                                          f"back; the previous config keeps serving: {exc}")
                return
            with endpoint.lock:
                if endpoint.status is EndpointStatus.DELETING:
                    return
                blue, endpoint.variants, endpoint.staged = endpoint.variants, endpoint.staged, []
                endpoint.config_name = config_name
                endpoint.status = EndpointStatus.IN_SERVICE
            logger.info("endpoint %s now serves config %s", endpoint.name, config_name)
            # gunicorn drains requests in flight on SIGTERM for up to the model-server timeout (its
            # --graceful-timeout), and the retirement waits that long, so the swap cuts none off.
            self._retire(endpoint, [i for v in blue for i in v.instances], drain=True)
            for variant in blue:
                shutil.rmtree(variant.model_dir, ignore_errors=True)

    def _rescale(self, endpoint: RunningEndpoint, desired: dict[str, tuple[float | None, int | None]]) -> None:
        with endpoint.operation:
            added: list[ServingInstance] = []
            try:
                for variant in endpoint.variants:
                    _, count = desired.get(variant.spec.variant_name, (None, None))
                    for _ in range(max(0, (count or 0) - len(variant.instances))):
                        added.append(self._launch(endpoint, variant))
                self._await_health(endpoint, added, self._startup_timeout(endpoint.variants))
            except _Deleted:
                return
            except Exception as exc:  # noqa: BLE001 - failed capacity is rolled back, the rest keeps serving
                logger.warning("scaling endpoint %s failed; rolling back: %s", endpoint.name, exc)
                self._forget(endpoint, added)
                self._retire(endpoint, added)
                self._roll_back(endpoint, f"the capacity update failed and was rolled back: {exc}")
                return
            surplus: list[ServingInstance] = []
            with endpoint.lock:
                for instance in added:
                    instance.in_rotation = True
                for variant in endpoint.variants:
                    weight, count = desired.get(variant.spec.variant_name, (None, None))
                    if weight is not None:
                        variant.weight = weight
                    if count is not None:
                        variant.desired_count = count
                        surplus += variant.instances[count:]
                        for instance in variant.instances[count:]:
                            instance.in_rotation = False
            self._forget(endpoint, surplus)
            self._retire(endpoint, surplus, drain=True)
            self._settle(endpoint, EndpointStatus.UPDATING, EndpointStatus.IN_SERVICE)

    def _heal(self, endpoint: RunningEndpoint) -> None:
        """Auto-heal: replace dead instances, as SageMaker replaces an unhealthy host.

        The healer calls this with the endpoint's operation lock held, so it never races an update;
        the survivors keep answering meanwhile. A replacement that fails is retried on a later round.
        """
        with endpoint.lock:
            dead = [i for v in endpoint.variants for i in v.instances if i.process.exited() is not None]
        for instance in dead:
            logger.warning("instance %s of endpoint %s died (exit code %s); replacing it",
                           instance.process.instance_id, endpoint.name, instance.process.exited())
        self._forget(endpoint, dead)
        self._retire(endpoint, dead)
        replacements: list[ServingInstance] = []
        try:
            for variant in list(endpoint.variants):
                for _ in range(variant.desired_count - len(variant.instances)):
                    replacements.append(self._launch(endpoint, variant))
            self._await_health(endpoint, replacements, self._startup_timeout(endpoint.variants))
        except _Deleted:
            return
        except BaseException:  # a launch or a health check failed: started replacements must not linger
            self._forget(endpoint, replacements)
            self._retire(endpoint, replacements)
            raise
        with endpoint.lock:
            for instance in replacements:
                instance.in_rotation = True
        logger.info("endpoint %s healed: %s replace %s", endpoint.name,
                    ", ".join(i.process.instance_id for i in replacements),
                    ", ".join(i.process.instance_id for i in dead) or "missing capacity")

    # -- building blocks ---------------------------------------------------------------------------

    def _build_fleet(self, endpoint: RunningEndpoint, specs: list[VariantSpec], fleet: list[Variant]) -> None:
        """Start every instance of ``specs`` into ``fleet`` and wait until all are healthy.

        ``fleet`` is the endpoint's own list, so its processes are reaped by a delete that comes
        while this still runs. On failure, whatever was started is stopped again.
        """
        try:
            for spec in specs:
                reason = unsupported_image_reason(spec.image)
                if reason:
                    raise RuntimeError(reason)
                variant = Variant(spec=spec, model_dir=self._unpack_artifact(endpoint, spec),
                                  weight=spec.weight, desired_count=spec.instance_count)
                with endpoint.lock:
                    fleet.append(variant)
                for _ in range(spec.instance_count):
                    self._launch(endpoint, variant)
            started = [i for v in fleet for i in v.instances]
            self._await_health(endpoint, started, self._startup_timeout(fleet))
        except BaseException:
            with endpoint.lock:
                doomed, fleet[:] = list(fleet), []
            self._retire(endpoint, [i for v in doomed for i in v.instances])
            for variant in doomed:
                shutil.rmtree(variant.model_dir, ignore_errors=True)
            raise
        with endpoint.lock:
            for variant in fleet:
                for instance in variant.instances:
                    instance.in_rotation = True

    def _unpack_artifact(self, endpoint: RunningEndpoint, spec: VariantSpec) -> Path:
        folder = endpoint.work_dir / "models" / uuid.uuid4().hex[:8]
        archive = folder.with_suffix(".tar.gz")
        archive.parent.mkdir(parents=True, exist_ok=True)
        try:
            self._fetch(spec.model_data_url, archive)
            return unpack(archive, folder / spec.variant_name)
        finally:
            archive.unlink(missing_ok=True)

    def _launch(self, endpoint: RunningEndpoint, variant: Variant) -> ServingInstance:
        """Start one instance of ``variant``, out of rotation until it proves healthy."""
        if endpoint.status is EndpointStatus.DELETING:
            raise _Deleted()
        instance_id = endpoint.next_instance_id(variant.spec.variant_name)
        placement = place(lookup(variant.spec.instance_type), len(variant.instances))
        process = InstanceProcess(
            instance_id=instance_id,
            model_dir=variant.model_dir,
            log_file=endpoint.work_dir / "logs" / f"{instance_id}.log",
            env={**variant.spec.environment, **placement.environment},
            region=self._region, container_paths=self._container_paths,
        )
        instance = ServingInstance(process=process, device=placement.device)
        with endpoint.lock:
            variant.instances.append(instance)
        try:
            process.start()
        except BaseException:  # never started, so it must not count as capacity
            with endpoint.lock:
                variant.instances.remove(instance)
            raise
        if self._logs is not None:
            self._logs.follow(endpoint_log_group(endpoint.name), instance_id, process.log_file)
        if endpoint.status is EndpointStatus.DELETING:  # deleted while this one started
            process.stop()
            raise _Deleted()
        return instance

    def _startup_timeout(self, variants: list[Variant]) -> float:
        limits = [v.spec.startup_timeout_s for v in variants if v.spec.startup_timeout_s]
        return float(max(limits)) if limits else self._startup_timeout_s

    @staticmethod
    def _await_health(endpoint: RunningEndpoint, instances: list[ServingInstance], timeout_s: float) -> None:
        deadline = time.monotonic() + timeout_s
        pending = [i.process for i in instances]
        while pending:
            if endpoint.status is EndpointStatus.DELETING:
                raise _Deleted()
            if time.monotonic() > deadline:
                raise RuntimeError(
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
    def _settle(endpoint: RunningEndpoint, expected: EndpointStatus, status: EndpointStatus) -> None:
        with endpoint.lock:
            if endpoint.status is expected:
                endpoint.status = status

    def _roll_back(self, endpoint: RunningEndpoint, reason: str) -> None:
        # DescribeEndpoint reports a failed update as InService with the cause in FailureReason.
        with endpoint.lock:
            if endpoint.status is EndpointStatus.DELETING:
                return
            endpoint.failure_reason = reason[:1024]
            endpoint.status = EndpointStatus.IN_SERVICE

    def _fail(self, endpoint: RunningEndpoint, reason: str) -> None:
        if endpoint.status is EndpointStatus.DELETING:
            return
        # Stop first: once a caller can see Failed, no process of the endpoint is left.
        self._retire(endpoint, endpoint.instances())
        self._release_logs(endpoint)
        with endpoint.lock:
            endpoint.failure_reason = reason[:1024]  # the size SageMaker allows for FailureReason
            endpoint.status = EndpointStatus.FAILED

    @staticmethod
    def _forget(endpoint: RunningEndpoint, instances: list[ServingInstance]) -> None:
        with endpoint.lock:
            for variant in (*endpoint.variants, *endpoint.staged):
                variant.instances[:] = [i for i in variant.instances if all(i is not x for x in instances)]

    def _retire(self, endpoint: RunningEndpoint, instances: list[ServingInstance], drain: bool = False) -> None:
        """Stop instances and ship the rest of their logs; the endpoint lives on without them.

        ``drain`` is for instances that served traffic and leave a fleet that keeps serving (the blue
        fleet after an update, surplus after a scale-in): their requests in flight finish first.
        """
        self._stop([i.process for i in instances], drain=drain)
        with endpoint.lock:
            endpoint.retired.extend(instances)
        if self._logs is not None:
            for instance in instances:
                self._logs.release(endpoint_log_group(endpoint.name), instance.process.instance_id)

    def _release_logs(self, endpoint: RunningEndpoint) -> None:
        if self._logs is not None:
            self._logs.release(endpoint_log_group(endpoint.name))

    @staticmethod
    def _stop(processes: list[InstanceProcess], drain: bool = False) -> None:
        """Signal every instance before waiting for any, so they stop in parallel. ``drain`` (an instance
        leaving a fleet that keeps serving) waits for its requests in flight; a deletion or a shutdown
        does not wait on them past the usual grace."""
        for process in processes:
            process.terminate()
        for process in processes:
            process.reap(process.drain_s if drain else STOP_GRACE_S)
