"""moto's server app, the AWS state behind the control plane, callable as WSGI or for a whole Answer.

Where moto has no answer in AWS's shape, this raises an ApiError for the app to answer in the request's
protocol: an operation or route moto does not know (it answers an empty or HTML 404 page, or raises
NotImplementedError) is UnknownOperation, and an HTML error page of its own is InternalFailure. Its
other answers pass unchanged, streamed as they come (an S3 GetObject of a model artifact is not held).
"""

from __future__ import annotations

import json
import logging
from collections.abc import Callable, Iterable, Iterator
from itertools import chain
from typing import Any

from moto.moto_server.werkzeug_app import DomainDispatcherApplication, create_backend_app

from localmaker.control_plane.answers import Answer, Environ, StartResponse
from localmaker.control_plane.api_errors import InternalFailure, UnknownOperation
from localmaker.control_plane.request_bodies import replace_body
from localmaker.control_plane.wire_protocols import (
    Protocol,
    operation_name,
    protocol_of,
    signing_service,
)

logger = logging.getLogger(__name__)


class Moto:
    """moto's server app, callable as plain WSGI or as a function returning the whole Answer."""

    def __init__(self) -> None:
        self._app = DomainDispatcherApplication(create_backend_app)

    def __call__(self, environ: Environ, start_response: StartResponse) -> Iterable[bytes]:
        status, headers, chunks = self._checked(environ)
        start_response(status, headers)
        return chunks

    def forward(self, environ: Environ, request: dict[str, Any] | None = None) -> Answer:
        """Let moto answer, with the original body or ``request`` in its place."""
        if request is not None:
            replace_body(environ, json.dumps(request).encode("utf-8"))
        status, headers, chunks = self._checked(environ)
        return Answer(status, headers, _drained(chunks))

    def _checked(self, environ: Environ) -> tuple[str, list[tuple[str, str]], Iterable[bytes]]:
        """moto's status, headers and body; an ApiError where that answer is not one of AWS's."""
        operation = operation_name(environ)  # before moto reads the body a query Action is in
        try:
            status, headers, chunks = self._run(environ, operation)
        except NotImplementedError as exc:
            raise UnknownOperation(f"localmaker does not implement {operation}: its AWS simulator (moto) has "
                                   "no such operation") from exc
        except Exception as exc:
            if signing_service(environ) is None:  # moto took an unsigned request for S3 and found no route
                raise _unroutable(operation) from exc
            raise
        content_type = next((v for k, v in headers if k.lower() == "content-type"), "")
        if int(status.split(" ", 1)[0]) < 400 or not content_type.lower().startswith("text/html"):
            return status, headers, chunks
        body = _drained(chunks)  # an error answer: small, and needed whole to judge
        page = body.lstrip()[:15].lower().startswith((b"<!doctype html", b"<html"))
        if status.startswith(("404", "405")) and (page or not _may_be_s3(environ)):
            raise UnknownOperation(f"no operation or route answers {operation} here: neither localmaker nor its "
                                   "AWS simulator (moto) knows it")
        if page and signing_service(environ) is None:
            raise _unroutable(operation)
        if page:
            logger.error("moto answered %s with a %s error page", operation, status)
            raise InternalFailure(f"{operation} failed inside localmaker's AWS simulator (moto); the control "
                                  "plane's log has the details")
        return status, headers, [body]

    def _run(self, environ: Environ, operation: str) -> tuple[str, list[tuple[str, str]], Iterable[bytes]]:
        """Call moto, holding back its start_response until the answer is judged."""
        try:
            app = self._app.get_application(environ)  # which of moto's services the request is for
        except Exception as exc:  # noqa: BLE001 - moto fails this way for a service it does not simulate
            service = signing_service(environ) or "of an unsigned request"
            raise UnknownOperation(f"localmaker does not simulate the AWS service {service} ({operation})") from exc
        captured: dict[str, Any] = {}

        def capture(status: str, headers: list[tuple[str, str]], exc_info: Any = None) -> Callable[[bytes], None]:
            captured["status"], captured["headers"] = status, list(headers)
            return lambda _chunk: None

        chunks = app(environ, capture)
        if "status" not in captured:  # an app may call start_response on its first chunk
            iterator = iter(chunks)
            first = next(iterator, b"")
            chunks = _Closing(chain([first], iterator), chunks)
        return captured["status"], captured["headers"], chunks


def _unroutable(operation: str) -> UnknownOperation:
    return UnknownOperation(f"no operation or route answers {operation} here: the request is not signed, so it "
                            "was taken for S3, which has no such route; AWS clients sign every call (SigV4)")


def _may_be_s3(environ: Environ) -> bool:
    """S3 answers some misses with a bare 404 (HeadObject of a missing key), and moto takes an unsigned
    request for S3; every other service's 404 from moto without a body means it knows no such operation."""
    protocol = protocol_of(environ)
    named = protocol in (Protocol.JSON, Protocol.QUERY, Protocol.CBOR)
    return protocol is Protocol.REST_XML or (signing_service(environ) is None and not named)


class _Closing:
    """An iterable of chunks that closes the app's own iterable, as WSGI asks."""

    def __init__(self, chunks: Iterator[bytes], original: Iterable[bytes]) -> None:
        self._chunks, self._original = chunks, original

    def __iter__(self) -> Iterator[bytes]:
        return self._chunks

    def close(self) -> None:
        close = getattr(self._original, "close", None)
        if close:
            close()


def _drained(chunks: Iterable[bytes]) -> bytes:
    try:
        return b"".join(chunks)
    finally:
        close = getattr(chunks, "close", None)
        if close:
            close()
