"""InvokeEndpoint: route ``/endpoints/<name>/invocations`` to an instance and answer as AWS does.

A container error becomes botocore's ModelError (HTTP 424 with OriginalStatusCode and
OriginalMessage), so scripts catch the same exception here as in the cloud. A request that could not
even connect to its instance (the instance just died) goes to the next one: it never reached a
container, so sending it again cannot run it twice.

The body is read whole before the request takes one of the endpoint's slots (``invocation_admission``),
so a client that uploads slowly holds only its own connection's thread, never capacity others need.
"""

from __future__ import annotations

import logging
import time
from typing import Any

import urllib3

from localmaker.deploy.control_plane_settings import ControlPlaneSettings
from localmaker.deploy.endpoint_runtime import EndpointRuntime
from localmaker.deploy.endpoint_state import LocalEndpoint, NoInstanceInService
from localmaker.deploy.invocation_admission import EndpointGates, Refused
from localmaker.deploy.invocation_metrics import InvocationMetrics
from localmaker.deploy.wire import Answer, BodyTooLarge, MalformedBody, read_body

logger = logging.getLogger(__name__)

_FORWARDED_HEADERS = {
    "CONTENT_TYPE": "Content-Type",
    "HTTP_ACCEPT": "Accept",
    "HTTP_X_AMZN_SAGEMAKER_CUSTOM_ATTRIBUTES": "X-Amzn-SageMaker-Custom-Attributes",
}
INVOCATION_TIMEOUT_S = 600.0
MAX_PAYLOAD_BYTES = 6 * 1024 * 1024  # InvokeEndpoint's request limit for real-time endpoints


class InvocationProxy:
    def __init__(self, runtime: EndpointRuntime, metrics: InvocationMetrics | None = None,
                 settings: ControlPlaneSettings | None = None) -> None:
        self._runtime = runtime
        self._metrics = metrics
        self._gates = EndpointGates(settings or ControlPlaneSettings())
        self._http = urllib3.PoolManager(maxsize=32, retries=False)

    def __call__(self, environ: dict[str, Any], name: str) -> Answer:
        started = time.perf_counter()
        endpoint = self._runtime.get(name)
        if endpoint is None:
            self._gates.forget(name)
            return _error("ValidationError", f"Endpoint {name} not found.")
        if not endpoint.status.serves_traffic:
            return _error("ValidationError", f"Endpoint {name} is {endpoint.status.value}, not InService; "
                                             "wait with the endpoint_in_service waiter before invoking it")
        try:
            body = read_body(environ, MAX_PAYLOAD_BYTES)
        except OSError as exc:  # the client stopped sending (the server's socket timeout) or hung up
            return _error("RequestTimeout", f"the request body did not arrive whole: {exc}", 408)
        except BodyTooLarge:
            # AWS's own words; botocore shows the status as the error code.
            return Answer.of_json(413, {"message": f"HTTP content length exceeded {MAX_PAYLOAD_BYTES} bytes."},
                                  content_type="application/json")
        except MalformedBody as exc:
            return _error("ValidationError", f"{exc}: send the body with a correct Content-Length")
        forwarded = {header: environ[key] for key, header in _FORWARDED_HEADERS.items() if environ.get(key)}
        try:
            with self._gates.gate(endpoint).slot():
                return self._send(endpoint, environ.get("HTTP_X_AMZN_SAGEMAKER_TARGET_VARIANT"), body, forwarded,
                                  started)
        except Refused as refused:
            logger.info("refused an invocation of %s: %s", name, refused)
            answer = _error("ServiceUnavailable", f"endpoint {name} cannot take more requests now: {refused}; "
                                                  f"retry after {refused.retry_after_s} s", 503)
            answer.headers.append(("Retry-After", str(refused.retry_after_s)))
            return answer

    def _send(self, endpoint: LocalEndpoint, target: str | None, body: bytes, headers: dict[str, str],
              started: float) -> Answer:
        name = endpoint.name
        for _attempt in range(1 + len(endpoint.processes())):
            try:
                variant, instance = endpoint.route(target)
            except KeyError:
                return _error("ValidationError", f"Target variant {target!r} does not exist on endpoint {name}.")
            except NoInstanceInService:
                break
            variant_name = variant.spec.variant_name
            if instance.process.exited() is not None:
                # Died since the healer last looked; a pooled connection to it would only be reset.
                endpoint.take_out_of_rotation(instance)
                continue
            sent = time.perf_counter()
            try:
                answer = self._http.request("POST", f"{instance.process.url}/invocations", body=body,
                                            headers=headers, timeout=INVOCATION_TIMEOUT_S)
            except urllib3.exceptions.ConnectTimeoutError:
                logger.warning("instance %s of %s is unreachable; sending to another", instance.process.instance_id,
                               name)
                continue
            except urllib3.exceptions.ProtocolError as exc:
                if not endpoint.serves_from(instance):
                    # It was swapped out or scaled away while this request was on its way. A draining
                    # gunicorn answers every request it has read (for up to the model-server timeout) and
                    # closes only idle kept-alive connections, so this one was never read.
                    logger.info("instance %s of %s left the fleet mid-send; sending to another",
                                instance.process.instance_id, name)
                    continue
                logger.error("instance %s of %s did not answer: %s", instance.process.instance_id, name, exc)
                self._record(name, variant_name, 500, None, started)
                return _model_error(name, 500, f"the instance did not answer: {exc}")
            except urllib3.exceptions.HTTPError as exc:
                logger.error("instance %s of %s did not answer: %s", instance.process.instance_id, name, exc)
                self._record(name, variant_name, 500, None, started)
                return _model_error(name, 500, f"the instance did not answer: {exc}")
            self._record(name, variant_name, answer.status, time.perf_counter() - sent, started)
            if answer.status >= 400:
                return _model_error(name, answer.status, answer.data.decode("utf-8", "replace"))
            reply_headers = [("Content-Type", answer.headers.get("Content-Type", "application/octet-stream")),
                             ("x-Amzn-Invoked-Production-Variant", variant_name)]
            attributes = answer.headers.get("X-Amzn-SageMaker-Custom-Attributes")
            if attributes:
                reply_headers.append(("X-Amzn-SageMaker-Custom-Attributes", attributes))
            return Answer("200 OK", reply_headers, answer.data)
        # botocore retries ServiceUnavailable by itself, which is what a caller wants while an instance heals.
        unavailable = _error("ServiceUnavailable", f"no instance of endpoint {name} can answer right now; "
                                                   "a replacement is starting", 503)
        unavailable.headers.append(("Retry-After", "1"))
        return unavailable

    def _record(self, name: str, variant: str, status: int, model_latency_s: float | None, started: float) -> None:
        if self._metrics is None:
            return
        total = time.perf_counter() - started
        self._metrics.record(name, variant, status, model_latency_s, max(0.0, total - (model_latency_s or 0.0)))


def _error(code: str, message: str, status: int = 400, extra: dict[str, Any] | None = None) -> Answer:
    return Answer.error(code, message, status, content_type="application/json", extra=extra)


def _model_error(name: str, status: int, message: str) -> Answer:
    # AWS names the container, "primary" for a single-container model, not the variant.
    kind = "client" if 400 <= status < 500 else "server"
    return _error("ModelError",
                  f"Received {kind} error ({status}) from primary with message \"{message}\". "
                  f"See the instance log of endpoint {name} for more information.", 424,
                  {"OriginalStatusCode": status, "OriginalMessage": message,
                   "LogStreamArn": f"arn:aws:logs:us-east-1:123456789012:log-group:/aws/sagemaker/Endpoints/{name}"})
