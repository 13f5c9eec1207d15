"""The queue of one asynchronous endpoint: requests wait here until a worker slot frees.

SageMaker runs at most ``MaxConcurrentInvocationsPerInstance`` requests on each instance and queues the
rest; the number of slots follows the instances in service, so a healed or scaled endpoint takes more
again at once. Every request leaves the queue exactly once: a worker runs it, or ``close`` hands it
back (endpoint deleted, control plane stopped) so that it gets a failure object rather than vanish.
"""

from __future__ import annotations

import logging
import threading
import time
from collections import deque
from collections.abc import Callable

from localmaker.control_plane.async_requests import AsyncRequest

logger = logging.getLogger(__name__)


class QueueClosed(RuntimeError):
    """The endpoint was deleted, or the control plane is stopping, while the request arrived."""


class EndpointQueue:
    """Pending requests of one endpoint, and the threads that run them, ``capacity()`` at a time."""

    def __init__(self, endpoint_name: str, capacity: Callable[[], int], run: Callable[[AsyncRequest], None]) -> None:
        self.endpoint_name = endpoint_name
        self._capacity = capacity
        self._run = run
        self._pending: deque[AsyncRequest] = deque()
        self._running: list[AsyncRequest] = []
        self._closed = False
        self._lock = threading.Lock()
        self._changed = threading.Condition(self._lock)

    def put(self, request: AsyncRequest) -> None:
        with self._lock:
            if self._closed:
                raise QueueClosed(self.endpoint_name)
            self._pending.append(request)
            self._start_workers()

    def pump(self) -> None:
        """Start workers for capacity that appeared (an instance healed, the endpoint scaled out)."""
        with self._lock:
            self._start_workers()

    def _start_workers(self) -> None:
        """The caller holds the lock."""
        if self._closed:
            return
        try:
            capacity = max(1, self._capacity())
        except Exception:  # noqa: BLE001 - a fleet that cannot be read now still gets one worker
            logger.exception("could not size the async queue of %s", self.endpoint_name)
            capacity = 1
        while self._pending and len(self._running) < capacity:
            request = self._pending.popleft()
            self._running.append(request)
            threading.Thread(target=self._work, args=(request,), daemon=True,
                             name=f"async-{self.endpoint_name}-{request.inference_id[:8]}").start()

    def _work(self, request: AsyncRequest) -> None:
        try:
            self._run(request)
        except Exception:  # noqa: BLE001 - the runner settles its own failures; this is a bug of ours
            logger.exception("async request %s of %s failed inside localmaker", request.inference_id,
                             self.endpoint_name)
        finally:
            with self._lock:
                self._running.remove(request)
                self._start_workers()
                self._changed.notify_all()

    def backlog(self) -> tuple[int, float]:
        """Requests waiting or running, and the age in seconds of the oldest of them (0 when none)."""
        with self._lock:
            outstanding = [*self._pending, *self._running]
        if not outstanding:
            return 0, 0.0
        oldest = min(r.received_monotonic for r in outstanding)
        return len(outstanding), max(0.0, time.monotonic() - oldest)

    def wait_until_empty(self, deadline: float) -> bool:
        """Wait (monotonic ``deadline``) until nothing waits or runs; whether that happened."""
        with self._lock:
            while self._pending or self._running:
                remaining = deadline - time.monotonic()
                if remaining <= 0:
                    return False
                self._changed.wait(min(remaining, 0.5))
            return True

    def close(self) -> list[AsyncRequest]:
        """Take no more requests and start none; what still waits or runs, for the caller to fail."""
        with self._lock:
            self._closed = True
            left = [*self._running, *self._pending]
            self._pending.clear()
            return left
