"""The control plane's limits, read from the environment once, when it starts."""

from __future__ import annotations

import dataclasses
import os
from collections.abc import Mapping
from dataclasses import dataclass

from localmaker.errors import ConfigurationError
from localmaker.local_endpoint.container_paths import ContainerPaths
from localmaker.local_endpoint.settings import DEFAULT_THREADS, server_size

# An instance's gunicorn runs workers x threads requests at once (launch.py's defaults).
DEFAULT_WORKERS = 1
QUEUE_FACTOR = 4  # waiting requests per request in flight, unless LOCALMAKER_MAX_QUEUED_INVOCATIONS says


def _number(environ: Mapping[str, str], name: str, minimum: float) -> float | None:
    raw = environ.get(name, "").strip()
    if not raw:
        return None
    try:
        value = float(raw)
    except ValueError:
        raise ConfigurationError(f"{name}={raw!r} is not a number; set it to one, or unset it") from None
    if value < minimum:
        raise ConfigurationError(f"{name}={raw} must be at least {minimum:g}")
    return value


def _whole(environ: Mapping[str, str], name: str, minimum: int) -> int | None:
    value = _number(environ, name, minimum)
    if value is not None and value != int(value):
        raise ConfigurationError(f"{name}={environ[name]!r} must be a whole number")
    return None if value is None else int(value)


@dataclass(frozen=True)
class ControlPlaneSettings:
    """``None`` for a per-endpoint limit means "derived from the instances that serve it"."""

    max_in_flight: int | None = None
    max_queued: int | None = None
    queue_timeout_s: float = 60.0
    client_timeout_s: float = 60.0
    # What an instance inherits when its model sets neither (instances get the control plane's environment).
    default_workers: int = DEFAULT_WORKERS
    default_threads: int = DEFAULT_THREADS
    # LOCALMAKER_CONTAINER_PATHS: whether instances and training jobs see SageMaker's /opt/ml paths.
    container_paths: ContainerPaths = ContainerPaths()
    # LOCALMAKER_SERVERLESS_IDLE_S: how long a serverless instance beyond the provisioned concurrency stays
    # warm with no request before it is stopped (AWS does not publish its own period).
    serverless_idle_s: float = 300.0
    # LOCALMAKER_ASYNC_DRAIN_TIMEOUT: how long a stopping control plane lets queued async requests finish
    # before it writes failure objects for the rest.
    async_drain_s: float = 30.0

    @classmethod
    def from_env(cls, environ: Mapping[str, str] = os.environ) -> ControlPlaneSettings:
        defaults = cls()
        queue_timeout = _number(environ, "LOCALMAKER_INVOCATION_QUEUE_TIMEOUT", 0)
        client_timeout = _number(environ, "LOCALMAKER_CLIENT_TIMEOUT", 1)
        serverless_idle = _number(environ, "LOCALMAKER_SERVERLESS_IDLE_S", 0.1)
        async_drain = _number(environ, "LOCALMAKER_ASYNC_DRAIN_TIMEOUT", 0)
        return cls(
            max_in_flight=_whole(environ, "LOCALMAKER_MAX_CONCURRENT_INVOCATIONS", 1),
            max_queued=_whole(environ, "LOCALMAKER_MAX_QUEUED_INVOCATIONS", 0),
            queue_timeout_s=defaults.queue_timeout_s if queue_timeout is None else queue_timeout,
            client_timeout_s=defaults.client_timeout_s if client_timeout is None else client_timeout,
            container_paths=ContainerPaths.from_env(environ),
            serverless_idle_s=defaults.serverless_idle_s if serverless_idle is None else serverless_idle,
            async_drain_s=defaults.async_drain_s if async_drain is None else async_drain,
        )._with_server_size(environ)

    def _with_server_size(self, environ: Mapping[str, str]) -> ControlPlaneSettings:
        workers, threads = server_size(environ)
        return dataclasses.replace(self, default_workers=workers, default_threads=threads)

    def instance_slots(self, model_environment: Mapping[str, str]) -> int:
        """Requests one instance runs at once: its gunicorn workers x threads."""
        inherited = {"SAGEMAKER_MODEL_SERVER_WORKERS": str(self.default_workers),
                     "LOCALMAKER_SERVER_THREADS": str(self.default_threads)}
        try:
            workers, threads = server_size({**inherited, **model_environment})
        except ConfigurationError:  # such an instance never starts; sizing its gate must not fail a request
            return self.default_workers * self.default_threads
        return workers * threads
