"""Health checks in an instance's log: said once per change of answer, not at every poll.

While a model loads, the control plane asks GET /ping four times a second (and SageMaker's own health
check keeps asking once it serves). Logging each answer filled the instance's log, and so its CloudWatch
stream, with two lines per poll: a 60-second load wrote 480 lines that said one thing. Here a /ping answer
is logged when it differs from the previous one (the first 503 "still loading", then the 200), by the
app's own log and by gunicorn's access log alike. Every other request is logged as before.
"""

from __future__ import annotations

import threading
from typing import Any

from gunicorn.glogging import Logger

PING_PATH = "/ping"


class PingAnswers:
    """The last /ping status seen in this process; ``changed(status)`` says whether this one is news."""

    def __init__(self) -> None:
        self._last: str | None = None
        self._lock = threading.Lock()

    def changed(self, status: int | str) -> bool:
        status = str(status).split(None, 1)[0]
        with self._lock:
            news, self._last = status != self._last, status
            return news


class PingAwareLogger(Logger):
    """gunicorn's logger, whose access log skips a /ping whose status repeats the previous /ping's (the app
    keeps a ``PingAnswers`` of its own for its own log line)."""

    def __init__(self, cfg: Any) -> None:
        super().__init__(cfg)
        self._pings = PingAnswers()

    def access(self, resp: Any, req: Any, environ: dict[str, Any], request_time: Any) -> None:
        if environ.get("PATH_INFO") == PING_PATH and not self._pings.changed(resp.status):
            return
        super().access(resp, req, environ, request_time)
