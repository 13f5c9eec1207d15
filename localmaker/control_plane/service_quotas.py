"""Account-style quotas on the instances a control plane runs, checked before anything starts.

Every instance is a real process (gunicorn and its workers, a training script), so a request for
``InitialInstanceCount=100000`` must be refused, not attempted: AWS refuses it too, with
ResourceLimitExceeded, because every account has a quota per instance type for each usage (endpoints,
training jobs, transform jobs, counted apart) and one on the total. The refusal quotes AWS's own text.

A claim records what an endpoint or job was admitted with. A job's claim counts while the job runs
(``alive``, asked of the runtime). An endpoint counts what the runtime holds for it (``FleetUse``): its
serving variants' instances, and a serverless variant's live instances (toward the total only: they have
no instance type). While its create, update or scale is under way, the claim counts too (an update's old
fleet serves while the new one starts, so both count); once that is over, only what runs counts, so an
update refused as busy or rolled back leaves no trace. Before the runtime has registered a new owner, its
claim counts for a short grace period, so that two concurrent creates cannot both fit into the last free
place. Nothing has to be released by hand: a deleted endpoint or a finished job stops counting by itself.
"""

from __future__ import annotations

import enum
import threading
import time
from collections import Counter
from collections.abc import Callable, Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass, field

from localmaker.control_plane.api_errors import ResourceLimitExceeded, ThrottlingException
from localmaker.control_plane.disk_budget import DiskBudget
from localmaker.control_plane.endpoint_state import EndpointStatus, RunningEndpoint
from localmaker.control_plane.settings import ControlPlaneSettings

# How long a claim counts before its owner shows up in the runtime: longer than any create request takes.
PENDING_GRACE_S = 30.0
# The instance type serverless instances count under: the total quota counts them, no per-type quota does.
SERVERLESS = "serverless"


class Usage(enum.Enum):
    """What AWS counts instances for; each has its own quotas (``'ml.m5.xlarge for endpoint usage'``)."""

    ENDPOINT = "endpoint"
    TRAINING = "training job"
    TRANSFORM = "transform job"


def _counts(variants: Mapping[str, tuple[str, int]]) -> Counter[str]:
    counted: Counter[str] = Counter()
    for instance_type, count in variants.values():
        counted[instance_type] += count
    return counted


@dataclass(frozen=True)
class FleetUse:
    """What the runtime holds for one endpoint now."""

    variants: Mapping[str, tuple[str, int]]  # serving variant -> (instance type or SERVERLESS, instances)
    changing: bool  # an update or a scale is under way


@dataclass
class _Claim:
    variants: dict[str, tuple[str, int]]  # variant (or "" for a job) -> (instance type, count)
    admitted_at: float = field(default_factory=time.monotonic)
    pending: bool = True  # its request is not over yet
    keep_current: bool = False  # a blue/green update: the owner's serving fleet runs on beside it

    def counts(self) -> Counter[str]:
        return _counts(self.variants)


class ServiceQuotas:
    """``admit`` raises ResourceLimitExceeded where a request would take a usage over its quota."""

    def __init__(self, per_type: int, total: int, disk: DiskBudget | None = None) -> None:
        self.per_type = per_type
        self.total = total
        self._disk = disk
        self._alive: dict[Usage, Callable[[str], bool]] = {}
        self._fleet: Callable[[str], FleetUse | None] | None = None
        self._claims: dict[tuple[Usage, str], _Claim] = {}
        self._cold_starts = 0  # serverless instances being started, not yet in any fleet
        self._lock = threading.Lock()

    @classmethod
    def from_settings(cls, settings: ControlPlaneSettings | None = None) -> ServiceQuotas:
        settings = settings or ControlPlaneSettings()
        return cls(settings.quota_instances_per_type, settings.quota_instances_total)

    def watch(self, usage: Usage, alive: Callable[[str], bool]) -> None:
        """``alive(owner)``: whether the job of that name still runs instances."""
        self._alive[usage] = alive

    def watch_endpoints(self, fleet: Callable[[str], FleetUse | None]) -> None:
        """``fleet(name)``: what the runtime holds for that endpoint, None where it runs nothing."""
        self._fleet = fleet

    def admit(self, usage: Usage, owner: str, variants: Mapping[str, tuple[str, int]],
              keep_current: bool = False) -> None:
        """Claim ``variants`` (name -> (instance type, count)) for ``owner``, or raise ResourceLimitExceeded.

        ``keep_current``: the owner's present instances run on while the new ones start (a blue/green
        UpdateEndpoint), so both count in the check and until the update is over.
        """
        if self._disk is not None:
            self._disk.check_room(f"{usage.value} {owner!r}")
        with self._lock:
            in_use = self._in_use(usage, skip=owner)
            if keep_current:
                in_use += self._serving(owner)
            claim = _Claim({name: spec for name, spec in variants.items() if spec[0] and spec[1] > 0},
                           keep_current=keep_current)
            self._check(usage, in_use, claim.counts())
            self._claims[(usage, owner)] = claim

    def admit_scale(self, owner: str, desired: Mapping[str, int]) -> None:
        """UpdateEndpointWeightsAndCapacities: ``desired`` maps a variant to its new instance count."""
        with self._lock:
            fleet = self._fleet(owner) if self._fleet else None
            current = self._claims.get((Usage.ENDPOINT, owner))
            base = fleet.variants if fleet is not None else current.variants if current is not None else None
            if base is None or not desired:  # an endpoint this control plane does not run
                return
            variants = {name: (kind, desired.get(name, count) if kind != SERVERLESS else count)
                        for name, (kind, count) in base.items()}
            claim = _Claim({name: spec for name, spec in variants.items() if spec[0] != SERVERLESS})
            self._check(Usage.ENDPOINT, self._in_use(Usage.ENDPOINT, skip=owner), claim.counts())
            self._claims[(Usage.ENDPOINT, owner)] = claim

    def settle(self, usage: Usage, owner: str) -> None:
        """The create, update or scale request is over (the runtime holds what it started, or it failed)."""
        with self._lock:
            claim = self._claims.get((usage, owner))
            if claim is not None:
                claim.pending = False

    @contextmanager
    def cold_start(self, owner: str) -> Iterator[None]:
        """Hold a place for one more serverless instance of ``owner`` while it starts, or raise
        ThrottlingException where the instances running already fill the total quota."""
        with self._lock:
            in_use = sum(self._in_use(Usage.ENDPOINT).values()) + self._cold_starts
            if in_use + 1 > self.total:
                raise ThrottlingException(
                    f"Rate exceeded: serverless endpoint {owner} needs one more instance, and the {in_use} "
                    f"instances running for endpoints fill the quota of {self.total} (localmaker: each is a "
                    "process on this machine; set LOCALMAKER_QUOTA_INSTANCES_TOTAL to change it). Retry with "
                    "backoff, or delete endpoints you no longer need.")
            self._cold_starts += 1
        try:
            yield
        finally:
            with self._lock:
                self._cold_starts -= 1

    def in_use(self, usage: Usage) -> Counter[str]:
        with self._lock:
            return self._in_use(usage)

    def _in_use(self, usage: Usage, skip: str | None = None) -> Counter[str]:
        now = time.monotonic()
        used: Counter[str] = Counter()
        for (claim_usage, owner), claim in list(self._claims.items()):
            if claim_usage is not usage or owner == skip:
                continue
            counted = self._owner_use(usage, owner, claim, now)
            if counted is None:  # deleted, failed or finished: no longer counts
                del self._claims[(claim_usage, owner)]
                continue
            used += counted
        return used

    def _owner_use(self, usage: Usage, owner: str, claim: _Claim, now: float) -> Counter[str] | None:
        """What ``owner`` counts now; None once it runs nothing and its claim's grace is over."""
        in_grace = claim.pending and now - claim.admitted_at < PENDING_GRACE_S
        if usage is Usage.ENDPOINT and self._fleet is not None:
            fleet = self._fleet(owner)
            if fleet is None:
                return claim.counts() if in_grace else None
            serving = _counts(fleet.variants)
            if not (claim.pending or fleet.changing):
                return serving
            if claim.keep_current:
                return serving + claim.counts()
            return serving | claim.counts()  # per type, the larger: a create or a scale on its way
        if not self._alive.get(usage, lambda _owner: True)(owner):
            return claim.counts() if in_grace else None
        claim.pending = False
        return claim.counts()

    def _serving(self, owner: str) -> Counter[str]:
        fleet = self._fleet(owner) if self._fleet else None
        return _counts(fleet.variants) if fleet is not None else Counter()

    def _check(self, usage: Usage, in_use: Counter[str], wanted: Counter[str]) -> None:
        for instance_type, delta in sorted(wanted.items()):
            if instance_type != SERVERLESS and in_use[instance_type] + delta > self.per_type:
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


def fleet_use(endpoint: RunningEndpoint | None) -> FleetUse | None:
    """What ``endpoint`` runs, as the quotas count it; None for a missing or Failed one (no instance runs)."""
    if endpoint is None or endpoint.status is EndpointStatus.FAILED:
        return None
    with endpoint.lock:
        variants = {}
        for variant in endpoint.variants:
            if variant.spec.serverless is not None:
                live = sum(1 for instance in variant.instances if instance.process.exited() is None)
                variants[variant.spec.variant_name] = (SERVERLESS, live)
            else:
                variants[variant.spec.variant_name] = (variant.spec.instance_type, variant.desired_count)
    return FleetUse(variants, endpoint.status in (EndpointStatus.CREATING, EndpointStatus.UPDATING))


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
