"""Serverless endpoints' instances: started on demand by an invocation, stopped again when idle.

A serverless variant keeps ``ProvisionedConcurrency`` instances warm (none when it is unset). When an
invocation finds no warm capacity, this starts an instance and the invocation waits for its /ping: that
wait is the cold start, bounded by the variant's startup health-check timeout, and its length is
published as CloudWatch's ``ModelSetupTime`` (microseconds). An instance takes as many requests at once
as its gunicorn runs (workers x threads); a request beyond the warm capacity starts one more, up to
``MaxConcurrency`` instances. Once no request of the endpoint is in flight, an instance with no request
routed to it for the idle period (``LOCALMAKER_SERVERLESS_IDLE_S``) is stopped, down to the provisioned
concurrency; the period counts from the end of the endpoint's last request. The healer replaces dead
instances up to the provisioned concurrency only, never up to a count this scaled down from. Serverless
instances count toward the control plane's total instance quota (service_quotas.py): a cold start that
would take it over is throttled, as AWS throttles an account out of serverless concurrency.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable

from localmaker.control_plane.api_errors import ModelError, ModelNotReady, ServiceUnavailable
from localmaker.control_plane.endpoint_fleet import Deleted
from localmaker.control_plane.endpoint_runtime import EndpointRuntime
from localmaker.control_plane.endpoint_state import EndpointStatus, RunningEndpoint, ServingInstance, Variant
from localmaker.control_plane.invocation_metrics import InvocationMetrics
from localmaker.control_plane.service_quotas import ServiceQuotas
from localmaker.control_plane.settings import ControlPlaneSettings

logger = logging.getLogger(__name__)


def serverless_variant(endpoint: RunningEndpoint) -> Variant | None:
    """The endpoint's serverless variant (a serverless endpoint has exactly one), else None."""
    with endpoint.lock:
        return next((v for v in endpoint.variants if v.spec.serverless is not None), None)


class ServerlessScaler:
    def __init__(self, runtime: EndpointRuntime, in_flight: Callable[[RunningEndpoint], int],
                 settings: ControlPlaneSettings, metrics: InvocationMetrics | None, region: str,
                 quotas: ServiceQuotas | None = None) -> None:
        self._runtime = runtime
        self._quotas = quotas
        self._in_flight = in_flight
        self._settings = settings
        self._metrics = metrics
        self._region = region
        self._cold_starts: dict[str, threading.Lock] = {}
        self._lock = threading.Lock()
        self._stopped = threading.Event()
        self._thread: threading.Thread | None = None

    def make_room(self, endpoint: RunningEndpoint) -> tuple[Variant, ServingInstance] | None:
        """Before routing: start an instance (a cold start) when the warm ones cannot take one more request,
        and return it for the request that waited for it; None when warm capacity suffices.

        Cold starts of one endpoint run one at a time, so a burst starts only the instances it needs.
        """
        variant = serverless_variant(endpoint)
        if variant is None:
            return None
        with self._cold_start_lock(endpoint.name):
            with endpoint.lock:
                live = []
                for instance in variant.instances:
                    if instance.process.exited() is not None:
                        instance.in_rotation = False  # killed while idle: a fresh one takes its place
                    elif instance.in_rotation:
                        live.append(instance)
            capacity = len(live) * self._settings.instance_slots(variant.spec.environment)
            spec = variant.spec.serverless
            assert spec is not None
            if capacity >= max(1, self._in_flight(endpoint)) or len(live) >= spec.max_concurrency:
                return None
            if self._quotas is None:
                return variant, self._cold_start(endpoint, variant)
            with self._quotas.cold_start(endpoint.name):  # every instance is a process: the total quota holds
                return variant, self._cold_start(endpoint, variant)

    def _cold_start(self, endpoint: RunningEndpoint, variant: Variant) -> ServingInstance:
        fleet = self._runtime.fleet
        started = time.monotonic()
        timeout_s = fleet.startup_timeout([variant])
        instance: ServingInstance | None = None
        try:
            instance = fleet.launch(endpoint, variant)
            logger.info("cold start of endpoint %s: starting %s", endpoint.name, instance.process.instance_id)
            fleet.await_health(endpoint, [instance], timeout_s)
        except BaseException as exc:
            if instance is not None:
                fleet.forget(endpoint, [instance])
                fleet.retire(endpoint, [instance])
            if isinstance(exc, Deleted):
                raise ServiceUnavailable(f"endpoint {endpoint.name} is being deleted", retry_after_s=1) from None
            if isinstance(exc, TimeoutError):
                raise ModelNotReady(f"the serverless endpoint {endpoint.name} is still starting compute for this "
                                    f"request: {exc}; retry later") from exc
            if isinstance(exc, Exception):
                logger.warning("cold start of endpoint %s failed: %s", endpoint.name, exc)
                raise ModelError(self._region, endpoint.name, 500,
                                 f"the model failed to load on a new serverless instance: {exc}") from exc
            raise
        setup_s = time.monotonic() - started
        with endpoint.lock:
            instance.in_rotation = True
            instance.last_used = time.monotonic()
        logger.info("endpoint %s: %s is warm after a %.1f s cold start", endpoint.name,
                    instance.process.instance_id, setup_s)
        if self._metrics is not None:
            self._metrics.record_setup_time(endpoint.name, variant.spec.variant_name, setup_s)
        self._start_idle_watch()
        return instance

    def _cold_start_lock(self, name: str) -> threading.Lock:
        with self._lock:
            return self._cold_starts.setdefault(name, threading.Lock())

    # -- scaling in ----------------------------------------------------------------------------------

    def _start_idle_watch(self) -> None:
        with self._lock:
            if self._thread is None:
                self._thread = threading.Thread(target=self._watch, name="serverless-idle", daemon=True)
                self._thread.start()

    def stop(self) -> None:
        self._stopped.set()

    def _watch(self) -> None:
        """Runs while any serverless endpoint exists; the next cold start starts it again."""
        interval_s = min(1.0, self._settings.serverless_idle_s / 4)
        while not self._stopped.wait(interval_s):
            with self._lock:  # decided under the lock that a cold start takes to see whether this runs
                endpoints = [e for n in self._runtime.names() if (e := self._runtime.get(n)) and serverless_variant(e)]
                if not endpoints:
                    self._thread = None
                    return
            for endpoint in endpoints:
                try:
                    self.scale_in(endpoint)
                except Exception:  # noqa: BLE001 - one endpoint's trouble must not stop the others scaling in
                    logger.exception("scaling in serverless endpoint %s failed", endpoint.name)

    def scale_in(self, endpoint: RunningEndpoint) -> None:
        """Stop instances idle past the idle period, and dead ones, down to the provisioned concurrency."""
        variant = serverless_variant(endpoint)
        if variant is None or endpoint.status is not EndpointStatus.IN_SERVICE:
            return
        if self._in_flight(endpoint):
            # Which instance runs which request is not tracked, so while any runs, none counts as idle: the
            # idle period starts when the last request ends (to within one round of this watch).
            now = time.monotonic()
            with endpoint.lock:
                for instance in variant.instances:
                    instance.last_used = now
            return
        if not endpoint.operation.acquire(blocking=False):
            return  # an update or a heal holds the fleet: next round
        try:
            now = time.monotonic()
            with endpoint.lock:
                dead = [i for i in variant.instances if i.process.exited() is not None]
                alive = sorted((i for i in variant.instances if i.process.exited() is None),
                               key=lambda i: i.last_used)
                surplus = max(0, len(alive) - variant.desired_count)
                idle = [i for i in alive[:surplus] if now - i.last_used >= self._settings.serverless_idle_s]
                # Dead ones beyond the provisioned concurrency are not replaced; within it, the healer does.
                gone = dead[:max(0, len(variant.instances) - variant.desired_count)]
                for instance in idle:
                    instance.in_rotation = False
            if not idle and not gone:
                return
            fleet = self._runtime.fleet
            fleet.forget(endpoint, idle + gone)
            fleet.retire(endpoint, gone)
            fleet.retire(endpoint, idle, drain=True)
            if idle:
                logger.info("serverless endpoint %s scaled in after %.0f s idle: stopped %s", endpoint.name,
                            self._settings.serverless_idle_s, ", ".join(i.process.instance_id for i in idle))
        finally:
            endpoint.operation.release()
