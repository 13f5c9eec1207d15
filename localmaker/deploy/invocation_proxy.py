"""InvokeEndpoint: route ``/endpoints/<name>/invocations`` to an instance and answer as AWS does.

A container error becomes botocore's ModelError (HTTP 424 with OriginalStatusCode and
OriginalMessage), so scripts catch the same exception here as in the cloud.
"""

from __future__ import annotations

import json
import logging
from collections.abc import Callable, Iterable
from typing import Any

import urllib3

from localmaker.deploy.endpoint_runtime import EndpointRuntime, EndpointStatus

logger = logging.getLogger(__name__)

StartResponse = Callable[..., Any]
_FORWARDED_HEADERS = {
    "CONTENT_TYPE": "Content-Type",
    "HTTP_ACCEPT": "Accept",
    "HTTP_X_AMZN_SAGEMAKER_CUSTOM_ATTRIBUTES": "X-Amzn-SageMaker-Custom-Attributes",
}
INVOCATION_TIMEOUT_S = 600.0


class InvocationProxy:
    def __init__(self, runtime: EndpointRuntime) -> None:
        self._runtime = runtime
        self._http = urllib3.PoolManager(maxsize=32, retries=False)

    def __call__(self, environ: dict[str, Any], start_response: StartResponse, name: str) -> Iterable[bytes]:
        endpoint = self._runtime.get(name)
        if endpoint is None:
            return _error(start_response, 400, "ValidationError", f"Endpoint {name} not found.")
        if endpoint.status is not EndpointStatus.IN_SERVICE:
            return _error(start_response, 400, "ValidationError",
                          f"Endpoint {name} is {endpoint.status.value}, not InService; "
                          "wait with the endpoint_in_service waiter before invoking it")
        target = environ.get("HTTP_X_AMZN_SAGEMAKER_TARGET_VARIANT")
        try:
            variant, instance = endpoint.route(target)
        except KeyError:
            return _error(start_response, 400, "ValidationError",
                          f"Target variant {target!r} does not exist on endpoint {name}.")
        length = int(environ.get("CONTENT_LENGTH") or 0)
        body = environ["wsgi.input"].read(length) if length else b""
        headers = {header: environ[key] for key, header in _FORWARDED_HEADERS.items() if environ.get(key)}
        try:
            answer = self._http.request("POST", f"{instance.url}/invocations", body=body, headers=headers,
                                        timeout=INVOCATION_TIMEOUT_S)
        except urllib3.exceptions.HTTPError as exc:
            logger.error("instance %s of %s did not answer: %s", instance.instance_id, name, exc)
            return _model_error(start_response, name, variant.spec.variant_name, 500,
                                f"the instance did not answer: {exc}")
        if answer.status >= 400:
            return _model_error(start_response, name, variant.spec.variant_name, answer.status,
                                answer.data.decode("utf-8", "replace"))
        response_headers = [
            ("Content-Type", answer.headers.get("Content-Type", "application/octet-stream")),
            ("Content-Length", str(len(answer.data))),
            ("x-Amzn-Invoked-Production-Variant", variant.spec.variant_name),
        ]
        attributes = answer.headers.get("X-Amzn-SageMaker-Custom-Attributes")
        if attributes:
            response_headers.append(("X-Amzn-SageMaker-Custom-Attributes", attributes))
        start_response("200 OK", response_headers)
        return [answer.data]


def _error(start_response: StartResponse, status: int, code: str, message: str,
           extra: dict[str, Any] | None = None) -> list[bytes]:
    body = json.dumps({"message": message, **(extra or {})}).encode("utf-8")
    start_response(f"{status} Error", [("Content-Type", "application/json"), ("x-amzn-ErrorType", code),
                                       ("Content-Length", str(len(body)))])
    return [body]


def _model_error(start_response: StartResponse, name: str, variant: str, status: int, message: str) -> list[bytes]:
    kind = "client" if 400 <= status < 500 else "server"
    return _error(start_response, 424, "ModelError",
                  f"Received {kind} error ({status}) from {variant} with message \"{message}\". "
                  f"See the instance log of endpoint {name} for more information.",
                  {"OriginalStatusCode": status, "OriginalMessage": message,
                   "LogStreamArn": f"arn:aws:logs:us-east-1:123456789012:log-group:/aws/sagemaker/Endpoints/{name}"})
