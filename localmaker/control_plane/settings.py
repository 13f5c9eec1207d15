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
    # LOCALMAKER_MAX_CONNECTIONS, LOCALMAKER_MAX_WAITING_CONNECTIONS: connections the control plane serves at
    # once (one thread each), and accepted ones that wait for a thread; beyond both, 503 + Retry-After at once.
    max_connections: int = 256
    max_waiting_connections: int = 256
    # LOCALMAKER_QUOTA_INSTANCES_PER_TYPE, LOCALMAKER_QUOTA_INSTANCES_TOTAL: account-style quotas, per usage
    # (endpoints, training jobs, transform jobs, as AWS counts them), on the instances (processes) running.
    quota_instances_per_type: int = 16
    quota_instances_total: int = 32
    # LOCALMAKER_MAX_DISK_GB: what the control plane's work root may hold in all (artifacts, models, logs).
    max_disk_bytes: int = 100 * 1024**3
    # LOCALMAKER_LOG_STREAM_MAX_BYTES, LOCALMAKER_LOG_STREAM_MAX_EVENTS: what one log stream ships to
    # CloudWatch Logs (counted as PutLogEvents counts) before it stops with a pointer to the file.
    log_stream_max_bytes: int = 16 * 1024**2
    log_stream_max_events: int = 100_000
    # LOCALMAKER_MAX_LOG_MB: what one instance's or job's log file keeps on disk before it is rotated to
    # <file>.1 (log_rotation.py), so each log takes about twice this at most.
    log_file_max_bytes: int = 64 * 1024**2
    # LOCALMAKER_ALLOWED_ORIGINS: web origins (scheme://host:port, comma-separated) allowed to call the
    # control plane from a browser, besides its own.
    allowed_origins: tuple[str, ...] = ()

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
        )._with_server_size(environ)._with_resource_limits(environ)

    def _with_resource_limits(self, environ: Mapping[str, str]) -> ControlPlaneSettings:
        def whole(name: str, default: int, minimum: int = 1) -> int:
            value = _whole(environ, name, minimum)
            return default if value is None else value

        disk_gb = _number(environ, "LOCALMAKER_MAX_DISK_GB", 0.001)
        log_mb = _number(environ, "LOCALMAKER_MAX_LOG_MB", 0.01)
        origins = environ.get("LOCALMAKER_ALLOWED_ORIGINS", "")
        return dataclasses.replace(
            self,
            max_connections=whole("LOCALMAKER_MAX_CONNECTIONS", self.max_connections),
            max_waiting_connections=whole("LOCALMAKER_MAX_WAITING_CONNECTIONS", self.max_waiting_connections, 0),
            quota_instances_per_type=whole("LOCALMAKER_QUOTA_INSTANCES_PER_TYPE", self.quota_instances_per_type, 0),
            quota_instances_total=whole("LOCALMAKER_QUOTA_INSTANCES_TOTAL", self.quota_instances_total, 0),
            max_disk_bytes=self.max_disk_bytes if disk_gb is None else int(disk_gb * 1024**3),
            log_stream_max_bytes=whole("LOCALMAKER_LOG_STREAM_MAX_BYTES", self.log_stream_max_bytes, 1024**2),
            log_stream_max_events=whole("LOCALMAKER_LOG_STREAM_MAX_EVENTS", self.log_stream_max_events),
            log_file_max_bytes=self.log_file_max_bytes if log_mb is None else int(log_mb * 1024**2),
            allowed_origins=tuple(o.strip().rstrip("/").lower() for o in origins.split(",") if o.strip()),
        )

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
