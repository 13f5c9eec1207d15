"""The gunicorn entry point: ``localmaker.local_endpoint.wsgi:application_from_environment()``."""

from __future__ import annotations

import os
import signal
import threading

from flask import Flask

from localmaker.local_endpoint.app import create_app
from localmaker.local_endpoint.settings import EndpointSettings
from localmaker.logging_setup import configure_logging


def application_from_environment() -> Flask:
    settings = EndpointSettings.from_env(os.environ)
    configure_logging(settings.log_file)
    return create_app(settings, on_stuck=_retire_this_worker)


def _retire_this_worker() -> None:
    """Ask gunicorn to replace this worker: its model thread is stuck and cannot be stopped.

    SIGTERM is gunicorn's graceful stop for a worker; the delay lets the timeout answer reach the
    caller first. The master then starts a fresh worker, which loads the model again.
    """
    timer = threading.Timer(1.0, os.kill, args=(os.getpid(), signal.SIGTERM))
    timer.daemon = True
    timer.start()
