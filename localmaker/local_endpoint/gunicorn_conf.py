"""gunicorn settings for an endpoint instance; gunicorn loads this file with ``-c``.

The watchdog exists because a control plane killed with SIGKILL cannot stop its instances: each
instance's master notices that its parent is gone and shuts itself down, so no orphan survives.
"""

from __future__ import annotations

import os
import signal
import threading
import time
from typing import Any

worker_class = "gthread"

_PARENT_PID = int(os.environ.get("LOCALMAKER_PARENT_PID", "0") or 0)


def when_ready(server: Any) -> None:
    if _PARENT_PID <= 0:
        return

    def watch_parent() -> None:
        while True:
            time.sleep(0.5)
            if not _parent_alive():
                server.log.warning("control plane (pid %s) is gone; shutting down", _PARENT_PID)
                os.kill(os.getpid(), signal.SIGTERM)
                return

    threading.Thread(target=watch_parent, name="parent-watchdog", daemon=True).start()


def _parent_alive() -> bool:
    # Reparenting (to init or a subreaper) is the reliable sign that the parent died.
    return os.getppid() == _PARENT_PID
