"""What one local endpoint is made of: its status, its variants, their instances, and routing among them.

The runtime (``endpoint_runtime.py``) changes this state; the invocation proxy and the describe
overlays only read it. Routing reads the fleet under the endpoint's lock because a blue/green swap,
a scale-down or a heal can change it between two requests.
"""

from __future__ import annotations

import enum
import itertools
import random
import threading
import time
import uuid
from collections import deque
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from localmaker.control_plane.instance_process import InstanceProcess
from localmaker.control_plane.serverless_config import ServerlessConfig

RETIRED_KEPT = 64


class EndpointStatus(str, enum.Enum):
    CREATING = "Creating"
    IN_SERVICE = "InService"
    UPDATING = "Updating"
    FAILED = "Failed"
    DELETING = "Deleting"

    @property
    def serves_traffic(self) -> bool:
        """SageMaker keeps answering from the current fleet while it updates."""
        return self in (EndpointStatus.IN_SERVICE, EndpointStatus.UPDATING)


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
    # A serverless variant has no instance type; instance_count is then its provisioned concurrency.
    serverless: ServerlessConfig | None = None


@dataclass
class ServingInstance:
    process: InstanceProcess
    device: str
    in_rotation: bool = False  # healthy and taking traffic; a new or dying instance is not
    last_used: float = 0.0  # time.monotonic() of the last request routed to it; a serverless idle clock
    log_stream: str = ""  # its CloudWatch stream, <variant>/<instance-id> (empty: none is shipped)


@dataclass
class Variant:
    spec: VariantSpec
    model_dir: Path
    weight: float
    desired_count: int
    instances: list[ServingInstance] = field(default_factory=list)
    _turn: int = 0

    def in_rotation(self) -> list[ServingInstance]:
        return [i for i in self.instances if i.in_rotation]

    def next_instance(self) -> ServingInstance | None:
        serving = self.in_rotation()
        if not serving:
            return None
        self._turn += 1
        instance = serving[self._turn % len(serving)]
        instance.last_used = time.monotonic()
        return instance


class NoInstanceInService(LookupError):
    """Every instance of the chosen variant is down (being replaced)."""


@dataclass
class RunningEndpoint:
    name: str
    work_dir: Path
    config_name: str
    variants: list[Variant] = field(default_factory=list)
    staged: list[Variant] = field(default_factory=list)  # the green fleet while a blue/green update runs
    status: EndpointStatus = EndpointStatus.CREATING
    failure_reason: str = ""
    lock: threading.Lock = field(default_factory=threading.Lock)
    # Create, update, scale and heal change the fleet one at a time.
    operation: threading.Lock = field(default_factory=threading.Lock)
    # Stopped instances, newest last, so their pids and logs can still be found after a failure.
    retired: deque[ServingInstance] = field(default_factory=lambda: deque(maxlen=RETIRED_KEPT))
    _instance_numbers: Any = field(default_factory=itertools.count)

    def next_instance_id(self, variant_name: str) -> str:
        """An EC2-shaped id (``i-`` and 17 hex digits), as in AWS's ``<variant>/<instance-id>`` log streams.
        Ids never repeat (a counter in the last digits, random ones before it, so endpoints differ too), so a
        replacement or a green instance gets its own log stream. ``variant_name`` is not part of the id."""
        return f"i-0{uuid.uuid4().hex[:12]}{next(self._instance_numbers) % 0x10000:04x}"

    def route(self, target_variant: str | None = None) -> tuple[Variant, ServingInstance]:
        """Pick a variant (by name, else by weight) and, within it, the next instance round-robin.

        Raises KeyError for an unknown target variant and NoInstanceInService when none can answer.
        """
        with self.lock:
            if target_variant:
                matches = [v for v in self.variants if v.spec.variant_name == target_variant]
                if not matches:
                    raise KeyError(target_variant)
                variant = matches[0]
            else:
                candidates = [v for v in self.variants if v.in_rotation()] or self.variants
                weights = [v.weight for v in candidates]
                if not candidates:
                    raise NoInstanceInService(self.name)
                variant = random.choices(candidates, weights=weights if any(weights) else None)[0]
            instance = variant.next_instance()
            if instance is None:
                raise NoInstanceInService(variant.spec.variant_name)
            return variant, instance

    def serves_from(self, instance: ServingInstance) -> bool:
        """Whether ``instance`` is still in the serving fleet's rotation (not swapped out or scaled away)."""
        with self.lock:
            return any(instance is i and i.in_rotation for v in self.variants for i in v.instances)

    def take_out_of_rotation(self, instance: ServingInstance) -> None:
        with self.lock:
            instance.in_rotation = False

    def instances(self) -> list[ServingInstance]:
        """Every instance started and not yet retired, serving or staged."""
        with self.lock:
            return [i for v in (*self.variants, *self.staged) for i in v.instances]

    def processes(self) -> list[InstanceProcess]:
        return [i.process for i in self.instances()]

    def describe(self) -> dict[str, Any]:
        with self.lock:
            return {
                "EndpointName": self.name,
                "EndpointStatus": self.status.value,
                "EndpointConfigName": self.config_name,
                "FailureReason": self.failure_reason,
                "Variants": [_describe_variant(v) for v in self.variants],
                "RetiredInstances": [_describe_instance(i) for i in self.retired],
            }

    def production_variants(self) -> list[dict[str, Any]]:
        """DescribeEndpoint's ProductionVariants, from what actually runs."""
        with self.lock:
            return [_variant_summary(v) for v in self.variants]


def _variant_summary(variant: Variant) -> dict[str, Any]:
    summary: dict[str, Any] = {"VariantName": variant.spec.variant_name, "CurrentWeight": variant.weight,
                               "DesiredWeight": variant.weight}
    serverless = variant.spec.serverless
    if serverless is None:
        return {**summary, "CurrentInstanceCount": len(variant.in_rotation()),
                "DesiredInstanceCount": variant.desired_count}
    # AWS shows a serverless variant's config where an instance-backed one shows its counts.
    return {**summary, "CurrentServerlessConfig": serverless.request(), "DesiredServerlessConfig": serverless.request()}


def _describe_variant(variant: Variant) -> dict[str, Any]:
    return {
        "VariantName": variant.spec.variant_name,
        "InstanceType": variant.spec.instance_type,
        **({"ServerlessConfig": variant.spec.serverless.request()} if variant.spec.serverless else {}),
        "Instances": [{**_describe_instance(i), "Device": i.device} for i in variant.in_rotation()],
    }


def _describe_instance(instance: ServingInstance) -> dict[str, Any]:
    process = instance.process
    return {"InstanceId": process.instance_id, "Url": process.url, "Pid": process.pid, "LogFile": str(process.log_file)}
