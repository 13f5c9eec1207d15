"""InvokeEndpointAsync: accept a request (202), queue it per endpoint, run it, and write where it ended.

The answer comes at once, with the InferenceId and the S3 locations its result or failure will have.
A worker then reads the input from S3, sends it to an instance through the same proxy real-time calls
use (with the request's InvocationTimeoutSeconds, not 60 s), and writes the answer body to the output
location or the error to the failure location, then notifies the config's SNS topic.

Nothing accepted is lost. While no instance can answer (healing, updating) a request waits and tries
again until its RequestTTLSeconds runs out; a request whose instance died under it is sent again, since
it produced nothing. A deleted endpoint and a stopping control plane write a failure object for every
request still waiting or running, so each request ends in exactly one object in S3.
"""

from __future__ import annotations

import json
import logging
import threading
import time
from collections.abc import Callable
from typing import Any

from botocore.exceptions import ClientError

from localmaker.control_plane.answers import RUNTIME_JSON, Answer, Environ
from localmaker.control_plane.api_errors import ApiError, ModelError, ServiceUnavailable, ValidationError
from localmaker.control_plane.async_config import AsyncEndpoints
from localmaker.control_plane.async_metrics import BacklogMetrics
from localmaker.control_plane.async_notifications import AsyncNotifier
from localmaker.control_plane.async_queue import EndpointQueue, QueueClosed
from localmaker.control_plane.async_requests import AsyncRequest, check_input_size, parse_async_request
from localmaker.control_plane.endpoint_runtime import EndpointRuntime
from localmaker.control_plane.endpoint_state import RunningEndpoint
from localmaker.control_plane.instance_process import InstanceProcess
from localmaker.control_plane.invocation_proxy import InvocationProxy
from localmaker.control_plane.request_bodies import BodyTooLarge, MalformedBody, read_body
from localmaker.spec.names import LOCAL_ACCOUNT_ID
from localmaker.spec.s3_urls import parse_s3_url

logger = logging.getLogger(__name__)

RETRY_PAUSE_S = 0.5
MAX_REQUEST_BODY_BYTES = 128000  # the API's Body member (botocore's service model); the payload lives in S3
LOST_INSTANCE_RETRIES = 3  # a request that kills every instance it reaches fails after this many tries
_EXIT_WAIT_S = 2.0  # how long a dropped connection's instance gets to show that it died


class AsyncInvocations:
    """The runtime API's ``async-invocations`` operation, and the queues behind it."""

    def __init__(self, runtime: EndpointRuntime, proxy: InvocationProxy, endpoints: AsyncEndpoints,
                 aws: Callable[[str], Any], region: str, drain_s: float = 30.0,
                 metrics_interval_s: float = 1.0) -> None:
        self._runtime = runtime
        self._proxy = proxy
        self._endpoints = endpoints
        self._aws = aws
        self._region = region
        self._drain_s = drain_s
        self._queues: dict[str, EndpointQueue] = {}
        self._lock = threading.Lock()
        self._stopping = threading.Event()
        self._notifier = AsyncNotifier(lambda: aws("sns"), region)
        self.metrics = BacklogMetrics(lambda: aws("cloudwatch"), self._backlogs, metrics_interval_s)
        endpoints.on_detach.append(self.endpoint_deleted)

    # -- the API call ----------------------------------------------------------------------------

    def __call__(self, environ: Environ, name: str) -> Answer:
        try:  # botocore sends no body; read any so the connection stays usable
            read_body(environ, MAX_REQUEST_BODY_BYTES)
        except (BodyTooLarge, MalformedBody, OSError):
            raise ValidationError("InvokeEndpointAsync takes its input from S3, not from the request body: upload "
                                  "the payload and pass its s3:// URL as InputLocation") from None
        if self._runtime.get(name) is None:
            raise ValidationError(f"Endpoint {name} of account {LOCAL_ACCOUNT_ID} not found.")
        config = self._endpoints.of(name)
        if config is None:
            raise ValidationError(f"Endpoint {name} of account {LOCAL_ACCOUNT_ID} is not an asynchronous inference "
                                  "endpoint: its endpoint config has no AsyncInferenceConfig. Call InvokeEndpoint, "
                                  "or update the endpoint to a config with AsyncInferenceConfig")
        endpoint = self._proxy.endpoint_in_service(name)
        request = parse_async_request(environ, name, config)
        self._check_input(request)
        if self._stopping.is_set():
            raise ServiceUnavailable("the control plane is stopping and takes no new asynchronous requests",
                                     retry_after_s=1)
        try:
            self._queue(endpoint).put(request)
        except QueueClosed:
            raise ValidationError(f"Endpoint {name} of account {LOCAL_ACCOUNT_ID} not found.") from None
        self.metrics.start()
        headers = [("Content-Type", RUNTIME_JSON), ("X-Amzn-SageMaker-OutputLocation", request.output_location)]
        if request.failure_reported:
            headers.append(("X-Amzn-SageMaker-FailureLocation", request.failure_location))
        return Answer("202 Accepted", headers, json.dumps({"InferenceId": request.inference_id}).encode("utf-8"))

    def _check_input(self, request: AsyncRequest) -> None:
        try:
            head = self._aws("s3").head_object(Bucket=request.input_bucket, Key=request.input_key)
        except ClientError as exc:
            code = exc.response.get("Error", {}).get("Code", "")
            if code in ("404", "NoSuchKey", "NoSuchBucket", "NotFound"):
                raise ValidationError(f"Could not access input location {request.input_location}: the object does "
                                      "not exist. Upload the payload there first") from None
            raise ValidationError(f"Could not access input location {request.input_location}: {exc}") from None
        check_input_size(int(head.get("ContentLength", 0)), request.input_location)

    def _queue(self, endpoint: RunningEndpoint) -> EndpointQueue:
        with self._lock:
            queue = self._queues.get(endpoint.name)
            if queue is None:
                def capacity() -> int:
                    config = self._endpoints.of(endpoint.name)
                    per_instance = config.max_concurrent_per_instance if config else 1
                    return per_instance * max(1, _instances_in_service(endpoint))

                queue = self._queues[endpoint.name] = EndpointQueue(endpoint.name, capacity, self._run)
            return queue

    # -- a worker's request ------------------------------------------------------------------------

    def _run(self, request: AsyncRequest) -> None:
        if time.monotonic() > request.expires_at:
            self._fail(request, f"Request expired: it waited longer than RequestTTLSeconds={request.ttl_s} "
                                "before an instance could take it")
            return
        try:
            body = self._aws("s3").get_object(Bucket=request.input_bucket, Key=request.input_key)["Body"].read()
        except ClientError as exc:
            self._fail(request, f"Could not read input location {request.input_location}: {exc}")
            return
        lost = 0
        while True:
            if request.settled:
                return  # the endpoint was deleted or the control plane stopped: that wrote its failure
            endpoint = self._runtime.get(request.endpoint_name)
            if endpoint is None:
                self._fail(request, f"The endpoint {request.endpoint_name} was deleted before this request ran")
                return
            live = [p for p in endpoint.processes() if p.exited() is None]
            try:
                answer = self._proxy.send(endpoint, None, body, request.headers(), time.perf_counter(),
                                          timeout_s=float(request.timeout_s))
            except ServiceUnavailable:
                # No instance can answer now (healing, updating): the request waits, as it would in the queue.
                if time.monotonic() > request.expires_at:
                    self._fail(request, f"Request expired: no instance could take it within RequestTTLSeconds="
                                        f"{request.ttl_s}")
                    return
                time.sleep(RETRY_PAUSE_S)
                continue
            except ModelError as exc:
                if lost < LOST_INSTANCE_RETRIES and _an_instance_died(live):
                    lost += 1
                    logger.warning("the instance running async request %s of %s died; sending it again",
                                   request.inference_id, request.endpoint_name)
                    continue
                self._fail(request, f"ClientError: {exc.message}", str(exc.fields.get("OriginalMessage", "")))
                return
            except ApiError as exc:
                self._fail(request, exc.message)
                return
            self._succeed(request, answer)
            return

    def _succeed(self, request: AsyncRequest, answer: Answer) -> None:
        if not request.claim():
            return
        content_type = answer.header("Content-Type") or "application/octet-stream"
        try:
            self._put(request.output_location, answer.body, content_type)
        except Exception as exc:  # noqa: BLE001 - an output that cannot be written is the request's failure
            logger.exception("could not write the result of %s", request.inference_id)
            self._write_failure(request, f"Could not write the result to {request.output_location}: {exc}")
            return
        self._notifier.publish(request.config, request, True, content_type, answer.body)

    def _fail(self, request: AsyncRequest, reason: str, container_body: str = "") -> None:
        if request.claim():
            self._write_failure(request, reason, container_body)

    def _write_failure(self, request: AsyncRequest, reason: str, container_body: str = "") -> None:
        """The failure object holds what the container answered, else an error in the container's shape."""
        body = (container_body or json.dumps({"error": {"code": "AsyncInferenceFailed", "message": reason}}))
        logger.warning("async request %s of %s failed: %s", request.inference_id, request.endpoint_name, reason)
        try:
            self._put(request.failure_location, body.encode("utf-8"), RUNTIME_JSON)
        except Exception:  # noqa: BLE001 - the log keeps it when S3 cannot
            logger.exception("could not write the failure of %s to %s", request.inference_id,
                             request.failure_location)
        self._notifier.publish(request.config, request, False, RUNTIME_JSON, body.encode("utf-8"), reason)

    def _put(self, location: str, body: bytes, content_type: str) -> None:
        bucket, key = parse_s3_url(location)
        self._aws("s3").put_object(Bucket=bucket, Key=key, Body=body, ContentType=content_type)

    # -- the endpoint's and the control plane's end --------------------------------------------------

    def endpoint_deleted(self, name: str) -> None:
        """DeleteEndpoint: every request still waiting or running gets a failure object."""
        with self._lock:
            queue = self._queues.pop(name, None)
        if queue is not None:
            for request in queue.close():
                self._fail(request, f"The endpoint {name} was deleted before this request finished")

    def stop(self) -> None:
        """Drain for up to the drain time, then fail what is left; take nothing new meanwhile."""
        deadline = time.monotonic() + self._drain_s
        self._stopping.set()
        with self._lock:
            queues = list(self._queues.values())
            self._queues.clear()
        for queue in queues:
            queue.wait_until_empty(deadline)
        for queue in queues:
            for request in queue.close():
                self._fail(request, "The control plane stopped before this request finished; send it again "
                                    "once it is back")
        self.metrics.stop()

    def _backlogs(self) -> dict[str, tuple[int, int, float]]:
        with self._lock:
            queues = dict(self._queues)
        backlogs = {}
        for name, queue in queues.items():
            queue.pump()  # instances that healed since the last tick take work now
            size, age_s = queue.backlog()
            endpoint = self._runtime.get(name)
            backlogs[name] = (size, _instances_in_service(endpoint) if endpoint else 0, age_s)
        return backlogs


def _instances_in_service(endpoint: RunningEndpoint) -> int:
    return sum(int(v.get("CurrentInstanceCount", 0)) for v in endpoint.production_variants())


def _an_instance_died(processes: list[InstanceProcess]) -> bool:
    """Whether one of ``processes`` (alive before the call) has died: its connection dropped with it."""
    deadline = time.monotonic() + _EXIT_WAIT_S
    while True:
        if any(p.exited() is not None for p in processes):
            return True
        if time.monotonic() > deadline:
            return False
        time.sleep(0.1)
