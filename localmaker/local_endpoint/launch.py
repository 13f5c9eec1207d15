"""How a container process is started: its environment and its gunicorn command line.

Shared by the control plane's instances and by ``localmaker serve``, so both run the same container.
"""

from __future__ import annotations

import os
import sys
from collections.abc import Mapping
from pathlib import Path

import localmaker
from localmaker.local_endpoint import gunicorn_conf
from localmaker.local_endpoint.settings import (
    client_timeout,
    model_server_timeout,
    request_buffer_bytes,
    server_size,
)
from localmaker.model.sources import localmaker_home

WSGI_TARGET = "localmaker.local_endpoint.wsgi:application_from_environment()"


# OpenMP's threads (torch's intra-op pool on the CPU) spin after each parallel region by default, burning
# the cores that the instance's request threads, and every other process, need between forward passes.
# Sleeping instead cost nothing measurable per pass and gave 3-4x the embedding throughput under load
# (docs/benchmarks.md). The caller's or the model's own setting wins.
SERVING_DEFAULTS = {"OMP_WAIT_POLICY": "PASSIVE"}
# The handler's ENV_CACHE_DIR (inference/handler_settings.py), spelled out: code/ never imports localmaker,
# and its modules import their siblings by bare name, so this side cannot import that one.
ENV_CACHE_DIR = "LOCALMAKER_CACHE_DIR"


def instance_environment(model_dir: Path | str, log_file: Path | None, extra: Mapping[str, str],
                         region: str | None = None) -> dict[str, str]:
    """The container's environment: the caller's, the model's variables, and where to find things.

    ``model_dir`` is the folder as the container sees it (``/opt/ml/model`` in its own namespace, see
    ``container_paths.py``). ``region`` is the control plane's: a SageMaker container has ``AWS_REGION`` and
    ``AWS_DEFAULT_REGION`` set, so a boto3 client made in ``model_fn`` needs no region; the model's own
    Environment (in ``extra``) may still set them.
    """
    env = {**SERVING_DEFAULTS, ENV_CACHE_DIR: str(shared_cache_dir()), **os.environ,
           **region_environment(region, extra), **extra, "LOCALMAKER_MODEL_DIR": str(model_dir),
           "PYTHONUNBUFFERED": "1"}
    if log_file is not None:
        env["LOCALMAKER_LOG_FILE"] = str(log_file)
    # The instance must import this very localmaker, also when it runs from a source checkout.
    package_root = str(Path(localmaker.__file__).resolve().parent.parent)
    env["PYTHONPATH"] = os.pathsep.join(filter(None, [package_root, env.get("PYTHONPATH", "")]))
    return env


def shared_cache_dir() -> Path:
    """Where instances keep what they derive from the weights (corpus vectors, ONNX exports), unless the
    caller or the model sets LOCALMAKER_CACHE_DIR: under LOCALMAKER_HOME, so that every deployment of the
    same weights and corpus reuses them. The model's own folder is extracted afresh for each deployment and
    removed with its session. Entries are keyed by the weights' fingerprint and written by rename, so
    instances can share the folder."""
    return localmaker_home() / "handler-cache"


def region_environment(region: str | None, own: Mapping[str, str]) -> dict[str, str]:
    """``AWS_REGION`` and ``AWS_DEFAULT_REGION``, as SageMaker sets them in a container: the control plane's
    ``region``, or the one the process's ``own`` environment names in either variable (it wins)."""
    chosen = own.get("AWS_REGION") or own.get("AWS_DEFAULT_REGION") or region
    return {"AWS_REGION": chosen, "AWS_DEFAULT_REGION": chosen} if chosen else {}


def gunicorn_command(bind: str, env: Mapping[str, str], log_file: Path | None) -> list[str]:
    """gunicorn serving the container app, sized by SageMaker's model-server variables (a bad value is a
    ConfigurationError here, naming the variable, rather than a gunicorn that fails to start)."""
    workers, threads = server_size(env)
    client_timeout(env)  # read by each worker (request_front.py): a bad value fails here, not in every worker
    request_buffer_bytes(env)
    command = [
        sys.executable, "-m", "gunicorn",
        "--config", gunicorn_conf.__file__,
        "--bind", bind,
        "--workers", str(workers),
        "--threads", str(threads),
        "--timeout", str(model_server_timeout(env)),
        # A retired instance (blue/green, scale-in) lets a request already running finish: the same
        # bound as the request itself, not gunicorn's 30 s default.
        "--graceful-timeout", str(model_server_timeout(env)),
    ]
    if log_file is not None:
        command += ["--error-logfile", str(log_file), "--access-logfile", str(log_file)]
    else:
        command += ["--access-logfile", "-"]
    return [*command, WSGI_TARGET]
