"""The gunicorn entry point: ``localmaker.local_endpoint.wsgi:application_from_environment()``."""

from __future__ import annotations

import os

from flask import Flask

from localmaker.local_endpoint.app import create_app
from localmaker.local_endpoint.settings import EndpointSettings
from localmaker.logging_setup import configure_logging


def application_from_environment() -> Flask:
    settings = EndpointSettings.from_env(os.environ)
    configure_logging(settings.log_file)
    return create_app(settings)
