"""How many InvokeEndpoint requests an endpoint takes at once, and what becomes of the others.

An instance runs workers x threads requests at a time. More sent to it would wait inside gunicorn,
where nothing bounds the wait and nothing can answer for them. So the control plane keeps at most
that many in flight per endpoint, lets a bounded queue wait for a slot for a bounded time, and refuses
the rest at once with 503 and Retry-After (botocore retries those by itself). A request runs, waits a
bounded time, or is refused: it never hangs.

A serverless endpoint admits ``MaxConcurrency`` requests at once and queues none: the one beyond is
throttled at once (the proxy answers ThrottlingException, HTTP 429), as AWS throttles it.

Every invocation, running or queued, holds one of the control plane's server threads
(LOCALMAKER_MAX_CONNECTIONS), and a model's own code may call the control plane too (S3, to fetch what a
request names). If invocations could take every thread, such a call would wait for a thread that only its
own invocation's end could free: a deadlock until the timeouts. So all endpoints' invocations together
take at most three quarters of the threads (``ThreadShare``); the one beyond is refused at once.
"""

from __future__ import annotations

import contextlib
import threading
import time
from collections.abc import Callable, Iterator

from localmaker.control_plane.endpoint_state import RunningEndpoint
from localmaker.control_plane.settings import QUEUE_FACTOR, ControlPlaneSettings

RETRY_AFTER_S = 1
# A waiter also wakes this often, because an instance joining the rotation raises the limit without
# anyone releasing a slot.
RECHECK_S = 0.25


class Refused(Exception):
    """No slot now, nor within the queue's wait: the caller should try again after ``retry_after_s``."""

    def __init__(self, message: str, retry_after_s: int = RETRY_AFTER_S) -> None:
        super().__init__(message)
        self.retry_after_s = retry_after_s


class Throttled(Refused):
    """A serverless endpoint already runs its MaxConcurrency of requests."""


class ThreadShare:
    """The server threads that invocations of all endpoints may hold at once; the rest stay for other calls."""

    def __init__(self, max_connections: int) -> None:
        self.reserved = max(1, max_connections // 4)
        self.limit = max(1, max_connections - self.reserved)
        self._held = 0
        self._lock = threading.Lock()

    @contextlib.contextmanager
    def held(self) -> Iterator[None]:
        with self._lock:
            if self._held >= self.limit:
                raise Refused(f"the control plane already serves {self._held} invocations, the most it runs at once: "
                              f"{self.reserved} of its {self.limit + self.reserved} threads "
                              "(LOCALMAKER_MAX_CONNECTIONS) stay free for S3 and API calls, which a model's own "
                              f"code may make; retry after {RETRY_AFTER_S} s")
            self._held += 1
        try:
            yield
        finally:
            with self._lock:
                self._held -= 1


class AdmissionGate:
    """Counts one endpoint's requests in flight and waiting, against limits read at each arrival."""

    def __init__(self, limit: Callable[[], int], max_queued: Callable[[int], int], queue_timeout_s: float,
                 refusal: Callable[[], type[Refused]] = lambda: Refused, share: ThreadShare | None = None) -> None:
        self._share = share
        self._limit = limit
        self._max_queued = max_queued
        self._queue_timeout_s = queue_timeout_s
        self._refusal = refusal
        self._changed = threading.Condition()
        self._in_flight = 0
        self._waiting = 0

    @property
    def in_flight(self) -> int:
        with self._changed:
            return self._in_flight

    @contextlib.contextmanager
    def slot(self) -> Iterator[None]:
        """Hold one slot for the ``with`` block; raises Refused when none comes in time."""
        with self._share.held() if self._share is not None else contextlib.nullcontext():
            self._acquire()
            try:
                yield
            finally:
                with self._changed:
                    self._in_flight -= 1
                    self._changed.notify()

    def _acquire(self) -> None:
        with self._changed:
            limit = self._limit()
            if self._in_flight < limit:
                self._in_flight += 1
                return
            queued = self._max_queued(limit)
            if self._waiting >= queued:
                raise self._refusal()(f"the endpoint is at capacity, in flight: {self._in_flight} (limit {limit}), "
                                    f"waiting: {self._waiting} (limit {queued})")
            self._waiting += 1
            try:
                deadline = time.monotonic() + self._queue_timeout_s
                while self._in_flight >= self._limit():
                    remaining = deadline - time.monotonic()
                    if remaining <= 0:
                        raise Refused(f"no capacity freed up within {self._queue_timeout_s:g} s, "
                                      f"in flight: {self._in_flight} (limit {self._limit()})")
                    self._changed.wait(min(remaining, RECHECK_S))
                self._in_flight += 1
            finally:
                self._waiting -= 1
                self._changed.notify()  # the next waiter may fit too, e.g. after the limit rose


class EndpointGates:
    """One gate per endpoint, sized from the endpoint's instances in service unless settings fix it."""

    def __init__(self, settings: ControlPlaneSettings) -> None:
        self._settings = settings
        self._share = ThreadShare(settings.max_connections)
        self._gates: dict[str, tuple[RunningEndpoint, AdmissionGate]] = {}
        self._lock = threading.Lock()

    def gate(self, endpoint: RunningEndpoint) -> AdmissionGate:
        with self._lock:
            held = self._gates.get(endpoint.name)
            if held is None or held[0] is not endpoint:  # a new endpoint, or one deleted and created again
                held = (endpoint, self._new_gate(endpoint))
                self._gates[endpoint.name] = held
            return held[1]

    def _new_gate(self, endpoint: RunningEndpoint) -> AdmissionGate:
        # Read at each arrival: an UpdateEndpoint can turn an endpoint serverless, or back.
        return AdmissionGate(lambda: self.limit(endpoint),
                             lambda limit: 0 if _max_concurrency(endpoint) else self._max_queued(limit),
                             self._settings.queue_timeout_s,
                             lambda: Throttled if _max_concurrency(endpoint) else Refused, self._share)

    def in_flight(self, endpoint: RunningEndpoint) -> int:
        """Requests of ``endpoint`` holding a slot now."""
        with self._lock:
            held = self._gates.get(endpoint.name)
        return held[1].in_flight if held is not None and held[0] is endpoint else 0

    def forget(self, name: str) -> None:
        with self._lock:
            self._gates.pop(name, None)

    def limit(self, endpoint: RunningEndpoint) -> int:
        most = _max_concurrency(endpoint)
        if most is not None:  # serverless: its own limit, whatever the settings say
            return most
        if self._settings.max_in_flight is not None:
            return self._settings.max_in_flight
        with endpoint.lock:
            serving = [(v.spec.environment, len(v.in_rotation())) for v in endpoint.variants]
        # At least one, so that an endpoint between instances reaches the proxy, which says so at once.
        return max(1, sum(self._settings.instance_slots(env) * count for env, count in serving))

    def _max_queued(self, limit: int) -> int:
        return self._settings.max_queued if self._settings.max_queued is not None else QUEUE_FACTOR * limit


def _max_concurrency(endpoint: RunningEndpoint) -> int | None:
    """A serverless endpoint's MaxConcurrency; None for an instance-backed one."""
    with endpoint.lock:
        return next((v.spec.serverless.max_concurrency for v in endpoint.variants if v.spec.serverless), None)
