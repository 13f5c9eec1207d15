"""Account-style quotas on the instances a control plane runs, checked before anything starts.

Every instance is a real process (gunicorn and its workers, a training script), so a request for
``InitialInstanceCount=100000`` must be refused, not attempted: AWS refuses it too, with
ResourceLimitExceeded, because every account has a quota per instance type for each usage (endpoints,
training jobs, transform jobs, counted apart) and one on the total. The refusal quotes AWS's own text.

A claim records what an endpoint or job was admitted with. It counts while its owner still runs
(``alive``, asked of the runtime), and, before the runtime has registered it, for a short grace period,
so that two concurrent creates cannot both fit into the last free place. Nothing has to be released by
hand: a deleted endpoint or a finished job stops counting by itself.
"""

from __future__ import annotations

import enum
import threading
import time
from collections import Counter
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field

from localmaker.control_plane.api_errors import ResourceLimitExceeded
from localmaker.control_plane.disk_budget import DiskBudget
from localmaker.control_plane.settings import ControlPlaneSettings

# How long a claim counts before its owner shows up in the runtime: longer than any create request takes.
PENDING_GRACE_S = 30.0


class Usage(enum.Enum):
    """What AWS counts instances for; each has its own quotas (``'ml.m5.xlarge for endpoint usage'``)."""

    ENDPOINT = "endpoint"
    TRAINING = "training job"
    TRANSFORM = "transform job"


@dataclass
class _Claim:
    variants: dict[str, tuple[str, int]]  # variant (or "" for a job) -> (instance type, count)
    admitted_at: float = field(default_factory=time.monotonic)
    pending: bool = True  # not yet seen in the runtime

    def counts(self) -> Counter[str]:
        counted: Counter[str] = Counter()
        for instance_type, count in self.variants.values():
            counted[instance_type] += count
        return counted


class ServiceQuotas:
    """``admit`` raises ResourceLimitExceeded where a request would take a usage over its quota."""

    def __init__(self, per_type: int, total: int, disk: DiskBudget | None = None) -> None:
        self.per_type = per_type
        self.total = total
        self._disk = disk
        self._alive: dict[Usage, Callable[[str], bool]] = {}
        self._claims: dict[tuple[Usage, str], _Claim] = {}
        self._lock = threading.Lock()

    @classmethod
    def from_settings(cls, settings: ControlPlaneSettings | None = None) -> ServiceQuotas:
        settings = settings or ControlPlaneSettings()
        return cls(settings.quota_instances_per_type, settings.quota_instances_total)

    def watch(self, usage: Usage, alive: Callable[[str], bool]) -> None:
        """``alive(owner)``: whether the endpoint or job of that name still runs instances."""
        self._alive[usage] = alive

    def admit(self, usage: Usage, owner: str, variants: Mapping[str, tuple[str, int]],
              keep_current: bool = False) -> None:
        """Claim ``variants`` (name -> (instance type, count)) for ``owner``, or raise ResourceLimitExceeded.

        ``keep_current``: the owner's present instances run on while the new ones start (a blue/green
        UpdateEndpoint), so both count in the check; afterwards only the new ones do.
        """
        if self._disk is not None:
            self._disk.check_room(f"{usage.value} {owner!r}")
        with self._lock:
            in_use = self._in_use(usage)
            current = self._claims.get((usage, owner))
            if current is not None and not keep_current:
                in_use -= current.counts()  # its own instances are replaced, not added to
            claim = _Claim({name: spec for name, spec in variants.items() if spec[0] and spec[1] > 0})
            self._check(usage, in_use, claim.counts())
            self._claims[(usage, owner)] = claim

    def admit_scale(self, owner: str, desired: Mapping[str, int]) -> None:
        """UpdateEndpointWeightsAndCapacities: ``desired`` maps a variant to its new instance count."""
        with self._lock:
            current = self._claims.get((Usage.ENDPOINT, owner))
            if current is None or not desired:  # an endpoint this control plane never admitted
                return
            in_use = self._in_use(Usage.ENDPOINT) - current.counts()
            variants = dict(current.variants)
            for name, count in desired.items():
                if name in variants:
                    variants[name] = (variants[name][0], count)
            claim = _Claim(variants, current.admitted_at, current.pending)
            self._check(Usage.ENDPOINT, in_use, claim.counts())
            self._claims[(Usage.ENDPOINT, owner)] = claim

    def settle(self, usage: Usage, owner: str) -> None:
        """The create request is over: from now on the claim counts only while its owner runs."""
        with self._lock:
            claim = self._claims.get((usage, owner))
            if claim is not None:
                claim.pending = False

    def in_use(self, usage: Usage) -> Counter[str]:
        with self._lock:
            return self._in_use(usage)

    def _in_use(self, usage: Usage) -> Counter[str]:
        alive = self._alive.get(usage, lambda _owner: True)
        now = time.monotonic()
        used: Counter[str] = Counter()
        for (claim_usage, owner), claim in list(self._claims.items()):
            if claim_usage is not usage:
                continue
            if alive(owner):
                claim.pending = False
            elif not (claim.pending and now - claim.admitted_at < PENDING_GRACE_S):
                del self._claims[(claim_usage, owner)]  # deleted, failed or finished: no longer counts
                continue
            used += claim.counts()
        return used

    def _check(self, usage: Usage, in_use: Counter[str], wanted: Counter[str]) -> None:
        for instance_type, delta in sorted(wanted.items()):
            if in_use[instance_type] + delta > self.per_type:
                raise ResourceLimitExceeded(_exceeded(
                    f"{instance_type} for {usage.value} usage", self.per_type, in_use[instance_type], delta,
                    "LOCALMAKER_QUOTA_INSTANCES_PER_TYPE"))
        total_in_use, total_delta = sum(in_use.values()), sum(wanted.values())
        if total_in_use + total_delta > self.total:
            raise ResourceLimitExceeded(_exceeded(f"Number of instances across all {usage.value}s", self.total,
                                                  total_in_use, total_delta, "LOCALMAKER_QUOTA_INSTANCES_TOTAL"))


def _exceeded(quota: str, limit: int, utilization: int, delta: int, variable: str) -> str:
    """AWS's own text, then where localmaker's quota is set (there is no Service Quotas console here)."""
    return (f"The account-level service limit '{quota}' is {limit} Instances, with current utilization of "
            f"{utilization} Instances and a request delta of {delta} Instances. Please use AWS Service Quotas to "
            "request an increase for this quota. If AWS Service Quotas is not available, contact AWS support to "
            f"request an increase for this quota. (localmaker: each instance is a process on this machine; set "
            f"{variable} to change this quota, or delete endpoints and stop jobs you no longer need.)")


def endpoint_variants(variants: object) -> dict[str, tuple[str, int]]:
    """What a list of ``VariantSpec`` asks for; a serverless variant has no instance type and is not counted."""
    claimed: dict[str, tuple[str, int]] = {}
    for variant in variants if isinstance(variants, list) else []:
        if getattr(variant, "serverless", None) is None:
            claimed[variant.variant_name] = (variant.instance_type, variant.instance_count)
    return claimed


def job_instances(instance_type: str, resource_config: object) -> dict[str, tuple[str, int]]:
    """A training job's ``ResourceConfig.InstanceCount`` (1 where unset or malformed: the job's own checks say so)."""
    count = resource_config.get("InstanceCount", 1) if isinstance(resource_config, dict) else 1
    return {"": (instance_type, count if isinstance(count, int) and not isinstance(count, bool) else 1)}
