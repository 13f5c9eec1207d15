"""localmaker's own read-only routes: where instances listen, and how a training job is doing.

Nothing here can load code or models; it only reports what the control plane already runs.
"""

from __future__ import annotations

import os
import re
from urllib.parse import parse_qs

from localmaker.deploy.endpoint_runtime import EndpointRuntime
from localmaker.deploy.training_runtime import TrainingRuntime
from localmaker.deploy.wire import Answer, Environ

PREFIX = "/_localmaker/"
_ENDPOINTS = re.compile(r"^/_localmaker/endpoints(?:/(?P<name>[^/]+))?$")
_TRAINING = re.compile(r"^/_localmaker/training-jobs/(?P<name>[^/]+)(?P<log>/log)?$")
LOG_CHUNK = 1 << 20


class LocalApi:
    def __init__(self, runtime: EndpointRuntime, training: TrainingRuntime) -> None:
        self._runtime = runtime
        self._training = training

    def answer(self, environ: Environ) -> Answer:
        path = environ.get("PATH_INFO", "")
        if environ.get("REQUEST_METHOD") != "GET":
            return Answer.error("MethodNotAllowed", "localmaker's own routes are read-only: use GET", 405)
        if match := _ENDPOINTS.match(path):
            return self._endpoints(match.group("name"))
        if match := _TRAINING.match(path):
            return self._training_job(match.group("name"), bool(match.group("log")), environ)
        return Answer.error("NotFound", f"no such localmaker route: {path}", 404)

    def _endpoints(self, name: str | None) -> Answer:
        if name is None:
            endpoints = [e.describe() for n in self._runtime.names() if (e := self._runtime.get(n))]
            return Answer.of_json(200, {"Endpoints": endpoints})
        endpoint = self._runtime.get(name)
        if endpoint is None:
            return Answer.error("ValidationError", f"Endpoint {name} not found.")
        return Answer.of_json(200, endpoint.describe())

    def _training_job(self, name: str, log: bool, environ: Environ) -> Answer:
        job = self._training.get(name)
        if job is None:
            return Answer.error("ValidationException", f"Training job {name} not found.")
        if not log:
            return Answer.of_json(200, job.describe())
        try:
            offset = max(0, int(parse_qs(environ.get("QUERY_STRING", "")).get("offset", ["0"])[0]))
        except ValueError:
            return Answer.error("ValidationException", "offset must be a whole number of bytes")
        try:
            with open(job.log_file, "rb") as handle:
                # Past the end there is nothing yet; seek() itself fails on offsets beyond 2**63.
                offset = min(offset, os.fstat(handle.fileno()).st_size)
                handle.seek(offset)
                chunk = handle.read(LOG_CHUNK)
        except FileNotFoundError:
            chunk = b""
        return Answer("200 OK", [("Content-Type", "text/plain; charset=utf-8"),
                                 ("X-Log-Next-Offset", str(offset + len(chunk)))], chunk)
