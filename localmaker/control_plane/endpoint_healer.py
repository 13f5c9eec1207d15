"""Auto-heal: notice instances whose process died and have the runtime replace them.

SageMaker replaces an instance that fails its health checks and keeps the endpoint InService on the
survivors. Here a dead instance leaves the rotation at once (so no request is routed to it), and a
replacement starts as soon as no create, update or scale holds the endpoint. It heals up to each
variant's desired count; for a serverless variant that is its provisioned concurrency, so instances started
on demand and stopped when idle (serverless_scaler.py) are never healed back.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable

from localmaker.control_plane.endpoint_state import EndpointStatus, RunningEndpoint

logger = logging.getLogger(__name__)

RETRY_AFTER_FAILURE_S = 5.0


class EndpointHealer:
    def __init__(self, endpoints: Callable[[], list[RunningEndpoint]], heal: Callable[[RunningEndpoint], None],
                 interval_s: float = 0.5) -> None:
        self._endpoints = endpoints
        self._heal = heal
        self._interval_s = interval_s
        self._stopped = threading.Event()
        self._thread: threading.Thread | None = None
        self._start_lock = threading.Lock()
        self._not_before: dict[int, float] = {}  # endpoint id -> when a failed heal may be retried

    def start(self) -> None:
        with self._start_lock:
            if self._thread is None:
                self._thread = threading.Thread(target=self._run, name="endpoint-healer", daemon=True)
                self._thread.start()

    def stop(self) -> None:
        self._stopped.set()
        if self._thread is not None:
            self._thread.join(timeout=5)

    def _run(self) -> None:
        while not self._stopped.wait(self._interval_s):
            for endpoint in self._endpoints():
                try:
                    self._check(endpoint)
                except Exception:  # noqa: BLE001 - one endpoint's trouble must not stop healing the others
                    logger.exception("health check of endpoint %s failed", endpoint.name)

    def _check(self, endpoint: RunningEndpoint) -> None:
        if not endpoint.status.serves_traffic:
            return
        with endpoint.lock:
            for variant in endpoint.variants:
                for instance in variant.instances:
                    if instance.in_rotation and instance.process.exited() is not None:
                        instance.in_rotation = False
            short = any(len([i for i in v.instances if i.process.exited() is None]) < v.desired_count
                        for v in endpoint.variants)
        if not short or endpoint.status is not EndpointStatus.IN_SERVICE:
            return
        if time.monotonic() < self._not_before.get(id(endpoint), 0.0):
            return
        if endpoint.operation.acquire(blocking=False):
            threading.Thread(target=self._heal_holding_lock, args=(endpoint,), name=f"heal-{endpoint.name}",
                             daemon=True).start()

    def _heal_holding_lock(self, endpoint: RunningEndpoint) -> None:
        try:
            self._heal(endpoint)
            self._not_before.pop(id(endpoint), None)
        except Exception:  # noqa: BLE001 - logged, and retried after a pause
            logger.exception("could not heal endpoint %s; retrying in %.0fs", endpoint.name, RETRY_AFTER_FAILURE_S)
            self._not_before[id(endpoint)] = time.monotonic() + RETRY_AFTER_FAILURE_S
        finally:
            endpoint.operation.release()
