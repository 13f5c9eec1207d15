"""The local side of endpoints: provisioning, blue/green updates, scaling, healing and teardown.

moto records what AWS would record; this module makes it true. An endpoint is Creating until /ping
passes on every instance, InService after that, and Failed (with the cause in FailureReason) when the
artifact cannot be fetched, model_fn raises, an instance dies, or the startup health check times out.
An update builds a whole new fleet beside the serving one and swaps only once every new instance is
healthy; if the new fleet fails, it is stopped and the old one never stopped serving.

A serverless variant starts with its provisioned concurrency (possibly no instance) once its unpacked
model is found to fit its MemorySizeInMB; the serverless scaler starts and stops the rest. The instance
work itself (unpack, launch, health check, retire) is endpoint_fleet.py's, shared with that scaler.
"""

from __future__ import annotations

import logging
import threading
import uuid
from collections.abc import Callable
from pathlib import Path

from localmaker.control_plane.endpoint_fleet import Deleted, EndpointFleet, FetchArtifact
from localmaker.control_plane.endpoint_healer import EndpointHealer
from localmaker.control_plane.endpoint_state import (
    EndpointStatus,
    RunningEndpoint,
    ServingInstance,
    Variant,
    VariantSpec,
)
from localmaker.control_plane.log_shipper import LogShipper
from localmaker.control_plane.resource_names import discard_tree, path_under
from localmaker.control_plane.serverless_config import check_model_fits
from localmaker.local_endpoint.container_paths import ContainerPaths
from localmaker.spec.container_images import unsupported_image_reason

logger = logging.getLogger(__name__)

__all__ = ["EndpointBusy", "EndpointRuntime", "FetchArtifact"]


class EndpointBusy(RuntimeError):
    """An update asked of an endpoint that is not InService, as AWS refuses it."""


class EndpointRuntime:
    """Registry of the endpoints this control plane runs; every process it starts, it also reaps."""

    def __init__(self, work_root: Path, fetch_artifact: FetchArtifact, startup_timeout_s: float = 600.0,
                 logs: LogShipper | None = None, heal_interval_s: float = 0.5, region: str = "us-east-1",
                 container_paths: ContainerPaths | None = None) -> None:
        self._work_root = work_root
        # The region is the control plane's, which instances inherit (us-east-1 is ControlPlane's default);
        # the container paths are read once, at start-up.
        self.fleet = EndpointFleet(fetch_artifact, logs, region, container_paths or ContainerPaths.from_env(),
                                   startup_timeout_s)
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
        work_dir = path_under(self._work_root, f"{name}-{uuid.uuid4().hex[:8]}")  # UnsafePath: not a folder name
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
        self.fleet.stop(endpoint.processes())
        self.fleet.release_logs(endpoint)
        # The unpacked models are copies of what S3 holds; the logs stay for whoever debugs the run.
        discard_tree(self._work_root, endpoint.work_dir / "models")
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
            except Deleted:
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
            except Deleted:
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
            self.fleet.retire(endpoint, [i for v in blue for i in v.instances], drain=True)
            for variant in blue:
                discard_tree(endpoint.work_dir, variant.model_dir)

    def _rescale(self, endpoint: RunningEndpoint, desired: dict[str, tuple[float | None, int | None]]) -> None:
        with endpoint.operation:
            added: list[ServingInstance] = []
            try:
                for variant in endpoint.variants:
                    _, count = desired.get(variant.spec.variant_name, (None, None))
                    for _ in range(max(0, (count or 0) - len(variant.instances))):
                        added.append(self.fleet.launch(endpoint, variant))
                self.fleet.await_health(endpoint, added, self.fleet.startup_timeout(endpoint.variants))
            except Deleted:
                return
            except Exception as exc:  # noqa: BLE001 - failed capacity is rolled back, the rest keeps serving
                logger.warning("scaling endpoint %s failed; rolling back: %s", endpoint.name, exc)
                self.fleet.forget(endpoint, added)
                self.fleet.retire(endpoint, added)
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
            self.fleet.forget(endpoint, surplus)
            self.fleet.retire(endpoint, surplus, drain=True)
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
        self.fleet.forget(endpoint, dead)
        self.fleet.retire(endpoint, dead)
        replacements: list[ServingInstance] = []
        try:
            for variant in list(endpoint.variants):
                for _ in range(variant.desired_count - len(variant.instances)):
                    replacements.append(self.fleet.launch(endpoint, variant))
            self.fleet.await_health(endpoint, replacements, self.fleet.startup_timeout(endpoint.variants))
        except Deleted:
            return
        except BaseException:  # a launch or a health check failed: started replacements must not linger
            self.fleet.forget(endpoint, replacements)
            self.fleet.retire(endpoint, replacements)
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
                model_dir = self.fleet.unpack_artifact(endpoint, spec.model_data_url, spec.variant_name)
                if spec.serverless is not None:  # before any instance, as a cold start would hit it
                    try:
                        check_model_fits(model_dir, spec.serverless)
                    except MemoryError:
                        discard_tree(endpoint.work_dir, model_dir)
                        raise
                variant = Variant(spec=spec, model_dir=model_dir, weight=spec.weight,
                                  desired_count=spec.instance_count)
                with endpoint.lock:
                    fleet.append(variant)
                for _ in range(spec.instance_count):
                    self.fleet.launch(endpoint, variant)
            started = [i for v in fleet for i in v.instances]
            self.fleet.await_health(endpoint, started, self.fleet.startup_timeout(fleet))
        except BaseException:
            with endpoint.lock:
                doomed, fleet[:] = list(fleet), []
            self.fleet.retire(endpoint, [i for v in doomed for i in v.instances])
            for variant in doomed:
                discard_tree(endpoint.work_dir, variant.model_dir)
            raise
        with endpoint.lock:
            for variant in fleet:
                for instance in variant.instances:
                    instance.in_rotation = True

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
        self.fleet.retire(endpoint, endpoint.instances())
        self.fleet.release_logs(endpoint)
        with endpoint.lock:
            endpoint.failure_reason = reason[:1024]  # the size SageMaker allows for FailureReason
            endpoint.status = EndpointStatus.FAILED
