"""User scripts written to disk and served through the real Flask app, in-process."""

from __future__ import annotations

import textwrap
from collections.abc import Callable
from pathlib import Path

import pytest
from flask import Flask

from localmaker.local_endpoint.app import create_app
from localmaker.local_endpoint.settings import EndpointSettings

ScriptApp = Callable[..., Flask]


@pytest.fixture
def script_app(tmp_path: Path) -> ScriptApp:
    """Write ``source`` as model_dir/code/inference.py and build the container app around it."""

    def build(source: str, *, background: bool = False, **settings: object) -> Flask:
        model_dir = tmp_path / "model"
        code_dir = model_dir / "code"
        code_dir.mkdir(parents=True, exist_ok=True)
        (code_dir / "inference.py").write_text(textwrap.dedent(source))
        app = create_app(EndpointSettings(model_dir=model_dir, code_dir=code_dir, **settings),  # type: ignore[arg-type]
                         load_in_background=background)
        app.testing = False  # the 500 path must go through the error handler, as in production
        return app

    return build
