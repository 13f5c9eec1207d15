"""The control plane: moto's server app behind a thin layer that makes endpoints and jobs real.

It intercepts at the AWS wire protocol only (``X-Amz-Target: SageMaker.*`` actions, the runtime's
``/endpoints/<name>/invocations`` and IAM's SimulatePrincipalPolicy), never moto's private classes: the
protocol is public and stable, moto's internals are not. Everything else passes straight to moto. Every
SageMaker answer, moto's own included, is held to botocore's service model (``answer_shapes.py``), and
every error is answered in the shape of the request's protocol (``wire_protocols.py``), never as HTML.
Before anything runs, a request passes ``request_guard.py`` (no web page may drive the control plane),
and an unsigned call to a signed API is answered MissingAuthenticationToken, as AWS answers it.
"""

from __future__ import annotations

import json
import logging
import os
import re
import shutil
import signal
import sys
import tempfile
import threading
from collections.abc import Callable, Iterable, Mapping
from pathlib import Path
from typing import Any

import boto3
import botocore

from localmaker.control_plane.answer_shapes import conformed_answer, operation_model
from localmaker.control_plane.answers import AMZ_JSON, RUNTIME_JSON, Answer, Environ, StartResponse
from localmaker.control_plane.api_errors import (
    ApiError,
    InternalFailure,
    MissingAuthenticationToken,
    NotFound,
    RequestTimeout,
    SerializationException,
    UnknownOperation,
    ValidationException,
)
from localmaker.control_plane.async_config import AsyncEndpoints
from localmaker.control_plane.async_invocations import AsyncInvocations
from localmaker.control_plane.connection_limits import BoundedThreadedWSGIServer, HeadTrackingRequestHandler
from localmaker.control_plane.disk_budget import DiskBudget
from localmaker.control_plane.endpoint_actions import Action, EndpointActions
from localmaker.control_plane.endpoint_runtime import EndpointRuntime
from localmaker.control_plane.iam_actions import IamActions
from localmaker.control_plane.invocation_metrics import InvocationMetrics
from localmaker.control_plane.invocation_proxy import InvocationProxy
from localmaker.control_plane.localmaker_routes import PREFIX, LocalmakerRoutes
from localmaker.control_plane.log_shipper import LogShipper
from localmaker.control_plane.moto_app import Moto
from localmaker.control_plane.request_bodies import MAX_API_BODY_BYTES, BodyTooLarge, MalformedBody, read_body
from localmaker.control_plane.request_guard import RequestGuard
from localmaker.control_plane.response_stream import ResponseStream
from localmaker.control_plane.service_quotas import ServiceQuotas, Usage, fleet_use
from localmaker.control_plane.settings import ControlPlaneSettings
from localmaker.control_plane.training_actions import TrainingActions
from localmaker.control_plane.training_runtime import TrainingRuntime
from localmaker.control_plane.transform_actions import TransformActions
from localmaker.control_plane.transform_runtime import TransformRuntime
from localmaker.control_plane.wire_protocols import Protocol, error_answer, operation_name, protocol_of, signing_service
from localmaker.logging_setup import add_file_log, remove_file_log
from localmaker.spec.names import LOCAL_CREDENTIALS
from localmaker.spec.s3_urls import parse_s3_url

logger = logging.getLogger(__name__)

# The runtime API's paths: /endpoints/<name>/<operation>, each answered by a handler of (environ, name).
_RUNTIME_PATH = re.compile(r"^/endpoints/(?P<name>[^/]+)/(?P<operation>[a-z-]+)$")
RuntimeOperation = Callable[[Environ, str], Answer]
_RUNTIME_OPERATION_NAMES = {"invocations": "InvokeEndpoint",
                            "invocations-response-stream": "InvokeEndpointWithResponseStream",
                            "async-invocations": "InvokeEndpointAsync"}
# moto's own management API (reset all state, record to and replay from a file in the working directory,
# change its config): a debugging aid for moto, not part of AWS, and not for whoever can reach this port.
_MOTO_MANAGEMENT = "/moto-api"
# The APIs that name their operation (JSON's X-Amz-Target, query's Action, CBOR's path): every call to them
# is signed. An unsigned call without one is taken for S3, whose objects may be public.
_SIGNED_PROTOCOLS = (Protocol.JSON, Protocol.QUERY, Protocol.CBOR)


class ControlPlaneApp:
    """The WSGI app: routes a request to an interceptor, localmaker's own routes, or moto.

    This is the one place where an error becomes an answer: whatever is raised below as an ApiError is
    serialized here, and anything else is a bug of ours, answered as InternalFailure and logged.
    """

    def __init__(self, runtime: EndpointRuntime, training: TrainingRuntime, transform: TransformRuntime, aws: Any,
                 metrics: InvocationMetrics | None = None, settings: ControlPlaneSettings | None = None,
                 region: str = "us-east-1", guard: RequestGuard | None = None,
                 quotas: ServiceQuotas | None = None) -> None:
        settings = settings or ControlPlaneSettings()
        self.runtime = runtime
        self._guard = guard or RequestGuard("127.0.0.1", settings.allowed_origins)
        self.quotas = quotas or ServiceQuotas(settings.quota_instances_per_type, settings.quota_instances_total)
        self.quotas.watch_endpoints(lambda name: fleet_use(runtime.get(name)))
        self.quotas.watch(Usage.TRAINING, lambda name: (job := training.get(name)) is not None and job.ended_at is None)
        self.quotas.watch(Usage.TRANSFORM,
                          lambda name: (job := transform.get(name)) is not None and job.ended_at is None)
        self.training = training
        self._moto = Moto()
        self._async_endpoints = AsyncEndpoints()
        self._proxy = InvocationProxy(runtime, region, metrics, settings, is_async=self._async_endpoints.is_async,
                                     quotas=self.quotas)
        self._runtime_operations: dict[str, RuntimeOperation] = {"invocations": self._proxy}
        self._runtime_operations["invocations-response-stream"] = ResponseStream(
            self._proxy, region, metrics, is_async=self._async_endpoints.is_async)
        self.async_invocations = AsyncInvocations(runtime, self._proxy, self._async_endpoints, aws, region,
                                                  settings.async_drain_s)
        self._runtime_operations["async-invocations"] = self.async_invocations
        self._local = LocalmakerRoutes(runtime, training, transform, region, self._async_endpoints.is_async)
        self._iam = IamActions(aws)
        self._actions: dict[str, Action] = {
            **EndpointActions(runtime, aws, region, self._async_endpoints, self.quotas).actions(),
            **TrainingActions(training, self.quotas).actions(),
            **TransformActions(transform, aws, region, self.quotas).actions()}

    def __call__(self, environ: Environ, start_response: StartResponse) -> Iterable[bytes]:
        path = environ.get("PATH_INFO", "")
        runtime_path = _RUNTIME_PATH.match(path) if environ.get("REQUEST_METHOD") == "POST" else None
        invoke = runtime_path if runtime_path and runtime_path.group("operation") in self._runtime_operations else None
        content_type = RUNTIME_JSON if invoke else AMZ_JSON
        # The runtime API and localmaker's own routes answer JSON whatever the request's Content-Type (an
        # invocation's is the user's); every other API answers errors in its protocol's shape.
        protocol = Protocol.REST_JSON if invoke or path.startswith((PREFIX, _MOTO_MANAGEMENT)) else None
        try:
            self._guard.check(environ)  # a web page's request (DNS rebinding, cross-origin) runs nothing
            if invoke:
                answer = self._runtime_operations[invoke.group("operation")](environ, invoke.group("name"))
            elif (own := self._answer(environ, path)) is not None:
                answer = own
            else:
                return self._moto(environ, start_response)  # streamed; an ApiError where moto has no answer
        except ApiError as exc:
            answer = error_answer(exc, environ, content_type, protocol)
        except Exception:  # noqa: BLE001 - a bug of ours answers like AWS's InternalFailure, never a traceback
            operation = _RUNTIME_OPERATION_NAMES.get(invoke.group("operation"), "") if invoke else ""
            operation = operation or operation_name(environ)
            logger.exception("%s failed", operation)
            answer = error_answer(InternalFailure(f"{operation} failed inside localmaker; the control plane's "
                                                  "log has the details"), environ, content_type, protocol)
        return answer.send(start_response)

    def _answer(self, environ: Environ, path: str) -> Answer | None:
        """The answer to a request that is not an invocation; None where moto answers it unchanged."""
        if path.startswith(PREFIX):
            return self._local.answer(environ)
        if path == _MOTO_MANAGEMENT or path.startswith(_MOTO_MANAGEMENT + "/"):
            raise NotFound(f"{path} is moto's management API, which localmaker does not expose")
        if protocol_of(environ) in _SIGNED_PROTOCOLS and signing_service(environ) is None:
            # AWS answers an unsigned call so; moto would take it for S3 and fail with a 500.
            raise MissingAuthenticationToken()
        target = environ.get("HTTP_X_AMZ_TARGET", "")
        if target.startswith("SageMaker."):
            operation = target.removeprefix("SageMaker.")
            # Every SageMaker answer, moto's own included, leaves unset members out (answer_shapes.py).
            return conformed_answer(operation, self._sagemaker(environ, operation))
        return self._iam.answer(environ)

    def _sagemaker(self, environ: Environ, operation: str) -> Answer:
        raw = _read_api_body(environ)  # read even where unanswered: werkzeug would wait for it to arrive
        if operation_model(operation) is None:
            raise UnknownOperation(f"SageMaker has no operation {operation!r} (in botocore "
                                   f"{botocore.__version__}, which localmaker answers by)")
        action = self._actions.get(operation)
        if action is None:
            return self._moto.forward(environ)
        try:
            request = json.loads(raw or b"{}")
        except ValueError:
            return self._moto.forward(environ)  # moto answers malformed JSON as AWS would
        if not isinstance(request, dict):
            raise SerializationException(f"the body of SageMaker.{operation} must be a JSON object, "
                                         f"got {type(request).__name__}")

        def forward(replacement: dict[str, Any] | None = None) -> Any:
            return self._moto.forward(environ, replacement)

        return action(request, forward)


def _read_api_body(environ: Environ) -> bytes:
    try:
        return read_body(environ, MAX_API_BODY_BYTES)
    except (MalformedBody, BodyTooLarge) as exc:
        raise ValidationException(str(exc)) from exc
    except OSError as exc:
        raise RequestTimeout(f"the request body did not arrive whole: {exc}") from exc


class _QuietRequestHandler(HeadTrackingRequestHandler):
    """Request lines go to this module's logger at DEBUG, not to the user's terminal.

    Each connection has its own thread (werkzeug closes it after one request), so a slow client delays
    only itself; how many threads there are is bounded (``connection_limits.py``). ``timeout`` (set per
    control plane) bounds how long that thread waits on a client that has stopped sending, so that clients
    which never finish a request do not hold threads forever.
    """

    def log_request(self, code: int | str = "-", size: int | str = "-") -> None:
        logger.debug("%s %s", self.requestline, code)

    def log_error(self, format: str, *args: Any) -> None:
        # A client that went silent ("Request timed out") or sent garbage is its own problem, not the user's.
        logger.info("client connection: " + format, *args)


class ControlPlane:
    """A running control plane: the HTTP server, the endpoint runtime, and their shutdown."""

    def __init__(self, host: str = "127.0.0.1", port: int = 0, region: str = "us-east-1",
                 work_root: str | Path | None = None, startup_timeout_s: float = 600.0,
                 settings: ControlPlaneSettings | None = None, keep_work: bool | None = None) -> None:
        self.settings = settings or ControlPlaneSettings.from_env(os.environ)
        self.region = region
        self.work_root = Path(work_root) if work_root else Path(tempfile.mkdtemp(prefix="localmaker-"))
        # A folder of our making is ours to remove at stop(); one the caller named is theirs to keep.
        self._owns_work_root = work_root is None
        self._keep_work = keep_work if keep_work is not None else _keep_work_requested(os.environ)
        self.evidence_cited = False  # set once an error pointed a user at an instance log in the folder
        self.work_root.mkdir(parents=True, exist_ok=True)
        # Warnings and tracebacks (a provisioning failure) go here, not into the user's console.
        self.log_file = self.work_root / "control-plane.log"
        self._log_handler = add_file_log(self.log_file, self.settings.log_file_max_bytes)
        self.disk = DiskBudget(self.work_root, self.settings.max_disk_bytes)
        try:
            self.logs = LogShipper(lambda: self.client("logs"), max_stream_bytes=self.settings.log_stream_max_bytes,
                                   max_stream_events=self.settings.log_stream_max_events,
                                   max_file_bytes=self.settings.log_file_max_bytes)
            self.runtime = EndpointRuntime(self.work_root, self._fetch_artifact, startup_timeout_s, self.logs,
                                           region=region, container_paths=self.settings.container_paths)
            self.training = TrainingRuntime(self.work_root, lambda: self.client("s3"), self.logs, region=region,
                                            container_paths=self.settings.container_paths, disk=self.disk)
            self.metrics = InvocationMetrics(lambda: self.client("cloudwatch"))
            self.transform = TransformRuntime(self.work_root, lambda: self.client("s3"), self._fetch_artifact,
                                              self.logs, region=region, container_paths=self.settings.container_paths,
                                              startup_timeout_s=startup_timeout_s, disk=self.disk)
            quotas = ServiceQuotas(self.settings.quota_instances_per_type, self.settings.quota_instances_total,
                                   self.disk)
            self.app = ControlPlaneApp(self.runtime, self.training, self.transform, self.client, self.metrics,
                                       self.settings, self.region, RequestGuard(host, self.settings.allowed_origins),
                                       quotas)
            handler = type("RequestHandler", (_QuietRequestHandler,), {"timeout": self.settings.client_timeout_s})
            self._server = BoundedThreadedWSGIServer(host, port, self.app, handler,
                                                     max_threads=self.settings.max_connections,
                                                     max_waiting=self.settings.max_waiting_connections)
        except BaseException:  # a port in use, say: the log handler must not outlive a control plane never made
            remove_file_log(self._log_handler)
            raise
        self._thread: threading.Thread | None = None
        self._clients: dict[str, Any] = {}
        self._clients_lock = threading.Lock()

    @property
    def url(self) -> str:
        address, port = self._server.server_address[:2]
        host = str(address)
        return f"http://[{host}]:{port}" if ":" in host else f"http://{host}:{port}"  # an IPv6 literal: [::1]

    def client(self, service: str) -> Any:
        with self._clients_lock:
            if service not in self._clients:
                self._clients[service] = boto3.client(service, endpoint_url=self.url, region_name=self.region,
                                                      **LOCAL_CREDENTIALS)
            return self._clients[service]

    def _fetch_artifact(self, url: str, destination: Path) -> None:
        bucket, key = parse_s3_url(url)
        size = int(self.client("s3").head_object(Bucket=bucket, Key=key).get("ContentLength", 0))
        self.disk.check_room(f"the artifact {url}", size)  # before a byte of it is written
        self.client("s3").download_file(bucket, key, str(destination))

    def start(self) -> ControlPlane:
        """Serve in a background thread (the embedded mode ``Session()`` uses)."""
        self._thread = threading.Thread(target=self._server.serve_forever, name="localmaker-control-plane",
                                        daemon=True)
        self._thread.start()
        logger.info("control plane listening on %s", self.url)
        return self

    def serve_until_signalled(self) -> None:
        """Serve (``localmaker up``) until SIGINT or SIGTERM, then stop everything.

        The server runs in its background thread while this one waits for the signal, so it is still
        listening while ``stop()`` drains the instances and ships their last logs and metrics through it.
        """
        stop_requested = threading.Event()

        def request_stop(signum: int, _frame: Any) -> None:
            logger.info("received signal %d: stopping", signum)
            stop_requested.set()

        previous = {sig: signal.signal(sig, request_stop) for sig in (signal.SIGINT, signal.SIGTERM)}
        try:
            self.start()
            stop_requested.wait()
        finally:
            for sig, handler in previous.items():
                signal.signal(sig, handler)
            self.stop()

    def stop(self) -> None:
        """Reap every instance first: a stopped control plane must leave no process behind."""
        self.training.shutdown()
        self.transform.shutdown()  # its instances stopped and reaped before anything else goes
        self.app.async_invocations.stop()  # queued async requests finish or get failure objects, while S3 answers
        self.runtime.shutdown()
        self.logs.stop()
        self.metrics.stop()
        if self._thread is not None:
            self._server.shutdown()
        self._server.server_close()
        if self._thread is not None:
            self._thread.join(timeout=5)
        remove_file_log(self._log_handler)
        self._dispose_of_work_root()

    def _dispose_of_work_root(self) -> None:
        """Remove the /tmp/localmaker-* folder this control plane made, or say where it was kept."""
        if not self._owns_work_root or not self.work_root.exists():
            return
        if self._keep_work:
            print(f"[localmaker] kept work folder {self.work_root}", file=sys.stderr, flush=True)
            return
        shutil.rmtree(self.work_root, ignore_errors=True)
        if self.evidence_cited:
            # The error already quoted its traceback's end; the full log went with the folder.
            print(f"[localmaker] removed work folder {self.work_root} with the instance log an error pointed to; "
                  "keep it with Session(keep_work=True) or LOCALMAKER_KEEP_WORK=1", file=sys.stderr, flush=True)


def _keep_work_requested(environ: Mapping[str, str]) -> bool:
    return environ.get("LOCALMAKER_KEEP_WORK", "").strip().lower() in {"1", "true", "yes", "on"}
