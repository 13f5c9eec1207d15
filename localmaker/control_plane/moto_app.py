"""moto's server app, the AWS state behind the control plane, callable as WSGI or for a whole Answer."""

from __future__ import annotations

import json
from collections.abc import Callable, Iterable
from typing import Any

from moto.moto_server.werkzeug_app import DomainDispatcherApplication, create_backend_app

from localmaker.control_plane.answers import Answer, Environ, StartResponse
from localmaker.control_plane.request_bodies import replace_body


class Moto:
    """moto's server app, callable as plain WSGI or as a function returning the whole Answer."""

    def __init__(self) -> None:
        self._app = DomainDispatcherApplication(create_backend_app)

    def __call__(self, environ: Environ, start_response: StartResponse) -> Iterable[bytes]:
        return self._app(environ, start_response)

    def forward(self, environ: Environ, request: dict[str, Any] | None = None) -> Answer:
        """Let moto answer, with the original body or ``request`` in its place."""
        if request is not None:
            replace_body(environ, json.dumps(request).encode("utf-8"))
        captured: dict[str, Any] = {}

        def capture(status: str, headers: list[tuple[str, str]], exc_info: Any = None) -> Callable[[bytes], None]:
            captured["status"], captured["headers"] = status, headers
            return lambda _chunk: None

        chunks = self._app(environ, capture)
        try:
            body = b"".join(chunks)
        finally:
            close = getattr(chunks, "close", None)
            if close:
                close()
        return Answer(captured["status"], list(captured["headers"]), body)
