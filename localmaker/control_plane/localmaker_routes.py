"""localmaker's own read-only routes: where instances listen, and how a training job is doing.

Nothing here can load code or models; it only reports what the control plane already runs. A name it
does not know is answered as the SageMaker API answers it (moto's DescribeEndpoint and
DescribeTrainingJob, word for word), so a script sees the same error on either path.
"""

from __future__ import annotations

import os
import re
from urllib.parse import parse_qs

from localmaker.control_plane.answers import Answer, Environ
from localmaker.control_plane.api_errors import (
    EndpointNotFound,
    MethodNotAllowed,
    NotFound,
    TrainingJobNotFound,
    ValidationException,
)
from localmaker.control_plane.endpoint_runtime import EndpointRuntime
from localmaker.control_plane.training_runtime import TrainingRuntime

PREFIX = "/_localmaker/"
_ENDPOINTS = re.compile(r"^/_localmaker/endpoints(?:/(?P<name>[^/]+))?$")
_TRAINING = re.compile(r"^/_localmaker/training-jobs/(?P<name>[^/]+)(?P<log>/log)?$")
LOG_CHUNK = 1 << 20


class LocalmakerRoutes:
    """Answers a GET under PREFIX, or raises an ApiError that the control plane's app serializes."""

    def __init__(self, runtime: EndpointRuntime, training: TrainingRuntime, region: str) -> None:
        self._runtime = runtime
        self._training = training
        self._region = region

    def answer(self, environ: Environ) -> Answer:
        path = environ.get("PATH_INFO", "")
        if environ.get("REQUEST_METHOD") != "GET":
            raise MethodNotAllowed("localmaker's own routes are read-only: use GET")
        if match := _ENDPOINTS.match(path):
            return self._endpoints(match.group("name"))
        if match := _TRAINING.match(path):
            return self._training_job(match.group("name"), bool(match.group("log")), environ)
        raise NotFound(f"no such localmaker route: {path}")

    def _endpoints(self, name: str | None) -> Answer:
        if name is None:
            endpoints = [e.describe() for n in self._runtime.names() if (e := self._runtime.get(n))]
            return Answer.of_json(200, {"Endpoints": endpoints})
        endpoint = self._runtime.get(name)
        if endpoint is None:
            raise EndpointNotFound(self._region, name)
        return Answer.of_json(200, endpoint.describe())

    def _training_job(self, name: str, log: bool, environ: Environ) -> Answer:
        job = self._training.get(name)
        if job is None:
            raise TrainingJobNotFound(self._region, name)
        if not log:
            return Answer.of_json(200, job.describe())
        try:
            offset = max(0, int(parse_qs(environ.get("QUERY_STRING", "")).get("offset", ["0"])[0]))
        except ValueError:
            raise ValidationException("offset must be a whole number of bytes") from None
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
