"""InvokeEndpoint: route ``/endpoints/<name>/invocations`` to an instance and answer as AWS does.

A container error becomes botocore's ModelError (HTTP 424 with OriginalStatusCode and
OriginalMessage), so scripts catch the same exception here as in the cloud. Every refusal is raised as
an ApiError; the control plane's app answers it in the runtime API's shape. A request that could not
even connect to its instance (the instance just died) goes to the next one: it never reached a
container, so sending it again cannot run it twice.

The body is read whole before the request takes one of the endpoint's slots (``invocation_admission``),
so a client that uploads slowly holds only its own connection's thread, never capacity others need.
"""

from __future__ import annotations

import json
import logging
import time
from collections.abc import Callable

import urllib3

from localmaker.control_plane.answers import Answer, Environ
from localmaker.control_plane.api_errors import (
    ApiError,
    ModelError,
    PayloadTooLarge,
    RequestTimeout,
    ServiceUnavailable,
    ThrottlingException,
    ValidationError,
)
from localmaker.control_plane.async_config import realtime_call_refused
from localmaker.control_plane.endpoint_runtime import EndpointRuntime
from localmaker.control_plane.endpoint_state import NoInstanceInService, RunningEndpoint, ServingInstance, Variant
from localmaker.control_plane.invocation_admission import EndpointGates, Refused, Throttled
from localmaker.control_plane.invocation_metrics import InvocationMetrics
from localmaker.control_plane.request_bodies import BodyTooLarge, MalformedBody, read_body
from localmaker.control_plane.serverless_scaler import ServerlessScaler
from localmaker.control_plane.service_quotas import ServiceQuotas
from localmaker.control_plane.settings import ControlPlaneSettings
from localmaker.local_endpoint.errors import InstanceBusy, ModelNotReady, WorkerReplacing
from localmaker.local_endpoint.instance_transport import (
    ConnectionDropped,
    InstanceUnreachable,
    NoAnswer,
    mapped_transport_errors,
)
from localmaker.spec.names import (
    CUSTOM_ATTRIBUTES_HEADER,
    INVOKED_VARIANT_HEADER,
    MAX_PAYLOAD_BYTES,
    MAX_SERVERLESS_PAYLOAD_BYTES,
    TARGET_VARIANT_HEADER,
)

logger = logging.getLogger(__name__)


def environ_key(header: str) -> str:
    """Where WSGI keeps a request header: X-Amzn-Foo arrives as HTTP_X_AMZN_FOO."""
    return "HTTP_" + header.upper().replace("-", "_")


_FORWARDED_HEADERS = {
    "CONTENT_TYPE": "Content-Type",
    "HTTP_ACCEPT": "Accept",
    environ_key(CUSTOM_ATTRIBUTES_HEADER): CUSTOM_ATTRIBUTES_HEADER,
}
TARGET_VARIANT = environ_key(TARGET_VARIANT_HEADER)
INVOCATION_TIMEOUT_S = 600.0
# Container refusals that come before the handler runs, so that resending elsewhere cannot run it twice.
_NOT_RUN_CODES = frozenset({WorkerReplacing.code, ModelNotReady.code, InstanceBusy.code})


class InvocationProxy:
    def __init__(self, runtime: EndpointRuntime, region: str, metrics: InvocationMetrics | None = None,
                 settings: ControlPlaneSettings | None = None, is_async: Callable[[str], bool] | None = None,
                 quotas: ServiceQuotas | None = None) -> None:
        self._runtime = runtime
        self._is_async = is_async or (lambda _name: False)  # async endpoints refuse InvokeEndpoint (async_config)
        self._region = region  # the region of the log group a ModelError points to
        self._metrics = metrics
        self._gates = EndpointGates(settings or ControlPlaneSettings())
        self._serverless = ServerlessScaler(runtime, self._gates.in_flight, settings or ControlPlaneSettings(),
                                            metrics, region, quotas)
        self._http = urllib3.PoolManager(maxsize=32, retries=False)

    def __call__(self, environ: Environ, name: str) -> Answer:
        started = time.perf_counter()
        endpoint = self.endpoint_in_service(name)
        if self._is_async(name):
            raise realtime_call_refused(name, "InvokeEndpoint")
        body = read_payload(environ, payload_limit(endpoint))
        forwarded = {header: environ[key] for key, header in _FORWARDED_HEADERS.items() if environ.get(key)}
        try:
            with self._gates.gate(endpoint).slot():
                return self.send(endpoint, environ.get(TARGET_VARIANT), body, forwarded, started)
        except Refused as refused:
            raise admission_refusal(name, refused) from None

    @property
    def gates(self) -> EndpointGates:
        """The endpoints' admission gates: a response stream (response_stream.py) takes its slot here too."""
        return self._gates

    def endpoint_in_service(self, name: str) -> RunningEndpoint:
        """The endpoint ``name``, or the runtime API's ValidationError where it is missing or not serving."""
        endpoint = self._runtime.get(name)
        if endpoint is None:
            self._gates.forget(name)
            raise ValidationError(f"Endpoint {name} not found.")
        if not endpoint.status.serves_traffic:
            raise ValidationError(f"Endpoint {name} is {endpoint.status.value}, not InService; "
                                  "wait with the endpoint_in_service waiter before invoking it")
        return endpoint

    def pick_instance(self, endpoint: RunningEndpoint, target: str | None) -> tuple[Variant, ServingInstance] | None:
        """The variant and instance the next request goes to; None when no instance can answer now.

        Every way into an endpoint (real-time, streaming, async) chooses its instance here. A serverless
        endpoint without a free instance starts one first, and the request waits for it (a cold start).
        """
        started = self._serverless.make_room(endpoint)
        if started is not None and (not target or target == started[0].spec.variant_name):
            return started
        try:
            return endpoint.route(target)
        except KeyError:
            raise ValidationError(f"Target variant {target!r} does not exist on endpoint {endpoint.name}.") from None
        except NoInstanceInService:
            return None

    def send(self, endpoint: RunningEndpoint, target: str | None, body: bytes, headers: dict[str, str],
             started: float, timeout_s: float = INVOCATION_TIMEOUT_S) -> Answer:
        """Send one request to an instance of ``endpoint`` and answer as InvokeEndpoint does.

        Raises ModelError for a container error, ServiceUnavailable when no instance can answer now.
        """
        name = endpoint.name
        for _attempt in range(1 + len(endpoint.processes())):
            picked = self.pick_instance(endpoint, target)
            if picked is None:
                break
            variant, instance = picked
            variant_name = variant.spec.variant_name
            if instance.process.exited() is not None:
                # Died since the healer last looked; a pooled connection to it would only be reset.
                endpoint.take_out_of_rotation(instance)
                continue
            sent = time.perf_counter()
            try:
                with mapped_transport_errors():
                    answer = self._http.request("POST", f"{instance.process.url}/invocations", body=body,
                                                headers=headers, timeout=timeout_s)
            except InstanceUnreachable:
                logger.warning("instance %s of %s is unreachable; sending to another", instance.process.instance_id,
                               name)
                continue
            except (ConnectionDropped, NoAnswer) as exc:
                if isinstance(exc, ConnectionDropped) and not endpoint.serves_from(instance):
                    # It was swapped out or scaled away while this request was on its way. A draining
                    # gunicorn answers every request it has read (for up to the model-server timeout) and
                    # closes only idle kept-alive connections, so this one was never read.
                    logger.info("instance %s of %s left the fleet mid-send; sending to another",
                                instance.process.instance_id, name)
                    continue
                logger.error("instance %s of %s: %s", instance.process.instance_id, name, exc)
                self.record(name, variant_name, 500, None, started)
                raise ModelError(self._region, name, 500, str(exc)) from exc
            self.record(name, variant_name, answer.status, time.perf_counter() - sent, started)
            if _refused_before_the_handler(answer):
                # Its worker is being replaced (a stuck call), is still loading, or holds all the request
                # bytes it buffers: the handler never ran, so another instance may take the request, or
                # the caller retries after the 503 below.
                logger.info("instance %s of %s cannot take the request now; sending to another",
                            instance.process.instance_id, name)
                continue
            if answer.status >= 400:
                raise ModelError(self._region, name, answer.status, answer.data.decode("utf-8", "replace"))
            reply_headers = [("Content-Type", answer.headers.get("Content-Type", "application/octet-stream")),
                             (INVOKED_VARIANT_HEADER, variant_name)]
            attributes = answer.headers.get(CUSTOM_ATTRIBUTES_HEADER)
            if attributes:
                reply_headers.append((CUSTOM_ATTRIBUTES_HEADER, attributes))
            return Answer("200 OK", reply_headers, answer.data)
        # botocore retries ServiceUnavailable by itself, which is what a caller wants while an instance heals.
        raise ServiceUnavailable(f"no instance of endpoint {name} can answer right now; a replacement is starting",
                                 retry_after_s=1)

    def record(self, name: str, variant: str, status: int, model_latency_s: float | None, started: float) -> None:
        """One invocation's metrics: its status, the model's latency and the overhead around it."""
        if self._metrics is None:
            return
        total = time.perf_counter() - started
        self._metrics.record(name, variant, status, model_latency_s, max(0.0, total - (model_latency_s or 0.0)))


def _refused_before_the_handler(answer: urllib3.BaseHTTPResponse) -> bool:
    """A container 503 whose code says no handler ran (local_endpoint/errors.py: WorkerReplacing, ModelNotReady,
    InstanceBusy)."""
    if answer.status != 503:
        return False
    try:
        code = json.loads(answer.data)["error"]["code"]
    except (ValueError, KeyError, TypeError):
        return False
    return code in _NOT_RUN_CODES


def admission_refusal(name: str, refused: Refused) -> ApiError:
    """The runtime API's answer when an endpoint has no slot for a request."""
    if isinstance(refused, Throttled):  # a serverless endpoint at its MaxConcurrency
        return ThrottlingException(f"Rate exceeded: serverless endpoint {name} is at its MaxConcurrency "
                                   f"({refused}); retry with backoff, or raise MaxConcurrency (at most 200)")
    logger.info("refused an invocation of %s: %s", name, refused)
    return ServiceUnavailable(f"endpoint {name} cannot take more requests now: {refused}; "
                              f"retry after {refused.retry_after_s} s", refused.retry_after_s)


def payload_limit(endpoint: RunningEndpoint) -> int:
    """The largest request body ``endpoint`` takes: 6 MB, or Serverless Inference's 4 MB."""
    serverless = any(v.spec.serverless is not None for v in endpoint.variants)
    return MAX_SERVERLESS_PAYLOAD_BYTES if serverless else MAX_PAYLOAD_BYTES


def read_payload(environ: Environ, limit: int = MAX_PAYLOAD_BYTES) -> bytes:
    """The invocation's body, whole and within ``limit``, or the runtime API's refusal."""
    try:
        return read_body(environ, limit)
    except OSError as exc:  # the client stopped sending (the server's socket timeout) or hung up
        raise RequestTimeout(f"the request body did not arrive whole: {exc}") from exc
    except BodyTooLarge:
        raise PayloadTooLarge(limit) from None
    except MalformedBody as exc:
        raise ValidationError(f"{exc}: send the body with a correct Content-Length") from exc
