"""InvokeEndpointWithResponseStream: relay an instance's chunked answer as an AWS event stream, as it comes.

The request is read and checked as InvokeEndpoint's is (``invocation_proxy``: the same endpoint checks,
the same admission slot, the same choice of instance), and a failure before the first byte is answered
as InvokeEndpoint answers it: ValidationError, ModelError (424) for a container error status,
ServiceUnavailable when no instance can answer. Then the answer is 200 ``application/vnd.amazon.eventstream``
with the container's Content-Type in ``X-Amzn-SageMaker-Content-Type``, and each chunk the container
sends becomes a ``PayloadPart`` event the moment it arrives (``event_stream``); nothing is held back.

Once the stream has begun, a failure can only be told inside it, as AWS tells it: the container's
stream breaking off (it closes the connection without HTTP's last chunk when its handler fails, see
``local_endpoint/app.py``) is a ``ModelStreamError`` with ErrorCode ``StreamBroken``, a container that
falls silent for longer than the invocation timeout is one with ``ModelInvocationTimeExceeded``, and
anything else (a bug of localmaker's) is an ``InternalStreamFailure``. The endpoint's slot is held until
the stream ends, so streams count against the endpoint's capacity like any request.
"""

from __future__ import annotations

import contextlib
import logging
import time
from collections.abc import Callable, Iterator

import urllib3

from localmaker.control_plane import event_stream
from localmaker.control_plane.answers import Answer, Environ, StreamedAnswer
from localmaker.control_plane.api_errors import (
    ModelError,
    ServiceUnavailable,
)
from localmaker.control_plane.async_config import realtime_call_refused
from localmaker.control_plane.endpoint_state import RunningEndpoint
from localmaker.control_plane.invocation_admission import Refused
from localmaker.control_plane.invocation_metrics import InvocationMetrics
from localmaker.control_plane.invocation_proxy import (
    INVOCATION_TIMEOUT_S,
    TARGET_VARIANT,
    InvocationProxy,
    admission_refusal,
    environ_key,
    payload_limit,
    read_payload,
)
from localmaker.local_endpoint.instance_transport import (
    ConnectionDropped,
    InstanceUnreachable,
    NoAnswer,
    mapped_transport_errors,
)
from localmaker.spec.names import (
    CUSTOM_ATTRIBUTES_HEADER,
    INVOKED_VARIANT_HEADER,
    STREAM_ACCEPT_HEADER,
    STREAM_CONTENT_TYPE_HEADER,
)

logger = logging.getLogger(__name__)



# The request headers the container gets: the stream's Accept travels in a header of its own, and the
# container reads it as Accept, as SageMaker hands it on.
_FORWARDED = {"CONTENT_TYPE": "Content-Type", environ_key(STREAM_ACCEPT_HEADER): "Accept",
              environ_key(CUSTOM_ATTRIBUTES_HEADER): CUSTOM_ATTRIBUTES_HEADER}
# A container's answer that is not chunked (a handler that does not stream) is relayed in reads this big.
_READ_BYTES = 64 * 1024


class ResponseStream:
    """The ``invocations-response-stream`` runtime operation, a handler of (environ, endpoint name)."""

    def __init__(self, proxy: InvocationProxy, region: str, metrics: InvocationMetrics | None = None,
                 timeout_s: float = INVOCATION_TIMEOUT_S, is_async: Callable[[str], bool] | None = None) -> None:
        self._proxy = proxy
        self._is_async = is_async or (lambda _name: False)
        self._region = region
        self._metrics = metrics
        self._timeout_s = timeout_s  # the longest silence between two chunks
        self._http = urllib3.PoolManager(maxsize=32, retries=False)

    def __call__(self, environ: Environ, name: str) -> Answer:
        started = time.perf_counter()
        endpoint = self._proxy.endpoint_in_service(name)
        if self._is_async(name):
            raise realtime_call_refused(name, "InvokeEndpointWithResponseStream")
        body = read_payload(environ, payload_limit(endpoint))
        headers = {header: environ[key] for key, header in _FORWARDED.items() if environ.get(key)}
        held = contextlib.ExitStack()
        try:
            held.enter_context(self._proxy.gates.gate(endpoint).slot())
        except Refused as refused:  # as InvokeEndpoint answers it
            raise admission_refusal(name, refused) from None
        try:
            variant, answer = self._open(endpoint, environ.get(TARGET_VARIANT), body, headers, started)
        except BaseException:
            held.close()
            raise
        held.callback(_settle, answer)
        reply = [("Content-Type", event_stream.EVENT_STREAM),
                 (STREAM_CONTENT_TYPE_HEADER, answer.headers.get("Content-Type", "application/octet-stream")),
                 (INVOKED_VARIANT_HEADER, variant)]
        if attributes := answer.headers.get(CUSTOM_ATTRIBUTES_HEADER):
            reply.append((CUSTOM_ATTRIBUTES_HEADER, attributes))
        events = self._events(answer, name, variant, started)
        return StreamedAnswer("200 OK", reply, chunks=_EventStreamBody(events, held))

    def _open(self, endpoint: RunningEndpoint, target: str | None, body: bytes, headers: dict[str, str],
              started: float) -> tuple[str, urllib3.BaseHTTPResponse]:
        """The variant and the container's answer, its headers read and its body not yet; raises as
        InvokeEndpoint does where no stream can begin."""
        name = endpoint.name
        for _attempt in range(1 + len(endpoint.processes())):
            picked = self._proxy.pick_instance(endpoint, target)
            if picked is None:
                break
            variant, instance = picked
            if instance.process.exited() is not None:
                endpoint.take_out_of_rotation(instance)
                continue
            try:
                with mapped_transport_errors():
                    answer = self._http.request(
                        "POST", f"{instance.process.url}/invocations", body=body, headers=headers,
                        timeout=urllib3.Timeout(connect=10.0, read=self._timeout_s), preload_content=False)
            except InstanceUnreachable:
                logger.warning("instance %s of %s is unreachable; streaming from another",
                               instance.process.instance_id, name)
                continue
            except (ConnectionDropped, NoAnswer) as exc:
                if isinstance(exc, ConnectionDropped) and not endpoint.serves_from(instance):
                    continue  # it left the fleet while the request was on its way (see invocation_proxy)
                logger.error("instance %s of %s: %s", instance.process.instance_id, name, exc)
                raise ModelError(self._region, name, 500, str(exc)) from exc
            if answer.status >= 400:
                with mapped_transport_errors(), contextlib.suppress(ConnectionDropped, NoAnswer):
                    text = answer.read().decode("utf-8", "replace")
                answer.release_conn()
                self._proxy.record(name, variant.spec.variant_name, answer.status, None, started)
                raise ModelError(self._region, name, answer.status, text)
            return variant.spec.variant_name, answer
        raise ServiceUnavailable(f"no instance of endpoint {name} can answer right now; a replacement is starting",
                                 retry_after_s=1)

    def _events(self, answer: urllib3.BaseHTTPResponse, name: str, variant: str, started: float) -> Iterator[bytes]:
        """The event stream: a PayloadPart per container chunk, or the exception event that ends it."""
        status, sent = 200, time.perf_counter()
        try:
            try:
                with mapped_transport_errors():
                    for chunk in (answer.read_chunked() if answer.chunked else answer.stream(_READ_BYTES)):
                        yield from event_stream.payload_parts(chunk)
            except ConnectionDropped as exc:
                status = 500
                logger.warning("the stream of %s broke off: %s", name, exc)
                yield event_stream.model_stream_error(
                    f"The model's response stream was closed before it was complete ({exc}). "
                    f"See the instance log of endpoint {name} for more information.", event_stream.STREAM_BROKEN)
            except NoAnswer as exc:
                status = 500
                logger.warning("the stream of %s went silent: %s", name, exc)
                yield event_stream.model_stream_error(
                    f"The model did not send the next part of its response within {self._timeout_s:g} seconds.",
                    event_stream.MODEL_INVOCATION_TIME_EXCEEDED)
            except Exception:  # noqa: BLE001 - a bug of ours ends the stream as AWS's InternalStreamFailure
                status = 500
                logger.exception("relaying the stream of %s failed", name)
                yield event_stream.internal_stream_failure(
                    "The stream failed inside localmaker; the control plane's log has the details.")
        finally:
            self._proxy.record(name, variant, status, time.perf_counter() - sent, started)


class _EventStreamBody:
    """The body the WSGI server sends: the events, and the slot and connection they hold, which are let
    go when the server closes it, at the end or when the client hangs up (also before the first event)."""

    def __init__(self, events: Iterator[bytes], held: contextlib.ExitStack) -> None:
        self._events = events
        self._held = held

    def __iter__(self) -> Iterator[bytes]:
        return self._events

    def close(self) -> None:
        try:
            close = getattr(self._events, "close", None)
            if close is not None:
                close()
        finally:
            self._held.close()


def _settle(answer: urllib3.BaseHTTPResponse) -> None:
    """An answer read to its end has gone back to the pool already; one left unfinished must not."""
    if not answer.closed:
        answer.close()
