"""The AWS wire protocol as the control plane speaks it: answers, errors, and moto behind them."""

from __future__ import annotations

import io
import json
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from typing import Any

from moto.moto_server.werkzeug_app import DomainDispatcherApplication, create_backend_app

StartResponse = Callable[..., Any]
Environ = dict[str, Any]
AMZ_JSON = "application/x-amz-json-1.1"


@dataclass
class Answer:
    """One HTTP answer, held whole so an interceptor can read or rewrite it before it is sent."""

    status: str
    headers: list[tuple[str, str]] = field(default_factory=list)
    body: bytes = b""

    @property
    def ok(self) -> bool:
        return self.status.startswith("200")

    def json(self) -> Any:
        return json.loads(self.body)

    def with_json(self, payload: Any) -> Answer:
        return Answer(self.status, self.headers, json.dumps(payload, default=str).encode("utf-8"))

    @classmethod
    def of_json(cls, status: int, payload: Any, content_type: str = AMZ_JSON,
                headers: Iterable[tuple[str, str]] = ()) -> Answer:
        return cls(f"{status} {'OK' if status < 400 else 'Error'}", [("Content-Type", content_type), *headers],
                   json.dumps(payload, default=str).encode("utf-8"))

    @classmethod
    def error(cls, code: str, message: str, status: int = 400, content_type: str = AMZ_JSON,
              extra: dict[str, Any] | None = None) -> Answer:
        """The shape botocore reads an error code and message from, for JSON and REST-JSON services."""
        payload = {"__type": code, "message": message, **(extra or {})}
        return cls.of_json(status, payload, content_type, [("x-amzn-ErrorType", code)])

    def send(self, start_response: StartResponse) -> list[bytes]:
        headers = [(k, v) for k, v in self.headers if k.lower() != "content-length"]
        start_response(self.status, [*headers, ("Content-Length", str(len(self.body)))])
        return [self.body]


def overlaid(answer: Answer, overlay: Callable[[dict[str, Any]], None], items: str | None = None) -> Answer:
    """A successful JSON answer with ``overlay`` applied to its record, or to each record under ``items``."""
    if not answer.ok:
        return answer
    payload = answer.json()
    for record in payload.get(items, []) if items else [payload]:
        overlay(record)
    return answer.with_json(payload)


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


class MalformedBody(ValueError):
    """A request whose Content-Length is not a byte count."""


class BodyTooLarge(ValueError):
    """A request body over the reader's limit, declared or (chunked) found while reading."""


def read_body(environ: Environ, limit: int | None = None) -> bytes:
    """Read the request body (at most ``limit`` bytes) and put it back, so moto can read it again.

    Raises MalformedBody for a Content-Length that is not a byte count, BodyTooLarge for a body over
    ``limit`` (judged by Content-Length before reading), and ConnectionError when the client hangs up
    before the whole body came.
    """
    raw = environ.get("CONTENT_LENGTH")
    stream = environ["wsgi.input"]
    if not raw:
        body = _read_chunked(stream, limit) if environ.get("wsgi.input_terminated") else b""
    elif not (raw.isascii() and raw.isdigit()):
        raise MalformedBody(f"Content-Length {raw!r} is not a byte count")
    elif limit is not None and int(raw) > limit:
        raise BodyTooLarge(f"the body's {int(raw)} bytes are over the {limit}-byte limit")
    else:
        body = stream.read(int(raw))
        if len(body) < int(raw):
            raise ConnectionError(f"the client hung up after {len(body)} of its {raw} bytes")
    replace_body(environ, body)
    return body


def _read_chunked(stream: Any, limit: int | None) -> bytes:
    """A chunked body has no declared length: read to its end, stopping once it is over ``limit``."""
    parts, size = [], 0
    while chunk := stream.read(64 * 1024):
        parts.append(chunk)
        size += len(chunk)
        if limit is not None and size > limit:
            raise BodyTooLarge(f"the chunked body is over the {limit}-byte limit")
    return b"".join(parts)


def replace_body(environ: Environ, body: bytes) -> None:
    environ["wsgi.input"], environ["CONTENT_LENGTH"] = io.BytesIO(body), str(len(body))
