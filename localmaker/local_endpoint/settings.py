"""Container settings, read from the environment once at start-up (SageMaker's names where they exist)."""

from __future__ import annotations

import os
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path

from localmaker.errors import ConfigurationError
from localmaker.spec.media_types import JSON
from localmaker.spec.names import DEFAULT_PROGRAM, MAX_PAYLOAD_BYTES, SAGEMAKER_MODEL_DIR

DEFAULT_THREADS = 32
DEFAULT_TIMEOUT_S = 60
# LOCALMAKER_CLIENT_TIMEOUT: how long a client may fall silent in the middle of its request; the control
# plane reads the same variable with the same default, so an instance bounds slow clients as it does.
DEFAULT_CLIENT_TIMEOUT_S = 60.0
# LOCALMAKER_INSTANCE_BUFFER_MB: request bytes one worker holds in all, read but not yet taken by the app
# (about twenty requests at the 6 MB limit); beyond it a connection is answered 503 InstanceBusy.
DEFAULT_REQUEST_BUFFER_MB = 128
# SAGEMAKER_TS_BATCH_SIZE: requests gathered into one predict_batch_fn call (not texts per forward pass).
DEFAULT_MAX_BATCH_REQUESTS = 32
DEFAULT_BATCH_DELAY_MS = 10
# The Accept that a request without one (or with */*) reaches output_fn with: the SageMaker inference
# toolkit's environment.Environment.default_accept (parameters.DEFAULT_INVOCATIONS_ACCEPT_ENV).
DEFAULT_ACCEPT_ENV = "SAGEMAKER_DEFAULT_INVOCATIONS_ACCEPT"


def _int(environ: Mapping[str, str], name: str, default: int, minimum: int = 1) -> int:
    raw = environ.get(name)
    if raw is None or raw == "":
        return default
    try:
        value = int(raw)
    except ValueError:
        raise ConfigurationError(f"{name}={raw!r} is not an integer; set it to a whole number") from None
    if value < minimum:
        raise ConfigurationError(f"{name}={value} must be at least {minimum}")
    return value


def request_buffer_bytes(environ: Mapping[str, str]) -> int:
    return _int(environ, "LOCALMAKER_INSTANCE_BUFFER_MB", DEFAULT_REQUEST_BUFFER_MB) * 1024 * 1024


def server_size(environ: Mapping[str, str]) -> tuple[int, int]:
    """gunicorn workers, and threads per worker, of an instance with this environment.

    One reading for the worker's settings, the gunicorn command line and the control plane's capacity.
    """
    return (_int(environ, "SAGEMAKER_MODEL_SERVER_WORKERS", 1),
            _int(environ, "LOCALMAKER_SERVER_THREADS", DEFAULT_THREADS))


def client_timeout(environ: Mapping[str, str]) -> float:
    raw = (environ.get("LOCALMAKER_CLIENT_TIMEOUT") or "").strip()
    if not raw:
        return DEFAULT_CLIENT_TIMEOUT_S
    try:
        value = float(raw)
    except ValueError:
        raise ConfigurationError(f"LOCALMAKER_CLIENT_TIMEOUT={raw!r} is not a number; set it to one, or unset it"
                                 ) from None
    if value < 1:
        raise ConfigurationError(f"LOCALMAKER_CLIENT_TIMEOUT={raw} must be at least 1")
    return value


def model_server_timeout(environ: Mapping[str, str]) -> int:
    return _int(environ, "SAGEMAKER_MODEL_SERVER_TIMEOUT", DEFAULT_TIMEOUT_S)


@dataclass(frozen=True)
class EndpointSettings:
    model_dir: Path
    code_dir: Path
    program: str = DEFAULT_PROGRAM
    timeout_s: int = DEFAULT_TIMEOUT_S
    max_payload_bytes: int = MAX_PAYLOAD_BYTES
    # Batching applies to handlers with predict_batch_fn; a lone request waits for nobody.
    batch_size: int = DEFAULT_MAX_BATCH_REQUESTS
    max_batch_delay_ms: int = DEFAULT_BATCH_DELAY_MS
    log_file: Path | None = None
    default_accept: str = JSON
    # Where the control plane placed the instance (LOCALMAKER_DEVICE): cpu, or cuda:N.
    device: str = "cpu"
    # The address gunicorn binds (LOCALMAKER_BIND_HOST, set by `localmaker serve --host`): loopback unless
    # the user opened the container to other machines, which lifts the Host check (browser_guard.py).
    bind_host: str = "127.0.0.1"

    @classmethod
    def from_env(cls, environ: Mapping[str, str] = os.environ) -> EndpointSettings:
        model_dir = Path(environ.get("SM_MODEL_DIR") or environ.get("LOCALMAKER_MODEL_DIR") or SAGEMAKER_MODEL_DIR)
        code_dir = Path(environ.get("LOCALMAKER_CODE_DIR") or model_dir / "code")
        log_file = environ.get("LOCALMAKER_LOG_FILE")
        return cls(
            model_dir=model_dir,
            code_dir=code_dir,
            program=environ.get("SAGEMAKER_PROGRAM") or DEFAULT_PROGRAM,
            timeout_s=model_server_timeout(environ),
            batch_size=_int(environ, "SAGEMAKER_TS_BATCH_SIZE", DEFAULT_MAX_BATCH_REQUESTS),
            max_batch_delay_ms=_int(environ, "SAGEMAKER_TS_MAX_BATCH_DELAY", DEFAULT_BATCH_DELAY_MS, minimum=0),
            log_file=Path(log_file) if log_file else None,
            default_accept=environ.get(DEFAULT_ACCEPT_ENV) or JSON,
            device=environ.get("LOCALMAKER_DEVICE") or "cpu",
            bind_host=environ.get("LOCALMAKER_BIND_HOST") or "127.0.0.1",
        )
