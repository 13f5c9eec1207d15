"""The container's HTTP surface: GET /ping and POST /invocations, as SageMaker calls them."""

from __future__ import annotations

import json
import logging
from collections.abc import Callable, Iterator

from flask import Flask, Response, request

from localmaker.local_endpoint.browser_guard import check_browser_request
from localmaker.local_endpoint.chunk_streams import ChunkStream
from localmaker.local_endpoint.context import InvocationContext
from localmaker.local_endpoint.errors import (
    BadRequest,
    EndpointError,
    ModelNotReady,
    PayloadTooLarge,
    to_endpoint_error,
)
from localmaker.local_endpoint.handlers import Answer, request_body
from localmaker.local_endpoint.media_types import JSON, request_accept
from localmaker.local_endpoint.model_executor import ModelExecutor
from localmaker.local_endpoint.model_holder import LoadState, ModelHolder
from localmaker.local_endpoint.openapi_document import openapi_document
from localmaker.local_endpoint.readiness_log import PING_PATH, PingAnswers
from localmaker.local_endpoint.settings import EndpointSettings
from localmaker.spec.names import CUSTOM_ATTRIBUTES_HEADER

logger = logging.getLogger(__name__)


def create_app(settings: EndpointSettings, *, load_in_background: bool = True,
               on_stuck: Callable[[], None] | None = None) -> Flask:
    """Build the container app; the model loads once per process, in the background by default.

    ``on_stuck`` is called once when a model call runs past the timeout; under gunicorn it retires the
    worker, since a thread stuck in a forward pass cannot be stopped any other way.
    """
    app = Flask("localmaker.local_endpoint", static_folder=None)  # no file-serving route: the container has none
    app.config["MAX_CONTENT_LENGTH"] = settings.max_payload_bytes
    holder = ModelHolder(settings)
    app.extensions["localmaker.model"] = holder
    # One model call at a time per process, on one thread, unless the handler says its model takes more
    # (model_lanes_fn): torch already uses every core, and the handlers of user scripts are rarely
    # thread-safe. Handlers that declare predict_batch_fn get the requests that arrive together as one batch.
    executor = ModelExecutor(settings.batch_size, settings.max_batch_delay_ms / 1000, settings.timeout_s,
                             on_stuck=on_stuck, lanes=lambda: holder.lanes)
    # The document is fixed for the process, and serving it must not depend on the model (nor load code).
    openapi_json = json.dumps(openapi_document())
    pings = PingAnswers()  # readiness polls are logged once per change of answer (readiness_log.py)

    @app.before_request
    def refuse_web_pages() -> None:
        check_browser_request(request.headers.get("Host", ""), request.headers.get("Origin"),
                              request.headers.get("Sec-Fetch-Site"), settings.bind_host)

    @app.get("/ping")
    def ping() -> Response:
        holder.require_ready()  # until the model is loaded, raises the 503 that says why
        pings.changed(200)  # a later 503 (the model failed, or reloads) is news again
        return _json(200, {"status": LoadState.HEALTHY.value})

    @app.post("/invocations")
    def invocations() -> Response:
        length = request.content_length
        if length is not None and length > settings.max_payload_bytes:
            raise PayloadTooLarge(
                f"request body is {length} bytes, over the {settings.max_payload_bytes}-byte "
                "SageMaker real-time limit; send less data per request or use batch transform"
            )
        handlers, model = holder.require_ready()
        body = _whole_body(settings.max_payload_bytes)
        if not body:
            raise BadRequest("the request body is empty; send a payload in the declared Content-Type")
        context = InvocationContext(
            model_dir=settings.model_dir,
            custom_attributes=request.headers.get(CUSTOM_ATTRIBUTES_HEADER),
            headers=dict(request.headers),
        )
        # As the toolkit's Transformer.transform hands a request on: a missing Content-Type is None, a
        # missing Accept or */* is the default accept, and a JSON or CSV body is str.
        content_type = request.headers.get("Content-Type")
        accept = request_accept(request.headers.get("Accept"), settings.default_accept)
        data = request_body(body, content_type)
        if handlers.batches and settings.batch_size > 1:
            with executor.arriving() as submit:
                prepared = handlers.prepare(handlers.decode(data, content_type, context), model, context)
                prediction = submit(prepared, lambda items: handlers.predict_batch(items, model))
            answer: Answer = handlers.encode(prediction, accept, context)
        else:
            answer = executor.run(lambda: handlers.invoke(model, data, content_type, accept, context))
        response = _response(answer)
        if context.response_custom_attributes:
            response.headers[CUSTOM_ATTRIBUTES_HEADER] = context.response_custom_attributes
        return response

    @app.get("/openapi.json")
    def openapi() -> Response:
        """localmaker's addition, not SageMaker's: the container API, for tools and contract tests."""
        return Response(openapi_json, status=200, content_type=JSON)

    @app.errorhandler(Exception)
    def handle_error(exc: Exception) -> Response:
        error = to_endpoint_error(exc)
        if error.status >= 500 and not isinstance(error, ModelNotReady):
            logger.error("invocation failed with %s", error.status, exc_info=exc)
        elif request.path != PING_PATH or pings.changed(error.status):  # a readiness poll: once per change
            logger.info("answered %s: %s", error.status, error.message)
        response = _json(error.status, error.body())
        if isinstance(error, ModelNotReady):
            response.headers["Retry-After"] = "1"
        return response

    if load_in_background:
        holder.start()
    else:
        holder.load()
    return app


def _whole_body(limit: int) -> bytes:
    """The request body, or PayloadTooLarge once it is over ``limit``.

    A chunked body declares no length, and werkzeug cuts such a body off at MAX_CONTENT_LENGTH without
    a word: the handler would then run on the first 6 MB of a larger request. Under gunicorn the front
    (``request_front``) refuses it before the app; this keeps the app itself from ever running on one.
    """
    if request.content_length is not None or not request.environ.get("wsgi.input_terminated"):
        return request.get_data(cache=False)
    stream, parts, size = request.environ["wsgi.input"], [], 0
    while chunk := stream.read(64 * 1024):
        parts.append(chunk)
        size += len(chunk)
        if size > limit:
            raise PayloadTooLarge(f"the chunked request body is over the {limit}-byte SageMaker real-time "
                                  "limit; send less data per request or use batch transform")
    return b"".join(parts)


def _response(answer: Answer) -> Response:
    """A whole answer, or a streamed one: chunked HTTP, each chunk written as the handler yields it.

    The first chunk is awaited here, so a stream that fails before it answers with an error status like
    any request. A failure after it can only end the response early: the exception propagates out of the
    body, and gunicorn then closes the connection without the terminating chunk, which is how the caller
    (the control plane: ModelStreamError) learns that the stream broke.
    """
    if not isinstance(answer, ChunkStream):
        payload, response_type = answer
        return Response(payload, status=200, content_type=response_type)
    chunks = answer.chunks
    first = next(chunks, None)

    def body() -> Iterator[bytes]:
        try:
            if first is not None:
                yield first
            yield from chunks
        except GeneratorExit:
            raise
        except BaseException:
            logger.exception("the handler's stream failed after it had begun; ending the response early")
            raise
        finally:
            close = getattr(chunks, "close", None)
            if close is not None:
                close()

    # No Content-Length: gunicorn (and werkzeug) then send Transfer-Encoding: chunked, one write per chunk.
    return Response(body(), status=200, content_type=answer.content_type, direct_passthrough=True)


def _json(status: int, payload: object) -> Response:
    return Response(json.dumps(payload), status=status, content_type=JSON)


__all__ = ["EndpointError", "create_app"]
