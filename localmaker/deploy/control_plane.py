"""The control plane: moto's server app behind a thin layer that makes endpoints real.

It intercepts at the AWS wire protocol only (``X-Amz-Target: SageMaker.*`` actions and the runtime's
``/endpoints/<name>/invocations``), never moto's private classes: the protocol is public and stable,
moto's internals are not. Everything else passes straight to moto.
"""

from __future__ import annotations

import io
import json
import logging
import re
import tempfile
import threading
from collections.abc import Callable, Iterable
from pathlib import Path
from typing import Any

import boto3
from moto.moto_server.werkzeug_app import DomainDispatcherApplication, create_backend_app
from werkzeug.serving import BaseWSGIServer, WSGIRequestHandler, make_server

from localmaker.deploy.endpoint_runtime import EndpointRuntime, EndpointStatus, VariantSpec
from localmaker.deploy.instance_type_ledger import InstanceTypeLedger
from localmaker.deploy.invocation_proxy import InvocationProxy
from localmaker.deploy.s3_urls import parse_s3_url
from localmaker.errors import ConfigurationError

logger = logging.getLogger(__name__)

StartResponse = Callable[..., Any]
Environ = dict[str, Any]

DUMMY_CREDENTIALS = {"aws_access_key_id": "testing", "aws_secret_access_key": "testing"}
DEFAULT_ACCOUNT = "123456789012"  # moto's account; STS GetCallerIdentity reports the same
_INVOKE_PATH = re.compile(r"^/endpoints/(?P<name>[^/]+)/invocations$")
_LOCAL_API = re.compile(r"^/_localmaker/endpoints(?:/(?P<name>[^/]+))?$")


def json_response(start_response: StartResponse, status: int, payload: Any,
                  headers: Iterable[tuple[str, str]] = ()) -> list[bytes]:
    body = json.dumps(payload).encode("utf-8")
    start_response(f"{status} {'OK' if status < 400 else 'Error'}",
                   [("Content-Type", "application/x-amz-json-1.1"), ("Content-Length", str(len(body))), *headers])
    return [body]


def sagemaker_error(start_response: StartResponse, code: str, message: str, status: int = 400) -> list[bytes]:
    return json_response(start_response, status, {"__type": code, "message": message},
                         [("x-amzn-ErrorType", code)])


class ControlPlaneApp:
    """The WSGI app: routes a request to an interceptor or lets moto answer it."""

    def __init__(self, runtime: EndpointRuntime, aws: Callable[[str], Any]) -> None:
        self.runtime = runtime
        self._moto = DomainDispatcherApplication(create_backend_app)
        self._aws = aws  # makes boto3 clients that talk to this very control plane
        self._proxy = InvocationProxy(runtime)
        self._actions: dict[str, Callable[[Environ, StartResponse, dict[str, Any]], list[bytes]]] = {
            "CreateEndpoint": self._create_endpoint,
            "DescribeEndpoint": self._describe_endpoint,
            "ListEndpoints": self._list_endpoints,
            "DeleteEndpoint": self._delete_endpoint,
            "CreateEndpointConfig": self._create_endpoint_config,
            "DescribeEndpointConfig": self._describe_endpoint_config,
            "DeleteEndpointConfig": self._delete_endpoint_config,
        }
        self._types = InstanceTypeLedger()

    def __call__(self, environ: Environ, start_response: StartResponse) -> Iterable[bytes]:
        path = environ.get("PATH_INFO", "")
        invoke = _INVOKE_PATH.match(path)
        if invoke and environ.get("REQUEST_METHOD") == "POST":
            return self._proxy(environ, start_response, invoke.group("name"))
        local = _LOCAL_API.match(path)
        if local and environ.get("REQUEST_METHOD") == "GET":
            return self._local_api(start_response, local.group("name"))
        target = environ.get("HTTP_X_AMZ_TARGET", "")
        action = self._actions.get(target.removeprefix("SageMaker.")) if target.startswith("SageMaker.") else None
        if action is None:
            return self._moto(environ, start_response)
        body = _read_body(environ)
        try:
            request = json.loads(body or b"{}")
        except ValueError:
            return self._moto(environ, start_response)
        return action(environ, start_response, request)

    # -- moto pass-through with a look at the answer -------------------------------------------

    def _forward(self, environ: Environ,
                 request: dict[str, Any] | None = None) -> tuple[str, list[tuple[str, str]], bytes]:
        if request is not None:
            body = json.dumps(request).encode("utf-8")
            environ["wsgi.input"], environ["CONTENT_LENGTH"] = io.BytesIO(body), str(len(body))
        captured: dict[str, Any] = {}

        def capture(status: str, headers: list[tuple[str, str]], exc_info: Any = None) -> Callable[[bytes], None]:
            captured["status"], captured["headers"] = status, headers
            return lambda _chunk: None

        chunks = self._moto(environ, capture)
        try:
            body = b"".join(chunks)
        finally:
            close = getattr(chunks, "close", None)
            if close:
                close()
        return captured["status"], captured["headers"], body

    @staticmethod
    def _reply(start_response: StartResponse, status: str, headers: list[tuple[str, str]],
               body: bytes) -> list[bytes]:
        headers = [(k, v) for k, v in headers if k.lower() != "content-length"]
        start_response(status, [*headers, ("Content-Length", str(len(body)))])
        return [body]

    # -- SageMaker actions ---------------------------------------------------------------------

    def _create_endpoint(self, environ: Environ, start_response: StartResponse, request: dict[str, Any]) -> list[bytes]:
        name = str(request.get("EndpointName", ""))
        if self.runtime.get(name) is not None:
            return sagemaker_error(start_response, "ValidationException",
                                   f"Cannot create already existing endpoint \"{name}\".")
        status, headers, body = self._forward(environ)
        if not status.startswith("200"):
            return self._reply(start_response, status, headers, body)
        try:
            variants = self._variants(str(request.get("EndpointConfigName", "")))
            self.runtime.create(name, variants)
        except Exception as exc:  # noqa: BLE001 - a bad config must not leave a half-made endpoint
            logger.exception("could not provision %s", name)
            self._aws("sagemaker").delete_endpoint(EndpointName=name)
            return sagemaker_error(start_response, "ValidationException", str(exc))
        return self._reply(start_response, status, headers, body)

    def _variants(self, config_name: str) -> list[VariantSpec]:
        sagemaker = self._aws("sagemaker")
        config = sagemaker.describe_endpoint_config(EndpointConfigName=config_name)
        variants = []
        for variant in config["ProductionVariants"]:
            model = sagemaker.describe_model(ModelName=variant["ModelName"])
            container = model.get("PrimaryContainer") or (model.get("Containers") or [{}])[0]
            if "ModelDataUrl" not in container:
                raise ValueError(f"model {variant['ModelName']!r} has no ModelDataUrl; "
                                 "point it at a model.tar.gz in S3")
            variants.append(VariantSpec(
                variant_name=variant["VariantName"],
                model_name=variant["ModelName"],
                instance_type=variant["InstanceType"],
                instance_count=int(variant.get("InitialInstanceCount", 1)),
                model_data_url=container["ModelDataUrl"],
                image=container.get("Image", ""),
                environment=dict(container.get("Environment") or {}),
                weight=float(variant.get("InitialVariantWeight", 1.0)),
            ))
        return variants

    def _create_endpoint_config(self, environ: Environ, start_response: StartResponse,
                                request: dict[str, Any]) -> list[bytes]:
        try:
            recorded = self._types.record(request)
        except ConfigurationError as exc:
            return sagemaker_error(start_response, "ValidationException", str(exc))
        except (KeyError, TypeError) as exc:
            return sagemaker_error(start_response, "ValidationException", f"malformed ProductionVariants: {exc}")
        status, headers, body = self._forward(environ, recorded)
        if not status.startswith("200"):
            self._types.forget(str(request.get("EndpointConfigName", "")))
        return self._reply(start_response, status, headers, body)

    def _describe_endpoint_config(self, environ: Environ, start_response: StartResponse,
                                  request: dict[str, Any]) -> list[bytes]:
        status, headers, body = self._forward(environ)
        if status.startswith("200"):
            body = json.dumps(self._types.restore(json.loads(body)), default=str).encode("utf-8")
        return self._reply(start_response, status, headers, body)

    def _delete_endpoint_config(self, environ: Environ, start_response: StartResponse,
                                request: dict[str, Any]) -> list[bytes]:
        status, headers, body = self._forward(environ)
        if status.startswith("200"):
            self._types.forget(str(request.get("EndpointConfigName", "")))
        return self._reply(start_response, status, headers, body)

    def _describe_endpoint(self, environ: Environ, start_response: StartResponse,
                           request: dict[str, Any]) -> list[bytes]:
        status, headers, body = self._forward(environ)
        if status.startswith("200"):
            description = json.loads(body)
            self._overlay(description)
            body = json.dumps(description, default=str).encode("utf-8")
        return self._reply(start_response, status, headers, body)

    def _list_endpoints(self, environ: Environ, start_response: StartResponse, request: dict[str, Any]) -> list[bytes]:
        status, headers, body = self._forward(environ)
        if status.startswith("200"):
            listing = json.loads(body)
            for summary in listing.get("Endpoints", []):
                self._overlay(summary)
            body = json.dumps(listing, default=str).encode("utf-8")
        return self._reply(start_response, status, headers, body)

    def _overlay(self, record: dict[str, Any]) -> None:
        """Replace moto's always-InService status with the endpoint's real one."""
        endpoint = self.runtime.get(str(record.get("EndpointName", "")))
        if endpoint is None:
            return
        record["EndpointStatus"] = endpoint.status.value
        if endpoint.status is EndpointStatus.FAILED:
            record["FailureReason"] = endpoint.failure_reason
        else:
            record.pop("FailureReason", None)

    def _delete_endpoint(self, environ: Environ, start_response: StartResponse,
                         request: dict[str, Any]) -> list[bytes]:
        status, headers, body = self._forward(environ)
        if status.startswith("200"):
            self.runtime.delete(str(request.get("EndpointName", "")))
        return self._reply(start_response, status, headers, body)

    # -- localmaker's own read-only API ----------------------------------------------------------

    def _local_api(self, start_response: StartResponse, name: str | None) -> list[bytes]:
        if name is None:
            return json_response(start_response, 200, {"Endpoints": [
                endpoint.describe() for n in self.runtime.names() if (endpoint := self.runtime.get(n))
            ]})
        endpoint = self.runtime.get(name)
        if endpoint is None:
            return sagemaker_error(start_response, "ValidationError", f"Endpoint {name} not found.")
        return json_response(start_response, 200, endpoint.describe())


def _read_body(environ: Environ) -> bytes:
    """Read the request body and put it back, so moto can read it again."""
    length = int(environ.get("CONTENT_LENGTH") or 0)
    body = environ["wsgi.input"].read(length) if length else b""
    environ["wsgi.input"] = io.BytesIO(body)
    environ["CONTENT_LENGTH"] = str(len(body))
    return body


class _QuietRequestHandler(WSGIRequestHandler):
    """Request lines go to this module's logger at DEBUG, not to the user's terminal."""

    def log_request(self, code: int | str = "-", size: int | str = "-") -> None:
        logger.debug("%s %s", self.requestline, code)


class ControlPlane:
    """A running control plane: the HTTP server, the endpoint runtime, and their shutdown."""

    def __init__(self, host: str = "127.0.0.1", port: int = 0, region: str = "us-east-1",
                 work_root: str | Path | None = None, startup_timeout_s: float = 600.0) -> None:
        self.region = region
        self.work_root = Path(work_root) if work_root else Path(tempfile.mkdtemp(prefix="localmaker-"))
        self.runtime = EndpointRuntime(self.work_root, self._fetch_artifact, startup_timeout_s)
        self.app = ControlPlaneApp(self.runtime, self.client)
        self._server: BaseWSGIServer = make_server(host, port, self.app, threaded=True,
                                                   request_handler=_QuietRequestHandler)
        self._thread: threading.Thread | None = None
        self._clients: dict[str, Any] = {}
        self._clients_lock = threading.Lock()

    @property
    def url(self) -> str:
        host, port = self._server.server_address[:2]
        return f"http://{host!s}:{port}"

    def client(self, service: str) -> Any:
        with self._clients_lock:
            if service not in self._clients:
                self._clients[service] = boto3.client(service, endpoint_url=self.url, region_name=self.region,
                                                      **DUMMY_CREDENTIALS)
            return self._clients[service]

    def _fetch_artifact(self, url: str, destination: Path) -> None:
        bucket, key = parse_s3_url(url)
        self.client("s3").download_file(bucket, key, str(destination))

    def start(self) -> ControlPlane:
        """Serve in a background thread (the embedded mode ``Session()`` uses)."""
        self._thread = threading.Thread(target=self._server.serve_forever, name="localmaker-control-plane",
                                        daemon=True)
        self._thread.start()
        logger.info("control plane listening on %s", self.url)
        return self

    def serve_forever(self) -> None:
        """Serve in the calling thread (``localmaker up``); returns after stop()."""
        self._server.serve_forever()

    def stop(self) -> None:
        """Reap every instance first: a stopped control plane must leave no process behind."""
        self.runtime.shutdown()
        self._server.shutdown()
        self._server.server_close()
        if self._thread is not None:
            self._thread.join(timeout=5)
