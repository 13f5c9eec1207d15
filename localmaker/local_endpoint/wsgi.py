"""The gunicorn entry point: ``localmaker.local_endpoint.wsgi:application_from_environment()``."""

from __future__ import annotations

import logging
import os
import signal
import threading
import time

from flask import Flask

from localmaker.local_endpoint.app import create_app
from localmaker.local_endpoint.settings import EndpointSettings
from localmaker.logging_setup import configure_logging


def application_from_environment() -> Flask:
    settings = EndpointSettings.from_env(os.environ)
    configure_logging(settings.log_file)
    return create_app(settings, on_stuck=_retire_this_worker)


RETIRE_GRACE_S = 3.0  # for answers still being written (the 504 among them); then the worker ends regardless


def _retire_this_worker() -> None:
    """Have gunicorn replace this worker: its model thread is stuck and cannot be stopped.

    SIGTERM is gunicorn's graceful stop: the worker stops accepting at once (so with several workers, new
    requests go to the others), finishes the answers it is writing, the 504 included, and the master
    starts a fresh worker, which loads the model again, as soon as this one has exited. Meanwhile every
    request already here is refused at once (the executor's WorkerReplacing). The graceful stop would
    wait up to the graceful timeout (the model timeout) for connections still open, and the replacement
    with it, so after a short grace the process ends outright.
    """
    def retire() -> None:
        os.kill(os.getpid(), signal.SIGTERM)
        time.sleep(RETIRE_GRACE_S)
        logging.getLogger(__name__).warning("worker still running %gs after its retirement; ending it",
                                            RETIRE_GRACE_S)
        os._exit(0)

    threading.Thread(target=retire, name="retire-stuck-worker", daemon=True).start()
