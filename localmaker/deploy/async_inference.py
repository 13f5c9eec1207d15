"""Asynchronous inference on the client side, mirroring SageMaker SDK v2's classes of the same names.

``Model.deploy(..., async_inference_config=AsyncInferenceConfig(...))`` makes an async endpoint and
returns an :class:`AsyncPredictor`. Its ``predict_async`` uploads the serialized input to S3, calls
InvokeEndpointAsync and returns an :class:`AsyncInferenceResponse`; ``get_result(WaiterConfig(...))``
waits for the output (or failure) object, as the SDK does, by polling S3. The same script deploys to
AWS with a ``target="aws"`` session, since every step is an ordinary boto3 call.
"""

from __future__ import annotations

import io
import time
import uuid
from dataclasses import dataclass
from datetime import datetime, timezone
from typing import Any

from botocore.exceptions import ClientError

from localmaker.deploy.predictor import FakePredictor
from localmaker.deploy.session import Session
from localmaker.errors import LocalmakerError
from localmaker.spec.s3_urls import parse_s3_url


class AsyncInferenceError(LocalmakerError):
    """Base of the errors an async result can raise, named as the SDK names them."""


class AsyncInferenceModelError(AsyncInferenceError):
    """The request failed: the failure object's content is ``message``."""

    def __init__(self, message: Any) -> None:
        super().__init__(f"Model returned error: {message}")
        self.message = message


class PollingTimeoutError(AsyncInferenceError):
    """Neither the output nor a failure appeared while the waiter polled."""

    def __init__(self, output_path: str, seconds: float) -> None:
        super().__init__(f"No result at {output_path} after {seconds:g} seconds: inference could still be "
                         "running; call get_result again, or wait longer with WaiterConfig")
        self.output_path = output_path


class ObjectNotExistedError(AsyncInferenceError):
    """``get_result()`` without a waiter found no output yet."""

    def __init__(self, output_path: str) -> None:
        super().__init__(f"No result at {output_path} yet: inference could still be running")
        self.output_path = output_path


@dataclass
class WaiterConfig:
    """How ``get_result`` polls S3: ``max_attempts`` checks, ``delay`` seconds apart (the SDK's defaults)."""

    max_attempts: int = 60
    delay: float = 15

    def _to_request_dict(self) -> dict[str, float]:
        return {"Delay": self.delay, "MaxAttempts": self.max_attempts}


class AsyncInferenceConfig:
    """Where results and failures go, who is notified, and how many requests each instance runs at once.

    ``output_path`` and ``failure_path`` default, as in the SDK, to ``async-endpoint-outputs/<name>`` and
    ``async-endpoint-failures/<name>`` in the session's default bucket. ``notification_config`` takes the
    SDK's keys: ``SuccessTopic``, ``ErrorTopic`` and ``IncludeInferenceResponseIn``.
    """

    def __init__(self, output_path: str | None = None, max_concurrent_invocations_per_instance: int | None = None,
                 kms_key_id: str | None = None, notification_config: dict[str, Any] | None = None,
                 failure_path: str | None = None) -> None:
        self.output_path = output_path
        self.max_concurrent_invocations_per_instance = max_concurrent_invocations_per_instance
        self.kms_key_id = kms_key_id
        self.notification_config = notification_config
        self.failure_path = failure_path

    def with_defaults(self, session: Session, name: str) -> AsyncInferenceConfig:
        folder = f"{name}-{datetime.now(timezone.utc):%Y-%m-%d-%H-%M-%S-%f}"[:63]
        bucket = session.default_bucket() if self.output_path is None or self.failure_path is None else ""
        return AsyncInferenceConfig(
            self.output_path or f"s3://{bucket}/async-endpoint-outputs/{folder}",
            self.max_concurrent_invocations_per_instance, self.kms_key_id, self.notification_config,
            self.failure_path or f"s3://{bucket}/async-endpoint-failures/{folder}")

    def _to_request_dict(self) -> dict[str, Any]:
        output: dict[str, Any] = {"S3OutputPath": self.output_path}
        if self.failure_path:
            output["S3FailurePath"] = self.failure_path
        if self.kms_key_id:
            output["KmsKeyId"] = self.kms_key_id
        if self.notification_config:
            output["NotificationConfig"] = self.notification_config
        request: dict[str, Any] = {"OutputConfig": output}
        if self.max_concurrent_invocations_per_instance:
            request["ClientConfig"] = {
                "MaxConcurrentInvocationsPerInstance": self.max_concurrent_invocations_per_instance}
        return request


class AsyncPredictor:
    """Makes async requests to an endpoint, through the ``predictor``'s serializer and deserializer."""

    def __init__(self, predictor: FakePredictor, name: str | None = None) -> None:
        self.predictor = predictor
        self.endpoint_name = predictor.endpoint_name
        self.sagemaker_session = predictor.sagemaker_session
        self.s3_client = self.sagemaker_session.s3_client
        self.name = name

    @property
    def serializer(self) -> Any:
        return self.predictor.serializer

    @property
    def deserializer(self) -> Any:
        return self.predictor.deserializer

    def predict(self, data: Any = None, input_path: str | None = None, initial_args: dict[str, Any] | None = None,
                inference_id: str | None = None, waiter_config: WaiterConfig | None = None) -> Any:
        """Send the request and wait for its result (the SDK's default waiter: 60 checks, 15 s apart)."""
        response = self.predict_async(data, input_path, initial_args, inference_id)
        return response.get_result(waiter_config or WaiterConfig())

    def predict_async(self, data: Any = None, input_path: str | None = None,
                      initial_args: dict[str, Any] | None = None,
                      inference_id: str | None = None) -> AsyncInferenceResponse:
        """Upload ``data`` (or use the object at ``input_path``), queue the request, return at once."""
        if data is None and input_path is None:
            raise ValueError("Please provide input data or input Amazon S3 location to use async prediction")
        if data is not None:
            input_path = self._upload(data, input_path)
        args = dict(initial_args or {})
        args["InputLocation"] = input_path
        args.setdefault("EndpointName", self.endpoint_name)
        args.setdefault("Accept", ", ".join(self.predictor.accept))
        if inference_id:
            args["InferenceId"] = inference_id
        answer = self.sagemaker_session.sagemaker_runtime_client.invoke_endpoint_async(**args)
        return AsyncInferenceResponse(self, answer["OutputLocation"], answer.get("FailureLocation"))

    def _upload(self, data: Any, input_path: str | None) -> str:
        if input_path:
            bucket, key = parse_s3_url(input_path)
        else:
            bucket = self.sagemaker_session.default_bucket()
            key = (f"async-endpoint-inputs/{self.name or self.endpoint_name}/"
                   f"{datetime.now(timezone.utc):%Y-%m-%d-%H-%M-%S-%f}-{uuid.uuid4()}")
        body = self.serializer.serialize(data)
        self.s3_client.put_object(Bucket=bucket, Key=key, Body=body, ContentType=self.serializer.CONTENT_TYPE)
        return input_path or f"s3://{bucket}/{key}"

    def delete_endpoint(self, delete_endpoint_config: bool = True) -> None:
        self.predictor.delete_endpoint(delete_endpoint_config)

    def _fetch(self, location: str) -> Any | None:
        """The deserialized object at ``location``, or None while it does not exist."""
        bucket, key = parse_s3_url(location)
        try:
            found = self.s3_client.get_object(Bucket=bucket, Key=key)
        except ClientError as exc:
            if exc.response.get("Error", {}).get("Code") in ("NoSuchKey", "404"):
                return None
            raise
        content_type = found.get("ContentType", "application/octet-stream")
        return self.deserializer.deserialize(io.BytesIO(found["Body"].read()), content_type)

    def _result_or_failure(self, output_path: str, failure_path: str | None) -> tuple[bool, Any]:
        result = self._fetch(output_path)
        if result is not None:
            return True, result
        if failure_path is not None:
            failure = self._fetch(failure_path)
            if failure is not None:
                raise AsyncInferenceModelError(failure)
        return False, None

    def _wait_for_output(self, output_path: str, failure_path: str | None, waiter_config: WaiterConfig) -> Any:
        for attempt in range(max(1, waiter_config.max_attempts)):
            if attempt:
                time.sleep(waiter_config.delay)
            found, result = self._result_or_failure(output_path, failure_path)
            if found:
                return result
        raise PollingTimeoutError(output_path, waiter_config.delay * waiter_config.max_attempts)


class AsyncInferenceResponse:
    """Where one async request's result will be; ``get_result`` fetches (or waits for) it."""

    def __init__(self, predictor_async: AsyncPredictor, output_path: str, failure_path: str | None) -> None:
        self.predictor_async = predictor_async
        self.output_path = output_path
        self.failure_path = failure_path
        self._result: Any = None

    def get_result(self, waiter_config: WaiterConfig | None = None) -> Any:
        """The result; without ``waiter_config`` it looks once and raises ObjectNotExistedError if absent.

        A failed request raises AsyncInferenceModelError with the failure object's content.
        """
        if waiter_config is not None and not isinstance(waiter_config, WaiterConfig):
            raise ValueError("waiter_config should be a WaiterConfig object")
        if self._result is None:
            if waiter_config is None:
                found, result = self.predictor_async._result_or_failure(self.output_path, self.failure_path)
                if not found:
                    raise ObjectNotExistedError(self.output_path)
                self._result = result
            else:
                self._result = self.predictor_async._wait_for_output(self.output_path, self.failure_path,
                                                                     waiter_config)
        return self._result
