"""InvokeEndpoint: route ``/endpoints/<name>/invocations`` to an instance and answer as AWS does.

A container error becomes botocore's ModelError (HTTP 424 with OriginalStatusCode and
OriginalMessage), so scripts catch the same exception here as in the cloud.
"""

from __future__ import annotations

import logging
from typing import Any

import urllib3

from localmaker.deploy.endpoint_runtime import EndpointRuntime, EndpointStatus
from localmaker.deploy.wire import Answer

logger = logging.getLogger(__name__)

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

    def __call__(self, environ: dict[str, Any], name: str) -> Answer:
        endpoint = self._runtime.get(name)
        if endpoint is None:
            return _error("ValidationError", f"Endpoint {name} not found.")
        if endpoint.status is not EndpointStatus.IN_SERVICE:
            return _error("ValidationError", f"Endpoint {name} is {endpoint.status.value}, not InService; "
                                             "wait with the endpoint_in_service waiter before invoking it")
        target = environ.get("HTTP_X_AMZN_SAGEMAKER_TARGET_VARIANT")
        try:
            variant, instance = endpoint.route(target)
        except KeyError:
            return _error("ValidationError", f"Target variant {target!r} does not exist on endpoint {name}.")
        length = int(environ.get("CONTENT_LENGTH") or 0)
        body = environ["wsgi.input"].read(length) if length else b""
        forwarded = {header: environ[key] for key, header in _FORWARDED_HEADERS.items() if environ.get(key)}
        try:
            answer = self._http.request("POST", f"{instance.url}/invocations", body=body, headers=forwarded,
                                        timeout=INVOCATION_TIMEOUT_S)
        except urllib3.exceptions.HTTPError as exc:
            logger.error("instance %s of %s did not answer: %s", instance.instance_id, name, exc)
            return _model_error(name, 500, f"the instance did not answer: {exc}")
        if answer.status >= 400:
            return _model_error(name, answer.status, answer.data.decode("utf-8", "replace"))
        headers = [("Content-Type", answer.headers.get("Content-Type", "application/octet-stream")),
                   ("x-Amzn-Invoked-Production-Variant", variant.spec.variant_name)]
        attributes = answer.headers.get("X-Amzn-SageMaker-Custom-Attributes")
        if attributes:
            headers.append(("X-Amzn-SageMaker-Custom-Attributes", attributes))
        return Answer("200 OK", headers, answer.data)


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
