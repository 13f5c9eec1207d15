"""The local side of endpoints: provisioning, real status, routing and teardown.

moto records what AWS would record; this module makes it true. An endpoint is Creating until /ping
passes on every instance, InService after that, and Failed (with the cause in FailureReason) when the
artifact cannot be fetched, model_fn raises, an instance dies, or the startup health check times out.
"""

from __future__ import annotations

import enum
import itertools
import logging
import random
import shutil
import threading
import time
import uuid
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from localmaker.deploy.images import unsupported_image_reason
from localmaker.deploy.instance_process import InstanceProcess
from localmaker.deploy.instance_types import lookup
from localmaker.deploy.log_shipper import ENDPOINT_GROUP, LogShipper
from localmaker.deploy.placement import place
from localmaker.model.safe_tar import unpack

logger = logging.getLogger(__name__)

FetchArtifact = Callable[[str, Path], None]


class EndpointStatus(str, enum.Enum):
    CREATING = "Creating"
    IN_SERVICE = "InService"
    FAILED = "Failed"
    DELETING = "Deleting"


@dataclass(frozen=True)
class VariantSpec:
    """One production variant, joined from the endpoint config and its model as moto recorded them."""

    variant_name: str
    model_name: str
    instance_type: str
    instance_count: int
    model_data_url: str
    image: str
    environment: dict[str, str]
    weight: float = 1.0
    startup_timeout_s: float | None = None  # ContainerStartupHealthCheckTimeoutInSeconds, when set


@dataclass
class Variant:
    spec: VariantSpec
    instances: list[InstanceProcess] = field(default_factory=list)
    devices: list[str] = field(default_factory=list)
    _turn: Any = None

    def next_instance(self) -> InstanceProcess:
        if self._turn is None:
            self._turn = itertools.cycle(range(len(self.instances)))
        return self.instances[next(self._turn)]


@dataclass
class LocalEndpoint:
    name: str
    work_dir: Path
    variants: list[Variant]
    status: EndpointStatus = EndpointStatus.CREATING
    failure_reason: str = ""
    _lock: threading.Lock = field(default_factory=threading.Lock)

    def route(self, target_variant: str | None = None) -> tuple[Variant, InstanceProcess]:
        """Pick a variant (by name, else by weight) and, within it, the next instance round-robin."""
        if target_variant:
            matches = [v for v in self.variants if v.spec.variant_name == target_variant]
            if not matches:
                raise KeyError(target_variant)
            variant = matches[0]
        else:
            variant = random.choices(self.variants, weights=[v.spec.weight for v in self.variants])[0]
        with self._lock:
            return variant, variant.next_instance()

    def describe(self) -> dict[str, Any]:
        return {
            "EndpointName": self.name,
            "EndpointStatus": self.status.value,
            "FailureReason": self.failure_reason,
            "Variants": [
                {
                    "VariantName": v.spec.variant_name,
                    "InstanceType": v.spec.instance_type,
                    "Instances": [
                        {"InstanceId": i.instance_id, "Url": i.url, "Device": device, "Pid": i.pid,
                         "LogFile": str(i.log_file)}
                        for i, device in zip(v.instances, v.devices, strict=False)
                    ],
                }
                for v in self.variants
            ],
        }

    def processes(self) -> list[InstanceProcess]:
        return [i for v in self.variants for i in v.instances]


class EndpointRuntime:
    """Registry of the endpoints this control plane runs; every process it starts, it also reaps."""

    def __init__(self, work_root: Path, fetch_artifact: FetchArtifact, startup_timeout_s: float = 600.0,
                 logs: LogShipper | None = None) -> None:
        self._work_root = work_root
        self._logs = logs
        self._fetch = fetch_artifact
        self._startup_timeout_s = startup_timeout_s
        self._endpoints: dict[str, LocalEndpoint] = {}
        self._lock = threading.Lock()

    def get(self, name: str) -> LocalEndpoint | None:
        with self._lock:
            return self._endpoints.get(name)

    def names(self) -> list[str]:
        with self._lock:
            return list(self._endpoints)

    def create(self, name: str, variants: list[VariantSpec]) -> LocalEndpoint:
        work_dir = self._work_root / f"{name}-{uuid.uuid4().hex[:8]}"
        endpoint = LocalEndpoint(name=name, work_dir=work_dir, variants=[Variant(spec=v) for v in variants])
        with self._lock:
            if name in self._endpoints:
                raise ValueError(f"Cannot create already existing endpoint {name!r}.")
            self._endpoints[name] = endpoint
        threading.Thread(target=self._provision, args=(endpoint,), name=f"provision-{name}", daemon=True).start()
        return endpoint

    def delete(self, name: str) -> bool:
        with self._lock:
            endpoint = self._endpoints.pop(name, None)
        if endpoint is None:
            return False
        endpoint.status = EndpointStatus.DELETING
        self._stop(endpoint)
        self._release_logs(endpoint)
        # The unpacked model is a copy of what S3 holds; the logs stay for whoever debugs the run.
        shutil.rmtree(endpoint.work_dir / "model", ignore_errors=True)
        return True

    def shutdown(self) -> None:
        for name in self.names():
            self.delete(name)

    def _provision(self, endpoint: LocalEndpoint) -> None:
        try:
            self._start_instances(endpoint)
            self._await_health(endpoint)
        except Exception as exc:  # noqa: BLE001 - every failure becomes the endpoint's FailureReason
            logger.exception("endpoint %s failed to start", endpoint.name)
            self._fail(endpoint, str(exc) or type(exc).__name__)

    def _start_instances(self, endpoint: LocalEndpoint) -> None:
        for number, variant in enumerate(endpoint.variants):
            spec = variant.spec
            reason = unsupported_image_reason(spec.image)
            if reason:
                raise RuntimeError(reason)
            instance_type = lookup(spec.instance_type)
            archive = endpoint.work_dir / f"artifact-{number}.tar.gz"
            archive.parent.mkdir(parents=True, exist_ok=True)
            self._fetch(spec.model_data_url, archive)
            model_dir = unpack(archive, endpoint.work_dir / "model" / spec.variant_name)
            archive.unlink()
            for index in range(spec.instance_count):
                placement = place(instance_type, index)
                instance_id = f"{spec.variant_name}-{index}"
                instance = InstanceProcess(
                    instance_id=instance_id,
                    model_dir=model_dir,
                    log_file=endpoint.work_dir / "logs" / f"{instance_id}.log",
                    env={**spec.environment, **placement.environment},
                )
                if endpoint.status is EndpointStatus.DELETING:
                    return
                instance.start()
                if self._logs is not None:
                    self._logs.follow(ENDPOINT_GROUP.format(name=endpoint.name), instance_id, instance.log_file)
                variant.instances.append(instance)
                variant.devices.append(placement.device)
                if endpoint.status is EndpointStatus.DELETING:  # deleted while this one started
                    instance.stop()
                    return

    def _await_health(self, endpoint: LocalEndpoint) -> None:
        limits = [v.spec.startup_timeout_s for v in endpoint.variants if v.spec.startup_timeout_s]
        timeout_s = max(limits) if limits else self._startup_timeout_s
        deadline = time.monotonic() + timeout_s
        pending = endpoint.processes()
        while pending:
            if endpoint.status is not EndpointStatus.CREATING:
                return
            if time.monotonic() > deadline:
                raise RuntimeError(
                    f"the startup health check timed out after {timeout_s:.0f}s: "
                    f"GET /ping never answered 200 on {', '.join(i.instance_id for i in pending)}"
                )
            still_pending = []
            for instance in pending:
                code = instance.exited()
                if code is not None:
                    raise RuntimeError(
                        f"instance {instance.instance_id} exited with code {code} before it was healthy; "
                        f"last log lines:\n{instance.log_tail()}"
                    )
                result = instance.ping()
                if result.failed:
                    raise RuntimeError(result.message or "model_fn failed")
                if not result.healthy:
                    still_pending.append(instance)
            pending = still_pending
            if pending:
                time.sleep(0.25)
        if endpoint.status is EndpointStatus.CREATING:
            endpoint.status = EndpointStatus.IN_SERVICE
            logger.info("endpoint %s is InService", endpoint.name)

    def _fail(self, endpoint: LocalEndpoint, reason: str) -> None:
        if endpoint.status is EndpointStatus.DELETING:
            return
        # Stop first: once a caller can see Failed, no process of the endpoint is left.
        self._stop(endpoint)
        self._release_logs(endpoint)
        endpoint.failure_reason = reason[:1024]  # the size SageMaker allows for FailureReason
        endpoint.status = EndpointStatus.FAILED

    def _release_logs(self, endpoint: LocalEndpoint) -> None:
        if self._logs is not None:
            self._logs.release(ENDPOINT_GROUP.format(name=endpoint.name))

    @staticmethod
    def _stop(endpoint: LocalEndpoint) -> None:
        # Signal every instance before waiting for any, so they drain in parallel.
        instances = endpoint.processes()
        for instance in instances:
            instance.terminate()
        for instance in instances:
            instance.reap()
