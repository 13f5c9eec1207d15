"""localmaker's own read-only routes: where instances listen, and how a training or transform job is doing.

Nothing here can load code or models; it only reports what the control plane already runs. A name it
does not know is answered as the SageMaker API answers it (moto's DescribeEndpoint and
DescribeTrainingJob, word for word), so a script sees the same error on either path.
"""

from __future__ import annotations

import os
import re
from collections.abc import Callable
from typing import Any
from urllib.parse import parse_qs

from localmaker.control_plane.answers import Answer, Environ
from localmaker.control_plane.api_errors import (
    EndpointNotFound,
    MethodNotAllowed,
    NotFound,
    TrainingJobNotFound,
    TransformJobNotFound,
    ValidationException,
)
from localmaker.control_plane.endpoint_runtime import EndpointRuntime
from localmaker.control_plane.endpoint_state import RunningEndpoint
from localmaker.control_plane.training_runtime import TrainingRuntime
from localmaker.control_plane.transform_runtime import TransformRuntime

PREFIX = "/_localmaker/"
_ENDPOINTS = re.compile(r"^/_localmaker/endpoints(?:/(?P<name>[^/]+))?$")
_TRAINING = re.compile(r"^/_localmaker/training-jobs/(?P<name>[^/]+)(?P<log>/log)?$")
_TRANSFORM = re.compile(r"^/_localmaker/transform-jobs/(?P<name>[^/]+)$")
LOG_CHUNK = 1 << 20


class LocalmakerRoutes:
    """Answers a GET under PREFIX, or raises an ApiError that the control plane's app serializes."""

    def __init__(self, runtime: EndpointRuntime, training: TrainingRuntime, transform: TransformRuntime,
                 region: str, is_async: Callable[[str], bool] = lambda _name: False) -> None:
        self._runtime = runtime
        self._training = training
        self._transform = transform
        self._region = region
        self._is_async = is_async

    def answer(self, environ: Environ) -> Answer:
        path = environ.get("PATH_INFO", "")
        if environ.get("REQUEST_METHOD") != "GET":
            raise MethodNotAllowed("localmaker's own routes are read-only: use GET")
        if match := _ENDPOINTS.match(path):
            return self._endpoints(match.group("name"))
        if match := _TRAINING.match(path):
            return self._training_job(match.group("name"), bool(match.group("log")), environ)
        if match := _TRANSFORM.match(path):
            return self._transform_job(match.group("name"))
        raise NotFound(f"no such localmaker route: {path}")

    def _endpoints(self, name: str | None) -> Answer:
        if name is None:
            endpoints = [self._describe(e) for n in self._runtime.names() if (e := self._runtime.get(n))]
            return Answer.of_json(200, {"Endpoints": endpoints})
        endpoint = self._runtime.get(name)
        if endpoint is None:
            raise EndpointNotFound(self._region, name)
        return Answer.of_json(200, self._describe(endpoint))

    def _describe(self, endpoint: RunningEndpoint) -> dict[str, Any]:
        # An async endpoint takes InvokeEndpointAsync only: a client must not post to its instances.
        return {**endpoint.describe(), "AsyncInference": self._is_async(endpoint.name)}

    def _transform_job(self, name: str) -> Answer:
        """Status, progress and instances of a transform job, for progress bars."""
        job = self._transform.get(name)
        if job is None:
            raise TransformJobNotFound(self._region, name)
        return Answer.of_json(200, job.describe())

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
                # Past the end, the file was rotated (log_rotation.py) since the caller last read: it starts
                # again from the rotation's marker, which names the copy that holds the lines in between.
                if offset > os.fstat(handle.fileno()).st_size:
                    offset = 0
                handle.seek(offset)
                chunk = handle.read(LOG_CHUNK)
        except FileNotFoundError:
            chunk = b""
        return Answer("200 OK", [("Content-Type", "text/plain; charset=utf-8"),
                                 ("X-Log-Next-Offset", str(offset + len(chunk)))], chunk)
