"""gunicorn settings for an endpoint instance; gunicorn loads this file with ``-c``.

The watchdog exists because a control plane killed with SIGKILL cannot stop its instances: each
instance's master notices that its parent is gone and ends the instance, so no orphan survives. It does
not wait for requests in flight: their caller is gone, and gunicorn's graceful drain would wait for a
model call as long as the model-server timeout (minutes). After a short grace, the whole instance is
killed: the master's process group when the master leads one (it does when the control plane starts
it), else the master and its workers.
"""

from __future__ import annotations

import contextlib
import os
import signal
import threading
import time
from typing import Any

# gthread, with each request read whole before it takes a thread (request_front.py).
worker_class = "localmaker.local_endpoint.request_front.BufferingThreadWorker"
# The access log says a /ping once per change of answer, not at every readiness poll (readiness_log.py).
logger_class = "localmaker.local_endpoint.readiness_log.PingAwareLogger"

_PARENT_PID = int(os.environ.get("LOCALMAKER_PARENT_PID", "0") or 0)
WATCH_INTERVAL_S = 0.5
ORPHAN_GRACE_S = 2.0  # for idle workers to leave on their own, before everything left is killed


def when_ready(server: Any) -> None:
    if _PARENT_PID <= 0:
        return

    def watch_parent() -> None:
        while _parent_alive():
            time.sleep(WATCH_INTERVAL_S)
        server.log.warning("control plane (pid %s) is gone; shutting down", _PARENT_PID)
        os.kill(os.getpid(), signal.SIGTERM)
        time.sleep(ORPHAN_GRACE_S)  # an idle instance has exited by now, and this thread with it
        server.log.warning("requests still in flight after %gs, with nobody to answer; killing the instance",
                           ORPHAN_GRACE_S)
        _kill_instance(server)

    threading.Thread(target=watch_parent, name="parent-watchdog", daemon=True).start()


def _parent_alive() -> bool:
    # Reparenting (to init or a subreaper) is the reliable sign that the parent died.
    return os.getppid() == _PARENT_PID


def _kill_instance(server: Any) -> None:
    """SIGKILL the workers (and what they started, when the group is the instance's own), then the master."""
    master = os.getpid()
    if os.getpgid(0) == master:  # a group of its own: it names every worker, and whatever a handler forked
        os.killpg(master, signal.SIGKILL)
    for pid in list(server.WORKERS):  # not the group leader (``localmaker serve`` in a shell): never the group
        with contextlib.suppress(ProcessLookupError):
            os.kill(pid, signal.SIGKILL)
    os.kill(master, signal.SIGKILL)
